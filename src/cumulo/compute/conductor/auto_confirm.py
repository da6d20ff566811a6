"""Nova's resize_confirm_window: resizes and cold migrations left in VERIFY_RESIZE are confirmed
after `conductor.resize_confirm_window` seconds (0, the default as in Nova: never), by the sweep's
leader (conductor/sweep.py).

As Nova's _poll_unconfirmed_resizes: each migration record `finished` longer than the window
(its updated_at is when it became finished) whose server is RESIZED with no task is confirmed as
the API's confirmResize does (task resize_confirming by a compare-and-swap, a `confirmResize`
instance action with no user, the agent's confirm_resize); a record whose server is gone or in
ERROR, or in another state than RESIZED with no task, is set to error; a server being deleted or
still finishing its resize is left for the next round.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from cumulo.compute import actions, migration_records
from cumulo.compute import instances as inst_db
from cumulo.compute import states as s
from cumulo.compute.conductor.stuck import Conductor
from cumulo.compute.models import migrations
from cumulo.context import RequestContext

LOG = logging.getLogger(__name__)

_LATER = frozenset({s.DELETING, s.SOFT_DELETING, s.RESIZE_FINISH})


async def confirm_unconfirmed(conductor: Conductor, now: dt.datetime) -> list[str]:
    """Confirm what waited longer than the window; the instance uuids whose confirm was sent."""
    window = conductor.conf.conductor.resize_confirm_window
    if window <= 0:
        return []
    before = now - dt.timedelta(seconds=window)
    m = migrations.c
    async with conductor.db.read() as conn:
        recs = [dict(r) for r in (await conn.execute(
            sa.select(migrations).where(
                m.status == migration_records.FINISHED, m.updated_at < before,
                m.migration_type.in_([migration_records.RESIZE, migration_records.MIGRATION]))
            .order_by(m.id))).mappings()]
    sent: list[str] = []
    for rec in recs:
        uuid = str(rec["instance_uuid"])
        async with conductor.db.read() as conn:
            inst = await inst_db.get(conn, uuid)
        why = ("instance not found" if inst is None else "in ERROR state" if inst["vm_state"] == s.ERROR else "")
        if inst is not None and not why:
            if inst["task_state"] in _LATER:
                continue
            if inst["vm_state"] != s.RESIZED or inst["task_state"] is not None:
                why = f"in states {inst['vm_state']}/{inst['task_state']}, not {s.RESIZED}/None"
        if why or inst is None:
            LOG.warning("setting migration %s of %s to error: %s", rec["uuid"], uuid, why)
            await migration_records.set_status_of(conductor.db, str(rec["uuid"]), migration_records.ERROR,
                                                  expect=(migration_records.FINISHED,))
            continue
        ctx = RequestContext(user_id=None, project_id=inst["project_id"], roles=frozenset({"admin"}))
        async with conductor.db.write() as conn:
            ok = await inst_db.cas_update(conn, uuid, {"task_state": s.RESIZE_CONFIRMING},
                                          expected_task_state=None, expected_vm_state=s.RESIZED)
            if ok:
                await actions.record_action(conn, ctx, uuid, actions.CONFIRM_RESIZE)
        if not ok:
            continue
        LOG.info("automatically confirming migration %s of %s (resize_confirm_window %.0fs)", rec["uuid"], uuid,
                 window)
        try:
            await conductor.compute.confirm_resize(str(inst["host"]), uuid, request_id=ctx.request_id)
        except Exception:
            LOG.warning("auto-confirm of %s not sent; trying again next round", uuid, exc_info=True)
            async with conductor.db.write() as conn:
                await inst_db.cas_update(conn, uuid, {"task_state": None}, expected_task_state=s.RESIZE_CONFIRMING)
            continue
        sent.append(uuid)
    return sent
