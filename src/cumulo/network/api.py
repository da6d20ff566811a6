"""The Neutron-compatible network API (v2.0), mounted at /networking (catalog type "network").

Handlers parse, call the network service and render; lists go through `query.apply` (filters,
sorting, paging, fields). Faults are Neutron's: `{"NeutronError": {"type", "message", "detail"}}`,
the type being the name of the `faults` class the service raised (NetworkNotFound, ...) or the WebOb
name of the status (HTTPBadRequest, HTTPNotFound, ...). Bodies are parsed by `web.http.json_body` (size
limit, malformed JSON, lone surrogates: 400/413, never a 500). POST takes one resource or Neutron's
bulk form (`{"networks": [...]}`), which is all-or-nothing.

L3's resources (routers, floating IPs, security groups) add their routes from their own modules
(`L3_ROUTES`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.network import api_l3, api_pools, extensions, faults, openapi_ops, query
from cumulo.network.deps import NetworkDeps, services_of
from cumulo.network.service import NetworkService
from cumulo.web.http import Authenticator, authenticate, base_url, empty, family_app, json_body, json_response
from cumulo.web.openapi import Microversions, openapi_route


def render_fault(status: int, message: str, request: Request, exc: BaseException | None = None) -> Response:
    body = {"NeutronError": {"type": faults.type_of(exc, status), "message": message, "detail": ""}}
    return json_response(body, status=status)


def _svc(request: Request) -> NetworkService:
    return services_of(request).network


async def _ctx(request: Request) -> RequestContext:
    return await authenticate(request)


def collection_url(request: Request, collection: str) -> str:
    return f"{base_url(request)}/v2.0/{collection}"


def list_response(request: Request, collection: str, items: list[dict[str, Any]]) -> Response:
    """A list answer: `items` filtered, sorted, paged and trimmed as the query asks."""
    params = list(request.query_params.multi_items())
    for k, v in params:
        if "\x00" in k or "\x00" in v:
            raise faults.HTTPBadRequest(msg="A NUL character is not allowed in the query")
    page = query.apply(items, params, collection, collection_url(request, collection))
    body: dict[str, Any] = {collection: page.items}
    if page.links:
        body[f"{collection}_links"] = page.links
    return json_response(body)


def show_response(request: Request, resource: str, item: dict[str, Any]) -> Response:
    fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
    if fields:
        item = {k: v for k, v in item.items() if k in fields}
    return json_response({resource: item})


def unwrap(body: Any, resource: str) -> dict[str, Any]:
    """The resource object of a request body ({"network": {...}} -> {...}); the service checks its attributes."""
    if not isinstance(body, dict) or set(body) != {resource} or not isinstance(body[resource], dict):
        raise faults.HTTPBadRequest(msg=f"Resource body required: expected an object with one key '{resource}'.")
    item: dict[str, Any] = body[resource]
    return item


# ---- version discovery and extensions --------------------------------------------------------

CORE_RESOURCES = (("network", "networks"), ("subnet", "subnets"), ("port", "ports"))


async def versions(request: Request) -> Response:
    """GET /networking/: Neutron's one API version."""
    href = f"{base_url(request)}/v2.0/"
    return json_response({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"href": href, "rel": "self"}]}]})


async def version_v2(request: Request) -> Response:
    """GET /networking/v2.0/: the resources of v2.0 (Neutron lists its core collections)."""
    await _ctx(request)
    resources = [
        {"name": name, "collection": coll, "links": [{"href": collection_url(request, coll), "rel": "self"}]}
        for name, coll in (*CORE_RESOURCES, *extensions.EXTRA_RESOURCES)
    ]
    return json_response({"resources": resources})


async def list_extensions(request: Request) -> Response:
    await _ctx(request)
    return json_response({"extensions": extensions.listed()})


async def show_extension(request: Request) -> Response:
    await _ctx(request)
    alias = request.path_params["alias"]
    for ext in extensions.listed():
        if ext["alias"] == alias:
            return json_response({"extension": ext})
    raise faults.HTTPNotFound(msg=f"Extension with alias {alias} does not exist")


