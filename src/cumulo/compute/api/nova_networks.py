"""Nova's os-networks and os-tenant-networks over the network service, below microversion 2.36
(404 from 2.36 on, as Nova).

With Neutron, Nova lists the networks the caller sees in Neutron (its own, shared and external
ones) and shows only what it knows of them: os-networks gives `id` and `label` (the name) with every
nova-network field null (an admin also sees the admin-only fields, null as well); os-tenant-networks
gives `id`, `label` and `cidr` ("None": Nova renders the absent nova-network cidr as a string).
A network the caller cannot see is 404 "Network not found." The nova-network actions (create,
delete, associate, add) are gone from Nova (410); Cumulo never had them, so they are 404 here.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.context import RequestContext
from cumulo.web.http import json_response

policy.register(
    {
        "os_compute_api:os-networks:list": policy.READER,
        "os_compute_api:os-networks:view": policy.READER,
        "os_compute_api:os-tenant-networks:list": policy.READER,
        "os_compute_api:os-tenant-networks:show": policy.READER,
    }
)

# Nova's network_dict (api/openstack/compute/networks.py): what a user sees, then what an admin also sees.
_FIELDS = ("id", "cidr", "netmask", "gateway", "broadcast", "dns1", "dns2", "cidr_v6", "gateway_v6", "label",
           "netmask_v6")
_ADMIN_FIELDS = ("created_at", "updated_at", "deleted_at", "deleted", "injected", "bridge", "vlan",
                 "vpn_public_address", "vpn_public_port", "vpn_private_address", "dhcp_start", "project_id", "host",
                 "bridge_interface", "multi_host", "priority", "rxtx_base", "mtu", "dhcp_server", "enable_dhcp",
                 "share_address")


def network_view(network: dict[str, Any], admin: bool) -> dict[str, Any]:
    """os-networks' view: only the id and the label come from Neutron."""
    out: dict[str, Any] = dict.fromkeys((*_FIELDS, *_ADMIN_FIELDS) if admin else _FIELDS)
    out["id"], out["label"] = network["id"], network.get("name") or ""
    return out


def tenant_network_view(network: dict[str, Any]) -> dict[str, Any]:
    return {"id": network["id"], "cidr": "None", "label": network.get("name") or ""}


async def _one(net: Any, ctx: RequestContext, network_id: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = await net.get_network(ctx, network_id)
    except (errors.NotFound, errors.Invalid) as exc:
        raise errors.NotFound("Network not found.") from exc
    return found


async def list_networks(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-networks:list")
    admin = ctx.is_admin
    return json_response({"networks": [network_view(n, admin) for n in await net.list_networks(ctx)]})


async def show_network(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-networks:view")
    found = await _one(net, ctx, request.path_params["network_id"])
    return json_response({"network": network_view(found, ctx.is_admin)})


async def list_tenant_networks(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-tenant-networks:list")
    return json_response({"networks": [tenant_network_view(n) for n in await net.list_networks(ctx)]})


async def show_tenant_network(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-tenant-networks:show")
    found = await _one(net, ctx, request.path_params["network_id"])
    return json_response({"network": tenant_network_view(found)})


ROUTES = [
    Route("/v2.1/os-networks", list_networks, methods=["GET"]),
    Route("/v2.1/os-networks/{network_id}", show_network, methods=["GET"]),
    Route("/v2.1/os-tenant-networks", list_tenant_networks, methods=["GET"]),
    Route("/v2.1/os-tenant-networks/{network_id}", show_tenant_network, methods=["GET"]),
]
