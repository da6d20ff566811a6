"""Crash recovery: a fresh set of workers on the same state dir settles everything a crash left."""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from workers_harness import FLAVOR_MEDIUM, FLAVOR_SMALL, Rig, running, start_resize, write_partial_fake_guest

from cumulo.compute import actions
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.drivers.base import InstanceSpec, PowerState
from cumulo.compute.models import migrations
from cumulo.compute.specs import flavor_spec
from cumulo.db import Database
from cumulo.placement.service import migration_consumer


async def placed(rig: Rig, flavor: dict[str, Any] | None = None, host: str | None = None, **values: Any) -> str:
    """A row as if the conductor had placed it on `host` (claim included)."""
    host = host or rig.conf.host_name
    flavor = flavor or FLAVOR_SMALL
    uuid = await rig.insert_instance(flavor, host=host, node=host, **values)
    node = rig.managers[host].node.node_uuid
    assert node is not None
    assert await rig.placement.claim(uuid, node, {"VCPU": flavor["vcpus"], "MEMORY_MB": flavor["memory_mb"],
                                                  "DISK_GB": flavor["root_gb"]})
    return uuid


async def guest(rig: Rig, uuid: str, power: PowerState = PowerState.RUNNING, host: str | None = None) -> None:
    drv = rig.driver(host)
    await drv.spawn(InstanceSpec(uuid=uuid, name="g", hostname="g", project_id="p1", flavor=flavor_spec(FLAVOR_SMALL),
                                 image=None))
    if power == PowerState.SHUTDOWN:
        await drv.power_off(uuid)
    elif power == PowerState.PAUSED:
        await drv.pause(uuid)


async def assert_consistent(rig: Rig) -> None:
    assert await rig.placement_usage() == await rig.live_usage()


async def test_build_interrupted_by_a_restart_is_retried(tmp_path: Path) -> None:
    rig = await Rig(tmp_path, fake_spawn_delay=0.5).start()
    try:
        uuid = await rig.create(FLAVOR_SMALL)
        await rig.wait(uuid, lambda r: r["task_state"] == st.SPAWNING)
        await rig.restart(fake_spawn_delay=0.05)  # the old agent dies mid-spawn
        row = await rig.wait_settled(uuid)
        assert row["vm_state"] == st.ACTIVE and row["system_metadata"]["build_attempts"] == 1
        await assert_consistent(rig)
    finally:
        await rig.stop()