# ---- networks, subnets, ports: one CRUD shape ---------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def crud_routes(
    resource: str, collection: str,
    lister: Callable[[NetworkService, RequestContext], Awaitable[list[dict[str, Any]]]],
    getter: Callable[[NetworkService, RequestContext, str], Awaitable[dict[str, Any]]],
    creator: Callable[[NetworkService, RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]],
    updater: Callable[[NetworkService, RequestContext, str, dict[str, Any]], Awaitable[dict[str, Any]]],
    deleter: Callable[[NetworkService, RequestContext, str], Awaitable[None]],
) -> list[BaseRoute]:
    """GET/POST /v2.0/<collection>, GET/PUT/DELETE /v2.0/<collection>/<id>, Neutron's way."""
    key = f"{resource}_id"

    async def do_list(request: Request) -> Response:
        ctx = await _ctx(request)
        return list_response(request, collection, await lister(_svc(request), ctx))

    async def do_show(request: Request) -> Response:
        ctx = await _ctx(request)
        return show_response(request, resource, await getter(_svc(request), ctx, request.path_params[key]))

    async def do_create(request: Request) -> Response:
        ctx = await _ctx(request)
        body = await json_body(request)
        svc = _svc(request)
        if isinstance(body, dict) and set(body) == {collection}:
            items = body[collection]
            if not isinstance(items, list) or not items:
                raise faults.HTTPBadRequest(msg=f"Resources required: '{collection}' must be a non-empty list.")
            created: list[dict[str, Any]] = []
            try:
                for raw in items:
                    item = unwrap({resource: raw}, resource)
                    created.append(await creator(svc, ctx, item))
            except errors.CumuloError:
                for done in reversed(created):  # Neutron's bulk create is all or nothing
                    try:
                        await deleter(svc, ctx, done["id"])
                    except errors.CumuloError:
                        pass
                raise
            return json_response({collection: created}, status=201)
        item = unwrap(body, resource)
        return json_response({resource: await creator(svc, ctx, item)}, status=201)

    async def do_update(request: Request) -> Response:
        ctx = await _ctx(request)
        item = unwrap(await json_body(request), resource)
        return json_response({resource: await updater(_svc(request), ctx, request.path_params[key], item)})

    async def do_delete(request: Request) -> Response:
        ctx = await _ctx(request)
        await deleter(_svc(request), ctx, request.path_params[key])
        return empty(204)

    return [
        Route(f"/v2.0/{collection}", do_list, methods=["GET"]),
        Route(f"/v2.0/{collection}", do_create, methods=["POST"]),
        Route(f"/v2.0/{collection}/{{{key}}}", do_show, methods=["GET"]),
        Route(f"/v2.0/{collection}/{{{key}}}", do_update, methods=["PUT"]),
        Route(f"/v2.0/{collection}/{{{key}}}", do_delete, methods=["DELETE"]),
    ]


async def list_agents(request: Request) -> Response:
    """GET /v2.0/agents: Neutron shows agents to admins only and answers others an empty list. Cumulo's
    network agents (one per compute host, on the bus) are not Neutron agents: the `agent` extension
    is not offered, and the list is empty for everyone."""
    await _ctx(request)
    return json_response({"agents": []})


# ---- quotas ---------------------------------------------------------------------------------------


async def list_quotas(request: Request) -> Response:
    ctx = await _ctx(request)
    return json_response({"quotas": await _svc(request).list_quotas(ctx)})


def _quota_project(request: Request, ctx: RequestContext) -> str:
    project_id: str = request.path_params["project_id"]
    if project_id == "tenant":  # GET /v2.0/quotas/tenant: who am I
        raise _Tenant(ctx.project_id or "")
    return project_id


class _Tenant(Exception):
    def __init__(self, project_id: str) -> None:
        self.project_id = project_id


async def show_quota(request: Request) -> Response:
    ctx = await _ctx(request)
    try:
        project_id = _quota_project(request, ctx)
    except _Tenant as me:
        return json_response({"tenant": {"tenant_id": me.project_id}})
    return json_response({"quota": await _svc(request).get_quota(ctx, project_id)})


async def show_quota_details(request: Request) -> Response:
    ctx = await _ctx(request)
    return json_response({"quota": await _svc(request).get_quota_details(ctx, request.path_params["project_id"])})


async def show_quota_default(request: Request) -> Response:
    ctx = await _ctx(request)
    return json_response({"quota": await _svc(request).get_default_quota(ctx, request.path_params["project_id"])})


async def update_quota(request: Request) -> Response:
    ctx = await _ctx(request)
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {"quota"} or not isinstance(body["quota"], dict):
        raise faults.HTTPBadRequest(msg="Resource body required: expected an object with one key 'quota'.")
    return json_response({"quota": await _svc(request).update_quota(ctx, request.path_params["project_id"], body["quota"])})


async def delete_quota(request: Request) -> Response:
    ctx = await _ctx(request)
    await _svc(request).delete_quota(ctx, request.path_params["project_id"])
    return empty(204)


# ---- tags -----------------------------------------------------------------------------------------


