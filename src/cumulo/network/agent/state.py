"""What one host's data plane should be, read from the DB: a `HostPlan` (no host change here).

- the ports bound to the host (binding:host_id, compute ports and the like, not network:* ports)
  and so their networks; on the L3 host (the local one) also every router, the networks of their
  interfaces and gateways, and every external network (with its host link unless turned off);
- per network: its admin state (admin_state_up: its bridge up or down), its subnets, the devices that belong on its bridge (bound ports' taps, router
  ends, the DHCP port's end, the host link's end), the firewall (secgroups.Firewall of the bound
  ports with their groups' rules and remote groups' member addresses), DHCP (every port of the
  network by MAC, served from the host's network:dhcp port);
- per bound port the NicSpec fields the compute driver plugs.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.hosts.models import compute_nodes
from cumulo.netplane import dhcp, external, netns, router, secgroups, vxlan
from cumulo.netplane.bridge import BRIDGE
from cumulo.network.l3_ports import ROUTER_GATEWAY, ROUTER_INTERFACE
from cumulo.network.models import (
    floating_ips,
    ip_allocations,
    networks,
    port_security_groups,
    ports,
    routers,
    security_group_rules,
    subnets,
)

DHCP_OWNER = "network:dhcp"
METADATA_ROUTE = "169.254.169.254/32"


def dhcp_device_id(host: str) -> str:
    """The device_id of a host's DHCP port (one per network and host; Neutron's reads dhcp<host id>-<net>)."""
    return f"dhcp-{host}"


@dataclass(frozen=True)
class NetworkPlan:
    id: str
    mtu: int = 1500
    external: bool = False
    subnets: tuple[dhcp.Subnet, ...] = ()
    devices: frozenset[str] = frozenset()
    firewall: secgroups.Firewall = field(default_factory=secgroups.Firewall)
    dhcp_hosts: tuple[dhcp.Host, ...] = ()
    dhcp_port: dhcp.Interface | None = None
    host_link: tuple[str, ...] | None = None  # the external host link's addresses, None: no link
    admin_state_up: bool = True  # False: the bridge is down (no traffic crosses it)
    tunnel: vxlan.Tunnel | None = None  # the VXLAN port to the other hosts carrying it (scale out)
    uplink: str | None = None  # the host's interface on the network's physical network (netplane.physnet)

    @property
    def ns(self) -> str:
        return netns.network_ns(self.id)

    @property
    def wants_dhcp(self) -> bool:
        return any(s.enable_dhcp and ipaddress.ip_network(s.cidr).version == 4 for s in self.subnets)

    @property
    def dhcp_config(self) -> dhcp.Config:
        return dhcp.Config(network_id=self.id, subnets=self.subnets, hosts=self.dhcp_hosts, mtu=self.mtu)


@dataclass(frozen=True)
class HostPlan:
    host: str
    networks: Mapping[str, NetworkPlan] = field(default_factory=dict)
    routers: tuple[router.Router, ...] = ()
    nics: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # bound port id -> NicSpec fields

    @property
    def external_links(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.networks.values() if n.host_link is not None)

    def devices(self) -> dict[str, frozenset[str]]:
        return {n.id: n.devices for n in self.networks.values()}


def _pairs(value: Any) -> tuple[tuple[str, str | None], ...]:
    out = []
    for p in value or []:
        if isinstance(p, dict) and p.get("ip_address"):
            out.append((str(p["ip_address"]), p.get("mac_address")))
    return tuple(out)


def _dhcp_opts(value: Any) -> tuple[tuple[str, str, int], ...]:
    out = []
    for o in value or []:
        if isinstance(o, dict) and o.get("opt_name") and o.get("opt_value") is not None:
            out.append((str(o["opt_name"]), str(o["opt_value"]), int(o.get("ip_version") or 4)))
    return tuple(out)


def _subnet(row: Any) -> dhcp.Subnet:
    routes = tuple((str(r["destination"]), str(r["nexthop"])) for r in (row.host_routes or [])
                   if isinstance(r, dict) and r.get("destination") and r.get("nexthop"))
    return dhcp.Subnet(id=row.id, cidr=row.cidr, gateway_ip=row.gateway_ip, enable_dhcp=bool(row.enable_dhcp),
                       dns_nameservers=tuple(str(d) for d in (row.dns_nameservers or [])), host_routes=routes,
                       ipv6_address_mode=row.ipv6_address_mode)


def metadata_nexthops(subnet_of: Mapping[str, dhcp.Subnet], port_rows: Iterable[Any],
                      ips: Mapping[str, list[tuple[str, str]]], host: str | None) -> dict[str, str]:
    """Subnet id -> the DHCP port's address there, for each isolated IPv4 subnet with DHCP: the
    metadata route `169.254.169.254/32 via` it, as Neutron's DHCP agent hands it out with
    enable_isolated_metadata (option 121, and in the NicSpec routes, so network_data.json has it
    too). Isolated as Neutron says it: no router interface holds the subnet's gateway address
    (or the subnet has none). The DHCP port is `host`'s, else any on the network; the metadata
    listener of the network's namespace answers on it (netplane/metadata.py)."""
    routed: set[str] = set()
    dhcp_ip: dict[str, str] = {}
    for p in port_rows:
        owner = p.device_owner or ""
        for subnet_id, ip in ips.get(p.id, ()):
            s = subnet_of.get(subnet_id)
            if s is None:
                continue
            if owner == ROUTER_INTERFACE and s.gateway_ip and ip == s.gateway_ip:
                routed.add(subnet_id)
            elif owner == DHCP_OWNER and (subnet_id not in dhcp_ip or p.device_id == dhcp_device_id(host or "")):
                dhcp_ip[subnet_id] = ip
    return {sid: ip for sid, ip in dhcp_ip.items()
            if sid not in routed and subnet_of[sid].enable_dhcp and ipaddress.ip_network(subnet_of[sid].cidr).version == 4}


