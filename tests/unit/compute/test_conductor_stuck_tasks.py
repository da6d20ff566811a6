"""Every task state ends (compute/conductor/stuck.py, compute/agent/settle.py; issue 14 "no server
stays in a task state forever"): a task whose message was lost is driven again where the message is
idempotent or settled from the driver's truth with a fault, after `conductor.task_timeout_seconds`
without progress; what is recent, or still being worked on, is left alone. Migration record status
writes are compare-and-swaps. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_workers_reconcile import assert_consistent, guest, placed
from workers_harness import FLAVOR_MEDIUM, FLAVOR_SMALL, Rig, start_resize

from cumulo.compute import actions, live_records, migration_records
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.agent import settle
from cumulo.compute.conductor import auto_confirm, stuck, sweep
from cumulo.compute.drivers.base import PowerState
from cumulo.compute.models import instances, migrations
from cumulo.compute.rpc import ComputeAPI
from cumulo.compute.service import migrate as svc_migrate
from cumulo.db import utcnow
from cumulo.placement.service import migration_consumer

LONG_AGO = dt.timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    import _pg

    with _pg.fresh_database(request) as url:
        yield url


@pytest.fixture
async def rig(tmp_path: Path, database: str | None) -> AsyncIterator[Rig]:
    r = await Rig(tmp_path, fake_hosts=1, database=database).start()
    try:
        yield r
    finally:
        await r.stop()


async def backdate(rig: Rig, *uuids: str) -> None:
    """As if nothing had happened to these servers (and their migration records) for an hour."""
    past = utcnow() - LONG_AGO
    async with rig.db.write() as conn:
        await conn.execute(sa.update(instances).where(instances.c.uuid.in_(uuids)).values(updated_at=past))
        await conn.execute(sa.update(migrations).where(migrations.c.instance_uuid.in_(uuids)).values(updated_at=past))


async def records(rig: Rig, uuid: str) -> list[str]:
    async with rig.db.read() as conn:
        rows = await conn.execute(sa.select(migrations.c.status).where(migrations.c.instance_uuid == uuid)
                                  .order_by(migrations.c.id))
        return [r[0] for r in rows]


async def wait_records(rig: Rig, uuid: str, want: list[str]) -> None:
    """The server's records reach `want` (the record follows the row's CAS, in its own write)."""
    async with asyncio.timeout(10):
        while await records(rig, uuid) != want:
            await asyncio.sleep(0.02)


async def timed_out(rig: Rig, uuid: str, task: str) -> None:
    """The server's newest fault says its task timed out (written right after the settle)."""
    async with asyncio.timeout(10):
        while not (faults := await rig.faults(uuid)) or f"Task {task} timed out" not in faults[-1]["message"]:
            await asyncio.sleep(0.02)


