"""What the network API reaches: its app factory's dependencies and the handlers' typed accessor.

The network service (networks, subnets, ports, quotas, tags, and L3's facets), handed over by the
family's app factory; handlers read it back with `services_of(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from cumulo.web.http import deps_of

if TYPE_CHECKING:
    from cumulo.network.service import NetworkService


@dataclass(frozen=True)
class NetworkDeps:
    network: NetworkService


def services_of(request: Request) -> NetworkDeps:
    """The dependencies the network app serving this request was built with."""
    return deps_of(request, NetworkDeps)
