"""The scale-in bookkeeping steps of a victim node (the scale plan, engine/plan_scale.py).

- "leave:<tier>:<r>" (kind "node_leaving"), first: the row goes UNINSTALLING, which takes the node out
  of its tier's membership (paas/attributes.py leaves such nodes out of IP/IPALL/MEMBERS), so the
  dependents' reconfigure that follows no longer names it.
- "removed:<tier>:<r>" (kind "node_removed"), last, after its products were stopped and its floating
  IP and server deleted: the row is kept, so its replica number is never reused: status UNDEPLOYED,
  no server, no address; its product instances go UNINSTALLED.
Both are idempotent: a second run finds the row already so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo.db import utcnow
from cumulo.paas import models
from cumulo.paas.engine.base import Status, StepFailed, StepRun, action


async def _node_id(run: StepRun, conn: Any, tier: str, replica: int) -> Any:
    ti = models.paas_tier_instances
    row = (await conn.execute(
        sa.select(ti.c.id, ti.c.name).where(ti.c.env_instance_id == run.instance_id, ti.c.tier == tier,
                                            ti.c.replica == replica)
    )).first()
    if row is None:
        raise StepFailed(f"node {replica} of tier {tier} is not in the inventory")
    return row


@action("node_leaving")
async def node_leaving(run: StepRun) -> Mapping[str, Any]:
    params = run.step["params"]
    ti = models.paas_tier_instances
    async with run.services.db.write() as conn:
        row = await _node_id(run, conn, str(params["tier"]), int(params["replica"]))
        await conn.execute(sa.update(ti).where(ti.c.id == row.id, ti.c.status != str(Status.UNDEPLOYED)).values(
            status=str(Status.UNINSTALLING), updated_at=utcnow()))
    return {"node": row.name, "status": str(Status.UNINSTALLING)}


@action("node_removed")
async def node_removed(run: StepRun) -> Mapping[str, Any]:
    params = run.step["params"]
    tier, replica = str(params["tier"]), int(params["replica"])
    ti, pi = models.paas_tier_instances, models.paas_product_instances
    now = utcnow()
    async with run.services.db.write() as conn:
        row = await _node_id(run, conn, tier, replica)
        await conn.execute(sa.update(ti).where(ti.c.id == row.id).values(
            status=str(Status.UNDEPLOYED), server_id=None, ip=None, floating_ip=None, updated_at=now))
        await conn.execute(sa.update(pi).where(pi.c.tier_instance_id == row.id).values(
            status=str(Status.UNINSTALLED), updated_at=now))
    return {"node": row.name, "status": str(Status.UNDEPLOYED)}
