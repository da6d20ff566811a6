"""Floating IPs (Neutron's l3_db): external addresses, each held by a network:floatingip port.

A floating IP is associated with a fixed IP of a tenant port through a router.

Allocation is from the external network's IPv4 subnets (a network that is not router:external is
400). Association needs a router with an interface on the fixed IP's subnet and its gateway on the
floating IP's network, else 404 ExternalGatewayForFloatingIPNotFound, as Neutron; among several,
the router holding the subnet's gateway IP wins. A project sees and associates only its own
floating IPs and ports (another project's port is 404 PortNotFound). Status: ACTIVE while
associated, DOWN otherwise (no agent yet reports it; the data plane will).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import policy
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.network import attrs, faults, ipam, l3_ports
from cumulo.network.base import NetworkBase, authorize, check_tags, notifies, owns, stamps
from cumulo.network.models import floating_ips, ip_allocations, ports, routers, subnets

POLICY_RULES = {
    "floatingip:get": policy.READER,
    "floatingip:create": policy.MEMBER,
    "floatingip:update": policy.MEMBER,
    "floatingip:delete": policy.MEMBER,
    # Neutron's default: only an admin picks the address.
    "floatingip:create:floating_ip_address": policy.ADMIN,
}
policy.register(POLICY_RULES)

TAG_TYPE = "floatingips"
FIP_CREATE = ("floating_network_id", "floating_ip_address", "subnet_id", "port_id", "fixed_ip_address",
              "description", "tenant_id", "project_id", "tags")
FIP_UPDATE = ("port_id", "fixed_ip_address", "description")


def _bad(msg: str) -> faults.BadRequest:
    return faults.BadRequest(resource="floatingip", msg=msg)


class FloatingIPs(NetworkBase):
    """The floating IP facet of the network service."""

    async def render_floatingips(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
        tags = await self.tags_of(conn, TAG_TYPE, [r.id for r in rows])
        port_ids = [r.port_id for r in rows if r.port_id]
        details: dict[str, dict[str, Any]] = {}
        if port_ids:
            for p in await conn.execute(sa.select(ports).where(ports.c.id.in_(port_ids))):
                details[p.id] = {
                    "name": p.name, "network_id": p.network_id, "mac_address": p.mac_address,
                    "admin_state_up": p.admin_state_up, "status": p.status, "device_id": p.device_id,
                    "device_owner": p.device_owner,
                }
        return [
            {
                "id": r.id,
                "tenant_id": r.project_id,
                "project_id": r.project_id,
                "floating_network_id": r.floating_network_id,
                "floating_ip_address": r.floating_ip_address,
                "fixed_ip_address": r.fixed_ip_address,
                "port_id": r.port_id,
                "router_id": r.router_id,
                "status": r.status,
                "description": r.description,
                "port_details": details.get(r.port_id) if r.port_id else None,
                "tags": tags[r.id],
                **stamps(r),
            }
            for r in rows
        ]

    async def _render_fip(self, conn: AsyncConnection, fip_id: str) -> dict[str, Any]:
        row = (await conn.execute(sa.select(floating_ips).where(floating_ips.c.id == fip_id))).one()
        return (await self.render_floatingips(conn, [row]))[0]

    async def floatingip_row(self, conn: AsyncConnection, ctx: RequestContext, fip_id: str) -> Any:
        row = (await conn.execute(sa.select(floating_ips).where(floating_ips.c.id == fip_id))).first()
        if row is None or not owns(ctx, row):
            raise faults.FloatingIPNotFound(floatingip_id=fip_id)
        return row

    async def list_floatingips(self, ctx: RequestContext) -> list[dict[str, Any]]:
        authorize(ctx, "floatingip:get")
        query = sa.select(floating_ips).order_by(floating_ips.c.created_at, floating_ips.c.id)
        if not ctx.is_admin:
            query = query.where(floating_ips.c.project_id == ctx.project_id)
        async with self.db.read() as conn:
            return await self.render_floatingips(conn, list(await conn.execute(query)))

    async def get_floatingip(self, ctx: RequestContext, fip_id: str) -> dict[str, Any]:
        authorize(ctx, "floatingip:get")
        async with self.db.read() as conn:
            row = await self.floatingip_row(conn, ctx, fip_id)
            return (await self.render_floatingips(conn, [row]))[0]

    @notifies
    async def create_floatingip(self, ctx: RequestContext, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "floatingip:create")
        attrs.check_attrs(item, FIP_CREATE)
        if "floating_network_id" not in item:
            raise faults.HTTPBadRequest(msg="Failed to parse request. Required attribute 'floating_network_id' not specified")
        network_id = attrs.uuid_value(item["floating_network_id"], "floating_network_id")
        project = l3_ports.owner_project(ctx, item)
        requested: dict[str, Any] = {}
        if item.get("subnet_id") is not None:
            requested["subnet_id"] = attrs.uuid_value(item["subnet_id"], "subnet_id")
        if item.get("floating_ip_address") is not None:
            authorize(ctx, "floatingip:create:floating_ip_address")
            requested["ip_address"] = str(ipam.parse_ip(item["floating_ip_address"], "floating_ip_address"))
        description = attrs.string(item, "description", "", attrs.DESCRIPTION_MAX)
        tags = check_tags(item["tags"]) if "tags" in item else []
        assoc = {k: item[k] for k in ("port_id", "fixed_ip_address") if item.get(k) is not None}
        fip_id = new_uuid()
        async with self.db.write() as conn:
            net = await self.network_row(conn, ctx, network_id)
            if not net.external:
                raise _bad(f"Network {network_id} is not a valid external network")
            v4 = await conn.scalar(sa.select(sa.func.count()).select_from(subnets).where(
                subnets.c.network_id == network_id, subnets.c.ip_version == 4))
            if not v4:
                raise _bad(f"Network {network_id} does not contain any IPv4 subnet")
            await self.check_quota(conn, project, "floatingip")
            if requested.get("ip_address"):
                held = await conn.scalar(sa.select(sa.func.count()).select_from(ip_allocations).where(
                    ip_allocations.c.network_id == network_id, ip_allocations.c.ip_address == requested["ip_address"]))
                if held:
                    raise faults.IpAddressInUse(net_id=network_id, ip_address=requested["ip_address"])
            port_id = await l3_ports.create_service_port(
                conn, network_id=network_id, project_id="", device_id=fip_id, device_owner=l3_ports.FLOATINGIP,
                requested=[requested] if requested else (), exhausted=faults.ExternalIpAddressExhausted(net_id=network_id),
            )
            address = next((i["ip_address"] for i in (await l3_ports.fixed_ips(conn, [port_id]))[port_id]
                            if ipaddress.ip_address(i["ip_address"]).version == 4), None)
            if address is None:
                raise faults.ExternalIpAddressExhausted(net_id=network_id)
            now = utcnow()
            await conn.execute(floating_ips.insert().values(
                id=fip_id, project_id=project, floating_network_id=network_id, floating_ip_address=address,
                floating_port_id=port_id, status="DOWN", description=description,
                created_at=now, updated_at=now, revision_number=0,
            ))
            if tags:
                await self.write_tags(conn, TAG_TYPE, fip_id, tags)
            if assoc:
                row = (await conn.execute(sa.select(floating_ips).where(floating_ips.c.id == fip_id))).one()
                await self._associate(conn, ctx, row, assoc)
            return await self._render_fip(conn, fip_id)

    @notifies
    async def update_floatingip(self, ctx: RequestContext, fip_id: str, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "floatingip:update")
        attrs.check_attrs(item, FIP_UPDATE, read_only=("id", "floating_network_id", "floating_ip_address",
                                                       "tenant_id", "project_id", "router_id", "status"))
        values: dict[str, Any] = {}
        if "description" in item:
            values["description"] = attrs.string(item, "description", "", attrs.DESCRIPTION_MAX)
        if item.get("fixed_ip_address") is not None and item.get("port_id") is None:
            raise _bad("fixed_ip_address cannot be specified without a port_id")
        async with self.db.write() as conn:
            row = await self.floatingip_row(conn, ctx, fip_id)
            if "port_id" in item:
                if item["port_id"] is None:
                    values.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
                else:
                    await self._associate(conn, ctx, row, item)
            if values:
                await self.bump(conn, floating_ips, fip_id, **values)
            return await self._render_fip(conn, fip_id)

    @notifies
    async def delete_floatingip(self, ctx: RequestContext, fip_id: str) -> None:
        authorize(ctx, "floatingip:delete")
        async with self.db.write() as conn:
            row = await self.floatingip_row(conn, ctx, fip_id)
            await self.drop_tags(conn, TAG_TYPE, fip_id)
            await conn.execute(floating_ips.delete().where(floating_ips.c.id == fip_id))
            await l3_ports.delete_service_ports(conn, [row.floating_port_id] if row.floating_port_id else [])

    # ---- association ------------------------------------------------------------------------

    async def _associate(self, conn: AsyncConnection, ctx: RequestContext, row: Any, item: dict[str, Any]) -> None:
        port_id = attrs.uuid_value(item["port_id"], "port_id")
        port = await l3_ports.port_row(conn, ctx, port_id)
        if port.project_id != row.project_id and not ctx.is_admin:
            raise _bad(f"Cannot process floating IP association with Port {port_id}, since that port is owned by a different project")
        if port.device_owner.startswith("network:"):
            raise _bad(f"Port {port_id} is unable to be assigned a floating IP")
        ips = (await l3_ports.fixed_ips(conn, [port_id]))[port_id]
        fixed = item.get("fixed_ip_address")
        if fixed is not None:
            fixed = str(ipam.parse_ip(fixed, "fixed_ip_address"))
            if ipaddress.ip_address(fixed).version != 4:
                raise _bad(f"Cannot process floating IP association with {fixed}, since that is not an IPv4 address")
            match = [i for i in ips if i["ip_address"] == fixed]
            if not match:
                raise _bad(f"Port {port_id} does not have fixed ip {fixed}")
        else:
            match = [i for i in ips if ipaddress.ip_address(i["ip_address"]).version == 4]
            if not match:
                raise _bad(f"Cannot add floating IP to port {port_id} that has no fixed IPv4 addresses")
            if len(match) > 1:
                raise _bad(f"Port {port_id} has multiple fixed IPv4 addresses.  Must provide a specific IPv4 "
                           "address when assigning a floating IP")
        fixed, subnet_id = match[0]["ip_address"], match[0]["subnet_id"]
        router_id = await self._router_for(conn, port, subnet_id, row.floating_network_id)
        if row.port_id == port_id and row.fixed_ip_address == fixed:
            return
        other = (await conn.execute(sa.select(floating_ips.c.id).where(
            floating_ips.c.port_id == port_id, floating_ips.c.fixed_ip_address == fixed,
            floating_ips.c.floating_network_id == row.floating_network_id, floating_ips.c.id != row.id))).first()
        if other is not None:
            raise faults.FloatingIPPortAlreadyAssociated(
                floating_ip_address=row.floating_ip_address, fip_id=row.id, port_id=port_id, fixed_ip=fixed,
                net_id=row.floating_network_id)
        await self.bump(conn, floating_ips, row.id, port_id=port_id, fixed_ip_address=fixed, router_id=router_id,
                        status="ACTIVE")

    @staticmethod
    async def _router_for(conn: AsyncConnection, port: Any, subnet_id: str, external_network_id: str) -> str:
        """Neutron's get_router_for_floatingip: a router with an interface on the subnet and its
        gateway on the external network; the one holding the subnet's gateway IP first."""
        subnet = (await conn.execute(sa.select(subnets).where(subnets.c.id == subnet_id))).one()
        query = (
            sa.select(routers.c.id, ip_allocations.c.ip_address)
            .select_from(ports.join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
                         .join(routers, routers.c.id == ports.c.device_id))
            .where(ports.c.device_owner == l3_ports.ROUTER_INTERFACE, ports.c.network_id == port.network_id,
                   ip_allocations.c.subnet_id == subnet_id, routers.c.gw_network_id == external_network_id)
            .order_by(routers.c.created_at, routers.c.id)
        )
        first = None
        for router_id, interface_ip in await conn.execute(query):
            if interface_ip == subnet.gateway_ip:
                return str(router_id)
            first = first or str(router_id)
        if first:
            return first
        raise faults.ExternalGatewayForFloatingIPNotFound(
            subnet_id=subnet_id, external_network_id=external_network_id, port_id=port.id)

    # ---- for the networks facet ---------------------------------------------------------------

    async def delete_disassociated_floatingips(self, conn: AsyncConnection, network_id: str) -> None:
        """Before an external network is deleted, its unassociated floating IPs go with it (Neutron's
        _process_l3_delete); an associated one keeps the network in use."""
        rows = list(await conn.execute(sa.select(floating_ips).where(
            floating_ips.c.floating_network_id == network_id, floating_ips.c.port_id.is_(None))))
        for row in rows:
            await self.drop_tags(conn, TAG_TYPE, row.id)
            await conn.execute(floating_ips.delete().where(floating_ips.c.id == row.id))
        await l3_ports.delete_service_ports(conn, [r.floating_port_id for r in rows if r.floating_port_id])
