"""PaaS nodes on a REAL QEMU VM (the tiny VM, TCG here): the recipe path of paas/exec.py over the
driver's exec (the QEMU guest agent), with PAAS_ROOT on the VM's persistent disk (paas/guest.py).

1. A fresh node: the prepare step formats the blank root disk (label cumulo-root) and mounts it on
   /mnt/root, and a second run formats nothing; the built-in httpd-web is installed, configured and
   started with PAAS_ROOT=/mnt/root/paas; its page is served (busybox wget inside the guest).
2. A template node: the driver's snapshot of that VM (what ComputeService.snapshot stores as the
   template image) boots a second VM, whose init mounts the labelled disk at boot (the install is
   there) and whose user_data (guest.boot_user_data) configures and starts httpd-web at boot; the
   engine's configure and start (the same wrapper, the same run ids) only COLLECT the boot's results;
   the page is served with no install run on that VM.

Two tiny VMs, one after the other (the first is destroyed once its snapshot is taken). Every QEMU is
destroyed by its uuid, then any left under the module's state dir is killed by its pidfile.
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import _qemu_guest
import pytest
from _paas_exec import exec_fn

from cumulo.compute.drivers.base import (
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
)
from cumulo.compute.drivers.qemu import process
from cumulo.errors import DriverError
from cumulo.paas import exec as px
from cumulo.paas import guest
from cumulo.paas.products import builtin

pytestmark = pytest.mark.skipif(bool(_qemu_guest.QEMU_MISSING), reason=_qemu_guest.QEMU_MISSING or "QEMU here")

FLAVOR = FlavorSpec(vcpus=1, memory_mb=256, root_gb=1)
TIMEOUT = 240.0  # per exec (TCG on a loaded 2-core host)


async def wait_agent(fn: px.ExecFn, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            res = await fn(["/bin/true"], dict(px.BASE_ENV), b"", 60, 4096)
            if res["exit_code"] == 0:
                return
        except DriverError as exc:
            assert time.monotonic() < deadline, f"the guest agent did not answer within {timeout}s: {exc}"


async def sh(fn: px.ExecFn, text: str) -> tuple[int, str, str]:
    res = await fn(["/bin/sh", "-s"], dict(px.BASE_ENV), text.encode(), TIMEOUT, 65536)
    return int(res["exit_code"]), str(res["stdout"]), str(res["stderr"])


async def fetch(fn: px.ExecFn, url: str) -> tuple[int, str]:
    """GET url from inside the guest (busybox wget under busybox timeout: its own -T crashes)."""
    res = await fn(["/bin/busybox", "timeout", "20", "/bin/busybox", "wget", "-q", "-O", "-", url],
                   dict(px.BASE_ENV), b"", 60, 65536)
    return int(res["exit_code"]), str(res["stdout"]) + str(res["stderr"])


def web(node: str) -> px.Target:
    return px.Target("httpd-web", "1.0", "web", node, root=px.VM_ROOT)


def recipe(step: str) -> str:
    return str(next(p for p in builtin.products() if p["name"] == "httpd-web")["recipes"][step])


@dataclass
class Node:
    state: Path
    uuid: str
    install_seconds: float


def _spec(uid: str, name: str, image: ImageSpec, user_data: bytes | None = None) -> InstanceSpec:
    return InstanceSpec(uuid=uid, name=name, hostname=name, project_id="p", flavor=FLAVOR, image=image,
                        user_data=user_data, config_drive=user_data is not None)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("paas-vm") / "state"
    uuids: list[str] = []
    path.mkdir(parents=True)
    (path / ".uuids").write_text("")
    try:
        yield path
    finally:
        uuids = [u for u in (path / ".uuids").read_text().split() if u]

        async def destroy() -> None:
            drv = await _qemu_guest.tcg_driver(path, "paas-vm-host")
            for uid in uuids:
                await drv.destroy(uid)

        try:
            asyncio.run(destroy())
        finally:
            _qemu_guest.kill_under(path)
        for uid in uuids:
            assert not process.scan_pids(uid)


def _remember(state: Path, uid: str) -> None:
    with (state / ".uuids").open("a") as f:
        f.write(uid + "\n")


@pytest.fixture(scope="module")
def node(state: Path) -> Node:
    """A fresh tiny VM (hw_qemu_guest_agent=yes) with httpd-web installed, configured and started."""
    uid = str(uuidlib.uuid4())
    _remember(state, uid)
    image = _qemu_guest.tiny_image(hw_qemu_guest_agent="yes")

    async def deploy() -> float:
        drv = await _qemu_guest.tcg_driver(state, "paas-vm-host")
        await drv.spawn(_spec(uid, "paas-web-1", image))
        fn = exec_fn(drv, uid)
        await wait_agent(fn)
        rc, out, err = await sh(fn, guest.prepare_script(wait_boot=120))
        assert rc == 0, (out, err)
        assert "formatted /dev/vda (ext2, label cumulo-root)" in out and out.endswith("PAAS_DISK=/dev/vda\n"), out
        began = time.monotonic()
        package = builtin.payload("httpd-web", "1.0")
        assert package is not None
        staging = await px.put_payload(fn, package, run=px.run_id(1, "install:web:1:httpd-web", "payload"),
                                       timeout=TIMEOUT, root=px.VM_ROOT)
        assert staging.startswith("/mnt/root/paas/.incoming/")
        for step in ("install", "configure", "start"):
            text = (f"export PAAS_PAYLOAD={staging}\n" if step == "install" else "") + recipe(step)
            res = await px.run_recipe(fn, web("env1-web-1"), step, {"BACKENDS": ""}, text,
                                      run=px.run_id(1, f"{step}:web:1:httpd-web"), timeout=TIMEOUT)
            assert res.ok, (step, res)
        return time.monotonic() - began

    seconds = asyncio.run(deploy())
    return Node(state, uid, seconds)


async def test_a_fresh_vm_node_keeps_paas_root_on_its_labelled_disk_and_serves(node: Node) -> None:
    fn = exec_fn(await _qemu_guest.tcg_driver(node.state, "paas-vm-host"), node.uuid)
    rc, page = await fetch(fn, "http://127.0.0.1/")
    assert rc == 0 and "httpd-web 1.0 on env1-web-1" in page, page
    # PAAS_ROOT is on the disk, not in the initramfs: /mnt/root is the labelled ext filesystem.
    rc, out, err = await sh(fn, "awk '$2 == \"/mnt/root\" { print $1, $3 }' /proc/mounts; findfs LABEL=cumulo-root; "
                                "ls /mnt/root/paas/httpd-web/assets | wc -l\n")
    assert rc == 0 and out.split() == ["/dev/vda", "ext4", "/dev/vda", str(builtin.PAYLOAD_BYTES["httpd-web"] >> 18)], (out, err)
    # prepare again, twice at once (a resumed step beside its first attempt): nothing is formatted,
    # the disk's files stay, the guest's lock is gone after them
    for rc, out, err in await asyncio.gather(*(sh(fn, guest.prepare_script(wait_boot=120)) for _ in range(2))):
        assert rc == 0 and "formatted" not in out and "/dev/vda is mounted on /mnt/root" in out, (out, err)
    rc, out, err = await sh(fn, "[ ! -e /run/paas-prepare.lock ]\n")
    assert rc == 0, (out, err)
    rc, out, _err = await sh(fn, "ls /mnt/root/paas/httpd-web/www/index.html\n")
    assert rc == 0


async def test_a_template_node_boots_with_the_install_and_starts_through_user_data(
        node: Node, tmp_path: Path) -> None:
    drv = await _qemu_guest.tcg_driver(node.state, "paas-vm-host")
    fn1 = exec_fn(drv, node.uuid)
    rc, _out, _err = await sh(fn1, "sync\n")  # as template.py does before the snapshot
    assert rc == 0
    snap = await drv.snapshot(node.uuid, str(tmp_path))
    assert snap.disk_format == "qcow2" and snap.properties["hw_qemu_guest_agent"] == "yes"
    await drv.destroy(node.uuid)  # one VM at a time (TCG)

    art = _qemu_guest.tiny_vm()
    image = ImageSpec(id=str(uuidlib.uuid4()), path=snap.path, disk_format="qcow2", container_format="bare",
                      properties={**_qemu_guest.tiny_image().properties, **snap.properties},
                      kernel_path=str(art.kernel), ramdisk_path=str(art.ramdisk))
    target = web("env1-web-2")
    steps = [guest.BootStep(kind, f"{kind}:web:2:httpd-web", target, {"BACKENDS": "10.0.0.9"}, recipe(kind),
                            task_id=7, guard=int(TIMEOUT) + px.GUARD_MARGIN) for kind in ("configure", "start")]
    user_data = guest.boot_user_data(steps)
    assert user_data.startswith(b"#!/bin/sh\n") and len(user_data) < guest.MAX_USER_DATA
    uid = str(uuidlib.uuid4())
    _remember(node.state, uid)
    began = time.monotonic()
    await drv.spawn(_spec(uid, "paas-web-2", image, user_data))
    fn = exec_fn(drv, uid)
    await wait_agent(fn)
    # the engine's prepare: waits for the boot (user_data ran), finds the disk mounted by init
    rc, out, err = await sh(fn, guest.prepare_script(wait_boot=int(TIMEOUT) - 30))
    assert rc == 0 and "formatted" not in out and "/dev/vda is mounted on /mnt/root" in out, (out, err)
    # the engine's configure and start: the same wrapper and run ids, which collect the boot's runs
    for step in steps:
        res = await px.run_recipe(fn, step.target, step.kind, step.attributes, step.recipe,
                                  run=px.run_id(step.task_id, step.key), timeout=TIMEOUT)
        assert res.ok and guest.collected_at_boot(res), (step.key, res)
    boot_seconds = time.monotonic() - began
    # the default path on a template node: a configure of another task runs through exec, on the
    # disk the template brought (the run above is not taken for it)
    again = await px.run_recipe(fn, target, "configure", {"BACKENDS": "10.0.0.9,10.0.0.10"}, recipe("configure"),
                                run=px.run_id(8, "configure:web:2:httpd-web"), timeout=TIMEOUT)
    assert again.ok and not guest.collected_at_boot(again) and "httpd-web backends: 10.0.0.9,10.0.0.10" in again.stdout
    rc, page = await fetch(fn, "http://127.0.0.1/")
    assert rc == 0 and "httpd-web 1.0 on env1-web-1" in page, page  # the template's install, served
    rc, out, err = await sh(fn, "cat /mnt/root/paas/httpd-web/backends; ls /mnt/root/paas/httpd-web/assets | wc -l; "
                                "ls /mnt/root/paas/.state/httpd-web/steps/ | grep -c '^t7-install' || true\n")
    assert out.split() == ["10.0.0.9", "10.0.0.10", str(builtin.PAYLOAD_BYTES["httpd-web"] >> 18), "0"], (out, err)
    console = await drv.get_console_output(uid, 1 << 20)
    assert "cumulo-paas: products configured and started" in console, console[-3000:]
    print(f"\nfresh node install+configure+start {node.install_seconds:.1f} s; "
          f"template node boot -> started {boot_seconds:.1f} s")
