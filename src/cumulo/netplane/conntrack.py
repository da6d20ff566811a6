"""Established flows a security group change revokes, cut: their conntrack entries deleted.

Neutron's agents do it when a rule goes (its ConntrackManager); here in the network's namespace.

The port chains of `secgroups` accept `ct state established,related` before any group rule, so a
rule's removal alone stops only new connections. Deleting the entries of the flows it allowed
makes the next packet of such a flow new again: the rules that remain decide (a flow another rule
still allows is picked up again at once: nf_conntrack_tcp_loose, the kernel's default).

- `flows(fw)`: per secured port, the kinds of flow its groups let through (`Flow`: direction,
  the port's address, the remote prefix or a remote group's member, protocol, port range);
- `revoked(old, new)`: what `old` allowed that `new` does not, for the ports still filtered in
  `new`; a port whose port security was just turned on had everything allowed before, so all
  its flows are revoked (the rules decide again). Pure functions;
- `flush(ns, revoked)`: the namespace's conntrack table listed and the matching entries deleted
  over ctnetlink (NETLINK_NETFILTER), from a thread that joined the namespace: no tool, no
  process. An ICMP rule's type and code are not compared (its ICMP entries all go; the next
  echo is new anyway).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cumulo.netplane import netns
from cumulo.netplane.secgroups import INGRESS, Firewall, Port, _protocol

NETLINK_NETFILTER = 12
_CTNETLINK = 1 << 8  # NFNL_SUBSYS_CTNETLINK
_MSG_GET, _MSG_DELETE = 1, 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_CTA_TUPLE_ORIG, _CTA_TUPLE_REPLY, _CTA_ID = 1, 2, 12
_CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2
_CTA_IP_V4_SRC, _CTA_IP_V4_DST, _CTA_IP_V6_SRC, _CTA_IP_V6_DST = 1, 2, 3, 4
_CTA_PROTO_NUM, _CTA_PROTO_SRC_PORT, _CTA_PROTO_DST_PORT = 1, 2, 3
_NESTED = 0x8000
_PORT_PROTOCOLS = {6, 17, 33, 132, 136}
ANY4, ANY6 = "0.0.0.0/0", "::/0"


@dataclass(frozen=True)
class Flow:
    """A kind of flow a port's groups let through: `direction` ingress (to the port, from `remote`)
    or egress (from the port, to `remote`); `local` the port's address (a prefix for an allowed
    address pair); protocol None: any; the destination port range for TCP, UDP and the like."""

    direction: str
    local: str
    remote: str
    protocol: int | None = None
    port_min: int | None = None
    port_max: int | None = None


@dataclass(frozen=True)
class Entry:
    """One conntrack entry's original direction (and what it takes to delete exactly it)."""

    family: int  # socket.AF_INET or AF_INET6
    protocol: int
    src: str
    dst: str
    sport: int | None
    dport: int | None
    tuple_attr: bytes = b""  # CTA_TUPLE_ORIG as the kernel sent it
    ident: int | None = None  # CTA_ID
    reply_dst: str | None = None  # where replies go (after NAT: a floating IP for a flow it SNATs)


# ---- what a firewall allows ------------------------------------------------------------------


def _locals(port: Port) -> list[str]:
    nets = [ipaddress.ip_network(ip, strict=False) for ip in port.fixed_ips]
    nets += [ipaddress.ip_network(ip, strict=False) for ip, _mac in port.allowed_address_pairs]
    return sorted({str(n) for n in nets})


Allow = tuple[str, int, str, "int | None", "int | None", "int | None"]  # direction, version, remote, proto, ports


