"""The sweep's second half: every task state other than a build's scheduling and a delete
(conductor/sweep.py drives those again), so that no server stays in a task state forever.

A task is stuck when neither its server row nor its open migration record (a move's steps and a
live migration's progress write it) changed for `conductor.task_timeout_seconds`: its message was
lost (purged, or sent to a broker that lost it) or the process that took it died after the ack. As
Nova's periodic tasks do for their own timeouts (instance_build_timeout, _poll_unconfirmed_resizes'
migration error path, _cleanup_incomplete_migrations), each one is ended:

- driven again where the message is idempotent (its handler CASes on the task state it starts
  from): a cold move's finish_migration on the destination (resize_migrated / resize_finish), the
  source's finish_revert_migration once the destination handed the server back (resize_reverting),
  an evacuation's rebuild on the host it was placed on (rebuilding);
- settled by the conductor when its work is the conductor's: a live migration (migrating) is
  rolled back as a dead conductor's is (live.recover_one: both hosts asked, the claim released, the
  record error, the server on its source with a fault); an evacuation never placed (its row still
  on the dead source) gets task None, a fault and its record error;
- settled on the server's host otherwise (`settle_instance`, compute/agent/settle.py): power,
  snapshot, rebuild, resize_prep, an in-place resize, confirm, soft delete and restore, and a build
  an agent took but never finished, from the driver's real state, with a fault naming the task.
  The agent skips a server it is still working on (its lock is held).

A host that is down keeps its rows (its agent's start-up reconcile takes them, or an evacuation),
as sweep.py does. Runs on the sweep's leader only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Protocol

import sqlalchemy as sa

from cumulo.compute import instances as inst_db
from cumulo.compute import live_records, migration_records
from cumulo.compute import states as s
from cumulo.compute.conductor import live, migrate
from cumulo.compute.models import instance_actions, instances, migrations
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.hosts import servicegroup
from cumulo.hosts.models import services


class Conductor(migrate.Conductor, Protocol):
    """What the sweeps use of conductor.manager.Conductor (no import: no circle)."""

    conf: Settings
    _in_flight: set[str]
    _recovery: asyncio.Task[None] | None


LOG = logging.getLogger(__name__)

# Handled by sweep.py (a build still scheduling, a delete), never here.
_SWEPT = (s.SCHEDULING, s.DELETING)
_EVACUATING = (migration_records.ACCEPTED, migration_records.PRE_MIGRATING)


def timed_out(task: str) -> str:
    return (f"Task {task} timed out: no progress within conductor.task_timeout_seconds (its message was "
            "lost, or the process handling it stopped); the server was settled.")


async def _open_records(db: Database, uuids: list[str]) -> dict[str, dict[str, Any]]:
    """Each instance's newest migration record that is not final (any type)."""
    if not uuids:
        return {}
    async with db.read() as conn:
        rows = (await conn.execute(
            sa.select(migrations).where(migrations.c.instance_uuid.in_(uuids),
                                        migrations.c.status.not_in(list(migration_records.FINAL)))
            .order_by(migrations.c.id)
        )).mappings().all()
    return {str(r["instance_uuid"]): dict(r) for r in rows}  # the newest wins


async def _up_hosts(db: Database, conf: Any, hosts: set[str], now: dt.datetime) -> set[str]:
    if not hosts:
        return set()
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(services).where(
            services.c.binary == "nova-compute", services.c.host.in_(hosts)))).mappings().all()
    return {str(r["host"]) for r in rows if servicegroup.is_up(dict(r), conf, now)}


async def _request_id(db: Database, uuid: str) -> str:
    """The newest action's request id (the step driven again records its events there)."""
    async with db.read() as conn:
        found = await conn.execute(sa.select(instance_actions.c.request_id).where(
            instance_actions.c.instance_uuid == uuid).order_by(instance_actions.c.id.desc()).limit(1))
        value = found.scalar()
    return str(value) if value else ""


async def _settle_here(conductor: Conductor, uuid: str, task: str, rec: dict[str, Any] | None,
                       rec_status: str) -> bool:
    """Task None (vm_state as it is: its host is not asked), a fault, the record `rec_status`."""
    async with conductor.db.write() as conn:
        ok = await inst_db.cas_update(conn, uuid, {"task_state": None}, expected_task_state=task)
        if ok:
            await inst_db.add_fault(conn, uuid, 500, timed_out(task), details=timed_out(task))
    if ok and rec is not None:
        await migration_records.set_status_of(conductor.db, rec["uuid"], rec_status, expect=(rec["status"],))
    return ok


