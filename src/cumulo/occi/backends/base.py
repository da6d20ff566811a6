"""The seam between the OCCI API and the services: one `KindBackend` per kind, and
`MixinSource`s for the mixins that come from the cloud's data (os_tpl from images, resource_tpl
from flavors, user-defined mixins from the DB).

The API has already checked, before a backend is called: the caller's token and scope; that the
request's kind is the backend's; that every attribute is known to the kind or one of the request's
mixins, has the right type, and that required ones are present (missing immutable/required ones a
400 naming them); that the action is one of the kind's. Backends raise the domain errors of
`cumulo.errors` (NotFound 404, Invalid 400, Conflict/InvalidState 409 for an action not allowed in
the state, Forbidden 403, OverQuota), which the API renders in OCCI's fault format.
"""

from __future__ import annotations

from typing import Protocol

from cumulo.context import RequestContext
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind, Mixin


class KindBackend(Protocol):
    """The entities of one kind (compute, storage, network, networkinterface, storagelink)."""

    kind: Kind

    async def list(self, ctx: RequestContext) -> list[Entity]:
        """Every entity of this kind the caller's project may see (the project's own, as the
        OpenStack list calls scope them)."""
        ...

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        """One entity; NotFound when it does not exist or belongs to another project."""
        ...

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        """Create from a validated request (resources: with inline `req.links`). Returns at once
        (202-style asynchrony is the service's: the entity may still be building)."""
        ...

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        """POST to the entity (partial update, `replace=False`) or PUT (full update, `replace=True`:
        mutable attributes absent from `req` return to their defaults, mixins are replaced)."""
        ...

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        """Delete (for a link: detach)."""
        ...

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        """Trigger an action; InvalidState (409) when the current state does not allow it."""
        ...


class MixinSource(Protocol):
    """Mixins known from data the caller can see (images, flavors, the project's own mixins)."""

    async def mixins(self, ctx: RequestContext) -> list[Mixin]:
        ...
