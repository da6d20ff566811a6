"""A running server's ports (Nova's os-interface, `server add/remove port|network`, add/removeFixedIp).

Attach makes the port (on a network: Nova's own port, deleted at detach) or takes the user's (only
detached at detach), asks the server's agent to plug it (hot plug through Capability.NICS), and
records it on the instance; a failed plug gives the port back. Detach unplugs on the host, then
releases the port. The instance's `addresses` (Nova's info cache) follows every change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.bus.base import BusUnavailable
from cumulo.compute import instances as inst_db
from cumulo.compute import netports
from cumulo.compute import states as st
from cumulo.compute.models import instances
from cumulo.compute.service import networking
from cumulo.compute.service import transitions as tr
from cumulo.context import RequestContext

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService

# Nova's check_instance_state on attach_interface / detach_interface.
_STATES = frozenset({st.ACTIVE, st.PAUSED, st.STOPPED})
_SYSTEM = RequestContext.system()


class InterfaceService:
    def __init__(self, compute: ComputeService) -> None:
        self.compute = compute
        if compute.network is None:
            raise errors.CumuloError("This cloud has no network service.")  # not reached in a cloud
        self.net: netports.NetworkPorts = compute.network

    async def ports(self, inst: dict[str, Any]) -> list[dict[str, Any]]:
        """The server's ports, as Neutron shows them (device_id is the server)."""
        return await self.net.ports_of_device(inst["uuid"])

    async def port(self, inst: dict[str, Any], port_id: str) -> dict[str, Any]:
        for port in await self.ports(inst):
            if port["id"] == port_id:
                return port
        raise errors.NotFound(f"Instance {inst['uuid']} does not have a port with id {port_id}")

    def _check(self, ctx: RequestContext, inst: dict[str, Any], api_name: str) -> str:
        return tr.device_host(ctx, inst, api_name, _STATES)

    async def attach(
        self, ctx: RequestContext, inst: dict[str, Any], *, port_id: str | None = None, net_id: str | None = None,
        fixed_ip: str | None = None,
    ) -> dict[str, Any]:
        host = self._check(ctx, inst, "attach_interface")
        if port_id:
            if port_id in {p["id"] for p in await self.ports(inst)}:
                raise errors.Conflict(f"Port {port_id} is still in use.")
            wanted: dict[str, Any] = {"port": port_id}
        else:
            if not net_id:
                chosen = await networking.choose_network(self.net, ctx)
                if chosen is None:
                    raise errors.Invalid("No networks are available to attach the interface to.")
                net_id = str(chosen["id"])
            wanted = {"uuid": net_id, **({"fixed_ip": fixed_ip} if fixed_ip else {})}
        try:
            [port] = await self.net.allocate_ports_for_server(ctx, inst["uuid"], [wanted])
        except errors.CumuloError as exc:
            raise _attach_error(exc) from exc
        try:
            await self.compute.agents.attach_interface(host, inst["uuid"], port_id=port["id"], request_id=ctx.request_id)
        except Exception as exc:
            await self._give_back(port["id"], made=not port_id)
            if isinstance(exc, BusUnavailable):
                raise  # the broker away: a 503, the port given back
            raise errors.Conflict(f"Failed to attach network adapter device to {inst['uuid']}: {exc}") from exc
        await self._record(ctx, inst["uuid"], lambda ids, users: (
            [*[i for i in ids if i != port["id"]], port["id"]], [*users, port["id"]] if port_id else users))
        return await self.net.get_port(_SYSTEM, port["id"])

    async def detach(self, ctx: RequestContext, inst: dict[str, Any], port_id: str) -> None:
        host = self._check(ctx, inst, "detach_interface")
        if port_id not in {p["id"] for p in await self.ports(inst)}:
            raise errors.NotFound(f"Port {port_id} is not attached")
        try:
            await self.compute.agents.detach_interface(host, inst["uuid"], port_id=port_id,
                                                       request_id=ctx.request_id)
        except errors.DriverError as exc:  # e.g. a running microvm server: no hot unplug (409, as attach)
            raise errors.Conflict(f"Failed to detach network adapter device from {inst['uuid']}: {exc}") from exc
        await self._give_back(port_id, made=port_id not in netports.user_ports_of(inst))
        await self._record(ctx, inst["uuid"], lambda ids, users: (
            [i for i in ids if i != port_id], [u for u in users if u != port_id]))

    # --- addFixedIp / removeFixedIp, addFloatingIp / removeFloatingIp (Nova before 2.44) ---

    async def add_fixed_ip(self, ctx: RequestContext, inst: dict[str, Any], network_id: str) -> None:
        """One more address on the server's port of that network (from the port's first subnet)."""
        tr.check_lock(ctx, inst)
        port = next((p for p in await self.ports(inst) if p["network_id"] == network_id), None)
        if port is None:
            raise errors.Invalid(f"Network {network_id} could not be found for instance {inst['uuid']}.")
        fixed = [{"subnet_id": f["subnet_id"], "ip_address": f["ip_address"]} for f in port["fixed_ips"]]
        if not fixed:
            raise errors.Invalid(f"Zero fixed IPs could be found on port {port['id']}.")
        try:
            await self.net.update_port(_SYSTEM, port["id"], {"fixed_ips": [*fixed, {"subnet_id": fixed[0]["subnet_id"]}]})
        except errors.CumuloError as exc:
            raise errors.Invalid(f"No more fixed IPs available on network {network_id}: {exc}") from exc
        await self._record(ctx, inst["uuid"], lambda ids, users: (ids, users))

    async def remove_fixed_ip(self, ctx: RequestContext, inst: dict[str, Any], address: str) -> None:
        tr.check_lock(ctx, inst)
        for port in await self.ports(inst):
            fixed = [{"subnet_id": f["subnet_id"], "ip_address": f["ip_address"]} for f in port["fixed_ips"]]
            if any(f["ip_address"] == address for f in fixed):
                await self.net.update_port(_SYSTEM, port["id"], {"fixed_ips": [f for f in fixed if f["ip_address"] != address]})
                await self._record(ctx, inst["uuid"], lambda ids, users: (ids, users))
                return
        raise errors.Invalid(f"Unable to find address {address!r}")

    async def _floating(self, ctx: RequestContext, address: str) -> dict[str, Any]:
        for fip in await self.net.list_floatingips(ctx):
            if fip["floating_ip_address"] == address and fip["project_id"] == ctx.project_id:
                return fip
        raise errors.NotFound(f"floating IP not found: {address}")

    async def add_floating_ip(self, ctx: RequestContext, inst: dict[str, Any], address: str, fixed: Any) -> None:
        """Associate the project's floating IP with the server's port that has `fixed` (or its first)."""
        tr.check_lock(ctx, inst)
        fip = await self._floating(ctx, address)
        ports = await self.ports(inst)
        if not ports:
            raise errors.Invalid(f"Instance {inst['uuid']} has no fixed IP to associate the floating IP with.")
        port, ip = ports[0], None
        if fixed is not None:
            match = [(p, f["ip_address"]) for p in ports for f in p["fixed_ips"] if f["ip_address"] == str(fixed)]
            if not match:
                raise errors.Invalid(f"Specified fixed address not assigned to instance: {fixed}")
            port, ip = match[0]
        try:
            await self.net.update_floatingip(ctx, fip["id"], {"port_id": port["id"],
                                                              **({"fixed_ip_address": ip} if ip else {})})
        except errors.CumuloError as exc:
            raise errors.Invalid(f"Unable to associate floating IP {address} to any fixed IPs for instance "
                                 f"{inst['uuid']}: {exc}") from exc
        await self._record(ctx, inst["uuid"], lambda ids, users: (ids, users))

    async def remove_floating_ip(self, ctx: RequestContext, inst: dict[str, Any], address: str) -> None:
        tr.check_lock(ctx, inst)
        fip = await self._floating(ctx, address)
        if fip["port_id"] not in {p["id"] for p in await self.ports(inst)}:
            raise errors.Conflict(f"Floating IP {address} is not associated with instance {inst['uuid']}.")
        await self.net.update_floatingip(ctx, fip["id"], {"port_id": None})
        await self._record(ctx, inst["uuid"], lambda ids, users: (ids, users))

    async def _give_back(self, port_id: str, *, made: bool) -> None:
        """Delete the port Nova made; detach the user's."""
        if made:
            await self.net.delete_port(_SYSTEM, port_id)
        else:
            await self.net.update_port(_SYSTEM, port_id, {"device_id": "", "device_owner": "", "binding:host_id": ""})

    async def _record(
        self, ctx: RequestContext, uuid: str, change: Callable[[list[str], list[str]], tuple[list[str], list[str]]]
    ) -> None:
        """The instance's recorded ports and addresses after a change (read and written in one transaction)."""
        ports = await self.net.ports_of_device(uuid)
        async with self.compute.db.read() as conn:
            before = await inst_db.get(conn, uuid)
        if before is None:
            return
        ids, _ = change(netports.port_ids_of(before), netports.user_ports_of(before))
        addresses = await networking.addresses(self.net, ctx, netports.in_order(ports, ids))
        async with self.compute.db.write() as conn:
            row = await inst_db.get(conn, uuid)
            if row is None:
                return
            ids, users = change(netports.port_ids_of(row), netports.user_ports_of(row))
            sysmeta = {**(row["system_metadata"] or {}), netports.PORTS_KEY: ids, netports.USER_PORTS_KEY: users}
            await conn.execute(sa.update(instances).where(instances.c.uuid == uuid).values(
                system_metadata=sysmeta, addresses=addresses))


def _attach_error(exc: errors.CumuloError) -> errors.CumuloError:
    """Nova's os-interface answers: 404 for a network or port not found, 409 for one in use, 403 for a
    quota, 400 else."""
    kind = getattr(exc, "neutron_type", "")
    if kind in ("NetworkNotFound", "PortNotFound"):
        return errors.NotFound(str(exc))
    if kind in ("PortInUse", "IpAddressAlreadyAllocated", "MacAddressInUse"):
        return errors.Conflict(str(exc))
    if kind == "OverQuota":  # Neutron's 409; Nova's PortLimitExceeded is a 403
        return errors.Forbidden(str(exc))
    return errors.Invalid(str(exc))
