"""The conductor's periodic sweep: no server stays in a task state because a cast was lost.

A cast can be lost between a commit and its send: the API committed a BUILD row (or a delete)
and its process died, or the broker went away after the commit and the sender died before its
undo (bus_undo). Nothing would ever move such a row, since every other step is driven by the
message. Every `conductor.sweep_interval` seconds one conductor of the cloud (the holder of the
database leadership "conductor-sweep"; on SQLite, the only one) drives again what has not
changed for `conductor.stuck_build_seconds`:

- building / scheduling with no host: `build_instances` again (the placement's CAS on
  "still scheduling, still no host" makes a build that was merely slow, and arrives after all,
  find nothing to do, its claim rolled back);
- building / scheduling on a host whose service is up: `build_and_run_instance` cast again
  (the agent CASes scheduling -> spawning under the instance's lock: a duplicate is skipped);
- deleting on a host whose service is up: `terminate_instance` cast again (terminate is
  idempotent); deleting with no host is finished here (as the start-up recovery does).

Every other task state stuck for `conductor.task_timeout_seconds` is driven again or settled by
conductor/stuck.py in the same round.

A host that is down keeps its rows: its agent's start-up reconcile takes them, or an admin
evacuates (Nova's behaviour). The threshold is well above any queueing a healthy cloud shows;
a build that was queued that long is driven twice, which the CASes above make harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Protocol

import sqlalchemy as sa

from cumulo.compute import actions
from cumulo.compute import states as s
from cumulo.compute.conductor import auto_confirm, stuck
from cumulo.compute.models import instances
from cumulo.compute.specs import action_request_id
from cumulo.db import utcnow
from cumulo.hosts import servicegroup
from cumulo.hosts.models import services


class Conductor(stuck.Conductor, Protocol):
    """What the sweep uses of conductor.manager.Conductor (which starts it; no import: no circle)."""

    async def build_instances(self, instance_uuids: list[str]) -> None: ...

    async def _recover_one(self, uuid: str, vm: str, task: str | None) -> None: ...


LOG = logging.getLogger(__name__)

LEADER = "conductor-sweep"


async def run(conductor: Conductor) -> None:
    """Sweep every `sweep_interval` seconds while this conductor leads (cancelled at stop)."""
    interval = conductor.conf.conductor.sweep_interval
    lead = None
    try:
        while True:
            await asyncio.sleep(interval)
            if conductor._recovery is not None and not conductor._recovery.done():
                # The start-up recovery first: it releases the claim of each row it schedules again,
                # so a build this sweep placed meanwhile would end up ACTIVE without its claim.
                continue
            try:
                if lead is None or not await lead.still_held():
                    lead = await conductor.db.try_leader(LEADER)
                if lead is not None:
                    await sweep(conductor)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database or the bus away: the next round tries again
                LOG.warning("conductor sweep failed; trying again in %.0fs", interval, exc_info=True)
    finally:
        if lead is not None:
            await lead.release()


async def sweep(conductor: Conductor, now: dt.datetime | None = None) -> list[str]:
    """Drive once what has been stuck longer than the threshold; the uuids driven."""
    now = now or utcnow()
    before = now - dt.timedelta(seconds=conductor.conf.conductor.stuck_build_seconds)
    async with conductor.db.read() as conn:
        rows = (await conn.execute(
            sa.select(instances.c.uuid, instances.c.vm_state, instances.c.task_state, instances.c.host,
                      instances.c.node)
            .where(instances.c.deleted.is_(False), instances.c.updated_at < before,
                   sa.or_(sa.and_(instances.c.vm_state == s.BUILDING, instances.c.task_state == s.SCHEDULING),
                          instances.c.task_state == s.DELETING))
            .order_by(instances.c.id)
        )).all()
        hosts = {str(r[3]) for r in rows if r[3]}
        up: set[str] = set()
        if hosts:
            for row in (await conn.execute(sa.select(services).where(
                    services.c.binary == "nova-compute", services.c.host.in_(hosts)))).mappings():
                if servicegroup.is_up(dict(row), conductor.conf, now):
                    up.add(str(row["host"]))
    driven: list[str] = []
    for uuid, _vm, task, host, node in rows:
        if uuid in conductor._in_flight:
            continue
        try:
            if not host:
                if task == s.DELETING:
                    await conductor._recover_one(uuid, s.BUILDING, task)
                else:
                    LOG.warning("build of %s lost its cast (scheduling since before %s): scheduling it again",
                                uuid, before)
                    await conductor.build_instances([uuid])
            elif host not in up:
                continue  # the host's agent reconciles it when it comes back (or an evacuation)
            elif task == s.DELETING:
                LOG.warning("delete of %s on %s lost its cast: sending it again", uuid, host)
                req = await _request_id(conductor, uuid, actions.DELETE)
                await conductor.compute.terminate_instance(host, uuid, request_id=req)
            else:
                LOG.warning("build of %s on %s lost its cast: sending it again", uuid, host)
                req = await _request_id(conductor, uuid, actions.CREATE)
                await conductor.compute.build_and_run_instance(host, uuid, node=node or "", request_id=req)
        except Exception:
            LOG.exception("sweep of %s failed", uuid)
            continue
        driven.append(str(uuid))
    driven += await stuck.sweep_tasks(conductor, now)  # every other task state (stuck.py)
    return driven + await auto_confirm.confirm_unconfirmed(conductor, now)  # resize_confirm_window


async def _request_id(conductor: Conductor, uuid: str, action: str) -> str:
    async with conductor.db.read() as conn:
        return await action_request_id(conn, uuid, action)
