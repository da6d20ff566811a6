"""The services this build offers: what the Keystone catalog and the cloud's root document list.

Bottom layer: it imports nothing of cumulo's. Each entry's `path` is appended to the public URL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    name: str
    path: str  # appended to the public URL, e.g. "/compute/v2.1"; may hold Keystone's "$(project_id)s"


# The services this build offers; the Keystone catalog lists exactly these.
CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("identity", "keystone", "/identity"),
    CatalogEntry("compute", "nova", "/compute/v2.1"),
    CatalogEntry("image", "glance", "/image"),
    CatalogEntry("network", "neutron", "/networking"),
    # Cinder's convention: the project id in the URL (Keystone puts the token's project in place of
    # the template; an unscoped token's catalog leaves these out).
    CatalogEntry("block-storage", "cinder", "/volume/v3/$(project_id)s"),
    CatalogEntry("volumev3", "cinder", "/volume/v3/$(project_id)s"),
    # The OGF OCCI 1.2 front door (issue 12); OpenStack clients skip a type they do not know.
    CatalogEntry("occi", "occi", "/occi"),
    # The PaaS manager (issue 13): Pegasus's resource paths under /paas/rest.
    CatalogEntry("paas", "paas", "/paas"),
)
