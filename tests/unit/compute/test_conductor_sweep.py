"""The conductor's periodic sweep (compute/conductor/sweep.py, issue 14 "no server stays in a task
state forever"): a build or a delete whose cast was lost is driven again; what is recent, or on a
host that is down, is left alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from test_workers_reconcile import assert_consistent, placed
from workers_harness import Rig, running

from cumulo.compute import actions
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.conductor import sweep
from cumulo.compute.models import instances
from cumulo.db import utcnow
from cumulo.hosts.models import services

LONG_AGO = dt.timedelta(minutes=10)


async def backdate(rig: Rig, *uuids: str) -> None:
    async with rig.db.write() as conn:
        await conn.execute(sa.update(instances).where(instances.c.uuid.in_(uuids))
                           .values(updated_at=utcnow() - LONG_AGO))


async def test_lost_casts_are_driven_again_and_recent_rows_left_alone(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        lost_build = await rig.insert_instance()  # the API committed, its cast to the conductor was lost
        lost_on_host = await placed(rig)  # placed and claimed, the cast to the agent lost
        recent = await rig.insert_instance()  # maybe still queued: not stuck yet
        gone = (await rig.active_server())["uuid"]
        async with rig.db.write() as conn:  # the API's delete committed, its cast lost
            assert await inst_db.cas_update(conn, gone, {"task_state": st.DELETING})
            await actions.record_action(conn, rig.ctx, gone, actions.DELETE)
        await backdate(rig, lost_build, lost_on_host, gone)

        driven = await sweep.sweep(rig.conductor)
        assert sorted(driven) == sorted([lost_build, lost_on_host, gone])
        for uuid in (lost_build, lost_on_host):
            row = await rig.wait_settled(uuid)
            assert (row["vm_state"], row["task_state"], row["host"]) == (st.ACTIVE, None, rig.conf.host_name)
        row = await rig.wait(gone, lambda r: r["deleted"])
        assert row["vm_state"] == st.DELETED and row["task_state"] is None
        assert not await rig.driver().get_power_state(gone)
        row = await rig.get(recent)
        assert (row["vm_state"], row["task_state"], row["host"]) == (st.BUILDING, st.SCHEDULING, None)
        await backdate(rig, recent)
        assert await sweep.sweep(rig.conductor) == [recent]  # the others settled: nothing twice
        await rig.wait_settled(recent)
        await assert_consistent(rig)


async def test_a_row_on_a_host_that_is_down_waits_for_its_agent(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await placed(rig)
        await backdate(rig, uuid)
        async with rig.db.write() as conn:
            await conn.execute(sa.update(services).where(services.c.host == rig.conf.host_name)
                               .values(forced_down=True))
        assert await sweep.sweep(rig.conductor) == []
        row = await rig.get(uuid)
        assert (row["vm_state"], row["task_state"]) == (st.BUILDING, st.SCHEDULING)


async def test_the_conductor_sweeps_by_itself(tmp_path: Path) -> None:
    rig = await Rig(tmp_path, extra={"conductor_stuck_build_seconds": 0.5, "conductor_sweep_interval": 0.2}).start()
    try:
        uuid = await rig.insert_instance()  # no cast at all
        row = await rig.wait_settled(uuid, timeout=20)
        assert row["vm_state"] == st.ACTIVE
        await assert_consistent(rig)
    finally:
        await rig.stop()


async def test_a_build_the_broker_cut_stays_scheduling_for_the_sweep(tmp_path: Path) -> None:
    """The broker away mid-build (the select call not sent): the row is not failed, and the sweep
    builds it once the bus is back."""
    from cumulo.bus.base import BusUnavailable

    class Away:
        async def select_destinations(self, *_: Any) -> Any:
            raise BusUnavailable("message broker unreachable: test")

        select_batch = select_destinations

    async with running(tmp_path) as rig:
        real = rig.conductor.scheduler
        rig.conductor.scheduler = Away()  # type: ignore[assignment]
        uuid = await rig.insert_instance()
        await rig.conductor.build_instances([uuid])
        row = await rig.get(uuid)
        assert (row["vm_state"], row["task_state"], row["host"]) == (st.BUILDING, st.SCHEDULING, None)
        assert await rig.faults(uuid) == []
        rig.conductor.scheduler = real
        await backdate(rig, uuid)
        assert await sweep.sweep(rig.conductor) == [uuid]
        assert (await rig.wait_settled(uuid))["vm_state"] == st.ACTIVE
        await assert_consistent(rig)
