"""network (+ ipnetwork) <-> Neutron networks and their subnet, over the network service with the
caller's RequestContext (Neutron's visibility and policy: never the Neutron HTTP API).

Mapping (docs/occi.md, "Networks", restates it):
- occi.core.id = the network's UUID; title = its name; summary = its description.
- occi.network.state: active (admin_state_up true), inactive (false), error (Neutron status ERROR);
  state.message = Neutron's status. Down really takes the network's bridge down on every host
  (network agent), so traffic stops; up brings it back.
- occi.network.vlan = provider:segmentation_id of a vlan network, occi.network.label =
  provider:physical_network: Neutron's provider attributes, admin-only to read and to set (a
  member setting them gets Neutron's 403).
- ipnetwork mixin (when the network has a subnet): occi.network.address = the first IPv4 subnet's
  CIDR (else the first subnet's), gateway = its gateway_ip, allocation = dynamic (DHCP on) | static.
- Collection: the caller's project's networks plus the shared and external ones it may use
  (Neutron's visibility, so a compute can link to `public`); anything else is a 404. Changing or
  acting on a network the caller does not own is Neutron's 403.
- create: a network; with ipnetwork also a subnet (address, or a prefix from the default subnet
  pool when none is given; gateway; allocation static -> DHCP off), both or neither (a refused
  subnet deletes the network again).
- update: title, summary, gateway, allocation; a new address replaces the subnet when no port
  holds an address on it (else 409); vlan/label -> provider attributes (admin).
- delete: Neutron's delete (409 while ports other than DHCP ones use it).
- actions: up (inactive -> active), down (active -> inactive); either in the other state is 409.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from cumulo import errors, policy
from cumulo.context import RequestContext
from cumulo.network import ipam
from cumulo.occi import categories
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind

if TYPE_CHECKING:
    from cumulo.network.service import NetworkService
    from cumulo.occi.deps import OcciServices

UP, DOWN = categories.UP.id, categories.DOWN.id
Rows = list[dict[str, Any]]  # (`list` is a method name inside the backends)
IPNETWORK = categories.IPNETWORK.id


def occi_state(net: dict[str, Any]) -> str:
    if str(net.get("status") or "").upper() == "ERROR":
        return "error"
    return "active" if net.get("admin_state_up") else "inactive"


def primary_subnet(subnets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The subnet OCCI shows: the first IPv4 one, else the first."""
    v4 = [s for s in subnets if int(s.get("ip_version") or 4) == 4]
    found = v4 or subnets
    return found[0] if found else None


def _owns(ctx: RequestContext, net: dict[str, Any]) -> bool:
    return ctx.is_admin or net.get("project_id") == ctx.project_id


