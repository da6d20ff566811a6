"""os-migrateLive, force_complete and the abort of a live migration: the API side (Nova's
compute_api.live_migrate / live_migrate_force_complete / live_migrate_abort).

The pre-checks Nova makes before it casts, answered at once (400 or 409 as Nova's):
- the server ACTIVE or PAUSED, no task, not locked (409);
- the source node's driver live-migrates (a container's does only where CRIU works: the node
  advertises the capability "live_migration" and, when it does not, why in
  details.live_migration_reason (drivers/runc/criu.py);
  400 naming it);
- a named host: known (400 "Compute host X could not be found."), not the source (400), with a node
  of the source's hypervisor type (400);
- block_migration false while the server has local disks: 400 (instance dirs are never shared here).
Then task_state migrating, a "live-migration" instance action and its migration record (accepted),
in one transaction, and a cast to the conductor (compute/conductor/live.py), which claims on the
destination (room: a claim; none fits: the record error, a fault, the server ACTIVE again). The
broker unreachable (BusUnavailable): Nova's 503, and the record, the action and the task state the
request wrote are undone (service/bus_undo.py), as are force_complete's and abort's actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.bus.base import BusUnavailable
from cumulo.compute import actions as act
from cumulo.compute import instances as inst_db
from cumulo.compute import live_records
from cumulo.compute import states as st
from cumulo.compute.service import boot_volumes, bus_undo
from cumulo.compute.service import transitions as tr
from cumulo.context import RequestContext
from cumulo.hosts.models import compute_nodes

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService

LIVE_MIGRATE = tr.Transition(
    "os-migrateLive", act.LIVE_MIGRATION, frozenset({st.ACTIVE, st.PAUSED}), st.MIGRATING, None, needs_host=True
)
CAPABILITY = "live_migration"


async def _node(svc: ComputeService, **where: Any) -> list[dict[str, Any]]:
    q = sa.select(compute_nodes)
    for key, value in where.items():
        q = q.where(getattr(compute_nodes.c, key) == value)
    async with svc.db.read() as conn:
        return [dict(r) for r in (await conn.execute(q.order_by(compute_nodes.c.id))).mappings()]


def has_local_disks(inst: dict[str, Any]) -> bool:
    """Disks in the instance's dir on its host (root image overlay, ephemeral, swap)."""
    swap = int((inst.get("flavor") or {}).get("swap") or 0)
    return not boot_volumes.is_volume_backed(inst) or int(inst.get("ephemeral_gb") or 0) > 0 or swap > 0


async def live_migrate(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], *, host: str | None,
                       block_migration: bool | None, force: bool) -> str:
    """Check, mark the server migrating and cast to the conductor; the migration record's uuid.
    block_migration None is "auto" (here: true when the server has local disks)."""
    tr.check(ctx, inst, LIVE_MIGRATE)
    uuid = inst["uuid"]
    source = await _node(svc, hypervisor_hostname=inst.get("node") or inst["host"])
    details = dict(source[0].get("details") or {}) if source else {}
    if CAPABILITY not in (details.get("capabilities") or []):
        why = details.get("live_migration_reason") or f"the {details.get('driver', 'unknown')} driver has no live migration"
        raise errors.Invalid(f"Migration pre-check error: instance {uuid} cannot be live-migrated: {why}. "
                             "Use a cold migration (migrate) instead.")
    htype = source[0]["hypervisor_type"] if source else None
    if host:
        if host == inst["host"]:
            raise errors.Invalid(f"Unable to migrate instance ({uuid}) to current host ({host}).")
        nodes = await _node(svc, host=host)
        if not nodes:
            raise errors.Invalid(f"Compute host {host} could not be found.")
        if not any(n["hypervisor_type"] == htype for n in nodes):
            raise errors.Invalid(f"Migration pre-check error: compute host {host} has no {htype} hypervisor "
                                 f"(it runs {', '.join(sorted({str(n['hypervisor_type']) for n in nodes}))}).")
    if block_migration is False and has_local_disks(inst):
        raise errors.Invalid(
            f"Migration pre-check error: instance {uuid} has local disks, which are not on shared storage: a "
            "live migration without block migration requires shared storage or boot-from-volume with no local "
            "disks. Use block_migration true or auto.")
    async with svc.db.write() as conn:
        ok = await inst_db.cas_update(conn, uuid, {"task_state": st.MIGRATING},
                                      expected_task_state=None, expected_vm_state=inst["vm_state"])
        if not ok:
            current = await inst_db.get(conn, uuid)
            if current is None:
                raise errors.NotFound(f"Instance {uuid} could not be found.")
            tr.check(ctx, current, LIVE_MIGRATE)
            raise errors.Conflict(f"Conflict updating instance {uuid}.")
        await act.record_action(conn, ctx, uuid, act.LIVE_MIGRATION)
        migration_uuid = await live_records.start(conn, ctx, inst, host)
    migrating = {**inst, "task_state": st.MIGRATING}

    async def undo() -> None:  # the broker away: the 503, and nothing of the request stays (bus_undo)
        await bus_undo.forget_migration(svc.db, migration_uuid)
        await bus_undo.revert_begin(svc.db, ctx, inst, migrating)

    try:
        await bus_undo.cast_or_undo(svc.conductor.live_migrate_instance(
            uuid, migration_uuid=migration_uuid, host=host, force=force, request_id=ctx.request_id), undo)
    except BusUnavailable:
        raise
    except Exception:
        # Nothing will move it: the request leaves no trace but the failed record (a retry is clean).
        async with svc.db.write() as conn:
            await inst_db.cas_update(conn, uuid, {"task_state": None}, expected_task_state=st.MIGRATING)
        await live_records.update(svc.db, migration_uuid, expect=live_records.OPEN, status=live_records.ERROR)
        raise
    return migration_uuid


