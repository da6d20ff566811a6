"""The ledger (`paas_resources`): what a task made, for adoption on resume and for rollback.

`TaskLedger` is the `Ledger` a step's action gets (`run.ledger`):
- `intend(type, name)` BEFORE a create: a row in state "creating" (kept once per instance, type and
  name: a second attempt of the step reuses it);
- `created(type, name, id)` after it: the id, state "created";
- `adopt(type, name)` on a new attempt: the id of what an earlier attempt made, looked up through
  the services by its deterministic name (servers by name AND metadata paas_instance, security
  groups and networks by name in the project, images by name, floating IPs by description = the
  ledger name). Several found: the oldest is kept, the others deleted. None: None (create it).
- `deleted(type, name)` (not in the Protocol; destroy actions use it): state "deleted".

`find` and `delete_resource` are the per-type lookups and undos the reverter and the reaper share.
Ledger types (OWNERS.md): server, security_group, floating_ip, image, network, subnet,
router_interface (resource_id "<router id>:<subnet id>"), server_group (a tier's affinity,
actions_group.py; found by name in the project).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.paas.deps import PaasServices
from cumulo.paas.models import paas_resources

R = paas_resources.c
LIVE = ("creating", "created")
TYPES = ("server", "security_group", "floating_ip", "image", "network", "subnet", "router_interface", "server_group")


class TaskLedger:
    """The Ledger of one step of one task (engine/base.py Ledger)."""

    def __init__(self, services: PaasServices, ctx: RequestContext, instance_id: str, task_id: int,
                 step_key: str) -> None:
        self.services, self.ctx = services, ctx
        self.instance_id, self.task_id, self.step_key = instance_id, task_id, step_key

    async def _row(self, type_: str, name: str) -> dict[str, Any] | None:
        async with self.services.db.read() as conn:
            row = (await conn.execute(
                sa.select(paas_resources).where(R.env_instance_id == self.instance_id, R.type == type_, R.name == name,
                                                R.state.in_(LIVE)).order_by(R.id)
            )).mappings().first()
        return dict(row) if row else None

    async def intend(self, type_: str, name: str) -> None:
        if type_ not in TYPES:
            raise ValueError(f"unknown ledger type {type_!r}")
        async with self.services.db.write() as conn:
            have = (await conn.execute(
                sa.select(R.id).where(R.env_instance_id == self.instance_id, R.type == type_, R.name == name,
                                      R.state.in_(LIVE))
            )).first()
            if have is None:
                await conn.execute(sa.insert(paas_resources).values(
                    env_instance_id=self.instance_id, task_id=self.task_id, step_key=self.step_key, type=type_,
                    name=name, state="creating", created_at=utcnow()))

    async def created(self, type_: str, name: str, resource_id: str) -> None:
        async with self.services.db.write() as conn:
            done = await conn.execute(
                sa.update(paas_resources)
                .where(R.env_instance_id == self.instance_id, R.type == type_, R.name == name, R.state.in_(LIVE))
                .values(resource_id=resource_id, state="created")
            )
            if not done.rowcount:  # created without an intent: record it anyway, rollback must see it
                await conn.execute(sa.insert(paas_resources).values(
                    env_instance_id=self.instance_id, task_id=self.task_id, step_key=self.step_key, type=type_,
                    name=name, resource_id=resource_id, state="created", created_at=utcnow()))

    async def deleted(self, type_: str, name: str) -> None:
        async with self.services.db.write() as conn:
            await conn.execute(
                sa.update(paas_resources)
                .where(R.env_instance_id == self.instance_id, R.type == type_, R.name == name, R.state.in_(LIVE))
                .values(state="deleted")
            )

    async def adopt(self, type_: str, name: str) -> str | None:
        row = await self._row(type_, name)
        if row is None:
            return None
        found = await find(self.services, self.ctx, self.instance_id, type_, name)
        if row["resource_id"] and row["resource_id"] not in found and type_ == "router_interface":
            found = [row["resource_id"]]  # no lookup by name: the recorded id is the truth
        if not found:
            return None
        keep, extra = found[0], found[1:]
        for other in extra:  # a create that ran twice (a crash between create and record)
            await delete_resource(self.services, self.ctx, type_, other)
        await self.created(type_, name, keep)
        return keep


async def find(services: PaasServices, ctx: RequestContext, instance_id: str, type_: str, name: str) -> list[str]:
    """Ids of the live resources of `type_` named `name` in the caller's project, oldest first."""
    if type_ == "server":
        from cumulo.compute.service.listing import ListQuery

        q = ListQuery(project_id=ctx.project_id or "", regex={"name": f"^{re.escape(name)}$"},
                      sort=[("created_at", "asc"), ("id", "asc")])
        rows, _f, _s = await services.compute.list_servers(q, with_faults=False, with_host_status=False)
        return [r["uuid"] for r in rows if r["display_name"] == name and not _server_gone(r)
                and (r.get("metadata") or {}).get("paas_instance") == instance_id]
    if type_ == "security_group":
        groups = await services.network.list_groups(ctx)
        return [g["id"] for g in groups if g["name"] == name and g.get("project_id") == ctx.project_id]
    if type_ == "floating_ip":
        fips = await services.network.list_floatingips(ctx)
        return [f["id"] for f in fips if f.get("description") == name and f.get("project_id") == ctx.project_id]
    if type_ == "image":
        page, _marker = await services.images.list_images(ctx, [("name", name), ("sort_key", "created_at"),
                                                                ("sort_dir", "asc")])
        return [i["id"] for i in page if i["name"] == name and i.get("owner") == ctx.project_id
                and i.get("status") not in ("deleted", "pending_delete", "killed")]
    if type_ == "network":
        nets = await services.network.list_networks(ctx)
        return [n["id"] for n in nets if n["name"] == name and n.get("project_id") == ctx.project_id]
    if type_ == "subnet":
        subnets = await services.network.list_subnets(ctx)
        return [s["id"] for s in subnets if s["name"] == name and s.get("project_id") == ctx.project_id]
    if type_ == "server_group":
        from cumulo.compute.service.server_groups import ServerGroupService

        groups = await ServerGroupService(services.db, services.conf).list_groups(ctx.project_id or "")
        return [str(g["uuid"]) for g in groups if g["name"] == name]
    return []


