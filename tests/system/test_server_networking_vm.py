"""A VM and containers on one tenant network (issue 10, acceptance items 1 and 5 for VMs): the demo
user boots a container, then a tiny VM whose user_data script pings the container and writes the
result to the console; the container pings the VM back; then `openstack server add port` hot plugs
a NIC into the running VM (QMP), which brings it up with DHCP by itself and answers on it, and
`server remove port` unplugs it again.

One `cumulo up` for the module with the runc and QEMU drivers on the local host. Everything the
module makes is deleted at the end; no QEMU process of it remains.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import (
    kill_our_qemus,
    runc,
    server,
    wait_for,
    wait_gone,
    wait_status,
    wait_tiny_vm,
    write_config,
)

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

DEMO = "cumulo-demo"
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.servers: list[str] = []
        self.ports: list[str] = []
        self.networks: list[str] = []

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, cloud=DEMO, **kw)

    def boot(self, name: str, image: str, *extra: str, networks: tuple[str, ...] = ("private",)) -> str:
        nets = [arg for net in networks for arg in ("--network", net)]
        made = self.osc("server", "create", "--image", image, "--flavor", "m1.tiny", *nets, *extra, name)
        self.servers.append(str(made["id"]))
        return str(made["id"])

    def console(self, uuid: str) -> str:
        return str(self.osc("console", "log", "show", uuid, json=False))


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("server-net-vm")
    config = write_config(tmp, {"power_sync_interval": 3.0}, image_build_cache=BUILD_CACHE, qemu_stop_timeout=15)
    cloud = cumulo_launcher(driver="runc,qemu", args=["--config", str(config)])
    w = World(cloud, tmp)
    try:
        image = wait_tiny_vm(cloud)
        # Hot plug needs a PCI bus: the q35 machine (the tiny VM boots as a microvm by default).
        cloud.osc("image", "set", "--property", "hw_machine_type=q35", image, json=False)
        yield w
    finally:
        for uuid in w.servers:
            if server(cloud, uuid) is not None:
                cloud.osc_run("server", "delete", uuid)
        for uuid in w.servers:
            with contextlib.suppress(AssertionError):
                wait_gone(cloud, uuid, timeout=60)
        for port in w.ports:
            cloud.osc_run("port", "delete", port, cloud=DEMO)
        for net in w.networks:
            cloud.osc_run("network", "delete", net, cloud=DEMO)
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        cloud.close()


def ips(s: dict[str, Any], net: str = "private") -> list[str]:
    return [a["addr"] for a in s["addresses"].get(net, []) if a["version"] == 4 and a["OS-EXT-IPS:type"] == "fixed"]


def pings(w: World, uuid: str, ip: str) -> bool:
    return runc(w.cloud, "exec", f"cumulo-{uuid}", "ping", "-c", "1", "-W", "1", ip).returncode == 0


def test_vm_and_container_reach_each_other_then_hot_plug(world: World) -> None:
    net = world.osc("network", "create", "vmhot")
    world.networks.append(str(net["id"]))
    world.osc("subnet", "create", "--network", "vmhot", "--subnet-range", "10.78.0.0/24", "vmhotsub")
    ct = world.boot("net-ct", "busybox", networks=("private", "vmhot"))
    ct_shown = wait_status(world.cloud, ct, "ACTIVE", timeout=120)
    [ct_ip] = ips(ct_shown)
    script = world.files / "ping.sh"
    script.write_text("#!/bin/sh\n"
                      f"for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 1 {ct_ip} >/dev/null 2>&1 && break; done\n"
                      f"if ping -c 1 -W 2 {ct_ip} >/dev/null 2>&1; then echo PING-RESULT ok; else echo PING-RESULT fail; fi\n")
    vm = world.boot("net-vm", "tiny-vm", "--user-data", str(script))
    vm_shown = wait_status(world.cloud, vm, "ACTIVE", timeout=120)
    [vm_ip] = ips(vm_shown)
    text = wait_for(lambda: (t := world.console(vm)) and "PING-RESULT" in t and t, timeout=240,
                    what="the VM's ping result on its console")
    assert "PING-RESULT ok" in text, text[-3000:]
    wait_for(lambda: pings(world, ct, vm_ip), timeout=60, what=f"the container pings the VM at {vm_ip}")
    # Hot plug a port on vmhot into the running VM: it takes its address by DHCP and answers on it.
    port = world.osc("port", "create", "--network", "vmhot", "vm-hot-port")
    world.ports.append(str(port["id"]))
    new_ip = port["fixed_ips"][0]["ip_address"]
    world.osc("server", "add", "port", vm, port["id"], json=False)
    wait_for(lambda: new_ip in ips(server(world.cloud, vm) or {"addresses": {}}, "vmhot"), timeout=60,
             what="the new address in server show")
    wait_for(lambda: pings(world, ct, new_ip), timeout=120, what=f"the VM's hot-plugged {new_ip} answers")
    world.osc("server", "remove", "port", vm, port["id"], json=False)
    wait_for(lambda: not pings(world, ct, new_ip), timeout=60, what=f"{new_ip} gone after remove port")
    assert world.osc("port", "show", port["id"])["device_id"] == ""
    wait_for(lambda: pings(world, ct, vm_ip), timeout=30, what="the VM's first NIC still answers")
