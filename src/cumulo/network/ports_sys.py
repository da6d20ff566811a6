"""The ports seam Nova's side uses: allocate a server's ports, find them by device, bind them to a host.

`allocate_ports_for_server(ctx, instance_uuid, requested)` takes the entries of a server create's
`networks` (each {"uuid": network} or {"port": port}, optionally "fixed_ip"), all in one write
transaction: either every port is made or taken, or none is. A given port must be visible to the
caller and not attached elsewhere (409 PortInUse). Ports made here carry device_owner
"compute:<zone>" and the server's uuid as device_id (a given port takes them too, as Nova sets them).
`release_ports_of_device` undoes it on server delete: ports made for the server go, the given ports
(which the caller names in `keep`, from the server's requested networks) are detached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.network import attrs, faults
from cumulo.network.base import authorize
from cumulo.network.models import floating_ips, ip_allocations, networks, ports
from cumulo.network.ports import Ports

COMPUTE_OWNER = "compute:nova"


class PortsForServers(Ports):
    """Ports as Nova's side sees them."""

    async def allocate_ports_for_server(
        self, ctx: RequestContext, instance_uuid: str, requested: Sequence[dict[str, Any]], *,
        device_owner: str = COMPUTE_OWNER,
    ) -> list[dict[str, Any]]:
        """The server's ports, in the order requested: made on the named networks, or taken over."""
        authorize(ctx, "port:create")
        if not ctx.project_id:
            raise faults.HTTPBadRequest(msg="A project is required to allocate ports")
        wants_default = any("port" not in r for r in requested)
        default_group = None
        if wants_default:
            ensure = getattr(self, "ensure_default", None)  # the security groups facet
            if ensure is not None:
                default_group = await ensure(ctx, ctx.project_id)
        return await self.retry_unique(
            lambda: self._allocate_for_server(ctx, instance_uuid, requested, device_owner, default_group))

    async def _allocate_for_server(
        self, ctx: RequestContext, instance_uuid: str, requested: Sequence[dict[str, Any]], device_owner: str,
        default_group: str | None,
    ) -> list[dict[str, Any]]:
        assert ctx.project_id is not None
        ids: list[str] = []
        async with self.db.write() as conn:
            for req in requested:
                if not isinstance(req, dict):
                    raise faults.HTTPBadRequest(msg="Each requested network is an object")
                if req.get("port"):
                    port_id = attrs.uuid_value(req["port"], "port")
                    row = await self.port_row(conn, ctx, port_id)
                    if row.device_id and row.device_id != instance_uuid:
                        raise faults.PortInUse(port_id=port_id, net_id=row.network_id, device_id=row.device_id)
                    await self.bump(conn, ports, port_id, device_id=instance_uuid,
                                    device_owner=row.device_owner or device_owner)
                    ids.append(port_id)
                    continue
                item: dict[str, Any] = {"network_id": req.get("uuid"), "device_id": instance_uuid,
                                        "device_owner": device_owner}
                if req.get("fixed_ip"):
                    item["fixed_ips"] = [{"ip_address": req["fixed_ip"]}]
                if "network_id" not in item or item["network_id"] is None:
                    raise faults.HTTPBadRequest(msg="Each requested network needs a network uuid or a port")
                ids.append(await self.insert_port(conn, ctx, ctx.project_id, item, default_group))
            rows = [(await conn.execute(sa.select(ports).where(ports.c.id == i))).one() for i in ids]
            return await self.render_ports(conn, None, rows)

    async def ports_of_device(self, device_id: str) -> list[dict[str, Any]]:
        """Every port attached to `device_id` (a server's uuid), as an admin sees them."""
        async with self.db.read() as conn:
            rows = list(await conn.execute(
                sa.select(ports).where(ports.c.device_id == device_id).order_by(ports.c.created_at, ports.c.id)))
            return await self.render_ports(conn, None, rows)

    async def bind_port(self, port_id: str, host: str) -> dict[str, Any]:
        """Bind the port to a compute host (binding:host_id; vif_type "bridge"), as Nova does before plugging."""
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(ports).where(ports.c.id == port_id))).first()
            if row is None:
                raise faults.PortNotFound(port_id=port_id)
            await self.bump(conn, ports, port_id, binding_host_id=host)
            return await self._render_port(conn, None, port_id)

    async def set_port_status(self, port_id: str, status: str) -> None:
        """ACTIVE once the agent has plumbed the port, DOWN when it is gone (the agent's report)."""
        if status not in ("ACTIVE", "DOWN", "BUILD", "ERROR"):
            raise ValueError(f"unknown port status {status!r}")
        async with self.db.write() as conn:
            await conn.execute(ports.update().where(ports.c.id == port_id).values(status=status, updated_at=utcnow()))

    async def release_ports_of_device(self, device_id: str, *, delete_owner: str = COMPUTE_OWNER,
                                      keep: Sequence[str] = ()) -> None:
        """On server delete: the ports made for it (device_owner `delete_owner`, not in `keep`) are
        deleted, the others detached (device_id, device_owner and binding cleared)."""
        async with self.db.write() as conn:
            for row in list(await conn.execute(sa.select(ports).where(ports.c.device_id == device_id))):
                if row.device_owner == delete_owner and row.id not in keep:
                    await self.remove_port(conn, row.id)
                else:
                    await self.bump(conn, ports, row.id, device_id="", device_owner="", binding_host_id="",
                                    status="DOWN")

    async def addresses_of_device(self, device_id: str) -> list[tuple[str, str, str]]:
        """(network_id, mac, ip) of every fixed IP of the device's ports, for Nova's `addresses`."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(ports.c.network_id, ports.c.mac_address, ip_allocations.c.ip_address)
                .select_from(ports.join(ip_allocations, ip_allocations.c.port_id == ports.c.id))
                .where(ports.c.device_id == device_id).order_by(ports.c.created_at, ip_allocations.c.id)
            )
            return [(n, m, ip) for n, m, ip in rows]

    async def addresses_of_devices(self, ctx: RequestContext, device_ids: Sequence[str]) -> dict[str, Any]:
        """What Nova's `addresses` of a page of servers need, in three queries whatever their number
        (Nova's info cache as Neutron's notifications keep it fresh): `ports` (id, device_id,
        network_id, mac_address, fixed_ips, in creation order), `floatingips` (port_id,
        floating_ip_address of each associated one) and `networks` (id -> name, for the networks
        the caller may see; the others are left out)."""
        found: list[dict[str, Any]] = []
        fips: list[dict[str, str]] = []
        names: dict[str, str] = {}
        wanted = sorted({str(d) for d in device_ids if d})
        async with self.db.read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                rows = await conn.execute(
                    sa.select(ports.c.id, ports.c.device_id, ports.c.network_id, ports.c.mac_address,
                              ip_allocations.c.ip_address)
                    .select_from(ports.outerjoin(ip_allocations, ip_allocations.c.port_id == ports.c.id))
                    .where(ports.c.device_id.in_(chunk))
                    .order_by(ports.c.created_at, ports.c.id, ip_allocations.c.id))
                by_id: dict[str, dict[str, Any]] = {}
                for pid, dev, nid, mac, ip in rows:
                    port = by_id.get(pid)
                    if port is None:
                        port = by_id[pid] = {"id": pid, "device_id": dev, "network_id": nid, "mac_address": mac,
                                             "fixed_ips": []}
                        found.append(port)
                    if ip is not None:
                        port["fixed_ips"].append({"ip_address": ip})
                if by_id:
                    fips += [{"port_id": pid, "floating_ip_address": addr} for pid, addr in await conn.execute(
                        sa.select(floating_ips.c.port_id, floating_ips.c.floating_ip_address)
                        .where(floating_ips.c.port_id.in_(list(by_id))).order_by(floating_ips.c.floating_ip_address))]
            nets = sorted({p["network_id"] for p in found})
            if nets:
                names = {nid: name for nid, name in await conn.execute(
                    sa.select(networks.c.id, networks.c.name)
                    .where(networks.c.id.in_(nets), self.visible_networks_clause(ctx)))}
        return {"ports": found, "floatingips": fips, "networks": names}