def with_metadata_routes(subnet_of: Mapping[str, dhcp.Subnet], port_rows: Iterable[Any],
                         ips: Mapping[str, list[tuple[str, str]]], host: str | None) -> dict[str, dhcp.Subnet]:
    """`subnet_of` with each isolated subnet's metadata_nexthop set (see metadata_nexthops)."""
    hops = metadata_nexthops(subnet_of, port_rows, ips, host)
    return {sid: replace(s, metadata_nexthop=hops.get(sid)) for sid, s in subnet_of.items()}


def _cidr(ip: str, subnet: dhcp.Subnet | None) -> str:
    prefix = ipaddress.ip_network(subnet.cidr).prefixlen if subnet else (32 if ":" not in ip else 128)
    return f"{ip}/{prefix}"


def nic_fields(port: Any, ips: list[tuple[str, str]], subnet_of: Mapping[str, dhcp.Subnet], mtu: int) -> dict[str, Any]:
    """The NicSpec of a bound port, as a dict of its fields (compute.drivers.base.NicSpec); keys
    ending in "_" are the agent's own (stripped before the dict leaves it)."""
    addresses: list[str] = []
    gateway: str | None = None
    routes: list[list[str]] = []
    dns: list[str] = []
    for subnet_id, ip in ips:
        s = subnet_of.get(subnet_id)
        addresses.append(_cidr(ip, s))
        if s is None:
            continue
        if gateway is None and s.gateway_ip and ipaddress.ip_address(s.gateway_ip).version == ipaddress.ip_address(ip).version:
            gateway = s.gateway_ip
        routes.extend([d, h] for d, h in s.host_routes)
        if s.metadata_nexthop and [METADATA_ROUTE, s.metadata_nexthop] not in routes:
            routes.append([METADATA_ROUTE, s.metadata_nexthop])
        dns.extend(d for d in s.dns_nameservers if d not in dns)
    return {"port_id": port.id, "mac": port.mac_address, "netns": netns.network_ns(port.network_id), "bridge": BRIDGE,
            "device": netns.port_device(port.id), "addresses": addresses, "gateway": gateway, "routes": routes,
            "mtu": int(mtu), "dns": dns, "network_id_": port.network_id}


def carriers(net: Any, on_net: Iterable[Any], l3_host: str | None) -> set[str]:
    """The hosts that carry a network: those with ports bound there (servers', DHCP ports), and the
    L3 host when the network is external or has a router port."""
    out = {str(p.binding_host_id) for p in on_net if p.binding_host_id}
    out |= {str(p.device_id)[len("dhcp-"):] for p in on_net
            if p.device_owner == DHCP_OWNER and str(p.device_id or "").startswith("dhcp-")}
    if l3_host and (net.external or any(p.device_owner in (ROUTER_INTERFACE, ROUTER_GATEWAY) for p in on_net)):
        out.add(l3_host)
    return out


FLAT_TYPES = (None, "", "flat")


def uplink_of(net: Any, physnets: Mapping[str, str]) -> str | None:
    """The host's interface a flat network on a physical network is bridged to (None: none mapped)."""
    physnet = net.provider_physical_network
    if not physnet or net.provider_network_type not in FLAT_TYPES:
        return None
    return physnets.get(str(physnet))


