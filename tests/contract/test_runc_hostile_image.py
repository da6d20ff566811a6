"""A hostile tenant's image on the runc driver: its /etc/passwd is a FIFO or a link to the host's
/etc/shadow; the host's view of container roots (modes, mount flags); and what a non-root user of
the container still reads (the config drive, its own files) once the host side is private.

Every test uses its own state dir (tmp_path): its runc --root, mounts and dirs are its own.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec
from cumulo.compute.drivers.runc import RuncDriver, netns
from cumulo.errors import DriverError
from cumulo.image.demo.busybox import BUSYBOX, busybox_layer
from cumulo.oci.docker import FIXED_MTIME, write_docker_archive
from cumulo.oci.layout import host_arch

RUNC_MISSING = (
    "runc is not installed" if shutil.which("runc") is None
    else "iproute2 (ip) is not installed" if shutil.which("ip") is None
    else "the runc driver needs root" if os.geteuid() != 0
    else f"{BUSYBOX} is missing (apt-get install busybox-static)" if not BUSYBOX.is_file()
    else ""
)
pytestmark = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")

Entry = tuple[str, bytes, int, str, int]  # name, tar type, mode, data or link target, uid


def _layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, kind, mode, extra, uid in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, FIXED_MTIME, uid, uid
            data = b""
            if kind == tarfile.SYMTYPE:
                info.linkname = extra
            elif kind == tarfile.REGTYPE:
                data = extra.encode()
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image(tmp: Path, name: str, entries: list[Entry], *, user: str, cmd: list[str] | None = None) -> ImageSpec:
    config = {"architecture": host_arch(), "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": cmd or ["/bin/sh", "-c", "exec sleep 3600"],
                         "WorkingDir": "/", "User": user}}
    path = write_docker_archive(tmp / f"{name}.tar", [busybox_layer(), _layer(entries)], config, f"test/{name}:1")
    return ImageSpec(id=str(uuidlib.uuid4()), path=str(path), disk_format="raw", container_format="docker",
                     properties={})


def make_spec(img: ImageSpec, name: str, **kw: Any) -> InstanceSpec:
    return InstanceSpec(uuid=str(uuidlib.uuid4()), name=name, hostname=name, project_id="p",
                        flavor=FlavorSpec(vcpus=1, memory_mb=128, root_gb=1), image=img, **kw)


def mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return fh.read().splitlines()


@pytest.fixture
async def drv(tmp_path: Path) -> AsyncIterator[RuncDriver]:
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state")
    driver = load_driver("runc", settings.replace(extra={"runc_stop_grace": 0.3}), "hostile-host", local=True)
    assert isinstance(driver, RuncDriver)
    await driver.init_host()
    yield driver
    uuids = [st.uuid for st in await driver.list_instances()]
    for uuid in uuids:
        await driver.destroy(uuid)
    assert not [line for line in mountinfo() if str(tmp_path) in line]
    assert not driver.dir.exists() or list(driver.dir.iterdir()) == []
    assert [u for u in uuids if os.path.lexists(netns.path_for(u))] == []


class LoopWatch:
    """Watches the event loop from a thread while a spawn runs. If the loop stops answering for
    `limit` seconds, it records that and opens every FIFO named /etc/passwd under the state dir for
    writing, which releases a reader blocked in open(): the test then fails instead of hanging."""

    def __init__(self, loop: asyncio.AbstractEventLoop, state: Path, limit: float = 10.0) -> None:
        self.loop, self.state, self.limit = loop, state, limit
        self.blocked = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.done.is_set():
            pong = threading.Event()
            self.loop.call_soon_threadsafe(pong.set)
            if not pong.wait(self.limit):
                self.blocked = True
                for fifo in self.state.glob("images/rootfs/*/rootfs/etc/passwd"):
                    try:
                        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                    except OSError:
                        pass
            self.done.wait(0.05)

    def __enter__(self) -> LoopWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(30)


async def test_a_fifo_passwd_fails_the_spawn_while_the_loop_keeps_answering(drv: RuncDriver, tmp_path: Path) -> None:
    img = image(tmp_path, "fifo", [("etc/passwd", tarfile.FIFOTYPE, 0o644, "", 0)], user="app")
    spec = make_spec(img, "fifo")
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    try:
        with LoopWatch(asyncio.get_running_loop(), tmp_path / "state") as watch:
            with pytest.raises(DriverError) as err:
                await drv.spawn(spec)
    finally:
        beat.cancel()
    assert not watch.blocked, "the spawn blocked the event loop on the image's /etc/passwd"
    assert "/etc/passwd is a FIFO" in str(err.value)
    assert ticks > 0
    assert not (drv.dir / spec.uuid).exists()  # a failed spawn leaves nothing


async def test_a_passwd_linked_to_shadow_is_read_inside_the_image(drv: RuncDriver, tmp_path: Path) -> None:
    # /etc/passwd -> /etc/shadow: the image's own shadow (a chroot's view), never the host's.
    img = image(tmp_path, "shadow", [
        ("etc/passwd", tarfile.SYMTYPE, 0o777, "/etc/shadow", 0),
        ("etc/shadow", tarfile.REGTYPE, 0o600, "app:x:4242:4343::/:/bin/sh\n", 0),
    ], user="app")
    spec = make_spec(img, "shadow")
    await drv.spawn(spec)
    config = json.loads((drv.dir / spec.uuid / "config.json").read_text())
    assert config["process"]["user"] == {"uid": 4242, "gid": 4343, "umask": 0o022}
    st = await drv.runc.state(f"cumulo-{spec.uuid}")
    assert st is not None
    uid_line = [ln for ln in Path(f"/proc/{st['pid']}/status").read_text().splitlines() if ln.startswith("Uid:")]
    assert uid_line[0].split()[1:] == ["4242"] * 4


async def test_a_fifo_authorized_keys_is_replaced_unread(drv: RuncDriver, tmp_path: Path) -> None:
    img = image(tmp_path, "keys", [
        ("root/", tarfile.DIRTYPE, 0o700, "", 0),
        ("root/.ssh/", tarfile.DIRTYPE, 0o700, "", 0),
        ("root/.ssh/authorized_keys", tarfile.FIFOTYPE, 0o600, "", 0),
    ], user="0:0")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFifoKeyForCumuloTests cumulo@test"
    spec = make_spec(img, "keys", key_data=key)
    with LoopWatch(asyncio.get_running_loop(), tmp_path / "state"):
        await asyncio.wait_for(drv.spawn(spec), 60)
    keys = drv.dir / spec.uuid / "rootfs" / "root" / ".ssh" / "authorized_keys"
    assert keys.is_file() and keys.read_text() == key + "\n"


def _runc_exec(drv: RuncDriver, uuid: str, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = ["runc", "--root", str(drv.runc.root), "exec", *(["--user", user] if user else []), f"cumulo-{uuid}", *argv]
    return subprocess.run(cmd,  # noqa: S603  # fixed argv, no shell
                          check=False, capture_output=True, timeout=60)


@pytest.fixture
def cloud_umask() -> Any:
    """The umask `cumulo up` sets (077), for this test's own process."""
    old = os.umask(0o077)
    yield
    os.umask(old)


