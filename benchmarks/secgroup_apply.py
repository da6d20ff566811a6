"""How long a security group change takes to reach the data plane, with 100 ports in the group.

No cloud, as root: a network namespace `cnet-<uuid>` with its bridge (netplane.bridge) and 100
veth ports on it, all in one security group whose ingress rules name the group itself (Neutron's
default group), the group's member set holding the 100 addresses. Timed, each from rendering the
script to `nft -f` returning (the kernel has committed the transaction, so the next packet meets
the new rules):

  (a) the whole ruleset of the namespace replaced (a port added or removed): `secgroups.apply`;
  (b) a rule added to or removed from the group: `render_group` + `apply_script`;
  (c) a member leaving the group: `render_members` + `apply_script`.

What the network agent sends since it changes the tables in place (netplane.sgdelta, from the
firewall it last applied), each from computing the delta to the transaction's commit:

  (e) a rule added to the group (appended to its chains) and removed (its chains refilled);
  (f) a port added to the group (its elements, chains, map entries and its address in the
      group's member set) and removed again.

The whole path, from the API call until new connections are admitted or dropped on a running
cloud, is benchmarks/secgroup_e2e.py's figure.

Then one check with packets: two of the ports are real stand-in servers; right after the apply
that removes the rule allowing their TCP port returns (the group's rules then allow only
egress), a new connection is dropped. The
namespace goes at the end, by name. Prints figures; asserts nothing about them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cumulo.netplane import bridge, netns, nft, secgroups, sgdelta  # noqa: E402
from cumulo.netplane.secgroups import Firewall, Port, Rule  # noqa: E402

PORTS = 100
RUNS = 20
GROUP = str(uuidlib.uuid4())
WEB = Rule("ingress", "IPv4", "tcp", 8080, 8080)
BASE = (Rule("egress", "IPv4"), Rule("egress", "IPv6"), Rule("ingress", "IPv4", remote_group_id=GROUP),
        Rule("ingress", "IPv6", remote_group_id=GROUP), Rule("ingress", "IPv4", "icmp"))


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def show(name: str, values: list[float], size: int) -> None:
    print(f"{name:<46} p50 {statistics.median(values) * 1000:7.1f} ms   p90 {pct(values, 0.9) * 1000:7.1f} ms"
          f"   max {max(values) * 1000:7.1f} ms" + (f"   script {size} bytes" if size else ""))


def ip_batch(lines: list[str], ns: str | None = None) -> None:
    subprocess.run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True,  # noqa: S603,S607
                   capture_output=True, timeout=120)


def connect(ns: str, address: str, port: int) -> bool:
    sock = netns.run_in_sync(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.settimeout(1.0)
    try:
        sock.connect((address, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


async def main() -> None:
    if os.geteuid() != 0:
        sys.exit("secgroup_apply.py needs root (network namespaces, nftables)")
    net = netns.network_ns(str(uuidlib.uuid4()))
    servers: list[str] = []
    try:
        await bridge.ensure(net)
        ports = []
        batch = []
        for i in range(PORTS):
            pid = str(uuidlib.uuid4())
            dev = netns.port_device(pid)
            mac = f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}"
            ports.append(Port(pid, dev, mac, (f"10.90.{i}.{i % 7 * 2 + 5}",), security_groups=(GROUP,)))
            if i >= 2:
                batch += [f"link add {dev} type veth peer name p{dev[3:]}",
                          f"link set {dev} master {bridge.BRIDGE} up"]
        ip_batch(batch, net)
        # Ports 0 and 1 are stand-in servers: their own namespaces, a veth onto the bridge.
        for p in ports[:2]:
            name = "cdpt-" + p.id[:8]
            servers.append(name)
            ip_batch([f"netns add {name}"])
            ip_batch([f"link add {p.device} type veth peer name eth0 netns {name}",
                      f"link set {p.device} master {bridge.BRIDGE} up"], net)
            ip_batch([f"link set eth0 address {p.mac} up", f"addr add {p.fixed_ips[0]}/16 dev eth0"], name)
        members = {GROUP: tuple(p.fixed_ips[0] for p in ports)}
        fw = Firewall(ports=tuple(ports), rules={GROUP: (*BASE, WEB)}, members=members)
        await secgroups.apply(net, fw)

        full: list[float] = []
        for _ in range(RUNS // 2):
            t = time.perf_counter()
            await secgroups.apply(net, fw)
            full.append(time.perf_counter() - t)
        show(f"(a) whole ruleset, {PORTS} ports", full, len(secgroups.render(fw)))

        rule: list[float] = []
        for i in range(RUNS):
            rules = (*BASE, WEB) if i % 2 else BASE
            t = time.perf_counter()
            await secgroups.apply_script(net, secgroups.render_group(GROUP, rules, members))
            rule.append(time.perf_counter() - t)
        show(f"(b) rule change, group of {PORTS}", rule, len(secgroups.render_group(GROUP, BASE, members)))

        member: list[float] = []
        for i in range(RUNS):
            addrs = members[GROUP][: PORTS - (i % 2)]
            t = time.perf_counter()
            await secgroups.apply_script(net, secgroups.render_members(GROUP, addrs))
            member.append(time.perf_counter() - t)
        show(f"(c) member change, set of {PORTS}", member, len(secgroups.render_members(GROUP, members[GROUP])))

        # (e), (f): the agent's in-place deltas from a known state.
        await secgroups.apply(net, fw)
        known = sgdelta.applied(fw)
        without_web = Firewall(ports=fw.ports, rules={GROUP: BASE}, members=members)
        added: list[float] = []
        removed: list[float] = []
        for _ in range(RUNS // 2):
            for target, times in ((without_web, removed), (fw, added)):
                t = time.perf_counter()
                script, known = sgdelta.delta(known, target)
                await nft.apply(net, script)
                times.append(time.perf_counter() - t)
        show(f"(e) rule added, delta, group of {PORTS}", added, 0)
        show(f"(e) rule removed, delta, group of {PORTS}", removed, 0)
        extra = Port(str(uuidlib.uuid4()), netns.port_device(str(uuidlib.uuid4())), "fa:16:3e:01:00:01",
                     ("10.91.0.5",), security_groups=(GROUP,))
        bigger = Firewall(ports=(*fw.ports, extra), rules=fw.rules, members={GROUP: (*members[GROUP], "10.91.0.5")})
        plug: list[float] = []
        unplug: list[float] = []
        for _ in range(RUNS // 2):
            for target, times in ((bigger, plug), (fw, unplug)):
                t = time.perf_counter()
                script, known = sgdelta.delta(known, target)
                await nft.apply(net, script)
                times.append(time.perf_counter() - t)
        show(f"(f) port added, delta, {PORTS} in the group", plug, 0)
        show(f"(f) port removed, delta, {PORTS} in the group", unplug, 0)

        # With packets: the rule allowing 8080 is there, then removed; the next connection is dropped.
        egress = BASE[:2]  # no ingress from the group itself here, so 8080 is only open by WEB
        await secgroups.apply_script(net, secgroups.render_group(GROUP, (*egress, WEB), members))
        target = ports[1].fixed_ips[0]
        listener = netns.run_in_sync(servers[1], lambda: socket.create_server(("0.0.0.0", 8080)))  # noqa: S104
        threading.Thread(target=lambda: [listener.accept()[0].close() for _ in range(1)], daemon=True).start()
        before = await asyncio.to_thread(connect, servers[0], target, 8080)
        t = time.perf_counter()
        await secgroups.apply_script(net, secgroups.render_group(GROUP, egress, members))
        applied = time.perf_counter() - t
        after = await asyncio.to_thread(connect, servers[0], target, 8080)
        listener.close()
        print(f"(d) packets: connect before {'ok' if before else 'FAILED'}; rule removed in {applied * 1000:.1f} ms;"
              f" next connect {'dropped' if not after else 'STILL ALLOWED'}")
    finally:
        for name in [*servers, net]:
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)  # noqa: S603,S607


if __name__ == "__main__":
    asyncio.run(main())
