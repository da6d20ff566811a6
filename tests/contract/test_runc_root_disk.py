"""A runc server's root disk binds to its flavor (issue 8, 1.6): ENOSPC inside, the host unharmed.

Each test runs a real runc driver on its own state dir and checks, by its own paths, that no
mount and no loop device backed by its files is left behind.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_runc_driver import RUNC_MISSING, assert_nothing_left, runc_exec, spec_for

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec
from cumulo.compute.drivers.runc import RuncDriver, rootdisk

pytestmark = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")
GIB = 1 << 30
MIB = 1 << 20


def loop_backings(under: Path) -> list[str]:
    """Loop devices whose backing file is below `under` (from sysfs: no losetup needed)."""
    out = []
    for f in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            backing = f.read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(under)):
            out.append(f"{f.parent.parent.name}: {backing}")
    return out


@pytest.fixture
async def drv(tmp_path: Path) -> AsyncIterator[RuncDriver]:
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state")
    driver = load_driver("runc", settings.replace(extra={"runc_stop_grace": 0.5, "runc_root_disk": "ext4"}),
                         "runc-host", local=True)
    assert isinstance(driver, RuncDriver)
    await driver.init_host()
    assert driver.info.details["root_disk"] == "ext4"
    yield driver
    for st in await driver.list_instances():
        await driver.destroy(st.uuid)
    assert_nothing_left(driver, tmp_path)
    assert loop_backings(tmp_path) == []


def du_bytes(path: Path) -> int:
    """Bytes the host filesystem really holds for the files below `path` (allocated blocks, so
    sparse-aware), not crossing into mounts (the server's disk and root are counted once, as the
    disk image's blocks)."""
    dev = os.lstat(path).st_dev
    total = 0
    for dirpath, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if st.st_dev == dev:
                total += st.st_blocks * 512
    return total


def sh(drv: RuncDriver, uuid: str, script: str) -> subprocess.CompletedProcess[bytes]:
    cmd = ["runc", "--root", str(drv.runc.root), "exec", f"cumulo-{uuid}", "sh", "-c", script]
    return subprocess.run(cmd, capture_output=True, timeout=300, check=False)  # noqa: S603  # fixed argv


def with_disk(spec: InstanceSpec, root_gb: int) -> InstanceSpec:
    return dataclasses.replace(spec, flavor=FlavorSpec(vcpus=1, memory_mb=spec.flavor.memory_mb, root_gb=root_gb))


async def test_a_full_root_disk_is_enospc_inside_and_bounded_on_the_host(drv: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "filler")  # flavor root_gb=1
    await drv.spawn(spec)
    before = du_bytes(tmp_path)
    # df inside shows the flavor's disk, not the host's.
    size_kb = int(runc_exec(drv, spec.uuid, "df", "-k", "/").splitlines()[-1].split()[1])
    assert 0.9 * GIB / 1024 < size_kb <= GIB / 1024
    # 1.5 GB asked for; the disk ends it with ENOSPC after about 1 GB.
    res = sh(drv, spec.uuid, "dd if=/dev/zero of=/big bs=1M count=1536 conv=fsync 2>&1; echo rc=$?")
    out = res.stdout.decode(errors="replace")
    assert "No space left on device" in out, out
    assert "rc=0" not in out
    written = int(runc_exec(drv, spec.uuid, "stat", "-c", "%s", "/big"))
    assert 0.8 * GIB < written <= GIB
    grown = du_bytes(tmp_path) - before
    assert grown <= GIB + 16 * MIB, f"the host grew by {grown} bytes"
    # Deleting gives the space back to the tenant and to the host (discard punches holes).
    sh(drv, spec.uuid, "rm /big; sync")
    deadline = time.monotonic() + 30
    while du_bytes(tmp_path) - before > 64 * MIB and time.monotonic() < deadline:
        time.sleep(0.2)
    assert du_bytes(tmp_path) - before <= 64 * MIB
    assert "rc=0" in sh(drv, spec.uuid, "echo x > /small; echo rc=$?").stdout.decode()
    await drv.destroy(spec.uuid)
    assert loop_backings(tmp_path) == []


async def test_resize_changes_the_disk_and_rebuild_keeps_the_limit(drv: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "grower")
    await drv.spawn(spec)

    def disk_kb() -> int:
        return int(runc_exec(drv, spec.uuid, "df", "-k", "/").splitlines()[-1].split()[1])

    sh(drv, spec.uuid, "echo before > /note")
    assert disk_kb() <= GIB / 1024
    bigger = with_disk(spec, 2)
    await drv.resize(bigger, spec.flavor)  # another disk size: the container restarts on the bigger disk
    assert 1.8 * GIB / 1024 < disk_kb() <= 2 * GIB / 1024
    assert runc_exec(drv, spec.uuid, "cat", "/note") == "before"
    # Writing past the old size works now; the new size still binds.
    out = sh(drv, spec.uuid, "dd if=/dev/zero of=/big bs=1M count=2560 2>&1; echo rc=$?").stdout.decode()
    assert "No space left on device" in out
    assert int(runc_exec(drv, spec.uuid, "stat", "-c", "%s", "/big")) > 1.2 * GIB
    # Reverting to 1 GiB cannot shrink below what is written: the disk stays, and the log says so.
    await drv.revert_resize(spec)
    assert 1.8 * GIB / 1024 < disk_kb()
    assert "the root disk stays at 2 GiB" in await drv.get_console_output(spec.uuid)
    # With room to spare, the shrink happens.
    sh(drv, spec.uuid, "rm /big")
    await drv.resize(bigger, spec.flavor)
    await drv.revert_resize(spec)
    assert disk_kb() <= GIB / 1024
    assert runc_exec(drv, spec.uuid, "cat", "/note") == "before"
    # Rebuild: the written data goes, a fresh disk of the flavor's size comes.
    await drv.rebuild(bigger)
    assert runc_exec(drv, spec.uuid, "sh", "-c", "test -e /note && echo there || echo gone") == "gone"
    assert 1.8 * GIB / 1024 < disk_kb() <= 2 * GIB / 1024
    assert len(loop_backings(tmp_path)) == 1
    await drv.destroy(spec.uuid)


async def test_the_disk_is_mounted_again_after_a_host_reboot(drv: RuncDriver, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "survivor")
    await drv.spawn(spec)
    sh(drv, spec.uuid, "echo kept > /note; sync")
    await drv.power_off(spec.uuid)
    # What a reboot does to mounts: the overlay and the disk (and with it the loop device) go.
    idir = drv.dir / spec.uuid
    subprocess.run(["umount", str(idir / "rootfs")], check=True)  # noqa: S603, S607  # fixed argv
    subprocess.run(["umount", str(idir / rootdisk.DISK_DIR)], check=True)  # noqa: S603, S607
    assert loop_backings(tmp_path) == []
    await drv.power_on(spec)
    assert runc_exec(drv, spec.uuid, "cat", "/note") == "kept"
    assert len(loop_backings(tmp_path)) == 1
    await drv.destroy(spec.uuid)