async def test_host_view_is_private_and_the_non_root_guest_still_works(
    cloud_umask: None, drv: RuncDriver, tmp_path: Path,
) -> None:
    """The instance dir and runtime dirs are 0700, the overlay is nosuid,nodev; inside, a non-root
    user still reads the config drive, writes its home and /tmp, and its files keep a 022 umask,
    though the cloud runs with umask 077."""
    img = image(tmp_path, "app", [
        ("etc/passwd", tarfile.REGTYPE, 0o644, "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0),
        ("etc/group", tarfile.REGTYPE, 0o644, "root:x:0:\napp:x:1000:\n", 0),
        ("home/", tarfile.DIRTYPE, 0o755, "", 0),
        ("home/app/", tarfile.DIRTYPE, 0o755, "", 1000),
        ("bin/suid-copy", tarfile.REGTYPE, 0o4755, "#!/bin/sh\n", 0),
    ], user="app", cmd=["/bin/sh", "-c",
                        "cat /mnt/config/openstack/latest/meta_data.json > /home/app/meta && "
                        "echo made > /tmp/mine && echo app-ready-$(id -u) && exec sleep 3600"])
    spec = make_spec(img, "app", user_data=b"hello")
    await drv.spawn(spec)
    idir = drv.dir / spec.uuid
    for _ in range(200):
        if "app-ready-1000" in await drv.get_console_output(spec.uuid):
            break
        await asyncio.sleep(0.05)
    assert "app-ready-1000" in await drv.get_console_output(spec.uuid)
    meta = _runc_exec(drv, spec.uuid, "cat", "/home/app/meta", user="1000:1000")
    assert json.loads(meta.stdout)["uuid"] == spec.uuid or "uuid" in json.loads(meta.stdout)
    ud = _runc_exec(drv, spec.uuid, "cat", "/mnt/config/openstack/latest/user_data", user="1000:1000")
    assert ud.returncode == 0 and ud.stdout == b"hello"
    modes = _runc_exec(drv, spec.uuid, "stat", "-c", "%a", "/", "/mnt", "/tmp/mine", "/home/app/meta",
                       user="1000:1000")
    assert modes.stdout.decode().split() == ["755", "755", "644", "644"], modes
    # The host side: private dirs, and the overlay is nosuid,nodev.
    for d in (drv.dir, drv.runc.root, drv.images, idir):
        assert d.stat().st_mode & 0o777 == 0o700, d
    merged = str(idir / "rootfs")
    line = next(ln for ln in mountinfo() if ln.split()[4] == merged)
    flags = set(line.split()[5].split(","))
    assert {"nosuid", "nodev"} <= flags, line
    assert (idir / "rootfs" / "bin" / "suid-copy").stat().st_mode & 0o4000  # the bit is there, inert
