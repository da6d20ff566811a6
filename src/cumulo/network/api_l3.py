"""Neutron v2.0 routes of routers, floating IPs, security groups and security group rules.

    GET/POST /v2.0/routers               GET/PUT/DELETE /v2.0/routers/{id}
    PUT /v2.0/routers/{id}/add_router_interface    PUT /v2.0/routers/{id}/remove_router_interface
    GET/POST /v2.0/floatingips           GET/PUT/DELETE /v2.0/floatingips/{id}
    GET/POST /v2.0/security-groups       GET/PUT/DELETE /v2.0/security-groups/{id}
    GET/POST /v2.0/security-group-rules  GET/PUT/DELETE /v2.0/security-group-rules/{id}

Handlers parse, call the network service and render, as network.api's do; lists go through
`query.apply`. network.api mounts `ROUTES` (its L3_ROUTES); this module imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo.context import RequestContext
from cumulo.network import faults, query
from cumulo.network.deps import services_of
from cumulo.network.service import NetworkService
from cumulo.web.http import authenticate, base_url, empty, json_body, json_response

Lister = Callable[[NetworkService, RequestContext], Awaitable[list[dict[str, Any]]]]
Getter = Callable[[NetworkService, RequestContext, str], Awaitable[dict[str, Any]]]
Creator = Callable[[NetworkService, RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]
Updater = Callable[[NetworkService, RequestContext, str, dict[str, Any]], Awaitable[dict[str, Any]]]
Deleter = Callable[[NetworkService, RequestContext, str], Awaitable[None]]


def _resource_body(body: Any, resource: str) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) != {resource}:
        raise faults.HTTPBadRequest(msg=f"Resource body required: expected an object with one key '{resource}'.")
    item = body[resource]
    if not isinstance(item, dict):
        raise faults.HTTPBadRequest(msg=f"Resource body '{resource}' must be an object.")
    return item


def _fields(request: Request) -> list[str]:
    return [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]


def crud(resource: str, collection: str, lister: Lister, getter: Getter, creator: Creator,
         updater: Updater, deleter: Deleter) -> list[BaseRoute]:
    """GET/POST /v2.0/<collection>, GET/PUT/DELETE /v2.0/<collection>/<id>; the body's key of a
    list is the collection with '_' for '-' ("security-groups" -> "security_groups")."""
    key = f"{resource}_id"
    plural = collection.replace("-", "_")

    async def do_list(request: Request) -> Response:
        ctx = await authenticate(request)
        params = list(request.query_params.multi_items())
        if any("\x00" in k or "\x00" in v for k, v in params):
            raise faults.HTTPBadRequest(msg="A NUL character is not allowed in the query")
        items = await lister(services_of(request).network, ctx)
        page = query.apply(items, params, plural, f"{base_url(request)}/v2.0/{collection}")
        body: dict[str, Any] = {plural: page.items}
        if page.links:
            body[f"{plural}_links"] = page.links
        return json_response(body)

    async def do_show(request: Request) -> Response:
        ctx = await authenticate(request)
        item = await getter(services_of(request).network, ctx, request.path_params[key])
        fields = _fields(request)
        return json_response({resource: {k: v for k, v in item.items() if k in fields} if fields else item})

    async def do_create(request: Request) -> Response:
        ctx = await authenticate(request)
        item = _resource_body(await json_body(request), resource)
        return json_response({resource: await creator(services_of(request).network, ctx, item)}, status=201)

    async def do_update(request: Request) -> Response:
        ctx = await authenticate(request)
        item = _resource_body(await json_body(request), resource)
        return json_response({resource: await updater(services_of(request).network, ctx, request.path_params[key], item)})

    async def do_delete(request: Request) -> Response:
        ctx = await authenticate(request)
        await deleter(services_of(request).network, ctx, request.path_params[key])
        return empty(204)

    return [
        Route(f"/v2.0/{collection}", do_list, methods=["GET"]),
        Route(f"/v2.0/{collection}", do_create, methods=["POST"]),
        Route(f"/v2.0/{collection}/{{{key}}}", do_show, methods=["GET"]),
        Route(f"/v2.0/{collection}/{{{key}}}", do_update, methods=["PUT"]),
        Route(f"/v2.0/{collection}/{{{key}}}", do_delete, methods=["DELETE"]),
    ]


async def add_router_interface(request: Request) -> Response:
    ctx = await authenticate(request)
    body = await json_body(request)
    svc = services_of(request).network
    return json_response(await svc.add_router_interface(ctx, request.path_params["router_id"], body))


async def remove_router_interface(request: Request) -> Response:
    ctx = await authenticate(request)
    body = await json_body(request)
    svc = services_of(request).network
    return json_response(await svc.remove_router_interface(ctx, request.path_params["router_id"], body))


ROUTES: list[BaseRoute] = [
    *crud("router", "routers", NetworkService.list_routers, NetworkService.get_router,
          NetworkService.create_router, NetworkService.update_router, NetworkService.delete_router),
    Route("/v2.0/routers/{router_id}/add_router_interface", add_router_interface, methods=["PUT"]),
    Route("/v2.0/routers/{router_id}/remove_router_interface", remove_router_interface, methods=["PUT"]),
    *crud("floatingip", "floatingips", NetworkService.list_floatingips, NetworkService.get_floatingip,
          NetworkService.create_floatingip, NetworkService.update_floatingip, NetworkService.delete_floatingip),
    *crud("security_group", "security-groups", NetworkService.list_groups, NetworkService.get_group,
          NetworkService.create_group, NetworkService.update_group, NetworkService.delete_group),
    *crud("security_group_rule", "security-group-rules", NetworkService.list_rules, NetworkService.get_rule,
          NetworkService.create_rule, NetworkService.update_rule, NetworkService.delete_rule),
]
