"""Agent actions through the bus: power, pause/suspend, rebuild, resize, snapshot, console, sync."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from workers_harness import FLAVOR_MEDIUM, FLAVOR_SMALL, Rig, running, start_resize

from cumulo.compute import actions
from cumulo.compute import states as st
from cumulo.compute.agent.power import sync_power_states
from cumulo.compute.drivers.base import PowerState
from cumulo.compute.rpc import ComputeAPI
from cumulo.errors import InvalidState, NotFound
from cumulo.placement.service import migration_consumer


async def active_server(rig: Rig, flavor: dict[str, Any] | None = None, **kw: Any) -> str:
    uuid = await rig.create(flavor or FLAVOR_SMALL, **kw)
    row = await rig.wait_settled(uuid)
    assert row["vm_state"] == st.ACTIVE
    return uuid


async def settled_after(rig: Rig, uuid: str, method: str, action: str, task: str, **args: Any) -> dict[str, Any]:
    await rig.act(uuid, method, action, task, **args)
    return await rig.wait(uuid, lambda r: r["task_state"] is None)


async def test_power_cycle(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig)
        row = await settled_after(rig, uuid, "stop_instance", actions.STOP, st.POWERING_OFF)
        assert (row["vm_state"], row["power_state"]) == (st.STOPPED, PowerState.SHUTDOWN)
        row = await settled_after(rig, uuid, "start_instance", actions.START, st.POWERING_ON)
        assert (row["vm_state"], row["power_state"]) == (st.ACTIVE, PowerState.RUNNING)
        row = await settled_after(rig, uuid, "reboot_instance", actions.REBOOT, st.REBOOTING, reboot_type="SOFT")
        assert row["vm_state"] == st.ACTIVE
        await settled_after(rig, uuid, "stop_instance", actions.STOP, st.POWERING_OFF)
        row = await settled_after(rig, uuid, "reboot_instance", actions.REBOOT, st.REBOOTING_HARD, reboot_type="HARD")
        assert (row["vm_state"], row["power_state"]) == (st.ACTIVE, PowerState.RUNNING)
        events = {e["event"]: e["result"] for e in await rig.events(uuid, "stop")}
        assert events == {"compute_stop_instance": "Success"}


async def test_pause_and_suspend(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig)
        row = await settled_after(rig, uuid, "pause_instance", actions.PAUSE, st.PAUSING)
        assert (row["vm_state"], row["power_state"]) == (st.PAUSED, PowerState.PAUSED)
        row = await settled_after(rig, uuid, "unpause_instance", actions.UNPAUSE, st.UNPAUSING)
        assert row["vm_state"] == st.ACTIVE
        row = await settled_after(rig, uuid, "suspend_instance", actions.SUSPEND, st.SUSPENDING)
        assert (row["vm_state"], row["power_state"]) == (st.SUSPENDED, PowerState.SUSPENDED)
        row = await settled_after(rig, uuid, "resume_instance", actions.RESUME, st.RESUMING)
        assert (row["vm_state"], row["power_state"]) == (st.ACTIVE, PowerState.RUNNING)


async def test_failed_action_keeps_vm_state_clears_task_and_records_fault(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig, metadata={"cumulo_fake_fail": "pause,reboot"})
        row = await settled_after(rig, uuid, "pause_instance", actions.PAUSE, st.PAUSING)
        assert (row["vm_state"], row["task_state"], row["power_state"]) == (st.ACTIVE, None, PowerState.RUNNING)
        assert "pause failed" in (await rig.faults(uuid))[-1]["message"]
        events = {e["event"]: e["result"] for e in await rig.events(uuid, "pause")}
        assert events == {"compute_pause_instance": "Error"}
        row = await settled_after(rig, uuid, "reboot_instance", actions.REBOOT, st.REBOOTING_HARD, reboot_type="HARD")
        assert row["vm_state"] == st.ACTIVE and row["task_state"] is None


async def test_message_for_a_task_the_api_did_not_set_is_ignored(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig)
        # A stale or duplicated cast: task_state is None, so the agent must not power anything off.
        await rig.managers[rig.conf.host_name].stop_instance(uuid, "req-stale")
        assert (await rig.get(uuid))["vm_state"] == st.ACTIVE
        assert await rig.driver().get_power_state(uuid) == PowerState.RUNNING


async def test_rebuild(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        first, second = rig.images.add(), rig.images.add()
        uuid = await active_server(rig, image_ref=first)
        row = await settled_after(rig, uuid, "rebuild_instance", actions.REBUILD, st.REBUILDING, image_ref=second)
        assert (row["vm_state"], row["image_ref"]) == (st.ACTIVE, second)
        await settled_after(rig, uuid, "stop_instance", actions.STOP, st.POWERING_OFF)
        row = await settled_after(rig, uuid, "rebuild_instance", actions.REBUILD, st.REBUILDING, image_ref=first)
        assert (row["vm_state"], row["power_state"]) == (st.STOPPED, PowerState.SHUTDOWN)  # stays stopped


async def test_failed_rebuild_is_error(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig, metadata={"cumulo_fake_fail": "rebuild"})
        row = await settled_after(rig, uuid, "rebuild_instance", actions.REBUILD, st.REBUILDING, image_ref="")
        assert row["vm_state"] == st.ERROR and "rebuild failed" in (await rig.faults(uuid))[-1]["message"]
        assert row["host"] == rig.conf.host_name  # the guest is still there: its claim stays
        assert await rig.placement.allocations_for(uuid)


async def test_resize_confirm(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig)
        await start_resize(rig, uuid, FLAVOR_MEDIUM)
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert row["vm_state"] == st.RESIZED and st.status_of(row["vm_state"], None) == "VERIFY_RESIZE"
        assert (row["vcpus"], row["memory_mb"], row["root_gb"]) == (2, 4096, 40)
        assert row["flavor"]["name"] == "m1.medium" and row["old_flavor"]["name"] == "m1.small"
        # Old and new are both held while the user decides.
        assert (await rig.placement_usage())[rig.conf.host_name]["MEMORY_MB"] == 2048 + 4096
        assert await rig.placement.allocations_for(migration_consumer(uuid))
        row = await settled_after(rig, uuid, "confirm_resize", actions.CONFIRM_RESIZE, st.RESIZE_CONFIRMING)
        assert row["vm_state"] == st.ACTIVE and row["old_flavor"] is None and row["new_flavor"] is None
        assert await rig.placement_usage() == await rig.live_usage()
        assert (await rig.placement_usage())[rig.conf.host_name]["MEMORY_MB"] == 4096
        events = {e["event"]: e["result"] for e in await rig.events(uuid, "resize")}
        assert events == {"conductor_migrate_server": "Success", "compute_resize_instance": "Success"}


async def test_resize_revert_restores_old_flavor_and_state(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig)
        await settled_after(rig, uuid, "stop_instance", actions.STOP, st.POWERING_OFF)
        await start_resize(rig, uuid, FLAVOR_MEDIUM)
        await rig.wait(uuid, lambda r: r["vm_state"] == st.RESIZED and r["task_state"] is None)
        row = await settled_after(rig, uuid, "revert_resize", actions.REVERT_RESIZE, st.RESIZE_REVERTING)
        assert row["vm_state"] == st.STOPPED  # it was stopped before the resize
        assert (row["vcpus"], row["memory_mb"], row["flavor"]["name"]) == (1, 2048, "m1.small")
        assert row["old_flavor"] is None and row["new_flavor"] is None
        assert await rig.placement_usage() == await rig.live_usage()


async def test_resize_that_does_not_fit_keeps_the_server(tmp_path: Path) -> None:
    async with running(tmp_path, fake_host_ram_mb=5000) as rig:
        uuid = await active_server(rig)
        await start_resize(rig, uuid, FLAVOR_MEDIUM)  # 2048 held + 4096 new > 5000
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert row["vm_state"] == st.ACTIVE and row["new_flavor"] is None and row["memory_mb"] == 2048
        fault = (await rig.faults(uuid))[-1]
        assert fault["message"].startswith("No valid host was found.") and "RamFilter" in fault["message"]
        assert await rig.placement_usage() == await rig.live_usage()


async def test_failed_resize_is_error_and_gives_back_the_new_claim(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig, metadata={"cumulo_fake_fail": "resize"})
        await start_resize(rig, uuid, FLAVOR_MEDIUM)
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert row["vm_state"] == st.ERROR and row["memory_mb"] == 2048
        assert await rig.placement_usage() == await rig.live_usage()


async def test_snapshot_uploads_and_clears_task(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig)
        image_id = "11111111-2222-3333-4444-555555555555"
        row = await settled_after(rig, uuid, "snapshot_instance", actions.CREATE_IMAGE, st.IMAGE_SNAPSHOT_PENDING,
                                  image_id=image_id)
        assert row["vm_state"] == st.ACTIVE and "snapshot_image_id" not in row["system_metadata"]
        assert uuid.encode() in rig.images.uploads[image_id]
        # The driver's word on what the file is reaches the image record before the bytes do.
        assert rig.images.described[image_id]["container_format"] == "bare"
        assert not list((rig.conf.state_dir / "snapshots").iterdir())  # the work dir is gone


async def test_failed_snapshot_marks_the_image_failed(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await active_server(rig, metadata={"cumulo_fake_fail": "snapshot"})
        row = await settled_after(rig, uuid, "snapshot_instance", actions.CREATE_IMAGE, st.IMAGE_SNAPSHOT_PENDING,
                                  image_id="img-1")
        assert row["vm_state"] == st.ACTIVE and rig.images.failed == ["img-1"]
        assert "img-1" not in rig.images.uploads


async def test_console_output_and_diagnostics(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        script = base64.b64encode(b"#!/bin/sh\necho 'hello from user data'\n").decode()
        uuid = await active_server(rig, user_data=script)
        compute = ComputeAPI(rig.bus)
        log = await compute.get_console_output(rig.conf.host_name, uuid, length=None, request_id="r")
        row = await rig.get(uuid)
        assert row["hostname"] in log and "hello from user data" in log
        tail = await compute.get_console_output(rig.conf.host_name, uuid, length=2, request_id="r")
        assert len(tail.split("\n")) == 2 and tail.rstrip().endswith("login:")
        diag = await compute.get_diagnostics(rig.conf.host_name, uuid, request_id="r")
        assert diag["state"] == "running" and diag["num_cpus"] == 1 and diag["driver"] == "fake"
        with pytest.raises(NotFound):
            await compute.get_diagnostics(rig.conf.host_name, "nope", request_id="r")
        await rig.driver().destroy(uuid)  # the guest is gone: a 409 for the API, not a 500
        with pytest.raises(InvalidState):
            await compute.get_console_output(rig.conf.host_name, uuid, length=1, request_id="r")


async def test_power_sync_follows_the_driver(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        a = await active_server(rig)
        b = await active_server(rig)
        c = await active_server(rig)
        await settled_after(rig, c, "stop_instance", actions.STOP, st.POWERING_OFF)
        drv = rig.driver()
        await drv.power_off(a)  # the guest shut itself down
        await drv.destroy(b)  # the guest vanished
        await drv.power_on(await rig.managers[rig.conf.host_name].node.spec(await rig.get(c)))  # started behind our back
        changed = await sync_power_states(rig.managers[rig.conf.host_name].node)
        assert changed == 3
        ra, rb, rc = await rig.get(a), await rig.get(b), await rig.get(c)
        assert (ra["vm_state"], ra["power_state"]) == (st.STOPPED, PowerState.SHUTDOWN)
        assert (rb["vm_state"], rb["power_state"]) == (st.ACTIVE, PowerState.NOSTATE)
        assert (rc["vm_state"], rc["power_state"]) == (st.STOPPED, PowerState.SHUTDOWN)
        assert await drv.get_power_state(c) == PowerState.SHUTDOWN
        assert await sync_power_states(rig.managers[rig.conf.host_name].node) == 0
