"""The runc driver's image side: config drive, SSH key, named netns, rebuild, snapshot, isolation.

Every test uses its own state dir (tmp_path), so its runc --root, mounts and dirs are its own;
netns are named after the test's own uuids and checked gone at the end.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import Capability, FlavorSpec, ImageSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.runc import RuncDriver, configdrive, netns
from cumulo.errors import DriverError
from cumulo.image.demo.busybox import BUSYBOX, build_busybox, busybox_layer
from cumulo.oci import read_image
from cumulo.oci.docker import FIXED_MTIME, write_docker_archive
from cumulo.oci.layout import host_arch

RUNC_MISSING = (
    "runc is not installed" if shutil.which("runc") is None
    else "iproute2 (ip) is not installed" if shutil.which("ip") is None
    else "the runc driver needs root" if os.geteuid() != 0
    else f"{BUSYBOX} is missing (apt-get install busybox-static)" if not BUSYBOX.is_file()
    else ""
)
needs_runc = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyKeyForCumuloTests cumulo@test"


# -- helpers -----------------------------------------------------------------------------------


def _image(path: Path, **props: str) -> ImageSpec:
    return ImageSpec(id=str(uuidlib.uuid4()), path=str(path), disk_format="raw", container_format="docker",
                     properties=dict(props))


def busybox(tmp: Path, **props: str) -> ImageSpec:
    path = tmp / "busybox.tar"
    if not path.exists():
        build_busybox(path)
    return _image(path, **props)


def _tar(entries: list[tuple[str, bytes, int, str]]) -> bytes:
    """A layer tar of (name, type, mode, linkname/data) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, kind, mode, extra in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, FIXED_MTIME
            data = b""
            if kind == tarfile.SYMTYPE:
                info.linkname = extra
            elif kind == tarfile.REGTYPE:
                data = extra.encode()
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def layered_image(tmp: Path, name: str, entries: list[tuple[str, bytes, int, str]], **props: str) -> ImageSpec:
    """busybox plus one more layer (to plant symlinks and files)."""
    config = {"architecture": host_arch(), "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh", "-c", "exec sleep 3600"], "WorkingDir": "/"}}
    path = write_docker_archive(tmp / f"{name}.tar", [busybox_layer(), _tar(entries)], config, f"test/{name}:1")
    return _image(path, **props)


def make_spec(image: ImageSpec, name: str = "srv", *, project: str = "p", memory_mb: int = 128,
              **kw: Any) -> InstanceSpec:
    uid = str(uuidlib.uuid4())
    return InstanceSpec(uuid=uid, name=name, hostname=kw.pop("hostname", name), project_id=project,
                        flavor=FlavorSpec(vcpus=1, memory_mb=memory_mb, root_gb=1), image=image, **kw)


