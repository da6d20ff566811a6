"""Floating IPs, SNAT and a kill -9 restart with real servers (issue 10, acceptance items 4 and 6).

One `cumulo up` on the runc driver with its own external link: `public` on a random free
172.24.X.0/24 (setting `external_cidr`, never DevStack's 172.24.4.0/24, so it never clashes with
another cloud on the host). The demo user boots two busybox containers on `private` (router1 to
public, SNAT on), each running busybox `httpd` with a page naming its server.

- Acceptance 4: from the host (urllib in this process) http://<floating ip>/ returns server A's
  page while the floating IP is associated (`openstack floating ip set --port`), and stops
  answering after `openstack floating ip unset --port`. Through router1's SNAT server A reaches a
  listener the test plugs on the external network (a namespace holding a public port's address),
  which sees the router's external gateway address as the source.
- Acceptance 6: while A and B ping each other (busybox ping every 0.2 s inside the containers), A
  pings the external listener through router1's SNAT and the host fetches A's page through its
  floating IP in a loop, `cumulo up` is killed with SIGKILL,
  orphans a crash leaves are planted (a network namespace with a running dnsmasq and a host veth,
  a router namespace with its NAT table, both recorded in this cloud's ownership entry as a crash
  leaves them; a stray nft table and a stray tap on private's bridge), and the cloud is started
  again. The check: every fetch got A's page; each ping lost at most 2 echoes over the
  whole run (the kernel carries the packets and a restart only ensures, so the expected loss is
  0; 2 echoes, 0.4 s, leave room for a loaded 2-core host); before/after snapshots of this
  cloud's namespaces (same inodes), their nftables rulesets (counters aside), links and
  addresses (same ifindex), the host link, the dnsmasq processes (one per DHCP network, same
  pid), the ports and the containers (same pid, same links) are equal; the planted orphans are
  gone; the metadata service answers A again (its listening socket died with the process).
"""

from __future__ import annotations

import asyncio
import difflib
import ipaddress
import json
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import launch_runc, runc, runc_state, server, wait_for, wait_gone, wait_status
from conftest import free_external_cidr

from cumulo.netplane import bridge, dhcp, external, netns
from cumulo.network.agent import plumbing

if TYPE_CHECKING:
    from conftest import CumuloCloud

DEMO = "cumulo-demo"
NETNS = Path("/run/netns")
PING_INTERVAL = 0.2
LOSS_BUDGET = 2  # echoes per ping over the whole kill and restart (see the module's docstring)
LISTENER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=check)  # noqa: S603


def fetch(url: str, ns: str | None = None, timeout: float = 2.0) -> str | None:
    """GET url from this process (ns None) or from the namespace ns; the body, or None."""
    if ns is None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the test's own address
                return str(resp.read().decode())
        except OSError:
            return None
    code = f"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen({url!r}, timeout={timeout}).read().decode())"
    res = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],  # noqa: S603
                         capture_output=True, text=True, timeout=timeout + 10)
    return res.stdout if res.returncode == 0 else None


