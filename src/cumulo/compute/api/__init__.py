"""The Nova-compatible compute API (v2.1 with microversions), mounted at /compute.

One module per resource (servers, server_actions, flavors, keypairs, quotas, admin, ...), each
listing its ROUTES; `app.make_app` builds the family's ASGI app from them, with Nova's fault
format; `schemas/` holds the request schemas per resource and microversion.
"""
