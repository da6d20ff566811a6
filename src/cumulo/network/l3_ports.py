"""The service ports of routers and floating IPs, made inside the caller's write transaction.

They are a router interface (network:router_interface, holding its subnet's gateway IP), a
router gateway (network:router_gateway) and a floating IP's port (network:floatingip, holding the
floating address). IPs come from network.ipam, and the unique (network_id, ip_address) constraint of
ip_allocations stays the final word against a double allocation.

Service ports belong to no project in the gateway and floating IP cases (Neutron leaves their
project empty so tenants never see them); the port API refuses to delete any of them (409
ServicePortInUse, in ports.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.network import attrs, faults, ipam
from cumulo.network.base import lock_network_addresses, owns
from cumulo.network.models import ip_allocations, network_tags, networks, port_security_groups, ports, subnets

ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
FLOATINGIP = "network:floatingip"
SERVICE_OWNERS = (ROUTER_INTERFACE, ROUTER_GATEWAY, FLOATINGIP)


def owner_project(ctx: RequestContext, item: dict[str, Any]) -> str:
    """attrs.project_of, after checking that tenant_id/project_id are strings (a list or an object
    there is 400, not a crash)."""
    for key in ("tenant_id", "project_id"):
        if key in item and not isinstance(item[key], str):
            raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{item[key]}' is not a valid string.")
    return attrs.project_of(ctx.project_id, ctx.is_admin, item)


async def subnet_row(conn: AsyncConnection, ctx: RequestContext, subnet_id: str) -> Any:
    """The subnet the caller may see (its own, or on a network it sees), or SubnetNotFound."""
    row = (await conn.execute(sa.select(subnets).where(subnets.c.id == subnet_id))).first()
    if row is None:
        raise faults.SubnetNotFound(subnet_id=subnet_id)
    if not owns(ctx, row):
        net = (await conn.execute(sa.select(networks).where(networks.c.id == row.network_id))).first()
        if net is None or not (owns(ctx, net) or net.shared or net.external):
            raise faults.SubnetNotFound(subnet_id=subnet_id)
    return row


async def port_row(conn: AsyncConnection, ctx: RequestContext, port_id: str) -> Any:
    """The port the caller owns (the admin: any), or PortNotFound."""
    row = (await conn.execute(sa.select(ports).where(ports.c.id == port_id))).first()
    if row is None or not owns(ctx, row):
        raise faults.PortNotFound(port_id=port_id)
    return row


async def fixed_ips(conn: AsyncConnection, port_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """Each port's fixed IPs, [{"subnet_id", "ip_address"}], in allocation order."""
    out: dict[str, list[dict[str, str]]] = {p: [] for p in port_ids}
    if not port_ids:
        return out
    rows = await conn.execute(
        sa.select(ip_allocations).where(ip_allocations.c.port_id.in_(list(port_ids))).order_by(ip_allocations.c.id)
    )
    for r in rows:
        out.setdefault(r.port_id, []).append({"subnet_id": r.subnet_id, "ip_address": r.ip_address})
    return out


async def _allocate(conn: AsyncConnection, subnet: Any, port_id: str, ip: str | None) -> str | None:
    """Record an address of `subnet` for the port: `ip` if given (taken: 409), else the first free one
    of its pools (None when the subnet is exhausted)."""
    if ip is None:
        await lock_network_addresses(conn, subnet.network_id)
        taken = {r.ip_address for r in await conn.execute(
            sa.select(ip_allocations.c.ip_address).where(ip_allocations.c.network_id == subnet.network_id))}
        ip = ipam.next_free(list(subnet.allocation_pools), taken)
        if ip is None:
            return None
    else:
        holder = await conn.scalar(sa.select(sa.func.count()).select_from(ip_allocations).where(
            ip_allocations.c.network_id == subnet.network_id, ip_allocations.c.ip_address == ip))
        if holder:
            raise faults.IpAddressAlreadyAllocated(ip=ip, subnet_id=subnet.id)
    try:
        await conn.execute(ip_allocations.insert().values(
            port_id=port_id, subnet_id=subnet.id, network_id=subnet.network_id, ip_address=ip))
    except IntegrityError:  # a concurrent writer (PostgreSQL) took it first: a lost race is a 409
        raise faults.IpAddressAlreadyAllocated(ip=ip, subnet_id=subnet.id) from None
    return ip