class NetworkBackend:
    """KindBackend for network."""

    def __init__(self, kind: Kind, network: NetworkService) -> None:
        self.kind = kind
        self.network = network

    # --- reading ---

    def entity(self, ctx: RequestContext, net: dict[str, Any], subnets: list[dict[str, Any]]) -> Entity:
        nid = str(net["id"])
        attrs: dict[str, Any] = {
            "occi.core.id": nid,
            "occi.core.title": net.get("name") or "",
            "occi.network.state": occi_state(net),
            "occi.network.state.message": str(net.get("status") or ""),
        }
        if net.get("description"):
            attrs["occi.core.summary"] = net["description"]
        if net.get("provider:network_type") == "vlan" and net.get("provider:segmentation_id") is not None:
            attrs["occi.network.vlan"] = int(net["provider:segmentation_id"])
        if net.get("provider:physical_network"):
            attrs["occi.network.label"] = str(net["provider:physical_network"])
        mixins: list[str] = []
        sub = primary_subnet(subnets)
        if sub is not None:
            mixins.append(IPNETWORK)
            attrs["occi.network.address"] = sub["cidr"]
            if sub.get("gateway_ip"):
                attrs["occi.network.gateway"] = sub["gateway_ip"]
            attrs["occi.network.allocation"] = "dynamic" if sub.get("enable_dhcp") else "static"
        actions: list[str] = []
        if _owns(ctx, net):
            actions = [DOWN] if net.get("admin_state_up") else [UP]
        return Entity(kind=self.kind.id, id=nid, location=f"/network/{nid}", mixins=mixins, attributes=attrs,
                      actions=actions)

    def _visible(self, ctx: RequestContext, net: dict[str, Any]) -> bool:
        """The caller's project's networks and the shared/external ones (an admin too sees only those)."""
        return net.get("project_id") == ctx.project_id or bool(net.get("shared")) or bool(net.get("router:external"))

    async def _subnets_by_network(self, ctx: RequestContext) -> dict[str, Rows]:
        out: dict[str, list[dict[str, Any]]] = {}
        for s in await self.network.list_subnets(ctx):
            out.setdefault(str(s["network_id"]), []).append(s)
        return out

    async def list(self, ctx: RequestContext) -> list[Entity]:
        nets = [n for n in await self.network.list_networks(ctx) if self._visible(ctx, n)]
        subs = await self._subnets_by_network(ctx) if nets else {}
        return [self.entity(ctx, n, subs.get(str(n["id"]), [])) for n in nets]

    async def _net(self, ctx: RequestContext, entity_id: str) -> dict[str, Any]:
        try:
            net = await self.network.get_network(ctx, entity_id)
        except errors.NotFound:
            raise errors.NotFound(f"network {entity_id} not found") from None
        if not self._visible(ctx, net):
            raise errors.NotFound(f"network {entity_id} not found")
        return net

    async def _subnets(self, ctx: RequestContext, net: dict[str, Any]) -> Rows:
        out = []
        for sid in net.get("subnets") or []:
            try:
                out.append(await self.network.get_subnet(ctx, str(sid)))
            except errors.NotFound:  # another project's subnet on a shared network
                continue
        return out

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        net = await self._net(ctx, entity_id)
        return self.entity(ctx, net, await self._subnets(ctx, net))

    # --- create ---

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        attrs = req.attributes
        item: dict[str, Any] = {}
        title = str(attrs.get("occi.core.title") or "").strip()
        if len(title) > 255:
            raise errors.Invalid("occi.core.title must be at most 255 characters")
        item["name"] = title
        if attrs.get("occi.core.summary"):
            item["description"] = str(attrs["occi.core.summary"])
        item.update(_provider(attrs, {}))
        with_ip = IPNETWORK in req.mixins or any(k in attrs for k in _IP_ATTRS)
        subnet = _subnet_request(attrs) if with_ip else None
        net = await self.network.create_network(ctx, item)
        if subnet is not None:
            try:
                await self.network.create_subnet(ctx, {"network_id": net["id"], **subnet})
            except BaseException:
                await self._drop(ctx, str(net["id"]))
                raise
        return await self.get(ctx, str(net["id"]))

    async def _drop(self, ctx: RequestContext, network_id: str) -> None:
        try:
            await self.network.delete_network(ctx, network_id)
        except errors.NotFound:
            pass

    # --- update / delete ---

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        """title, summary (PUT without one clears it), vlan/label (admin), and the ipnetwork
        attributes: gateway and allocation change the subnet; a new address replaces a subnet no
        port holds an address on (409 otherwise), or adds one to a network without."""
        net = await self._net(ctx, entity_id)
        attrs = req.attributes
        item: dict[str, Any] = {}
        if "occi.core.title" in attrs:
            title = str(attrs["occi.core.title"] or "").strip()
            if len(title) > 255:
                raise errors.Invalid("occi.core.title must be at most 255 characters")
            item["name"] = title
        if "occi.core.summary" in attrs or replace:
            item["description"] = str(attrs.get("occi.core.summary") or "")
        item.update(_provider(attrs, net))
        if any(k.startswith("provider:") for k in item):
            policy.authorize(ctx, "network:create:provider")  # Neutron's admin rule, before anything changes
        if any(k in attrs for k in _IP_ATTRS):  # first: a refused subnet change leaves the network as it was
            await self._update_subnet(ctx, net, attrs)
        if item:
            await self.network.update_network(ctx, entity_id, item)
        return await self.get(ctx, entity_id)

    async def _update_subnet(self, ctx: RequestContext, net: dict[str, Any], attrs: dict[str, Any]) -> None:
        sub = primary_subnet(await self._subnets(ctx, net))
        if sub is None:
            await self.network.create_subnet(ctx, {"network_id": net["id"], **_subnet_request(attrs)})
            return
        address = attrs.get("occi.network.address")
        if address is not None and _cidr(str(address)) != ipaddress.ip_network(sub["cidr"]):
            await self._replace_subnet(ctx, net, sub, attrs)
            return
        change: dict[str, Any] = {}
        if "occi.network.gateway" in attrs:
            gateway = attrs["occi.network.gateway"]
            change["gateway_ip"] = str(gateway) if gateway not in (None, "") else None
        if "occi.network.allocation" in attrs:
            change["enable_dhcp"] = _dhcp(attrs["occi.network.allocation"])
        if change:
            await self.network.update_subnet(ctx, str(sub["id"]), change)

    async def _replace_subnet(self, ctx: RequestContext, net: dict[str, Any], sub: dict[str, Any],
                              attrs: dict[str, Any]) -> None:
        """A new address: the old subnet goes (SubnetInUse, a 409, while a port holds an address on
        it) and one with the new address comes, keeping the old gateway choice and DHCP unless
        given; a refused new one brings the old one back."""
        wanted = _subnet_request({
            "occi.network.allocation": "dynamic" if sub.get("enable_dhcp") else "static", **attrs})
        try:
            await self.network.delete_subnet(ctx, str(sub["id"]))
        except errors.Conflict as exc:
            raise errors.Conflict(f"occi.network.address cannot change while ports use network {net['id']}: "
                                  f"{exc}") from exc
        try:
            await self.network.create_subnet(ctx, {"network_id": net["id"], **wanted})
        except BaseException:
            old = {"cidr": sub["cidr"], "ip_version": sub["ip_version"], "gateway_ip": sub.get("gateway_ip"),
                   "enable_dhcp": bool(sub.get("enable_dhcp")), "name": sub.get("name") or ""}
            await self.network.create_subnet(ctx, {"network_id": net["id"], **old})
            raise

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        await self._net(ctx, entity_id)
        await self.network.delete_network(ctx, entity_id)

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        net = await self._net(ctx, entity_id)
        if action.action not in (UP, DOWN):
            raise errors.Invalid(f"unknown network action {action.action}")
        up = action.action == UP
        if bool(net.get("admin_state_up")) == up:
            raise errors.InvalidState(f"network {entity_id} is already {'active' if up else 'inactive'}: "
                                      f"{'up' if up else 'down'} is not allowed in that state")
        await self.network.update_network(ctx, entity_id, {"admin_state_up": up})


