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
from cumulo.cli.image_build import BUSYBOX, build_busybox
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.runc import RuncDriver
from cumulo.errors import DriverError

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


def assert_nothing_left(drv: RuncDriver, tmp_path: Path) -> None:
    assert runc_ids(drv) == []
    with open("/proc/self/mountinfo") as fh:
        assert not [line for line in fh if str(tmp_path) in line]
    assert not drv.dir.exists() or list(drv.dir.iterdir()) == []


def spec_for(tmp_path: Path, name: str, memory_mb: int = 128, **props: str) -> InstanceSpec:
    uid = str(uuidlib.uuid4())
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
    # No host filesystem: the container's root is the image's.
    assert runc_exec(runc_driver, spec.uuid, "ls", "/").split() == sorted(
        ["bin", "dev", "etc", "home", "proc", "root", "run", "sys", "tmp", "var"])
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