class World:
    def __init__(self, cloud: CumuloCloud, tag: str) -> None:
        self.cloud, self.tag = cloud, tag
        self.servers: dict[str, dict[str, Any]] = {}
        self.cleanups: list[Callable[[], Any]] = []
        self.ids: dict[str, str] = {}

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, cloud=DEMO, **kw)

    def inside(self, name: str, script: str, check: bool = True) -> str:
        done = runc(self.cloud, "exec", f"cumulo-{self.servers[name]['id']}", "/bin/sh", "-c", script)
        assert not check or done.returncode == 0, f"{script!r} in {name}: {done.returncode} {done.stderr}{done.stdout}"
        return done.stdout

    def ip(self, name: str) -> str:
        return str(self.servers[name]["addresses"]["private"][0]["addr"])

    def page(self, name: str) -> str:
        return f"page of {self.servers[name]['id']}\n"

    def port(self, name: str) -> str:
        [port] = self.osc("port", "list", "--server", self.servers[name]["id"])
        return str(port["ID"])


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cloud = launch_runc(cumulo_launcher, tmp_path_factory.mktemp("net-restart"),
                        settings={"external_cidr": free_external_cidr()})
    w = World(cloud, secrets.token_hex(3))
    try:
        w.ids = {"public": w.cloud.osc("network", "show", "public")["id"],
                 "private": w.osc("network", "show", "private")["id"],
                 "router": w.osc("router", "show", "router1")["id"]}
        sdk = cloud.connect(DEMO)
        w.cleanups.append(sdk.close)
        group = sdk.network.create_security_group(name=f"web-{w.tag}")
        w.cleanups.append(lambda: sdk.network.delete_security_group(group.id, ignore_missing=True))
        for proto, port in (("tcp", 80), ("icmp", None)):
            sdk.network.create_security_group_rule(security_group_id=group.id, direction="ingress", ethertype="IPv4",
                                                   protocol=proto, port_range_min=port, port_range_max=port)
        image = sdk.image.find_image("busybox")
        for name in ("a", "b"):
            made = sdk.compute.create_server(name=f"rs-{name}-{w.tag}", image_id=image.id, flavor_id="1",
                                             networks=[{"uuid": w.ids["private"]}],
                                             security_groups=[{"name": "default"}, {"name": group.name}])
            w.servers[name] = {"id": made.id}
        for name, s in w.servers.items():
            w.servers[name] = wait_status(cloud, s["id"], "ACTIVE", timeout=120)
        for name in w.servers:
            # busybox httpd daemonizes (stdio on /dev/null): runc exec returns at once
            w.inside(name, f"mkdir -p /tmp/www && echo 'page of {w.servers[name]['id']}' > /tmp/www/index.html"
                           " && httpd -p 80 -h /tmp/www")
        yield w
    finally:
        if not cloud.running:  # a test failed between the kill and the restart
            cloud.start()
        for s in w.servers.values():
            cloud.osc_run("server", "delete", s["id"])
        for s in w.servers.values():
            try:
                wait_gone(cloud, s["id"], timeout=60)
            except AssertionError as exc:
                print(exc)
        for fn in reversed(w.cleanups):  # the floating IP, the security group (no server uses it now)
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                print(f"cleanup: {exc!r}")
        cloud.close()


@pytest.fixture(scope="module")
def fip(world: World) -> dict[str, Any]:
    made: dict[str, Any] = world.osc("floating", "ip", "create", "public")
    world.cleanups.append(lambda: world.cloud.osc_run("floating", "ip", "delete", made["id"], cloud=DEMO))
    return made


@pytest.fixture(scope="module")
def listener(world: World) -> Iterator[dict[str, str]]:
    """A namespace on the external network holding a public port's address (the test's own device
    on public's bridge, not named tap..., which the agent leaves alone) and an HTTP listener that
    answers with the client's address."""
    port = world.cloud.osc("port", "create", "--network", "public", "--disable-port-security", f"rsx-{world.tag}")
    ns, dev = f"rsx-{world.tag}", f"rsx{world.tag}"
    address = port["fixed_ips"][0]["ip_address"]
    prefix = ipaddress.ip_network(world.cloud.osc("subnet", "show", "public-subnet")["cidr"]).prefixlen
    public_ns = netns.network_ns(world.ids["public"])
    proc: subprocess.Popen[bytes] | None = None
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", public_ns, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", public_ns, "link", "set", dev, "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "address", port["mac_address"], "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
        # nsenter: the network namespace only (`ip netns exec` would pin every host mount, see dhcp.py)
        proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", LISTENER, address, "8000"],  # noqa: S603
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: fetch(f"http://{address}:8000/", ns) is not None, timeout=20, what="the external listener")
        yield {"address": address, "ns": ns}
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
        sh("ip", "netns", "delete", ns, check=False)  # the veth goes with it
        world.cloud.osc_run("port", "delete", port["id"])


# ---- acceptance 4 -------------------------------------------------------------------------------


def test_floating_ip_reaches_the_container_httpd_from_the_host(world: World, fip: dict[str, Any]) -> None:
    url = f"http://{fip['floating_ip_address']}/"
    assert fetch(url, timeout=1) is None  # not associated: nothing answers
    world.osc("floating", "ip", "set", "--port", world.port("a"), fip["id"], json=False)
    assert wait_for(lambda: fetch(url, timeout=1), timeout=30, what=f"{url} answering") == world.page("a")
    world.osc("floating", "ip", "unset", "--port", fip["id"], json=False)
    wait_for(lambda: fetch(url, timeout=1) is None, timeout=30, what=f"{url} to stop answering")
    # the server itself still serves (only the floating IP went)
    assert world.inside("b", f"timeout 5 wget -q -O - http://{world.ip('a')}/") == world.page("a")


