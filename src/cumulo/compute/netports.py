"""What compute needs of the network service and of the network agents, and the pure renderings of
ports into Nova's shapes.

Compute and network are sibling packages that never import each other: compute names its narrow
needs here as Protocols, and the assembly in runtime hands over the network service (IPAM, the DB;
Nova calls Neutron's API for this) and the network agents' typed client (plug/unplug on a host).

The server's ports are recorded in its system_metadata: `network_ports` (ids, in NIC order) and
`user_ports` (the ports the user brought: on delete these are only detached, the others deleted).
The `addresses` column is Nova's info cache: refreshed from the ports whenever they change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

from cumulo.context import RequestContext

PORTS_KEY = "network_ports"
USER_PORTS_KEY = "user_ports"


class NetworkPorts(Protocol):
    """The network service's calls compute makes (cumulo.network.service.NetworkService has them)."""

    def list_networks(self, ctx: RequestContext) -> Awaitable[list[dict[str, Any]]]: ...

    def get_network(self, ctx: RequestContext, network_id: str) -> Awaitable[dict[str, Any]]: ...

    def get_port(self, ctx: RequestContext, port_id: str) -> Awaitable[dict[str, Any]]: ...

    def update_port(self, ctx: RequestContext, port_id: str, item: dict[str, Any]) -> Awaitable[dict[str, Any]]: ...

    def delete_port(self, ctx: RequestContext, port_id: str) -> Awaitable[None]: ...

    def allocate_ports_for_server(
        self, ctx: RequestContext, instance_uuid: str, requested: Sequence[dict[str, Any]]
    ) -> Awaitable[list[dict[str, Any]]]: ...

    def list_floatingips(self, ctx: RequestContext) -> Awaitable[list[dict[str, Any]]]: ...

    def update_floatingip(self, ctx: RequestContext, fip_id: str, item: dict[str, Any]) -> Awaitable[dict[str, Any]]: ...

    def ports_of_device(self, device_id: str) -> Awaitable[list[dict[str, Any]]]: ...

    def release_ports_of_device(self, device_id: str, *, keep: Sequence[str] = ()) -> Awaitable[None]: ...

    def addresses_of_devices(self, ctx: RequestContext, device_ids: Sequence[str]) -> Awaitable[dict[str, Any]]: ...

    def get_auto_allocated_topology(self, ctx: RequestContext, project_id: str,
                                    dry_run: bool = False) -> Awaitable[dict[str, Any]]: ...


class NicPlugger(Protocol):
    """The network agents' calls (cumulo.network.rpc.NetworkAgentAPI has them)."""

    def plug_ports(self, host: str, port_ids: list[str], instance_uuid: str) -> Awaitable[list[dict[str, Any]]]: ...

    def unplug_ports(self, host: str, port_ids: list[str]) -> Awaitable[None]: ...


def port_ids_of(inst: Mapping[str, Any]) -> list[str]:
    return [str(p) for p in (inst.get("system_metadata") or {}).get(PORTS_KEY) or []]


def user_ports_of(inst: Mapping[str, Any]) -> list[str]:
    return [str(p) for p in (inst.get("system_metadata") or {}).get(USER_PORTS_KEY) or []]


def in_order(ports: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> list[Mapping[str, Any]]:
    """The ports in NIC order (the recorded ids; any other port after them)."""
    rank = {pid: i for i, pid in enumerate(ids)}
    return sorted(ports, key=lambda p: rank.get(str(p["id"]), len(rank)))


def addresses_for(
    ports: Sequence[Mapping[str, Any]], names: Mapping[str, str], floating: Sequence[Mapping[str, Any]] = (),
) -> dict[str, list[dict[str, Any]]]:
    """Nova's `addresses` (network name → IPs) from the server's ports, in port order: each port's
    fixed IPs, then the floating IPs associated with it (type "floating", as Nova shows them)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for port in ports:
        net = names.get(str(port["network_id"]), str(port["network_id"]))
        fips = [str(f["floating_ip_address"]) for f in floating if f.get("port_id") == port["id"]]
        for ip, kind in [*((str(f["ip_address"]), "fixed") for f in port.get("fixed_ips") or []),
                         *((ip, "floating") for ip in fips)]:
            out.setdefault(net, []).append(
                {"addr": ip, "version": ipaddress.ip_address(ip).version, "OS-EXT-IPS:type": kind,
                 "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}
            )
    return out


def network_info(nics: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The config drive's view of the NICs (see drivers.configdata.network_data), from NicSpec dicts."""
    out: list[dict[str, Any]] = []
    for nic in nics:
        for cidr in nic.get("addresses") or ():
            iface = ipaddress.ip_interface(str(cidr))
            vif: dict[str, Any] = {"id": nic["port_id"], "mac": nic["mac"], "address": str(iface.ip),
                                   "version": iface.version, "netmask": str(iface.netmask), "type": "fixed",
                                   "network": nic.get("netns", ""), "mtu": int(nic.get("mtu") or 1500)}
            gateway = nic.get("gateway")
            if gateway and ipaddress.ip_address(str(gateway)).version == iface.version:
                vif["gateway"] = str(gateway)
            if nic.get("dns"):
                vif["dns_nameservers"] = list(nic["dns"])
            routes = _routes_on(iface, nic.get("routes") or ())
            if routes:
                vif["routes"] = routes
            out.append(vif)
    return out


def _routes_on(iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface, routes: Sequence[Sequence[str]]) -> list[dict[str, str]]:
    """network_data.json's routes of one address (Nova's shape: network, netmask, gateway): the NIC's
    routes (the subnet's host_routes, the isolated-network metadata route) whose next hop is on
    that address's link."""
    out = []
    for dest, hop in routes:
        try:
            net, nexthop = ipaddress.ip_network(str(dest), strict=False), ipaddress.ip_address(str(hop))
        except ValueError:
            continue
        if net.version == iface.version and nexthop in iface.network:
            out.append({"network": str(net.network_address), "netmask": str(net.netmask), "gateway": str(nexthop)})
    return out
