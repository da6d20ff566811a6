"""What only the runc driver promises: the container sees its name and flavor, and nothing is left.

Every test uses its own state dir (tmp_path), so its runc --root, mounts and dirs are its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.runc import RuncDriver
from cumulo.errors import DriverError
from cumulo.image.demo.busybox import BUSYBOX, build_busybox

RUNC_MISSING = (
    "runc is not installed" if shutil.which("runc") is None
    else "the runc driver needs root" if os.geteuid() != 0
    else f"{BUSYBOX} is missing (apt-get install busybox-static)" if not BUSYBOX.is_file()
    else ""
)


def _busybox_image(tmp: Path, **props: str) -> ImageSpec:
    path = tmp / "busybox.tar"
    if not path.exists():
        build_busybox(path)
    return ImageSpec(id=str(uuidlib.uuid4()), path=str(path), disk_format="raw", container_format="docker",
                     properties=dict(props))

pytestmark = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")


@pytest.fixture
async def runc_driver(tmp_path: Path) -> AsyncIterator[RuncDriver]:
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state")
    drv = load_driver("runc", settings.replace(extra={"runc_stop_grace": 0.5}), "runc-host", local=True)
    assert isinstance(drv, RuncDriver)
    await drv.init_host()
    yield drv
    for st in await drv.list_instances():
        await drv.destroy(st.uuid)
    assert_nothing_left(drv, tmp_path)


def runc_ids(drv: RuncDriver) -> list[str]:
    argv = ["runc", "--root", str(drv.runc.root), "list", "--format", "json"]
    out = subprocess.run(argv,  # noqa: S603  # fixed argv, no shell
                         check=True, capture_output=True, timeout=30).stdout
    return [c["id"] for c in json.loads(out or b"null") or []]


MADE: list[str] = []  # uuids of every spec made here: none may keep a cgroup once its test ends


def cgroup_dirs(uuid: str) -> list[Path]:
    return sorted(Path("/sys/fs/cgroup").glob(f"*/cumulo/cumulo-{uuid}"))


def assert_nothing_left(drv: RuncDriver, tmp_path: Path) -> None:
    assert runc_ids(drv) == []
    with open("/proc/self/mountinfo") as fh:
        assert not [line for line in fh if str(tmp_path) in line]
    assert not drv.dir.exists() or list(drv.dir.iterdir()) == []
    assert [d for uuid in MADE for d in cgroup_dirs(uuid)] == []


def spec_for(tmp_path: Path, name: str, memory_mb: int = 128, **props: str) -> InstanceSpec:
    uid = str(uuidlib.uuid4())
    MADE.append(uid)
    return InstanceSpec(uuid=uid, name=name, hostname=name, project_id="p",
                        flavor=FlavorSpec(vcpus=1, memory_mb=memory_mb, root_gb=1),
                        image=_busybox_image(tmp_path, **props))


def runc_exec(drv: RuncDriver, uuid: str, *argv: str) -> str:
    cmd = ["runc", "--root", str(drv.runc.root), "exec", f"cumulo-{uuid}", *argv]
    res = subprocess.run(cmd,  # noqa: S603  # fixed argv, no shell
                         check=True, capture_output=True, timeout=30)
    return res.stdout.decode().strip()


async def test_container_sees_its_hostname_and_memory_limit(runc_driver: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "web-one", memory_mb=96)
    await runc_driver.spawn(spec)
    assert runc_exec(runc_driver, spec.uuid, "hostname") == "web-one"
    limit = runc_exec(runc_driver, spec.uuid, "sh", "-c",
                      "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert int(limit) == 96 * 1024 * 1024
    # No host filesystem: the container's root is the image's (plus /mnt, for the config drive).
    assert runc_exec(runc_driver, spec.uuid, "ls", "/").split() == sorted(
        ["bin", "dev", "etc", "home", "mnt", "proc", "root", "run", "sys", "tmp", "var"])
    await runc_driver.destroy(spec.uuid)
    assert_nothing_left(runc_driver, tmp_path)


async def test_os_command_line_overrides_and_console_shows_output(runc_driver: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "echoer", os_command_line="/bin/sh -c 'echo custom-command-ran; exec sleep 60'")
    await runc_driver.spawn(spec)
    for _ in range(50):
        if "custom-command-ran" in await runc_driver.get_console_output(spec.uuid):
            break
        await asyncio.sleep(0.05)
    assert "custom-command-ran" in await runc_driver.get_console_output(spec.uuid)


async def test_failed_spawn_quotes_runc_and_leaves_nothing(runc_driver: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "broken", os_command_line="/no/such/command")
    with pytest.raises(DriverError, match="no/such/command"):
        await runc_driver.spawn(spec)
    assert_nothing_left(runc_driver, tmp_path)


async def test_exited_process_is_shutdown_and_destroy_cleans_up(runc_driver: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "shortlived", os_command_line="/bin/sh -c 'echo bye'")
    await runc_driver.spawn(spec)
    for _ in range(100):
        if await runc_driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN:
            break
        await asyncio.sleep(0.05)
    assert await runc_driver.get_power_state(spec.uuid) == PowerState.SHUTDOWN
    assert "bye" in await runc_driver.get_console_output(spec.uuid)
    await runc_driver.destroy(spec.uuid)
    assert_nothing_left(runc_driver, tmp_path)


async def test_cleanup_orphans_removes_containers_mounts_and_dirs(runc_driver: RuncDriver, tmp_path: Path) -> None:
    keep, drop = spec_for(tmp_path, "keep"), spec_for(tmp_path, "drop")
    await runc_driver.spawn(keep)
    await runc_driver.spawn(drop)
    await runc_driver.power_off(keep.uuid)
    assert set(await runc_driver.cleanup_orphans({keep.uuid})) == {drop.uuid}
    assert runc_ids(runc_driver) == []
    assert [p.name for p in runc_driver.dir.iterdir()] == [keep.uuid]
    assert await runc_driver.cleanup_orphans(set()) == [keep.uuid]
    assert_nothing_left(runc_driver, tmp_path)


# -- cgroup-side operations -------------------------------------------------------------------

MIB = 1024 * 1024


def host_limit(uuid: str) -> int:
    return int(Path(f"/sys/fs/cgroup/memory/cumulo/cumulo-{uuid}/memory.limit_in_bytes").read_text())


def inside_limit(drv: RuncDriver, uuid: str) -> int:
    return int(runc_exec(drv, uuid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def with_flavor(spec: InstanceSpec, vcpus: int, memory_mb: int) -> InstanceSpec:
    return InstanceSpec(**{**spec.__dict__, "flavor": FlavorSpec(vcpus=vcpus, memory_mb=memory_mb, root_gb=1)})


async def test_resize_updates_the_live_cgroup_and_survives_a_restart(runc_driver: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "resizer", memory_mb=128)
    await runc_driver.spawn(spec)
    cid_cpu = Path(f"/sys/fs/cgroup/cpu/cumulo/cumulo-{spec.uuid}")
    assert host_limit(spec.uuid) == inside_limit(runc_driver, spec.uuid) == 128 * MIB
    bigger = with_flavor(spec, 2, 256)
    await runc_driver.resize(bigger, spec.flavor)
    assert host_limit(spec.uuid) == inside_limit(runc_driver, spec.uuid) == 256 * MIB
    assert int((cid_cpu / "cpu.cfs_quota_us").read_text()) == 2 * int((cid_cpu / "cpu.cfs_period_us").read_text())
    assert (runc_driver.dir / spec.uuid / "resize-old-flavor.json").is_file()  # kept until confirm/revert
    # A stop/start in VERIFY_RESIZE keeps the new limits (config.json was rewritten).
    await runc_driver.power_off(spec.uuid)
    await runc_driver.power_on(bigger)
    assert host_limit(spec.uuid) == inside_limit(runc_driver, spec.uuid) == 256 * MIB
    await runc_driver.revert_resize(spec)
    assert host_limit(spec.uuid) == inside_limit(runc_driver, spec.uuid) == 128 * MIB
    assert int((cid_cpu / "cpu.cfs_quota_us").read_text()) == int((cid_cpu / "cpu.cfs_period_us").read_text())
    assert not (runc_driver.dir / spec.uuid / "resize-old-flavor.json").exists()
    await runc_driver.reboot(spec, hard=True)  # ... and the old ones after a revert
    assert host_limit(spec.uuid) == inside_limit(runc_driver, spec.uuid) == 128 * MIB
    pids = Path(f"/sys/fs/cgroup/pids/cumulo/cumulo-{spec.uuid}/pids.max").read_text().strip()
    assert pids == str(runc_driver.pids_limit)  # resize keeps the pids limit
    await runc_driver.destroy(spec.uuid)
    assert_nothing_left(runc_driver, tmp_path)


async def test_resize_below_usage_fails_and_keeps_the_limits(runc_driver: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "hog", memory_mb=64,
                    os_command_line="/bin/sh -c 'mkdir -p /dev/shm/x; head -c 20000000 /dev/zero > /dev/shm/x/f; exec sleep 60'")
    await runc_driver.spawn(spec)
    for _ in range(100):
        if (await runc_driver.get_diagnostics(spec.uuid))["memory_details"]["used"] >= 19:
            break
        await asyncio.sleep(0.05)
    with pytest.raises(DriverError, match="update"):
        await runc_driver.resize(with_flavor(spec, 1, 4), spec.flavor)  # 4 MB < the 20 MB in use
    assert host_limit(spec.uuid) == 64 * MIB
    config = json.loads((runc_driver.dir / spec.uuid / "config.json").read_text())
    assert config["linux"]["resources"]["memory"]["limit"] == 64 * MIB


async def test_diagnostics_read_the_cgroup(runc_driver: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "diag", memory_mb=96,
                    os_command_line="/bin/sh -c 'sleep 300 & sleep 300 & i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; wait'")
    await runc_driver.spawn(spec)
    await asyncio.sleep(0.3)
    diag = await runc_driver.get_diagnostics(spec.uuid)
    cg = f"cumulo/cumulo-{spec.uuid}"
    cpu = diag["cpu_details"][0]
    assert diag["memory_details"]["maximum"] == 96
    assert cpu["pids"] == int(Path(f"/sys/fs/cgroup/pids/{cg}/pids.current").read_text()) >= 3
    assert cpu["pids_limit"] == runc_driver.pids_limit
    assert 0 < cpu["time"] <= int(Path(f"/sys/fs/cgroup/cpuacct/{cg}/cpuacct.usage").read_text())
    assert cpu["utilisation"] is None or 0 <= cpu["utilisation"] <= 100
    used = int(Path(f"/sys/fs/cgroup/memory/{cg}/memory.usage_in_bytes").read_text())
    assert abs(diag["memory_details"]["used"] - used // MIB) <= 1
    assert diag["nic_details"] == [] and diag["num_nics"] == 0  # loopback only until NICs are plugged


async def test_suspend_uses_the_freezer_when_criu_fails_and_says_so(runc_driver: RuncDriver, tmp_path: Path) -> None:
    details = runc_driver.info.details
    criu = shutil.which("criu")
    criu_ok = criu is not None and subprocess.run([criu, "check"],  # noqa: S603  # fixed argv, no shell
                                                  capture_output=True, timeout=30).returncode == 0
    assert details["suspend"] == ("criu" if criu_ok else "freezer")
    if not criu_ok:
        assert details["suspend_reason"].startswith(("criu check failed:", "criu is not installed"))
        assert "exited, status" not in details["suspend_reason"]  # the telling line, not the wrapper's
    spec = spec_for(tmp_path, "sleeper")
    await runc_driver.spawn(spec)
    await runc_driver.suspend(spec.uuid)
    assert await runc_driver.get_power_state(spec.uuid) == PowerState.SUSPENDED
    if not criu_ok:
        state = Path(f"/sys/fs/cgroup/freezer/cumulo/cumulo-{spec.uuid}/freezer.state").read_text().strip()
        assert state == "FROZEN"
    with pytest.raises(DriverError):
        await runc_driver.pause(spec.uuid)  # suspended is not running
    await runc_driver.resume(spec)
    assert await runc_driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert runc_exec(runc_driver, spec.uuid, "echo", "thawed") == "thawed"
    console = await runc_driver.get_console_output(spec.uuid)
    assert "suspended" in console and "resumed" in console


async def test_an_exit_is_told_once_and_a_stop_is_not_an_exit(runc_driver: RuncDriver, tmp_path: Path) -> None:
    short = spec_for(tmp_path, "brief", os_command_line="/bin/sh -c 'echo bye; exit 3'")
    long = spec_for(tmp_path, "stays")
    await runc_driver.spawn(short)
    await runc_driver.spawn(long)
    for _ in range(100):
        if (await runc_driver.list_instances()) and await runc_driver.get_power_state(short.uuid) == PowerState.SHUTDOWN:
            break
        await asyncio.sleep(0.05)
    for _ in range(3):  # the power sync lists every few seconds
        statuses = {st.uuid: st.power_state for st in await runc_driver.list_instances()}
    assert statuses[short.uuid] == PowerState.SHUTDOWN
    console = await runc_driver.get_console_output(short.uuid)
    assert console.count("container process exited") == 1 and "bye" in console
    # Started again, it exits again: told once more.
    await runc_driver.power_on(short)
    for _ in range(100):
        await runc_driver.list_instances()
        if (await runc_driver.get_console_output(short.uuid)).count("container process exited") == 2:
            break
        await asyncio.sleep(0.05)
    assert (await runc_driver.get_console_output(short.uuid)).count("container process exited") == 2
    await runc_driver.power_off(long.uuid)
    await runc_driver.list_instances()
    console = await runc_driver.get_console_output(long.uuid)
    assert "stopping container (power off" in console and "container process exited" not in console


async def _wait_console(drv: RuncDriver, uuid: str, marker: bytes, bound: int, timeout: float = 120.0) -> bytes:
    """Poll console.log until `marker` is in it, asserting on every look that it is within the bound."""
    log = drv.dir / uuid / "console.log"
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        data = log.read_bytes() if log.exists() else b""
        assert len(data) <= bound, f"console.log holds {len(data)} bytes, past its bound of {bound}"
        if marker in data:
            return data
        assert asyncio.get_running_loop().time() < deadline, f"{marker!r} never reached the console"
        await asyncio.sleep(0.01)


CHATTY = ("i=0; while [ $i -lt {n} ]; do echo line-$i-abcdefghijklmnopqrstuvwxyz0123456789; i=$((i+1)); done; "
          "echo end-of-output-\"{tag}\"; exec sleep 600")  # 50 bytes a line; the quotes keep the marker out of our note


async def test_console_log_stays_bounded_while_the_container_runs(tmp_path: Path) -> None:
    """The container writes 16 x the bound and an end marker; at no point does the log pass the bound,
    and it ends with the last lines in order. No fixed wait: the end marker is the condition."""
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state")
    bound = 8192
    drv = load_driver("runc", settings.replace(extra={"runc_stop_grace": 0.5, "runc_console_max_bytes": bound}),
                      "runc-host", local=True)
    assert isinstance(drv, RuncDriver)
    await drv.init_host()
    n = 16 * bound // 50
    spec = spec_for(tmp_path, "chatty", os_command_line=f"/bin/sh -c '{CHATTY.format(n=n, tag='one')}'")
    try:
        await drv.spawn(spec)
        data = await _wait_console(drv, spec.uuid, b"end-of-output-one", bound)
        assert b"\0" not in data and data.rstrip().endswith(b"end-of-output-one")
        lines = data.splitlines()
        assert lines[-2] == f"line-{n - 1}-abcdefghijklmnopqrstuvwxyz0123456789".encode()
        # Whole lines only, consecutive: nothing lost inside what is kept.
        numbers = [int(ln.split(b"-")[1]) for ln in lines[:-1] if ln.startswith(b"line-")]
        assert numbers == list(range(numbers[0], n)) and len(numbers) >= bound // 2 // 50 - 1
        assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING
    finally:
        await drv.destroy(spec.uuid)
    assert_nothing_left(drv, tmp_path)


async def test_console_output_survives_the_agent_going_away(tmp_path: Path) -> None:
    """An agent killed mid-output: the container keeps running (its writes wait in the FIFO, no
    SIGPIPE), and a new agent on the same state dir adopts the console and gets the rest."""
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state").replace(
        extra={"runc_stop_grace": 0.5, "runc_console_max_bytes": 8192})
    first = load_driver("runc", settings, "runc-host", local=True)
    assert isinstance(first, RuncDriver)
    await first.init_host()
    # Waits (inside the container) for a file the test makes through the root's host view.
    script = ("echo before-the-\"restart\"; while [ ! -e /gate ]; do sleep 0.05; done; "
              + CHATTY.format(n=4000, tag="two"))
    spec = spec_for(tmp_path, "survivor-console", os_command_line=f"/bin/sh -c '{script}'")
    await first.spawn(spec)
    owner = first  # the driver whose drain runs: it removes the server (waiting for its drain)
    try:
        await _wait_console(first, spec.uuid, b"before-the-restart", 8192)
        await first.consoles.stop_all()  # the agent is gone: nobody drains the FIFO
        (first.dir / spec.uuid / "rootfs" / "gate").write_text("go")
        # 200 kB of output against a 64 KiB pipe: the container blocks, it does not die.
        second = load_driver("runc", settings, "runc-host", local=True)
        assert isinstance(second, RuncDriver)
        await second.init_host()
        owner = second
        assert [s.power_state for s in await second.list_instances()] == [PowerState.RUNNING]
        data = await _wait_console(second, spec.uuid, b"end-of-output-two", 8192)
        assert data.splitlines()[-2].startswith(b"line-3999-")
        assert await second.get_power_state(spec.uuid) == PowerState.RUNNING
    finally:
        await owner.destroy(spec.uuid)
    assert_nothing_left(first, tmp_path)


async def test_start_after_a_host_reboot_mounts_the_root_again(runc_driver: RuncDriver, tmp_path: Path) -> None:
    """A host reboot drops the overlay mount (and the netns) but keeps the private upper dir."""
    spec = spec_for(tmp_path, "survivor")
    await runc_driver.spawn(spec)
    runc_exec(runc_driver, spec.uuid, "sh", "-c", "echo kept > /root/written-before")
    await runc_driver.power_off(spec.uuid, timeout=0)
    merged = runc_driver.dir / spec.uuid / "rootfs"
    subprocess.run(["umount", str(merged)], check=True, timeout=30)  # noqa: S603,S607  # fixed argv
    subprocess.run(["ip", "netns", "del", f"cumulo-{spec.uuid}"], check=True, timeout=30)  # noqa: S603,S607
    await runc_driver.power_on(spec)
    assert await runc_driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert runc_exec(runc_driver, spec.uuid, "cat", "/root/written-before") == "kept"
    await runc_driver.destroy(spec.uuid)
    assert_nothing_left(runc_driver, tmp_path)
