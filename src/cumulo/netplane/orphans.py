"""What Cumulo's data plane has on this host, and what of it nothing owns any more.

`discover` lists the `cnet-`/`crtr-` namespaces, the devices on each network's bridge, the
nftables tables Cumulo made (named `cumulo...`, in its namespaces and, should one ever appear
there, in the root namespace), the dnsmasq processes and DHCP directories under the state dir,
and the external networks' host links (`cxh...`). `orphans` compares that with the ids the
network agent read from the DB (a pure function) and `reap` removes what is left over. The runc
driver's `cumulo-<uuid>` namespaces are never looked at.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cumulo.netplane import bridge, dhcp, external, metadata, netns, nft, router, secgroups

# The tables each kind of namespace may hold; any other `cumulo...` table is an orphan.
NETWORK_TABLES = frozenset({("bridge", secgroups.TABLE), ("inet", secgroups.TABLE), ("inet", "cumulo"),
                            ("bridge", metadata.TABLE)})
ROUTER_TABLES = frozenset({("ip", router.NAT_TABLE), ("inet", router.FILTER_TABLE)})


@dataclass(frozen=True)
class Inventory:
    networks: tuple[str, ...] = ()  # network ids with a cnet- namespace
    routers: tuple[str, ...] = ()  # router ids with a crtr- namespace
    bridge_ports: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # network id -> devices on br0
    tables: Mapping[str | None, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # ns (None: root)
    dnsmasq: Mapping[str, int] = field(default_factory=dict)  # network id -> pid
    dhcp_dirs: tuple[str, ...] = ()
    host_links: tuple[str, ...] = ()  # cxh... in the root namespace


def _id(name: str, prefix: str) -> str | None:
    try:
        return str(uuidlib.UUID(name[len(prefix):]))
    except ValueError:
        return None


async def discover(dhcp_dir: Path) -> Inventory:
    net_ns = await netns.list_names(netns.NETWORK_PREFIX)
    rtr_ns = await netns.list_names(netns.ROUTER_PREFIX)
    networks = tuple(i for i in (_id(n, netns.NETWORK_PREFIX) for n in net_ns) if i)
    routers = tuple(i for i in (_id(n, netns.ROUTER_PREFIX) for n in rtr_ns) if i)
    tables: dict[str | None, tuple[tuple[str, str], ...]] = {None: tuple(await nft.cumulo_tables(None))}
    ports: dict[str, tuple[str, ...]] = {}
    for n in networks:
        ns = netns.network_ns(n)
        tables[ns] = tuple(await nft.cumulo_tables(ns))
        ports[n] = tuple(await bridge.ports(ns))
    for r in routers:
        ns = netns.router_ns(r)
        tables[ns] = tuple(await nft.cumulo_tables(ns))
    return Inventory(networks=networks, routers=routers, bridge_ports=ports, tables=tables,
                     dnsmasq=await dhcp.list_running(dhcp_dir), dhcp_dirs=tuple(await dhcp.list_dirs(dhcp_dir)),
                     host_links=tuple(await external.list_host_links()))


def orphans(found: Inventory, *, networks: Iterable[str], routers: Iterable[str],
            external_networks: Iterable[str] = (), devices: Mapping[str, Iterable[str]] | None = None) -> Inventory:
    """The part of `found` that the DB does not own. `networks`, `routers`: the ids the host should
    have; `external_networks`: those with a host link; `devices`: per network id the device names
    that belong on its bridge (ports, router and DHCP ends, the host link); None skips that check."""
    nets, rtrs = {str(n) for n in networks}, {str(r) for r in routers}
    links = {external.host_device(n) for n in external_networks}
    tables: dict[str | None, tuple[tuple[str, str], ...]] = {}
    for ns, have in found.tables.items():
        allowed = frozenset() if ns is None else NETWORK_TABLES if ns.startswith(netns.NETWORK_PREFIX) else ROUTER_TABLES
        extra = tuple(t for t in have if t not in allowed)
        if extra:
            tables[ns] = extra
    ports: dict[str, tuple[str, ...]] = {}
    if devices is not None:
        for n, have_ports in found.bridge_ports.items():
            if n in nets:
                keep = set(devices.get(n, ()))
                extra_ports = tuple(d for d in have_ports if d not in keep)
                if extra_ports:
                    ports[n] = extra_ports
    return Inventory(
        networks=tuple(n for n in found.networks if n not in nets),
        routers=tuple(r for r in found.routers if r not in rtrs),
        bridge_ports=ports,
        tables={ns: t for ns, t in tables.items() if ns is None or _owned_ns(ns, nets, rtrs)},
        dnsmasq={n: p for n, p in found.dnsmasq.items() if n not in nets},
        dhcp_dirs=tuple(d for d in found.dhcp_dirs if d not in nets),
        host_links=tuple(h for h in found.host_links if h not in links),
    )


def _owned_ns(ns: str, nets: set[str], rtrs: set[str]) -> bool:
    """Whether the namespace stays (its stray tables are reaped one by one; a gone one goes whole)."""
    if ns.startswith(netns.NETWORK_PREFIX):
        return ns[len(netns.NETWORK_PREFIX):] in nets
    return ns[len(netns.ROUTER_PREFIX):] in rtrs


async def reap(dhcp_dir: Path, stale: Inventory) -> None:
    """Remove everything in `stale` (an `orphans` result): dnsmasq first, then namespaces."""
    for n in sorted(set(stale.dnsmasq) | set(stale.dhcp_dirs)):
        await dhcp.stop(dhcp_dir, n)
    for n in stale.networks:
        await netns.delete(netns.network_ns(n))
    for r in stale.routers:
        await netns.delete(netns.router_ns(r))
    for n, devs in stale.bridge_ports.items():
        for d in devs:
            await bridge.delete_link(netns.network_ns(n), d)
    for ns, tables in stale.tables.items():
        for family, name in tables:
            await nft.delete_table(ns, family, name)
    for h in stale.host_links:
        await external.delete_host_device(h)