async def host_ips(conn: AsyncConnection) -> dict[str, set[str]]:
    """Host -> its underlay addresses (compute_nodes.host_ip, loopback left out)."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in await conn.execute(sa.select(compute_nodes.c.host, compute_nodes.c.host_ip).distinct()):
        if r.host_ip and not ipaddress.ip_address(r.host_ip).is_loopback:
            out[str(r.host)].add(str(r.host_ip))
    return out


async def read_plan(conn: AsyncConnection, host: str, *, l3: bool, external_link: bool, underlay_ip: str = "",
                    l3_host: str | None = None, physnets: Mapping[str, str] | None = None) -> HostPlan:
    """The plan of `host` from the DB (l3: the host carries routers and external networks).
    `underlay_ip`: the host's underlay address; with it, each vxlan network gets its tunnel to
    the other hosts carrying it (`l3_host` among them where it carries the network). `physnets`:
    the host's interface per physical network; a flat network on one gets it as its uplink
    (one network per interface: the first by id)."""
    nets = {r.id: r for r in await conn.execute(sa.select(networks))}
    subnet_rows = list(await conn.execute(sa.select(subnets).order_by(subnets.c.created_at, subnets.c.id)))
    port_rows = list(await conn.execute(sa.select(ports).order_by(ports.c.created_at, ports.c.id)))
    ips: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for a in await conn.execute(sa.select(ip_allocations).order_by(ip_allocations.c.id)):
        ips[a.port_id].append((a.subnet_id, a.ip_address))
    subnet_of = with_metadata_routes({r.id: _subnet(r) for r in subnet_rows}, port_rows, ips, host)
    subnets_by_net: dict[str, list[dhcp.Subnet]] = defaultdict(list)
    for r in subnet_rows:
        subnets_by_net[r.network_id].append(subnet_of[r.id])
    groups_of: dict[str, list[str]] = defaultdict(list)
    members_of: dict[str, list[str]] = defaultdict(list)
    for b in await conn.execute(sa.select(port_security_groups)):
        groups_of[b.port_id].append(b.security_group_id)
        members_of[b.security_group_id].append(b.port_id)

    bound = [p for p in port_rows if p.binding_host_id == host and not (p.device_owner or "").startswith("network:")]
    wanted: set[str] = {p.network_id for p in bound}
    router_rows = list(await conn.execute(sa.select(routers).order_by(routers.c.id))) if l3 else []
    by_id = {p.id: p for p in port_rows}
    router_ports = [p for p in port_rows if l3 and p.device_owner in (ROUTER_INTERFACE, ROUTER_GATEWAY)
                    and any(r.id == p.device_id for r in router_rows)]
    wanted |= {p.network_id for p in router_ports}
    if l3:
        wanted |= {n.id for n in nets.values() if n.external}
    wanted &= set(nets)

    plans: dict[str, NetworkPlan] = {}
    nics: dict[str, dict[str, Any]] = {}
    ips_of = await host_ips(conn) if underlay_ip else {}
    uplinks_taken: set[str] = set()
    for net_id in sorted(wanted):
        net = nets[net_id]
        on_net = [p for p in port_rows if p.network_id == net_id]
        here = [p for p in bound if p.network_id == net_id]
        devices = {netns.port_device(p.id) for p in here}
        devices |= {netns.port_device(p.id) for p in router_ports if p.network_id == net_id}
        dhcp_rows = [p for p in on_net if p.device_owner == DHCP_OWNER and p.device_id == dhcp_device_id(host)]
        dhcp_port = None
        if dhcp_rows:
            d = dhcp_rows[0]
            dhcp_port = dhcp.Interface(port_id=d.id, mac=d.mac_address,
                                       addresses=tuple(_cidr(ip, subnet_of.get(s)) for s, ip in ips[d.id]))
            devices.add(dhcp_port.bridge_end)
        fw_ports = []
        rules: dict[str, tuple[secgroups.Rule, ...]] = {}
        for p in here:
            fw_ports.append(secgroups.Port(
                id=p.id, device=netns.port_device(p.id), mac=p.mac_address, fixed_ips=tuple(ip for _, ip in ips[p.id]),
                allowed_address_pairs=_pairs(p.allowed_address_pairs),
                port_security_enabled=bool(p.port_security_enabled), security_groups=tuple(sorted(groups_of[p.id]))))
            nics[p.id] = nic_fields(p, ips[p.id], subnet_of, net.mtu)
        group_ids = sorted({g for fp in fw_ports if fp.port_security_enabled for g in fp.security_groups})
        remote: set[str] = set()
        if group_ids:
            for r in await conn.execute(sa.select(security_group_rules)
                                        .where(security_group_rules.c.security_group_id.in_(group_ids))
                                        .order_by(security_group_rules.c.id)):
                rule = secgroups.Rule(direction=r.direction, ethertype=r.ethertype, protocol=r.protocol,
                                      port_range_min=r.port_range_min, port_range_max=r.port_range_max,
                                      remote_ip_prefix=r.remote_ip_prefix, remote_group_id=r.remote_group_id)
                rules[r.security_group_id] = (*rules.get(r.security_group_id, ()), rule)
                if r.remote_group_id:
                    remote.add(r.remote_group_id)
        for g in group_ids:
            rules.setdefault(g, ())
        members = {g: tuple(sorted({ip for pid in members_of.get(g, []) for _, ip in ips.get(pid, [])}))
                   for g in sorted(remote)}
        hosts = tuple(dhcp.Host(port_id=p.id, mac=p.mac_address, fixed_ips=tuple((s, ip) for s, ip in ips[p.id]),
                                extra_dhcp_opts=_dhcp_opts(p.extra_dhcp_opts))
                      for p in on_net if ips[p.id] and p.device_owner != DHCP_OWNER)
        link = None
        if l3 and external_link and net.external:
            link = tuple(f"{s.gateway_ip}/{ipaddress.ip_network(s.cidr).prefixlen}" for s in subnets_by_net[net_id]
                         if s.gateway_ip and ipaddress.ip_network(s.cidr).version == 4)
            devices.add(external.ns_device(net_id))
        tunnel = None
        if underlay_ip and net.provider_network_type == "vxlan" and net.provider_segmentation_id:
            peers = {ip for h in carriers(net, on_net, l3_host or (host if l3 else None)) - {host}
                     for ip in ips_of.get(h, ())} - {underlay_ip}
            macs = tuple(sorted(  # l2population: each port on another host reached at that host
                (str(p.mac_address).lower(), min(there))
                for p in on_net if p.mac_address and p.binding_host_id and str(p.binding_host_id) != host
                for there in [set(ips_of.get(str(p.binding_host_id), ())) - {underlay_ip}] if there))
            tunnel = vxlan.Tunnel(vni=int(net.provider_segmentation_id), local=underlay_ip, peers=tuple(sorted(peers)),
                                  macs=macs)
        uplink = uplink_of(net, physnets or {})
        if uplink is not None and uplink not in uplinks_taken:
            uplinks_taken.add(uplink)
            devices.add(uplink)
        else:
            uplink = None
        plans[net_id] = NetworkPlan(
            id=net_id, mtu=int(net.mtu), external=bool(net.external), subnets=tuple(subnets_by_net[net_id]),
            devices=frozenset(devices), firewall=secgroups.Firewall(ports=tuple(fw_ports), rules=rules, members=members),
            dhcp_hosts=hosts, dhcp_port=dhcp_port, host_link=link, admin_state_up=bool(net.admin_state_up),
            tunnel=tunnel, uplink=uplink)

    out_routers = []
    fips = list(await conn.execute(sa.select(floating_ips).where(floating_ips.c.port_id.is_not(None))
                                   .order_by(floating_ips.c.floating_ip_address))) if l3 else []
    for r in router_rows:
        interfaces = tuple(
            router.Interface(port_id=p.id, network_ns=netns.network_ns(p.network_id), mac=p.mac_address,
                             addresses=tuple(_cidr(ip, subnet_of.get(s)) for s, ip in ips[p.id]))
            for p in router_ports if p.device_id == r.id and p.device_owner == ROUTER_INTERFACE)
        gateway = None
        gw = by_id.get(r.gw_port_id) if r.gw_port_id else None
        if gw is not None and gw.network_id in nets:
            nexthop = next((subnet_of[s].gateway_ip for s, _ in ips[gw.id]
                            if s in subnet_of and subnet_of[s].gateway_ip
                            and ipaddress.ip_network(subnet_of[s].cidr).version == 4), None)
            gateway = router.Gateway(port_id=gw.id, network_ns=netns.network_ns(gw.network_id), mac=gw.mac_address,
                                     addresses=tuple(_cidr(ip, subnet_of.get(s)) for s, ip in ips[gw.id]),
                                     nexthop=nexthop, enable_snat=bool(r.enable_snat))
        floating = tuple(router.FloatingIp(floating_ip=f.floating_ip_address, fixed_ip=f.fixed_ip_address)
                         for f in fips if f.router_id == r.id and f.fixed_ip_address and gateway is not None)
        out_routers.append(router.Router(id=r.id, interfaces=interfaces, gateway=gateway, floating_ips=floating))
    return HostPlan(host=host, networks=plans, routers=tuple(out_routers), nics=nics)
