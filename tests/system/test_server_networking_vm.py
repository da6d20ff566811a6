"""A VM and containers on one tenant network (issue 10, acceptance items 1, 5 for VMs, and 7).

One `cumulo up` for the module, with the runc and QEMU drivers on the local host and Nova's
`force_config_drive` off (DevStack's default): a VM booted without `--use-config-drive` has no
config drive, as on most OpenStack clouds. The demo user boots two containers on the demo's
`private` network (one also on a second network, `vmhot`), then ONE tiny VM (q35, for hot plug),
also on `private`:

- item 7: with no config drive the tiny VM does what cloud-init's OpenStack datasource does: its
  first NIC takes its address by DHCP (dnsmasq in the network's namespace), then it reads
  meta_data.json and user_data from http://169.254.169.254/openstack/latest/. Its console shows
  the lease, which must be its port's fixed IP, and its user_data prints `ip addr` of eth0;
- item 1: that user_data pings both containers and fetches its meta_data.json from
  169.254.169.254, writing the results to the console (`openstack console log show`); both
  containers ping the VM and each other;
- item 5 (VM): `openstack server add port` hot plugs a port of `vmhot` into the running VM (QMP):
  the guest brings the new NIC up with DHCP by itself (the lease on its console) and answers ping
  on it; `server remove port` unplugs it: the guest names the NIC gone on its console and the
  address stops answering, while the first NIC still does.

Everything the module makes is deleted at the end; no QEMU process of it remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
# The VM's user_data (from the metadata service: it has no config drive). Each ping retries for a
# while: the containers' ARP entries and the VM's own come up as it boots.
USER_DATA = """#!/bin/sh
echo "UD-ADDR $(ip -4 addr show dev eth0 | grep -o 'inet [0-9.]*/[0-9]*')"
for ip in {peers}; do
    i=0
    while [ $i -lt 20 ] && ! ping -c 1 -W 1 $ip >/dev/null 2>&1; do i=$((i + 1)); done
    if ping -c 1 -W 2 $ip >/dev/null 2>&1; then echo "UD-PING $ip ok"; else echo "UD-PING $ip fail"; fi