def test_snat_reaches_a_listener_on_the_external_network(world: World, listener: dict[str, str]) -> None:
    router = world.osc("router", "show", "router1")
    gateway = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    url = f"http://{listener['address']}:8000/"
    seen = wait_for(lambda: world.inside("a", f"timeout 5 wget -q -O - {url}", check=False), timeout=30,
                    what="a fetch from server A through SNAT")
    assert seen == gateway, f"the listener saw {seen!r}, not the router's gateway {gateway}"
    assert seen != world.ip("a")


# ---- acceptance 6 -------------------------------------------------------------------------------


def _pid_of_dnsmasq(network_id: str) -> list[int]:
    """Every dnsmasq process serving the network (by its pid file's path in the command line)."""
    marker = f"--pid-file={dhcp.Paths.of(dhcp.RUN_DIR, network_id).pid}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"dnsmasq" in cmd.split(b"\0")[0] and marker in cmd.split(b"\0"):
                out.append(int(entry.name))
    return sorted(out)


def _links(ns: str | None, dev: str | None = None) -> list[tuple[Any, ...]]:
    argv = ["ip", *(("-n", ns) if ns else ()), "-j", "addr", "show", *(("dev", dev) if dev else ())]
    out = []
    for link in json.loads(sh(*argv).stdout or "[]"):
        addrs = sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []))
        out.append((link["ifname"], link["ifindex"], link.get("master"), link.get("address"), tuple(addrs)))
    return sorted(out)


COUNTERS = re.compile(r"(packets|bytes) \d+")


