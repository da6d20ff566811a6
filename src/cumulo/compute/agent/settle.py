"""A task the conductor's sweep found stuck (compute/conductor/stuck.py), settled on its host.

The sweep casts `settle_instance` when a server's task made no progress for
`conductor.task_timeout_seconds` (its message was lost, or the process that took it died after the
ack and a peer had nothing to redeliver). Here, on the server's node, it is settled as the agent's
start-up reconcile settles what a restart interrupted (reconcile.settle_locked, from the driver's
real power state: power tasks to what the guest is, a snapshot's image failed, a resize undone and
its migration record error with the claim rolled back, a rebuild ERROR; a confirm is driven again;
a build is adopted or retried once), and a fault says which task timed out. Nothing is done while
this node still works on the server (its lock is held: the task is slow, not lost) or when the row
moved on since the sweep read it (`since`, its updated_at).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cumulo.compute import instances as inst_db
from cumulo.compute import migration_records
from cumulo.compute import states as s
from cumulo.compute.agent import build, reconcile, resize

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

BUSY, MOVED, SETTLED = "busy", "moved", "settled"
_BUILD_TASKS = frozenset({s.NETWORKING, s.BLOCK_DEVICE_MAPPING, s.SPAWNING})


def timed_out(task: str) -> str:
    return (f"Task {task} timed out: no progress within conductor.task_timeout_seconds (its message was "
            "lost, or the process handling it stopped); the server was settled from its host's state.")


def _unchanged(node: Node, inst: dict[str, Any] | None, task: str, since: str) -> bool:
    return (inst is not None and inst["task_state"] == task and node.owns(inst)
            and inst["updated_at"] is not None and inst["updated_at"].isoformat() == since)


async def settle(node: Node, uuid: str, task: str, since: str) -> str:
    """Settle the server's stuck `task` (unless busy here or moved on); what happened."""
    if node.locks.busy(uuid):
        LOG.info("stuck %s of %s: this node is still at work on it; left alone", task, uuid)
        return BUSY
    inst = await node.load(uuid)
    if not _unchanged(node, inst, task, since) or task in (s.MIGRATING, s.DELETING, s.SCHEDULING):
        return MOVED  # a live migration is its conductor's (conductor/stuck.py); the others the sweep's
    assert inst is not None
    LOG.warning("task %s of %s made no progress since %s: settling it from the driver's state", task, uuid, since)
    reported = {g.uuid: g.power_state for g in await node.driver.list_instances()}.get(uuid)
    if inst["vm_state"] == s.BUILDING and task in _BUILD_TASKS:
        # Adopted if it runs, else retried once, then ERROR with reconcile's fault.
        await reconcile.recover_build(node, inst, reported)
        return SETTLED
    if task == s.RESIZE_CONFIRMING and inst["vm_state"] == s.RESIZED:
        await resize.confirm(node, uuid, None)  # a confirm is idempotent: done again
    else:
        async with node.locks.hold(uuid):
            fresh = await node.load(uuid)
            if not _unchanged(node, fresh, task, since):
                return MOVED
            assert fresh is not None
            await reconcile.settle_locked(node, fresh, reported)
        if task in build.REBUILD_TASK_STATES:  # an evacuation rebuilt here that never finished
            await migration_records.set_status(node.db, uuid, migration_records.FAILED,
                                               current=(migration_records.ACCEPTED, migration_records.PRE_MIGRATING))
    after = await node.load(uuid)
    if after is None or after["task_state"] == task:
        return MOVED
    async with node.db.write() as conn:
        await inst_db.add_fault(conn, uuid, 500, timed_out(task), details=timed_out(task), host=node.host)
    return SETTLED