async def _in_progress(svc: ComputeService, inst: dict[str, Any], migration_id: int, what: str) -> dict[str, Any]:
    row = await live_records.by_id(svc.db, inst["uuid"], migration_id)
    if row is None or row["migration_type"] != live_records.LIVE_MIGRATION:
        raise errors.NotFound(f"Instance {inst['uuid']} is not migrating: migration {migration_id} not found "
                              f"for it.")
    if inst["task_state"] != st.MIGRATING:
        raise errors.InvalidState(f"Cannot '{what}' instance {inst['uuid']} while it is in task_state "
                                  f"{inst['task_state']}")
    return row


async def force_complete(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], migration_id: int) -> None:
    """Nova 2.22: only a running live migration; the source pauses the guest so the move converges."""
    tr.check_lock(ctx, inst)
    row = await _in_progress(svc, inst, migration_id, "force_complete")
    if row["status"] != live_records.RUNNING:
        raise errors.Invalid(f"Migration {migration_id} state of instance {inst['uuid']} is {row['status']}. "
                             "Cannot force_complete while the migration is in this state.")
    async with svc.db.write() as conn:
        await act.record_action(conn, ctx, inst["uuid"], "live_migration_force_complete")
    await bus_undo.cast_or_undo(
        svc.agents.live_migration_force_complete(row["source_compute"], inst["uuid"], request_id=ctx.request_id),
        lambda: bus_undo.revert_begin(svc.db, ctx, inst, inst))  # the 503: its action goes too


async def abort(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], migration_id: int) -> None:
    """Nova 2.24 (queued and preparing from 2.65): before the move, the record says cancelled and
    the conductor stops at its next step; during it, the source agent cancels the move."""
    tr.check_lock(ctx, inst)
    row = await _in_progress(svc, inst, migration_id, "abort live migration")
    if row["status"] not in live_records.IN_PROGRESS:
        raise errors.Invalid(f"Migration {migration_id} state of instance {inst['uuid']} is {row['status']}. "
                             "Cannot abort live migration while the migration is in this state.")
    async with svc.db.write() as conn:
        await act.record_action(conn, ctx, inst["uuid"], "live_migration_abort")
    if row["status"] != live_records.RUNNING and await live_records.update(
        svc.db, row["uuid"], expect=(live_records.QUEUED, live_records.PREPARING), status=live_records.CANCELLED
    ):
        return
    await bus_undo.cast_or_undo(
        svc.agents.live_migration_abort(row["source_compute"], inst["uuid"], request_id=ctx.request_id),
        lambda: bus_undo.revert_begin(svc.db, ctx, inst, inst))  # the 503: its action goes too
