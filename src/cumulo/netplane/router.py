"""A Neutron router on the host: the namespace `crtr-<router uuid>`, veths into its networks'
namespaces, NAT and a small filter in nftables.

- an interface (a network:router_interface port P on a tenant subnet): the veth `qr<P hex[:12]>`
  in crtr-R with the port's MAC and gateway address, its peer `tap<P hex[:11]>` on the network's
  `br0`;
- the gateway (a network:router_gateway port G on the external network): `qg<G hex[:12]>` in
  crtr-R, peer `tap<G hex[:11]>` on the external network's bridge; it holds the gateway address
  and every floating IP (/32), and the default route goes via the external subnet's gateway;
- `table ip cumulo_nat`: floating IPs as 1:1 DNAT (prerouting and the router's own output) and
  SNAT (out of qg), SNAT of everything else out of qg to the gateway address when enable_snat,
  and SNAT to the gateway address of a server reaching another's floating IP from inside
  (hairpin; Neutron does the same), so the reply comes back through the router;
- `table inet cumulo`: tenants may open connections out of qg only to the external subnet
  itself (nothing routes beyond it: Cumulo never NATs to the outside world), and never to the
  protected addresses (the host's end of the external link, where the cloud's own services
  listen); replies and connections from the external side (floating IPs) pass.

`ensure` makes the namespace match the description (links added, re-addressed or removed, both
tables replaced in one transaction) and is idempotent; `delete` removes the namespace, which
takes every veth, peer ends included, with it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass
from string import Template

from cumulo import host
from cumulo.errors import Invalid
from cumulo.host.revert import Reverter
from cumulo.netplane import bridge, netns, nft
from cumulo.netplane.netns import IP

NAT_TABLE = "cumulo_nat"
FILTER_TABLE = "cumulo"
_EXT_MARK = "0x4000"


@dataclass(frozen=True)
class Interface:
    port_id: str
    network_ns: str
    mac: str
    addresses: tuple[str, ...]  # CIDR, e.g. "10.0.0.1/24"

    @property
    def device(self) -> str:
        return "qr" + _hex(self.port_id)[:12]

    @property
    def peer(self) -> str:
        return "tap" + _hex(self.port_id)[:11]


@dataclass(frozen=True)
class Gateway:
    port_id: str
    network_ns: str
    mac: str
    addresses: tuple[str, ...]  # CIDR, e.g. "172.24.4.10/24"
    nexthop: str | None = None  # the external subnet's gateway: the host's end of the link
    enable_snat: bool = True

    @property
    def device(self) -> str:
        return "qg" + _hex(self.port_id)[:12]

    @property
    def peer(self) -> str:
        return "tap" + _hex(self.port_id)[:11]


@dataclass(frozen=True)
class FloatingIp:
    floating_ip: str
    fixed_ip: str


@dataclass(frozen=True)
class Router:
    id: str
    interfaces: tuple[Interface, ...] = ()
    gateway: Gateway | None = None
    floating_ips: tuple[FloatingIp, ...] = ()
    protected: tuple[str, ...] = ()  # more addresses tenants may not reach (the gateway's nexthop always is)

    @property
    def ns(self) -> str:
        return netns.router_ns(self.id)


def _hex(ident: str) -> str:
    try:
        return uuidlib.UUID(str(ident)).hex
    except ValueError:
        raise Invalid(f"not a uuid: {ident!r}") from None


NAT_BODY = Template("""\
\tmap fip_dnat {
\t\ttype ipv4_addr : ipv4_addr
\t\t$dnat
\t}
\tmap fip_snat {
\t\ttype ipv4_addr : ipv4_addr
\t\t$snat
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
$mark\t\tdnat to ip daddr map @fip_dnat
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tdnat to ip daddr map @fip_dnat
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
$postrouting\t}
""")

FILTER_BODY = Template("""\
\tset onlink4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\t$onlink
\t}
\tset protected4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\t$protected
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tct state established,related accept
$forward\t}
""")


def _fip_pairs(router: Router) -> list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]]:
    out = []
    seen: set[ipaddress.IPv4Address] = set()
    for f in router.floating_ips:
        fip, fixed = nft.address(f.floating_ip), nft.address(f.fixed_ip)
        if not isinstance(fip, ipaddress.IPv4Address) or not isinstance(fixed, ipaddress.IPv4Address):
            raise Invalid("floating IPs are IPv4")
        if fip in seen:
            raise Invalid(f"floating IP {fip} twice")
        seen.add(fip)
        out.append((fip, fixed))
    return out


def _gateway_ip(gw: Gateway) -> ipaddress.IPv4Address | None:
    for a in gw.addresses:
        iface = ipaddress.ip_interface(a)
        if isinstance(iface, ipaddress.IPv4Interface):
            return iface.ip
    return None


def render_nat(router: Router) -> str:
    """The body of `table ip cumulo_nat`."""
    gw = router.gateway
    pairs = _fip_pairs(router) if gw else []
    post = ""
    mark = ""
    gw_ip = _gateway_ip(gw) if gw else None
    if gw is not None:
        qg = nft.ifname(gw.device)
        mark = f"\t\tiifname {qg} meta mark set {_EXT_MARK}\n"
        post += f"\t\toifname {qg} snat to ip saddr map @fip_snat\n"
        if gw_ip is not None:
            if gw.enable_snat:
                post += f"\t\toifname {qg} snat to {gw_ip}\n"
            post += f"\t\toifname != {qg} meta mark != {_EXT_MARK} ct status dnat snat to {gw_ip}\n"
    return NAT_BODY.substitute(dnat=nft.elements(f"{f} : {x}" for f, x in pairs),
                               snat=nft.elements(f"{x} : {f}" for f, x in pairs), mark=mark, postrouting=post)


def render_filter(router: Router) -> str:
    """The body of `table inet cumulo`."""
    gw = router.gateway
    forward = ""
    onlink: list[nft.IPNetwork] = []
    protected = [nft.network(str(nft.address(a))) for a in router.protected]
    if gw is not None:
        qg = nft.ifname(gw.device)
        onlink = [ipaddress.ip_interface(a).network for a in gw.addresses if ipaddress.ip_interface(a).version == 4]
        if gw.nexthop:
            protected.append(nft.network(str(nft.address(gw.nexthop))))
        forward += f"\t\tiifname != {qg} ip daddr @protected4 drop\n"
        forward += f"\t\tiifname != {qg} oifname {qg} ip daddr != @onlink4 drop\n"
        forward += f"\t\tiifname != {qg} oifname {qg} meta nfproto ipv6 drop\n"
    v4 = [n for n in nft.collapse(protected) if n.version == 4]
    return FILTER_BODY.substitute(onlink=nft.elements(nft.prefix(n) for n in nft.collapse(onlink)),
                                  protected=nft.elements(nft.prefix(n) for n in v4), forward=forward)


def render(router: Router) -> str:
    return nft.replace_table("ip", NAT_TABLE, render_nat(router)) + nft.replace_table("inet", FILTER_TABLE,
                                                                                      render_filter(router))


async def _links(ns: str) -> dict[str, dict[str, object]]:
    return {str(d.get("ifname")): d for d in await bridge.links(ns)}


async def _addresses(ns: str, dev: str) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    res = await host.run([IP, "-n", ns, "-j", "addr", "show", "dev", dev], timeout=30)
    out: set[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = set()
    for link in json.loads(res.text or "[]"):
        for info in link.get("addr_info", []):
            if info.get("scope") == "global" and info.get("local"):
                out.add(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
    return out


async def sync_addresses(ns: str, dev: str, want: Iterable[str]) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """Make the global addresses of `dev` exactly `want`; returns the ones added."""
    wanted = {ipaddress.ip_interface(a) for a in want}
    have = await _addresses(ns, dev)
    added = []
    for a in sorted(wanted - have, key=str):
        await host.run([IP, "-n", ns, "addr", "replace", str(a), "dev", dev], timeout=30)
        added.append(a)
    for a in have - wanted:
        await host.run([IP, "-n", ns, "addr", "del", str(a), "dev", dev], timeout=30, check=False)
    return added


async def _plug(router_ns: str, dev: str, mac: str, network_ns: str, peer: str, mtu: int | None) -> None:
    """The veth `dev` in the router with its peer on the network's bridge (idempotent)."""
    nft.mac(mac)
    await bridge.ensure(network_ns)
    async with Reverter() as revert:
        if await bridge.link(router_ns, dev) is None:
            await bridge.delete_link(network_ns, peer)  # a stale peer of an earlier router
            await host.run([IP, "-n", router_ns, "link", "add", dev, "address", mac, "type", "veth",
                            "peer", "name", peer, "netns", network_ns], timeout=30)
            revert.add(bridge.delete_link, router_ns, dev)
        link = await bridge.link(network_ns, bridge.BRIDGE)
        mtu = mtu or int(str((link or {}).get("mtu") or 1500))
        await host.run([IP, "-n", network_ns, "link", "set", peer, "master", bridge.BRIDGE, "mtu", str(mtu), "up"],
                       timeout=30)
        await host.run([IP, "-n", router_ns, "link", "set", dev, "address", mac, "mtu", str(mtu), "up"], timeout=30)
        revert.commit()