class _Allowances:
    """What a firewall's groups allow, port-independent (direction, IP version, remote prefix,
    protocol, port range), worked out once per group and per set of groups."""

    def __init__(self, fw: Firewall) -> None:
        self.fw = fw
        self._groups: dict[str, frozenset[Allow]] = {}
        self._sets: dict[frozenset[str], frozenset[Allow]] = {}
        self._nets: dict[str, str] = {}

    def _net(self, value: str) -> str:
        out = self._nets.get(value)
        if out is None:
            out = self._nets[value] = str(ipaddress.ip_network(value, strict=False))
        return out

    def group(self, group: str) -> frozenset[Allow]:
        found = self._groups.get(group)
        if found is not None:
            return found
        out: set[Allow] = set()
        for rule in self.fw.rules.get(group, ()):
            version = {"ipv4": 4, "ipv6": 6}.get(rule.ethertype.lower())
            if version is None:
                continue
            if rule.remote_ip_prefix:
                remotes = [self._net(rule.remote_ip_prefix)]
            elif rule.remote_group_id:
                remotes = [self._net(a) for a in self.fw.members.get(rule.remote_group_id, ())]
            else:
                remotes = [ANY4 if version == 4 else ANY6]
            proto = _protocol(rule.protocol, version)
            low, high = rule.port_range_min, rule.port_range_max
            if proto not in _PORT_PROTOCOLS or (low is None and high is None):
                low = high = None
            elif low is None or high is None:
                low = high = low if low is not None else high
            out |= {(rule.direction, version, r, proto, low, high) for r in remotes
                    if (":" in r) == (version == 6)}
        self._groups[group] = frozen = frozenset(out)
        return frozen

    def of(self, groups: Iterable[str]) -> frozenset[Allow]:
        key = frozenset(groups)
        found = self._sets.get(key)
        if found is None:
            found = self._sets[key] = frozenset().union(*(self.group(g) for g in key))
        return found


def _expand(allows: Iterable[Allow], locals_: Iterable[str]) -> set[Flow]:
    by_version: dict[int, list[str]] = {4: [], 6: []}
    for local in locals_:
        by_version[6 if ":" in local else 4].append(local)
    return {Flow(d, local, remote, proto, lo, hi) for d, version, remote, proto, lo, hi in allows
            for local in by_version[version]}


def flows(fw: Firewall, only: Iterable[str] | None = None) -> dict[str, frozenset[Flow]]:
    """Per secured port (by id; those in `only` if given), the flows its security groups allow."""
    wanted = None if only is None else set(only)
    allowances = _Allowances(fw)
    return {p.id: frozenset(_expand(allowances.of(p.security_groups), _locals(p))) for p in fw.ports
            if p.port_security_enabled and (wanted is None or p.id in wanted)}


def _touched(old: Firewall, new: Firewall, old_ports: Mapping[str, Port]) -> set[str]:
    """The ports of `new` (also in `old`) whose allowed flows may have shrunk: their own
    addresses, groups or port security changed, or a group of theirs lost a rule, or a remote
    group its rules name lost a member. Adding ports, rules or members touches nothing."""
    shrunk = {g for g, rules in old.rules.items() if not set(rules) <= set(new.rules.get(g, ()))}
    left = {g for g, members in old.members.items() if not set(members) <= set(new.members.get(g, ()))}
    if left:
        shrunk |= {g for g, rules in old.rules.items() if any(r.remote_group_id in left for r in rules)}
    out = set()
    for port in new.ports:
        was = old_ports.get(port.id)
        if was is None:
            continue
        if (was.port_security_enabled, set(was.security_groups), was.fixed_ips, was.allowed_address_pairs) != (
                port.port_security_enabled, set(port.security_groups), port.fixed_ips, port.allowed_address_pairs) \
                or shrunk & set(port.security_groups):
            out.add(port.id)
    return out


def revoked(old: Firewall, new: Firewall) -> list[Flow]:
    """The flows `old` allowed that `new` does not, for the ports `new` still filters."""
    old_ports: Mapping[str, Port] = {p.id: p for p in old.ports}
    touched = _touched(old, new, old_ports)
    if not touched:
        return []
    before, after = _Allowances(old), _Allowances(new)
    out: set[Flow] = set()
    for port in new.ports:
        if not port.port_security_enabled or port.id not in touched:
            continue
        was = old_ports[port.id]
        if not was.port_security_enabled:  # unfiltered until now: the rules decide again
            for local in _locals(port):
                anywhere = ANY4 if ":" not in local else ANY6
                out |= {Flow(d, local, anywhere) for d in (INGRESS, "egress")}
            continue
        had, has = before.of(was.security_groups), after.of(port.security_groups)
        locals_now, locals_then = _locals(port), _locals(was)
        out |= _expand(had - has, locals_now)
        out |= _expand(had, [a for a in locals_then if a not in locals_now])  # an address gone from the port
    return sorted(out, key=lambda f: (f.direction, f.local, f.remote, f.protocol or -1, f.port_min or -1))