_IP_ATTRS = ("occi.network.address", "occi.network.gateway", "occi.network.allocation")


def _cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise errors.Invalid(f"occi.network.address {text!r} is not a network in CIDR notation") from None


def _dhcp(allocation: Any) -> bool:
    value = str(allocation or "dynamic")
    if value not in ("dynamic", "static"):
        raise errors.Invalid(f"occi.network.allocation {value!r} is not dynamic or static")
    return value == "dynamic"


def _subnet_request(attrs: dict[str, Any]) -> dict[str, Any]:
    """The subnet of an ipnetwork mixin: its address (strict CIDR: 10.1.0.0/24, not 10.1.0.5/24), or
    a prefix from the default subnet pool (IPv4) when none is given."""
    out: dict[str, Any] = {"enable_dhcp": _dhcp(attrs.get("occi.network.allocation"))}
    address = attrs.get("occi.network.address")
    if address not in (None, ""):
        text = str(address).strip()
        net = _cidr(text)
        if ipaddress.ip_interface(text).ip != net.network_address:
            raise errors.Invalid(f"occi.network.address {text!r} has host bits set: use {net}")
        ipam.parse_cidr(str(net))  # Neutron's own checks (e.g. too small), before anything is made or replaced
        out.update(cidr=str(net), ip_version=net.version)
    else:
        out.update(use_default_subnetpool=True, ip_version=4)
    gateway = attrs.get("occi.network.gateway")
    if gateway not in (None, ""):
        out["gateway_ip"] = str(gateway)
        if "cidr" in out:  # checked before anything is made or replaced (Neutron would refuse it after)
            _check_gateway(str(gateway), ipaddress.ip_network(out["cidr"]))
    return out


def _check_gateway(gateway: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    try:
        ip = ipaddress.ip_address(gateway.strip())
    except ValueError:
        raise errors.Invalid(f"occi.network.gateway {gateway[:64]!r} is not an IP address") from None
    hosts = ip in net and ip != net.network_address and (net.version == 6 or ip != net.broadcast_address)
    if not hosts:
        raise errors.Invalid(f"occi.network.gateway {ip} is not a host address of occi.network.address {net}")


def _provider(attrs: dict[str, Any], net: dict[str, Any]) -> dict[str, Any]:
    """vlan/label -> Neutron's provider attributes, only when they differ from the network's (the
    network service refuses them to a non-admin with Neutron's 403)."""
    out: dict[str, Any] = {}
    vlan = attrs.get("occi.network.vlan")
    if vlan is not None and not (net.get("provider:network_type") == "vlan"
                                 and net.get("provider:segmentation_id") == int(vlan)):
        out["provider:network_type"] = "vlan"
        out["provider:segmentation_id"] = int(vlan)
    label = attrs.get("occi.network.label")
    if label not in (None, "") and net.get("provider:physical_network") != str(label):
        out["provider:physical_network"] = str(label)
    return out


def make(svc: OcciServices) -> NetworkBackend:
    return NetworkBackend(categories.NETWORK, svc.network)
