"""Servers on a real tenant network (issue 10, acceptance items 1 and 5 for containers): the demo
user boots two runc containers with `openstack server create --network private`, and they ping each
other by the addresses their ports got; then `openstack server add port` hot plugs a second NIC into
a running container, which answers on it, and `server remove port` unplugs it again. A server made
by openstacksdk with auto_ip serves the host through its floating IP once a security group lets TCP 80 in.

One `cumulo up` for the module (its local host on the runc driver, which makes the demo's `private`
network at first start). Pings run inside the containers (`runc exec`, busybox ping). Everything the
module makes is deleted at the end, and nothing of the servers may remain on the host. `network set
--disable` takes private's bridge down (the containers stop answering each other), `--enable` brings
it back.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _runc_util import launch_runc, leftovers, runc, server, wait_for, wait_gone, wait_status

if TYPE_CHECKING:
    from conftest import CumuloCloud

DEMO = "cumulo-demo"


class World:
    def __init__(self, cloud: CumuloCloud) -> None:
        self.cloud = cloud
        self.servers: list[str] = []
        self.ports: list[str] = []
        self.networks: list[str] = []
        self.pair: tuple[dict[str, Any], dict[str, Any]] | None = None  # two containers on private

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, cloud=DEMO, **kw)

    def boot(self, name: str, *networks: str) -> dict[str, Any]:
        nets = [arg for net in (networks or ("private",)) for arg in ("--network", net)]
        made = self.osc("server", "create", "--image", "busybox", "--flavor", "m1.tiny", *nets, name)
        self.servers.append(str(made["id"]))
        return wait_status(self.cloud, str(made["id"]), "ACTIVE", timeout=120)


cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py): across dev hosts


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("server-net")
    w = World(launch_runc(cumulo_launcher, tmp, config=cumulo_config))
    yield w
    for uuid in w.servers:
        if server(w.cloud, uuid) is not None:
            w.cloud.osc_run("server", "delete", uuid)
    for uuid in w.servers:
        try:
            wait_gone(w.cloud, uuid, timeout=60)
        except AssertionError:
            pass
    for port in w.ports:
        w.cloud.osc_run("port", "delete", port, cloud=DEMO)
    for net in w.networks:
        w.cloud.osc_run("network", "delete", net, cloud=DEMO)
    w.cloud.close()


def ips(s: dict[str, Any], net: str = "private") -> list[str]:
    return [a["addr"] for a in s["addresses"].get(net, []) if a["version"] == 4]


def pings(w: World, uuid: str, ip: str) -> bool:
    done = runc(w.cloud, "exec", f"cumulo-{uuid}", "ping", "-c", "1", "-W", "1", ip)
    return done.returncode == 0


def test_two_containers_on_private_ping_each_other(world: World) -> None:
    a, b = world.boot("net-a"), world.boot("net-b")
    [ip_a], [ip_b] = ips(a), ips(b)
    if world.cloud.config_name == "scaled":  # the scheduler spreads them (free RAM): the pings cross VXLAN
        assert a["OS-EXT-SRV-ATTR:host"] != b["OS-EXT-SRV-ATTR:host"], (a["OS-EXT-SRV-ATTR:host"], b["OS-EXT-SRV-ATTR:host"])
    assert ip_a != ip_b and ip_a.startswith("10.0.0.") and ip_b.startswith("10.0.0."), (a["addresses"], b["addresses"])
    # The container's eth0 carries its port's address and MAC.
    ports = world.osc("port", "list", "--server", a["id"], "--long")
    assert len(ports) == 1 and ports[0]["Status"] in ("ACTIVE", "DOWN", "BUILD")
    mac = a["addresses"]["private"][0]["OS-EXT-IPS-MAC:mac_addr"]
    eth0 = runc(world.cloud, "exec", f"cumulo-{a['id']}", "ip", "addr", "show", "eth0")
    assert eth0.returncode == 0 and ip_a in eth0.stdout and mac in eth0.stdout.lower(), eth0.stdout + eth0.stderr
    wait_for(lambda: pings(world, a["id"], ip_b), timeout=20, what=f"{ip_a} pings {ip_b}")
    wait_for(lambda: pings(world, b["id"], ip_a), timeout=20, what=f"{ip_b} pings {ip_a}")
    world.pair = (a, b)


def bridge_up(network_id: str) -> bool | None:
    """Whether br0 in the network's namespace cnet-<id> is up (None: no such bridge)."""
    done = subprocess.run(["ip", "-n", f"cnet-{network_id}", "-j", "link", "show", "dev", "br0"],  # noqa: S603,S607
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return None
    return "UP" in (json.loads(done.stdout)[0].get("flags") or [])


def test_network_disable_takes_its_bridge_down(world: World) -> None:
    """`openstack network set --disable`: private's bridge goes down on the host and the two
    containers stop answering each other; `--enable` brings both back."""
    a, b = world.pair or (world.boot("adm-a"), world.boot("adm-b"))
    [ip_b] = ips(b)
    net = world.osc("network", "show", "private")
    assert bridge_up(net["id"]) is True and pings(world, a["id"], ip_b)
    world.osc("network", "set", "--disable", "private", json=False)
    try:
        wait_for(lambda: bridge_up(net["id"]) is False, timeout=30, what="private's br0 down")
        assert world.osc("network", "show", "private")["admin_state_up"] in (False, "DOWN")
        assert not pings(world, a["id"], ip_b)
    finally:
        world.osc("network", "set", "--enable", "private", json=False)
    wait_for(lambda: bridge_up(net["id"]) is True, timeout=30, what="private's br0 up again")
    wait_for(lambda: pings(world, a["id"], ip_b), timeout=20, what=f"{ip_b} answers again")


def test_add_and_remove_port_on_a_running_container(world: World) -> None:
    # The hot-plugged port is on a second network, which b also has: the reply leaves a by that NIC
    # (on one subnet, a's two NICs would each claim both addresses and anti-spoofing drops the
    # replies that leave by the other one).
    net = world.osc("network", "create", "hotnet")
    world.networks.append(str(net["id"]))
    world.osc("subnet", "create", "--network", "hotnet", "--subnet-range", "10.77.0.0/24", "hotsub")
    a, b = world.boot("hot-a"), world.boot("hot-b", "private", "hotnet")
    assert len(ips(b, "hotnet")) == 1
    port = world.osc("port", "create", "--network", "hotnet", "hot-port")
    world.ports.append(str(port["id"]))
    new_ip = port["fixed_ips"][0]["ip_address"]
    world.osc("server", "add", "port", a["id"], port["id"], json=False)
    shown = wait_for(lambda: (s := server(world.cloud, a["id"])) and new_ip in ips(s, "hotnet") and s, timeout=30,
                     what="the new address in server show")
    assert ips(shown) == ips(a)
    eth1 = runc(world.cloud, "exec", f"cumulo-{a['id']}", "ip", "addr", "show", "eth1")
    assert eth1.returncode == 0 and new_ip in eth1.stdout, eth1.stdout + eth1.stderr
    wait_for(lambda: pings(world, b["id"], new_ip), timeout=20, what=f"the hot-plugged {new_ip} answers")
    assert world.osc("port", "show", port["id"])["device_id"] == a["id"]
    world.osc("server", "remove", "port", a["id"], port["id"], json=False)
    wait_for(lambda: not pings(world, b["id"], new_ip), timeout=20, what=f"{new_ip} gone after remove port")
    kept = world.osc("port", "show", port["id"])  # the user's port stays, detached
    assert kept["device_id"] == ""
    assert (server(world.cloud, a["id"]) or {})["addresses"] == a["addresses"]
    assert runc(world.cloud, "exec", f"cumulo-{a['id']}", "ip", "link", "show", "eth1").returncode != 0
    wait_for(lambda: pings(world, b["id"], ips(a)[0]), timeout=20, what="the first NIC answers after remove port")


def test_deleted_servers_leave_nothing(world: World) -> None:
    s = world.boot("gone")
    world.osc("server", "delete", s["id"], json=False)
    wait_gone(world.cloud, s["id"])
    assert world.osc("port", "list", "--device-id", s["id"]) == []
    assert leftovers(world.cloud, s["id"]) == []


def host_fetch(address: str) -> str:
    """The machine (the root namespace: the host link's end) fetches http://address/: the page, or ""."""
    try:
        return httpx.get(f"http://{address}/", timeout=2).text
    except httpx.HTTPError:
        return ""


def test_openstacksdk_create_server_with_auto_ip(world: World) -> None:
    """openstacksdk's create_server(auto_ip=True): a floating IP from `public` on the server's port,
    shown in its addresses as Nova shows floating IPs (the SDK waits for that). The host reaches
    busybox httpd in it through the floating IP once a security group of the server lets TCP 80 in
    (the default group only lets its members in); on the scaled cloud through the L3 host's router
    and the VXLAN tunnel to the server's host."""
    conn = world.cloud.connect(DEMO)
    group = conn.network.create_security_group(name="sdk-auto-web")
    srv = None
    try:
        srv = conn.create_server("sdk-auto", image="busybox", flavor="m1.tiny", network="private", auto_ip=True,
                                 security_groups=["default", group.name], wait=True, timeout=180)
        world.servers.append(str(srv.id))
        floating = [a["addr"] for net in srv.addresses.values() for a in net if a["OS-EXT-IPS:type"] == "floating"]
        assert world.cloud.external_cidr, "the cloud has an external network"
        public = ipaddress.ip_network(world.cloud.external_cidr)  # the harness's free 172.24.X.0/24
        assert len(floating) == 1 and ipaddress.ip_address(floating[0]) in public, srv.addresses
        [fip] = [f for f in conn.network.ips() if f.floating_ip_address == floating[0]]
        [port] = list(conn.network.ports(device_id=srv.id))
        assert fip.port_id == port.id
        page = f"page-of-{srv.id}"
        done = runc(world.cloud, "exec", f"cumulo-{srv.id}", "/bin/sh", "-c",
                    f"mkdir -p /www && echo {page} > /www/index.html && busybox httpd -p 80 -h /www </dev/null >/dev/null 2>&1")
        assert done.returncode == 0, done.stderr
        assert page not in host_fetch(floating[0]), "TCP 80 from the host passed the server's security groups"
        conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress", protocol="tcp",
                                                port_range_min=80, port_range_max=80, ethertype="IPv4")
        wait_for(lambda: page in host_fetch(floating[0]), timeout=120,
                 what=f"the floating IP {floating[0]} serves the page to the host")
        assert conn.delete_server(srv.id, wait=True, delete_ips=True, timeout=120)
        srv = None
        assert [f for f in conn.network.ips() if f.floating_ip_address == floating[0]] == []
    finally:
        if srv is not None:
            conn.delete_server(srv.id, wait=True, delete_ips=True, timeout=120)
        conn.network.delete_security_group(group, ignore_missing=True)
        conn.close()
