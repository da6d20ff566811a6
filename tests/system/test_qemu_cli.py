"""Real VMs through the real `openstack` CLI (issue 4, acceptance items 2, 3 and 4).

One `cumulo up` for the module whose local host runs two compute nodes: runc (containers, node
"cumulo-local") and QEMU (VMs, node "cumulo-local-qemu"). The tiny-vm demo image boots; its
user_data prints a marker, MemTotal, and then an uptime tick every few seconds, so the console
proves what ran, how much memory the guest sees and whether it kept running (suspend/resume,
kill -9 of the cloud) or booted again (one "booting" banner per boot).

Under TCG a boot costs seconds and a core, so the module shares its guests and boots eight times
in all: vm-a (boot, stop/start, soft reboot, hard reboot, resize+confirm) and vm-b from vm-a's
snapshot (boot, resize+revert). Every QEMU the module starts is gone at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import (
    kill_our_qemus,
    qemu_processes_of,
    server,
    wait_for,
    wait_gone,
    wait_image_active,
    wait_status,
    wait_tiny_vm,
    write_config,
)

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

VM_NODE = "cumulo-local-qemu"
CT_NODE = "cumulo-local"
BANNER = "Cumulo tiny-vm booting"
MARKER = "user-data-ran-on"
USER_DATA = (
    "#!/bin/sh\n"
    f'echo "{MARKER} $(hostname)"\n'
    "grep MemTotal /proc/meminfo\n"
    "( while :; do echo \"tick up=$(cut -d' ' -f1 /proc/uptime)\"; sleep 2; done ) &\n"
)
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())
TICK = re.compile(r"tick up=([0-9.]+)")
MEMTOTAL = re.compile(r"MemTotal:\s+(\d+) kB")


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.servers: dict[str, str] = {}  # name -> id

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, **kw)

    def boot(self, name: str, image: str, *extra: str, flavor: str = "m1.tiny") -> str:
        made = self.osc("server", "create", "--image", image, "--flavor", flavor, *extra, name)
        self.servers[name] = str(made["id"])
        return str(made["id"])

    def console(self, uuid: str) -> str:
        with self.cloud.client("cumulo") as c:
            r = c.post(f"/compute/v2.1/servers/{uuid}/action", json={"os-getConsoleOutput": {"length": None}})
        r.raise_for_status()
        return str(r.json()["output"])

    def wait_console(self, uuid: str, pred: Callable[[str], bool], what: str, timeout: float = 90.0) -> str:
        def check() -> str | None:
            text = self.console(uuid)
            return text if pred(text) else None

        result: str = wait_for(check, timeout=timeout, interval=0.3, what=f"{what} on the console of {uuid}")
        return result

    def qemu_dir(self, uuid: str) -> Path:
        return self.cloud.state_dir / "qemu" / uuid


def banners(text: str) -> int:
    return text.count(BANNER)


def last_tick(text: str) -> float:
    ticks = TICK.findall(text)
    return float(ticks[-1]) if ticks else -1.0


def last_memtotal_mb(text: str) -> int:
    found = MEMTOTAL.findall(text)
    return int(found[-1]) // 1024 if found else 0


def qemu_pid(w: World, uuid: str) -> int | None:
    """The pid in the server's pidfile, if that process is a QEMU of this very server."""
    try:
        pid = int((w.qemu_dir(uuid) / "qemu.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if uuid.encode() in cmdline and b"qemu-system" in cmdline else None







@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("qemu-cli")
    config = write_config(tmp, {"power_sync_interval": 3.0}, image_build_cache=BUILD_CACHE, qemu_stop_timeout=15)
    cloud = cumulo_launcher(driver="runc,qemu", args=["--config", str(config)])
    w = World(cloud, tmp)
    (tmp / "user-data.sh").write_text(USER_DATA)
    try:
        wait_tiny_vm(cloud)
        yield w
    finally:
        for uuid in w.servers.values():
            if server(cloud, uuid) is not None:
                cloud.osc_run("server", "delete", uuid)
        for uuid in w.servers.values():
            with contextlib.suppress(AssertionError):
                wait_gone(cloud, uuid, timeout=30)
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        cloud.close()


def _ud(w: World) -> list[str]:
    return ["--user-data", str(w.files / "user-data.sh")]


# ---------------------------------------------------------------------------------------------


def test_a_vm_and_a_container_side_by_side(world: World) -> None:
    """Acceptance 2 (boot) and 3: one CLI session, a VM and a container, each on its node."""
    vm = world.boot("vm-a", "tiny-vm", *_ud(world))
    ct = world.boot("ct-a", "busybox")
    for uuid in (vm, ct):
        wait_status(world.cloud, uuid, "ACTIVE", timeout=120)
    shown = {u: world.osc("server", "show", u) for u in (vm, ct)}
    assert shown[vm]["OS-EXT-SRV-ATTR:hypervisor_hostname"] == VM_NODE
    assert shown[ct]["OS-EXT-SRV-ATTR:hypervisor_hostname"] == CT_NODE
    assert {shown[u]["OS-EXT-SRV-ATTR:host"] for u in (vm, ct)} == {"cumulo-local"}  # one host, two nodes
    listed = {s["Name"]: s["Status"] for s in world.osc("server", "list")}
    assert listed == {"vm-a": "ACTIVE", "ct-a": "ACTIVE"}
    hyps = {h["Hypervisor Hostname"]: h for h in world.osc("hypervisor", "list")}
    assert {n: h["Hypervisor Type"] for n, h in hyps.items()} == {CT_NODE: "container", VM_NODE: "QEMU"}
    detail = world.osc("hypervisor", "show", VM_NODE)
    assert detail["running_vms"] == 1 and "qemu" in str(detail["cpu_info"])
    services = [s for s in world.osc("compute", "service", "list") if s["Binary"] == "nova-compute"]
    # A nova-compute service per node (one host, one pool; the QEMU node can be disabled alone).
    assert sorted(s["Host"] for s in services) == [CT_NODE, VM_NODE]
    # The console: banner, the hostname from the config drive, user_data's marker.
    text = world.wait_console(vm, lambda t: "tick up=" in t, "the first uptime tick")
    assert banners(text) == 1
    assert "cumulo-tiny-vm ready hostname=vm-a " in text
    assert f"{MARKER} vm-a" in text
    assert 400 <= last_memtotal_mb(text) <= 512
    cli_text = world.osc("console", "log", "show", vm)
    assert BANNER in cli_text
    # The tiny-vm image asks for the guest agent's channel (hw_qemu_guest_agent=yes): the VM has it.
    rec = json.loads((world.qemu_dir(vm) / "instance.json").read_text())
    assert rec["vm"]["guest_agent"] is True and "virtserialport" in " ".join(rec["argv"])


def test_pause_and_suspend_keep_the_guest_running(world: World) -> None:
    vm = world.servers["vm-a"]
    world.osc("server", "pause", vm)
    wait_status(world.cloud, vm, "PAUSED")
    world.osc("server", "unpause", vm)
    wait_status(world.cloud, vm, "ACTIVE")
    before = last_tick(world.console(vm))
    world.osc("server", "suspend", vm)
    wait_status(world.cloud, vm, "SUSPENDED", timeout=90)
    assert qemu_processes_of(vm) == []  # the state is in a file; no process while suspended
    world.osc("server", "resume", vm)
    wait_status(world.cloud, vm, "ACTIVE", timeout=90)
    text = world.wait_console(vm, lambda t: last_tick(t) > before + 1, "ticks after resume")
    assert banners(text) == 1  # never booted again


def test_stop_start_and_reboots_boot_again(world: World) -> None:
    vm = world.servers["vm-a"]
    world.osc("server", "stop", vm)
    wait_status(world.cloud, vm, "SHUTOFF", timeout=90)
    assert qemu_pid(world, vm) is None
    world.osc("server", "start", vm)
    wait_status(world.cloud, vm, "ACTIVE", timeout=120)
    world.wait_console(vm, lambda t: banners(t) == 2 and "tick up=" in t.rsplit(BANNER, 1)[1], "the second boot")
    world.osc("server", "reboot", vm)
    wait_status(world.cloud, vm, "ACTIVE", timeout=120)
    world.wait_console(vm, lambda t: banners(t) == 3, "the soft reboot's boot")
    pid = qemu_pid(world, vm)
    world.osc("server", "reboot", "--hard", vm)
    wait_status(world.cloud, vm, "ACTIVE", timeout=120)
    text = world.wait_console(vm, lambda t: banners(t) == 4 and "ready hostname=vm-a" in t.rsplit(BANNER, 1)[1],
                              "the hard reboot's boot")
    assert f"{MARKER} vm-a" in text.rsplit(BANNER, 1)[1]  # user_data runs at every boot
    assert qemu_pid(world, vm) is not None and pid is not None


def test_resize_and_confirm_gives_the_guest_more_memory(world: World) -> None:
    vm = world.servers["vm-a"]
    world.osc("server", "resize", "--flavor", "m1.small", vm)
    wait_status(world.cloud, vm, "VERIFY_RESIZE", timeout=120)
    text = world.wait_console(vm, lambda t: last_memtotal_mb(t) > 1500, "MemTotal of the bigger flavor")
    assert last_memtotal_mb(text) <= 2048
    world.osc("server", "resize", "confirm", vm)
    s = wait_status(world.cloud, vm, "ACTIVE", timeout=60)
    assert s["flavor"]["original_name"] == "m1.small"
    diag = world.osc("server", "show", "--diagnostics", vm)
    assert diag, "diagnostics from QMP"


def test_snapshot_then_boot_from_it(world: World) -> None:
    vm = world.servers["vm-a"]
    # Not --wait (it sleeps 5 s after a first poll that comes before any snapshot ends): the API polled.
    image = world.osc("server", "image", "create", "--name", "snap-a", vm)
    wait_image_active(world.cloud, image["id"], timeout=120)
    shown = world.osc("image", "show", image["id"])
    assert shown["status"] == "active" and shown["disk_format"] == "qcow2"
    assert shown["properties"]["hw_qemu_guest_agent"] == "yes"  # a VM booted from it gets the channel too
    wait_status(world.cloud, vm, "ACTIVE")
    vm_b = world.boot("vm-b", "snap-a", *_ud(world))
    s = wait_status(world.cloud, vm_b, "ACTIVE", timeout=120)
    assert s["OS-EXT-SRV-ATTR:hypervisor_hostname"] == VM_NODE
    text = world.wait_console(vm_b, lambda t: "tick up=" in t, "vm-b's first tick")
    assert "ready hostname=vm-b " in text and f"{MARKER} vm-b" in text


def test_kill9_with_two_vms_adopts_both(world: World) -> None:
    """Acceptance 4: the guests outlive the cloud; a restarted cloud adopts them, not reboots them."""
    vms = [world.servers["vm-a"], world.servers["vm-b"]]
    pids = {u: qemu_pid(world, u) for u in vms}
    assert all(pids.values()), pids
    before = {u: world.console(u) for u in vms}
    world.cloud.kill()
    assert {u: qemu_pid(world, u) for u in vms} == pids  # QEMU survived the agent
    world.cloud.start()
    for u in vms:
        wait_status(world.cloud, u, "ACTIVE", timeout=60)
        old = before[u]

        def ticked_on(text: str, old: str = old) -> bool:
            return last_tick(text) > last_tick(old) + 1

        text = world.wait_console(u, ticked_on, "ticks after restart")
        assert banners(text) == banners(old)  # the uptime went on: no boot in between
    assert {u: qemu_pid(world, u) for u in vms} == pids
    assert world.osc("server", "show", world.servers["ct-a"])["status"] == "ACTIVE"


def test_resize_and_revert_restores_the_old_size(world: World) -> None:
    vm = world.servers["vm-b"]
    world.osc("server", "resize", "--flavor", "m1.small", vm)
    wait_status(world.cloud, vm, "VERIFY_RESIZE", timeout=120)
    world.wait_console(vm, lambda t: last_memtotal_mb(t) > 1500, "MemTotal of the bigger flavor")
    world.osc("server", "resize", "revert", vm)
    s = wait_status(world.cloud, vm, "ACTIVE", timeout=120)
    assert s["flavor"]["original_name"] == "m1.tiny"
    world.wait_console(vm, lambda t: 0 < last_memtotal_mb(t) <= 512, "MemTotal of the old flavor")


def test_delete_leaves_nothing(world: World) -> None:
    uuids = dict(world.servers)
    world.osc("server", "delete", *uuids.values())
    for uuid in uuids.values():
        wait_gone(world.cloud, uuid, timeout=60)
    for name, uuid in uuids.items():
        assert qemu_processes_of(uuid) == [], name
        assert not world.qemu_dir(uuid).exists(), name  # overlay, sockets, pidfile, logs
    hyps = {h["Hypervisor Hostname"]: h for h in world.osc("hypervisor", "list", "--long")}
    assert hyps[VM_NODE]["vCPUs Used"] == 0 and hyps[CT_NODE]["vCPUs Used"] == 0
