"""/paas/rest/catalog/...: product releases, environments and their tiers.

Also Pegasus's `…/environment/{env}/tier/{tier}/productRelease[/{name}]`: GET the tier's product
releases, GET one, POST one more (204), DELETE one (204; name "<product>" or "<product>-<version>").

Catalogue writes answer as Pegasus's: 204 with no body, for creates, the tier replace (PUT) and deletes.
A create or a PUT also sends `Location`, the URL of the new or replaced resource (a GET of it shows
it). `GET catalog/productRelease[/{name}]` is Cumulo's (Pegasus listed products from SDC). The `catalog/org/{org}/environment` paths serve the
caller's project's environments, as their `…/vdc/{vdc}/…` aliases do.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.paas import shapes
from cumulo.paas.api.scope import Call, begin
from cumulo.paas.catalogue import wants_public
from cumulo.web.http import empty, json_response

READ, WRITE, PUBLISH = "paas:catalog:read", "paas:catalog:write", "paas:product:publish"


async def list_products(request: Request) -> Response:
    call = await begin(request, READ)
    rows = await call.deps.catalogue.list_products(call.ctx)
    return json_response(call.page([shapes.render_product_release(r) for r in rows]))


async def create_product(request: Request) -> Response:
    call = await begin(request, WRITE)
    product = shapes.parse_product_release(await call.body())
    public = wants_public(product)
    if public and not call.allowed(PUBLISH):
        raise errors.Forbidden(f"Policy doesn't allow {PUBLISH} to be performed (metadata public=yes).")
    row = await call.deps.catalogue.create_product(call.ctx, product, public=public)
    name = shapes.release_name(row["name"], row["version"])
    return empty(headers={"Location": f"{call.base}/rest/catalog/productRelease/{name}"})


async def show_product(request: Request) -> Response:
    call = await begin(request, READ)
    row = await call.deps.catalogue.get_product(call.ctx, call.path("name"))
    return json_response(shapes.render_product_release(row))


async def delete_product(request: Request) -> Response:
    call = await begin(request, WRITE)
    await call.deps.catalogue.delete_product(call.ctx, call.path("name"), may_publish=call.allowed(PUBLISH))
    return empty()


async def list_environments(request: Request) -> Response:
    call = await begin(request, READ)
    envs = await call.deps.catalogue.list_environments(call.ctx)
    return json_response(call.page([shapes.render_environment(e, t, call.vdc) for e, t in envs]))


def _env_href(call_base: str, org: str, name: str) -> str:
    return f"{call_base}/rest/catalog/org/{org}/environment/{name}"


async def create_environment(request: Request) -> Response:
    call = await begin(request, WRITE)
    env = shapes.parse_environment(await call.body())
    row = await call.deps.catalogue.create_environment(call.ctx, env)
    return empty(headers={"Location": _env_href(call.base, call.path("org"), row["name"])})


async def show_environment(request: Request) -> Response:
    call = await begin(request, READ)
    env, tiers = await call.deps.catalogue.get_environment(call.ctx, call.path("env"))
    return json_response(shapes.render_environment(env, tiers, call.vdc))


async def delete_environment(request: Request) -> Response:
    call = await begin(request, WRITE)
    await call.deps.catalogue.delete_environment(call.ctx, call.path("env"))
    return empty()


async def list_tiers(request: Request) -> Response:
    call = await begin(request, READ)
    _, tiers = await call.deps.catalogue.get_environment(call.ctx, call.path("env"))
    return json_response(call.page([shapes.render_tier(t) for t in tiers]))


async def create_tier(request: Request) -> Response:
    call = await begin(request, WRITE)
    tier = shapes.parse_tier(await call.body())
    saved = await call.deps.catalogue.put_tier(call.ctx, call.path("env"), tier, replace=None)
    href = f"{_env_href(call.base, call.path('org'), call.path('env'))}/tier/{saved['name']}"
    return empty(headers={"Location": href})


async def show_tier(request: Request) -> Response:
    call = await begin(request, READ)
    _, tiers = await call.deps.catalogue.get_environment(call.ctx, call.path("env"))
    for t in tiers:
        if t["name"] == call.path("tier"):
            return json_response(shapes.render_tier(t))
    raise errors.NotFound(f"tier {call.path('tier')[:64]} not found in environment {call.path('env')[:64]}")


async def update_tier(request: Request) -> Response:
    call = await begin(request, WRITE)
    body = await call.body()
    if isinstance(body, dict) and body.get("name") in (None, ""):
        body = {**body, "name": call.path("tier")}
    tier = shapes.parse_tier(body)
    saved = await call.deps.catalogue.put_tier(call.ctx, call.path("env"), tier, replace=call.path("tier"))
    return empty(headers={"Location": f"{_env_href(call.base, call.path('org'), call.path('env'))}/tier/{saved['name']}"})


async def _tier(call: Call) -> dict[str, Any]:
    _, tiers = await call.deps.catalogue.get_environment(call.ctx, call.path("env"))
    for t in tiers:
        if t["name"] == call.path("tier"):
            return t
    raise errors.NotFound(f"tier {call.path('tier')[:64]} not found in environment {call.path('env')[:64]}")


def _tier_product(p: dict[str, Any]) -> dict[str, Any]:
    return {"productName": p["name"], "version": p.get("version"),
            "attributes": [shapes.render_attribute(a) for a in p.get("attributes") or []]}


async def list_tier_products(request: Request) -> Response:
    call = await begin(request, READ)
    return json_response(call.page([_tier_product(p) for p in (await _tier(call))["products"]]))


def _tier_release(tier: dict[str, Any], wanted: str) -> list[dict[str, Any]]:
    """The tier's product entries named `wanted` ("<product>" or "<product>-<version>")."""
    return [p for p in tier["products"] if wanted in (p["name"], shapes.release_name(p["name"], str(p.get("version"))))]


