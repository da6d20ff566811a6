"""Routers (Neutron's l3_db): the external gateway, and interfaces on tenant subnets.

A router's gateway is a network:router_gateway port on an external network (router:external),
holding the addresses of `external_fixed_ips` (allocated by network.ipam); `enable_snat` is kept for
the data plane. An interface is a network:router_interface port: added by subnet it takes the
subnet's gateway IP, added by port it takes over a free port of the caller. A subnet appears on a
router once, and no two subnets of a router overlap (400, as Neutron); a gateway IP another router
already holds is 409 IpAddressAlreadyAllocated (Neutron's answer when the address is taken). A
router with interfaces cannot be deleted (409 RouterInUse); an interface or a gateway that a
floating IP needs cannot be removed (409). Nothing is plumbed here: the network agent will make the
host match these rows.
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
    "router:get": policy.READER,
    "router:create": policy.MEMBER,
    "router:update": policy.MEMBER,
    "router:delete": policy.MEMBER,
    "router:add_router_interface": policy.MEMBER,
    "router:remove_router_interface": policy.MEMBER,
    # Neutron's defaults: only an admin picks SNAT or the gateway's addresses.
    "router:external_gateway_info:enable_snat": policy.ADMIN,
    "router:external_gateway_info:external_fixed_ips": policy.ADMIN,
}
policy.register(POLICY_RULES)

TAG_TYPE = "routers"
ROUTER_CREATE = ("name", "description", "admin_state_up", "external_gateway_info", "tenant_id", "project_id", "tags")
ROUTER_UPDATE = ("name", "description", "admin_state_up", "external_gateway_info", "routes")
GATEWAY_KEYS = ("network_id", "enable_snat", "external_fixed_ips")
MAX_ROUTES = 30


def _bad(msg: str) -> faults.BadRequest:
    return faults.BadRequest(resource="router", msg=msg)


def _gateway_request(ctx: RequestContext, value: Any) -> dict[str, Any] | None:
    """external_gateway_info as asked: None (no gateway) or {network_id, enable_snat?, external_fixed_ips?}."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise faults.HTTPBadRequest(msg=f"Invalid input for external_gateway_info. Reason: '{value}' is not a dictionary.")
    unknown = sorted(set(value) - set(GATEWAY_KEYS))
    if unknown:
        raise faults.HTTPBadRequest(msg=f"Invalid input for external_gateway_info. Reason: Unexpected keys supplied: {', '.join(unknown)}.")
    if "network_id" not in value:
        raise faults.HTTPBadRequest(msg="Invalid input for external_gateway_info. Reason: Validation of dictionary's keys failed. "
                                 "Expected keys: {'network_id'} Provided keys: " + str(set(value)) + ".")
    gw: dict[str, Any] = {"network_id": attrs.uuid_value(value["network_id"], "network_id")}
    if "enable_snat" in value:
        authorize(ctx, "router:external_gateway_info:enable_snat")
        gw["enable_snat"] = attrs.boolean(value, "enable_snat")
    if value.get("external_fixed_ips") is not None:
        authorize(ctx, "router:external_gateway_info:external_fixed_ips")
        ips = attrs.list_of(value, "external_fixed_ips", max_items=10) or []
        wanted: list[dict[str, Any]] = []
        for ip in ips:
            if not isinstance(ip, dict) or not set(ip) <= {"subnet_id", "ip_address"} or not ip:
                raise faults.HTTPBadRequest(msg=f"Invalid input for external_fixed_ips. Reason: '{ip}' is not a valid fixed IP.")
            entry: dict[str, Any] = {}
            if "subnet_id" in ip:
                entry["subnet_id"] = attrs.uuid_value(ip["subnet_id"], "subnet_id")
            if "ip_address" in ip:
                entry["ip_address"] = str(ipam.parse_ip(ip["ip_address"], "ip_address"))
            wanted.append(entry)
        gw["external_fixed_ips"] = wanted
    return gw


def _routes(value: Any) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ROUTES:
        raise faults.HTTPBadRequest(msg=f"Invalid input for routes. Reason: '{value}' is not a list of at most {MAX_ROUTES} routes.")
    out: list[dict[str, str]] = []
    for r in value:
        if not isinstance(r, dict) or set(r) != {"destination", "nexthop"}:
            raise faults.HTTPBadRequest(msg=f"Invalid input for routes. Reason: '{r}' is not a destination/nexthop pair.")
        try:
            dest = str(ipaddress.ip_network(r["destination"], strict=True))
            hop = str(ipaddress.ip_address(r["nexthop"]))
        except (TypeError, ValueError):
            raise faults.HTTPBadRequest(msg=f"Invalid input for routes. Reason: '{r}' is not a valid route.") from None
        if {"destination": dest, "nexthop": hop} not in out:
            out.append({"destination": dest, "nexthop": hop})
    return out