async def test_lost_action_messages_settle_from_the_driver(rig: Rig) -> None:
    """A stop, a pause and a snapshot whose casts were lost: the host's agent settles each from what
    the guest really is, with a fault naming the task; a recent task and a server the agent is
    still working on are left alone."""
    stop = await placed(rig, vm_state=st.ACTIVE, task_state=st.POWERING_OFF, launched_at=utcnow())
    stopped = await placed(rig, vm_state=st.ACTIVE, task_state=st.POWERING_OFF, launched_at=utcnow())
    pause = await placed(rig, vm_state=st.ACTIVE, task_state=st.PAUSING, launched_at=utcnow())
    snap = await placed(rig, vm_state=st.ACTIVE, task_state=st.IMAGE_SNAPSHOT_PENDING,
                        system_metadata={"snapshot_image_id": "img-lost"}, launched_at=utcnow())
    busy = await placed(rig, vm_state=st.ACTIVE, task_state=st.REBOOTING, launched_at=utcnow())
    recent = await placed(rig, vm_state=st.ACTIVE, task_state=st.SUSPENDING, launched_at=utcnow())
    for uuid in (stop, pause, snap, busy, recent):
        await guest(rig, uuid)
    await guest(rig, stopped, PowerState.SHUTDOWN)  # the stop did happen; its last write did not
    await backdate(rig, stop, stopped, pause, snap, busy)
    node = rig.managers[rig.conf.host_name].node
    hold, release = asyncio.Event(), asyncio.Event()

    async def working() -> None:  # the agent is still at the reboot: slow, not lost
        async with node.locks.hold(busy):
            hold.set()
            await release.wait()

    worker = asyncio.create_task(working())
    await hold.wait()
    try:
        acted = await sweep.sweep(rig.conductor)
        assert sorted(acted) == sorted([stop, stopped, pause, snap, busy])
        for uuid, want in ((stop, st.ACTIVE), (stopped, st.STOPPED), (pause, st.ACTIVE), (snap, st.ACTIVE)):
            row = await rig.wait(uuid, lambda r: r["task_state"] is None)
            assert row["vm_state"] == want
        for uuid, task in ((stop, st.POWERING_OFF), (stopped, st.POWERING_OFF), (pause, st.PAUSING),
                           (snap, st.IMAGE_SNAPSHOT_PENDING)):
            await timed_out(rig, uuid, task)
        assert rig.images.failed == ["img-lost"]
        assert (await rig.get(busy))["task_state"] == st.REBOOTING  # the agent is at it
        assert (await rig.get(recent))["task_state"] == st.SUSPENDING  # not stuck yet
        assert await rig.faults(busy) == [] and await rig.faults(recent) == []
    finally:
        release.set()
        await worker
    # Settled rows have no task any more: a second round leaves them alone.
    assert sorted(await sweep.sweep(rig.conductor)) == [busy]
    await rig.wait(busy, lambda r: r["task_state"] is None)
    await assert_consistent(rig)


async def test_the_agent_ignores_a_settle_for_a_row_that_moved_on(rig: Rig) -> None:
    uuid = await placed(rig, vm_state=st.ACTIVE, task_state=st.POWERING_ON, launched_at=utcnow())
    await guest(rig, uuid)
    row = await rig.get(uuid)
    node = rig.managers[rig.conf.host_name].node
    stale = (row["updated_at"] - dt.timedelta(seconds=1)).isoformat()
    assert await settle.settle(node, uuid, st.POWERING_ON, stale) == settle.MOVED  # progressed since
    assert await settle.settle(node, uuid, st.POWERING_OFF, row["updated_at"].isoformat()) == settle.MOVED
    assert (await rig.get(uuid))["task_state"] == st.POWERING_ON
    assert await settle.settle(node, uuid, st.POWERING_ON, row["updated_at"].isoformat()) == settle.SETTLED
    assert (await rig.get(uuid))["task_state"] is None


