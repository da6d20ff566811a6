"""Security groups as nftables rules in a network's namespace, stateful through conntrack.

Data in (the ports on the network's bridge, their groups' rules, the remote groups' member
addresses), text out (a script for `nft -f -`): pure functions, applied atomically by `apply`.

The kernel has no conntrack for the bridge family (nf_conntrack_bridge is not built on the hosts
we run on, and `ct` in a bridge table fails with EPROTO), so the work is split in two tables:

- `table bridge cumulo_sg` sees every frame with its real bridge ports. Its prerouting chain does
  the anti-spoofing of ports with port security on (source MAC; ARP, IPv4 and IPv6 source
  addresses from the fixed IPs and allowed address pairs; no DHCP server or router
  advertisement from a port) and marks each frame with its input port's number; its forward
  chain re-marks each frame (each flooded copy too) with its output port's number.
- `table inet cumulo_sg` sees the same packets through br_netfilter
  (net.bridge.bridge-nf-call-ip{,6}tables, on in the namespace), after conntrack. Its prerouting
  chain sends a packet to the egress chain of the port it came from (`meta mark vmap`), its
  forward chain to the ingress chain of the port it goes to. A port's chain accepts established
  traffic, drops invalid, lets DHCP and neighbour discovery pass, then jumps to one chain per
  security group (`s_<group>_i` / `s_<group>_e`), whose rules accept; what none accepts is dropped.

Remote-group rules match named sets (`g_<group>_4`, `g_<group>_6`) of the member addresses, so
a rule change is a flush-and-refill of one group's two chains (`render_group`) and a membership
change is a flush-and-refill of one set (`render_members`), however many ports are in the
group. Adding, removing or changing a port re-renders both tables (`render`), replaced whole in
one transaction. Ports with port security off are in neither table: nothing filters them.
"""

from __future__ import annotations

import ipaddress
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from string import Template
from typing import Any

from cumulo.errors import Invalid
from cumulo.netplane import netns, nft

TABLE = "cumulo_sg"
INGRESS, EGRESS = "ingress", "egress"

# Neutron's protocol names (neutron-lib's IP_PROTOCOL_MAP) as IP protocol numbers.
PROTOCOLS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "icmpv6": 58,
    "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
    "udp": 17, "udplite": 136, "vrrp": 112,
}
_PORT_PROTOCOLS = {6, 17, 33, 132, 136}
_ANY = {None, "", "any", "0"}

BRIDGE_BODY = Template("""\
\tset secured {
\t\ttype ifname
\t\t$secured
\t}
\tset macs {
\t\ttype ifname . ether_addr
\t\t$macs
\t}
\tset addr4 {
\t\ttype ifname . ether_addr . ipv4_addr
\t\tflags interval
\t\t$addr4
\t}
\tset addr6 {
\t\ttype ifname . ether_addr . ipv6_addr
\t\tflags interval
\t\t$addr6
\t}
\tmap marks {
\t\ttype ifname : mark
\t\t$marks
\t}
\tchain prerouting {
\t\ttype filter hook prerouting priority -200; policy accept;
\t\tmeta mark set 0
\t\tiifname @secured jump antispoof
\t\tmeta mark set iifname map @marks
\t}
\tchain antispoof {
\t\tiifname . ether saddr != @macs drop
\t\tmeta l4proto udp th sport { 67, 547 } drop
\t\ticmpv6 type { nd-router-advert, nd-redirect } drop
\t\tether type arp iifname . arp saddr ether . arp saddr ip @addr4 return
\t\tether type arp arp saddr ip 0.0.0.0 iifname . arp saddr ether @macs return
\t\tether type ip iifname . ether saddr . ip saddr @addr4 return
\t\tether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return
\t\tether type ip6 iifname . ether saddr . ip6 saddr @addr6 return
\t\tether type ip6 ip6 saddr :: meta l4proto ipv6-icmp return
\t\tdrop
\t}
\tchain forward {
\t\ttype filter hook forward priority -200; policy accept;
\t\tmeta mark set 0
\t\tmeta mark set oifname map @marks
\t}
""")

INET_BODY = Template("""\
\tmap egress {
\t\ttype mark : verdict
\t\t$egress
\t}
\tmap ingress {
\t\ttype mark : verdict
\t\t$ingress
\t}
$sets$chains\tchain prerouting {
\t\ttype filter hook prerouting priority 0; policy accept;
\t\tmeta mark vmap @egress
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tmeta mark vmap @ingress
\t}
""")

SET = Template("""\
\tset $name {
\t\ttype $type
\t\tflags interval
\t\t$elements
\t}
""")

