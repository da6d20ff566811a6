"""The QEMU driver's state and image operations on real guests (the tiny VM under TCG):
suspend/resume (migration to a file and back), cold resize with confirm/revert, diagnostics,
snapshot, rebuild.

Guests are dear under TCG (seconds of a whole core each), so each test walks one guest through
many checks: five boots in all. Every QEMU started is killed in a finally (by the pids of the
QEMUs named for our own uuids), and every test's state lives in its own tmp dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _qemu_guest
import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import Capability, FlavorSpec, ImageSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.qemu import QemuDriver, disks, process, resize, suspend
from cumulo.errors import DriverError
from cumulo.image.demo import tinyvm

pytestmark = pytest.mark.skipif(bool(_qemu_guest.QEMU_MISSING), reason=_qemu_guest.QEMU_MISSING or "QEMU here")

SMALL = FlavorSpec(vcpus=1, memory_mb=256, root_gb=1)
BIGGER = FlavorSpec(vcpus=2, memory_mb=384, root_gb=2)
WITH_EPHEMERAL = FlavorSpec(vcpus=1, memory_mb=256, root_gb=1, ephemeral_gb=1)
GIB = 1 << 30
# user_data runs at every boot of the tiny VM: it tells the RAM the guest sees, and ticks its
# uptime onto the console, so a resumed guest shows that it went on rather than booted again.
USER_DATA = b"""#!/bin/sh
echo "memtotal $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2) kB"
(while :; do echo "tick $(cut -d' ' -f1 /proc/uptime)"; sleep 1; done) &
"""


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def artifacts() -> tinyvm.Artifacts:
    art: tinyvm.Artifacts = _qemu_guest.tiny_vm()  # built once, cached with the other QEMU tests
    return art


def tiny_image(art: tinyvm.Artifacts, disk: Path | None = None) -> ImageSpec:
    """The tiny VM's root-disk image (or `disk`), booting its kernel and ramdisk (AKI/ARI)."""
    return _qemu_guest.tiny_image(disk)


def make_spec(image: ImageSpec, flavor: FlavorSpec = SMALL, uid: str | None = None) -> InstanceSpec:
    uid = uid or str(uuidlib.uuid4())
    return InstanceSpec(uuid=uid, name=f"ops-{uid[:8]}", hostname=f"ops-{uid[:8]}", project_id="p",
                        flavor=flavor, image=image, user_data=USER_DATA)


def resized(spec: InstanceSpec, flavor: FlavorSpec) -> InstanceSpec:
    return InstanceSpec(**{**spec.__dict__, "flavor": flavor})


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[QemuDriver]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")  # a deep dir: QMP paths > 108 bytes
    conf = conf.replace(extra={**conf.extra, "qemu_accel": "tcg", "qemu_boot_timeout": 120})
    drv = load_driver("qemu", conf, "ops-host", local=True)
    assert isinstance(drv, QemuDriver)
    await drv.init_host()
    try:
        yield drv
    finally:
        uuids = [p.name for p in drv.dir.iterdir()] if drv.dir.is_dir() else []
        for uid in uuids:
            await drv.destroy(uid)
        for uid in uuids:  # by pid, whatever state a failed test left
            for pid in process.scan_pids(uid):
                os.kill(pid, 9)
        assert not any(process.scan_pids(uid) for uid in uuids)


def console(drv: QemuDriver, uid: str) -> str:
    return (drv.dir / uid / "console.log").read_text(errors="replace")


async def wait_console(drv: QemuDriver, uid: str, pattern: str, after: int = 0, timeout: float = 60.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        m = re.compile(pattern).search(console(drv, uid), after)
        if m:
            return m
        assert time.monotonic() < deadline, f"{pattern!r} not on the console:\n{console(drv, uid)[-2000:]}"
        await asyncio.sleep(0.2)


def ticks(text: str) -> list[float]:
    return [float(t) for t in re.findall(r"tick ([0-9.]+)", text, re.M)]


def img_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(path)],  # noqa: S603  # fixed argv
                         check=True, capture_output=True).stdout
    return dict(json.loads(out))


def record(drv: QemuDriver, uid: str) -> dict[str, Any]:
    return dict(json.loads((drv.dir / uid / "instance.json").read_text()))


