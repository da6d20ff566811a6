"""networkinterface (+ ipnetworkinterface) <-> a server's ports: the OCCI networkinterface kind over
the compute service's interface attach and detach (the same path as Nova's os-interface, so the same
checks, policy rules `os_compute_api:os-attach-interfaces:*`, agent calls and hot plug) and the
network service's ports, with the caller's RequestContext.

Mapping (docs/occi.md, "Networks", restates it):
- occi.core.id = the port's UUID; occi.core.title = the port's name; occi.core.source =
  /compute/<server uuid> (the port's device); occi.core.target = /network/<network uuid>.
- occi.networkinterface.interface = "eth<i>", i the port's place in the server's NIC order (a
  container's NICs are eth0, eth1, ... in that order; a VM's guest names them itself);
  occi.networkinterface.mac = the port's MAC.
- occi.networkinterface.state: active (port ACTIVE on a network that is up), inactive (port DOWN or
  BUILD, or its network is down: `down` on the network), error (port ERROR); state.message = the
  port's status (and "network down").
- ipnetworkinterface mixin (a port with a fixed IP): address = its first IPv4 address (else its
  first), without the prefix; gateway = that subnet's gateway_ip; allocation = dynamic (the subnet
  has DHCP) | static.
- create (POST /networkinterface/ with source a compute and target a network; optional
  occi.networkinterface.address -> the fixed IP): a port on the network, hot plugged into the
  server (os-interface attach; 409 when the server's state does not allow it). The compute
  backend turns inline networkinterface links of a compute create into the server's networks.
- delete: detach (os-interface detach): the port made for the link is deleted, a port the user
  brought (through Neutron) is only detached.
- Scope: the caller's project's ports of its servers; anything else is a 404.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from cumulo import errors, policy
from cumulo.compute import netports
from cumulo.compute.api import interfaces as _nova_interfaces  # noqa: F401  (registers os-attach-interfaces:*)
from cumulo.compute.service.interfaces import InterfaceService
from cumulo.context import RequestContext
from cumulo.occi import categories
from cumulo.occi.backends.endpoints import endpoints, located
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind, split_location

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.network.service import NetworkService
    from cumulo.occi.deps import OcciServices

RULE = "os_compute_api:os-attach-interfaces"
IPNETWORKINTERFACE = categories.IPNETWORKINTERFACE.id
_SYSTEM = RequestContext.system()
Rows = list[dict[str, Any]]  # (`list` is a method name inside the backend)


def link_state(port: dict[str, Any], network_up: bool) -> tuple[str, str]:
    """(occi.networkinterface.state, state.message) of a port."""
    status = str(port.get("status") or "DOWN").upper()
    if status == "ERROR":
        return "error", status
    if not network_up:
        return "inactive", f"{status}, network down"
    return ("active" if status == "ACTIVE" else "inactive"), status


def interface_name(server: dict[str, Any], port_id: str) -> str:
    """eth<i>: the port's place in the server's NIC order (system_metadata network_ports)."""
    ids = netports.port_ids_of(server)
    return f"eth{ids.index(port_id) if port_id in ids else len(ids)}"


def first_address(port: dict[str, Any]) -> dict[str, Any] | None:
    fixed = [f for f in port.get("fixed_ips") or [] if f.get("ip_address")]
    v4 = [f for f in fixed if ipaddress.ip_address(str(f["ip_address"])).version == 4]
    found = v4 or fixed
    return found[0] if found else None


def is_server_port(port: dict[str, Any]) -> bool:
    return bool(port.get("device_id")) and str(port.get("device_owner") or "").startswith("compute:")


_FEW = 20  # up to this many servers, subnets or networks: read by id, not by listing the project's


async def _by_id(get: Callable[[RequestContext, str], Awaitable[dict[str, Any]]], ctx: RequestContext,
                 ids: set[str]) -> dict[str, dict[str, Any]]:
    """Records by id in the caller's view, else (a network or subnet it only uses, e.g. an external
    one) the system's; missing ones left out."""
    out: dict[str, dict[str, Any]] = {}
    for rid in sorted(ids):
        for who in (ctx, _SYSTEM):
            with contextlib.suppress(errors.NotFound):
                out[rid] = await get(who, rid)
                break
    return out