PORT_CHAIN = Template("""\
\tchain $name {
\t\ticmpv6 type { $nd } accept
\t\tct state established,related accept
\t\tct state invalid drop
\t\tmeta nfproto ipv4 udp sport $dhcp4 accept
\t\tmeta nfproto ipv6 udp sport $dhcp6 accept
$metadata$jumps\t\tdrop
\t}
""")

GROUP_CHAIN = Template("""\
\tchain $name {
$rules\t}
""")

# What a port may always send (DHCP client, router solicitation, neighbour discovery, MLD) and
# always receive (DHCP server, router advertisement, neighbour discovery, MLD queries).
_ND_OUT = "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, " \
          "mld2-listener-report, mld-listener-done"
_ND_IN = "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query"

# The metadata service (netplane/metadata.py), reachable whatever the port's groups say, as
# Neutron's agents allow it: a server's TCP to 169.254.169.254:80.
METADATA_ALLOWANCE = "\t\tmeta nfproto ipv4 ip daddr 169.254.169.254 tcp dport 80 accept\n"


@dataclass(frozen=True)
class Rule:
    """One security group rule, as Neutron has it."""

    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None

    @classmethod
    def from_api(cls, rule: Mapping[str, Any]) -> Rule:
        """From a Neutron-shaped security_group_rule dict."""
        proto = rule.get("protocol")
        return cls(direction=str(rule.get("direction")), ethertype=str(rule.get("ethertype") or "IPv4"),
                   protocol=None if proto is None else str(proto),
                   port_range_min=rule.get("port_range_min"), port_range_max=rule.get("port_range_max"),
                   remote_ip_prefix=rule.get("remote_ip_prefix"), remote_group_id=rule.get("remote_group_id"))


@dataclass(frozen=True)
class Port:
    """A port on the bridge: its device there, its MAC and addresses, and its groups."""

    id: str
    device: str
    mac: str
    fixed_ips: tuple[str, ...] = ()
    allowed_address_pairs: tuple[tuple[str, str | None], ...] = ()  # (ip or cidr, mac or None)
    port_security_enabled: bool = True
    security_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Firewall:
    """Everything one network namespace filters."""

    ports: tuple[Port, ...] = ()
    rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)  # group id -> its rules
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group id -> member addresses


def _hex(ident: str) -> str:
    try:
        return uuidlib.UUID(str(ident)).hex
    except ValueError:
        raise Invalid(f"not a uuid: {ident!r}") from None


def group_chain(group_id: str, direction: str) -> str:
    return f"s_{_hex(group_id)}_{'i' if direction == INGRESS else 'e'}"


def member_set(group_id: str, version: int) -> str:
    return f"g_{_hex(group_id)}_{version}"


def port_chain(device: str, direction: str) -> str:
    nft.ifname(device)
    return f"{'i' if direction == INGRESS else 'o'}_{device.replace('-', '_').replace('.', '_')}"


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The EUI-64 link-local address the kernel derives from a MAC."""
    b = [int(x, 16) for x in nft.mac(mac).split(":")]
    b[0] ^= 0x02
    eui = bytes([*b[:3], 0xFF, 0xFE, *b[3:]])
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def _protocol(value: str | None, version: int) -> int | None:
    """The IP protocol number of a rule (None: any); Neutron's `icmp` on IPv6 means ICMPv6."""
    if value is None or str(value).lower() in _ANY:
        return None
    name = str(value).lower()
    if name.isdigit():
        num = int(name)
        if not 0 <= num <= 255:
            raise Invalid(f"bad IP protocol {value!r}")
    elif name in PROTOCOLS:
        num = PROTOCOLS[name]
    else:
        raise Invalid(f"unknown IP protocol {value!r}")
    if version == 6 and num == 1:
        return 58
    return num


