"""Which established flows a security group change revokes (netplane.conntrack, pure parts)."""

from __future__ import annotations

import socket

from cumulo.netplane import conntrack
from cumulo.netplane.conntrack import Entry, Flow
from cumulo.netplane.secgroups import Firewall, Port, Rule

G, R = "6a3a8c56-2cf3-4bd6-a6a7-9d2bbbd6cd11", "0b5a4a40-6a3e-4c52-9a43-0d6c1d0e4b11"
A = Port("a", "tapaaaaaaaaaaa", "fa:16:3e:00:00:0a", ("10.0.0.5",), security_groups=(G,))
B = Port("b", "tapbbbbbbbbbbb", "fa:16:3e:00:00:0b", ("10.0.0.6",), security_groups=(R,))
WEB = Rule("ingress", "IPv4", "tcp", 80, 81, "192.0.2.0/24")
PEERS = Rule("ingress", "IPv4", "udp", None, None, None, R)
EGRESS = Rule("egress", "IPv4")


def tcp(src: str, dst: str, dport: int, proto: int = 6) -> Entry:
    return Entry(socket.AF_INET, proto, src, dst, 40000, dport)


def test_a_removed_rule_revokes_its_flows_only() -> None:
    before = Firewall((A, B), {G: (WEB, EGRESS, PEERS), R: (EGRESS,)}, {R: ("10.0.0.6", "10.0.0.7")})
    after = Firewall((A, B), {G: (EGRESS, PEERS), R: (EGRESS,)}, before.members)
    cut = conntrack.revoked(before, after)
    assert cut == [Flow("ingress", "10.0.0.5/32", "192.0.2.0/24", 6, 80, 81)]
    doomed = conntrack.doomed([tcp("192.0.2.9", "10.0.0.5", 80), tcp("192.0.2.9", "10.0.0.5", 81),
                               tcp("192.0.2.9", "10.0.0.5", 82), tcp("198.51.100.1", "10.0.0.5", 80),
                               tcp("192.0.2.9", "10.0.0.6", 80), tcp("10.0.0.5", "192.0.2.9", 80),
                               tcp("192.0.2.9", "10.0.0.5", 80, proto=17)], cut)
    assert [(e.src, e.dst, e.dport) for e in doomed] == [("192.0.2.9", "10.0.0.5", 80), ("192.0.2.9", "10.0.0.5", 81)]
    assert conntrack.revoked(after, before) == []  # a rule added revokes nothing


def test_a_member_leaving_a_remote_group_and_port_security() -> None:
    before = Firewall((A, B), {G: (PEERS,), R: ()}, {R: ("10.0.0.6", "10.0.0.7")})
    after = Firewall((A, B), {G: (PEERS,), R: ()}, {R: ("10.0.0.6",)})
    assert conntrack.revoked(before, after) == [Flow("ingress", "10.0.0.5/32", "10.0.0.7/32", 17)]
    assert conntrack.matches(Flow("ingress", "10.0.0.5/32", "10.0.0.7/32", 17),
                             Entry(socket.AF_INET, 17, "10.0.0.7", "10.0.0.5", 5353, 5353))
    # Port security off: nothing filters the port, nothing to revoke; back on: everything is decided again.
    off = Firewall((A, Port(**{**B.__dict__, "port_security_enabled": False})), before.rules, before.members)
    assert conntrack.revoked(before, off) == []
    assert conntrack.revoked(off, before) == [Flow("egress", "10.0.0.6/32", "0.0.0.0/0"),
                                              Flow("ingress", "10.0.0.6/32", "0.0.0.0/0")]
    # A port gone from the namespace: its flows went with it.
    assert conntrack.revoked(before, Firewall((B,), before.rules, before.members)) == []


def test_ipv6_and_icmp_flows() -> None:
    v6 = Port("c", "tapcccccccccccc", "fa:16:3e:00:00:0c", ("10.0.0.8", "fd00::8"), security_groups=(G,))
    ping6 = Rule("ingress", "IPv6", "icmp", 128, None, "::/0")
    before = Firewall((v6,), {G: (ping6, Rule("ingress", "IPv4", "icmp"))})
    cut = conntrack.revoked(before, Firewall((v6,), {G: ()}))
    assert cut == [Flow("ingress", "10.0.0.8/32", "0.0.0.0/0", 1), Flow("ingress", "fd00::8/128", "::/0", 58)]
    echo6 = Entry(socket.AF_INET6, 58, "fd00::1", "fd00::8", None, None)
    assert conntrack.doomed([echo6, tcp("10.0.0.1", "10.0.0.8", 22)], cut) == [echo6]


def test_an_allowed_address_pair_prefix_is_the_ports_too() -> None:
    vip = Port("v", "tapvvvvvvvvvvv", "fa:16:3e:00:00:0d", ("10.0.0.9",), (("10.0.5.0/24", None),), security_groups=(G,))
    before = Firewall((vip,), {G: (WEB,)})
    cut = conntrack.revoked(before, Firewall((vip,), {G: ()}))
    assert {f.local for f in cut} == {"10.0.0.9/32", "10.0.5.0/24"}
    entries = [tcp("192.0.2.1", "10.0.5.77", 80), tcp("192.0.2.1", "10.0.0.9", 81), tcp("192.0.2.1", "10.0.6.1", 80)]
    assert conntrack.doomed(entries, cut) == entries[:2]
    # An address taken off the port: what it allowed there goes, whatever the rules now say.
    moved = Port(**{**vip.__dict__, "fixed_ips": ("10.0.0.10",), "allowed_address_pairs": ()})
    gone = conntrack.revoked(before, Firewall((moved,), before.rules))
    assert {f.local for f in gone} == {"10.0.0.9/32", "10.0.5.0/24"}


def test_floating_ips_gone_or_moved() -> None:
    before = [("172.24.4.20", "10.0.0.5"), ("172.24.4.21", "10.0.0.6")]
    assert conntrack.floating_gone(before, before) == []
    assert conntrack.floating_gone(before, before[:1]) == ["172.24.4.21"]
    assert conntrack.floating_gone(before, [("172.24.4.20", "10.0.0.7"), before[1]]) == ["172.24.4.20"]  # moved
    assert conntrack.floating_gone([], before) == []
