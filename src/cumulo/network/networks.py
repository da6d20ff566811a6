"""Networks and subnets: create, list, show, update, delete, Neutron's shapes and rules.

Admin-only attributes (policy): `shared`, `router:external`, `provider:*` and `is_default` on
create and update. A network that still has ports (other than DHCP ports) cannot be deleted (409
NetworkInUse); its subnets go with it. A subnet with allocated addresses cannot be deleted (409
SubnetInUse). Only the network's owner (or the admin) adds subnets to it, even to a shared one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.context import RequestContext
from cumulo.db import new_uuid
from cumulo.network import attrs, faults, ipam, segments
from cumulo.network.base import authorize, check_tags, notifies, owns, stamps
from cumulo.network.models import ip_allocations, networks, ports, subnets
from cumulo.network.subnetpools import SubnetPools

PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")
NETWORK_CREATE = (
    "name", "description", "admin_state_up", "shared", "router:external", "mtu", "port_security_enabled",
    "tenant_id", "project_id", "is_default", "availability_zone_hints", "tags", *PROVIDER,
)
NETWORK_UPDATE = (
    "name", "description", "admin_state_up", "shared", "router:external", "mtu", "port_security_enabled",
    "is_default", *PROVIDER,
)
NETWORK_TYPES = ("local", "flat", "vlan", "vxlan", "geneve", "gre")
SUBNET_CREATE = (
    "name", "description", "network_id", "cidr", "ip_version", "gateway_ip", "enable_dhcp", "allocation_pools",
    "dns_nameservers", "host_routes", "ipv6_ra_mode", "ipv6_address_mode", "tenant_id", "project_id",
    "subnetpool_id", "prefixlen", "use_default_subnetpool", "segment_id", "service_types", "tags",
)
SUBNET_UPDATE = (
    "name", "description", "gateway_ip", "enable_dhcp", "allocation_pools", "dns_nameservers", "host_routes",
    "service_types", "segment_id",
)
SUBNET_READ_ONLY = ("id", "network_id", "cidr", "ip_version", "tenant_id", "project_id", "ipv6_ra_mode",
                    "ipv6_address_mode", "subnetpool_id")
MAX_DNS = 5
MAX_ROUTES = 20
# Ports that go with their network or subnet (Neutron deletes DHCP ports itself).
AUTO_DELETED_OWNERS = ("network:dhcp",)


def _admin_attrs(ctx: RequestContext, item: dict[str, Any], action: str) -> None:
    for key, rule in (("shared", "shared"), ("router:external", "router:external"), ("is_default", "is_default")):
        if key in item:
            authorize(ctx, f"network:create:{rule}")  # the same admin rule for create and update
    if any(k in item for k in PROVIDER):
        authorize(ctx, "network:create:provider")


def _provider(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "provider:network_type" in item:
        kind = attrs.string(item, "provider:network_type")
        if kind not in NETWORK_TYPES:
            raise faults.HTTPBadRequest(msg=f"Invalid input for provider:network_type. Reason: '{kind}' is not supported.")
        out["provider_network_type"] = kind
    if "provider:physical_network" in item:
        out["provider_physical_network"] = attrs.string(item, "provider:physical_network", max_len=64)
    if "provider:segmentation_id" in item:
        out["provider_segmentation_id"] = attrs.integer(item, "provider:segmentation_id", lo=0, hi=16777215)
    return out


class Networks(SubnetPools):
    """Networks and subnets (subnets may take their CIDR from a subnet pool)."""

    # ---- rendering --------------------------------------------------------------------------

    async def render_networks(self, conn: AsyncConnection, ctx: RequestContext, rows: list[Any]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        subnet_ids: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            for sid, nid in await conn.execute(
                sa.select(subnets.c.id, subnets.c.network_id).where(subnets.c.network_id.in_(ids)).order_by(subnets.c.created_at)
            ):
                subnet_ids[nid].append(sid)
        tags = await self.tags_of(conn, "networks", ids)
        out = []
        for r in rows:
            body: dict[str, Any] = {
                "id": r.id,
                "name": r.name,
                "description": r.description,
                "tenant_id": r.project_id,
                "project_id": r.project_id,
                "admin_state_up": r.admin_state_up,
                "status": r.status,
                "shared": r.shared,
                "router:external": r.external,
                "mtu": r.mtu,
                "port_security_enabled": r.port_security_enabled,
                "subnets": subnet_ids[r.id],
                "availability_zone_hints": [],
                "availability_zones": [],
                "ipv4_address_scope": None,
                "ipv6_address_scope": None,
                "l2_adjacency": True,
                "is_default": r.is_default,
                "tags": tags[r.id],
                **stamps(r),
            }
            if ctx.is_admin:  # provider attributes are admin-only (Neutron's policy)
                body["provider:network_type"] = r.provider_network_type
                body["provider:physical_network"] = r.provider_physical_network
                body["provider:segmentation_id"] = r.provider_segmentation_id
            out.append(body)
        return out

    async def _render_network(self, conn: AsyncConnection, ctx: RequestContext, network_id: str) -> dict[str, Any]:
        row = (await conn.execute(sa.select(networks).where(networks.c.id == network_id))).one()
        return (await self.render_networks(conn, ctx, [row]))[0]

    # ---- networks ---------------------------------------------------------------------------

    async def create_network(self, ctx: RequestContext, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "network:create")
        attrs.check_attrs(item, NETWORK_CREATE)
        _admin_attrs(ctx, item, "create")
        project_id = attrs.project_of(ctx.project_id, ctx.is_admin, item)
        tags = check_tags(item["tags"]) if "tags" in item else []
        if attrs.list_of(item, "availability_zone_hints"):
            raise faults.HTTPBadRequest(msg="Invalid input for availability_zone_hints. Reason: no availability zone is known.")
        external = attrs.boolean(item, "router:external", False)
        values: dict[str, Any] = {
            "id": new_uuid(),
            "project_id": project_id,
            "name": attrs.string(item, "name", ""),
            "description": attrs.string(item, "description", "", attrs.DESCRIPTION_MAX),
            "admin_state_up": attrs.boolean(item, "admin_state_up", True),
            "status": "ACTIVE",
            "shared": attrs.boolean(item, "shared", False),
            "external": external,
            "mtu": attrs.integer(item, "mtu", 1500, lo=68, hi=9000),
            "port_security_enabled": attrs.boolean(item, "port_security_enabled", True),
            "provider_network_type": "flat" if external else "local",
            "provider_physical_network": None,
            "provider_segmentation_id": None,
            "is_default": attrs.boolean(item, "is_default", False),
            **_provider(item),
        }
        segments.plan(values, item)
        pick = values["provider_network_type"] == segments.VXLAN and values["provider_segmentation_id"] is None
        for attempt in range(segments.ATTEMPTS):
            try:
                async with self.db.write() as conn:
                    await self.check_quota(conn, project_id, "network")
                    if values["is_default"] and external:
                        await self._one_default_external(conn, values["id"])
                    if values["provider_network_type"] == "flat" and values["provider_physical_network"]:
                        await segments.check_flat_free(conn, values["provider_physical_network"])
                    if pick:
                        values["provider_segmentation_id"] = await segments.allocate(
                            conn, *segments.vni_range(self.conf.vni_ranges))
                    await conn.execute(networks.insert().values(**values))
                    if tags:
                        await self.write_tags(conn, "networks", values["id"], tags)
                    return await self._render_network(conn, ctx, values["id"])
            except sa.exc.IntegrityError:  # the VNI was taken meanwhile (another API process)
                if not pick or attempt == segments.ATTEMPTS - 1:
                    raise segments.in_use(values["provider_segmentation_id"]) from None
        raise AssertionError("unreachable")

    async def list_networks(self, ctx: RequestContext) -> list[dict[str, Any]]:
        authorize(ctx, "network:get")
        async with self.db.read() as conn:
            rows = list(
                await conn.execute(
                    sa.select(networks).where(self.visible_networks_clause(ctx)).order_by(networks.c.created_at, networks.c.id)
                )
            )
            return await self.render_networks(conn, ctx, rows)

    async def get_network(self, ctx: RequestContext, network_id: str) -> dict[str, Any]:
        authorize(ctx, "network:get")
        async with self.db.read() as conn:
            row = await self.network_row(conn, ctx, network_id)
            return (await self.render_networks(conn, ctx, [row]))[0]

    async def _owned_network(self, conn: AsyncConnection, ctx: RequestContext, network_id: str, action: str) -> Any:
        row = await self.network_row(conn, ctx, network_id)
        if not owns(ctx, row):
            raise faults.PolicyNotAuthorized(rule=f"rule:{action}_network")
        return row

    async def update_network(self, ctx: RequestContext, network_id: str, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "network:update")
        attrs.check_attrs(item, NETWORK_UPDATE, read_only=("id", "tenant_id", "project_id", "status", "subnets"))
        values: dict[str, Any] = {}
        for key, col in (("name", "name"), ("description", "description")):
            if key in item:
                values[col] = attrs.string(item, key, "", attrs.NAME_MAX)
        for key, col in (("admin_state_up", "admin_state_up"), ("shared", "shared"), ("router:external", "external"),
                         ("port_security_enabled", "port_security_enabled"), ("is_default", "is_default")):
            if key in item:
                values[col] = attrs.boolean(item, key)
        if "mtu" in item:
            values["mtu"] = attrs.integer(item, "mtu", lo=68, hi=9000)
        values.update(_provider(item))
        async with self.db.write() as conn:
            row = await self._owned_network(conn, ctx, network_id, "update")
            _admin_attrs(ctx, item, "update")  # after the lookup: a stranger gets 404, as elsewhere
            await segments.check_update(conn, row, values)
            if values.get("shared") is False and row.shared:
                others = await conn.scalar(
                    sa.select(sa.func.count()).select_from(ports)
                    .where(ports.c.network_id == network_id, ports.c.project_id != row.project_id)
                )
                if others:
                    raise faults.InvalidSharedSetting(network=network_id)
            if values.get("external") is False and row.external:
                gateways = await conn.scalar(
                    sa.select(sa.func.count()).select_from(ports).where(
                        ports.c.network_id == network_id,
                        ports.c.device_owner.in_(("network:router_gateway", "network:floatingip")))
                )
                if gateways:
                    raise faults.ExternalNetworkInUse(net_id=network_id)
            if values.get("is_default", row.is_default) and values.get("external", row.external) and (
                    values.get("is_default") or values.get("external")):
                await self._one_default_external(conn, network_id)
            if values:
                await self.bump(conn, networks, network_id, **values)
            out = await self._render_network(conn, ctx, network_id)
        # admin_state_up is the bridge's state on every host carrying the network (and the MTU its own)
        if any(k in values and values[k] != getattr(row, k) for k in ("admin_state_up", "mtu")):
            await self.dataplane_changed()
        return out

    @staticmethod
    async def _one_default_external(conn: AsyncConnection, network_id: str) -> None:
        """At most one external network is the default (auto-allocated-topology's `is_default`)."""
        other = await conn.scalar(sa.select(networks.c.id).where(
            networks.c.external, networks.c.is_default, networks.c.id != network_id))
        if other is not None:
            raise faults.DefaultExternalNetworkExists(net_id=other)

    @notifies
    async def delete_network(self, ctx: RequestContext, network_id: str) -> None:
        authorize(ctx, "network:delete")
        async with self.db.write() as conn:
            await self._owned_network(conn, ctx, network_id, "delete")
            drop_fips = getattr(self, "delete_disassociated_floatingips", None)  # the floating IP facet
            if drop_fips is not None:
                await drop_fips(conn, network_id)
            busy = await conn.scalar(
                sa.select(sa.func.count()).select_from(ports)
                .where(ports.c.network_id == network_id, ports.c.device_owner.not_in(AUTO_DELETED_OWNERS))
            )
            if busy:
                raise faults.NetworkInUse(net_id=network_id)
            await self.delete_ports_where(conn, ports.c.network_id == network_id)
            for (sid,) in await conn.execute(sa.select(subnets.c.id).where(subnets.c.network_id == network_id)):
                await self.drop_tags(conn, "subnets", sid)
            await conn.execute(subnets.delete().where(subnets.c.network_id == network_id))
            await self.drop_tags(conn, "networks", network_id)
            await conn.execute(networks.delete().where(networks.c.id == network_id))

    async def delete_ports_where(self, conn: AsyncConnection, clause: Any) -> None:
        """Delete ports (and their allocations, bindings and tags) chosen by `clause`; the ports
        facet extends it (security group bindings)."""
        ids = [r[0] for r in await conn.execute(sa.select(ports.c.id).where(clause))]
        for pid in ids:
            await self.drop_tags(conn, "ports", pid)
        if ids:
            await conn.execute(ip_allocations.delete().where(ip_allocations.c.port_id.in_(ids)))
            await conn.execute(ports.delete().where(ports.c.id.in_(ids)))

    # ---- subnets ----------------------------------------------------------------------------

    async def render_subnets(self, conn: AsyncConnection, rows: list[Any]) -> list[dict[str, Any]]:
        tags = await self.tags_of(conn, "subnets", [r.id for r in rows])
        return [
            {
                "id": r.id,
                "name": r.name,
                "description": r.description,
                "tenant_id": r.project_id,
                "project_id": r.project_id,
                "network_id": r.network_id,
                "cidr": r.cidr,
                "ip_version": r.ip_version,
                "gateway_ip": r.gateway_ip,
                "enable_dhcp": r.enable_dhcp,
                "allocation_pools": list(r.allocation_pools),
                "dns_nameservers": list(r.dns_nameservers),
                "host_routes": list(r.host_routes),
                "ipv6_ra_mode": r.ipv6_ra_mode,
                "ipv6_address_mode": r.ipv6_address_mode,
                "subnetpool_id": r.subnetpool_id,
                "segment_id": None,
                "service_types": [],
                "dns_publish_fixed_ip": False,
                "tags": tags[r.id],
                **stamps(r),
            }
            for r in rows
        ]

    async def subnet_row(self, conn: AsyncConnection, ctx: RequestContext, subnet_id: str) -> Any:
        """The subnet the caller may see (its own, or on a network it owns or that is shared), or
        SubnetNotFound."""
        row = (await conn.execute(sa.select(subnets).where(subnets.c.id == subnet_id))).first()
        if row is None:
            raise faults.SubnetNotFound(subnet_id=subnet_id)
        if not owns(ctx, row):
            net = (await conn.execute(sa.select(networks).where(networks.c.id == row.network_id))).first()
            # an external network's subnets stay its owner's unless it is shared too (Neutron's policy)
            if net is None or not (owns(ctx, net) or net.shared):
                raise faults.SubnetNotFound(subnet_id=subnet_id)
        return row

    async def create_subnet(self, ctx: RequestContext, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "subnet:create")
        attrs.check_attrs(item, SUBNET_CREATE)
        if "network_id" not in item:
            raise faults.HTTPBadRequest(msg="Failed to parse request. Required attribute 'network_id' not specified")
        network_id = attrs.uuid_value(item["network_id"], "network_id")
        from_pool = self.wants_pool(item)
        if item.get("prefixlen") is not None and not from_pool:
            raise faults.BadRequest(resource="subnets", msg="prefixlen is only allowed when allocating from a subnet pool")
        return await self._create_subnet(ctx, item, network_id, from_pool)

    async def _create_subnet(self, ctx: RequestContext, item: dict[str, Any], network_id: str,
                             from_pool: bool) -> dict[str, Any]:
        """A pool's CIDR is chosen in the write transaction that inserts the subnet (SQLite serialises
        writers), so two requests never take the same prefix."""
        if attrs.list_of(item, "service_types"):
            raise faults.HTTPBadRequest(msg="Invalid input for service_types. Reason: service types are not supported.")
        if item.get("segment_id") is not None:
            raise faults.HTTPBadRequest(msg="Invalid input for segment_id. Reason: segments are not supported.")
        if not from_pool:
            net, values = self._subnet_values(item, network_id, None)
        tags = check_tags(item["tags"]) if "tags" in item else []
        async with self.db.write() as conn:
            row = await self.network_row(conn, ctx, network_id)
            if not owns(ctx, row):
                raise faults.PolicyNotAuthorized(rule="rule:create_subnet")
            project_id = attrs.project_of(ctx.project_id, ctx.is_admin, item) if not ctx.is_admin or (
                "tenant_id" in item or "project_id" in item) else row.project_id
            if from_pool:
                pool_id, pooled = await self.cidr_from_pool(conn, ctx, item, project_id)
                net, values = self._subnet_values({**item, "cidr": str(pooled), "ip_version": pooled.version},
                                                  network_id, pool_id)
            others = [c for (c,) in await conn.execute(sa.select(subnets.c.cidr).where(subnets.c.network_id == network_id))]
            ipam.check_no_overlap(net, network_id, others)
            await self.check_quota(conn, project_id, "subnet")
            await conn.execute(subnets.insert().values(project_id=project_id, **values))
            if values["ipv6_address_mode"] in ipam.AUTO_ADDRESS_MODES:
                await self._auto_address_ports(conn, net, network_id, values["id"])
            if tags:
                await self.write_tags(conn, "subnets", values["id"], tags)
            new = (await conn.execute(sa.select(subnets).where(subnets.c.id == values["id"]))).one()
            return (await self.render_subnets(conn, [new]))[0]

    def _subnet_values(self, item: dict[str, Any], network_id: str,
                       pool_id: str | None) -> tuple[ipam.IPNetwork, dict[str, Any]]:
        """The checked columns of a new subnet (its network parsed from `cidr`)."""
        if "cidr" not in item:
            raise faults.HTTPBadRequest(msg="a cidr must be specified in the absence of a subnet pool")
        version = attrs.integer(item, "ip_version", None, lo=0, hi=6)
        if version not in (4, 6):
            raise faults.HTTPBadRequest(msg=f"Invalid input for ip_version. Reason: '{item.get('ip_version')}' is not a valid IP version.")
        net = ipam.parse_cidr(item["cidr"], version)
        gateway = ipam.check_gateway(net, item["gateway_ip"]) if "gateway_ip" in item else ipam.default_gateway(net)
        pools = (
            ipam.check_pools(net, item["allocation_pools"], gateway)
            if item.get("allocation_pools") is not None and item.get("allocation_pools") != []
            else ipam.default_pools(net, gateway)
        )
        ra_mode, addr_mode = self._ipv6_modes(item, version)
        return net, {
            "id": new_uuid(),
            "network_id": network_id,
            "name": attrs.string(item, "name", ""),
            "description": attrs.string(item, "description", "", attrs.DESCRIPTION_MAX),
            "cidr": str(net),
            "ip_version": version,
            "gateway_ip": gateway,
            "enable_dhcp": attrs.boolean(item, "enable_dhcp", True),
            "allocation_pools": pools,
            "dns_nameservers": _dns(item, version) or [],
            "host_routes": _routes(item, version) or [],
            "ipv6_ra_mode": ra_mode,
            "ipv6_address_mode": addr_mode,
            "subnetpool_id": pool_id,
        }

    @staticmethod
    async def _auto_address_ports(conn: AsyncConnection, net: ipam.IPNetwork, network_id: str, subnet_id: str) -> None:
        """A new SLAAC (or DHCPv6-stateless) subnet gives every port already on the network its EUI-64
        address there, as Neutron does (router ports take theirs when attached)."""
        rows = await conn.execute(
            sa.select(ports.c.id, ports.c.mac_address, ports.c.device_owner).where(ports.c.network_id == network_id))
        for port_id, mac, owner in list(rows):
            if owner.startswith("network:router"):
                continue
            await conn.execute(ip_allocations.insert().values(
                port_id=port_id, subnet_id=subnet_id, network_id=network_id, ip_address=ipam.eui64(net, mac)))

    @staticmethod
    def _ipv6_modes(item: dict[str, Any], version: int) -> tuple[str | None, str | None]:
        ra, addr = item.get("ipv6_ra_mode"), item.get("ipv6_address_mode")
        for key, value in (("ipv6_ra_mode", ra), ("ipv6_address_mode", addr)):
            if value is not None and value not in ipam.IPV6_MODES:
                raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' is not in {list(ipam.IPV6_MODES)}.")
        if version == 4 and (ra or addr):
            raise faults.InvalidInput(error_message="ipv6_ra_mode or ipv6_address_mode cannot be set when "
                                                    "enable_dhcp is set to False or ip_version is 4")
        if ra and addr and ra != addr:
            raise faults.InvalidInput(error_message=f"ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to "
                                                    f"'{addr}' is not valid. If both attributes are set, they must be "
                                                    "the same value")
        return ra, addr

    async def list_subnets(self, ctx: RequestContext) -> list[dict[str, Any]]:
        authorize(ctx, "subnet:get")
        async with self.db.read() as conn:
            query = sa.select(subnets).order_by(subnets.c.created_at, subnets.c.id)
            if not ctx.is_admin:
                visible = sa.select(networks.c.id).where(
                    sa.or_(networks.c.project_id == ctx.project_id, networks.c.shared))
                query = query.where(sa.or_(subnets.c.project_id == ctx.project_id, subnets.c.network_id.in_(visible)))
            return await self.render_subnets(conn, list(await conn.execute(query)))

    async def get_subnet(self, ctx: RequestContext, subnet_id: str) -> dict[str, Any]:
        authorize(ctx, "subnet:get")
        async with self.db.read() as conn:
            return (await self.render_subnets(conn, [await self.subnet_row(conn, ctx, subnet_id)]))[0]

    @notifies
    async def update_subnet(self, ctx: RequestContext, subnet_id: str, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "subnet:update")
        attrs.check_attrs(item, SUBNET_UPDATE, read_only=SUBNET_READ_ONLY)
        async with self.db.write() as conn:
            row = await self.subnet_row(conn, ctx, subnet_id)
            if not owns(ctx, row):
                raise faults.PolicyNotAuthorized(rule="rule:update_subnet")
            net = ipam.parse_cidr(row.cidr)
            values: dict[str, Any] = {}
            for key in ("name", "description"):
                if key in item:
                    values[key] = attrs.string(item, key, "")
            if "enable_dhcp" in item:
                values["enable_dhcp"] = attrs.boolean(item, "enable_dhcp")
            gateway = row.gateway_ip
            if "gateway_ip" in item:
                gateway = values["gateway_ip"] = ipam.check_gateway(net, item["gateway_ip"])
            if "allocation_pools" in item:
                values["allocation_pools"] = ipam.check_pools(net, item["allocation_pools"] or [], gateway)
            elif "gateway_ip" in item:
                ipam.check_pools(net, list(row.allocation_pools), gateway)
            if "dns_nameservers" in item:
                values["dns_nameservers"] = _dns(item, row.ip_version) or []
            if "host_routes" in item:
                values["host_routes"] = _routes(item, row.ip_version) or []
            if attrs.list_of(item, "service_types") or item.get("segment_id") is not None:
                raise faults.HTTPBadRequest(msg="Invalid input: service types and segments are not supported.")
            if values:
                await self.bump(conn, subnets, subnet_id, **values)
            new = (await conn.execute(sa.select(subnets).where(subnets.c.id == subnet_id))).one()
            return (await self.render_subnets(conn, [new]))[0]

    async def delete_subnet(self, ctx: RequestContext, subnet_id: str) -> None:
        authorize(ctx, "subnet:delete")
        async with self.db.write() as conn:
            row = await self.subnet_row(conn, ctx, subnet_id)
            if not owns(ctx, row):
                raise faults.PolicyNotAuthorized(rule="rule:delete_subnet")
            # A SLAAC subnet's addresses are the ports' own (EUI-64): only a router interface holds it.
            holders = (ports.c.device_owner.like("network:router%") if row.ipv6_address_mode in ipam.AUTO_ADDRESS_MODES
                       else ports.c.device_owner.not_in(AUTO_DELETED_OWNERS))
            busy = await conn.scalar(
                sa.select(sa.func.count()).select_from(ip_allocations.join(ports, ports.c.id == ip_allocations.c.port_id))
                .where(ip_allocations.c.subnet_id == subnet_id, holders)
            )
            if busy:
                raise faults.SubnetInUse(subnet_id=subnet_id)
            await conn.execute(ip_allocations.delete().where(ip_allocations.c.subnet_id == subnet_id))
            await self.drop_tags(conn, "subnets", subnet_id)
            await conn.execute(subnets.delete().where(subnets.c.id == subnet_id))
            await self.bump(conn, networks, row.network_id)


def _dns(item: dict[str, Any], version: int) -> list[str] | None:
    values = attrs.list_of(item, "dns_nameservers", MAX_DNS)
    if values is None:
        return None
    out: list[str] = []
    for v in values:
        ip = str(ipam.parse_ip(v, "dns_nameservers"))
        if ip in out:
            raise faults.HTTPBadRequest(msg=f"Invalid input for dns_nameservers. Reason: Duplicate nameserver '{v}'.")
        out.append(ip)
    return out


def _routes(item: dict[str, Any], version: int) -> list[dict[str, str]] | None:
    values = attrs.list_of(item, "host_routes", MAX_ROUTES)
    if values is None:
        return None
    out: list[dict[str, str]] = []
    for v in values:
        if not isinstance(v, dict) or set(v) != {"destination", "nexthop"}:
            raise faults.HTTPBadRequest(msg="Invalid input for host_routes. Reason: each route is {destination, nexthop}.")
        dest = ipam.parse_cidr_loose(v["destination"])
        hop = ipam.parse_ip(v["nexthop"], "host_routes")
        if dest.version != version or hop.version != version:
            raise faults.HTTPBadRequest(msg=f"Invalid input for host_routes. Reason: route {v} is not IPv{version}.")
        route = {"destination": str(dest), "nexthop": str(hop)}
        if route in out:
            raise faults.HTTPBadRequest(msg=f"Invalid input for host_routes. Reason: Duplicate hostroute '{v}'.")
        out.append(route)
    return out