done
echo "UD-MD $(timeout 20 wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json | tr -d '\\n') UD-MD-END"
echo UD-END
"""


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


@dataclass(frozen=True)
class Servers:
    ct_a: str  # on private and vmhot
    ct_b: str  # on private
    ip_a: str
    ip_b: str
    vm: str
    vm_ip: str  # the fixed IP of the VM's port on private
    vm_mac: str


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("server-net-vm")
    config = write_config(tmp, {"power_sync_interval": 3.0, "force_config_drive": False},
                          image_build_cache=BUILD_CACHE, qemu_stop_timeout=15)
    cloud = cumulo_launcher(driver="runc,qemu", args=["--config", str(config), "--no-external"])
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


@pytest.fixture(scope="module")
def servers(world: World) -> Servers:
    """Two containers, then the one VM of the module (no config drive), booted once."""
    net = world.osc("network", "create", "vmhot")
    world.networks.append(str(net["id"]))
    world.osc("subnet", "create", "--network", "vmhot", "--subnet-range", "10.78.0.0/24", "vmhotsub")
    ct_a = world.boot("net-ct-a", "busybox", networks=("private", "vmhot"))
    ct_b = world.boot("net-ct-b", "busybox")
    [ip_a], [ip_b] = (ips(wait_status(world.cloud, u, "ACTIVE", timeout=120)) for u in (ct_a, ct_b))
    script = world.files / "vm-user-data.sh"
    script.write_text(USER_DATA.replace("{peers}", f"{ip_a} {ip_b}"))
    vm = world.boot("net-vm", "tiny-vm", "--user-data", str(script))
    shown = wait_status(world.cloud, vm, "ACTIVE", timeout=180)
    [vm_addr] = shown["addresses"]["private"]
    return Servers(ct_a, ct_b, ip_a, ip_b, vm, vm_addr["addr"], vm_addr["OS-EXT-IPS-MAC:mac_addr"])


def vm_console_done(world: World, vm: str) -> str:
    text: str = wait_for(lambda: (t := world.console(vm)) and "UD-END" in t and t, timeout=300, interval=1.0,
                         what="the VM's user_data results on its console")
    return text


def test_a_vm_without_config_drive_takes_its_ports_address_by_dhcp(world: World, servers: Servers) -> None:
    """Acceptance 7: no config drive; the first NIC's DHCP lease is the port's fixed IP, and
    meta_data.json and user_data come from the metadata service."""
    text = vm_console_done(world, servers.vm)
    assert world.osc("server", "show", servers.vm)["config_drive"] in ("", "False", False), "no config drive asked"
    assert "cumulo-tiny-vm: no config drive found" in text, text[-3000:]
    [port] = world.osc("port", "list", "--server", servers.vm, "--long")
    assert port["MAC Address"] == servers.vm_mac
    assert [f["ip_address"] for f in port["Fixed IP Addresses"]] == [servers.vm_ip]
    lease = re.search(r"cumulo-tiny-vm: eth0 ([0-9.]+)/([0-9]+) \(DHCP\)", text)
    assert lease is not None and lease.group(1) == servers.vm_ip, text[-3000:]
    assert f"UD-ADDR inet {servers.vm_ip}/{lease.group(2)}" in text, text[-3000:]
    assert "cumulo-tiny-vm: meta_data.json from the metadata service" in text
    # The hostname came from that meta_data.json (Nova's hostname of "net-vm").
    assert "cumulo-tiny-vm ready hostname=net-vm " in text, text[-3000:]


def test_vm_and_two_containers_reach_each_other(world: World, servers: Servers) -> None:
    """Acceptance 1: the VM's user_data pinged both containers and read 169.254.169.254 (its
    console says so); both containers ping the VM, and each other."""
    text = vm_console_done(world, servers.vm)
    assert f"UD-PING {servers.ip_a} ok" in text and f"UD-PING {servers.ip_b} ok" in text, text[-3000:]
    m = re.search(r"UD-MD (\{.*\}) UD-MD-END", text)
    assert m is not None, text[-3000:]
    doc = json.loads(m.group(1))
    assert doc["uuid"] == servers.vm and doc["name"] == "net-vm", doc
    for ct in (servers.ct_a, servers.ct_b):
        wait_for(lambda ct=ct: pings(world, ct, servers.vm_ip), timeout=60,
                 what=f"container {ct} pings the VM at {servers.vm_ip}")
    assert pings(world, servers.ct_a, servers.ip_b) and pings(world, servers.ct_b, servers.ip_a)


def test_hot_plug_and_unplug_a_port_on_the_running_vm(world: World, servers: Servers) -> None:
    """Acceptance 5 (VM): server add port hot plugs a NIC (QMP) that the guest brings up by DHCP
    and that answers ping; server remove port unplugs it: gone from the guest, no more answers."""
    vm_console_done(world, servers.vm)  # the guest is up (its NIC watcher runs after user_data)
    port = world.osc("port", "create", "--network", "vmhot", "vm-hot-port")
    world.ports.append(str(port["id"]))
    new_ip = port["fixed_ips"][0]["ip_address"]
    world.osc("server", "add", "port", servers.vm, port["id"], json=False)
    wait_for(lambda: new_ip in ips(server(world.cloud, servers.vm) or {"addresses": {}}, "vmhot"), timeout=60,
             what="the new address in server show")
    assert world.osc("port", "show", port["id"])["device_id"] == servers.vm
    lease = wait_for(lambda: re.search(rf"cumulo-tiny-vm: (eth\d) {re.escape(new_ip)}/24 \(DHCP\)",
                                       world.console(servers.vm)), timeout=120, interval=1.0,
                     what=f"the guest's DHCP lease of {new_ip} on the hot-plugged NIC")
    nic = lease.group(1)
    assert nic != "eth0"
    wait_for(lambda: pings(world, servers.ct_a, new_ip), timeout=60, what=f"the VM's hot-plugged {new_ip} answers")
    world.osc("server", "remove", "port", servers.vm, port["id"], json=False)
    wait_for(lambda: f"cumulo-tiny-vm: {nic} unplugged" in world.console(servers.vm), timeout=60, interval=1.0,
             what=f"the guest sees {nic} go")
    wait_for(lambda: not pings(world, servers.ct_a, new_ip), timeout=60, what=f"{new_ip} gone after remove port")
    assert world.osc("port", "show", port["id"])["device_id"] == ""
    assert ips(server(world.cloud, servers.vm) or {"addresses": {}}, "vmhot") == []
    wait_for(lambda: pings(world, servers.ct_b, servers.vm_ip), timeout=30, what="the VM's first NIC still answers")
