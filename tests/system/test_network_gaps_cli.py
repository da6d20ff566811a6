"""Three behaviours of Neutron and Nova an OpenStack user counts on, with real containers (issue 10).

One `cumulo up` (runc, the external host link off), driven with the real `openstack` CLI as the
demo project:

- metadata on a network without a router: `iso` (a subnet with DHCP and a host route, no router).
  As Neutron's DHCP agent does with enable_isolated_metadata, its servers route
  169.254.169.254/32 via the network's DHCP port (set on the container's NIC like a CNI plugin
  does, in network_data.json and DHCP's option 121): busybox wget in each of `c1` and `c2` reads
  its own meta_data.json, and the subnet's host route is on the NIC too;
- a removed security group rule stops the established flows it allowed (Neutron flushes their
  conntrack entries): `c2` holds a TCP connection to `c1`:7000, let in by the group `svc`'s rule;
  data flows until `openstack security group rule delete`, then stops;
- `openstack server list` shows a floating IP associated straight through Neutron
  (`openstack floating ip set --port`) at once, as `server show` does: `c3` on the demo's routed
  `private` network.

The TCP connection is made of sockets opened in the containers' network namespaces (the same
addresses and MACs on the wire as a busybox nc in there, and no process to clean up).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _ns_util import run_in_server_ns
from _runc_util import inside, leftovers, server, wait_for, wait_gone, wait_status, write_config

from cumulo.netplane import netns

if TYPE_CHECKING:
    from conftest import CumuloCloud

cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)
DEMO = "cumulo-demo"
CIDR = "10.93.0.0/24"
HOST_ROUTE = ("192.168.77.0/24", "10.93.0.9")
PORT = 7000


class World:
    def __init__(self, cloud: CumuloCloud, tag: str) -> None:
        self.cloud, self.tag = cloud, tag
        self.ids: dict[str, str] = {}
        self.ips: dict[str, str] = {}
        self.servers: list[str] = []
        self.made: list[tuple[str, ...]] = []  # delete argv, undone last first

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, cloud=DEMO, **kw)

    def make(self, kind: tuple[str, ...], *args: str) -> dict[str, Any]:
        made: dict[str, Any] = self.osc(*kind, "create", *args)
        self.made.append((*kind, "delete", str(made["id"])))
        return made

    def boot(self, name: str, *args: str) -> str:
        made = self.osc("server", "create", "--image", "busybox", "--flavor", "m1.tiny", *args, name)
        self.servers.append(str(made["id"]))
        self.ids[name] = str(made["id"])
        return str(made["id"])

    def fetch(self, name: str, path: str, timeout: float = 60.0) -> str:
        """busybox wget of http://169.254.169.254<path> inside the container, retried until it answers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return inside(self.cloud, self.ids[name], f"busybox timeout 5 wget -q -O - http://169.254.169.254{path}")
            except AssertionError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name}: no answer from the metadata service for {path}: {exc}") from exc
            time.sleep(0.3)


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("net-gaps")
    config = write_config(tmp)
    # Scaled: c1 and c2 on whichever dev hosts (the isolated network's DHCP port and metadata on
    # each host carrying it), c3's floating IP on the L3 host.
    cloud = cumulo_launcher(driver="runc", args=["--config", str(config), "--no-external"], config=cumulo_config)
    w = World(cloud, secrets.token_hex(3))
    nets: list[str] = []
    left: list[str] = []
    try:
        net = w.make(("network",), f"iso-{w.tag}")
        sub = w.make(("subnet",), "--network", net["id"], "--subnet-range", CIDR, "--host-route",
                     f"destination={HOST_ROUTE[0]},gateway={HOST_ROUTE[1]}", f"iso-sub-{w.tag}")
        assert sub["enable_dhcp"] and sub["gateway_ip"] == "10.93.0.1"
        w.ids["iso"], nets = net["id"], [net["id"], w.osc("network", "show", "private")["id"]]
        svc = w.make(("security", "group"), f"svc-{w.tag}")
        w.ids["rule"] = w.osc("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                              "--dst-port", str(PORT), "--remote-ip", CIDR, svc["id"])["id"]
        w.boot("c1", "--network", net["id"], "--security-group", svc["id"])
        w.boot("c2", "--network", net["id"])
        w.boot("c3", "--network", "private")
        for name in ("c1", "c2", "c3"):
            w.ips[name] = _address(wait_status(cloud, w.ids[name], "ACTIVE", timeout=180))
        yield w
    finally:
        for uuid in w.servers:
            if server(cloud, uuid) is not None:
                cloud.osc_run("server", "delete", uuid, cloud=DEMO)
        for uuid in w.servers:
            with contextlib.suppress(AssertionError):
                wait_gone(cloud, uuid, timeout=60)
            left += leftovers(cloud, uuid)
        for argv in reversed(w.made):
            cloud.osc_run(*argv, cloud=DEMO)
        cloud.close()
    left += [n for n in map(netns.network_ns, nets) if netns.exists(n)]
    assert not left, left


def _address(shown: dict[str, Any]) -> str:
    """The server's one fixed address, whatever form the CLI gives `addresses` in."""
    addresses = shown["addresses"]
    if isinstance(addresses, str):  # "net=10.0.0.5"
        return addresses.split("=", 1)[1].split(",")[0].strip()
    first = next(iter(addresses.values()))[0]
    return str(first if isinstance(first, str) else first["addr"])


def test_metadata_on_a_network_without_a_router(world: World) -> None:
    w = world
    assert not w.osc("port", "list", "--network", w.ids["iso"], "--device-owner", "network:router_interface")
    for name in ("c1", "c2"):
        # Each host carrying the network has its DHCP port (device dhcp-<host>; one on the embedded
        # cloud), and its servers' metadata route goes through that one, answered on their own host.
        host = w.cloud.osc("server", "show", w.ids[name])["OS-EXT-SRV-ATTR:host"]
        [dhcp_port] = w.osc("port", "list", "--network", w.ids["iso"], "--device-owner", "network:dhcp",
                            "--device-id", f"dhcp-{host}", "--long")
        fixed = dhcp_port["Fixed IP Addresses"]
        dhcp_ip = fixed[0]["ip_address"] if isinstance(fixed, list) else fixed.split("ip_address='", 1)[1].split("'", 1)[0]
        routes = inside(w.cloud, w.ids[name], "ip route")
        assert f"169.254.169.254 via {dhcp_ip} dev eth0" in routes, routes
        assert f"{HOST_ROUTE[0]} via {HOST_ROUTE[1]} dev eth0" in routes, routes
        doc = json.loads(w.fetch(name, "/openstack/latest/meta_data.json"))
        assert doc["uuid"] == w.ids[name] and doc["name"] == name, doc
        net = json.loads(w.fetch(name, "/openstack/latest/network_data.json"))
        [entry] = net["networks"]
        assert entry["ip_address"] == w.ips[name]
        assert {"network": "169.254.169.254", "netmask": "255.255.255.255", "gateway": dhcp_ip} in entry["routes"]
        assert {"network": "192.168.77.0", "netmask": "255.255.255.0", "gateway": HOST_ROUTE[1]} in entry["routes"]


class Stream:
    """A TCP connection from c2 to c1:7000, made of sockets in the containers' namespaces."""

    def __init__(self, w: World) -> None:
        def listen() -> socket.socket:
            return socket.create_server(("0.0.0.0", PORT))  # noqa: S104 - inside c1's namespace

        def client() -> socket.socket:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

        self.listener = run_in_server_ns(w.cloud, w.ids["c1"], listen)
        try:
            self.client = run_in_server_ns(w.cloud, w.ids["c2"], client)
            try:
                self.client.settimeout(5)
                self.client.connect((w.ips["c1"], PORT))
                self.listener.settimeout(5)
                self.peer, _ = self.listener.accept()
            except BaseException:
                self.client.close()
                raise
        except BaseException:
            self.listener.close()
            raise
        self.peer.settimeout(1.5)
        self.sent = 0

    def passes(self) -> bool:
        """Whether a line c2 sends now reaches c1 (a dropped segment: nothing within 1.5 s)."""
        self.sent += 1
        line = f"line-{self.sent:06d}\n".encode()
        try:
            self.client.sendall(line)
            got = b""
            while len(got) < len(line):
                chunk = self.peer.recv(len(line) - len(got))
                if not chunk:
                    return False
                got += chunk
        except OSError:
            return False
        return got == line

    def close(self) -> None:
        for s in (self.client, self.peer, self.listener):
            s.close()


def test_removing_a_rule_stops_its_established_connection(world: World) -> None:
    w = world
    stream = wait_for(lambda: _stream_or_none(w), timeout=30, interval=0.5, what="c2 connects to c1:7000")
    try:
        for _ in range(3):
            assert stream.passes()
        w.osc("security", "group", "rule", "delete", w.ids["rule"], json=False)
        wait_for(lambda: not stream.passes(), timeout=20, interval=0.1,
                 what="the established connection stops after its rule's removal")
        assert not stream.passes()
        assert _stream_or_none(w) is None  # and no new one opens
    finally:
        stream.close()


def _stream_or_none(w: World) -> Stream | None:
    try:
        return Stream(w)
    except OSError:
        return None


def test_server_list_shows_a_floating_ip_set_through_neutron(world: World) -> None:
    w = world
    [port] = w.osc("port", "list", "--server", w.ids["c3"])
    fip = w.make(("floating", "ip"), "public")
    w.osc("floating", "ip", "set", "--port", port["ID"], fip["id"], json=False)
    address = fip["floating_ip_address"]

    def listed() -> Any:
        rows = w.osc("server", "list", "--name", "^c3$")
        return rows[0]["Networks"]

    networks = listed()  # the first read of the server since the association: a list, no show
    assert address in json.dumps(networks), networks
    shown = w.osc("server", "show", w.ids["c3"])["addresses"]
    assert address in json.dumps(shown) and w.ips["c3"] in json.dumps(shown)
    w.osc("floating", "ip", "unset", "--port", fip["id"], json=False)
    assert address not in json.dumps(listed())
