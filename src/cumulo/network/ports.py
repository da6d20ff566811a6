"""Ports: fixed IPs from IPAM, MACs, device, binding, port security, address pairs and DHCP options.

A port is created on a network the caller sees: its own, or a shared or external one. On another
project's shared network only the subnet of a fixed IP may be chosen, not its address (Neutron's
`create_port:fixed_ips:ip_address` is for the network owner), and `network:*` device owners are for
the network owner too. `binding:*` (but vnic_type) is admin-only. Without `fixed_ips` a port gets
one address from the first IPv4 subnet with room, one from the first stateful IPv6 subnet, and its
EUI-64 address on every SLAAC subnet. A port with port security on (the network's default) and no
`security_groups` joins its project's default group (`secgroups.ensure_default`).

`ports_sys` holds what Nova's side calls later (allocate_ports_for_server, ports_of_device, bind_port).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.context import RequestContext
from cumulo.db import new_uuid
from cumulo.network import attrs, faults, ipam
from cumulo.network.base import authorize, check_tags, lock_network_addresses, notifies, owns, stamps
from cumulo.network.models import floating_ips, ip_allocations, networks, port_security_groups, ports, subnets
from cumulo.network.networks import Networks

PORT_CREATE = (
    "name", "description", "network_id", "admin_state_up", "mac_address", "fixed_ips", "device_id",
    "device_owner", "tenant_id", "project_id", "binding:host_id", "binding:profile", "binding:vnic_type",
    "port_security_enabled", "security_groups", "allowed_address_pairs", "extra_dhcp_opts", "tags",
    "propagate_uplink_status",
)
PORT_UPDATE = tuple(k for k in PORT_CREATE if k not in ("network_id", "tenant_id", "project_id", "tags"))
PORT_READ_ONLY = ("id", "network_id", "tenant_id", "project_id", "status")
VNIC_TYPES = ("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder", "smart-nic",
              "vdpa", "remote-managed")
ROUTER_OWNERS = ("network:router_interface", "network:router_gateway", "network:router_interface_distributed",
                 "network:ha_router_replicated_interface")
SERVICE_OWNERS = (*ROUTER_OWNERS, "network:floatingip")
MAX_ADDRESS_PAIRS = 10
MAX_DHCP_OPTS = 64


def _vif_type(host: str) -> str:
    return "bridge" if host else "unbound"


class Ports(Networks):
    """Ports, on top of networks and subnets."""

    # ---- rendering --------------------------------------------------------------------------

    async def render_ports(self, conn: AsyncConnection, ctx: RequestContext | None, rows: Sequence[Any]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        ips: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
        groups: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            for pid, sid, ip in await conn.execute(
                sa.select(ip_allocations.c.port_id, ip_allocations.c.subnet_id, ip_allocations.c.ip_address)
                .where(ip_allocations.c.port_id.in_(ids)).order_by(ip_allocations.c.id)
            ):
                ips[pid].append({"subnet_id": sid, "ip_address": ip})
            for pid, gid in await conn.execute(
                sa.select(port_security_groups.c.port_id, port_security_groups.c.security_group_id)
                .where(port_security_groups.c.port_id.in_(ids))
            ):
                groups[pid].append(gid)
        tags = await self.tags_of(conn, "ports", ids)
        admin = ctx is None or ctx.is_admin
        out = []
        for r in rows:
            body: dict[str, Any] = {
                "id": r.id,
                "name": r.name,
                "description": r.description,
                "network_id": r.network_id,
                "tenant_id": r.project_id,
                "project_id": r.project_id,
                "mac_address": r.mac_address,
                "admin_state_up": r.admin_state_up,
                "status": r.status,
                "device_id": r.device_id,
                "device_owner": r.device_owner,
                "fixed_ips": ips[r.id],
                "allowed_address_pairs": list(r.allowed_address_pairs),
                "extra_dhcp_opts": list(r.extra_dhcp_opts),
                "security_groups": sorted(groups[r.id]),
                "port_security_enabled": r.port_security_enabled,
                "binding:vnic_type": r.binding_vnic_type,
                "ip_allocation": "immediate",
                "propagate_uplink_status": False,
                "resource_request": None,
                "tags": tags[r.id],
                **stamps(r),
            }
            if admin:  # Neutron's policy shows the binding details to admins only
                body["binding:host_id"] = r.binding_host_id
                body["binding:profile"] = dict(r.binding_profile)
                body["binding:vif_type"] = _vif_type(r.binding_host_id)
                body["binding:vif_details"] = {"port_filter": True} if r.binding_host_id else {}
            out.append(body)
        return out

    async def _render_port(self, conn: AsyncConnection, ctx: RequestContext | None, port_id: str) -> dict[str, Any]:
        row = (await conn.execute(sa.select(ports).where(ports.c.id == port_id))).one()
        return (await self.render_ports(conn, ctx, [row]))[0]

    async def port_row(self, conn: AsyncConnection, ctx: RequestContext, port_id: str) -> Any:
        """The port the caller may see (its own, or one on a network it owns), or PortNotFound."""
        row = (await conn.execute(sa.select(ports).where(ports.c.id == port_id))).first()
        if row is None:
            raise faults.PortNotFound(port_id=port_id)
        if not owns(ctx, row):
            net = (await conn.execute(sa.select(networks.c.project_id).where(networks.c.id == row.network_id))).first()
            if net is None or net.project_id != ctx.project_id:
                raise faults.PortNotFound(port_id=port_id)
        return row

    # ---- the API ----------------------------------------------------------------------------

    async def create_port(self, ctx: RequestContext, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "port:create")
        attrs.check_attrs(item, PORT_CREATE)
        if "network_id" not in item:
            raise faults.HTTPBadRequest(msg="Failed to parse request. Required attribute 'network_id' not specified")
        project_id = attrs.project_of(ctx.project_id, ctx.is_admin, item)
        default_group = await self._default_group_for(ctx, project_id, item)

        async def write() -> dict[str, Any]:
            async with self.db.write() as conn:
                port_id = await self.insert_port(conn, ctx, project_id, item, default_group)
                return await self._render_port(conn, ctx, port_id)

        return await self.retry_unique(write)

    async def _default_group_for(self, ctx: RequestContext, project_id: str, item: dict[str, Any]) -> str | None:
        """The project's default security group (made on first use) when the new port will want it."""
        owner = item.get("device_owner") or ""
        if "security_groups" in item or (isinstance(owner, str) and owner.startswith("network:")):
            return None
        if attrs.boolean(item, "port_security_enabled", True) is False:
            return None
        ensure = getattr(self, "ensure_default", None)  # the security groups facet (secgroups.py)
        if ensure is None:
            return None
        group: str | None = await ensure(ctx, project_id)
        return group

    async def insert_port(
        self, conn: AsyncConnection, ctx: RequestContext, project_id: str, item: dict[str, Any],
        default_group: str | None,
    ) -> str:
        """Create a port inside the caller's write transaction; its id."""
        network_id = attrs.uuid_value(item["network_id"], "network_id")
        net = await self.network_row(conn, ctx, network_id)
        net_owner = owns(ctx, net)
        device_owner = attrs.string(item, "device_owner", "") or ""
        if device_owner.startswith("network:") and not net_owner:
            raise faults.PolicyNotAuthorized(rule="rule:create_port:device_owner")
        if any(k.startswith("binding:") and k != "binding:vnic_type" for k in item):
            authorize(ctx, "port:binding")
        port_id = new_uuid()
        if "mac_address" in item and item["mac_address"] is not None:
            if not net_owner:
                raise faults.PolicyNotAuthorized(rule="rule:create_port:mac_address")
            mac = ipam.check_mac(item["mac_address"])
            await self._check_mac_free(conn, network_id, mac)
        else:
            mac = await self._new_mac(conn, network_id)
        security = attrs.boolean(item, "port_security_enabled", net.port_security_enabled)
        groups = await self._groups(conn, ctx, project_id, item, default_group, bool(security))
        pairs = _address_pairs(item, mac, bool(security)) or []
        values: dict[str, Any] = {
            "id": port_id,
            "project_id": project_id,
            "network_id": network_id,
            "name": attrs.string(item, "name", ""),
            "description": attrs.string(item, "description", "", attrs.DESCRIPTION_MAX),
            "mac_address": mac,
            "admin_state_up": attrs.boolean(item, "admin_state_up", True),
            "status": "DOWN",
            "device_id": attrs.string(item, "device_id", ""),
            "device_owner": device_owner,
            "port_security_enabled": security,
            "allowed_address_pairs": pairs,
            "extra_dhcp_opts": _dhcp_opts(item, []) or [],
            **_binding(item, {}),
        }
        tags = check_tags(item["tags"]) if "tags" in item else []
        await self.check_quota(conn, project_id, "port")
        await conn.execute(ports.insert().values(**values))
        requested = attrs.list_of(item, "fixed_ips")
        await self._allocate(conn, ctx, net, port_id, mac, requested, device_owner, net_owner)
        for gid in groups:
            await conn.execute(port_security_groups.insert().values(port_id=port_id, security_group_id=gid))
        if tags:
            await self.write_tags(conn, "ports", port_id, tags)
        return port_id

    async def list_ports(self, ctx: RequestContext) -> list[dict[str, Any]]:
        authorize(ctx, "port:get")
        async with self.db.read() as conn:
            query = sa.select(ports).order_by(ports.c.created_at, ports.c.id)
            if not ctx.is_admin:
                own_nets = sa.select(networks.c.id).where(networks.c.project_id == ctx.project_id)
                query = query.where(sa.or_(ports.c.project_id == ctx.project_id, ports.c.network_id.in_(own_nets)))
            return await self.render_ports(conn, ctx, list(await conn.execute(query)))

    async def get_port(self, ctx: RequestContext, port_id: str) -> dict[str, Any]:
        authorize(ctx, "port:get")
        async with self.db.read() as conn:
            return (await self.render_ports(conn, ctx, [await self.port_row(conn, ctx, port_id)]))[0]

    @notifies
    async def update_port(self, ctx: RequestContext, port_id: str, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "port:update")
        attrs.check_attrs(item, PORT_UPDATE, read_only=PORT_READ_ONLY)
        return await self.retry_unique(lambda: self._update_port(ctx, port_id, item))

    async def _update_port(self, ctx: RequestContext, port_id: str, item: dict[str, Any]) -> dict[str, Any]:
        async with self.db.write() as conn:
            row = await self.port_row(conn, ctx, port_id)
            if any(k.startswith("binding:") and k != "binding:vnic_type" for k in item):
                authorize(ctx, "port:binding")
            net = await self.network_row(conn, ctx, row.network_id)
            net_owner = owns(ctx, net)
            values: dict[str, Any] = {}
            for key in ("name", "description", "device_id"):
                if key in item:
                    values[key] = attrs.string(item, key, "", attrs.DESCRIPTION_MAX if key == "description" else 255)
            if "device_owner" in item:
                owner = attrs.string(item, "device_owner", "") or ""
                if owner.startswith("network:") and not net_owner:
                    raise faults.PolicyNotAuthorized(rule="rule:update_port:device_owner")
                values["device_owner"] = owner
            if "admin_state_up" in item:
                values["admin_state_up"] = attrs.boolean(item, "admin_state_up")
            mac = row.mac_address
            if "mac_address" in item:
                if not ctx.is_admin:
                    raise faults.PolicyNotAuthorized(rule="rule:update_port:mac_address")
                if row.binding_host_id:
                    raise faults.PortBound(port_id=port_id)
                mac = ipam.check_mac(item["mac_address"])
                if mac != row.mac_address:
                    await self._check_mac_free(conn, row.network_id, mac)
                    values["mac_address"] = mac
            security = bool(attrs.boolean(item, "port_security_enabled", row.port_security_enabled))
            values["port_security_enabled"] = security
            current_groups = [g for (g,) in await conn.execute(
                sa.select(port_security_groups.c.security_group_id).where(port_security_groups.c.port_id == port_id))]
            if "security_groups" in item:
                groups = await self._groups(conn, ctx, row.project_id, item, None, security)
            else:
                groups = current_groups
                if not security and groups:
                    raise faults.PortSecurityPortHasSecurityGroup()
            pairs = _address_pairs(item, mac, security)
            if pairs is not None:
                values["allowed_address_pairs"] = pairs
            elif not security and row.allowed_address_pairs:
                raise faults.AddressPairAndPortSecurityRequired()
            opts = _dhcp_opts(item, list(row.extra_dhcp_opts))
            if opts is not None:
                values["extra_dhcp_opts"] = opts
            values.update(_binding(item, row._mapping))
            if "fixed_ips" in item:
                requested = attrs.list_of(item, "fixed_ips") or []
                await self._reallocate(conn, ctx, net, row, requested, net_owner)
            if "security_groups" in item and sorted(groups) != sorted(current_groups):
                await conn.execute(port_security_groups.delete().where(port_security_groups.c.port_id == port_id))
                for gid in groups:
                    await conn.execute(port_security_groups.insert().values(port_id=port_id, security_group_id=gid))
            await self.bump(conn, ports, port_id, **values)
            return await self._render_port(conn, ctx, port_id)

    @notifies
    async def delete_port(self, ctx: RequestContext, port_id: str) -> None:
        authorize(ctx, "port:delete")
        async with self.db.write() as conn:
            row = await self.port_row(conn, ctx, port_id)
            if row.device_owner in SERVICE_OWNERS:
                raise faults.ServicePortInUse(port_id=port_id, reason=f"has device owner {row.device_owner}")
            await self.remove_port(conn, port_id)

    async def remove_port(self, conn: AsyncConnection, port_id: str) -> None:
        """Delete a port inside a write transaction: its addresses, groups and tags go, and a floating
        IP that pointed at it is disassociated (as Neutron does)."""
        await conn.execute(
            floating_ips.update().where(floating_ips.c.port_id == port_id)
            .values(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
        )
        await self.delete_ports_where(conn, ports.c.id == port_id)

    async def delete_ports_where(self, conn: AsyncConnection, clause: Any) -> None:
        ids = [r[0] for r in await conn.execute(sa.select(ports.c.id).where(clause))]
        if ids:
            await conn.execute(port_security_groups.delete().where(port_security_groups.c.port_id.in_(ids)))
        await super().delete_ports_where(conn, clause)

    # ---- helpers ----------------------------------------------------------------------------

    async def _check_mac_free(self, conn: AsyncConnection, network_id: str, mac: str) -> None:
        used = await conn.scalar(
            sa.select(sa.func.count()).select_from(ports).where(ports.c.network_id == network_id, ports.c.mac_address == mac)
        )
        if used:
            raise faults.MacAddressInUse(net_id=network_id, mac=mac)

    async def _new_mac(self, conn: AsyncConnection, network_id: str) -> str:
        for _ in range(16):
            mac = ipam.random_mac()
            used = await conn.scalar(
                sa.select(sa.func.count()).select_from(ports).where(ports.c.network_id == network_id, ports.c.mac_address == mac)
            )
            if not used:
                return mac
        raise faults.MacAddressGenerationFailure(net_id=network_id)

    async def _groups(
        self, conn: AsyncConnection, ctx: RequestContext, project_id: str, item: dict[str, Any],
        default_group: str | None, security: bool,
    ) -> list[str]:
        if "security_groups" not in item:
            return [default_group] if (default_group and security) else []
        wanted = attrs.list_of(item, "security_groups") or []
        out: list[str] = []
        for gid in wanted:
            gid = attrs.uuid_value(gid, "security_groups")
            if gid not in out:
                out.append(gid)
        if out and not security:
            raise faults.PortSecurityAndIPRequiredForSecurityGroups()
        check = getattr(self, "check_usable", None)  # the security groups facet: each group visible
        if check is not None and out:
            await check(conn, project_id, out)
        return out

    async def _subnets_of(self, conn: AsyncConnection, network_id: str) -> list[Any]:
        return list(await conn.execute(
            sa.select(subnets).where(subnets.c.network_id == network_id).order_by(subnets.c.created_at, subnets.c.id)))

    async def _taken(self, conn: AsyncConnection, network_id: str) -> set[str]:
        return {ip for (ip,) in await conn.execute(
            sa.select(ip_allocations.c.ip_address).where(ip_allocations.c.network_id == network_id))}

    async def _allocate(
        self, conn: AsyncConnection, ctx: RequestContext, net: Any, port_id: str, mac: str,
        requested: list[Any] | None, device_owner: str, net_owner: bool,
    ) -> None:
        """Give the port its fixed IPs: `requested` ({subnet_id, ip_address} entries), or Neutron's
        automatic choice when None."""
        await lock_network_addresses(conn, net.id)
        subs = await self._subnets_of(conn, net.id)
        by_id = {s.id: s for s in subs}
        taken = await self._taken(conn, net.id)
        plan: list[tuple[str, str]] = []
        if requested is None:
            done_v4 = done_v6 = False
            for s in subs:
                cidr = ipam.parse_cidr(s.cidr)
                if s.ip_version == 6 and s.ipv6_address_mode in ipam.AUTO_ADDRESS_MODES:
                    if device_owner not in ROUTER_OWNERS:
                        plan.append((s.id, ipam.eui64(cidr, mac)))
                    continue
                if (s.ip_version == 4 and done_v4) or (s.ip_version == 6 and done_v6):
                    continue
                ip = ipam.next_free(s.allocation_pools, taken | {p[1] for p in plan})
                if ip is None:
                    continue
                plan.append((s.id, ip))
                done_v4 = done_v4 or s.ip_version == 4
                done_v6 = done_v6 or s.ip_version == 6
            if subs and not plan:
                raise faults.IpAddressGenerationFailure(net_id=net.id)
        else:
            for entry in requested:
                plan.append(self._plan_one(net, subs, by_id, entry, mac, taken, plan, device_owner, net_owner))
        for sid, ip in plan:
            if ip in taken:
                raise faults.IpAddressAlreadyAllocated(ip=ip, subnet_id=sid)
            await conn.execute(ip_allocations.insert().values(port_id=port_id, subnet_id=sid, network_id=net.id, ip_address=ip))
            taken.add(ip)

    def _plan_one(
        self, net: Any, subs: list[Any], by_id: dict[str, Any], entry: Any, mac: str, taken: set[str],
        plan: list[tuple[str, str]], device_owner: str, net_owner: bool,
    ) -> tuple[str, str]:
        if not isinstance(entry, dict) or not entry or set(entry) - {"subnet_id", "ip_address"}:
            raise faults.HTTPBadRequest(msg="Invalid input for fixed_ips. Reason: each entry is {subnet_id, ip_address}.")
        sid = attrs.uuid_value(entry["subnet_id"], "fixed_ips") if "subnet_id" in entry else None
        if sid is not None and sid not in by_id:
            raise faults.InvalidInput(
                error_message=f"Failed to create port on network {net.id}, because fixed_ips included invalid subnet {sid}")
        if "ip_address" in entry:
            if not net_owner:
                raise faults.PolicyNotAuthorized(rule="rule:create_port:fixed_ips:ip_address")
            ip_obj = ipam.parse_ip(entry["ip_address"], "fixed_ips")
            if sid is None:
                match = [s for s in subs if ip_obj.version == s.ip_version and ip_obj in ipaddress.ip_network(s.cidr)]
                if not match:
                    raise faults.InvalidIpForNetwork(ip_address=entry["ip_address"])
                sid = match[0].id
            subnet = by_id[sid]
            ip = ipam.check_requested_ip(ipam.parse_cidr(subnet.cidr), entry["ip_address"], sid)
            if ip == subnet.gateway_ip and device_owner not in ROUTER_OWNERS:
                raise faults.IpAddressAlreadyAllocated(ip=ip, subnet_id=sid)
        else:
            assert sid is not None
            subnet = by_id[sid]
            cidr = ipam.parse_cidr(subnet.cidr)
            if subnet.ip_version == 6 and subnet.ipv6_address_mode in ipam.AUTO_ADDRESS_MODES:
                ip = ipam.eui64(cidr, mac)
            else:
                found = ipam.next_free(subnet.allocation_pools, taken | {p[1] for p in plan})
                if found is None:
                    raise faults.IpAddressGenerationFailure(subnet_id=sid)
                ip = found
        if (sid, ip) in plan:
            raise faults.HTTPBadRequest(msg=f"Invalid input for fixed_ips. Reason: duplicate IP address '{ip}'.")
        return sid, ip

    async def _reallocate(
        self, conn: AsyncConnection, ctx: RequestContext, net: Any, row: Any, requested: list[Any], net_owner: bool,
    ) -> None:
        """Replace the port's fixed IPs with `requested` (an address it keeps may be asked for again)."""
        await conn.execute(ip_allocations.delete().where(ip_allocations.c.port_id == row.id))
        await self._allocate(conn, ctx, net, row.id, row.mac_address, requested, row.device_owner, net_owner)


def _binding(item: dict[str, Any], current: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "binding:host_id" in item:
        out["binding_host_id"] = attrs.string(item, "binding:host_id", "") or ""
    if "binding:profile" in item:
        profile = item["binding:profile"]
        if profile is None:
            profile = {}
        if not isinstance(profile, dict):
            raise faults.HTTPBadRequest(msg="Invalid input for binding:profile. Reason: it must be a dictionary.")
        out["binding_profile"] = profile
    elif not current:
        out["binding_profile"] = {}
    if "binding:vnic_type" in item:
        vnic = attrs.string(item, "binding:vnic_type")
        if vnic not in VNIC_TYPES:
            raise faults.HTTPBadRequest(msg=f"Invalid input for binding:vnic_type. Reason: '{vnic}' is not in {list(VNIC_TYPES)}.")
        out["binding_vnic_type"] = vnic
    return out


def _address_pairs(item: dict[str, Any], mac: str, security: bool) -> list[dict[str, str]] | None:
    values = attrs.list_of(item, "allowed_address_pairs")
    if values is None:
        return None
    if len(values) > MAX_ADDRESS_PAIRS:
        raise faults.AllowedAddressPairExhausted(quota=MAX_ADDRESS_PAIRS)
    if values and not security:
        raise faults.AddressPairAndPortSecurityRequired()
    out: list[dict[str, str]] = []
    for v in values:
        if not isinstance(v, dict) or "ip_address" not in v or set(v) - {"ip_address", "mac_address"}:
            raise faults.HTTPBadRequest(msg="Invalid input for allowed_address_pairs. Reason: each pair is {ip_address, mac_address}.")
        raw = v["ip_address"]
        try:
            if not isinstance(raw, str):
                raise ValueError(raw)
            ip = str(ipaddress.ip_network(raw, strict=False)) if "/" in raw else str(ipaddress.ip_address(raw))
        except ValueError:
            raise faults.HTTPBadRequest(
                msg=f"Invalid input for allowed_address_pairs. Reason: '{raw}' is not a valid IP address or CIDR.") from None
        pair_mac = ipam.check_mac(v["mac_address"]) if v.get("mac_address") is not None else mac
        pair = {"ip_address": ip, "mac_address": pair_mac}
        if pair in out:
            raise faults.DuplicateAddressPairInRequest(mac_address=pair_mac, ip_address=ip)
        out.append(pair)
    return out


def _dhcp_opts(item: dict[str, Any], current: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Neutron's extra_dhcp_opts: an update merges by (opt_name, ip_version); opt_value null removes."""
    values = attrs.list_of(item, "extra_dhcp_opts", MAX_DHCP_OPTS)
    if values is None:
        return None
    out = {(o["opt_name"], o.get("ip_version", 4)): o for o in current}
    for v in values:
        if not isinstance(v, dict) or "opt_name" not in v or set(v) - {"opt_name", "opt_value", "ip_version"}:
            raise faults.HTTPBadRequest(msg="Invalid input for extra_dhcp_opts. Reason: each is {opt_name, opt_value, ip_version}.")
        name = attrs.string(v, "opt_name", max_len=64)
        if not name:
            raise faults.HTTPBadRequest(msg="Invalid input for extra_dhcp_opts. Reason: opt_name must not be empty.")
        value = attrs.string(v, "opt_value", None)
        version = attrs.integer(v, "ip_version", 4, lo=4, hi=6)
        if version not in (4, 6):
            raise faults.HTTPBadRequest(msg=f"Invalid input for extra_dhcp_opts. Reason: ip_version {version} is not 4 or 6.")
        if value is None:
            out.pop((name, version), None)
        else:
            out[(name, version)] = {"opt_name": name, "opt_value": value, "ip_version": version}
    return list(out.values())