def subnet_for_ip(subnet_rows: Sequence[Any], ip: str) -> Any | None:
    addr = ipaddress.ip_address(ip)
    for s in subnet_rows:
        net = ipaddress.ip_network(s.cidr)
        if addr.version == net.version and addr in net:
            return s
    return None


async def create_service_port(
    conn: AsyncConnection,
    *,
    network_id: str,
    project_id: str,
    device_id: str,
    device_owner: str,
    requested: Sequence[dict[str, Any]] = (),
    exhausted: Exception | None = None,
) -> str:
    """A port owned by a router or a floating IP, with its addresses: each `requested` entry is
    {"subnet_id"?, "ip_address"?}; none requested means one address from the first IPv4 subnet of
    the network that has a free one (`exhausted` is raised when none has; no subnet at all leaves
    the port without an address, as Neutron)."""
    port_id = new_uuid()
    now = utcnow()
    for _ in range(5):
        mac = ipam.random_mac()
        taken = await conn.scalar(sa.select(sa.func.count()).select_from(ports).where(
            ports.c.network_id == network_id, ports.c.mac_address == mac))
        if not taken:
            break
    try:
        await conn.execute(ports.insert().values(
            id=port_id, project_id=project_id, network_id=network_id, name="", description="", mac_address=mac,
            device_id=device_id, device_owner=device_owner, binding_host_id="", binding_vnic_type="normal",
            binding_profile={}, admin_state_up=True, status="ACTIVE" if device_owner != FLOATINGIP else "N/A",
            port_security_enabled=False, allowed_address_pairs=[], extra_dhcp_opts=[],
            created_at=now, updated_at=now, revision_number=0,
        ))
    except IntegrityError:  # a concurrent writer took the MAC (PostgreSQL): a lost race is a 409
        raise faults.MacAddressInUse(net_id=network_id, mac=mac) from None
    net_subnets = list(await conn.execute(
        sa.select(subnets).where(subnets.c.network_id == network_id).order_by(subnets.c.created_at, subnets.c.id)))
    if requested:
        for want in requested:
            await _allocate_requested(conn, network_id, net_subnets, port_id, want)
        return port_id
    v4 = [s for s in net_subnets if s.ip_version == 4]
    for s in v4:
        if await _allocate(conn, s, port_id, None):
            return port_id
    if v4 and exhausted is not None:
        raise exhausted
    return port_id


async def _allocate_requested(
    conn: AsyncConnection, network_id: str, net_subnets: Sequence[Any], port_id: str, want: dict[str, Any]
) -> None:
    subnet_id, ip = want.get("subnet_id"), want.get("ip_address")
    if ip is not None:
        ip = str(ipam.parse_ip(ip))
    if subnet_id is not None:
        subnet = next((s for s in net_subnets if s.id == subnet_id), None)
        if subnet is None:
            raise faults.InvalidInput(error_message=(
                f"Failed to create port on network {network_id}, because fixed_ips included invalid subnet {subnet_id}"))
    elif ip is not None:
        subnet = subnet_for_ip(net_subnets, ip)
        if subnet is None:
            raise faults.InvalidIpForSubnet(ip_address=ip)
    else:
        raise faults.InvalidInput(error_message="a fixed IP needs a subnet_id or an ip_address")
    if ip is not None:
        ip = ipam.check_requested_ip(ipaddress.ip_network(subnet.cidr), ip, subnet.id)
    got = await _allocate(conn, subnet, port_id, ip)
    if got is None:
        raise faults.IpAddressGenerationFailure(subnet_id=subnet.id)


async def delete_service_ports(conn: AsyncConnection, port_ids: Sequence[str]) -> None:
    """Delete ports with their addresses, security group bindings and tags (a port attached to a
    router by port_id may carry the last two)."""
    ids = [p for p in port_ids if p]
    if ids:
        await conn.execute(ip_allocations.delete().where(ip_allocations.c.port_id.in_(ids)))
        await conn.execute(port_security_groups.delete().where(port_security_groups.c.port_id.in_(ids)))
        await conn.execute(network_tags.delete().where(network_tags.c.resource_type == "ports",
                                                       network_tags.c.resource_id.in_(ids)))
        await conn.execute(ports.delete().where(ports.c.id.in_(ids)))