def _bounded(value: int | None, top: int, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise Invalid(f"bad {what} {value!r}")
    return value


def rule_line(rule: Rule) -> str | None:
    """One rule as an nft statement that accepts; None when it can never match (wrong family)."""
    version = {"ipv4": 4, "ipv6": 6}.get(rule.ethertype.lower())
    if version is None:
        raise Invalid(f"bad ethertype {rule.ethertype!r}")
    if rule.direction not in (INGRESS, EGRESS):
        raise Invalid(f"bad direction {rule.direction!r}")
    fam = "ip" if version == 4 else "ip6"
    who = "saddr" if rule.direction == INGRESS else "daddr"
    parts = [f"meta nfproto ipv{version}"]
    if rule.remote_ip_prefix:
        net = nft.network(rule.remote_ip_prefix)
        if net.version != version:
            return None
        if net.prefixlen:
            parts.append(f"{fam} {who} {nft.prefix(net)}")
    elif rule.remote_group_id:
        parts.append(f"{fam} {who} @{member_set(rule.remote_group_id, version)}")
    proto = _protocol(rule.protocol, version)
    low = _bounded(rule.port_range_min, 65535, "port_range_min")
    high = _bounded(rule.port_range_max, 65535, "port_range_max")
    if proto is not None:
        parts.append(f"meta l4proto {proto}")
        if proto in (1, 58):
            icmp = "icmp" if proto == 1 else "icmpv6"
            if low is not None:
                parts.append(f"{icmp} type {_bounded(low, 255, 'ICMP type')}")
                if high is not None:
                    parts.append(f"{icmp} code {_bounded(high, 255, 'ICMP code')}")
        elif proto in _PORT_PROTOCOLS and (low is not None or high is not None):
            lo, hi = low if low is not None else high, high if high is not None else low
            assert lo is not None and hi is not None
            if lo > hi:
                raise Invalid(f"port_range_min {lo} is above port_range_max {hi}")
            if (lo, hi) != (0, 65535) and (lo, hi) != (1, 65535):
                parts.append(f"th dport {lo}" if lo == hi else f"th dport {lo}-{hi}")
    parts.append("accept")
    return " ".join(parts)


def _group_rules(rules: Iterable[Rule], direction: str) -> list[str]:
    lines = [rule_line(r) for r in rules if r.direction == direction]
    return sorted({line for line in lines if line})


def _remote_groups(rules: Mapping[str, tuple[Rule, ...]], groups: Iterable[str]) -> set[str]:
    return {r.remote_group_id for g in groups for r in rules.get(g, ()) if r.remote_group_id and not r.remote_ip_prefix}


def _members(addresses: Iterable[str], version: int) -> list[str]:
    nets = [nft.network(a) for a in addresses]
    return [nft.prefix(n) for n in nft.collapse(n for n in nets if n.version == version)]


def _set_def(group_id: str, version: int, addresses: Iterable[str]) -> str:
    return SET.substitute(name=member_set(group_id, version), type="ipv4_addr" if version == 4 else "ipv6_addr",
                          elements=nft.elements(_members(addresses, version)))


def _secured(ports: Iterable[Port]) -> list[Port]:
    out = sorted((p for p in ports if p.port_security_enabled), key=lambda p: p.device)
    seen: set[str] = set()
    for p in out:
        nft.ifname(p.device)
        if p.device in seen:
            raise Invalid(f"two ports on device {p.device}")
        seen.add(p.device)
    return out


def _port_addresses(port: Port) -> tuple[list[str], list[str], list[str]]:
    """(ifname . mac), (ifname . mac . ipv4 prefix) and (ifname . mac . ipv6 prefix) elements."""
    dev, own = nft.ifname(port.device), nft.mac(port.mac)
    by_mac: dict[str, list[nft.IPNetwork]] = {own: [ipaddress.ip_network(link_local(own))]}
    for ip in port.fixed_ips:
        by_mac[own].append(nft.network(str(nft.address(ip))))
    for ip, pair_mac in port.allowed_address_pairs:
        by_mac.setdefault(nft.mac(pair_mac) if pair_mac else own, []).append(nft.network(ip))
    macs: list[str] = []
    v4: list[str] = []
    v6: list[str] = []
    for m, nets in by_mac.items():
        if m != own:
            nets.append(ipaddress.ip_network(link_local(m)))
        macs.append(f"{dev} . {m}")
        for n in nft.collapse(nets):
            (v4 if n.version == 4 else v6).append(f"{dev} . {m} . {nft.prefix(n)}")
    return macs, v4, v6


def render_bridge(ports: Iterable[Port]) -> str:
    """The body of `table bridge cumulo_sg`: anti-spoofing and the port marks."""
    secured = _secured(ports)
    macs: list[str] = []
    v4: list[str] = []
    v6: list[str] = []
    for p in secured:
        m, a4, a6 = _port_addresses(p)
        macs += m
        v4 += a4
        v6 += a6
    marks = [f"{nft.ifname(p.device)} : {i}" for i, p in enumerate(secured, start=1)]
    return BRIDGE_BODY.substitute(secured=nft.elements(nft.ifname(p.device) for p in secured),
                                  macs=nft.elements(macs), addr4=nft.elements(v4), addr6=nft.elements(v6),
                                  marks=nft.elements(marks))


def _port_chain(port: Port, direction: str) -> str:
    jumps = "".join(f"\t\tjump {group_chain(g, direction)}\n" for g in sorted(set(port.security_groups), key=_hex))
    return PORT_CHAIN.substitute(
        name=port_chain(port.device, direction), nd=_ND_IN if direction == INGRESS else _ND_OUT,
        dhcp4="67 udp dport 68" if direction == INGRESS else "68 udp dport 67",
        dhcp6="547 udp dport 546" if direction == INGRESS else "546 udp dport 547", jumps=jumps,
        metadata="" if direction == INGRESS else METADATA_ALLOWANCE)


def _group_chain(group_id: str, rules: Iterable[Rule], direction: str) -> str:
    lines = "".join(f"\t\t{line}\n" for line in _group_rules(rules, direction))
    return GROUP_CHAIN.substitute(name=group_chain(group_id, direction), rules=lines)


def render_inet(fw: Firewall) -> str:
    """The body of `table inet cumulo_sg`: the ports' and the groups' chains, the member sets."""
    secured = _secured(fw.ports)
    groups = sorted({g for p in secured for g in p.security_groups}, key=_hex)
    remotes = sorted(_remote_groups(fw.rules, groups), key=_hex)
    sets = "".join(_set_def(g, v, fw.members.get(g, ())) for g in remotes for v in (4, 6))
    chains = "".join(_group_chain(g, fw.rules.get(g, ()), d) for g in groups for d in (INGRESS, EGRESS))
    chains += "".join(_port_chain(p, d) for p in secured for d in (INGRESS, EGRESS))
    egress = [f"{i} : jump {port_chain(p.device, EGRESS)}" for i, p in enumerate(secured, start=1)]
    ingress = [f"{i} : jump {port_chain(p.device, INGRESS)}" for i, p in enumerate(secured, start=1)]
    return INET_BODY.substitute(egress=nft.elements(egress), ingress=nft.elements(ingress), sets=sets, chains=chains)


def render(fw: Firewall) -> str:
    """The whole script: both tables replaced in one transaction."""
    return nft.replace_table("bridge", TABLE, render_bridge(fw.ports)) + nft.replace_table("inet", TABLE, render_inet(fw))


def render_group(group_id: str, rules: Iterable[Rule], members: Mapping[str, Iterable[str]]) -> str:
    """A group's rules changed: refill its two chains (and the member sets its rules name, from
    `members`), leaving every port's chain as it is. For a namespace that already has the tables."""
    rules = tuple(rules)
    out: list[str] = []
    for g in sorted(_remote_groups({group_id: rules}, [group_id]), key=_hex):
        out.append(render_members(g, members.get(g, ())))
    for d in (INGRESS, EGRESS):
        chain = group_chain(group_id, d)
        out.append(f"add chain inet {TABLE} {chain}\nflush chain inet {TABLE} {chain}\n")
        out.extend(f"add rule inet {TABLE} {chain} {line}\n" for line in _group_rules(rules, d))
    return "".join(out)


def render_members(group_id: str, addresses: Iterable[str]) -> str:
    """A remote group's members changed: refill its two sets."""
    addresses = tuple(addresses)
    out: list[str] = []
    for v in (4, 6):
        name = member_set(group_id, v)
        kind = "ipv4_addr" if v == 4 else "ipv6_addr"
        out.append(f"add set inet {TABLE} {name} {{ type {kind}; flags interval; }}\nflush set inet {TABLE} {name}\n")
        elems = _members(addresses, v)
        if elems:
            out.append(f"add element inet {TABLE} {name} {{ {', '.join(elems)} }}\n")
    return "".join(out)


async def _bridge_netfilter_on(ns: str) -> None:
    """br_netfilter hands bridged IPv4/IPv6 to the inet hooks (and so to conntrack) in `ns`."""
    def work() -> None:
        for name in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
            with open(f"/proc/sys/net/bridge/{name}", "w") as fh:
                fh.write("1\n")

    await netns.run_in(ns, work)


async def apply(ns: str, fw: Firewall) -> None:
    """Make the namespace's security group tables exactly `fw` (one transaction)."""
    await _bridge_netfilter_on(ns)
    await nft.apply(ns, render(fw))


async def apply_script(ns: str, script: str) -> None:
    """Apply a `render_group` or `render_members` script."""
    await nft.apply(ns, script)


async def remove(ns: str) -> None:
    """Both tables gone; a missing namespace or table is fine."""
    if not netns.exists(ns):
        return
    await nft.apply(ns, nft.delete_table_script("bridge", TABLE) + nft.delete_table_script("inet", TABLE))