def _server_gone(row: Mapping[str, Any]) -> bool:
    return bool(row.get("deleted")) or row.get("vm_state") in ("deleted", "soft-delete") \
        or row.get("task_state") in ("deleting", "soft-deleting")


async def delete_resource(services: PaasServices, ctx: RequestContext, type_: str, resource_id: str) -> None:
    """Undo one resource; a resource already gone counts as done (NotFound is swallowed). A server
    is only asked to go here: `server_gone` tells when it has."""
    try:
        if type_ == "server":
            inst = await services.compute.get(ctx, resource_id)
            await services.compute.delete(ctx, inst)
        elif type_ == "security_group":
            await services.network.delete_group(ctx, resource_id)
        elif type_ == "floating_ip":
            await services.network.delete_floatingip(ctx, resource_id)
        elif type_ == "image":
            await services.images.delete(ctx, resource_id)
        elif type_ == "network":
            await services.network.delete_network(ctx, resource_id)
        elif type_ == "subnet":
            await services.network.delete_subnet(ctx, resource_id)
        elif type_ == "server_group":
            from cumulo.compute.service.server_groups import ServerGroupService

            await ServerGroupService(services.db, services.conf).delete(ctx, resource_id)
        elif type_ == "router_interface":
            router_id, _, subnet_id = resource_id.partition(":")
            await services.network.remove_router_interface(ctx, router_id, {"subnet_id": subnet_id})
        else:
            raise ValueError(f"unknown ledger type {type_!r}")
    except errors.NotFound:
        return


async def server_gone(services: PaasServices, ctx: RequestContext, server_id: str) -> bool:
    try:
        await services.compute.get(ctx, server_id)
    except errors.NotFound:
        return True
    return False
