"""Deferred delete on the agent: soft delete (power off → SOFT_DELETED), restore (power on → ACTIVE),
and the periodic reclaim that really deletes servers soft-deleted longer than
conf.reclaim_instance_interval (Nova's _reclaim_queued_deletes).

The reclaim pass claims each server with the same compare-and-swap a restore makes, from
(soft-delete, no task): the one that commits first wins, the other one sees a conflict.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo.compute import actions
from cumulo.compute import instances as inst_db
from cumulo.compute import states as s
from cumulo.compute.agent import build
from cumulo.compute.drivers.base import Capability, PowerState, driver_for
from cumulo.compute.models import instances
from cumulo.db import utcnow

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

TASK_STATES = frozenset({s.SOFT_DELETING, s.RESTORING})
_OFF = (PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.NOSTATE)


def reclaim_spacing(interval: float) -> float:
    """How often the reclaim pass runs: half the interval (a server goes at most 1.5× the interval
    after its delete), at least every minute, never more than twice a second."""
    return max(0.5, min(interval / 2.0, 60.0))


async def _power_off(node: Node, uuid: str) -> None:
    if node.supports(Capability.POWER) and await node.power_of(uuid) not in _OFF:
        await driver_for(node.driver, Capability.POWER, node=node.name).power_off(uuid)


async def soft_delete(node: Node, uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] != s.SOFT_DELETING:
            LOG.info("soft delete of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            return
        await soft_delete_locked(node, inst, request_id)


async def soft_delete_locked(node: Node, inst: dict[str, Any], request_id: str | None) -> None:
    uuid = inst["uuid"]
    req = await node.request_id_for(uuid, request_id, actions.DELETE)
    try:
        async with actions.event(node.db, uuid, req, "compute_soft_delete_instance", node.host):
            await _power_off(node, uuid)
    except Exception as exc:
        # Nova's reverts_task_state: the server stays as it was, with a fault, and is not queued.
        LOG.warning("soft delete of %s failed: %s", uuid, exc)
        await node.set_state(uuid, {"task_state": None, "deleted_at": None, "power_state": int(await node.power_of(uuid))},
                            expected_task_state=s.SOFT_DELETING, fault=exc)
        return
    await node.set_state(
        uuid, {"vm_state": s.SOFT_DELETED, "task_state": None, "power_state": int(await node.power_of(uuid))},
        expected_task_state=s.SOFT_DELETING,
    )


async def restore(node: Node, uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] != s.RESTORING:
            LOG.info("restore of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            return
        await restore_locked(node, inst, request_id)


async def restore_locked(node: Node, inst: dict[str, Any], request_id: str | None) -> None:
    uuid = inst["uuid"]
    req = await node.request_id_for(uuid, request_id, actions.RESTORE)
    try:
        async with actions.event(node.db, uuid, req, "compute_restore_instance", node.host):
            if await node.power_of(uuid) != PowerState.RUNNING:
                await driver_for(node.driver, Capability.POWER, node=node.name).power_on(await node.spec(inst))
    except Exception as exc:
        # Still soft-deleted; its clock restarts so that the owner has a full interval to retry.
        LOG.warning("restore of %s failed: %s", uuid, exc)
        await node.set_state(uuid, {"task_state": None, "deleted_at": utcnow(), "power_state": int(await node.power_of(uuid))},
                            expected_task_state=s.RESTORING, fault=exc)
        return
    await node.set_state(
        uuid, {"vm_state": s.ACTIVE, "task_state": None, "power_state": int(await node.power_of(uuid))},
        expected_task_state=s.RESTORING,
    )


async def settle_locked(node: Node, inst: dict[str, Any]) -> None:
    """After a restart: finish a soft delete or a restore that was interrupted."""
    if inst["task_state"] == s.SOFT_DELETING:
        await soft_delete_locked(node, inst, None)
    elif inst["task_state"] == s.RESTORING:
        await restore_locked(node, inst, None)


async def claim_for_reclaim(node: Node, uuid: str, cutoff: dt.datetime) -> bool:
    """(soft-delete, no task, deleted before cutoff) → deleting; False when a restore came first."""
    async with node.db.write() as conn:
        res = await conn.execute(
            sa.update(instances)
            .where(
                instances.c.uuid == uuid, instances.c.deleted.is_(False), instances.c.vm_state == s.SOFT_DELETED,
                instances.c.task_state.is_(None),
                sa.or_(instances.c.deleted_at.is_(None), instances.c.deleted_at <= cutoff),
            )
            .values(task_state=s.DELETING, updated_at=utcnow())
        )
        return bool(res.rowcount)


async def reclaim(node: Node, now: dt.datetime | None = None) -> list[str]:
    """Delete this node's servers soft-deleted for longer than the interval; their uuids."""
    interval = node.conf.reclaim_instance_interval
    if interval <= 0:
        return []
    cutoff = (now or utcnow()) - dt.timedelta(seconds=interval)
    q = sa.select(instances.c.uuid).where(
        node.owns_clause(), instances.c.deleted.is_(False), instances.c.vm_state == s.SOFT_DELETED,
        instances.c.task_state.is_(None), sa.or_(instances.c.deleted_at.is_(None), instances.c.deleted_at <= cutoff),
    )
    async with node.db.read() as conn:
        due = [r[0] for r in await conn.execute(q)]
    reclaimed: list[str] = []
    for uuid in due:
        if not await claim_for_reclaim(node, uuid, cutoff):
            continue
        LOG.info("reclaiming soft-deleted instance %s", uuid)
        await build.terminate(node, uuid, None)
        async with node.db.read() as conn:
            if await inst_db.get(conn, uuid) is None:
                reclaimed.append(uuid)
    return reclaimed