async def test_a_lost_cold_migration_step_settles_or_is_sent_again(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its prep message lost after the claim: the server stays on its source, the claim rolled back,
    the record error. Its finish lost after the files went: the destination is asked again."""
    source, dest = rig.hosts
    spec = {"flavor": FLAVOR_SMALL, "force_host": source}
    prep = await rig.wait_settled(await rig.create(FLAVOR_SMALL, request_spec=spec))
    sent = await rig.wait_settled(await rig.create(FLAVOR_SMALL, request_spec=spec))

    async def lost(*args: Any, **kwargs: Any) -> None:
        return None

    with monkeypatch.context() as m:
        m.setattr(ComputeAPI, "migrate_instance", lost)  # the conductor claimed; its cast to the source lost
        await svc_migrate.migrate(rig.compute_service(), rig.ctx, prep, None)
    assert await rig.placement.allocations_for(migration_consumer(prep["uuid"]))  # claimed
    with monkeypatch.context() as m:
        m.setattr(ComputeAPI, "finish_migration", lost)  # the source sent the files; its cast lost
        await svc_migrate.migrate(rig.compute_service(), rig.ctx, sent, None)
        await rig.wait(sent["uuid"], lambda r: r["task_state"] == st.RESIZE_MIGRATED)
        await wait_records(rig, sent["uuid"], [migration_records.POST_MIGRATING])
    assert (await rig.get(prep["uuid"]))["task_state"] == st.RESIZE_PREP
    await backdate(rig, prep["uuid"], sent["uuid"])
    assert sorted(await sweep.sweep(rig.conductor)) == sorted([prep["uuid"], sent["uuid"]])

    row = await rig.wait(prep["uuid"], lambda r: r["task_state"] is None)
    assert (row["vm_state"], row["host"], row["new_flavor"]) == (st.ACTIVE, source, None)
    assert await rig.placement.allocations_for(migration_consumer(prep["uuid"])) == {}
    await wait_records(rig, prep["uuid"], [migration_records.ERROR])
    await timed_out(rig, prep["uuid"], st.RESIZE_PREP)

    row = await rig.wait(sent["uuid"], lambda r: r["task_state"] is None)
    assert (row["vm_state"], row["host"]) == (st.RESIZED, dest)
    await wait_records(rig, sent["uuid"], [migration_records.FINISHED])
    assert await rig.faults(sent["uuid"]) == []
    # The settled one holds its source only; the moved one its destination, and its source for a revert.
    names = {m.node.node_uuid: m.node.host for m in rig.managers.values()}
    assert [names[p] for p in await rig.placement.allocations_for(prep["uuid"])] == [source]
    assert [names[p] for p in await rig.placement.allocations_for(sent["uuid"])] == [dest]
    assert [names[p] for p in await rig.placement.allocations_for(migration_consumer(sent["uuid"]))] == [source]


async def test_a_live_migration_and_an_evacuation_whose_conductor_cast_was_lost(rig: Rig) -> None:
    """Both are the conductor's: the live migration is rolled back (claim released, record error,
    the server on its source with a fault), the evacuation never placed gets its task cleared, a
    fault and its record error."""
    source = rig.hosts[0]
    live = await placed(rig, vm_state=st.ACTIVE, task_state=st.MIGRATING, launched_at=utcnow())
    evac = await placed(rig, vm_state=st.ACTIVE, task_state=st.REBUILDING, launched_at=utcnow())
    rebuilt = await placed(rig, vm_state=st.ACTIVE, task_state=st.REBUILDING, launched_at=utcnow())
    for uuid in (live, evac, rebuilt):
        await guest(rig, uuid)
    async with rig.db.write() as conn:
        live_mig = await live_records.start(conn, rig.ctx, await inst_db.get(conn, live) or {}, None)
        await migration_records.start_resize(conn, rig.ctx, await inst_db.get(conn, evac) or {}, FLAVOR_SMALL,
                                             migration_type=migration_records.EVACUATION,
                                             status=migration_records.ACCEPTED)
        # evacuated here earlier (done: its source is still away), now a plain rebuild whose cast was lost
        await migration_records.start_resize(conn, rig.ctx, await inst_db.get(conn, rebuilt) or {}, FLAVOR_SMALL,
                                             migration_type=migration_records.EVACUATION,
                                             status=migration_records.DONE)
        await conn.execute(sa.update(migrations).where(migrations.c.instance_uuid == rebuilt)
                           .values(source_compute="gone-host"))
    dest_node = rig.managers[rig.hosts[1]].node.node_uuid
    assert dest_node is not None and await rig.placement.claim(live_mig, dest_node, {"VCPU": 1})
    await backdate(rig, live, evac, rebuilt)
    assert sorted(await sweep.sweep(rig.conductor)) == sorted([live, evac, rebuilt])
    row = await rig.wait(rebuilt, lambda r: r["task_state"] is None)  # its host settles it, as a rebuild
    assert row["vm_state"] == st.ERROR and await records(rig, rebuilt) == [migration_records.DONE]
    await timed_out(rig, rebuilt, st.REBUILDING)
    for uuid in (live, evac):
        row = await rig.get(uuid)
        assert (row["vm_state"], row["task_state"], row["host"]) == (st.ACTIVE, None, source)
    assert await records(rig, live) == [live_records.ERROR]
    assert await records(rig, evac) == [migration_records.ERROR]
    assert await rig.placement.allocations_for(live_mig) == {}
    assert "interrupted" in (await rig.faults(live))[-1]["message"]
    await timed_out(rig, evac, st.REBUILDING)
    await assert_consistent(rig)


async def test_a_progressing_move_and_a_zero_timeout_are_left_alone(rig: Rig) -> None:
    uuid = await placed(rig, vm_state=st.ACTIVE, task_state=st.MIGRATING, launched_at=utcnow())
    await guest(rig, uuid)
    async with rig.db.write() as conn:
        await live_records.start(conn, rig.ctx, await inst_db.get(conn, uuid) or {}, None)
    await backdate(rig, uuid)
    async with rig.db.write() as conn:  # the move wrote its progress a moment ago
        await conn.execute(sa.update(migrations).where(migrations.c.instance_uuid == uuid).values(updated_at=utcnow()))
    assert await sweep.sweep(rig.conductor) == []
    rig.conductor.conf = rig.conf.replace(extra={"conductor_task_timeout_seconds": 0})
    await backdate(rig, uuid)
    assert await stuck.sweep_tasks(rig.conductor, utcnow()) == []
    assert (await rig.get(uuid))["task_state"] == st.MIGRATING


async def test_migration_status_writes_are_compare_and_swap(rig: Rig) -> None:
    """Two workers settling one migration at once (a confirm and a revert, two sweeps): exactly one
    wins, and a final status is never overwritten."""
    uuid = await placed(rig, vm_state=st.RESIZED, task_state=None, launched_at=utcnow())
    async with rig.db.write() as conn:
        mig = await migration_records.start_resize(conn, rig.ctx, await inst_db.get(conn, uuid) or {}, FLAVOR_MEDIUM,
                                                   status=migration_records.FINISHED)
    for _ in range(3):
        won = await asyncio.gather(
            migration_records.set_status_of(rig.db, mig, migration_records.CONFIRMED),
            migration_records.set_status_of(rig.db, mig, migration_records.REVERTED),
            migration_records.set_status(rig.db, uuid, migration_records.ERROR),
        )
        assert sum(won) <= 1
    final = await records(rig, uuid)
    assert final[0] in (migration_records.CONFIRMED, migration_records.REVERTED, migration_records.ERROR)
    assert not await migration_records.set_status_of(rig.db, mig, migration_records.ERROR)
    assert not await migration_records.set_status_of(rig.db, mig, migration_records.FINISHED,
                                                     expect=(migration_records.POST_MIGRATING,))
    assert await records(rig, uuid) == final


async def test_resize_confirm_window_confirms_what_waited_too_long(rig: Rig) -> None:
    """Nova's resize_confirm_window: off by default; set, a VERIFY_RESIZE older than it is
    confirmed (as confirmResize: action, the agent's confirm), a record whose server is gone errors."""
    resized = (await rig.active_server())["uuid"]
    async with rig.db.write() as conn:  # the record the API writes with a resize
        await migration_records.start_resize(conn, rig.ctx, await inst_db.get(conn, resized) or {}, FLAVOR_MEDIUM)
    await start_resize(rig, resized, FLAVOR_MEDIUM)
    await rig.wait(resized, lambda r: r["vm_state"] == st.RESIZED and r["task_state"] is None)
    await wait_records(rig, resized, [migration_records.FINISHED])
    gone = await placed(rig, vm_state=st.RESIZED, task_state=None, launched_at=utcnow())
    async with rig.db.write() as conn:
        await migration_records.start_resize(conn, rig.ctx, await inst_db.get(conn, gone) or {}, FLAVOR_MEDIUM,
                                             status=migration_records.FINISHED)
        await conn.execute(sa.update(instances).where(instances.c.uuid == gone).values(deleted=True))
    await rig.placement.release(gone)
    await backdate(rig, resized, gone)
    assert await auto_confirm.confirm_unconfirmed(rig.conductor, utcnow()) == []  # 0: never (Nova's default)
    rig.conductor.conf = rig.conf.replace(extra={"conductor_resize_confirm_window": 60})
    assert await sweep.sweep(rig.conductor) == [resized]
    row = await rig.wait(resized, lambda r: r["vm_state"] == st.ACTIVE and r["task_state"] is None)
    assert row["flavor"]["memory_mb"] == FLAVOR_MEDIUM["memory_mb"] and row["old_flavor"] is None
    await wait_records(rig, resized, [migration_records.CONFIRMED])
    await wait_records(rig, gone, [migration_records.ERROR])
    async with rig.db.read() as conn:
        assert [a["action"] for a in await actions.list_actions(conn, resized)][0] == actions.CONFIRM_RESIZE
    await assert_consistent(rig)


async def test_the_start_up_recovery_keeps_the_claim_of_a_build_placed_meanwhile(rig: Rig) -> None:
    """The recovery read a build with no host; a redelivered message (or the sweep) placed and
    claimed it before the recovery got to it: the recovery leaves it (it released the claim first,
    and the server went ACTIVE without one: seen in the fault test)."""
    uuid = await placed(rig)
    await rig.conductor._recover_one(uuid, st.BUILDING, st.SCHEDULING, None)
    row = await rig.get(uuid)
    assert (row["vm_state"], row["task_state"], row["host"]) == (st.BUILDING, st.SCHEDULING, rig.conf.host_name)
    assert await rig.placement.allocations_for(uuid)
    lost = await rig.insert_instance()  # no host: recovered (scheduled again)
    await rig.conductor._recover_one(lost, st.BUILDING, st.SCHEDULING, None)
    assert (await rig.wait_settled(lost))["vm_state"] == st.ACTIVE
    assert await rig.placement.allocations_for(lost)


async def test_a_snapshot_whose_cast_was_lost_settles_and_its_image_goes(
    cloud: Any, as_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """createImage through the API, its cast to the agent lost: once settled, the server is ACTIVE
    and the queued snapshot image is deleted (as a failed snapshot's), not left queued forever."""
    from servers_support import make_world, wait_status

    world = await make_world(cloud, as_ctx)
    sid = (await world.active())["id"]

    async def lost(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(ComputeAPI, "snapshot_instance", lost)
    resp = await world.action(sid, {"createImage": {"name": "lost"}}, version="2.45")
    assert resp.status_code == 202, resp.text
    image = f"/image/v2/images/{resp.json()['image_id']}"
    assert (await world.member.get(image)).json()["status"] == "queued"
    async with cloud.db.write() as conn:
        await conn.execute(sa.update(instances).where(instances.c.uuid == sid).values(updated_at=utcnow() - LONG_AGO))
    assert cloud.workers is not None
    assert await sweep.sweep(cloud.workers.conductor) == [sid]
    body = await wait_status(world.member, sid, "ACTIVE")
    async with asyncio.timeout(10):
        while body["OS-EXT-STS:task_state"] is not None or (await world.member.get(image)).status_code != 404:
            await asyncio.sleep(0.05)
            body = (await world.member.get(f"/compute/v2.1/servers/{sid}")).json()["server"]


async def test_the_conductor_settles_a_lost_stop_by_itself(tmp_path: Path) -> None:
    rig = await Rig(tmp_path, extra={"conductor_task_timeout_seconds": 0.5, "conductor_sweep_interval": 0.2}).start()
    try:
        uuid = (await rig.active_server())["uuid"]
        async with rig.db.write() as conn:  # the API's stop committed; its cast never reached the agent
            assert await inst_db.cas_update(conn, uuid, {"task_state": st.POWERING_OFF}, expected_task_state=None)
            await actions.record_action(conn, rig.ctx, uuid, actions.STOP)
        row = await rig.wait(uuid, lambda r: r["task_state"] is None, timeout=20)
        assert row["vm_state"] == st.ACTIVE
        await timed_out(rig, uuid, st.POWERING_OFF)
    finally:
        await rig.stop()