class Routers(NetworkBase):
    """The router facet of the network service."""

    # ---- views ------------------------------------------------------------------------------

    async def render_routers(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
        tags = await self.tags_of(conn, TAG_TYPE, [r.id for r in rows])
        gw_ips = await l3_ports.fixed_ips(conn, [r.gw_port_id for r in rows if r.gw_port_id])
        out = []
        for r in rows:
            gateway = None
            if r.gw_network_id:
                gateway = {
                    "network_id": r.gw_network_id,
                    "enable_snat": r.enable_snat,
                    "external_fixed_ips": gw_ips.get(r.gw_port_id, []) if r.gw_port_id else [],
                }
            out.append({
                "id": r.id,
                "name": r.name,
                "description": r.description,
                "admin_state_up": r.admin_state_up,
                "status": r.status,
                "tenant_id": r.project_id,
                "project_id": r.project_id,
                "external_gateway_info": gateway,
                "routes": list(r.routes),
                "tags": tags[r.id],
                **stamps(r),
            })
        return out

    async def _render_router(self, conn: AsyncConnection, router_id: str) -> dict[str, Any]:
        row = (await conn.execute(sa.select(routers).where(routers.c.id == router_id))).one()
        return (await self.render_routers(conn, [row]))[0]

    async def router_row(self, conn: AsyncConnection, ctx: RequestContext, router_id: str) -> Any:
        row = (await conn.execute(sa.select(routers).where(routers.c.id == router_id))).first()
        if row is None or not owns(ctx, row):
            raise faults.RouterNotFound(router_id=router_id)
        return row

    # ---- CRUD -------------------------------------------------------------------------------

    async def list_routers(self, ctx: RequestContext) -> list[dict[str, Any]]:
        authorize(ctx, "router:get")
        query = sa.select(routers).order_by(routers.c.created_at, routers.c.id)
        if not ctx.is_admin:
            query = query.where(routers.c.project_id == ctx.project_id)
        async with self.db.read() as conn:
            return await self.render_routers(conn, list(await conn.execute(query)))

    async def get_router(self, ctx: RequestContext, router_id: str) -> dict[str, Any]:
        authorize(ctx, "router:get")
        async with self.db.read() as conn:
            row = await self.router_row(conn, ctx, router_id)
            return (await self.render_routers(conn, [row]))[0]

    @notifies
    async def create_router(self, ctx: RequestContext, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "router:create")
        attrs.check_attrs(item, ROUTER_CREATE)
        project = l3_ports.owner_project(ctx, item)
        gateway = _gateway_request(ctx, item.get("external_gateway_info"))
        tags = check_tags(item["tags"]) if "tags" in item else []
        router_id = new_uuid()
        now = utcnow()
        async with self.db.write() as conn:
            await self.check_quota(conn, project, "router")
            await conn.execute(routers.insert().values(
                id=router_id, project_id=project, name=attrs.string(item, "name", ""),
                description=attrs.string(item, "description", "", attrs.DESCRIPTION_MAX),
                admin_state_up=attrs.boolean(item, "admin_state_up", True), status="ACTIVE",
                enable_snat=True, external_fixed_ips=[], routes=[], distributed=False, ha=False,
                created_at=now, updated_at=now, revision_number=0,
            ))
            if tags:
                await self.write_tags(conn, TAG_TYPE, router_id, tags)
            if gateway is not None:
                row = (await conn.execute(sa.select(routers).where(routers.c.id == router_id))).one()
                await self._set_gateway(conn, ctx, row, gateway)
            return await self._render_router(conn, router_id)

    @notifies
    async def update_router(self, ctx: RequestContext, router_id: str, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "router:update")
        attrs.check_attrs(item, ROUTER_UPDATE, read_only=("id", "tenant_id", "project_id", "status"))
        values: dict[str, Any] = {}
        for key in ("name", "description"):
            if key in item:
                values[key] = attrs.string(item, key, "", attrs.DESCRIPTION_MAX if key == "description" else attrs.NAME_MAX)
        if "admin_state_up" in item:
            values["admin_state_up"] = attrs.boolean(item, "admin_state_up")
        routes = _routes(item["routes"]) if "routes" in item else None
        gateway = _gateway_request(ctx, item["external_gateway_info"]) if "external_gateway_info" in item else None
        async with self.db.write() as conn:
            row = await self.router_row(conn, ctx, router_id)
            if "external_gateway_info" in item:
                if gateway is None:
                    await self._clear_gateway(conn, row)
                else:
                    await self._set_gateway(conn, ctx, row, gateway)
            if routes is not None:
                await self._check_routes(conn, router_id, routes)
                values["routes"] = routes
            await self.bump(conn, routers, router_id, **values)
            return await self._render_router(conn, router_id)

    @notifies
    async def delete_router(self, ctx: RequestContext, router_id: str) -> None:
        authorize(ctx, "router:delete")
        async with self.db.write() as conn:
            row = await self.router_row(conn, ctx, router_id)
            attached = [r.id for r in await conn.execute(sa.select(ports.c.id).where(
                ports.c.device_id == router_id, ports.c.device_owner == l3_ports.ROUTER_INTERFACE).order_by(ports.c.id))]
            if attached:
                raise faults.RouterInUse(router_id=router_id, reason="has ports still attached: " + ", ".join(attached))
            await self._clear_gateway(conn, row)
            await self.drop_tags(conn, TAG_TYPE, router_id)
            await conn.execute(routers.delete().where(routers.c.id == router_id))

    # ---- the gateway ------------------------------------------------------------------------

    async def _set_gateway(self, conn: AsyncConnection, ctx: RequestContext, row: Any, gw: dict[str, Any]) -> None:
        net = await self.network_row(conn, ctx, gw["network_id"])
        if not net.external:
            raise _bad(f"Network {net.id} is not an external network")
        ext_subnets = list(await conn.execute(sa.select(subnets).where(subnets.c.network_id == net.id)))
        wanted = gw.get("external_fixed_ips")
        for ip in wanted or []:
            for s in ext_subnets:
                if s.gateway_ip and ip.get("ip_address") == s.gateway_ip:
                    raise _bad(f"External IP {s.gateway_ip} is the same as the gateway IP")
        snat = gw.get("enable_snat", True)
        current = await l3_ports.fixed_ips(conn, [row.gw_port_id]) if row.gw_port_id else {}
        same_net = row.gw_network_id == net.id and row.gw_port_id
        ips_change = wanted is not None and {
            (i.get("subnet_id"), i.get("ip_address")) for i in wanted} != {
            (i["subnet_id"], i["ip_address"]) for i in current.get(row.gw_port_id, [])}
        if not same_net or ips_change:
            if row.gw_network_id and row.gw_network_id != net.id:
                await self._check_gateway_unused(conn, row)
            await self._check_interfaces_vs_external(conn, row.id, ext_subnets)
            await l3_ports.delete_service_ports(conn, [row.gw_port_id] if row.gw_port_id else [])
            port_id = await l3_ports.create_service_port(
                conn, network_id=net.id, project_id="", device_id=row.id, device_owner=l3_ports.ROUTER_GATEWAY,
                requested=wanted or (), exhausted=faults.ExternalIpAddressExhausted(net_id=net.id),
            )
            await self.bump(conn, routers, row.id, gw_network_id=net.id, gw_port_id=port_id, enable_snat=snat,
                            external_fixed_ips=wanted or [])
        elif snat != row.enable_snat:
            await self.bump(conn, routers, row.id, enable_snat=snat)

    async def _clear_gateway(self, conn: AsyncConnection, row: Any) -> None:
        if not row.gw_network_id:
            return
        await self._check_gateway_unused(conn, row)
        await l3_ports.delete_service_ports(conn, [row.gw_port_id] if row.gw_port_id else [])
        await self.bump(conn, routers, row.id, gw_network_id=None, gw_port_id=None, enable_snat=True, external_fixed_ips=[])

    @staticmethod
    async def _check_gateway_unused(conn: AsyncConnection, row: Any) -> None:
        used = await conn.scalar(sa.select(sa.func.count()).select_from(floating_ips).where(floating_ips.c.router_id == row.id))
        if used:
            raise faults.RouterExternalGatewayInUseByFloatingIp(router_id=row.id, net_id=row.gw_network_id)

    async def _check_interfaces_vs_external(self, conn: AsyncConnection, router_id: str, ext_subnets: Sequence[Any]) -> None:
        """The external network's subnets may not overlap the router's interfaces."""
        for sub in await self._interface_subnets(conn, router_id):
            for ext in ext_subnets:
                _raise_on_overlap(ext, sub)

    # ---- interfaces -------------------------------------------------------------------------

    async def _interface_subnets(self, conn: AsyncConnection, router_id: str) -> list[Any]:
        query = (
            sa.select(subnets).select_from(ip_allocations.join(ports, ports.c.id == ip_allocations.c.port_id)
                                           .join(subnets, subnets.c.id == ip_allocations.c.subnet_id))
            .where(ports.c.device_id == router_id, ports.c.device_owner == l3_ports.ROUTER_INTERFACE)
        )
        return list(await conn.execute(query))

    async def _check_new_subnets(self, conn: AsyncConnection, row: Any, new: Sequence[Any]) -> None:
        """Neutron's _check_for_dup_router_subnets: a subnet once per router, no overlapping CIDRs
        (the external network's subnets count as the router's)."""
        attached = await self._interface_subnets(conn, row.id)
        for s in new:
            if any(a.id == s.id for a in attached):
                raise _bad(f"Router already has a port on subnet {s.id}")
        if row.gw_network_id:
            attached += list(await conn.execute(sa.select(subnets).where(subnets.c.network_id == row.gw_network_id)))
        for a in attached:
            for s in new:
                _raise_on_overlap(a, s)

    @notifies
    async def add_router_interface(self, ctx: RequestContext, router_id: str, body: Any) -> dict[str, Any]:
        authorize(ctx, "router:add_router_interface")
        port_id, subnet_id = _interface_info(body, for_removal=False)
        async with self.db.write() as conn:
            row = await self.router_row(conn, ctx, router_id)
            if port_id is not None:
                port = await l3_ports.port_row(conn, ctx, port_id)
                if port.device_id:
                    raise faults.PortInUse(net_id=port.network_id, port_id=port.id, device_id=port.device_id)
                ips = (await l3_ports.fixed_ips(conn, [port.id]))[port.id]
                if not ips:
                    raise _bad("Router port must have at least one fixed IP")
                new = list(await conn.execute(sa.select(subnets).where(subnets.c.id.in_([i["subnet_id"] for i in ips]))))
                await self._check_new_subnets(conn, row, new)
                if len([s for s in new if s.ip_version == 4]) > 1:
                    raise _bad("Cannot have multiple IPv4 subnets on router port")
                await self.bump(conn, ports, port.id, device_id=router_id, device_owner=l3_ports.ROUTER_INTERFACE)
                the_port, network_id = port.id, port.network_id
            else:
                assert subnet_id is not None
                subnet = await l3_ports.subnet_row(conn, ctx, subnet_id)
                if not subnet.gateway_ip:
                    raise _bad("Subnet for router interface must have a gateway IP")
                if not owns(ctx, subnet):
                    raise _bad(f"Cannot add interface to router because subnet {subnet_id} is not owned by project making the request")
                await self._check_new_subnets(conn, row, [subnet])
                new = [subnet]
                the_port = await l3_ports.create_service_port(
                    conn, network_id=subnet.network_id, project_id=row.project_id, device_id=router_id,
                    device_owner=l3_ports.ROUTER_INTERFACE,
                    requested=[{"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}],
                )
                network_id = subnet.network_id
            await self.bump(conn, routers, router_id)
            return await self._interface_reply(conn, row, the_port, network_id, [s.id for s in new])

    @notifies
    async def remove_router_interface(self, ctx: RequestContext, router_id: str, body: Any) -> dict[str, Any]:
        authorize(ctx, "router:remove_router_interface")
        port_id, subnet_id = _interface_info(body, for_removal=True)
        async with self.db.write() as conn:
            row = await self.router_row(conn, ctx, router_id)
            if port_id is not None:
                port = (await conn.execute(sa.select(ports).where(
                    ports.c.id == port_id, ports.c.device_id == router_id,
                    ports.c.device_owner == l3_ports.ROUTER_INTERFACE))).first()
                if port is None:
                    raise faults.RouterInterfaceNotFound(router_id=router_id, port_id=port_id)
                ips = (await l3_ports.fixed_ips(conn, [port.id]))[port.id]
                subnet_ids = [i["subnet_id"] for i in ips]
                if subnet_id is not None and subnet_id not in subnet_ids:
                    raise faults.SubnetMismatchForPort(port_id=port_id, subnet_id=subnet_id)
            else:
                assert subnet_id is not None
                subnet = await l3_ports.subnet_row(conn, ctx, subnet_id)
                port = (await conn.execute(
                    sa.select(ports).select_from(ports.join(ip_allocations, ip_allocations.c.port_id == ports.c.id))
                    .where(ports.c.device_id == router_id, ports.c.device_owner == l3_ports.ROUTER_INTERFACE,
                           ip_allocations.c.subnet_id == subnet.id))).first()
                if port is None:
                    raise faults.RouterInterfaceNotFoundForSubnet(router_id=router_id, subnet_id=subnet_id)
                subnet_ids = [subnet.id]
            for sid in subnet_ids:
                await self._check_interface_unused(conn, router_id, sid)
            await l3_ports.delete_service_ports(conn, [port.id])
            await self.bump(conn, routers, router_id)
            return await self._interface_reply(conn, row, port.id, port.network_id, subnet_ids)

    @staticmethod
    async def _check_interface_unused(conn: AsyncConnection, router_id: str, subnet_id: str) -> None:
        """A floating IP whose fixed address is on the subnet goes through this interface."""
        fips = await conn.execute(
            sa.select(floating_ips.c.id).select_from(floating_ips.join(
                ip_allocations, sa.and_(ip_allocations.c.port_id == floating_ips.c.port_id,
                                        ip_allocations.c.ip_address == floating_ips.c.fixed_ip_address)))
            .where(floating_ips.c.router_id == router_id, ip_allocations.c.subnet_id == subnet_id))
        if fips.first() is not None:
            raise faults.RouterInterfaceInUseByFloatingIP(router_id=router_id, subnet_id=subnet_id)

    async def _interface_reply(self, conn: AsyncConnection, row: Any, port_id: str, network_id: str,
                              subnet_ids: list[str]) -> dict[str, Any]:
        tags = await self.tags_of(conn, TAG_TYPE, [row.id])
        return {
            "id": row.id,
            "tenant_id": row.project_id,
            "project_id": row.project_id,
            "port_id": port_id,
            "network_id": network_id,
            "subnet_id": subnet_ids[0] if subnet_ids else None,
            "subnet_ids": subnet_ids,
            "tags": tags[row.id],
        }

    async def _check_routes(self, conn: AsyncConnection, router_id: str, routes: list[dict[str, str]]) -> None:
        """Each nexthop must be on a subnet the router is attached to (Neutron's InvalidRoutes)."""
        row = (await conn.execute(sa.select(routers).where(routers.c.id == router_id))).one()
        connected = [ipaddress.ip_network(s.cidr) for s in await self._interface_subnets(conn, router_id)]
        if row.gw_network_id:
            connected += [ipaddress.ip_network(c) for (c,) in await conn.execute(
                sa.select(subnets.c.cidr).where(subnets.c.network_id == row.gw_network_id))]
        for r in routes:
            hop = ipaddress.ip_address(r["nexthop"])
            if not any(hop.version == n.version and hop in n for n in connected):
                raise faults.InvalidRoutes(routes=routes, reason="the nexthop is not connected with router")

    # ---- for the rest of the service --------------------------------------------------------

    @staticmethod
    async def network_has_gateways(conn: AsyncConnection, network_id: str) -> bool:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(routers).where(routers.c.gw_network_id == network_id))
        return bool(count)


def _interface_info(body: Any, *, for_removal: bool) -> tuple[str | None, str | None]:
    """(port_id, subnet_id) of an add/remove_router_interface body, checked as Neutron does."""
    if not isinstance(body, dict) or not ({"port_id", "subnet_id"} & set(body)):
        raise _bad("Either subnet_id or port_id must be specified")
    port_id = subnet_id = None
    for key in ("port_id", "subnet_id"):
        if key in body:
            value = body[key]
            if not isinstance(value, str) or not attrs.is_uuid(value):
                raise _bad(f"'{value}' is not a valid UUID")
            if key == "port_id":
                port_id = value
            else:
                subnet_id = value
    if not for_removal and port_id and subnet_id:
        raise _bad("Cannot specify both subnet-id and port-id")
    return port_id, subnet_id


def _raise_on_overlap(existing: Any, new: Any) -> None:
    a, b = ipaddress.ip_network(existing.cidr), ipaddress.ip_network(new.cidr)
    if a.version == b.version and a.overlaps(b):
        raise _bad(f"Cidr {new.cidr} of subnet {new.id} overlaps with cidr {existing.cidr} of subnet {existing.id}")

