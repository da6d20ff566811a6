"""In-test OCCI backends for the API unit tests: real implementations of the KindBackend protocol over
dicts, scoped by project exactly as the service-backed ones are (another project's entity is
NotFound), with a compute-like state machine so that actions can be refused (InvalidState)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi import categories
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind, Mixin

OS_TPL_SCHEME = "http://schemas.openstack.org/template/os#"


@dataclass
class FakeBackend:
    kind: Kind
    rows: dict[str, tuple[str, Entity]] = field(default_factory=dict)  # id -> (project, entity)
    acted: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def _mine(self, ctx: RequestContext, entity_id: str) -> Entity:
        found = self.rows.get(entity_id)
        if found is None or found[0] != ctx.project_id:
            raise errors.NotFound(f"{self.kind.term} {entity_id} could not be found")
        return found[1]

    async def list(self, ctx: RequestContext) -> list[Entity]:
        return [_copy(e) for p, e in self.rows.values() if p == ctx.project_id]

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        return _copy(self._mine(ctx, entity_id))

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        eid = str(uuid.uuid4())
        attrs = {k: v for k, v in req.attributes.items()}
        attrs["occi.core.id"] = eid
        if self.kind.id == categories.COMPUTE.id:
            attrs["occi.compute.state"] = "active"
        elif self.kind.id == categories.STORAGE.id:
            attrs.setdefault("occi.storage.size", 1.0)
            attrs["occi.storage.state"] = "online"
        elif self.kind.id == categories.NETWORK.id:
            attrs["occi.network.state"] = "active"
        entity = Entity(kind=self.kind.id, id=eid, location=f"{self.kind.location}{eid}", mixins=list(req.mixins),
                        attributes=attrs)
        self.rows[eid] = (str(ctx.project_id), entity)
        return _copy(entity)

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        entity = self._mine(ctx, entity_id)
        if replace:
            keep = {k: v for k, v in entity.attributes.items() if k.endswith(".state") or k == "occi.core.id"}
            entity.attributes = {**keep, **req.attributes}
            entity.mixins = list(req.mixins)
        else:
            entity.attributes.update(req.attributes)
            entity.mixins += [m for m in req.mixins if m not in entity.mixins]
        return _copy(entity)

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        self._mine(ctx, entity_id)
        del self.rows[entity_id]

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        entity = self._mine(ctx, entity_id)
        term = action.action.split("#", 1)[-1]
        if self.kind.id == categories.COMPUTE.id:
            state = entity.attributes["occi.compute.state"]
            if term == "start":
                if state == "active":
                    raise errors.InvalidState(f"compute {entity_id} is already active")
                entity.attributes["occi.compute.state"] = "active"
            elif term == "stop":
                if state != "active":
                    raise errors.InvalidState(f"compute {entity_id} is not active")
                entity.attributes["occi.compute.state"] = "inactive"
        self.acted.append((entity_id, term, dict(action.attributes)))


def _copy(e: Entity) -> Entity:
    return Entity(kind=e.kind, id=e.id, location=e.location, mixins=list(e.mixins), attributes=dict(e.attributes),
                  actions=list(e.actions), links=list(e.links))


@dataclass
class FakeTemplates:
    """os_tpl mixins, as COMPUTE's templates source gives them (one per image)."""

    terms: tuple[str, ...] = ("img-a", "img-b")

    async def mixins(self, ctx: RequestContext) -> list[Mixin]:
        return [Mixin(OS_TPL_SCHEME, t, f"image {t}", depends=(categories.OS_TPL.id,),
                      applies=(categories.COMPUTE.id,), location=f"/os_tpl/{t}/") for t in self.terms]