def ruleset(ns: str) -> str:
    """`nft list ruleset` of the namespace, counters aside, its tables and each table's chains and
    sets in name order, elements sorted (see `_elements`): a table replaced whole in one transaction (as the agent and the metadata
    service do at a restart) lists last and its chains in the order of that script, not in the
    order in-place changes made them. The rules of each chain stay in their (meaningful) order."""
    text = COUNTERS.sub(r"\1 N", sh("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout)
    tables: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("table "):
            tables.append((line, []))
        elif tables and line.startswith("\t") and not line.startswith("\t\t") and line.strip() != "}":
            tables[-1][1].append(line)  # a chain's or a set's first line
        elif tables and line.strip() and line != "}":
            tables[-1][1][-1] += "\n" + line
    return "\n".join(f"{head}\n" + "\n".join(sorted(ELEMENTS.sub(_elements, b) for b in blocks))
                     for head, blocks in sorted(tables))


ELEMENTS = re.compile(r"elements = \{([^}]*)\}")
MARK = re.compile(r"0x[0-9a-f]+")


def _elements(match: re.Match[str]) -> str:
    """A set's or map's elements in sorted order, packet marks as M: a table written whole numbers
    its ports' marks in plan order, in-place changes in plug order (a mark only carries a port's
    verdict from one hook to the next within one packet's traversal)."""
    items = sorted(MARK.sub("M", item.strip()) for item in match.group(1).split(","))
    return "elements = { " + ", ".join(items) + " }"


def snapshot(world: World) -> dict[str, Any]:
    """What this cloud has on the host: its namespaces (inode), their rulesets and links, the host
    link, its dnsmasq processes, its ports and its containers."""
    ours = {world.ids["public"], world.ids["private"], world.ids["router"]}
    names = sorted(n.name for n in NETNS.iterdir() if n.name.startswith(("cnet-", "crtr-")) and n.name[5:] in ours)
    snap: dict[str, Any] = {"netns": {n: (NETNS / n).stat().st_ino for n in names}}
    for n in names:
        snap[f"nft {n}"] = ruleset(n)
        snap[f"links {n}"] = _links(n)
    snap["host link"] = _links(None, external.host_device(world.ids["public"]))
    snap["dnsmasq"] = {k: _pid_of_dnsmasq(world.ids[k]) for k in ("public", "private")}
    with world.cloud.client("cumulo") as c:
        snap["ports"] = sorted((p["id"], p["device_owner"], p["binding:host_id"])
                               for p in c.get("/networking/v2.0/ports").json()["ports"])
    snap["containers"] = {k: (runc_state(world.cloud, s["id"]) or {}).get("pid") for k, s in world.servers.items()}
    snap["container links"] = {k: _links(f"cumulo-{s['id']}") for k, s in world.servers.items()}
    return snap


class Prober:
    """The host fetching a URL in a loop; (monotonic time, body or None) per fetch."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.results.append((time.monotonic(), fetch(self.url, timeout=3)))
            self._stop.wait(0.1)

    def since(self, t: float) -> list[str | None]:
        return [body for when, body in list(self.results) if when >= t]

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _seqs(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"seq=(\d+) ", log)]


def _plant_orphans(world: World) -> dict[str, Any]:
    """What a crash leaves: a network this cloud had (its namespace, bridge, running dnsmasq and
    host veth) and a router (its namespace and NAT table), both in this cloud's ownership entry
    but no longer in its DB; a stray nft table and a stray tap on private's bridge. And a network
    namespace nobody recorded (another tool's), which the restart must leave alone."""
    net, rtr = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    net_ns, rtr_ns, private_ns = netns.network_ns(net), netns.router_ns(rtr), netns.network_ns(world.ids["private"])
    host_dev, tap = external.host_device(net), netns.port_device(str(uuidlib.uuid4()))
    table = f"cumulo_stray{world.tag}"
    subnet = dhcp.Subnet(id=str(uuidlib.uuid4()), cidr="10.213.0.0/24", gateway_ip="10.213.0.1")
    iface = dhcp.Interface(port_id=str(uuidlib.uuid4()), mac="fa:16:3e:00:21:3d", addresses=("10.213.0.2/24",))

    async def dataplane() -> int:
        await bridge.ensure(net_ns)
        return await dhcp.ensure(dhcp.RUN_DIR, net_ns, dhcp.Config(network_id=net, subnets=(subnet,)), iface)

    pid = asyncio.run(dataplane())
    sh("ip", "link", "add", host_dev, "type", "veth", "peer", "name", external.ns_device(net), "netns", net_ns)
    sh("ip", "netns", "add", rtr_ns)
    sh("ip", "netns", "exec", rtr_ns, "nft", "add", "table", "ip", "cumulo_nat")
    sh("ip", "netns", "exec", private_ns, "nft", "add", "table", "inet", table)
    sh("ip", "-n", private_ns, "link", "add", tap, "type", "veth", "peer", "name", f"rsv{world.tag}")
    sh("ip", "-n", private_ns, "link", "set", tap, "master", "br0", "up")
    foreign_ns = netns.network_ns(str(uuidlib.uuid4()))  # nobody recorded it (another tool's): it stays
    sh("ip", "netns", "add", foreign_ns)
    entry = plumbing.entry_path(str(world.cloud.state_dir.resolve()))
    data = json.loads(entry.read_text())
    data["ids"] = sorted({*data["ids"], net, rtr})
    entry.write_text(json.dumps(data))
    return {"net": net, "rtr": rtr, "net_ns": net_ns, "rtr_ns": rtr_ns, "host_dev": host_dev, "tap": tap,
            "table": table, "dnsmasq": pid, "private_ns": private_ns, "entry": entry, "foreign_ns": foreign_ns}


def _remove_orphans(o: dict[str, Any]) -> None:
    asyncio.run(dhcp.stop(dhcp.RUN_DIR, o["net"]))
    for ns in (o["net_ns"], o["rtr_ns"], o["foreign_ns"]):
        sh("ip", "netns", "delete", ns, check=False)
    sh("ip", "link", "del", "dev", o["host_dev"], check=False)
    sh("ip", "-n", o["private_ns"], "link", "del", "dev", o["tap"], check=False)
    sh("ip", "netns", "exec", o["private_ns"], "nft", "delete", "table", "inet", o["table"], check=False)


def test_kill_9_and_restart_keep_traffic_duplicate_nothing_and_reap_orphans(world: World, fip: dict[str, Any],
                                                                             listener: dict[str, str]) -> None:
    cloud = world.cloud
    world.osc("floating", "ip", "set", "--port", world.port("a"), fip["id"], json=False)
    url = f"http://{fip['floating_ip_address']}/"
    assert wait_for(lambda: fetch(url, timeout=1), timeout=30, what=f"{url} answering") == world.page("a")
    # (server, target): A and B ping each other on private; A pings the external listener through
    # router1's SNAT (conntrack'd NAT in the router's namespace)
    logs = {"a -> b": ("a", world.ip("b")), "b -> a": ("b", world.ip("a")), "a -> external": ("a", listener["address"])}
    for n, (name, target) in logs.items():
        key = n.replace(" -> ", "-")
        world.inside(name, f"ping -i {PING_INTERVAL} {target} </dev/null >/tmp/{key}.log 2>&1 & echo $! >/tmp/{key}.pid")

    def replies(n: str) -> list[int]:
        return _seqs(world.inside(logs[n][0], f"cat /tmp/{n.replace(' -> ', '-')}.log"))

    def advanced(by: int, since: dict[str, int]) -> bool:
        return all(len(replies(n)) >= since[n] + by for n in logs)

    orphans: dict[str, Any] = {}
    try:
        try:
            wait_for(lambda: advanced(5, dict.fromkeys(logs, 0)), timeout=30, what="the servers pinging")
            with Prober(url) as prober:
                wait_for(lambda: len(prober.since(0)) >= 3, timeout=30, what="fetches before the kill")
                before = snapshot(world)
                # one namespace per network and router; one dnsmasq on private (public serves no DHCP)
                assert len(before["netns"]) == 3 and len(before["dnsmasq"]["private"]) == 1, before
                assert len(before["dnsmasq"]["public"]) <= 1, before
                at_kill = {n: len(replies(n)) for n in logs}
                t_kill = time.monotonic()
                cloud.kill()
                orphans = _plant_orphans(world)
                # traffic flows while nothing of Cumulo runs
                wait_for(lambda: advanced(5, at_kill) and len(prober.since(t_kill)) >= 3, timeout=30,
                         what="pings and fetches while the cloud is down")
                cloud.start()
                t_ready = time.monotonic()
                at_ready = {n: len(replies(n)) for n in logs}
                wait_for(lambda: advanced(10, at_ready) and len(prober.since(t_ready)) >= 3, timeout=60,
                         what="pings and fetches after the restart")
            after = snapshot(world)
        finally:
            for n, (name, _) in logs.items():
                world.inside(name, f"kill $(cat /tmp/{n.replace(' -> ', '-')}.pid)", check=False)

        # traffic: every fetch through the floating IP answered with A's page, and at most LOSS_BUDGET
        # echoes lost per ping from the first reply to the last
        bodies = prober.since(0)
        assert bodies.count(world.page("a")) == len(bodies), f"{len(bodies) - bodies.count(world.page('a'))} of " \
                                                             f"{len(bodies)} fetches failed: {set(bodies)}"
        for n in logs:
            seqs = sorted(set(replies(n)))
            lost = (seqs[-1] - seqs[0] + 1) - len(seqs)
            print(f"{n}: {len(seqs)} replies, {lost} lost, across the kill at ~#{at_kill[n]} and the restart at"
                  f" ~#{at_ready[n]}")
            assert lost <= LOSS_BUDGET, f"{n} lost {lost} echoes: {sorted(set(range(seqs[0], seqs[-1])) - set(seqs))}"
        print(f"{len(bodies)} fetches through {url}, all answered")

        # nothing duplicated, nothing recreated
        assert after.keys() == before.keys()
        for key in before:
            if isinstance(before[key], str):
                diff = "\n".join(difflib.unified_diff(before[key].splitlines(), after[key].splitlines(), "before", "after",
                                                     lineterm=""))
                assert not diff, f"{key} changed across the restart:\n{diff}"
            assert after[key] == before[key], f"{key} changed across the restart:\nbefore: {before[key]}\nafter: {after[key]}"

        # the planted orphans were reaped by the restart, and left this cloud's ownership entry
        assert not (NETNS / orphans["net_ns"]).exists() and not (NETNS / orphans["rtr_ns"]).exists()
        assert sh("ip", "link", "show", "dev", orphans["host_dev"], check=False).returncode != 0
        assert _pid_of_dnsmasq(orphans["net"]) == [] and not dhcp.Paths.of(dhcp.RUN_DIR, orphans["net"]).dir.exists()
        assert orphans["table"] not in sh("ip", "netns", "exec", orphans["private_ns"], "nft", "list", "tables").stdout
        assert sh("ip", "-n", orphans["private_ns"], "link", "show", "dev", orphans["tap"], check=False).returncode != 0
        assert {orphans["net"], orphans["rtr"]}.isdisjoint(json.loads(orphans["entry"].read_text())["ids"])
        assert (NETNS / orphans["foreign_ns"]).exists(), "a namespace nobody recorded was reaped"
        # and the servers are still ACTIVE, A still behind its floating IP
        for s in world.servers.values():
            assert (server(cloud, s["id"]) or {}).get("status") == "ACTIVE"
        assert fetch(url) == world.page("a")
        # the metadata service listens again in private's namespace (its socket died with the process)
        md = world.inside("a", "timeout 5 wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json")
        assert json.loads(md)["uuid"] == world.servers["a"]["id"]
        world.osc("floating", "ip", "unset", "--port", fip["id"], json=False)
    finally:
        if orphans:
            _remove_orphans(orphans)
