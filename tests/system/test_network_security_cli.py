"""Isolation and security groups with real packets between real containers (issue 10, acceptance
items 2 and 3, and "no tenant traffic reaches the host's own services").

One `cumulo up` for the module: its local host on the runc driver, the API bound on every address
of the host (as an operator runs it, so that the host's services are there to be reached), the
external link on with a /24 of the module's own. Driven with the real `openstack` CLI:

- the admin makes a second project and a user in it; that user makes a network with the SAME CIDR
  as the demo project's `private`, a router on it, and boots `b1` at the same address as the
  demo's `a1`. Each server reaches its own router (the neighbour it learns is its own router's
  MAC); the demo's `a2` asking for that address gets `a1`'s page, never `b1`'s, and `b1` finds
  nobody at `a2`'s address;
- `a1` and `a2` serve busybox httpd in the group `web`, whose only ingress rule lets TCP 80 in
  from `a2`'s address: `a2` gets `a1`'s page, `a1` cannot open `a2`'s (same group, other
  source); the same with a rule from the group `client` (`a2` is a member) instead. That rule's
  removal refuses new connections, and cuts those already open, within 1 s of the CLI's answer; port security off on `a1`'s
  port lifts its filtering and not `a2`'s; a packet `a2` sends from an address its port does not
  have never reaches `a1` (its ICMP counters), nor one from a MAC it does not have, while one
  from its own address does, and so does
  the first once the port allows that address (allowed_address_pairs); port security back on
  filters `a1` again;
- the host runs a listener of the test's on every address, beside the cloud's API: neither
  `a2` behind the router (nor `a1`, once it has a floating IP) nor `e1`, a server straight on
  `public`, can connect to either on the host's end of the link or the host's own address;
  the host reaches `a1` through its floating IP, `a2` reaches `e1` on `public`, and the metadata
  service answers (and serves no API path);
- private also has an IPv6 subnet: an IPv6 rule from `a2`'s address lets it into `a1`'s httpd,
  and `a2` sending from an IPv6 address its port does not have never reaches `a1`.

The servers are deleted at the end (nothing of theirs may remain on the host), and the cloud's
networks and routers leave no namespace behind once it is closed.

The module runs on the scaled-out cloud too (tests/system/cluster.py): the servers land on any of
its 3 dev hosts, `e1` included (each dev host maps the physical network of `public` to its `ex0`
on the cluster's external wire, netplane/physnet.py), so the security groups apply on other hosts
than the routers and the host link (the L3 host, in the root namespace as in `cumulo up`), and
`a2` reaches `e1` through a router and the wire. Its IPv6 test is the embedded cloud's only.

Inside the containers: busybox httpd, wget, nc and ping (`runc exec`). The 1 s measurement opens
plain TCP connections from `a2`'s network namespace (the same address and MAC on the wire), as
its attempts must be far shorter than busybox nc's 1 s connect timeout.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _ns_util import run_in_server_ns
from _runc_util import leftovers, runc, server, wait_for, wait_gone, wait_status, write_config
from conftest import free_external_cidr

from cumulo.netplane import external, netns

if TYPE_CHECKING:
    from conftest import CumuloCloud

cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)
DEMO = "cumulo-demo"
REFUSAL_DEADLINE = 1.0  # the acceptance's own number: a removed rule refuses within 1 s


def _host_addresses() -> list[str]:
    """The host's own global IPv4 addresses, but for Cumulo's host links (cxh...)."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=True).stdout
    return [str(a["local"]) for link in json.loads(out or "[]") if not str(link.get("ifname", "")).startswith("cxh")
            for a in link.get("addr_info", []) if a.get("local")]


class Listener:
    """A TCP service of the host's on every address, IPv4 and IPv6: says `text`, records who connected."""

    def __init__(self, text: str) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind(("::", 0))  # the point: a host service on every address
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.text = text.encode()
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.peers.append(str(peer[0]).removeprefix("::ffff:"))
            with contextlib.suppress(OSError), conn:
                conn.sendall(self.text)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def connects(address: str, port: int, timeout: float = 2.0) -> bool:
    """From the calling thread's namespace: does a TCP connection to address:port open?"""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