def _sysctls() -> None:
    for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        with open(path, "w") as fh:
            fh.write("1\n")


def _garp_sync(dev: str, mac: str, ips: list[str]) -> None:
    """Gratuitous ARP for addresses just added (neighbours drop a stale MAC for a reused floating IP)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((dev, 0x0806))
        for ip in ips:
            addr = socket.inet_aton(ip)
            frame = b"\xff" * 6 + hw + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + addr \
                + b"\x00" * 6 + addr
            sock.send(frame)


async def ensure(router: Router, *, mtu: int | None = None) -> None:
    """Make the router's namespace match `router` (idempotent)."""
    ns = router.ns
    render(router)  # every value checked before anything on the host changes
    async with Reverter() as revert:
        if await netns.ensure(ns):
            revert.add(netns.delete, ns)
        await netns.run_in(ns, _sysctls)
        for i in router.interfaces:
            await _plug(ns, i.device, i.mac, i.network_ns, i.peer, mtu)
            await sync_addresses(ns, i.device, i.addresses)
        gw = router.gateway
        fresh: list[str] = []
        if gw is not None:
            await _plug(ns, gw.device, gw.mac, gw.network_ns, gw.peer, mtu)
            fips = [f"{f}/32" for f, _ in _fip_pairs(router)]
            added = await sync_addresses(ns, gw.device, [*gw.addresses, *fips])
            fresh = [str(a.ip) for a in added if a.version == 4]
            if gw.nexthop:
                await host.run([IP, "-n", ns, "route", "replace", "default", "via", str(nft.address(gw.nexthop)),
                                "dev", gw.device], timeout=30)
        wanted = {i.device for i in router.interfaces} | ({gw.device} if gw else set())
        for name in await _links(ns):
            if name.startswith(("qr", "qg")) and name not in wanted:
                await bridge.delete_link(ns, name)
        await nft.apply(ns, render(router))
        revert.commit()
    if gw is not None and fresh:
        try:
            await netns.run_in(ns, lambda: _garp_sync(gw.device, gw.mac, fresh))
        except OSError:
            pass  # best effort: neighbours learn the new MAC when their entry goes stale anyway


async def delete(router_id: str) -> bool:
    """The router's namespace and every veth of it gone (idempotent)."""
    return await netns.delete(netns.router_ns(router_id))