async def sweep_tasks(conductor: Conductor, now: dt.datetime) -> list[str]:
    """End once every task stuck longer than the timeout; the uuids acted on."""
    timeout = conductor.conf.conductor.task_timeout_seconds
    if timeout <= 0:
        return []
    before = now - dt.timedelta(seconds=timeout)
    async with conductor.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(
            sa.select(instances.c.uuid, instances.c.vm_state, instances.c.task_state, instances.c.host,
                      instances.c.node, instances.c.updated_at)
            .where(instances.c.deleted.is_(False), instances.c.task_state.is_not(None),
                   instances.c.task_state.not_in(list(_SWEPT)), instances.c.updated_at < before)
            .order_by(instances.c.id)
        )).mappings()]
    rows = [r for r in rows if r["uuid"] not in conductor._in_flight]
    records = await _open_records(conductor.db, [str(r["uuid"]) for r in rows])
    hosts = {str(h) for r in rows for h in (r["host"], (records.get(r["uuid"]) or {}).get("dest_compute"),
                                            (records.get(r["uuid"]) or {}).get("source_compute")) if h}
    up = await _up_hosts(conductor.db, conductor.conf, hosts, now)
    acted: list[str] = []
    for row in rows:
        uuid = str(row["uuid"])
        rec = records.get(uuid)
        if rec is not None and rec["updated_at"] is not None and rec["updated_at"] >= before:
            continue  # the move made progress lately (its steps and progress write the record)
        try:
            if await _end(conductor, row, rec, up):
                acted.append(uuid)
        except Exception:
            LOG.exception("ending the stuck task %s of %s failed", row["task_state"], uuid)
    return acted


async def _end(conductor: Conductor, row: dict[str, Any], rec: dict[str, Any] | None, up: set[str]) -> bool:
    uuid, task, host = str(row["uuid"]), str(row["task_state"]), row["host"]
    kind = rec["migration_type"] if rec is not None else None
    if task == s.MIGRATING:
        if rec is not None and kind == live_records.LIVE_MIGRATION:
            LOG.warning("live migration %s of %s made no progress (%s): rolling it back", rec["uuid"], uuid,
                        rec["status"])
            await live.recover_one(conductor, rec)
            return True
        return await _settle_here(conductor, uuid, task, None, "")
    if (task in (s.REBUILDING, s.REBUILD_SPAWNING) and rec is not None and kind == migration_records.EVACUATION
            and rec["status"] in _EVACUATING):  # (a done one is an earlier move: this is a plain rebuild)
        if host == rec["source_compute"]:  # never placed: the conductor's message was lost
            LOG.warning("evacuation of %s was never placed: settling it", uuid)
            return await _settle_here(conductor, uuid, task, rec, migration_records.ERROR)
        if task == s.REBUILDING and host in up:  # placed; the destination's message was lost
            LOG.warning("evacuation of %s to %s lost its cast: sending it again", uuid, host)
            await conductor.compute.evacuate_instance(str(host), uuid, node=str(row["node"] or host),
                                                      migration_uuid=str(rec["uuid"]),
                                                      request_id=await _request_id(conductor.db, uuid))
            return True
    moving = rec is not None and kind in (migration_records.MIGRATION, migration_records.RESIZE) \
        and rec["source_compute"] != rec["dest_compute"] and host == rec["source_compute"]
    if moving and rec is not None:
        req = await _request_id(conductor.db, uuid)
        if task in (s.RESIZE_MIGRATED, s.RESIZE_FINISH) and rec["status"] == migration_records.POST_MIGRATING:
            if rec["dest_compute"] not in up:
                return False  # the destination's start-up resumes it (migrate.resume_incoming)
            LOG.warning("migration of %s to %s lost its finish: sending it again", uuid, rec["dest_compute"])
            await conductor.compute.finish_migration(str(rec["dest_compute"]), uuid,
                                                     node=str(rec["dest_node"] or rec["dest_compute"]),
                                                     migration_uuid=str(rec["uuid"]), request_id=req)
            return True
        if task == s.RESIZE_REVERTING:
            if host not in up:
                return False
            LOG.warning("revert of %s lost its cast to the source %s: sending it again", uuid, host)
            await conductor.compute.finish_revert_migration(str(host), uuid, node=str(row["node"] or host),
                                                            migration_uuid=str(rec["uuid"]), fault=None,
                                                            request_id=req)
            return True
    if not host or host not in up:
        return False  # the host's agent reconciles it when it is back (or an evacuation)
    LOG.warning("task %s of %s made no progress since %s: its host %s settles it", task, uuid, row["updated_at"], host)
    await conductor.compute.settle_instance(str(host), uuid, node=str(row["node"] or host), task_state=task,
                                            since=row["updated_at"].isoformat(),
                                            request_id=await _request_id(conductor.db, uuid))
    return True
