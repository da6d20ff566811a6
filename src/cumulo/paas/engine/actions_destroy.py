"""The destroy step kinds (DEPLOY's): "delete_resource" and "finish".

- "delete_resource" (keys "delete:<ledger type>:<name>", params {type, name, resource_id}; what
  ELASTICITY's scale-in plans for a victim's floating IP and server): the instance's live ledger
  rows of that type and name are undone as a rollback undoes them (engine/reverter.py `undo`: by id,
  and by name for an intent without an id; a security group still in use is retried; a server is
  waited for until gone; the row marked "deleted"). A resource_id no ledger row names (a server of
  an old node row) is deleted the same way. Anything already gone counts as done. Output
  {"deleted": [ids]}.
- "finish" (the destroy plan's last step): the instance is UNDEPLOYED (the runner then deletes its
  row, OWNERS.md).

The whole-ledger part of a destroy is the reverter's own "revert:<ledger row id>" steps
(plan.destroy_plan), so a destroy and a rollback undo resources the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.db import utcnow
from cumulo.paas.engine import reverter
from cumulo.paas.engine.base import Status, StepFailed, StepRun, action
from cumulo.paas.engine.ledger import LIVE, delete_resource, server_gone
from cumulo.paas.models import paas_env_instances, paas_resources

R = paas_resources.c


async def _delete_unrecorded(run: StepRun, type_: str, resource_id: str, deadline: float) -> None:
    """Delete a resource no live ledger row names (retrying a Conflict), a server until gone."""
    loop = asyncio.get_running_loop()
    delay = 0.2
    while True:
        try:
            await delete_resource(run.services, run.ctx, type_, resource_id)
            break
        except errors.Conflict:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    while type_ == "server" and not await server_gone(run.services, run.ctx, resource_id):
        if loop.time() > deadline:
            raise TimeoutError(f"server {resource_id} still there")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


@action("delete_resource")
async def delete_one(run: StepRun) -> Mapping[str, Any]:
    """Step "delete:<type>:<name>" (module docstring)."""
    params = run.step["params"]
    type_, name, rid = str(params["type"]), str(params["name"]), params.get("resource_id")
    timeout = float(run.services.conf.paas.boot_timeout)
    async with run.services.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(sa.select(paas_resources).where(
            R.env_instance_id == run.instance_id, R.type == type_, R.name == name, R.state.in_(LIVE),
        ).order_by(R.id))).mappings()]
    done: list[str] = []
    try:
        for row in rows:
            await reverter.undo(run.services, run.ctx, row, timeout=timeout)
            if row["resource_id"]:
                done.append(str(row["resource_id"]))
        if rid and str(rid) not in done:
            await _delete_unrecorded(run, type_, str(rid), asyncio.get_running_loop().time() + timeout)
            done.append(str(rid))
    except (errors.CumuloError, TimeoutError) as exc:
        raise StepFailed(f"{type_} {name}: could not delete it: {exc}") from exc
    return {"deleted": done}


@action("finish")
async def finish_destroy(run: StepRun) -> Mapping[str, Any]:
    """Step "finish" of a destroy: the instance is UNDEPLOYED (the runner then deletes its row)."""
    async with run.services.db.write() as conn:
        await conn.execute(sa.update(paas_env_instances).where(paas_env_instances.c.id == run.instance_id)
                           .values(status=str(Status.UNDEPLOYED), updated_at=utcnow()))
    return {"status": str(Status.UNDEPLOYED)}