class World:
    def __init__(self, cloud: CumuloCloud, tag: str) -> None:
        self.cloud, self.tag = cloud, tag
        self.servers: list[str] = []
        self.b_auth: tuple[str, ...] = ()
        self.ids: dict[str, str] = {}
        self.ips: dict[str, str] = {}
        self.text: dict[str, str] = {}
        self.networks: list[str] = []
        self.routers: list[str] = []

    # -- the CLI as each user -------------------------------------------------------------------

    def osc(self, who: str, *args: str, **kw: Any) -> Any:
        if who == "b":
            return self.cloud.osc(*self.b_auth, *args, cloud="cumulo", **kw)
        return self.cloud.osc(*args, cloud={"admin": "cumulo", "demo": DEMO}[who], **kw)

    def osc_run(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cloud.osc_run(*args, cloud={"admin": "cumulo", "demo": DEMO}[who])

    def make(self, who: str, kind: tuple[str, ...], *args: str) -> dict[str, Any]:
        return dict(self.osc(who, *kind, "create", *args))

    def boot(self, who: str, name: str, *nic: str) -> str:
        made = self.osc(who, "server", "create", "--image", "busybox", "--flavor", "m1.tiny", *nic, name)
        self.servers.append(str(made["id"]))
        self.ids[name] = str(made["id"])
        return str(made["id"])

    # -- inside the containers -------------------------------------------------------------------

    def sh(self, name: str, script: str, *caps: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`sh -c script` in the container (with more capabilities, e.g. CAP_NET_ADMIN: what root in
        a VM has)."""
        extra = [arg for cap in caps for arg in ("--cap", cap)]
        return runc(self.cloud, "exec", *extra, f"cumulo-{self.ids[name]}", "/bin/sh", "-c", script, timeout=timeout)

    def serve(self, name: str) -> None:
        """busybox httpd on port 80 answering a page only this server has."""
        self.text[name] = f"page-of-{name}-{self.tag}"
        done = self.sh(name, f"mkdir -p /www && echo {self.text[name]} > /www/index.html && "
                             "busybox httpd -p 80 -h /www </dev/null >/dev/null 2>&1")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: self.text[name] in self.get(name, "127.0.0.1"), timeout=10, what=f"httpd in {name}")

    def get(self, name: str, address: str) -> str:
        """busybox wget of http://address/ from inside `name`: the page, or "" (3 s at most)."""
        done = self.sh(name, f"busybox timeout 3 wget -q -O - http://{address}/")
        return done.stdout if done.returncode == 0 else ""

    def tcp(self, name: str, address: str, port: int) -> bool:
        """From inside `name`: does a TCP service at address:port answer (busybox nc, 1 s to connect)?
        It is asked for `/` over HTTP/1.0, which every service here answers and then closes."""
        done = self.sh(name, f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox timeout 5 busybox nc -w 1 {address} {port}")
        return done.returncode == 0 or bool(done.stdout)

    def ping(self, name: str, address: str, source: str | None = None, count: int = 1) -> bool:
        src = f"-I {source} " if source else ""
        return self.sh(name, f"ping -c {count} -W 1 {src}{address}").returncode == 0

    def in_echos(self, name: str, version: int = 4) -> int:
        """ICMP echo requests the server's kernel received (its namespace's /proc/net/snmp{,6})."""
        if version == 6:
            counters = dict(line.split() for line in self.sh(name, "cat /proc/net/snmp6").stdout.splitlines()
                            if line.strip())
            return int(counters["Icmp6InEchos"])
        lines = [line.split() for line in self.sh(name, "cat /proc/net/snmp").stdout.splitlines()
                 if line.startswith("Icmp:")]
        head, values = lines[0], lines[1]
        return int(values[head.index("InEchos")])

    def neighbour_mac(self, name: str, address: str) -> str:
        out = self.sh(name, f"ip neigh show {address}").stdout.split()
        return out[out.index("lladdr") + 1].lower() if "lladdr" in out else ""


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("net-security")
    tag = secrets.token_hex(3)
    ext = free_external_cidr()
    config = write_config(tmp, {"external_cidr": ext})
    # The API on every address of the host, as an operator runs it (clients still use loopback).
    # Scaled: the servers on any of the 3 dev hosts (e1 too: each maps the physical network of
    # `public`), routers and the host link on the L3 host in the root namespace.
    cloud = cumulo_launcher(driver="runc", args=["--config", str(config), "--host", "0.0.0.0"],  # noqa: S104
                            config=cumulo_config)
    w = World(cloud, tag)
    w.ips["ext_gw"] = str(next(ipaddress.ip_network(ext).hosts()))
    left: list[str] = []
    try:
        _build(w)
        yield w
    finally:
        # The servers go; the API's records go with the cloud, and its network data plane with close().
        alive = [uuid for uuid in w.servers if server(cloud, uuid) is not None]
        if alive:
            w.osc_run("admin", "server", "delete", *alive)
        for uuid in w.servers:
            with contextlib.suppress(AssertionError):
                wait_gone(cloud, uuid, timeout=60)
            left += leftovers(cloud, uuid)
        cloud.close()
    # Nothing of the module's stays on the host: its servers, networks and routers.
    left += [n for n in (*map(netns.network_ns, w.networks), *map(netns.router_ns, w.routers)) if netns.exists(n)]
    assert not left, left


def _build(w: World) -> None:
    """Project B's side in a thread of its own, the demo's meanwhile; then every server up and serving."""
    private_sub = w.osc("demo", "subnet", "show", w.osc("demo", "network", "show", "private")["subnets"][0])
    hosts = list(ipaddress.ip_network(private_sub["cidr"]).hosts())
    w.ips["a1"] = w.ips["b1"] = str(hosts[39])  # the same address in both projects
    w.ips["a2"] = str(hosts[40])
    w.ips["gw"] = private_sub["gateway_ip"]
    failed: list[BaseException] = []

    def side_b() -> None:
        try:
            _build_b(w, private_sub)
        except BaseException as exc:  # handed to the main thread
            failed.append(exc)

    thread = threading.Thread(target=side_b)
    thread.start()
    try:
        _build_demo(w, private_sub)
    finally:
        thread.join()
    if failed:
        raise failed[0]
    for name in ("a1", "a2", "b1", "e1"):
        wait_status(w.cloud, w.ids[name], "ACTIVE", timeout=180)
    for name in ("a1", "a2", "b1", "e1"):
        w.serve(name)
    w.routers.append(w.osc("demo", "router", "show", "router1")["id"])


def _build_b(w: World, private_sub: dict[str, Any]) -> None:
    """Project B: a project, a member user, its own network on the demo's CIDR with a router, b1."""
    tag, cidr = w.tag, private_sub["cidr"]
    project = w.make("admin", ("project",), f"proj-b-{tag}")
    password = secrets.token_hex(16)  # a urlsafe one may start with "-", an option to the CLI
    user = w.make("admin", ("user",), "--project", project["id"], "--password", password, f"user-b-{tag}")
    w.osc("admin", "role", "add", "--user", user["id"], "--project", project["id"], "member", json=False)
    w.b_auth = ("--os-username", user["name"], "--os-password", password, "--os-project-name", project["name"],
                "--os-user-domain-name", "Default", "--os-project-domain-name", "Default")
    net_b = w.make("b", ("network",), f"net-b-{tag}")
    sub_b = w.make("b", ("subnet",), "--network", net_b["id"], "--subnet-range", cidr, f"sub-b-{tag}")
    router_b = w.make("b", ("router",), f"router-b-{tag}")
    w.osc("b", "router", "add", "subnet", router_b["id"], sub_b["id"], json=False)
    assert sub_b["cidr"] == cidr and sub_b["gateway_ip"] == private_sub["gateway_ip"]
    w.boot("b", "b1", "--nic", f"net-id={net_b['id']},v4-fixed-ip={w.ips['b1']}")
    w.ids["router_b"] = router_b["id"]
    w.networks.append(net_b["id"])
    w.routers.append(router_b["id"])


def _build_demo(w: World, private_sub: dict[str, Any]) -> None:
    tag = w.tag
    # The demo's group `web` (a1 and a2): only TCP 80 from a2's address comes in. a2 is in the
    # group `client` too.
    web = w.make("demo", ("security", "group"), f"web-{tag}")
    client = w.make("demo", ("security", "group"), f"client-{tag}")
    w.ids["web"], w.ids["client"] = web["id"], client["id"]
    w.ids["addr_rule"] = w.osc("demo", "security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                               "--dst-port", "80", "--remote-ip", f"{w.ips['a2']}/32", web["id"])["id"]
    # private gets an IPv6 subnet too (static addresses): a1 and a2 are dual-stack.
    v6 = w.make("demo", ("subnet",), "--network", "private", "--ip-version", "6", "--no-dhcp", "--subnet-range",
                f"fd00:{tag[:4]}::/64", f"v6-{tag}")
    for name, groups in (("a1", (web["id"],)), ("a2", (web["id"], client["id"]))):
        port = w.make("demo", ("port",), "--network", "private", "--fixed-ip",
                      f"subnet={private_sub['id']},ip-address={w.ips[name]}", "--fixed-ip", f"subnet={v6['id']}",
                      *(a for g in groups for a in ("--security-group", g)), f"{name}-{tag}")
        w.ids[f"{name}_mac"] = port["mac_address"]
        w.ips[f"{name}_6"] = next(f["ip_address"] for f in port["fixed_ips"] if ":" in f["ip_address"])
        w.ids[f"{name}_port"] = port["id"]
        w.boot("demo", name, "--port", port["id"])
    # e1, straight on the shared external network, its port open (what protects the host is the
    # host link's own filter)
    e_port = w.make("demo", ("port",), "--network", "public", "--disable-port-security", f"e1-{tag}")
    w.ips["e1"] = e_port["fixed_ips"][0]["ip_address"]
    w.boot("demo", "e1", "--port", e_port["id"])
    w.ids["public"] = e_port["network_id"]
    w.networks += [private_sub["network_id"], e_port["network_id"]]


def test_same_cidr_in_two_projects_stays_apart(world: World) -> None:
    w = world
    assert w.ips["a1"] == w.ips["b1"]
    # Each network works: its server reaches its own router, whose MAC it learns.
    router1 = w.osc("demo", "router", "show", "router1")["id"]
    mac_a = w.osc("demo", "port", "list", "--router", router1, "--device-owner", "network:router_interface",
                  "--long")[0]["MAC Address"]
    mac_b = w.osc("b", "port", "list", "--router", w.ids["router_b"], "--device-owner", "network:router_interface",
                  "--long")[0]["MAC Address"]
    assert mac_a != mac_b
    for name, mac in (("a2", mac_a), ("b1", mac_b)):
        wait_for(functools.partial(w.ping, name, w.ips["gw"]), timeout=30, what=f"{name} pings its gateway")
        assert w.neighbour_mac(name, w.ips["gw"]) == mac.lower(), f"{name} learnt another router's MAC"
    # a2 and a1 talk (the group lets a2's address in); the shared address is a1's, never b1's.
    for _ in range(3):
        page = wait_for(lambda: w.get("a2", w.ips["a1"]), timeout=30, what="a2 fetches a1's page")
        assert w.text["a1"] in page and w.text["b1"] not in page
    # b1 finds nobody at a2's address (no such port on its network), nor anything of a1's.
    assert w.get("b1", w.ips["b1"]).strip() == w.text["b1"]
    assert not w.ping("b1", w.ips["a2"], count=2)
    # The shared address is a1's MAC for a2; b1 gets no ARP answer for a2's address.
    assert w.neighbour_mac("a2", w.ips["a1"]) == w.ids["a1_mac"].lower()
    assert w.neighbour_mac("b1", w.ips["a2"]) == ""


def _attempts_until_refused(w: World, address: str, t0: float) -> tuple[float, list[tuple[float, bool]]]:
    """From a2's network namespace: fresh TCP connections to address:80 (0.3 s each) until three in a
    row fail; the time (from t0) the first of those started, and every attempt."""
    seen: list[tuple[float, bool]] = []

    def probe() -> float:
        fails = 0
        first = 0.0
        while time.monotonic() - t0 < REFUSAL_DEADLINE + 3.0:
            start = time.monotonic() - t0
            ok = connects(address, 80, timeout=0.3)
            seen.append((start, ok))
            if ok:
                fails = 0
                time.sleep(0.02)
                continue
            first = start if fails == 0 else first
            fails += 1
            if fails == 3:
                return first
        return float("inf")

    return run_in_server_ns(w.cloud, w.ids["a2"], probe), seen


def _answers(conn: socket.socket, timeout: float) -> bool:
    """Does httpd answer a request sent on an open connection within `timeout`?"""
    try:
        conn.settimeout(timeout)
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return bool(conn.recv(64))
    except OSError:
        return False


def _first_cut(flows: list[socket.socket], t0: float) -> float:
    """Request a page on one open flow after another (0.3 s each) until one gets no answer; the
    time (from t0) that attempt started."""
    for conn in flows:
        start = time.monotonic() - t0
        if not _answers(conn, 0.3):
            return start
    return float("inf")


def test_security_group_rules_port_security_and_spoofing(world: World) -> None:
    w = world
    a1, a2 = w.ips["a1"], w.ips["a2"]
    # The address rule lets a2 in; a1, in the same group but at another address, is not let into
    # a2 (which is there: a1 learns its MAC, and its httpd answers).
    assert w.text["a1"] in wait_for(lambda: w.get("a2", a1), timeout=30, what="a2 fetches a1's page")
    assert w.text["a2"] in w.get("a2", "127.0.0.1")
    assert w.tcp("a2", a1, 80) and not w.tcp("a1", a2, 80)
    assert w.neighbour_mac("a1", a2) == w.ids["a2_mac"].lower()
    # A rule from the group `client` instead of the address: a2 (a member) still gets in, a1 does not.
    group_rule = w.osc("demo", "security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                       "--dst-port", "80", "--remote-group", w.ids["client"], w.ids["web"])["id"]
    w.osc("demo", "security", "group", "rule", "delete", w.ids["addr_rule"], json=False)
    assert w.text["a1"] in wait_for(lambda: w.get("a2", a1), timeout=10, what="a2 let in by its group")
    assert not w.tcp("a1", a2, 80)
    # The group's members are what the rule matches: a1 joining `client` gets into a2, leaving it
    # does not (Nova's server add/remove security group change the server's ports).
    w.osc("demo", "server", "add", "security", "group", w.ids["a1"], w.ids["client"], json=False)
    assert w.text["a2"] in wait_for(lambda: w.get("a1", a2), timeout=10, what="a1 let in once a member")
    w.osc("demo", "server", "remove", "security", "group", w.ids["a1"], w.ids["client"], json=False)
    wait_for(lambda: not w.tcp("a1", a2, 80), timeout=10, what="a1 refused once it left the group")
    # The probe used below connects while the rule is there; connections a2 opened before the
    # removal (sockets made in its namespace) are answered on.
    assert run_in_server_ns(w.cloud, w.ids["a2"], lambda: connects(a1, 80, timeout=0.3)), \
        "a2's namespace cannot reach a1:80"
    flows = run_in_server_ns(w.cloud, w.ids["a2"],
                             lambda: [socket.create_connection((a1, 80), timeout=5) for _ in range(6)])
    try:
        assert _answers(flows.pop(), 5.0), "an open connection to a1 gets no answer while the rule is there"

        w.osc("demo", "security", "group", "rule", "delete", group_rule, json=False)
        t0 = time.monotonic()
        # Both the flows already open and new connections are refused within the second.
        cut_at = _first_cut(flows, t0)
        refused_at, attempts = _attempts_until_refused(w, a1, t0)
    finally:
        for conn in flows:
            conn.close()
    print(f"rule removal: open flows cut {cut_at:.3f} s, new connections refused {refused_at:.3f} s after the CLI "
          f"returned ({len(attempts)} attempts: {[(round(s, 3), ok) for s, ok in attempts][:12]})")
    assert cut_at <= REFUSAL_DEADLINE, f"open flows still answered {cut_at:.2f} s after the rule went"
    assert refused_at <= REFUSAL_DEADLINE, f"still let in {refused_at:.2f} s after the rule went: {attempts}"
    assert not w.tcp("a2", a1, 80)

    # Port security off on a1's port: nothing filters a1 any more; a2, in the same group, stays filtered.
    w.osc("demo", "port", "set", "--disable-port-security", "--no-security-group", w.ids["a1_port"], json=False)
    shown = w.osc("demo", "port", "show", w.ids["a1_port"])
    assert shown["port_security_enabled"] is False and shown["security_group_ids"] == []
    assert w.text["a1"] in wait_for(lambda: w.get("a2", a1), timeout=20, what="a1 open to a2 without any rule")
    assert not w.tcp("a1", a2, 80)
    assert not w.ping("a1", a2)

    # Spoofing: a2 takes a second address its port does not have; what it sends from there never
    # reaches a1 (unfiltered now, so only a2's anti-spoofing can stop it), from its own address it does.
    spoofed = str(ipaddress.ip_network(w.osc("demo", "subnet", "show", w.osc(
        "demo", "port", "show", w.ids["a2_port"])["fixed_ips"][0]["subnet_id"])["cidr"]).network_address + 50)
    prefix = ipaddress.ip_network(f"{a2}/26", strict=False).prefixlen
    added = w.sh("a2", f"ip addr add {spoofed}/{prefix} dev eth0", "CAP_NET_ADMIN")
    assert added.returncode == 0, added.stderr
    try:
        assert w.ping("a2", a1)  # a1's MAC fresh in a2's neighbour table
        before = w.in_echos("a1")
        assert not w.ping("a2", a1, source=spoofed, count=3)
        assert w.ping("a2", a1, source=a2)
        after = w.in_echos("a1")
        assert after - before == 1, f"a1 received {after - before} echo requests; only the real one may arrive"
        # Frames from a MAC the port does not have never arrive either, from its own address.
        changed = w.sh("a2", "ip link set dev eth0 address fa:16:3e:5f:00:0d", "CAP_NET_ADMIN")
        assert changed.returncode == 0, changed.stderr
        try:
            assert not w.ping("a2", a1, count=2)
        finally:
            w.sh("a2", f"ip link set dev eth0 address {w.ids['a2_mac']}", "CAP_NET_ADMIN")
        assert w.in_echos("a1") == after, "a frame from a foreign MAC reached a1"
        wait_for(lambda: w.ping("a2", a1), timeout=10, what="a2 through again with its own MAC")
        # The same packets pass once the port allows the address (allowed_address_pairs).
        w.osc("demo", "port", "set", "--allowed-address", f"ip-address={spoofed}", w.ids["a2_port"], json=False)
        wait_for(lambda: w.ping("a2", a1, source=spoofed), timeout=20, what="the allowed address pair passes")
        w.osc("demo", "port", "set", "--no-allowed-address", w.ids["a2_port"], json=False)
        wait_for(lambda: not w.ping("a2", a1, source=spoofed), timeout=20, what="the pair's removal")
    finally:
        w.sh("a2", f"ip addr del {spoofed}/{prefix} dev eth0", "CAP_NET_ADMIN")

    # Port security back on, in `web` (no rule lets anyone in now): a1 is filtered again.
    w.osc("demo", "port", "set", "--enable-port-security", "--security-group", w.ids["web"], w.ids["a1_port"],
          json=False)
    wait_for(lambda: not w.tcp("a2", a1, 80), timeout=20, what="a1 filtered again")


def test_no_tenant_traffic_reaches_the_host(world: World) -> None:
    w = world
    listener = Listener(f"host-{w.tag}")
    try:
        link = w.ips["ext_gw"]
        api = w.cloud.port
        targets = [(addr, port) for addr in (link, *_host_addresses()) for port in (listener.port, api)]
        # the host's end of the link has an IPv6 link-local address too, on-link for e1
        hdev = external.host_device(w.ids["public"])
        shown = subprocess.run(["ip", "-j", "-6", "addr", "show", "dev", hdev, "scope", "link"],  # noqa: S603
                               capture_output=True, text=True, check=True).stdout
        local6 = json.loads(shown)[0]["addr_info"][0]["local"]
        # From the host itself, each of these answers.
        for addr, port in [*targets, (f"{local6}%{hdev}", listener.port)]:
            assert connects(addr, port), f"the host's own {addr}:{port} does not answer the host"
        wait_for(lambda: len(listener.peers) == len(targets) // 2 + 1, timeout=10, what="the listener's own callers")
        listener.peers.clear()
        # The floating IP path: the host reaches a1's httpd (web lets the external subnet in), the
        # one way across the link.
        w.osc("demo", "security", "group", "rule", "create", "--ingress", "--protocol", "tcp", "--dst-port", "80",
              "--remote-ip", str(ipaddress.ip_interface(f"{link}/24").network), w.ids["web"])
        fip = w.make("demo", ("floating", "ip"), "public")
        w.osc("demo", "floating", "ip", "set", "--port", w.ids["a1_port"], fip["id"], json=False)
        page = wait_for(lambda: _host_get(fip["floating_ip_address"]), timeout=20, what="a1 through its floating IP")
        assert w.text["a1"] in page
        # The router carries a2 to a server on the external network...
        assert w.text["e1"] in wait_for(lambda: w.get("a2", w.ips["e1"]), timeout=20, what="a2 reaches e1")
        assert w.ping("e1", link)  # ... and e1 is on-link with the host (ICMP is let in)
        # ... but no server opens a connection to the host: not through a router (a2; a1 with its
        # floating IP), not from the external network itself (e1).
        for name in ("a2", "a1", "e1"):
            for addr, port in targets:
                assert not w.tcp(name, addr, port), f"{name} connected to the host's {addr}:{port}"
        assert w.ping("e1", f"{local6}%eth0")
        assert not w.tcp("e1", f"{local6}%eth0", listener.port), "e1 connected to the host over IPv6"
        assert listener.peers == [], f"the host's listener saw {listener.peers}"
        # The metadata service answers, and only with the asker's own data.
        meta = json.loads(wait_for(lambda: w.sh("a2", "busybox timeout 5 wget -q -O - "
                                                      "http://169.254.169.254/openstack/latest/meta_data.json").stdout,
                                   timeout=20, what="the metadata service"))
        assert meta["uuid"] == w.ids["a2"]
        # ... and it is the metadata service only, not a way into the cloud's API.
        api_path = w.sh("a2", "busybox timeout 5 wget -q -O - http://169.254.169.254/identity/v3")
        assert api_path.returncode != 0 and "version" not in api_path.stdout
    finally:
        listener.close()


def _host_get(address: str) -> str:
    try:
        with socket.create_connection((address, 80), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.settimeout(2)
            chunks = []
            while data := s.recv(4096):
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.configs("embedded", reason="the scaled variant keeps to IPv4's rules, anti-spoofing and host isolation "
                     "across hosts (the same nft tables on the server's own host; ~30 s saved)")
def test_ipv6_rules_and_anti_spoofing(world: World) -> None:
    """The same on private's IPv6 subnet: an IPv6 rule from a2's address lets it into a1's httpd
    (a1 not into a2's), ICMPv6 from anywhere lets pings in, and a2 sending from an address its port
    does not have never reaches a1 while its own address does."""
    w = world
    a1, a2 = w.ips["a1_6"], w.ips["a2_6"]
    w.osc("demo", "port", "set", "--enable-port-security", "--security-group", w.ids["web"], w.ids["a1_port"],
          json=False)
    rules: list[str] = []

    def rule(*args: str) -> str:
        made = w.osc("demo", "security", "group", "rule", "create", "--ingress", "--ethertype", "IPv6", *args,
                     w.ids["web"])
        rules.append(str(made["id"]))
        return str(made["id"])

    spoofed = str(ipaddress.ip_address(a2) + 0x5000)
    try:
        assert not w.tcp("a2", a1, 80)
        http = rule("--protocol", "tcp", "--dst-port", "80", "--remote-ip", f"{a2}/128")
        page = wait_for(lambda: w.get("a2", f"[{a1}]"), timeout=20, what="a2 fetches a1's page over IPv6")
        assert w.text["a1"] in page
        assert not w.tcp("a1", a2, 80)
        rule("--protocol", "ipv6-icmp")
        wait_for(lambda: w.ping("a2", a1), timeout=20, what="a2 pings a1 over IPv6")
        added = w.sh("a2", f"ip addr add {spoofed}/64 dev eth0", "CAP_NET_ADMIN")
        assert added.returncode == 0, added.stderr
        wait_for(lambda: "tentative" not in w.sh("a2", "ip addr show dev eth0").stdout, timeout=10,
                 what="the spoofed address past DAD")
        # (the kernel now prefers the newer address as a source: the real one is named)
        assert w.ping("a2", a1, source=a2)
        before = w.in_echos("a1", 6)
        assert not w.ping("a2", a1, source=spoofed, count=3)
        assert w.ping("a2", a1, source=a2)
        assert w.in_echos("a1", 6) - before == 1, "a spoofed IPv6 source reached a1"
        w.osc("demo", "security", "group", "rule", "delete", http, json=False)
        rules.remove(http)
        wait_for(lambda: not w.tcp("a2", a1, 80), timeout=10, what="the IPv6 rule's removal")
    finally:
        w.sh("a2", f"ip addr del {spoofed}/64 dev eth0", "CAP_NET_ADMIN")
        for r in rules:
            w.osc_run("demo", "security", "group", "rule", "delete", r)
