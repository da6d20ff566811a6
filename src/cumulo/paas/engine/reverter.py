"""Rollback: the ledger replayed in reverse, as persisted steps, and the reaper of leftovers.

`revert_steps(rows)` plans one step "revert:<ledger row id>" (kind "revert") per live ledger row:
floating IPs first, then servers (each waits until its server is gone), images, security groups,
router interfaces, subnets, networks; each group waits for the one before it (a security group in
use by a server that is still going would refuse). They are ordinary steps, so a crash during a
rollback resumes the rollback. Each undo treats NotFound as done. DEPLOY's destroy plan may reuse
`revert_steps` over the instance's whole ledger.

`reap(services)` (engine start): the "DB is the truth, reap the rest" rule. Servers whose metadata
paas_instance names an instance the DB no longer has, and live ledger rows of such instances, are
deleted. Server metadata is the tenant's to write: a server is reaped only when a task of ITS
project names that instance (the engine made it: a deploy's task row is written with the instance
row, before any server, and task rows stay), so a tenant's own server that merely carries the key
is never deleted by the system.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine.base import StepRun, StepSpec, action
from cumulo.paas.engine.ledger import LIVE, delete_resource, find, server_gone
from cumulo.paas.models import paas_env_instances, paas_resources, paas_tasks

LOG = logging.getLogger(__name__)
R = paas_resources.c
ORDER = ("floating_ip", "server", "server_group", "image", "security_group", "router_interface", "subnet", "network")
KIND = "revert"


def revert_steps(rows: Sequence[Mapping[str, Any]], *, after: Sequence[str] = ()) -> list[StepSpec]:
    """The rollback plan over ledger rows (`paas_resources` dicts), newest first inside a type."""
    out: list[StepSpec] = []
    previous: tuple[str, ...] = tuple(after)
    for type_ in ORDER:
        group = sorted((r for r in rows if r["type"] == type_ and r["state"] in LIVE), key=lambda r: -int(r["id"]))
        keys = []
        for r in group:
            key = f"revert:{r['id']}"
            out.append(StepSpec(key, KIND, previous, {"resource": int(r["id"]), "type": type_, "name": r["name"]}))
            keys.append(key)
        if keys:
            previous = tuple(keys)
    return out


async def ledger_rows(services: PaasServices, *, task_id: int | None = None,
                      instance_id: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(paas_resources).where(R.state.in_(LIVE)).order_by(R.id)
    if task_id is not None:
        q = q.where(R.task_id == task_id)
    if instance_id is not None:
        q = q.where(R.env_instance_id == instance_id)
    async with services.db.read() as conn:
        return [dict(r) for r in (await conn.execute(q)).mappings().all()]


async def undo(services: PaasServices, ctx: RequestContext, row: Mapping[str, Any], *, timeout: float) -> None:
    """Delete what one ledger row names (by its id, and by name when the id was never recorded:
    a create that crashed after the intent), wait for servers to be gone, mark the row deleted."""
    type_ = str(row["type"])
    ids = [row["resource_id"]] if row["resource_id"] else []
    if type_ != "router_interface":
        ids += [i for i in await find(services, ctx, row["env_instance_id"], type_, row["name"]) if i not in ids]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for rid in ids:
        delay = 0.2
        while True:
            try:
                await delete_resource(services, ctx, type_, rid)
                break
            except errors.Conflict:  # e.g. a security group whose server's port is still going
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
    if type_ == "server":
        for rid in ids:
            delay = 0.2
            while not await server_gone(services, ctx, rid):
                if loop.time() > deadline:
                    raise TimeoutError(f"server {rid} still there after {timeout:.0f} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
    async with services.db.write() as conn:
        await conn.execute(sa.update(paas_resources).where(R.id == row["id"]).values(state="deleted"))


@action(KIND)
async def revert(run: StepRun) -> Mapping[str, Any]:
    """One undo of the rollback (params: resource = the ledger row id)."""
    rid = int(run.step["params"]["resource"])
    async with run.services.db.read() as conn:
        row = (await conn.execute(sa.select(paas_resources).where(R.id == rid))).mappings().first()
    if row is None or row["state"] not in LIVE:
        return {"deleted": False}
    await undo(run.services, run.ctx, dict(row), timeout=run.services.conf.paas.boot_timeout)
    return {"deleted": True, "type": row["type"], "resource_id": row["resource_id"]}


async def reap(services: PaasServices) -> int:
    """Delete what names an environment instance the DB does not have; the count deleted.

    The servers and the ledger are read BEFORE the instances: an instance row is written before
    anything of it is made, so a deploy that starts meanwhile is never taken for a leftover."""
    from cumulo.compute.service.listing import ListQuery

    ctx = RequestContext.system()
    servers: list[tuple[str, str, str]] = []  # (server uuid, its project, the instance its metadata names)
    marker: str | None = None
    while True:  # every project's servers: the metadata names the instance
        q = ListQuery(project_id=None, limit=500, marker=marker, sort=[("created_at", "asc"), ("id", "asc")])
        page, _f, _s = await services.compute.list_servers(q, with_faults=False, with_host_status=False)
        for server in page:
            owner = (server.get("metadata") or {}).get("paas_instance")
            if owner and not server.get("deleted") and server.get("task_state") != "deleting":
                servers.append((str(server["uuid"]), str(server["project_id"]), str(owner)))
        if len(page) < 500:
            break
        marker = page[-1]["uuid"]
    async with services.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(sa.select(paas_resources).where(R.state.in_(LIVE)))).mappings()]
        known = set((await conn.execute(sa.select(paas_env_instances.c.id))).scalars())
        gone = {owner for _u, _p, owner in servers if owner not in known}
        made = set() if not gone else {
            (str(p), str(i)) for p, i in (await conn.execute(sa.select(paas_tasks.c.project_id, paas_tasks.c.env_instance_id)
                                                             .where(paas_tasks.c.env_instance_id.in_(sorted(gone))))).all()}
    count = 0
    for uuid, project, owner in servers:
        if owner not in known and (project, owner) in made:
            LOG.warning("paas: reaping server %s of gone environment instance %s", uuid, owner)
            await delete_resource(services, ctx, "server", uuid)
            count += 1
    orphans = [r for r in rows if r["env_instance_id"] not in known]
    for row in sorted(orphans, key=lambda r: ORDER.index(r["type"]) if r["type"] in ORDER else len(ORDER)):
        try:
            if row["type"] == "server" or not row["resource_id"]:
                async with services.db.write() as conn:  # servers: reaped above by metadata
                    await conn.execute(sa.update(paas_resources).where(R.id == row["id"]).values(state="deleted"))
                continue
            await delete_resource(services, ctx, row["type"], row["resource_id"])
            async with services.db.write() as conn:
                await conn.execute(sa.update(paas_resources).where(R.id == row["id"]).values(state="deleted"))
            count += 1
        except Exception as exc:  # noqa: BLE001 - a reap is best effort; the next start tries again
            LOG.warning("paas: could not reap %s %s: %s", row["type"], row["resource_id"], exc)
    return count
