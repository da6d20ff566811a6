"""What the OCCI front door reaches: the services (`OcciServices`, which backends are built from) and
the app's dependencies (`OcciDeps`: the backend registry, the mixin sources, the user-mixin store).

The assembly (runtime `Cloud.asgi_app`) hands `OcciServices` to `occi.api.make_app`, which builds one
`KindBackend` per kind (each backend module's `make(svc)`) and the `MixinSource`s. Handlers read the
result back with `deps(request)`. No backend is imported here, so backends may import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request

from cumulo import errors
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.occi.auth import OcciAuth
from cumulo.occi.backends.base import KindBackend, MixinSource
from cumulo.occi.model import Mixin
from cumulo.web.http import deps_of

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.identity.service import IdentityService
    from cumulo.image.service import ImageService
    from cumulo.network.service import NetworkService
    from cumulo.placement.service import Placement
    from cumulo.volume.service import VolumeService


@dataclass(frozen=True)
class OcciServices:
    """The cloud's services as OCCI's backends call them (never the OpenStack HTTP APIs): every call
    takes the caller's RequestContext, so scoping, policy and quotas are the OpenStack APIs' own."""

    conf: Settings
    db: Database
    identity: IdentityService
    images: ImageService
    compute: ComputeService
    network: NetworkService
    volume: VolumeService
    placement: Placement | None = None


class UserMixins(MixinSource, Protocol):
    """MIXINS' store of user-defined mixins (occi.mixins) as the API calls it. Every call is scoped
    to `ctx.project_id`: another project's mixins do not exist for the caller (NotFound)."""

    def is_user_mixin(self, mixin_id: str) -> bool:
        """Whether `mixin_id` is not a provider category (a candidate user mixin; the store decides)."""
        ...

    async def define(self, ctx: RequestContext, mixins: Sequence[Mixin]) -> None:
        """POST /-/: add the caller's mixin definitions (Invalid/Conflict on a bad or clashing one)."""
        ...

    async def remove(self, ctx: RequestContext, mixin_ids: Sequence[str]) -> None:
        """DELETE /-/: remove the caller's mixins and their tags (Forbidden for a provider mixin)."""
        ...

    async def known(self, ctx: RequestContext, mixin_ids: Sequence[str]) -> list[str]:
        """Which of `mixin_ids` are the caller's user mixins (unknown ones are left out)."""
        ...

    async def tags_of(self, ctx: RequestContext, kind: str, entity_ids: Sequence[str]) -> dict[str, list[str]]:
        """entity id -> the caller's user mixin ids tagging it (`kind` is the kind term)."""
        ...

    async def tag(self, ctx: RequestContext, mixin_ids: Sequence[str], kind: str, entity_id: str) -> None:
        """Tag one entity with the caller's user mixins (NotFound for a mixin the caller lacks)."""
        ...

    async def set_tags(self, ctx: RequestContext, kind: str, entity_id: str, mixin_ids: Sequence[str]) -> None:
        """Replace the entity's user-mixin tags (PUT on the entity)."""
        ...

    async def untag_entity(self, ctx: RequestContext, kind: str, entity_id: str) -> None:
        """Drop every tag of a deleted entity."""
        ...


@dataclass
class OcciDeps:
    """The OCCI app's dependencies: `backends` maps kind id -> KindBackend; `sources` are the
    provider MixinSources (os_tpl, resource_tpl); `user_mixins` the user-mixin store (None until
    MIXINS' store is wired: then user mixins are refused as unknown)."""

    services: OcciServices | None
    backends: dict[str, KindBackend] = field(default_factory=dict)
    sources: list[MixinSource] = field(default_factory=list)
    user_mixins: UserMixins | None = None
    auth: OcciAuth | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def conf(self) -> Settings | None:
        return self.services.conf if self.services is not None else None

    def backend(self, kind_id: str) -> KindBackend:
        found = self.backends.get(kind_id)
        if found is None:
            raise errors.NotFound(f"no entities of kind {kind_id} are served here")
        return found

    def backend_at(self, collection: str) -> KindBackend | None:
        """The backend whose kind's location is "/<collection>/" (None when none is)."""
        for b in self.backends.values():
            if b.kind.location == f"/{collection}/":
                return b
        return None


def deps(request: Request) -> OcciDeps:
    return deps_of(request, OcciDeps)
