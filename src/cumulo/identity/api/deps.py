"""What the identity API reaches: its app factory's dependencies and the handlers' typed accessor.

The identity service, the settings (region, public URL) and the catalog it lists, handed over by
the family's app factory; handlers read them back with `services_of(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from cumulo.catalog import CatalogEntry
from cumulo.conf import Settings
from cumulo.web.http import deps_of

if TYPE_CHECKING:
    from cumulo.identity.service import IdentityService


@dataclass(frozen=True)
class IdentityDeps:
    identity: IdentityService
    conf: Settings
    catalog: tuple[CatalogEntry, ...]  # the services the Keystone catalog lists


def services_of(request: Request) -> IdentityDeps:
    """The dependencies the identity app serving this request was built with."""
    return deps_of(request, IdentityDeps)