async def get_tags(request: Request) -> Response:
    ctx = await _ctx(request)
    p = request.path_params
    return json_response({"tags": await _svc(request).get_tags(ctx, p["collection"], p["resource_id"])})


async def put_tags(request: Request) -> Response:
    ctx = await _ctx(request)
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {"tags"}:
        raise faults.HTTPBadRequest(msg="Invalid input for tags. Reason: the body must be {\"tags\": [...]}.")
    p = request.path_params
    tags = await _svc(request).replace_tags(ctx, p["collection"], p["resource_id"], body["tags"])
    return json_response({"tags": tags})


async def delete_tags(request: Request) -> Response:
    ctx = await _ctx(request)
    p = request.path_params
    await _svc(request).clear_tags(ctx, p["collection"], p["resource_id"])
    return empty(204)


async def check_tag(request: Request) -> Response:
    ctx = await _ctx(request)
    p = request.path_params
    await _svc(request).has_tag(ctx, p["collection"], p["resource_id"], p["tag"])
    return empty(204)


async def add_tag(request: Request) -> Response:
    ctx = await _ctx(request)
    p = request.path_params
    await _svc(request).add_tag(ctx, p["collection"], p["resource_id"], p["tag"])
    return empty(201)


async def remove_tag(request: Request) -> Response:
    ctx = await _ctx(request)
    p = request.path_params
    await _svc(request).remove_tag(ctx, p["collection"], p["resource_id"], p["tag"])
    return empty(204)


TAGS = "/v2.0/{collection}/{resource_id}/tags"

ROUTES: list[BaseRoute] = [
    Route("/", versions, methods=["GET"]),
    Route("/v2.0", version_v2, methods=["GET"]),
    Route("/v2.0/", version_v2, methods=["GET"]),
    Route("/v2.0/extensions", list_extensions, methods=["GET"]),
    Route("/v2.0/extensions/{alias}", show_extension, methods=["GET"]),
    *crud_routes("network", "networks", NetworkService.list_networks, NetworkService.get_network,
                 NetworkService.create_network, NetworkService.update_network, NetworkService.delete_network),
    *crud_routes("subnet", "subnets", NetworkService.list_subnets, NetworkService.get_subnet,
                 NetworkService.create_subnet, NetworkService.update_subnet, NetworkService.delete_subnet),
    *crud_routes("port", "ports", NetworkService.list_ports, NetworkService.get_port,
                 NetworkService.create_port, NetworkService.update_port, NetworkService.delete_port),
    Route("/v2.0/agents", list_agents, methods=["GET"]),
    Route("/v2.0/quotas", list_quotas, methods=["GET"]),
    Route("/v2.0/quotas/{project_id}", show_quota, methods=["GET"]),
    Route("/v2.0/quotas/{project_id}", update_quota, methods=["PUT"]),
    Route("/v2.0/quotas/{project_id}", delete_quota, methods=["DELETE"]),
    Route("/v2.0/quotas/{project_id}/default", show_quota_default, methods=["GET"]),
    Route("/v2.0/quotas/{project_id}/details.json", show_quota_details, methods=["GET"]),
    Route("/v2.0/quotas/{project_id}/details", show_quota_details, methods=["GET"]),
    Route(TAGS, get_tags, methods=["GET"]),
    Route(TAGS, put_tags, methods=["PUT"]),
    Route(TAGS, delete_tags, methods=["DELETE"]),
    Route(TAGS + "/{tag}", check_tag, methods=["GET"]),
    Route(TAGS + "/{tag}", add_tag, methods=["PUT"]),
    Route(TAGS + "/{tag}", remove_tag, methods=["DELETE"]),
    *api_pools.ROUTES,
]

# Routers, floating IPs and security groups (L3API) append their routes here.
L3_ROUTES: list[BaseRoute] = list(api_l3.ROUTES)


def make_app(
    network: NetworkService, *, axis: Microversions | None = None, authenticator: Authenticator | None = None,
) -> Any:
    """The network family's ASGI app over `network`; tokens are checked by `authenticator`. With
    `axis` (the assembly passes compute's microversions, which every Cumulo document states) it
    serves its OpenAPI document at /networking/openapi.json."""
    routes = [*ROUTES, *L3_ROUTES]
    if axis is not None:
        routes.append(openapi_route(openapi_ops.family(), axis, public_url=network.conf.public_url))
    app = family_app(NetworkDeps(network), routes, render_fault, authenticator=authenticator)

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.CumuloError)
        return render_fault(exc.code, exc.message, request, exc)

    app.add_exception_handler(errors.CumuloError, on_domain_error)
    return app
