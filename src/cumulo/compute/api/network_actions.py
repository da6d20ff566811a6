"""Server actions on its network, removed from Nova in 2.44 (400 "There is no such action" from then):
addFixedIp / removeFixedIp (one more address on the server's port of a network, or one less) and
addFloatingIp / removeFloatingIp (a floating IP of the project associated with one of the server's
ports, or dissociated). The network service does the work; the server's addresses follow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas._base import Versioned
from cumulo.compute.service.interfaces import InterfaceService
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext
from cumulo.web.http import empty

policy.register(
    {
        "os_compute_api:os-multinic:add": policy.MEMBER,
        "os_compute_api:os-multinic:remove": policy.MEMBER,
        "os_compute_api:os-floating-ips:add": policy.MEMBER,
        "os_compute_api:os-floating-ips:remove": policy.MEMBER,
    }
)

Handler = Callable[[Request, RequestContext, ComputeService, dict[str, Any], Any], Awaitable[Response]]


def _schema(key: str, field: str) -> Versioned:
    body = {"type": "object", "properties": {key: {"type": "object", "properties": {field: {}}, "required": [field]}},
            "required": [key], "additionalProperties": False}
    return Versioned(("2.1", "2.43", body))


SCHEMAS: dict[str, Versioned] = {
    "addFixedIp": _schema("addFixedIp", "networkId"),
    "removeFixedIp": _schema("removeFixedIp", "address"),
    "addFloatingIp": _schema("addFloatingIp", "address"),
    "removeFloatingIp": _schema("removeFloatingIp", "address"),
}


def _address(arg: Any, key: str = "address") -> str:
    """Nova's schemas: an IPv4 or IPv6 address, else 400."""
    value = arg.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise errors.Invalid(f"Invalid input for field/attribute {key}. Value: {value!r}. "
                             f"{value!r} is not a valid IP address") from None


def _gate(request: Request, name: str, svc: ComputeService) -> InterfaceService:
    if _common.version(request) >= v("2.44"):
        raise errors.Invalid(f"There is no such action: {name}")
    if svc.network is None:
        raise errors.Invalid(f"There is no such action: {name}")
    return InterfaceService(svc)


async def _add_fixed(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    ifaces = _gate(request, "addFixedIp", svc)
    policy.authorize(ctx, "os_compute_api:os-multinic:add")
    await ifaces.add_fixed_ip(ctx, row, str(arg["networkId"]))
    return empty(202)


async def _remove_fixed(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    ifaces = _gate(request, "removeFixedIp", svc)
    policy.authorize(ctx, "os_compute_api:os-multinic:remove")
    await ifaces.remove_fixed_ip(ctx, row, _address(arg))
    return empty(202)


async def _add_floating(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    ifaces = _gate(request, "addFloatingIp", svc)
    policy.authorize(ctx, "os_compute_api:os-floating-ips:add")
    fixed = _address(arg, "fixed_address") if arg.get("fixed_address") is not None else None
    await ifaces.add_floating_ip(ctx, row, _address(arg), fixed)
    return empty(202)


async def _remove_floating(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    ifaces = _gate(request, "removeFloatingIp", svc)
    policy.authorize(ctx, "os_compute_api:os-floating-ips:remove")
    await ifaces.remove_floating_ip(ctx, row, _address(arg))
    return empty(202)


ACTIONS: dict[str, Handler] = {
    "addFixedIp": _add_fixed,
    "removeFixedIp": _remove_fixed,
    "addFloatingIp": _add_floating,
    "removeFloatingIp": _remove_floating,
}
