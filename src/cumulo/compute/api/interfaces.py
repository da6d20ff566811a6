"""/v2.1/servers/{id}/os-interface: a server's ports (Nova's port interfaces), with hot plug.

GET lists the ports whose device is the server, POST attaches a port (one the user made, or a new
one on a network, optionally with a fixed IP), DELETE detaches one (202). Nova's checks and faults:
both port_id and net_id is 400, a fixed IP without a network 400, a network or port not found 404,
a port or address in use 409, a server not ACTIVE/PAUSED/SHUTOFF or locked 409.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas.interfaces import ATTACH
from cumulo.compute.service.interfaces import InterfaceService
from cumulo.web.http import empty, json_response

policy.register(
    {
        "os_compute_api:os-attach-interfaces:list": policy.READER,
        "os_compute_api:os-attach-interfaces:show": policy.READER,
        "os_compute_api:os-attach-interfaces:create": policy.MEMBER,
        "os_compute_api:os-attach-interfaces:delete": policy.MEMBER,
    }
)

def view(port: dict[str, Any], with_tag: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "fixed_ips": [{"ip_address": f["ip_address"], "subnet_id": f["subnet_id"]} for f in port.get("fixed_ips") or []],
        "mac_addr": port["mac_address"],
        "net_id": port["network_id"],
        "port_id": port["id"],
        "port_state": port.get("status", "DOWN"),
    }
    if with_tag:
        out["tag"] = None
    return out


async def _server(request: Request, action: str) -> tuple[Any, dict[str, Any], InterfaceService]:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, f"os_compute_api:os-attach-interfaces:{action}")
    if svc.network is None:
        raise errors.NotFound("The resource could not be found.")
    return ctx, row, InterfaceService(svc)


async def index(request: Request) -> Response:
    _, row, ifaces = await _server(request, "list")
    tag = _common.version(request) >= v("2.70")
    return json_response({"interfaceAttachments": [view(p, tag) for p in await ifaces.ports(row)]})


async def show(request: Request) -> Response:
    _, row, ifaces = await _server(request, "show")
    port = await ifaces.port(row, request.path_params["port_id"])
    return json_response({"interfaceAttachment": view(port, _common.version(request) >= v("2.70"))})


async def create(request: Request) -> Response:
    ctx, row, ifaces = await _server(request, "create")
    data = await _common.body(request, ATTACH)
    att = data.get("interfaceAttachment") or {}
    ver = _common.version(request)
    if "tag" in att and ver < v("2.49"):
        raise errors.Invalid("Invalid input for field/attribute interfaceAttachment. Additional properties are not "
                             "allowed ('tag' was unexpected)")
    port_id, net_id = att.get("port_id"), att.get("net_id")
    fixed_ip = (att.get("fixed_ips") or [{}])[0].get("ip_address")
    if port_id and net_id:
        raise errors.Invalid("Must not input both network_id and port_id")
    if fixed_ip and not net_id:
        raise errors.Invalid("Must input network_id when request IP address")
    port = await ifaces.attach(ctx, row, port_id=port_id, net_id=net_id, fixed_ip=fixed_ip)
    return json_response({"interfaceAttachment": view(port, ver >= v("2.70"))})


async def delete(request: Request) -> Response:
    ctx, row, ifaces = await _server(request, "delete")
    await ifaces.detach(ctx, row, request.path_params["port_id"])
    return empty(202)


ROUTES = [
    Route("/v2.1/servers/{server_id}/os-interface", index, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/os-interface", create, methods=["POST"]),
    Route("/v2.1/servers/{server_id}/os-interface/{port_id}", show, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/os-interface/{port_id}", delete, methods=["DELETE"]),
]
