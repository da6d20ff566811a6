"""The driver contract (drivers/base.py), checked on every driver the same way.

Each driver joins by adding a DriverCase: how to make it, a spec that spawns, and a spec whose
spawn must fail. Tests of a capability run only on drivers that declare it, and a declared
capability must come with its Protocol. Today: "fake", "runc" (skipped unless runc is installed
and we are root) and "qemu" (skipped unless QEMU is installed and the tiny VM can be built; its
guests boot under TCG, so its cases take seconds each).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _qemu_guest
import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import (
    CAPABILITY_PROTOCOLS,
    Capability,
    Console,
    Diagnostics,
    Driver,
    FlavorSpec,
    Host,
    ImageSpec,
    InstanceSpec,
    Lifecycle,
    Metrics,
    Pause,
    Power,
    PowerState,
    Rebuild,
    Resize,
    Snapshot,
    SnapshotResult,
    Suspend,
)
from cumulo.conf import Settings
from cumulo.errors import DriverError
from cumulo.image.demo.busybox import BUSYBOX, build_busybox

DIAGNOSTICS_KEYS = {
    "state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive", "num_cpus", "num_nics",
    "num_disks", "memory_details", "cpu_details", "nic_details", "disk_details",
}
SMALL = FlavorSpec(vcpus=1, memory_mb=256, root_gb=1)
BIGGER = FlavorSpec(vcpus=2, memory_mb=512, root_gb=2)


@dataclass(frozen=True)
class DriverCase:
    name: str
    make: Callable[[Settings, str], Driver]
    image: Callable[[Path], ImageSpec | None]  # an image that boots
    failing_image: Callable[[Path], ImageSpec | None]  # an image whose spawn must fail
    slow: Callable[[Settings], Settings]  # settings whose spawn takes seconds (to cancel it midway)
    leftovers: Callable[[Driver, str], list[str]]  # what the host still holds of an instance


def _fake_image(tmp: Path, **props: Any) -> ImageSpec:
    path = tmp / "fake.img"
    path.write_bytes(b"fake image")
    return ImageSpec(id=str(uuidlib.uuid4()), path=str(path), disk_format="raw", container_format="bare",
                     properties=props)


def _busybox_image(tmp: Path, **props: Any) -> ImageSpec:
    path = tmp / "busybox.tar"
    if not path.exists():
        build_busybox(path)
    return ImageSpec(id=str(uuidlib.uuid4()), path=str(path), disk_format="raw", container_format="docker",
                     properties=props)


RUNC_MISSING = (
    "runc is not installed" if shutil.which("runc") is None
    else "the runc driver needs root" if os.geteuid() != 0
    else f"{BUSYBOX} is missing (apt-get install busybox-static)" if not BUSYBOX.is_file()
    else ""
)

def _fake_leftovers(drv: Driver, uuid: str) -> list[str]:
    from cumulo.compute.drivers.fake import FakeDriver

    assert isinstance(drv, FakeDriver)
    d = drv.dir
    return [str(p) for p in d.glob(f"{uuid}*")] if d.is_dir() else []


def _runc_leftovers(drv: Driver, uuid: str) -> list[str]:
    """runc container, mounts, instance dir and per-container cgroup dirs of one instance."""
    from cumulo.compute.drivers.runc import RuncDriver

    assert isinstance(drv, RuncDriver)
    cid = f"cumulo-{uuid}"
    out = [f"runc container {cid}"] if (drv.runc.root / cid).exists() else []
    idir = drv.dir / uuid
    with open("/proc/self/mountinfo") as fh:
        out += [f"mount {line.split()[4]}" for line in fh if str(idir) in line]
    out += [str(idir)] if idir.exists() else []
    out += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/cumulo/{cid}")]
    return out


def _qemu_leftovers(drv: Driver, uuid: str) -> list[str]:
    """QEMU processes named for the instance, and its instance dir."""
    from cumulo.compute.drivers.qemu import QemuDriver

    assert isinstance(drv, QemuDriver)
    out = [f"qemu pid {pid}" for pid in _qemu_guest.qemu_pids(uuid)]
    idir = drv.dir / uuid
    return out + ([str(idir)] if idir.exists() else [])


CASES = [
    DriverCase(
        name="fake",
        make=lambda conf, host: load_driver("fake", conf, host, local=False),
        image=lambda tmp: _fake_image(tmp),
        failing_image=lambda tmp: _fake_image(tmp, cumulo_fake_fail="spawn"),
        slow=lambda conf: conf.replace(fake_spawn_delay=5.0),
        leftovers=_fake_leftovers,
    ),
    DriverCase(
        name="runc",
        # PID 1 of the busybox image ignores SIGTERM: a short grace keeps power tests quick.
        make=lambda conf, host: load_driver(
            "runc", conf.replace(extra={**conf.extra, "runc_stop_grace": 0.5}), host, local=True
        ),
        image=lambda tmp: _busybox_image(tmp),
        failing_image=lambda tmp: _busybox_image(tmp, os_command_line="/no/such/command"),
        slow=lambda conf: conf.replace(extra={**conf.extra, "runc_spawn_delay": 5.0}),  # test-only hook
        leftovers=_runc_leftovers,
    ),
    DriverCase(
        name="qemu",
        # The tiny VM powers off on the ACPI button once booted; a guest still booting ignores it.
        # These tests stop guests that are still booting, so every stop is the ACPI press, the grace
        # running out and QMP quit: a 1 s grace (not the default 60 s) takes that same path. The
        # ACPI power-off of a booted guest is test_qemu_driver.py's.
        make=lambda conf, host: load_driver(
            "qemu", conf.replace(extra={**conf.extra, "qemu_boot_timeout": 120.0, "qemu_stop_timeout": 1.0}),
            host, local=True,
        ),
        image=lambda tmp: _qemu_guest.tiny_image(),
        failing_image=lambda tmp: _qemu_guest.tiny_image(_qemu_guest.corrupt_qcow2(tmp)),
        slow=lambda conf: conf.replace(extra={**conf.extra, "qemu_spawn_delay": 5.0}),  # test-only hook
        leftovers=_qemu_leftovers,
    ),
]


def _param(c: DriverCase) -> Any:
    skip = {"runc": RUNC_MISSING, "qemu": _qemu_guest.QEMU_MISSING}.get(c.name, "")
    return pytest.param(c, id=c.name, marks=[pytest.mark.skipif(bool(skip), reason=skip)])


@pytest.fixture(params=[_param(c) for c in CASES])
def case(request: pytest.FixtureRequest) -> DriverCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _no_qemu_left(tmp_path: Path) -> Any:
    """Whatever a test does, no QEMU whose pidfile is under its tmp dir outlives it (killed by pid)."""
    yield
    _qemu_guest.kill_under(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state")


@pytest.fixture
async def driver(case: DriverCase, settings: Settings) -> AsyncIterator[Driver]:
    drv = case.make(settings, "contract-host")
    await drv.init_host()
    yield drv
    for st in await drv.list_instances():
        await drv.destroy(st.uuid)


def make_spec(case: DriverCase, tmp: Path, *, flavor: FlavorSpec = SMALL, failing: bool = False,
              user_data: bytes | None = None) -> InstanceSpec:
    uid = str(uuidlib.uuid4())
    image = (case.failing_image if failing else case.image)(tmp)
    return InstanceSpec(uuid=uid, name=f"contract-{uid[:8]}", hostname=f"contract-{uid[:8]}",
                        project_id="p", flavor=flavor, image=image, user_data=user_data)


def needs(drv: Driver, cap: Capability) -> None:
    if cap not in drv.info.capabilities:
        pytest.skip(f"{drv.info.name} does not declare {cap.value}")


async def listed(drv: Driver) -> dict[str, PowerState]:
    return {st.uuid: st.power_state for st in await drv.list_instances()}


# -- what every driver is --------------------------------------------------------------------


async def test_info_and_protocols(driver: Driver) -> None:
    assert isinstance(driver, Host) and isinstance(driver, Lifecycle)
    info = driver.info
    assert info.name and info.hypervisor_type and info.instance_types
    for cap in info.capabilities:
        assert isinstance(driver, CAPABILITY_PROTOCOLS[cap]), f"{info.name} declares {cap} without implementing it"


async def test_host_resources_are_positive(driver: Driver) -> None:
    res = await driver.get_host_resources()
    assert res.vcpus > 0 and res.memory_mb > 0 and res.local_gb >= 0
    assert isinstance(res.cpu_info, dict)


async def test_spawn_destroy_and_list(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert (await listed(driver))[spec.uuid] == PowerState.RUNNING
    await driver.destroy(spec.uuid)
    assert spec.uuid not in await listed(driver)
    assert await driver.get_power_state(spec.uuid) == PowerState.NOSTATE


async def test_destroy_of_missing_instance_succeeds(driver: Driver) -> None:
    missing = str(uuidlib.uuid4())
    await driver.destroy(missing)
    await driver.destroy(missing)
    assert missing not in await listed(driver)


async def test_failed_spawn_leaves_nothing(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    before = await listed(driver)
    spec = make_spec(case, tmp_path, failing=True)
    with pytest.raises(DriverError):
        await driver.spawn(spec)
    assert await listed(driver) == before
    assert case.leftovers(driver, spec.uuid) == []
    assert await driver.cleanup_orphans(set(before)) == []


async def test_cancelled_spawn_leaves_nothing(case: DriverCase, settings: Settings, tmp_path: Path) -> None:
    drv = case.make(case.slow(settings), "slow-host")
    await drv.init_host()
    spec = make_spec(case, tmp_path)
    task = asyncio.create_task(drv.spawn(spec))
    await asyncio.sleep(0.1)
    assert not task.done()  # still under way: the cancel lands mid-spawn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spec.uuid not in await listed(drv)
    assert case.leftovers(drv, spec.uuid) == []
    assert await drv.cleanup_orphans(set()) == []


async def test_destroy_leaves_nothing_on_the_host(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    assert case.leftovers(driver, spec.uuid) != []  # the probe sees a live instance
    if isinstance(driver, Pause) and Capability.PAUSE in driver.info.capabilities:
        await driver.pause(spec.uuid)  # a frozen instance must go too
    await driver.destroy(spec.uuid)
    assert case.leftovers(driver, spec.uuid) == []
    stopped = make_spec(case, tmp_path)
    await driver.spawn(stopped)
    if isinstance(driver, Power) and Capability.POWER in driver.info.capabilities:
        await driver.power_off(stopped.uuid)
    await driver.destroy(stopped.uuid)
    assert case.leftovers(driver, stopped.uuid) == []


async def test_list_instances_survives_a_driver_restart(case: DriverCase, settings: Settings, tmp_path: Path) -> None:
    first = case.make(settings, "restart-host")
    await first.init_host()
    spec = make_spec(case, tmp_path)
    await first.spawn(spec)
    second = case.make(settings, "restart-host")  # what a restarted agent builds
    await second.init_host()
    assert (await listed(second)).get(spec.uuid) == PowerState.RUNNING
    await second.destroy(spec.uuid)
    assert spec.uuid not in await listed(second)


async def test_cleanup_orphans_keeps_known_and_removes_the_rest(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    keep, drop = make_spec(case, tmp_path), make_spec(case, tmp_path)
    await driver.spawn(keep)
    await driver.spawn(drop)
    removed = await driver.cleanup_orphans({keep.uuid})
    assert drop.uuid in removed
    now = await listed(driver)
    assert keep.uuid in now and drop.uuid not in now
    assert case.leftovers(driver, drop.uuid) == [] and case.leftovers(driver, keep.uuid) != []


async def test_spawn_of_an_existing_uuid_is_refused_without_harm(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    with pytest.raises(DriverError):
        await driver.spawn(spec)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING


# -- capabilities ----------------------------------------------------------------------------


async def test_power_cycle_is_idempotent(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.POWER)
    assert isinstance(driver, Power)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.power_off(spec.uuid)
    await driver.power_off(spec.uuid)
    assert await driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN
    await driver.power_on(spec)
    await driver.power_on(spec)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    await driver.reboot(spec, hard=False)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    await driver.power_off(spec.uuid)
    await driver.reboot(spec, hard=True)  # a hard reboot starts a stopped instance
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING


async def test_power_ops_on_missing_instance_raise(driver: Driver) -> None:
    needs(driver, Capability.POWER)
    assert isinstance(driver, Power)
    with pytest.raises(DriverError):
        await driver.power_off(str(uuidlib.uuid4()))


async def test_pause_and_unpause(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.PAUSE)
    assert isinstance(driver, Pause)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.pause(spec.uuid)
    await driver.pause(spec.uuid)
    assert await driver.get_power_state(spec.uuid) == PowerState.PAUSED
    assert (await listed(driver))[spec.uuid] == PowerState.PAUSED
    await driver.unpause(spec.uuid)
    await driver.unpause(spec.uuid)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    if isinstance(driver, Power) and Capability.POWER in driver.info.capabilities:
        await driver.power_off(spec.uuid)
        with pytest.raises(DriverError):  # only a running instance can be paused
            await driver.pause(spec.uuid)
        assert await driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN


async def test_paused_instance_can_be_stopped_and_started(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.PAUSE)
    needs(driver, Capability.POWER)
    assert isinstance(driver, Pause) and isinstance(driver, Power)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.pause(spec.uuid)
    await driver.power_off(spec.uuid)
    assert await driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN
    await driver.power_on(spec)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING


async def test_suspend_and_resume(case: DriverCase, driver: Driver, settings: Settings, tmp_path: Path) -> None:
    needs(driver, Capability.SUSPEND)
    assert isinstance(driver, Suspend)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.suspend(spec.uuid)
    await driver.suspend(spec.uuid)
    assert await driver.get_power_state(spec.uuid) == PowerState.SUSPENDED  # not PAUSED
    assert (await listed(driver))[spec.uuid] == PowerState.SUSPENDED
    if isinstance(driver, Pause) and Capability.PAUSE in driver.info.capabilities:
        with pytest.raises(DriverError):  # a suspended instance is not a paused one
            await driver.unpause(spec.uuid)
        assert await driver.get_power_state(spec.uuid) == PowerState.SUSPENDED
    if isinstance(driver, Power) and Capability.POWER in driver.info.capabilities:
        with pytest.raises(DriverError):  # start is for a stopped instance
            await driver.power_on(spec)
    await driver.resume(spec)
    await driver.resume(spec)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    # A driver restart keeps telling suspended from paused.
    await driver.suspend(spec.uuid)
    again = case.make(settings, "contract-host")  # what the driver fixture built
    await again.init_host()
    assert (await listed(again))[spec.uuid] == PowerState.SUSPENDED


async def test_suspended_instance_can_be_stopped_and_started(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.SUSPEND)
    needs(driver, Capability.POWER)
    assert isinstance(driver, Suspend) and isinstance(driver, Power)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.suspend(spec.uuid)
    await driver.power_off(spec.uuid)
    assert await driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN
    await driver.power_on(spec)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    await driver.suspend(spec.uuid)
    await driver.reboot(spec, hard=True)  # Nova allows a hard reboot of a suspended server
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING


async def test_rebuild_keeps_identity_and_runs(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.REBUILD)
    assert isinstance(driver, Rebuild)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.rebuild(spec)
    assert (await listed(driver))[spec.uuid] == PowerState.RUNNING


async def test_resize_confirm_and_revert(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.RESIZE)
    assert isinstance(driver, Resize)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    bigger = InstanceSpec(**{**spec.__dict__, "flavor": BIGGER})
    await driver.resize(bigger, SMALL)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    await assert_flavor(driver, spec.uuid, BIGGER)
    await driver.confirm_resize(spec.uuid)
    await assert_flavor(driver, spec.uuid, BIGGER)
    await driver.resize(InstanceSpec(**{**spec.__dict__, "flavor": SMALL}), BIGGER)
    await assert_flavor(driver, spec.uuid, SMALL)
    await driver.revert_resize(bigger)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    await assert_flavor(driver, spec.uuid, BIGGER)


async def test_resize_of_a_stopped_instance_lasts_over_a_start(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.RESIZE)
    needs(driver, Capability.POWER)
    assert isinstance(driver, Resize) and isinstance(driver, Power)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.power_off(spec.uuid)
    bigger = InstanceSpec(**{**spec.__dict__, "flavor": BIGGER})
    await driver.resize(bigger, SMALL)
    await driver.confirm_resize(spec.uuid)
    await driver.power_on(bigger)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    await assert_flavor(driver, spec.uuid, BIGGER)


async def assert_flavor(driver: Driver, uuid: str, flavor: FlavorSpec) -> None:
    """Diagnostics, where the driver has them, show the flavor now in force."""
    if Capability.DIAGNOSTICS not in driver.info.capabilities:
        return
    assert isinstance(driver, Diagnostics)
    diag = await driver.get_diagnostics(uuid)
    assert diag["memory_details"]["maximum"] == flavor.memory_mb
    assert diag["num_cpus"] == flavor.vcpus


async def test_snapshot_writes_into_the_workdir(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.SNAPSHOT)
    assert isinstance(driver, Snapshot)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    workdir = tmp_path / "snap"
    workdir.mkdir()
    result = await driver.snapshot(spec.uuid, str(workdir))
    assert isinstance(result, SnapshotResult)
    assert Path(result.path).parent == workdir and os.path.getsize(result.path) > 0
    assert result.disk_format and result.container_format


@pytest.mark.parametrize("state", ["paused", "shutdown", "suspended"])
async def test_snapshot_in_each_snapshottable_state_keeps_it(
    case: DriverCase, driver: Driver, tmp_path: Path, state: str
) -> None:
    """Nova snapshots ACTIVE, SHUTOFF, PAUSED and SUSPENDED servers; each stays as it was."""
    needs(driver, Capability.SNAPSHOT)
    cap, expected = {
        "paused": (Capability.PAUSE, PowerState.PAUSED),
        "shutdown": (Capability.POWER, PowerState.SHUTDOWN),
        "suspended": (Capability.SUSPEND, PowerState.SUSPENDED),
    }[state]
    needs(driver, cap)
    assert isinstance(driver, Snapshot)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    if state == "paused":
        assert isinstance(driver, Pause)
        await driver.pause(spec.uuid)
    elif state == "shutdown":
        assert isinstance(driver, Power)
        await driver.power_off(spec.uuid)
    else:
        assert isinstance(driver, Suspend)
        await driver.suspend(spec.uuid)
    workdir = tmp_path / "snap"
    workdir.mkdir()
    result = await driver.snapshot(spec.uuid, str(workdir))
    assert Path(result.path).parent == workdir and os.path.getsize(result.path) > 0
    assert await driver.get_power_state(spec.uuid) == expected
    assert (await listed(driver))[spec.uuid] == expected


async def test_console_output(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.CONSOLE)
    assert isinstance(driver, Console)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    text = await driver.get_console_output(spec.uuid)
    assert isinstance(text, str) and text.strip()
    assert len((await driver.get_console_output(spec.uuid, max_bytes=10)).encode()) <= 10


async def test_diagnostics_have_the_248_shape(case: DriverCase, driver: Driver, tmp_path: Path) -> None:
    needs(driver, Capability.DIAGNOSTICS)
    assert isinstance(driver, Diagnostics)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    diag = await driver.get_diagnostics(spec.uuid)
    assert set(diag) == DIAGNOSTICS_KEYS
    assert diag["state"] == "running" and diag["num_cpus"] == SMALL.vcpus
    assert diag["driver"] == driver.info.name and isinstance(diag["uptime"], int) and diag["uptime"] >= 0
    assert set(diag["memory_details"]) == {"maximum", "used"}
    assert diag["memory_details"]["maximum"] == SMALL.memory_mb
    assert 0 <= diag["memory_details"]["used"] <= SMALL.memory_mb
    assert diag["cpu_details"] and all({"id", "time", "utilisation"} <= set(d) for d in diag["cpu_details"])
    assert diag["num_nics"] == len(diag["nic_details"]) and diag["num_disks"] == len(diag["disk_details"])
    assert all(set(d) == {"read_bytes", "read_requests", "write_bytes", "write_requests", "errors_count"}
               for d in diag["disk_details"])
    if isinstance(driver, Power) and Capability.POWER in driver.info.capabilities:
        await driver.power_off(spec.uuid)
        off = await driver.get_diagnostics(spec.uuid)
        assert off["state"] == "shutdown" and off["uptime"] == 0 and off["memory_details"]["used"] == 0


async def test_metrics_sample_is_the_reading_behind_diagnostics(case: DriverCase, driver: Driver,
                                                                tmp_path: Path) -> None:
    """Issue 8: sample_instances samples what exists, and diagnostics read the same counters."""
    needs(driver, Capability.METRICS)
    assert isinstance(driver, Metrics)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    assert await driver.sample_instances([str(uuidlib.uuid4()), "../x"]) == []
    (first,) = await driver.sample_instances([spec.uuid])
    assert first.uuid == spec.uuid and first.power_state == PowerState.RUNNING
    assert first.cpu_seconds is not None and first.memory_used is not None
    assert first.memory_limit == SMALL.memory_mb * 2**20 and first.disks
    diag = await driver.get_diagnostics(spec.uuid)
    (second,) = await driver.sample_instances([spec.uuid])
    assert second.cpu_seconds is not None
    # Counters only grow: the diagnostics taken between two samples fall between them.
    assert first.cpu_seconds <= sum(c["time"] or 0 for c in diag["cpu_details"]) / 1e9 <= second.cpu_seconds
    assert diag["memory_details"]["maximum"] * 2**20 == second.memory_limit
    assert len(diag["disk_details"]) == len(second.disks) and len(diag["nic_details"]) == len(second.nics)