class NetworkInterfaceBackend:
    """KindBackend for networkinterface."""

    def __init__(self, kind: Kind, compute: ComputeService, network: NetworkService) -> None:
        self.kind = kind
        self.compute = compute
        self.network = network

    def interfaces(self) -> InterfaceService:
        return InterfaceService(self.compute)

    # --- reading ---

    def entity(self, port: dict[str, Any], server: dict[str, Any], subnets: dict[str, dict[str, Any]],
               network_up: bool) -> Entity:
        pid = str(port["id"])
        state, message = link_state(port, network_up)
        attrs: dict[str, Any] = {
            "occi.core.id": pid,
            "occi.core.source": f"/compute/{server['uuid']}",
            "occi.core.source.kind": categories.COMPUTE.id,
            "occi.core.target": f"/network/{port['network_id']}",
            "occi.core.target.kind": categories.NETWORK.id,
            "occi.networkinterface.interface": interface_name(server, pid),
            "occi.networkinterface.mac": str(port.get("mac_address") or ""),
            "occi.networkinterface.state": state,
            "occi.networkinterface.state.message": message,
        }
        if port.get("name"):
            attrs["occi.core.title"] = port["name"]
        mixins: list[str] = []
        fixed = first_address(port)
        if fixed is not None:
            mixins.append(IPNETWORKINTERFACE)
            attrs["occi.networkinterface.address"] = str(fixed["ip_address"])
            sub = subnets.get(str(fixed.get("subnet_id")))
            if sub is not None and sub.get("gateway_ip"):
                attrs["occi.networkinterface.gateway"] = str(sub["gateway_ip"])
            attrs["occi.networkinterface.allocation"] = "dynamic" if sub is None or sub.get("enable_dhcp") else "static"
        return Entity(kind=self.kind.id, id=pid, location=f"/networkinterface/{pid}", mixins=mixins, attributes=attrs)

    async def _subnets(self, ctx: RequestContext, ports: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The subnets of the ports' first addresses (the caller's view; the port's own subnet on a
        network the caller only uses, e.g. an external one, read with the system context)."""
        wanted = {str(f["subnet_id"]) for p in ports if (f := first_address(p)) is not None and f.get("subnet_id")}
        if not wanted:
            return {}
        if len(wanted) <= _FEW:  # one compute's GET: its own subnets by id, not every subnet the caller sees
            return await _by_id(self.network.get_subnet, ctx, wanted)
        out = {str(s["id"]): s for s in await self.network.list_subnets(ctx) if str(s["id"]) in wanted}
        for sid in sorted(wanted - set(out)):
            with contextlib.suppress(errors.NotFound):
                out[sid] = await self.network.get_subnet(_SYSTEM, sid)
        return out

    async def _networks_up(self, ctx: RequestContext, ports: Iterable[dict[str, Any]]) -> dict[str, bool]:
        wanted = {str(p["network_id"]) for p in ports}
        if not wanted:
            return {}
        if len(wanted) <= _FEW:
            nets = list((await _by_id(self.network.get_network, ctx, wanted)).values())
        else:
            nets = [n for n in await self.network.list_networks(ctx) if str(n["id"]) in wanted]
        return {str(n["id"]): bool(n.get("admin_state_up")) for n in nets}

    async def _servers(self, ctx: RequestContext, uuids: set[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for uuid in sorted(uuids):
            with contextlib.suppress(errors.NotFound):  # deleted meanwhile: its ports go with it
                server = await self.compute.get(ctx, uuid)
                if server["project_id"] == ctx.project_id:
                    out[uuid] = server
        return out

    async def _project_ports(self, ctx: RequestContext) -> Rows:
        return [p for p in await self.network.list_ports(ctx)
                if is_server_port(p) and p.get("project_id") == ctx.project_id]

    async def list(self, ctx: RequestContext) -> list[Entity]:
        """The caller's project's networkinterfaces: every port of one of its servers."""
        return await self.links_of(ctx, None)

    async def links_of(self, ctx: RequestContext, server_uuids: Iterable[str] | None) -> builtins.list[Entity]:
        """The networkinterfaces of the given servers (None: of every server of the project), in
        NIC order per server: what a compute renders inline."""
        policy.authorize(ctx, f"{RULE}:list")
        only = None if server_uuids is None else {str(u) for u in server_uuids}
        if only is not None and len(only) <= _FEW:  # a compute's GET: its own ports (one indexed query each)
            servers = await self._servers(ctx, only)  # the caller's project's only
            ports = [p for uuid in servers for p in await self.network.ports_of_device(uuid)
                     if is_server_port(p) and p.get("project_id") == ctx.project_id]
        else:
            ports = await self._project_ports(ctx)
            if only is not None:
                ports = [p for p in ports if str(p["device_id"]) in only]
            servers = await self._servers(ctx, {str(p["device_id"]) for p in ports}) if ports else {}
        if not ports:
            return []
        subnets = await self._subnets(ctx, ports)
        up = await self._networks_up(ctx, ports)
        by_server: dict[str, list[dict[str, Any]]] = {}
        for p in ports:
            by_server.setdefault(str(p["device_id"]), []).append(p)
        out: list[Entity] = []
        for uuid, server in servers.items():
            mine = netports.in_order(by_server.get(uuid, []), netports.port_ids_of(server))
            out += [self.entity(dict(p), server, subnets, up.get(str(p["network_id"]), True)) for p in mine]
        return out

    async def _resolve(self, ctx: RequestContext, entity_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(port, server) of a networkinterface the caller may see; NotFound otherwise."""
        missing = errors.NotFound(f"networkinterface {str(entity_id)[:64]} not found")
        try:
            port = await self.network.get_port(ctx, entity_id)
        except errors.NotFound:
            raise missing from None
        if not is_server_port(port) or port.get("project_id") != ctx.project_id:
            raise missing
        servers = await self._servers(ctx, {str(port["device_id"])})
        if not servers:
            raise missing
        return port, servers[str(port["device_id"])]

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        policy.authorize(ctx, f"{RULE}:show")
        port, server = await self._resolve(ctx, entity_id)
        up = await self._networks_up(ctx, [port])
        return self.entity(port, server, await self._subnets(ctx, [port]), up.get(str(port["network_id"]), True))

    # --- writing ---

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        """Attach the target network to the source compute (os-interface attach, hot plug)."""
        if any(m != IPNETWORKINTERFACE for m in req.mixins):
            raise errors.Invalid(f"a networkinterface takes no mixin {next(m for m in req.mixins if m != IPNETWORKINTERFACE)}")
        source, target = endpoints(req, "the /compute/<id> to give the interface", "the /network/<id> to link")
        server_id = located(source, "compute", "occi.core.source")
        network_id = located(target, "network", "occi.core.target")
        policy.authorize(ctx, f"{RULE}:create")
        try:
            server = await self.compute.get(ctx, server_id)
        except errors.NotFound:
            raise errors.NotFound(f"occi.core.source /compute/{server_id[:64]} does not exist") from None
        if server["project_id"] != ctx.project_id:
            raise errors.NotFound(f"occi.core.source /compute/{server_id[:64]} does not exist")
        try:
            await self.network.get_network(ctx, network_id)
        except errors.NotFound:
            raise errors.NotFound(f"occi.core.target /network/{network_id[:64]} does not exist") from None
        address = req.attributes.get("occi.networkinterface.address")
        fixed_ip = None
        if address not in (None, ""):
            try:
                fixed_ip = str(ipaddress.ip_interface(str(address).strip()).ip)
            except ValueError:
                raise errors.Invalid(f"occi.networkinterface.address {str(address)[:64]!r} is not an IP address") from None
        port = await self.interfaces().attach(ctx, server, net_id=network_id, fixed_ip=fixed_ip)
        title = str(req.attributes.get("occi.core.title") or "").strip()
        if title:
            await self.network.update_port(ctx, str(port["id"]), {"name": title[:255]})
        return await self.get(ctx, str(port["id"]))

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        """title -> the port's name; the rest of a networkinterface is fixed while it exists (a
        different value is a 400 naming the attribute: delete the link and make another)."""
        policy.authorize(ctx, f"{RULE}:show")
        port, _server = await self._resolve(ctx, entity_id)
        current = await self.get(ctx, entity_id)
        for name, value in req.attributes.items():
            if name in ("occi.core.title", "occi.core.id") or value is None:
                continue
            have = current.attributes.get(name)
            if name == "occi.networkinterface.address" and have is not None:
                with contextlib.suppress(ValueError):
                    value = str(ipaddress.ip_interface(str(value).strip()).ip)
            if name in ("occi.core.source", "occi.core.target"):
                with contextlib.suppress(ValueError):
                    value = "/{}/{}".format(*split_location(str(value)))
            if name.startswith(("occi.networkinterface.", "occi.core.")) and str(value) != str(have):
                raise errors.Invalid(f"{name} of a networkinterface cannot change (it is {have!r}): delete the "
                                     "link and make a new one")
        if "occi.core.title" in req.attributes or replace:
            title = str(req.attributes.get("occi.core.title") or "").strip()[:255]
            if title != (port.get("name") or ""):
                await self.network.update_port(ctx, entity_id, {"name": title})
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        """Detach (os-interface detach): the port made for the link goes, a user's port stays."""
        policy.authorize(ctx, f"{RULE}:delete")
        port, server = await self._resolve(ctx, entity_id)
        await self.interfaces().detach(ctx, server, str(port["id"]))

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        raise errors.Invalid(f"a networkinterface has no action {action.action}")


def make(svc: OcciServices) -> NetworkInterfaceBackend:
    return NetworkInterfaceBackend(categories.NETWORKINTERFACE, svc.compute, svc.network)
