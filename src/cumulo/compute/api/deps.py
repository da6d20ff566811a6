"""What the compute API reaches: its app factory's dependencies and the handlers' typed accessor.

Warehouse's `includeme` model: a family names its own narrow needs (Protocols where a narrower
interface suffices) and the assembly in runtime hands them over; handlers read them back with
`services_of(request)`. Workers are not here on purpose: the API talks to them by bus, through the
compute service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request

from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.web.http import deps_of

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.image.service import ImageService


class ProjectDirectory(Protocol):
    """The identity lookup compute needs: does a project exist (quota and flavor access targets)."""

    async def get_project(self, project_id: str) -> dict[str, Any] | None: ...


class ProviderRegistry(Protocol):
    """The placement call compute's API makes itself: drop a deleted compute node's provider."""

    async def delete_provider(self, uuid: str) -> None: ...


@dataclass(frozen=True)
class ComputeDeps:
    conf: Settings
    db: Database
    compute: ComputeService
    images: ImageService  # Nova's image proxy and image metadata routes
    identity: ProjectDirectory
    placement: ProviderRegistry


def services_of(request: Request) -> ComputeDeps:
    """The dependencies the compute app serving this request was built with."""
    return deps_of(request, ComputeDeps)