def argv_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# -- suspend / resume, diagnostics, cold resize (one guest, three boots) -------------------------


async def test_suspend_resume_diagnostics_and_resize(driver: QemuDriver, artifacts: tinyvm.Artifacts,
                                                     tmp_path: Path) -> None:
    assert {Capability.SUSPEND, Capability.RESIZE, Capability.REBUILD, Capability.SNAPSHOT,
            Capability.DIAGNOSTICS} <= driver.info.capabilities
    assert driver.info.details["suspend"] == "migrate-to-file"
    spec = make_spec(tiny_image(artifacts))
    uid = spec.uuid
    idir = driver.dir / uid
    await driver.spawn(spec)
    m = await wait_console(driver, uid, r"memtotal (\d+) kB")
    small_mem = int(m.group(1))
    await wait_console(driver, uid, r"tick ", m.end())

    # Diagnostics of the running guest, from QMP and /proc.
    diag = await driver.get_diagnostics(uid)
    assert diag["state"] == "running" and diag["driver"] == "qemu" and diag["hypervisor"] == "qemu"
    assert diag["num_cpus"] == 1 and len(diag["cpu_details"]) == 1
    assert diag["cpu_details"][0]["id"] == 0 and diag["cpu_details"][0]["time"] > 0
    assert 0 <= diag["cpu_details"][0]["utilisation"] <= 100
    assert diag["memory_details"]["maximum"] == 256 and 0 < diag["memory_details"]["used"] <= 256
    assert diag["num_disks"] == len(diag["disk_details"]) == 2  # root + config drive
    assert sum(d["read_bytes"] for d in diag["disk_details"]) > 0  # the guest read its config drive
    assert diag["config_drive"] is True and diag["uptime"] >= 0 and diag["num_nics"] == 0

    # Suspend: the guest state goes to a file and QEMU goes away.
    pid = process.live_pid(process.Layout(idir))
    assert pid is not None
    before = ticks(console(driver, uid))[-1]
    t0 = time.monotonic()
    await driver.suspend(uid)
    suspend_s = time.monotonic() - t0
    await driver.suspend(uid)  # idempotent
    assert process.scan_pids(uid) == [] and not process.is_ours(pid, uid)  # gone (or a zombie of init)
    assert (idir / suspend.STATE_FILE).stat().st_size > 1 << 20 and (idir / suspend.SUSPENDED).is_file()
    assert not list(idir.glob(".*tmp"))
    assert await driver.get_power_state(uid) == PowerState.SUSPENDED
    assert {s.uuid: s.power_state for s in await driver.list_instances()}[uid] == PowerState.SUSPENDED
    again = load_driver("qemu", driver.conf, "ops-host", local=True)  # a restarted agent
    await again.init_host()
    assert await again.get_power_state(uid) == PowerState.SUSPENDED
    off = await driver.get_diagnostics(uid)
    assert off["state"] == "suspended" and off["uptime"] == 0 and off["memory_details"]["used"] == 0
    with pytest.raises(DriverError):
        await driver.unpause(uid)  # suspended is not paused
    with pytest.raises(DriverError):
        await driver.power_on(spec)  # nor shut down
    await asyncio.sleep(1.5)  # host time passes; the guest's does not

    # Resume: the same guest goes on, it does not boot again.
    mark = len(console(driver, uid))
    t0 = time.monotonic()
    await driver.resume(spec)
    resume_s = time.monotonic() - t0
    await driver.resume(spec)  # idempotent
    assert await driver.get_power_state(uid) == PowerState.RUNNING
    assert not (idir / suspend.STATE_FILE).exists() and not (idir / suspend.SUSPENDED).exists()
    m = await wait_console(driver, uid, r"tick ", mark)
    await wait_console(driver, uid, r"tick ", m.end())
    after = console(driver, uid)[mark:]
    assert tinyvm.BANNER not in after and "memtotal" not in after  # no new boot
    assert ticks(after)[0] > before  # the guest's uptime went on from where it was
    assert "-incoming" not in record(driver, uid)["argv"]
    print(f"\nsuspend {suspend_s:.2f}s, resume {resume_s:.2f}s (256 MB guest, TCG)")

    # Cold resize of a running guest: it restarts with the new -m/-smp and a bigger disk.
    mark = len(console(driver, uid))
    await driver.resize(resized(spec, BIGGER), SMALL)
    assert await driver.get_power_state(uid) == PowerState.RUNNING
    m = await wait_console(driver, uid, r"memtotal (\d+) kB", mark)
    big_mem = int(m.group(1))
    assert big_mem > small_mem + 100 * 1024  # the guest sees the new RAM in /proc/meminfo
    argv = record(driver, uid)["argv"]
    assert argv_value(argv, "-m") == "384" and argv_value(argv, "-smp") == "2"
    assert img_info(idir / "disk.qcow2")["virtual-size"] == 2 * GIB
    assert img_info(idir / resize.PRE_DISK)["virtual-size"] == 1 * GIB
    diag = await driver.get_diagnostics(uid)
    assert diag["memory_details"]["maximum"] == 384 and diag["num_cpus"] == 2 and len(diag["cpu_details"]) == 2

    # Revert: the old disk and size come back, and it runs again.
    mark = len(console(driver, uid))
    await driver.revert_resize(spec)
    assert await driver.get_power_state(uid) == PowerState.RUNNING
    m = await wait_console(driver, uid, r"memtotal (\d+) kB", mark)
    assert int(m.group(1)) == small_mem
    assert img_info(idir / "disk.qcow2")["virtual-size"] == 1 * GIB
    assert not (idir / resize.PRE_DISK).exists() and not (idir / resize.OLD).exists()
    assert argv_value(record(driver, uid)["argv"], "-m") == "256"

    # Suspend again, then stop: the saved state is dropped (a start boots afresh).
    await driver.suspend(uid)
    await driver.power_off(uid)
    assert await driver.get_power_state(uid) == PowerState.SHUTDOWN
    assert not (idir / suspend.STATE_FILE).exists() and not (idir / suspend.SUSPENDED).exists()
    with pytest.raises(DriverError):
        await driver.suspend(uid)  # only a running guest
    await driver.destroy(uid)
    assert not idir.exists() and process.scan_pids(uid) == []