async def test_guest_that_finished_before_the_crash_is_adopted(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await placed(rig, task_state=st.SPAWNING)
        await guest(rig, uuid)
        await rig.restart()
        row = await rig.get(uuid)
        assert (row["vm_state"], row["task_state"], row["power_state"]) == (st.ACTIVE, None, PowerState.RUNNING)
        assert row["launched_at"] is not None


async def test_half_made_guest_is_destroyed_and_rebuilt(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await placed(rig, task_state=st.SPAWNING)
        write_partial_fake_guest(rig, rig.conf.host_name, uuid)
        await rig.restart()
        row = await rig.wait_settled(uuid)
        assert row["vm_state"] == st.ACTIVE
        assert await rig.driver().get_power_state(uuid) == PowerState.RUNNING
        await assert_consistent(rig)


async def test_second_interruption_sets_error(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await placed(rig, task_state=st.SPAWNING, system_metadata={"build_attempts": 1})
        await rig.restart()
        row = await rig.get(uuid)
        assert (row["vm_state"], row["task_state"], row["host"]) == (st.ERROR, None, None)
        assert "Build interrupted by a restart of the compute service" in (await rig.faults(uuid))[-1]["message"]
        assert await rig.placement.allocations_for(uuid) == {}


async def test_build_without_a_host_is_rescheduled_and_its_stale_claim_dropped(tmp_path: Path) -> None:
    async with running(tmp_path, fake_hosts=1) as rig:
        # Crash between the claim and setting the host: a claim on fake-host-1, no host on the row.
        uuid = await rig.insert_instance(FLAVOR_SMALL)
        node = rig.managers["fake-host-1"].node.node_uuid
        assert node is not None and await rig.placement.claim(uuid, node, {"MEMORY_MB": 999})
        lost = await rig.insert_instance(FLAVOR_SMALL, host="gone-host", node="gone-host", task_state=st.SPAWNING)
        await rig.restart()
        for u in (uuid, lost):
            row = await rig.wait_settled(u)
            assert row["vm_state"] == st.ACTIVE and row["host"] in rig.hosts
        await assert_consistent(rig)


async def test_interrupted_deletes_are_finished(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        on_host = await placed(rig, vm_state=st.ACTIVE, task_state=st.DELETING)
        await guest(rig, on_host)
        no_host = await rig.insert_instance(FLAVOR_SMALL, vm_state=st.ERROR, task_state=st.DELETING)
        await rig.restart()
        for u in (on_host, no_host):
            row = await rig.wait(u, lambda r: r["deleted"])
            assert row["vm_state"] == st.DELETED and row["task_state"] is None
        assert await rig.driver().list_instances() == []
        await assert_consistent(rig)


async def test_transitional_states_settle_from_the_real_power_state(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        cases = {
            # (vm_state, task_state, guest power) -> expected vm_state
            "stopped_by_off": (st.ACTIVE, st.POWERING_OFF, PowerState.SHUTDOWN, st.STOPPED),
            "not_yet_off": (st.ACTIVE, st.POWERING_OFF, PowerState.RUNNING, st.ACTIVE),
            "start_never_ran": (st.STOPPED, st.POWERING_ON, PowerState.SHUTDOWN, st.STOPPED),
            "paused": (st.ACTIVE, st.PAUSING, PowerState.PAUSED, st.PAUSED),
            "reboot": (st.ACTIVE, st.REBOOTING_HARD, PowerState.RUNNING, st.ACTIVE),
        }
        uuids = {}
        for name, (vm, task, power, _) in cases.items():
            uuids[name] = await placed(rig, vm_state=vm, task_state=task, launched_at=None)
            await guest(rig, uuids[name], power)
        vanished = await placed(rig, vm_state=st.ACTIVE, task_state=st.SUSPENDING)
        rebuilding = await placed(rig, vm_state=st.ACTIVE, task_state=st.REBUILDING)
        await guest(rig, rebuilding)
        await rig.restart()
        for name, (_, _, _, want) in cases.items():
            row = await rig.get(uuids[name])
            assert (row["vm_state"], row["task_state"]) == (want, None), name
        row = await rig.get(vanished)
        assert (row["vm_state"], row["task_state"]) == (st.ERROR, None)
        assert "disappeared" in (await rig.faults(vanished))[-1]["message"]
        row = await rig.get(rebuilding)
        assert (row["vm_state"], row["task_state"]) == (st.ERROR, None)
        assert "Rebuild interrupted" in (await rig.faults(rebuilding))[-1]["message"]
        await assert_consistent(rig)


async def test_interrupted_resizes_roll_back(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        node = rig.managers[rig.conf.host_name].node.node_uuid
        assert node is not None
        prep = await placed(rig, vm_state=st.ACTIVE, task_state=st.RESIZE_PREP, new_flavor=FLAVOR_MEDIUM)
        await guest(rig, prep)
        assert await rig.placement.claim_resize(prep, node, {"MEMORY_MB": 4096, "VCPU": 2, "DISK_GB": 40})
        migrating = await placed(rig, vm_state=st.STOPPED, task_state=st.RESIZE_MIGRATING, new_flavor=FLAVOR_MEDIUM,
                                 system_metadata={"old_vm_state": st.STOPPED})
        await guest(rig, migrating, PowerState.SHUTDOWN)
        assert await rig.placement.claim_resize(migrating, node, {"MEMORY_MB": 4096})
        async with rig.db.write() as conn:  # their os-migrations records, as the API and agent left them
            for u, status in ((prep, "pre-migrating"), (migrating, "migrating")):
                await conn.execute(sa.insert(migrations).values(
                    uuid=str(uuidlib.uuid4()), instance_uuid=u, status=status, migration_type="resize", hidden=False))
        await rig.restart()
        # The one the agent never started failed; the one it had started was reverted.
        for u, want, record in ((prep, st.ACTIVE, "error"), (migrating, st.STOPPED, "reverted")):
            row = await rig.get(u)
            assert (row["vm_state"], row["task_state"], row["new_flavor"]) == (want, None, None)
            assert await rig.placement.allocations_for(migration_consumer(u)) == {}
            async with rig.db.read() as conn:
                status = (await conn.execute(sa.select(migrations.c.status).where(migrations.c.instance_uuid == u))).scalar()
            assert status == record
        await assert_consistent(rig)


async def test_verify_resize_survives_a_restart_with_both_claims(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await rig.create(FLAVOR_SMALL)
        await rig.wait_settled(uuid)
        await start_resize(rig, uuid, FLAVOR_MEDIUM)
        await rig.wait(uuid, lambda r: r["vm_state"] == st.RESIZED and r["task_state"] is None)
        await rig.restart()
        assert (await rig.get(uuid))["vm_state"] == st.RESIZED
        usage = (await rig.placement_usage())[rig.conf.host_name]
        assert usage["MEMORY_MB"] == 2048 + 4096  # the old flavor is still held for a revert


async def test_interrupted_snapshot_fails_its_image(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await placed(rig, vm_state=st.ACTIVE, task_state=st.IMAGE_UPLOADING,
                            system_metadata={"snapshot_image_id": "img-9"})
        await guest(rig, uuid)
        await rig.restart()
        row = await rig.get(uuid)
        assert (row["vm_state"], row["task_state"]) == (st.ACTIVE, None)
        assert rig.images.failed == ["img-9"] and "snapshot_image_id" not in row["system_metadata"]


async def test_orphans_are_reaped_and_allocations_match_live(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        keep = await placed(rig, vm_state=st.ACTIVE, task_state=None)
        await guest(rig, keep)
        await guest(rig, "00000000-0000-0000-0000-00000000dead")  # nobody owns it
        stray = rig.conf.state_dir / "fake" / rig.conf.host_name / "junk.json.tmp"
        stray.write_text("{")
        node = rig.managers[rig.conf.host_name].node.node_uuid
        assert node is not None
        await rig.placement.claim("11111111-0000-0000-0000-000000000000", node, {"MEMORY_MB": 1})  # stale
        missing = await rig.insert_instance(FLAVOR_SMALL, host=rig.conf.host_name, node=rig.conf.host_name,
                                            vm_state=st.STOPPED, task_state=None)  # live, but never claimed
        await guest(rig, missing, PowerState.SHUTDOWN)
        await rig.restart()
        assert {s.uuid for s in await rig.driver().list_instances()} == {keep, missing}
        assert not stray.exists()
        await assert_consistent(rig)
        assert await rig.placement.allocations_for(missing)


async def test_crash_during_ten_concurrent_builds(tmp_path: Path) -> None:
    """What the system crash test does with kill -9, in process: builds stop at random points."""
    rig = await Rig(tmp_path, fake_hosts=2, fake_spawn_delay=1.0).start()
    try:
        uuids = [await rig.insert_instance(FLAVOR_SMALL) for _ in range(10)]
        from cumulo.compute.rpc import ConductorAPI

        await asyncio.gather(*(ConductorAPI(rig.bus).build_instances([u]) for u in uuids))
        # Crash once some builds are mid-spawn (on a busy machine that may take a while).
        await rig.wait(uuids[0], lambda r: r["task_state"] == st.SPAWNING or r["vm_state"] != st.BUILDING, 20)
        rig.started = False  # no graceful stop: drop everything on the floor
        await rig.bus.stop()
        for m in rig.managers.values():
            await m.periodic.stop()
        for h in rig.workers.hosts:
            await h.periodic.stop()
        await rig.conductor.stop()
        await rig.scheduler.stop()
        await rig.db.dispose()
        # kill -9 leaves half-made guests on disk (a cancelled spawn cleaned up; a killed one cannot).
        interrupted = 0
        probe = Database(rig.conf.database_url)
        async with probe.read() as conn:
            for u in uuids:
                row = await inst_db.get(conn, u)
                assert row is not None
                if row["task_state"] == st.SPAWNING and row["host"]:
                    write_partial_fake_guest(rig, row["host"], u)
                    interrupted += 1
        await probe.dispose()
        assert interrupted  # the crash really hit builds in flight
        await rig.start()
        rows = [await rig.wait_settled(u, timeout=20) for u in uuids]
        assert all(r["vm_state"] in (st.ACTIVE, st.ERROR) for r in rows)
        assert all(r["task_state"] is None for r in rows)
        await assert_consistent(rig)
    finally:
        await rig.stop()


async def test_action_events_survive_for_recovered_builds(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await placed(rig, task_state=st.SCHEDULING)
        await rig.restart()
        await rig.wait_settled(uuid)
        events = [e["event"] for e in await rig.events(uuid, actions.CREATE)]
        assert "compute_build_and_run_instance" in events