def matches(flow: Flow, entry: Entry) -> bool:
    """Whether the entry is a flow of this kind (by its original direction)."""
    local, remote = _parsed_net(flow.local), _parsed_net(flow.remote)
    mine, theirs = (entry.dst, entry.src) if flow.direction == INGRESS else (entry.src, entry.dst)
    a, b = _parsed_ip(mine), _parsed_ip(theirs)
    if a is None or b is None:
        return False
    if a.version != local.version or a not in local or b.version != remote.version or b not in remote:
        return False
    if flow.protocol is not None and flow.protocol != entry.protocol:
        return False
    if flow.port_min is not None and flow.port_max is not None:
        return entry.dport is not None and flow.port_min <= entry.dport <= flow.port_max
    return True


def doomed(entries: Iterable[Entry], cut: Sequence[Flow]) -> list[Entry]:
    """The entries of the flows `cut` (each entry looked at once: the flows indexed by the port
    address they concern, a host address or, for an allowed address pair, a prefix)."""
    exact: dict[tuple[str, str], list[Flow]] = {}
    prefixes: list[Flow] = []
    for f in cut:
        net = ipaddress.ip_network(f.local)
        if net.num_addresses == 1:
            exact.setdefault((f.direction, str(net.network_address)), []).append(f)
        else:
            prefixes.append(f)
    out = []
    for e in entries:
        candidates = [*exact.get((INGRESS, _canonical(e.dst)), ()), *exact.get(("egress", _canonical(e.src)), ()),
                      *prefixes]
        if any(matches(f, e) for f in candidates):
            out.append(e)
    return out


def _canonical(ip: str) -> str:
    parsed = _parsed_ip(ip)
    return ip if parsed is None else str(parsed)


@functools.lru_cache(maxsize=4096)
def _parsed_net(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value, strict=False)


@functools.lru_cache(maxsize=4096)
def _parsed_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


# ---- ctnetlink -------------------------------------------------------------------------------


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & ~_NESTED] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _ends(family: int, tuple_attr: bytes | None) -> tuple[str, str] | None:
    """(source, destination) of a CTA_TUPLE_* attribute's payload."""
    ip = _attrs(_attrs(tuple_attr or b"").get(_CTA_TUPLE_IP, b""))
    keys = (_CTA_IP_V4_SRC, _CTA_IP_V4_DST) if family == socket.AF_INET else (_CTA_IP_V6_SRC, _CTA_IP_V6_DST)
    if family not in (socket.AF_INET, socket.AF_INET6) or keys[0] not in ip or keys[1] not in ip:
        return None
    return socket.inet_ntop(family, ip[keys[0]]), socket.inet_ntop(family, ip[keys[1]])


def _entry(family: int, payload: bytes) -> Entry | None:
    attrs = _attrs(payload)
    orig = attrs.get(_CTA_TUPLE_ORIG)
    ends = _ends(family, orig)
    if orig is None or ends is None:
        return None
    src, dst = ends
    reply = _ends(family, attrs.get(_CTA_TUPLE_REPLY))
    proto = _attrs(_attrs(orig).get(_CTA_TUPLE_PROTO, b""))
    if _CTA_PROTO_NUM not in proto:
        return None
    sport = struct.unpack("!H", proto[_CTA_PROTO_SRC_PORT][:2])[0] if _CTA_PROTO_SRC_PORT in proto else None
    dport = struct.unpack("!H", proto[_CTA_PROTO_DST_PORT][:2])[0] if _CTA_PROTO_DST_PORT in proto else None
    ident = struct.unpack("!I", attrs[_CTA_ID][:4])[0] if _CTA_ID in attrs else None
    return Entry(family=family, protocol=proto[_CTA_PROTO_NUM][0], src=src, dst=dst, sport=sport, dport=dport,
                 tuple_attr=_attr(_CTA_TUPLE_ORIG | _NESTED, orig), ident=ident,
                 reply_dst=reply[1] if reply else None)