# -- snapshot, rebuild, and a stopped guest (two boots) -----------------------------------------


async def test_snapshot_boots_and_rebuild(driver: QemuDriver, artifacts: tinyvm.Artifacts, tmp_path: Path) -> None:
    image = tiny_image(artifacts)
    spec = make_spec(image)
    uid = spec.uuid
    idir = driver.dir / uid
    await driver.spawn(spec)
    m = await wait_console(driver, uid, r"tick ([0-9.]+)")

    # Snapshot of the running guest: a standalone qcow2; the guest runs on.
    workdir = tmp_path / "snap"
    workdir.mkdir()
    result = await driver.snapshot(uid, str(workdir))
    assert Path(result.path).parent == workdir and (result.disk_format, result.container_format) == ("qcow2", "bare")
    info = img_info(Path(result.path))
    assert info["format"] == "qcow2" and "backing-filename" not in info and info["virtual-size"] == GIB
    assert result.properties == {"kernel_id": "aki-tiny", "ramdisk_id": "ari-tiny", "os_command_line": artifacts.cmdline,
                                 "cumulo_boot_banner": tinyvm.READY, "hypervisor_type": "qemu"}
    assert await driver.get_power_state(uid) == PowerState.RUNNING
    await wait_console(driver, uid, r"tick ", m.end())  # ticking again after the pause

    # A rebuild onto a broken image fails before the server is touched.
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\0" * 100)
    disk_inode = (idir / "disk.qcow2").stat().st_ino
    with pytest.raises(DriverError, match="rebuild of .* failed: .*"):
        await driver.rebuild(make_spec(tiny_image(artifacts, bad), uid=uid))
    assert (idir / "disk.qcow2").stat().st_ino == disk_inode
    assert await driver.get_power_state(uid) == PowerState.RUNNING
    assert not list(idir.glob(".*rebuild*"))

    # Rebuild onto the snapshot: same server, new disk and name, boots from the snapshot.
    snap_image = tiny_image(artifacts, Path(result.path))
    rebuilt = InstanceSpec(**{**make_spec(snap_image, uid=uid).__dict__, "hostname": "rebuilt-vm"})
    mark = len(console(driver, uid))
    await driver.rebuild(rebuilt)
    assert await driver.get_power_state(uid) == PowerState.RUNNING
    await wait_console(driver, uid, r"ready hostname=rebuilt-vm", mark)  # config drive rewritten
    rec = record(driver, uid)
    assert rec["image_id"] == snap_image.id and rec["uuid"] == uid
    assert (idir / "disk.qcow2").stat().st_ino != disk_inode
    assert Path(img_info(idir / "disk.qcow2")["full-backing-filename"]).parent == driver.base_dir

    # A stopped guest: resize applies at the next start (an ephemeral disk comes with the flavor),
    # revert puts the old disks back, confirm drops them; snapshot works. No boot for any of it.
    await driver.power_off(uid)
    await driver.resize(resized(rebuilt, WITH_EPHEMERAL), SMALL)
    assert await driver.get_power_state(uid) == PowerState.SHUTDOWN
    assert img_info(idir / "ephemeral.qcow2")["virtual-size"] == GIB
    assert record(driver, uid)["argv"].count("-device") == 3
    assert (await driver.get_diagnostics(uid))["num_disks"] == 3
    await driver.revert_resize(rebuilt)
    assert await driver.get_power_state(uid) == PowerState.SHUTDOWN
    assert not (idir / "ephemeral.qcow2").exists() and not (idir / resize.PRE_DISK).exists()
    assert img_info(idir / "disk.qcow2")["virtual-size"] == GIB
    assert argv_value(record(driver, uid)["argv"], "-m") == "256"
    await driver.resize(resized(rebuilt, BIGGER), SMALL)
    assert await driver.get_power_state(uid) == PowerState.SHUTDOWN
    assert (idir / resize.PRE_DISK).exists()
    assert argv_value(record(driver, uid)["argv"], "-m") == "384"
    diag = await driver.get_diagnostics(uid)
    assert diag["state"] == "shutdown" and diag["memory_details"] == {"maximum": 384, "used": 0}
    assert diag["num_cpus"] == 2 and diag["uptime"] == 0 and diag["num_disks"] == len(diag["disk_details"]) == 2
    await driver.confirm_resize(uid)
    await driver.confirm_resize(uid)
    assert not (idir / resize.PRE_DISK).exists() and not (idir / resize.OLD).exists()
    assert img_info(idir / "disk.qcow2")["virtual-size"] == 2 * GIB
    (tmp_path / "snap2").mkdir()
    stopped = await driver.snapshot(uid, str(tmp_path / "snap2"))
    assert img_info(Path(stopped.path))["virtual-size"] == 2 * GIB
    assert await driver.get_power_state(uid) == PowerState.SHUTDOWN
    await driver.destroy(uid)
    assert not idir.exists()