async def show_tier_product(request: Request) -> Response:
    call = await begin(request, READ)
    tier = await _tier(call)
    found = _tier_release(tier, call.path("name"))
    if not found:
        raise errors.NotFound(f"product release {call.path('name')[:64]} is not in tier {tier['name']}")
    return json_response(_tier_product(found[0]))


async def add_tier_product(request: Request) -> Response:
    """Pegasus's POST .../tier/{tier}/productRelease: one more product release on the tier."""
    call = await begin(request, WRITE)
    body = shapes.as_object(await call.body(), "productRelease")
    added = shapes.parse_tier({"name": call.path("tier"), "productReleaseDtos": [body]})["products"][0]
    tier = await _tier(call)
    tier["products"] = [*tier["products"], added]
    await call.deps.catalogue.put_tier(call.ctx, call.path("env"), tier, replace=tier["name"])
    return empty(headers={"Location": f"{_env_href(call.base, call.path('org'), call.path('env'))}/tier/{tier['name']}"
                                      f"/productRelease/{added['name']}"})


async def remove_tier_product(request: Request) -> Response:
    call = await begin(request, WRITE)
    tier = await _tier(call)
    wanted = call.path("name")
    kept = [p for p in tier["products"] if wanted not in (p["name"], shapes.release_name(p["name"], str(p.get("version"))))]
    if len(kept) == len(tier["products"]):
        raise errors.NotFound(f"product release {wanted[:64]} is not in tier {tier['name']}")
    await call.deps.catalogue.put_tier(call.ctx, call.path("env"), {**tier, "products": kept}, replace=tier["name"])
    return empty()


async def delete_tier(request: Request) -> Response:
    call = await begin(request, WRITE)
    await call.deps.catalogue.delete_tier(call.ctx, call.path("env"), call.path("tier"))
    return empty()


def routes(root: str) -> list[BaseRoute]:
    out: list[BaseRoute] = [
        Route(f"{root}/catalog/productRelease", list_products, methods=["GET"]),
        Route(f"{root}/catalog/productRelease", create_product, methods=["POST"]),
        Route(f"{root}/catalog/productRelease/{{name}}", show_product, methods=["GET"]),
        Route(f"{root}/catalog/productRelease/{{name}}", delete_product, methods=["DELETE"]),
    ]
    for envs in (f"{root}/catalog/org/{{org}}/environment", f"{root}/catalog/org/{{org}}/vdc/{{vdc}}/environment"):
        out += [
            Route(envs, list_environments, methods=["GET"]),
            Route(envs, create_environment, methods=["POST"]),
            Route(f"{envs}/{{env}}", show_environment, methods=["GET"]),
            Route(f"{envs}/{{env}}", delete_environment, methods=["DELETE"]),
            Route(f"{envs}/{{env}}/tier", list_tiers, methods=["GET"]),
            Route(f"{envs}/{{env}}/tier", create_tier, methods=["POST"]),
            Route(f"{envs}/{{env}}/tier/{{tier}}", show_tier, methods=["GET"]),
            Route(f"{envs}/{{env}}/tier/{{tier}}", update_tier, methods=["PUT"]),
            Route(f"{envs}/{{env}}/tier/{{tier}}", delete_tier, methods=["DELETE"]),
            Route(f"{envs}/{{env}}/tier/{{tier}}/productRelease", list_tier_products, methods=["GET"]),
            Route(f"{envs}/{{env}}/tier/{{tier}}/productRelease", add_tier_product, methods=["POST"]),
            Route(f"{envs}/{{env}}/tier/{{tier}}/productRelease/{{name}}", show_tier_product, methods=["GET"]),
            Route(f"{envs}/{{env}}/tier/{{tier}}/productRelease/{{name}}", remove_tier_product, methods=["DELETE"]),
        ]
    return out