def _request(sock: socket.socket, seq: int, msg: int, flags: int, family: int, body: bytes = b"") -> None:
    payload = struct.pack("=BBH", family, 0, 0) + body
    sock.send(struct.pack("=IHHII", 16 + len(payload), _CTNETLINK | msg, _NLM_F_REQUEST | flags, seq, 0) + payload)


def _replies(sock: socket.socket, seq: int) -> Iterable[tuple[int, bytes]]:
    """(message type, payload) of the answers to `seq` until DONE or the ACK/error; an error raises."""
    while True:
        data = sock.recv(1 << 17)
        off = 0
        while off + 16 <= len(data):
            length, kind, _flags, got, _pid = struct.unpack_from("=IHHII", data, off)
            body = data[off + 16:off + length]
            off += (length + 3) & ~3
            if got != seq:
                continue
            if kind == _NLMSG_DONE:
                return
            if kind == _NLMSG_ERROR:
                err = -struct.unpack_from("=i", body)[0]
                if err:
                    raise OSError(err, f"ctnetlink: {os.strerror(err)}")
                return
            yield kind, body


def _open() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    return sock


def entries_here() -> list[Entry]:
    """Blocking: every conntrack entry of the calling thread's network namespace."""
    out: list[Entry] = []
    with _open() as sock:
        _request(sock, 1, _MSG_GET, _NLM_F_DUMP, socket.AF_UNSPEC)
        for kind, body in _replies(sock, 1):
            if kind & 0xFF != 0 or len(body) < 4:  # IPCTNL_MSG_CT_NEW: one entry
                continue
            entry = _entry(body[0], body[4:])
            if entry is not None:
                out.append(entry)
    return out


def delete_here(entries: Iterable[Entry]) -> int:
    """Blocking: delete these entries (each exactly: its tuple and id) in the calling thread's
    namespace; the number deleted (one already gone is fine)."""
    done = 0
    with _open() as sock:
        for seq, e in enumerate(entries, start=2):
            body = e.tuple_attr + (_attr(_CTA_ID, struct.pack("!I", e.ident)) if e.ident is not None else b"")
            _request(sock, seq, _MSG_DELETE, _NLM_F_ACK, e.family, body)
            try:
                for _ in _replies(sock, seq):
                    pass
                done += 1
            except FileNotFoundError:  # ENOENT: it ended meanwhile
                continue
    return done


def cut_here(cut: Sequence[Flow]) -> int:
    """Blocking: delete the entries of the flows `cut`, in the calling thread's namespace."""
    if not cut:
        return 0
    return delete_here(doomed(entries_here(), cut))


def floating_gone(before: Iterable[tuple[str, str]], after: Iterable[tuple[str, str]]) -> list[str]:
    """The floating IPs whose (floating IP, fixed IP) association `after` no longer has."""
    return sorted({fip for fip, fixed in set(before) - set(after)})


async def flush_addresses(ns: str, addresses: Iterable[str]) -> int:
    """Delete the entries of the flows to or through these addresses in the namespace `ns`:
    opened to one (a floating IP's DNAT) or answered to one (its SNAT), as Neutron's L3 agent
    does when a floating IP is disassociated (conntrack -D -d ip, -D -q ip); how many."""
    wanted = {_canonical(a) for a in addresses}
    if not wanted:
        return 0
    netns.check_name(ns)

    def work() -> int:
        return delete_here([e for e in entries_here()
                            if _canonical(e.dst) in wanted or (e.reply_dst and _canonical(e.reply_dst) in wanted)])

    return await netns.run_in(ns, work)


async def flush(ns: str, cut: Sequence[Flow]) -> int:
    """Delete the conntrack entries of the flows `cut` in the namespace `ns`; how many."""
    if not cut:
        return 0
    netns.check_name(ns)
    cut = list(cut)
    return await netns.run_in(ns, lambda: cut_here(cut))
