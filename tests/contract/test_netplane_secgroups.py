"""Security groups with real packets: stand-in servers on a network's bridge, TCP between them,
the rules applied by netplane.secgroups (nftables in the network's namespace)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import uuid as uuidlib

import pytest
from _netplane_lab import BUSYBOX, MISSING, Lab, Server, ip, serve_peer

from cumulo.netplane import nft, secgroups
from cumulo.netplane.secgroups import Firewall, Port, Rule

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "root, ip, nft and busybox present")

EGRESS_ALL = (Rule("egress", "IPv4"), Rule("egress", "IPv6"))


def port_of(s: Server, *groups: str, security: bool = True,
            pairs: tuple[tuple[str, str | None], ...] = ()) -> Port:
    return Port(id=s.port_id, device=s.device, mac=s.mac, fixed_ips=(s.address,), allowed_address_pairs=pairs,
                port_security_enabled=security, security_groups=groups)


def stop(listener: socket.socket) -> None:
    try:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of serve_peer
    except OSError:
        pass
    listener.close()


async def reaches(client: Server, target: Server, port: int, source: str | None = None) -> str | None:
    """Whether a TCP connection from client to target:port gets through (the peer address the
    target saw, or None). A dropped SYN shows as a 1 s connect timeout."""
    listener = target.listen(port, "::" if ":" in target.address else "0.0.0.0")  # noqa: S104
    server = threading.Thread(target=serve_peer, args=(listener,), daemon=True)
    server.start()
    try:
        return await asyncio.to_thread(client.connect, target.address, port, source)
    finally:
        stop(listener)
        server.join(10)


async def test_a_rule_allows_then_its_removal_blocks(lab: Lab) -> None:
    _, ns = await lab.network()
    a, b = lab.server(ns, "10.61.0.5/24"), lab.server(ns, "10.61.0.6/24")
    g = str(uuidlib.uuid4())
    web = Rule("ingress", "IPv4", "tcp", 8080, 8080, "0.0.0.0/0")
    fw = Firewall(ports=(port_of(a, g), port_of(b, g)), rules={g: (*EGRESS_ALL, web)})
    await secgroups.apply(ns, fw)
    assert await reaches(a, b, 8080) == a.address
    assert await reaches(a, b, 8081) is None  # no rule for 8081

    # The rule goes: one small transaction (the group's chains), and new connections are dropped.
    await secgroups.apply_script(ns, secgroups.render_group(g, EGRESS_ALL, {}))
    assert await reaches(a, b, 8080) is None
    # ... and comes back.
    await secgroups.apply_script(ns, secgroups.render_group(g, (*EGRESS_ALL, web), {}))
    assert await reaches(a, b, 8080) == a.address

    # Egress is filtered too: without an egress rule, A cannot open connections at all.
    await secgroups.apply_script(ns, secgroups.render_group(g, (web,), {}))
    assert await reaches(a, b, 8080) is None

    await secgroups.remove(ns)
    assert await nft.cumulo_tables(ns) == []
    assert await reaches(a, b, 8081) == a.address  # nothing filters any more


async def test_remote_group_members_are_a_set(lab: Lab) -> None:
    _, ns = await lab.network()
    a, b, c = (lab.server(ns, f"10.62.0.{i}/24") for i in (5, 6, 7))
    web, clients = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    rules = {web: (*EGRESS_ALL, Rule("ingress", "IPv4", "tcp", 80, 80, remote_group_id=clients)),
             clients: EGRESS_ALL}
    fw = Firewall(ports=(port_of(a, clients), port_of(b, web), port_of(c, web)), rules=rules,
                  members={clients: (a.address,)})
    await secgroups.apply(ns, fw)
    assert await reaches(a, b, 80) == a.address
    assert await reaches(c, b, 80) is None  # C is not in the remote group

    # A leaves the group (its addresses leave the set), C joins: one set refilled.
    await secgroups.apply_script(ns, secgroups.render_members(clients, (c.address,)))
    assert await reaches(a, b, 80) is None
    assert await reaches(c, b, 80) == c.address


async def test_anti_spoofing_drops_a_spoofed_source(lab: Lab) -> None:
    _, ns = await lab.network()
    a, b = lab.server(ns, "10.63.0.5/24"), lab.server(ns, "10.63.0.6/24")
    g = str(uuidlib.uuid4())
    rules = {g: (*EGRESS_ALL, Rule("ingress", "IPv4", "tcp"))}
    await secgroups.apply(ns, Firewall(ports=(port_of(a, g, pairs=(("10.63.0.77", None),)), port_of(b, g)),
                                       rules=rules))
    assert await reaches(a, b, 9000) == a.address
    ip("-n", a.ns, "addr", "add", "10.63.0.99/24", "dev", "eth0")
    ip("-n", a.ns, "addr", "add", "10.63.0.77/24", "dev", "eth0")
    assert await reaches(a, b, 9000, source="10.63.0.99") is None  # not A's address: dropped
    assert await reaches(a, b, 9000, source="10.63.0.77") == "10.63.0.77"  # an allowed address pair
    # A spoofed MAC is dropped whatever the address.
    ip("-n", a.ns, "link", "set", "eth0", "address", "fa:16:3e:00:00:01")
    ip("-n", a.ns, "neigh", "flush", "dev", "eth0")
    ip("-n", b.ns, "neigh", "flush", "dev", "eth0")
    assert await reaches(a, b, 9000) is None


async def test_port_security_off_lifts_filtering_for_that_port_only(lab: Lab) -> None:
    _, ns = await lab.network()
    a, b, c = (lab.server(ns, f"10.64.0.{i}/24") for i in (5, 6, 7))
    g = str(uuidlib.uuid4())
    rules = {g: (*EGRESS_ALL, Rule("ingress", "IPv4", "tcp", 8080, 8080))}
    await secgroups.apply(ns, Firewall(ports=(port_of(a, g), port_of(b, g), port_of(c, g, security=False)),
                                       rules=rules))
    assert await reaches(a, c, 8081) == a.address  # C takes anything: nothing filters its port
    assert await reaches(a, b, 8081) is None  # B's port is still filtered
    assert await reaches(c, b, 8081) is None  # ... whoever connects
    assert await reaches(c, b, 8080) == c.address
    for s in (a, c):
        ip("-n", s.ns, "addr", "add", f"10.64.0.{98 if s is a else 99}/24", "dev", "eth0")
    assert await reaches(c, b, 8080, source="10.64.0.99") == "10.64.0.99"  # C may use any source
    assert await reaches(a, b, 8080, source="10.64.0.98") is None  # A may not


def pings(client: Server, target: Server) -> bool:
    return subprocess.run(["ip", "netns", "exec", client.ns, BUSYBOX, "ping", "-c", "1", "-W", "1",  # noqa: S603,S607
                           target.address], check=False, capture_output=True, timeout=30).returncode == 0


async def test_icmp_rules_and_ipv6(lab: Lab) -> None:
    _, ns = await lab.network()
    a, b = lab.server(ns, "10.65.0.5/24"), lab.server(ns, "10.65.0.6/24")
    a6, b6 = lab.server(ns, "fd00:65::5/64"), lab.server(ns, "fd00:65::6/64")
    g = str(uuidlib.uuid4())
    ping_in = Rule("ingress", "IPv4", "icmp", 8)
    tcp6_in = Rule("ingress", "IPv6", "tcp", 8080, 8080, "fd00:65::/64")
    ports = (port_of(a, g), port_of(b, g), port_of(a6, g), port_of(b6, g))
    await secgroups.apply(ns, Firewall(ports=ports, rules={g: (*EGRESS_ALL, ping_in, tcp6_in)}))
    assert await asyncio.to_thread(pings, a, b)
    assert await reaches(a6, b6, 8080) == a6.address  # neighbour discovery passes; the rule admits it
    assert await reaches(a6, b6, 8081) is None
    ip("-n", a6.ns, "addr", "add", "fd00:65::99/64", "dev", "eth0", "nodad")
    assert await reaches(a6, b6, 8080, source="fd00:65::99") is None  # not A6's address: dropped

    await secgroups.apply_script(ns, secgroups.render_group(g, (*EGRESS_ALL, tcp6_in), {}))
    assert not await asyncio.to_thread(pings, a, b)
