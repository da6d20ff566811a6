"""The OGF OCCI 1.2 front door (GFD.221 Core, GFD.224 Infrastructure, GFD.223 HTTP, GFD.229 text and
the JSON rendering), mounted at /occi over the same compute, volume and network services as the
OpenStack APIs. docs/occi.md describes the mapping."""
