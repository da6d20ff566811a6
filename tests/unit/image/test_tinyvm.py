"""The tiny VM image's parts that need no network or QEMU: the cpio writer, the qcow2 writer,
module ordering, the init script's JSON helpers (run by the host's busybox sh), and the
register-then-build-in-the-background flow of the demo image (build faked)."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from cumulo import conf as conf_mod
from cumulo.db import Database
from cumulo.image.demo import tinyvm, vm
from cumulo.image.demo.seeder import DemoSeeder
from cumulo.image.demo.tinyvm import initramfs
from cumulo.image.demo.tinyvm.cpio import Entry, gzip_bytes, read_newc, write_newc
from cumulo.image.demo.tinyvm.disk import CLUSTER, empty_qcow2
from cumulo.image.demo.tinyvm.kernel import Kernel, KernelUnavailable
from cumulo.image.models import images
from cumulo.image.service import ImageService

BUSYBOX = Path("/bin/busybox")
INIT_SH = Path(tinyvm.__file__).with_name("init.sh")
UNSHARE = shutil.which("unshare")

# -- cpio ------------------------------------------------------------------------------------------


def test_newc_is_byte_exact() -> None:
    archive = write_newc([Entry.file("a", b"hi\n", 0o644)])
    header = b"070701" + b"".join(b"%08X" % v for v in (1, 0o100644, 0, 0, 1, 1704067200, 3, 0, 0, 0, 0, 2, 0))
    expected = header + b"a\0" + b"" + b"hi\n\0"  # 110 + 2 = 112 (aligned); 3 bytes data + 1 pad
    trailer = b"070701" + b"".join(b"%08X" % v for v in (0, 0, 0, 0, 1, 1704067200, 0, 0, 0, 0, 0, 11, 0))
    expected += trailer + b"TRAILER!!!\0" + b"\0" * 3  # 110 + 11 = 121 -> pad to 124
    assert archive == expected


def test_newc_is_deterministic_sorted_and_round_trips() -> None:
    entries = [
        Entry.file("bin/busybox", b"\x7fELF" * 100, 0o755),
        Entry.symlink("bin/sh", "busybox"),
        Entry.chardev("dev/console", 5, 1),
        Entry.file("init", b"#!/bin/sh\n", 0o755),
        Entry.dir("tmp", 0o1777),
        Entry.file("a-b/c", b"x"),
    ]
    one = write_newc(entries)
    assert one == write_newc(list(reversed(entries)))
    assert gzip_bytes(one) == gzip_bytes(one)
    back = read_newc(gzip_bytes(one))
    names = [e.path for e in back]
    assert names == ["a-b", "a-b/c", "bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init", "tmp"]
    by = {e.path: e for e in back}
    assert stat.S_ISLNK(by["bin/sh"].mode) and by["bin/sh"].data == b"busybox"
    assert stat.S_ISCHR(by["dev/console"].mode) and by["dev/console"].rdev == (5, 1)
    assert by["tmp"].mode == stat.S_IFDIR | 0o1777 and by["bin"].mode == stat.S_IFDIR | 0o755  # parent added


@pytest.mark.skipif(not BUSYBOX.is_file(), reason="busybox-static not installed")
def test_newc_is_read_by_busybox_cpio(tmp_path: Path) -> None:
    archive = write_newc([Entry.file("etc/motd", b"hello\n"), Entry.symlink("etc/link", "motd")])
    listing = subprocess.run([str(BUSYBOX), "cpio", "-t"], input=archive, capture_output=True, check=True)  # noqa: S603  # fixed argv, no shell
    assert listing.stdout.decode().split() == ["etc", "etc/link", "etc/motd"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([str(BUSYBOX), "cpio", "-id"], input=archive, cwd=out, capture_output=True, check=True)  # noqa: S603  # fixed argv, no shell
    assert (out / "etc" / "motd").read_bytes() == b"hello\n" and (out / "etc" / "link").is_symlink()


@pytest.mark.parametrize("bad", ["", "/", "../x", "a/../b", "a//b", "./a"])
def test_newc_rejects_bad_paths(bad: str) -> None:
    with pytest.raises(ValueError):
        write_newc([Entry.file(bad, b"")])


def test_newc_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        write_newc([Entry.file("a", b""), Entry.file("/a", b"x")])


# -- qcow2 and modules -----------------------------------------------------------------------------


def test_empty_qcow2_header(tmp_path: Path) -> None:
    data = empty_qcow2(64 << 20)
    assert data[:8] == b"QFI\xfb\0\0\0\x03" and len(data) == 4 * CLUSTER
    assert int.from_bytes(data[24:32], "big") == 64 << 20
    if shutil.which("qemu-img"):
        path = tmp_path / "d.qcow2"
        path.write_bytes(data)
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],  # noqa: S603  # fixed argv, no shell
                                         capture_output=True, check=True).stdout)
        assert info["format"] == "qcow2" and info["virtual-size"] == 64 << 20
        subprocess.run(["qemu-img", "check", str(path)], capture_output=True, check=True)  # noqa: S603  # fixed argv, no shell
    with pytest.raises(ValueError):
        empty_qcow2(1000)


def test_module_load_order_puts_dependencies_first(tmp_path: Path) -> None:
    k = Kernel("p", "1", "6.1.0-test", tmp_path, {
        "virtio_net": ["virtio_ring", "net_failover"], "net_failover": ["failover"], "failover": [],
        "virtio_ring": [], "a": ["b"], "b": ["a"],
    })
    order = k.load_order(["virtio_net", "failover"])
    assert order == ["virtio_ring", "failover", "net_failover", "virtio_net"]
    with pytest.raises(KernelUnavailable, match="cycle"):
        k.load_order(["a"])
    with pytest.raises(KernelUnavailable, match="no module nope"):
        k.load_order(["nope"])


def test_cmdline_has_the_facts_of_the_issue() -> None:
    words = tinyvm.KERNEL_CMDLINE.split()
    for needed in ("console=ttyS0", "quiet", "reboot=t", "panic=-1"):
        assert needed in words


# -- the init script's JSON helpers, run by busybox sh ---------------------------------------------


def _helpers() -> str:
    text = INIT_SH.read_text()
    found = re.findall(r"^(json_\w+\(\) \{\n.*?^\})", text, flags=re.M | re.S)
    assert len(found) == 4  # json_flat, json_str, json_nic, json_obj_values
    return "\n".join(found)


def _sh(script: str, cwd: Path) -> str:
    res = subprocess.run([str(BUSYBOX), "sh", "-c", _helpers() + "\n" + script], cwd=cwd,  # noqa: S603  # fixed argv, no shell
                         capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"})
    return res.stdout.decode()


@pytest.mark.skipif(not BUSYBOX.is_file(), reason="busybox-static not installed")
@pytest.mark.parametrize("indent", [None, 1])
def test_init_reads_hostname_and_keys(tmp_path: Path, indent: int | None) -> None:
    meta = {
        "uuid": str(uuid.uuid4()), "name": "my server", "hostname": "my-server", "project_id": "p",
        "meta": {"note": "a \"quoted\" hostname: x"},
        "public_keys": {"default": "ssh-ed25519 AAAAC3Nza me@host", "second": "ssh-rsa AAAAB3 other"},
        "keys": [{"name": "default", "type": "ssh", "data": "ssh-ed25519 AAAAC3Nza me@host"}],
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta, indent=indent, sort_keys=True))
    flat = 'META=$(json_flat meta.json); '  # the file read once, as /init does
    assert _sh(flat + 'echo "$(json_str hostname "$META")"', tmp_path) == "my-server\n"
    assert _sh(flat + 'echo "$(json_str missing "$META")"', tmp_path) == "\n"
    assert _sh('echo "[$(json_flat missing.json)]"', tmp_path) == "[]\n"
    keys = _sh(flat + 'json_obj_values public_keys "$META"', tmp_path).splitlines()
    assert keys == ["ssh-ed25519 AAAAC3Nza me@host", "ssh-rsa AAAAB3 other"]


@pytest.mark.skipif(not BUSYBOX.is_file(), reason="busybox-static not installed")
def test_init_reads_static_network(tmp_path: Path) -> None:
    nd = {"links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01"}],
          "networks": [{"id": "network0", "type": "ipv4", "link": "tap0", "ip_address": "10.0.0.5",
                        "netmask": "255.255.255.0",
                        "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]}],
          "services": []}
    (tmp_path / "nd.json").write_text(json.dumps(nd, indent=1))
    # As /init reads it: the NIC's own keys, the gateway from the default route (Nova's layout).
    script = ('ND=$(json_nic "$(json_flat nd.json)"); echo "$(json_str ip_address "$ND") $(json_str netmask "$ND") '
              '$(json_str gateway "$ND") $(json_str default_gateway "$ND")"')
    assert _sh(script, tmp_path) == "10.0.0.5 255.255.255.0  10.0.0.1\n"
    # Cumulo's layout: the gateway on the network; routes (a host route, the metadata route of a
    # network without a router) are never taken for the NIC's netmask or gateway.
    nd["networks"][0].update(gateway="10.0.0.1", routes=[
        {"gateway": "10.0.0.9", "netmask": "255.255.0.0", "network": "192.168.0.0"},
        {"gateway": "10.0.0.2", "netmask": "255.255.255.255", "network": "169.254.169.254"}])
    (tmp_path / "nd.json").write_text(json.dumps(nd, sort_keys=True))
    assert _sh(script, tmp_path) == "10.0.0.5 255.255.255.0 10.0.0.1 \n"


def _applets(tmp: Path, *names: str) -> Path:
    """A bin dir of busybox applets (the guest's /bin), so the host's own tools are not used."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    for name in names:
        (bindir / name).symlink_to(BUSYBOX)
    return bindir


class _Metadata(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(not BUSYBOX.is_file(), reason="busybox-static not installed")
@pytest.mark.parametrize("with_user_data", [True, False])
def test_init_fetches_metadata_without_a_config_drive(tmp_path: Path, with_user_data: bool) -> None:
    """No config drive: /init's fetch_metadata (busybox wget) copies meta_data.json and user_data
    from the metadata service into $LATEST, which the rest of /init reads as it reads the drive."""
    fn = re.search(r"^(fetch_metadata\(\) \{\n.*?^\})", INIT_SH.read_text(), flags=re.M | re.S)
    assert fn is not None
    meta = json.dumps({"uuid": "u-1", "hostname": "dhcp-vm"}).encode()
    _Metadata.files = {"/openstack/latest/meta_data.json": meta}
    if with_user_data:
        _Metadata.files["/openstack/latest/user_data"] = b"#!/bin/sh\necho hi\n"
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        bindir = _applets(tmp_path, "wget", "timeout", "mkdir", "rm", "sleep", "sh")
        latest = tmp_path / "run" / "openstack" / "latest"
        script = (f"LATEST={latest}\nMETADATA_URL=http://127.0.0.1:{srv.server_port}/openstack/latest\n"
                  f"{fn.group(1)}\nfetch_metadata")
        done = subprocess.run([str(BUSYBOX), "sh", "-c", script], capture_output=True, check=False,  # noqa: S603
                              env={"PATH": str(bindir)}, timeout=60)
    finally:
        srv.shutdown()
        srv.server_close()
    assert done.returncode == 0, done.stderr
    assert b"meta_data.json from the metadata service" in done.stdout
    assert (latest / "meta_data.json").read_bytes() == meta
    if with_user_data:
        assert (latest / "user_data").read_bytes() == b"#!/bin/sh\necho hi\n"
    else:
        assert not (latest / "user_data").exists()


@pytest.mark.skipif(not BUSYBOX.is_file(), reason="busybox-static not installed")
@pytest.mark.parametrize(("staticroutes", "expected"), [
    ("", ["route add default via 10.0.0.1 dev eth0"]),
    ("169.254.169.254/32 10.0.0.2 0.0.0.0/0 10.0.0.1",
     ["route add 169.254.169.254/32 via 10.0.0.2 dev eth0", "route add 0.0.0.0/0 via 10.0.0.1 dev eth0"]),
])
def test_udhcpc_script_applies_the_lease(tmp_path: Path, staticroutes: str, expected: list[str]) -> None:
    """The lease's address, then the classless static routes (option 121) when given, else the
    router as the default route (RFC 3442); the address goes on the console."""
    # `ip` is a shell function that records its arguments: busybox sh runs its own applets before
    # PATH, so a fake `ip` program would be skipped and the host's own eth0 reconfigured.
    calls, console, resolv = tmp_path / "ip.calls", tmp_path / "console", tmp_path / "resolv.conf"
    text = initramfs.UDHCPC_SCRIPT.decode().replace("/dev/console", str(console)).replace("/etc/resolv.conf",
                                                                                          str(resolv))
    assert "/dev/" not in text and "/etc/" not in text
    body = text.split("\n", 1)[1]
    script = f'ip() {{ echo "$*" >> {calls}; }}\n{body}'
    env = {"PATH": "/nonexistent", "interface": "eth0", "ip": "10.0.0.5", "mask": "26", "router": "10.0.0.1",
           "dns": "10.0.0.3", "staticroutes": staticroutes}
    # And in a network namespace of its own (as root): nothing the hook runs can reach the host's links.
    jail = [UNSHARE, "--net"] if UNSHARE and os.geteuid() == 0 else []
    subprocess.run([*jail, str(BUSYBOX), "sh", "-c", script, "udhcpc.script", "bound"], check=True,  # noqa: S603
                   env=env, timeout=30)
    assert calls.read_text().splitlines() == ["-4 addr flush dev eth0", "addr add 10.0.0.5/26 dev eth0", *expected]
    assert console.read_text() == "cumulo-tiny-vm: eth0 10.0.0.5/26 (DHCP)\n"
    assert resolv.read_text() == "nameserver 10.0.0.3\n"


# -- registration of the demo image ----------------------------------------------------------------


@pytest.fixture
async def vm_svc(tmp_path: Path) -> Any:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state", local_driver="fake",
                         extra={"tiny_vm_image": "on", "image_build_cache": str(tmp_path / "cache")})
    conf.state_dir.mkdir(parents=True)
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    await db.create_all()
    svc = ImageService(db, conf)
    await svc.store.ensure_dirs()
    yield svc
    await db.dispose()


async def _rows(svc: ImageService) -> dict[str, dict[str, Any]]:
    out = {}
    for name in (tinyvm.NAME, tinyvm.KERNEL_NAME, tinyvm.RAMDISK_NAME):
        async with svc.db.read() as conn:
            rows = (await conn.execute(sa.select(images.c.id).where(images.c.name == name))).all()
        assert len(rows) == 1, f"{name}: {len(rows)} records"
        got = await svc.get_internal(rows[0].id)
        assert got is not None
        out[name] = got
    return out


async def test_demo_vm_failure_kills_with_reason_then_restart_retries(vm_svc: ImageService, monkeypatch: Any) -> None:
    async def no_network(output: Path, cache: Path, busybox: Path = BUSYBOX) -> tinyvm.Artifacts:
        raise tinyvm.BuildFailed("cannot download linux-image-x (no network?): Temporary failure resolving")

    monkeypatch.setattr(tinyvm, "build_tiny_vm", no_network)
    task = await vm.ensure(vm_svc, "admin-project")
    assert task is not None
    await task  # never raises
    rows = await _rows(vm_svc)
    assert {r["status"] for r in rows.values()} == {"killed"}
    assert "no network" in rows[tinyvm.NAME]["cumulo_error"]

    async def fake_build(output: Path, cache: Path, busybox: Path = BUSYBOX) -> tinyvm.Artifacts:
        output.mkdir(parents=True, exist_ok=True)
        for name, data in (("vmlinuz", b"kernel"), ("initramfs.cpio.gz", b"ramdisk"), ("disk.qcow2", empty_qcow2(1 << 20))):
            (output / name).write_bytes(data)
        return tinyvm.Artifacts(output / "vmlinuz", output / "initramfs.cpio.gz", output / "disk.qcow2", "6.1.0-t", "p")

    monkeypatch.setattr(tinyvm, "build_tiny_vm", fake_build)
    task = await vm.ensure(vm_svc, "admin-project")  # a restart: same records, built now
    assert task is not None
    await task
    rows = await _rows(vm_svc)
    assert {r["status"] for r in rows.values()} == {"active"}
    disk, kernel, ramdisk = rows[tinyvm.NAME], rows[tinyvm.KERNEL_NAME], rows[tinyvm.RAMDISK_NAME]
    assert "cumulo_error" not in disk
    assert (kernel["disk_format"], kernel["container_format"]) == ("aki", "aki")
    assert (ramdisk["disk_format"], ramdisk["container_format"]) == ("ari", "ari")
    assert (disk["disk_format"], disk["container_format"]) == ("qcow2", "bare")
    assert disk["kernel_id"] == kernel["id"] and disk["ramdisk_id"] == ramdisk["id"]
    assert disk["hypervisor_type"] == "qemu" and disk["os_command_line"] == tinyvm.KERNEL_CMDLINE
    assert disk["visibility"] == "public" and disk["owner"] == "admin-project"
    assert disk["virtual_size"] == 1 << 20
    assert Path(await vm_svc.local_path(kernel["id"])).read_bytes() == b"kernel"
    assert await vm.ensure(vm_svc, "admin-project") is None  # all active: nothing to do
    await _rows(vm_svc)  # still one record each
    assert not list(Path(vm_svc.conf.extra["image_build_cache"]).glob(".tiny-vm-*"))  # output dirs removed


async def test_demo_vm_stop_cancels_build_and_leaves_queued(vm_svc: ImageService, monkeypatch: Any) -> None:
    started = asyncio.Event()

    async def slow(output: Path, cache: Path, busybox: Path = BUSYBOX) -> tinyvm.Artifacts:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    monkeypatch.setattr(tinyvm, "build_tiny_vm", slow)
    await vm_svc.bootstrap()
    seeder = DemoSeeder(vm_svc)
    await seeder.start("admin-project")
    await asyncio.wait_for(started.wait(), 5)
    await seeder.stop()
    rows = await _rows(vm_svc)
    assert {r["status"] for r in rows.values()} == {"queued"}


def test_demo_vm_wanted() -> None:
    base = conf_mod.load(env={}, local_driver="fake")
    assert not vm.wanted(base)
    assert vm.wanted(base.replace(extra={"tiny_vm_image": "on"}))
    assert not vm.wanted(base.replace(local_driver="runc", extra={"tiny_vm_image": "off"}))


def test_module_signatures_are_stripped_and_unsigned_modules_kept() -> None:
    from cumulo.image.demo.tinyvm.initramfs import MODULE_SIG_MAGIC, strip_signature

    body = b"\x7fELF" + b"m" * 100
    sig = b"s" * 40
    info = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + len(sig).to_bytes(4, "big")  # struct module_signature
    assert strip_signature(body + sig + info + MODULE_SIG_MAGIC) == body
    assert strip_signature(body) == body
    assert strip_signature(b"\xff" * 4 + MODULE_SIG_MAGIC) == b"\xff" * 4 + MODULE_SIG_MAGIC  # too short: as is


def test_only_complete_cached_package_copies_count_oldest_first(tmp_path: Path) -> None:
    from cumulo.image.demo.tinyvm import debs

    assert debs.cached(tmp_path / "kernel", "deps.json") == []
    for i, name in enumerate(("b", "a", "cut-short")):
        d = tmp_path / "kernel" / name
        d.mkdir(parents=True)
        if name != "cut-short":
            (d / "deps.json").write_text("{}")
        os.utime(d, (1000 + i, 1000 + i))
    assert [d.name for d in debs.cached(tmp_path / "kernel", "deps.json")] == ["b", "a"]