# -- a failed resize: the reverter puts everything back --------------------------------------------


async def test_a_failed_resize_puts_the_old_size_back_and_runs_again(
    driver: QemuDriver, artifacts: tinyvm.Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tiny_image(artifacts))
    uid = spec.uuid
    idir = driver.dir / uid
    await driver.spawn(spec)
    await wait_console(driver, uid, r"memtotal \d+ kB")
    before = record(driver, uid)

    async def no_room(path: Path, size_gb: int) -> None:
        raise DriverError(f"no room for {path.name}")  # the step after the copies and the root disk

    monkeypatch.setattr(disks, "create_blank", no_room)
    mark = len(console(driver, uid))
    with pytest.raises(DriverError, match=r"failed \(the old size is back\): no room for ephemeral.qcow2"):
        await driver.resize(resized(spec, WITH_EPHEMERAL), SMALL)
    # Undone, the last step first: the kept disks back (and gone as copies), the old record, the
    # guest running again at its old size.
    assert await driver.get_power_state(uid) == PowerState.RUNNING
    assert not (idir / resize.PRE_DISK).exists() and not (idir / resize.OLD).exists()
    assert not (idir / "ephemeral.qcow2").exists()
    assert img_info(idir / "disk.qcow2")["virtual-size"] == GIB
    after = record(driver, uid)
    assert after["flavor"] == before["flavor"] and argv_value(after["argv"], "-m") == "256"
    assert "resize failed; old size: starting QEMU" in console(driver, uid)[mark:]
    await wait_console(driver, uid, r"memtotal \d+ kB", mark)  # booted again