def runc_cmd(drv: RuncDriver, uuid: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    cmd = ["runc", "--root", str(drv.runc.root), "exec", f"cumulo-{uuid}", *argv]
    return subprocess.run(cmd,  # noqa: S603  # fixed argv, no shell
                          check=check, capture_output=True, timeout=60)


def sh(drv: RuncDriver, uuid: str, script: str) -> str:
    return runc_cmd(drv, uuid, "/bin/sh", "-c", script).stdout.decode().strip()


def runc_ids(drv: RuncDriver) -> list[str]:
    argv = ["runc", "--root", str(drv.runc.root), "list", "--format", "json"]
    out = subprocess.run(argv,  # noqa: S603  # fixed argv, no shell
                         check=True, capture_output=True, timeout=30).stdout
    return [c["id"] for c in json.loads(out or b"null") or []]


def assert_nothing_left(drv: RuncDriver, tmp_path: Path, uuids: list[str]) -> None:
    assert runc_ids(drv) == []
    with open("/proc/self/mountinfo") as fh:
        assert not [line for line in fh if str(tmp_path) in line]
    assert not drv.dir.exists() or list(drv.dir.iterdir()) == []
    assert [u for u in uuids if os.path.lexists(netns.path_for(u))] == []


@pytest.fixture
async def drv(tmp_path: Path) -> AsyncIterator[RuncDriver]:
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state")
    driver = load_driver("runc", settings.replace(extra={"runc_stop_grace": 0.3}), "img-host", local=True)
    assert isinstance(driver, RuncDriver)
    await driver.init_host()
    made: list[str] = []
    driver.made = made  # type: ignore[attr-defined]  # uuids this test spawned, for the netns check
    yield driver
    uuids = [st.uuid for st in await driver.list_instances()]
    for uuid in uuids:
        await driver.destroy(uuid)
    assert_nothing_left(driver, tmp_path, uuids + made)


async def spawn(drv: RuncDriver, spec: InstanceSpec) -> InstanceSpec:
    drv.made.append(spec.uuid)  # type: ignore[attr-defined]
    await drv.spawn(spec)
    return spec


async def wait_for(pred: Any, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if await pred():
            return True
        await asyncio.sleep(0.05)
    return bool(await pred())


# -- config drive and key (no runc needed) -----------------------------------------------------


def test_config_drive_layout(tmp_path: Path) -> None:
    spec = make_spec(busybox_less_image(tmp_path), "cd", user_data=b"\x00\xffraw", key_data=KEY,
                     meta_data={"uuid": "u", "meta": {"a": "b"}},
                     network_info=[{"network": "private", "address": "10.0.0.2", "version": 4,
                                    "mac": "fa:16:3e:00:00:01", "type": "fixed"}])
    drive = configdrive.write_drive(tmp_path, spec)
    latest = drive / "openstack" / "latest"
    meta = json.loads((latest / "meta_data.json").read_text())
    assert meta["uuid"] == "u" and meta["meta"] == {"a": "b"} and meta["public_keys"] == {"default": KEY}
    assert (latest / "user_data").read_bytes() == b"\x00\xffraw"
    assert (latest / "public_key").read_text() == KEY + "\n"
    net = json.loads((latest / "network_data.json").read_text())
    assert net["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:01"
    assert net["networks"][0]["ip_address"] == "10.0.0.2"
    # Rewritten whole: no user_data and no key next time means none on the drive.
    bare = InstanceSpec(**{**spec.__dict__, "user_data": None, "key_data": None, "meta_data": {},
                           "network_info": []})
    configdrive.write_drive(tmp_path, bare)
    assert sorted(p.name for p in latest.iterdir()) == ["meta_data.json", "network_data.json", "vendor_data.json"]
    assert json.loads((latest / "network_data.json").read_text()) == {"links": [], "networks": [], "services": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == [configdrive.DRIVE_DIR]


def busybox_less_image(tmp: Path) -> ImageSpec:
    return _image(tmp / "unused.tar")


def _host_snapshot(base: Path, *skip: Path) -> dict[str, bytes | str]:
    """Every path under base (not following links) with its content, link target or "dir"."""
    out: dict[str, bytes | str] = {}
    skipped = {str(p) for p in skip}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[p] = os.readlink(p) if os.path.islink(p) else (Path(p).read_bytes() if os.path.isfile(p) else "dir")
    return out


@pytest.mark.parametrize("plant", [
    {"root": "HOST"},  # /root -> an absolute host dir
    {"root": "../../.."},
    {"root/.ssh": "HOST"},  # /root/.ssh -> an absolute host dir
    {"root/.ssh": "../../.."},
    {"root/.ssh": "/etc"},
    {"root/.ssh/authorized_keys": "HOST/authorized_keys"},  # the file itself -> a host file
    {"root": "FILE"},  # not a directory at all
])
def test_authorized_key_never_follows_links(tmp_path: Path, plant: dict[str, str]) -> None:
    # The "container root" sits deep inside tmp_path, so ../../.. lands in tmp_path (our "host").
    root = tmp_path / "a" / "b" / "c" / "rootfs"
    root.mkdir(parents=True)
    host = tmp_path / "host"
    host.mkdir()
    (host / "authorized_keys").write_text("host key\n")
    (root / "etc").mkdir()
    for rel, target in plant.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if target == "FILE":
            (root / rel).write_text("not a dir")
        else:
            os.symlink(target.replace("HOST", str(host)), root / rel)
    etc_had_keys = os.path.lexists("/etc/authorized_keys")
    before = _host_snapshot(tmp_path, root)
    written = configdrive.install_authorized_key(root, KEY)
    after = _host_snapshot(tmp_path, root)
    assert os.path.lexists("/etc/authorized_keys") == etc_had_keys
    assert after == before  # nothing outside the container root changed
    assert written == root / "root" / ".ssh" / "authorized_keys"
    for p in (root / "root", root / "root" / ".ssh", written):
        assert not p.is_symlink()
    assert written.read_text() == KEY + "\n"
    assert written.stat().st_mode & 0o777 == 0o600
    assert (root / "root" / ".ssh").stat().st_mode & 0o777 == 0o700
    assert not (root / "etc" / "authorized_keys").exists()


def test_authorized_key_appends_once(tmp_path: Path) -> None:
    ssh = tmp_path / "root" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text("ssh-rsa AAAA other")
    configdrive.install_authorized_key(tmp_path, KEY)
    configdrive.install_authorized_key(tmp_path, KEY)
    assert (ssh / "authorized_keys").read_text() == f"ssh-rsa AAAA other\n{KEY}\n"


# -- inside a container --------------------------------------------------------------------------


@needs_runc
async def test_config_drive_and_key_inside_the_container(drv: RuncDriver, tmp_path: Path) -> None:
    user_data = b"#!/bin/sh\necho hi\n"
    spec = await spawn(drv, make_spec(busybox(tmp_path), "cfg", user_data=user_data, key_data=KEY,
                                      meta_data={"uuid": "x", "name": "cfg", "meta": {"k": "v"},
                                                 "public_keys": {"mykey": KEY}}))
    meta = json.loads(sh(drv, spec.uuid, "cat /mnt/config/openstack/latest/meta_data.json"))
    assert meta["public_keys"] == {"mykey": KEY} and meta["meta"] == {"k": "v"}
    assert runc_cmd(drv, spec.uuid, "cat", "/mnt/config/openstack/latest/user_data").stdout == user_data
    assert sh(drv, spec.uuid, "cat /mnt/config/openstack/latest/public_key") == KEY
    net = json.loads(sh(drv, spec.uuid, "cat /mnt/config/openstack/latest/network_data.json"))
    assert net["links"] == [] and net["networks"] == []
    assert sh(drv, spec.uuid, "cat /root/.ssh/authorized_keys") == KEY
    assert sh(drv, spec.uuid, "stat -c '%a %u' /root/.ssh /root/.ssh/authorized_keys").split() == [
        "700", "0", "600", "0"]
    # Read-only, even for root in the container.
    res = runc_cmd(drv, spec.uuid, "/bin/sh", "-c", "echo x > /mnt/config/openstack/latest/user_data", check=False)
    assert res.returncode != 0 and b"Read-only" in res.stderr
    assert (drv.dir / spec.uuid / configdrive.DRIVE_DIR / "openstack/latest/user_data").read_bytes() == user_data


@needs_runc
async def test_loopback_is_up_in_the_named_netns(drv: RuncDriver, tmp_path: Path) -> None:
    spec = await spawn(drv, make_spec(busybox(tmp_path), "net"))
    assert netns.path_for(spec.uuid).exists()
    flags = int(sh(drv, spec.uuid, "cat /sys/class/net/lo/flags"), 16)
    assert flags & 0x1, "lo is not IFF_UP"
    assert sh(drv, spec.uuid, "ls /sys/class/net").split() == ["lo"]  # loopback only, no host NICs
    shown = subprocess.run(["ip", "-n", netns.name_for(spec.uuid), "-o", "link", "show", "lo"],  # noqa: S603, S607
                           check=True, capture_output=True, timeout=30).stdout.decode()
    assert "<LOOPBACK,UP" in shown
    # The container really is in that namespace.
    pid = int((drv.dir / spec.uuid / "pid").read_text())
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns.path_for(spec.uuid)).st_ino
    # It outlives stop/start.
    await drv.power_off(spec.uuid)
    assert netns.path_for(spec.uuid).exists()
    await drv.power_on(spec)
    await drv.destroy(spec.uuid)
    assert not os.path.lexists(netns.path_for(spec.uuid))


@needs_runc
async def test_failed_spawn_and_orphans_remove_the_netns(drv: RuncDriver, tmp_path: Path) -> None:
    bad = make_spec(busybox(tmp_path, os_command_line="/no/such/command"), "bad")
    drv.made.append(bad.uuid)  # type: ignore[attr-defined]
    with pytest.raises(DriverError, match="no/such/command"):
        await drv.spawn(bad)
    assert not os.path.lexists(netns.path_for(bad.uuid))
    keep = await spawn(drv, make_spec(busybox(tmp_path), "keep"))
    drop = await spawn(drv, make_spec(busybox(tmp_path), "drop"))
    # A spawn a crash cut short: its dir and netns, but no record and no container.
    crashed = str(uuidlib.uuid4())
    drv.made.append(crashed)  # type: ignore[attr-defined]
    (drv.dir / crashed).mkdir()
    await netns.create(crashed)
    removed = await drv.cleanup_orphans({keep.uuid})
    assert set(removed) == {drop.uuid, crashed}
    assert netns.path_for(keep.uuid).exists()
    assert not os.path.lexists(netns.path_for(drop.uuid)) and not os.path.lexists(netns.path_for(crashed))


@needs_runc
async def test_malicious_image_cannot_make_the_key_land_outside(drv: RuncDriver, tmp_path: Path) -> None:
    host = tmp_path / "host-ssh"
    host.mkdir()
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    images = {
        "abs": layered_image(tmp_path, "abs", [("root/", tarfile.DIRTYPE, 0o700, ""),
                                              ("root/.ssh", tarfile.SYMTYPE, 0o777, str(host))]),
        "up": layered_image(tmp_path, "up", [("root", tarfile.SYMTYPE, 0o777, "../../..")]),
        "etc": layered_image(tmp_path, "etc", [("root/", tarfile.DIRTYPE, 0o700, ""),
                                              ("root/.ssh", tarfile.SYMTYPE, 0o777, "/etc")]),
    }
    before = _host_snapshot(tmp_path, tmp_path / "state")
    for name, image in images.items():
        spec = await spawn(drv, make_spec(image, f"evil-{name}", key_data=KEY))
        assert sh(drv, spec.uuid, "cat /root/.ssh/authorized_keys") == KEY
        assert sh(drv, spec.uuid, "test -L /root || test -L /root/.ssh || echo real") == "real"
        assert not os.path.exists("/authorized_keys") and not Path("/etc/authorized_keys").exists()
        await drv.destroy(spec.uuid)
    assert _host_snapshot(tmp_path, tmp_path / "state") == before
    assert list(host.iterdir()) == []


@needs_runc
async def test_names_metadata_and_user_data_stay_verbatim(drv: RuncDriver, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    evil = f"x'\"; $(touch {canary}) `touch {canary}` ../../../../tmp\n../evil\\ \x01"
    user_data = f"#!/bin/sh\n$(touch {canary})\n'\"../../etc/passwd\n".encode() + b"\xff\x00"
    metadata = {evil: evil, "../../k": "$(id)"}
    meta_data = {"uuid": "u", "name": evil, "meta": metadata, "hostname": "ok"}
    spec = await spawn(drv, make_spec(busybox(tmp_path), evil, hostname="ok-host", user_data=user_data,
                                      metadata=metadata, meta_data=meta_data, key_data=KEY))
    idir = drv.dir / spec.uuid
    latest = idir / configdrive.DRIVE_DIR / "openstack" / "latest"
    assert json.loads((latest / "meta_data.json").read_text())["name"] == evil
    assert json.loads((latest / "meta_data.json").read_text())["meta"] == metadata
    assert (latest / "user_data").read_bytes() == user_data
    assert json.loads(sh(drv, spec.uuid, "cat /mnt/config/openstack/latest/meta_data.json"))["meta"] == metadata
    assert sh(drv, spec.uuid, "hostname") == "ok-host"
    assert not canary.exists()
    # Nothing outside the state dir's own places, and in the instance dir only the driver's own names.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busybox.tar", "state"]
    assert sorted(p.name for p in drv.dir.iterdir()) == [spec.uuid]
    assert sorted(p.name for p in latest.iterdir()) == ["meta_data.json", "network_data.json", "public_key",
                                                        "user_data", "vendor_data.json"]


# -- rebuild -----------------------------------------------------------------------------------


@needs_runc
async def test_rebuild_wipes_the_root_and_keeps_identity_and_limits(drv: RuncDriver, tmp_path: Path) -> None:
    assert Capability.REBUILD in drv.info.capabilities
    spec = await spawn(drv, make_spec(busybox(tmp_path), "rb", memory_mb=96, user_data=b"first"))
    sh(drv, spec.uuid, "echo old > /root/old-file")
    # A resize changed the limits since spawn: rebuild must keep them, not the spec's flavor.
    cfg_path = drv.dir / spec.uuid / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["linux"]["resources"]["memory"] = {"limit": 80 << 20, "swap": 80 << 20}
    cfg_path.write_text(json.dumps(cfg))
    marked = layered_image(tmp_path, "second", [("etc/second-image", tarfile.REGTYPE, 0o644, "yes")],
                           os_command_line="/bin/sh -c 'echo rebuilt-ran; exec sleep 3600'")
    new = InstanceSpec(**{**spec.__dict__, "image": marked, "user_data": b"second"})
    await drv.rebuild(new)
    assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING
    assert sh(drv, spec.uuid, "ls /root/old-file 2>/dev/null; cat /etc/second-image") == "yes"
    assert sh(drv, spec.uuid, "hostname") == "rb"
    assert sh(drv, spec.uuid, "cat /mnt/config/openstack/latest/user_data") == "second"
    assert int(sh(drv, spec.uuid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
                                  " || cat /sys/fs/cgroup/memory.max")) == 80 << 20
    assert await wait_for(lambda: _console_has(drv, spec.uuid, "rebuilt-ran"))
    assert netns.path_for(spec.uuid).exists()
    record = json.loads((drv.dir / spec.uuid / "instance.json").read_text())
    assert record["image_id"] == marked.id and record["uuid"] == spec.uuid


async def _console_has(drv: RuncDriver, uuid: str, text: str) -> bool:
    return text in await drv.get_console_output(uuid)


@needs_runc
async def test_failed_rebuild_names_the_cause(drv: RuncDriver, tmp_path: Path) -> None:
    spec = await spawn(drv, make_spec(busybox(tmp_path), "rbf"))
    broken = InstanceSpec(**{**spec.__dict__, "image": busybox(tmp_path, os_command_line="/no/such/binary")})
    with pytest.raises(DriverError, match="no/such/binary"):
        await drv.rebuild(broken)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar")
    with pytest.raises(DriverError, match="rebuild of .* failed: .*tar"):
        await drv.rebuild(InstanceSpec(**{**spec.__dict__, "image": _image(garbage)}))
    # The instance is still known and can be destroyed cleanly (the fixture checks nothing is left).
    assert spec.uuid in {st.uuid for st in await drv.list_instances()}


# -- snapshot ----------------------------------------------------------------------------------


def _layer_names(path: Path) -> list[str]:
    parsed = read_image(path)
    with tarfile.open(path) as outer:
        raw = outer.extractfile(parsed.layers[0])
        assert raw is not None
        with tarfile.open(fileobj=raw, mode="r|") as layer:
            return [m.name for m in layer]


@needs_runc
async def test_snapshot_boots_with_the_changes(drv: RuncDriver, tmp_path: Path) -> None:
    assert Capability.SNAPSHOT in drv.info.capabilities
    image = busybox(tmp_path, os_command_line="/bin/sh -c 'echo from-override; exec sleep 3600'")
    spec = await spawn(drv, make_spec(image, "snapme", key_data=KEY))
    sh(drv, spec.uuid, "mkdir -p /srv/data && echo snap-data > /srv/data/file && ln /srv/data/file /srv/hard")
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = await drv.snapshot(spec.uuid, str(workdir))
    assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING  # resumed after the freeze
    assert (result.disk_format, result.container_format) == ("raw", "docker")
    assert result.properties["hypervisor_type"] == "container"
    assert Path(result.path).parent == workdir and sorted(p.name for p in workdir.iterdir()) == [
        Path(result.path).name]
    parsed = read_image(Path(result.path))
    assert parsed.format == "docker" and len(parsed.layers) == 1
    assert parsed.config.cmd == ("/bin/sh", "-c", "echo from-override; exec sleep 3600")
    assert parsed.config.env == ("PATH=/bin", "HOME=/root")  # the image's, not the server's HOSTNAME
    names = _layer_names(Path(result.path))
    assert "srv/data/file" in names and "proc" in names and "dev" in names
    assert not [n for n in names if n.startswith(("proc/", "sys/", "dev/", "mnt/config"))]
    # A NEW server from the snapshot file (no override property) finds the file and runs the same way.
    copy = await spawn(drv, make_spec(_image(Path(result.path)), "fromsnap"))
    assert sh(drv, copy.uuid, "cat /srv/data/file /srv/hard") == "snap-data\nsnap-data"
    assert await wait_for(lambda: _console_has(drv, copy.uuid, "from-override"))


@needs_runc
async def test_snapshot_of_paused_and_stopped_servers(drv: RuncDriver, tmp_path: Path) -> None:
    spec = await spawn(drv, make_spec(busybox(tmp_path), "ps"))
    sh(drv, spec.uuid, "echo paused > /root/state")
    cid = f"cumulo-{spec.uuid}"
    await drv.runc.pause(cid)
    first = await drv.snapshot(spec.uuid, str(tmp_path))
    assert await drv.runc.status(cid) == "paused"  # left paused
    await drv.runc.resume(cid)
    await drv.power_off(spec.uuid)
    (drv.dir / spec.uuid / "rootfs" / "root" / "state").write_text("stopped\n")
    (tmp_path / "second").mkdir()
    second = await drv.snapshot(spec.uuid, str(tmp_path / "second"))
    assert await drv.get_power_state(spec.uuid) == PowerState.SHUTDOWN
    for result, want in ((first, "paused"), (second, "stopped")):
        new = make_spec(_image(Path(result.path)), f"from-{want}")
        await spawn(drv, new)
        assert sh(drv, new.uuid, "cat /root/state") == want
        await drv.destroy(new.uuid)


@needs_runc
async def test_snapshot_of_missing_instance_raises(drv: RuncDriver, tmp_path: Path) -> None:
    with pytest.raises(DriverError):
        await drv.snapshot(str(uuidlib.uuid4()), str(tmp_path))
    assert list(tmp_path.glob("*.tar")) == []


# -- isolation ---------------------------------------------------------------------------------


@needs_runc
async def test_tenants_cannot_see_each_other_or_the_host(drv: RuncDriver, tmp_path: Path) -> None:
    a = await spawn(drv, make_spec(busybox(tmp_path, os_command_line="/bin/sleep 1001"), "tenant-a", project="pa"))
    b = await spawn(drv, make_spec(busybox(tmp_path, os_command_line="/bin/sleep 1002"), "tenant-b", project="pb"))
    marker = f"marker-{uuidlib.uuid4().hex}"
    sh(drv, b.uuid, f"echo secret > /root/{marker} && echo secret > /tmp/{marker}")
    host_marker = tmp_path / f"host-{marker}"
    host_marker.write_text("host")
    # Processes: A sees only its own.
    ps = sh(drv, a.uuid, "ps -o args")
    assert "sleep 1001" in ps and "sleep 1002" not in ps and "pytest" not in ps
    pids = [p for p in sh(drv, a.uuid, "ls /proc").split() if p.isdigit()]
    b_pid = (drv.dir / b.uuid / "pid").read_text().strip()
    assert "1" in pids and len(pids) <= 4 and b_pid not in pids
    for pid in pids:
        cmdline = sh(drv, a.uuid, f"cat /proc/{pid}/cmdline 2>/dev/null | tr '\\0' ' '")
        assert "1002" not in cmdline
    # Files: neither B's marker nor the host's file is anywhere in A.
    found = sh(drv, a.uuid, f"find / -name '*{marker}*' 2>/dev/null; true")
    assert found == ""
    assert sh(drv, b.uuid, f"find / -name '{marker}' 2>/dev/null | sort") == f"/root/{marker}\n/tmp/{marker}"
    # Not the host's root: none of the host's top-level dirs that busybox lacks.
    listing = set(sh(drv, a.uuid, "ls /").split())
    assert not listing & {"usr", "boot", "lib", "opt", "srv", "work"}
    assert sh(drv, a.uuid, f"ls {tmp_path} 2>/dev/null; true") == ""
