"""Keystone's /v3/roles and the implied-role rules (/v3/roles/{id}/implies, /v3/role_inferences).

Readable by any reader, administered by admins."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo import errors, policy
from cumulo.identity import schemas, views
from cumulo.identity.api._common import A, R, caller, identity, param, route
from cumulo.web.http import empty, json_body, json_response

policy.register(
    {
        "identity:list_roles": R,
        "identity:get_role": R,
        "identity:create_role": A,
        "identity:update_role": A,
        "identity:delete_role": A,
        "identity:list_role_inference_rules": R,
        "identity:list_implied_roles": R,
        "identity:get_implied_role": R,
    }
)


async def list_roles(request: Request) -> Response:
    await caller(request, "identity:list_roles")
    if request.query_params.get("domain_id"):
        return json_response(views.collection(request, "roles", []))  # no domain-specific roles
    found = await identity(request).directory.list_roles(request.query_params.get("name"))
    return json_response(views.collection(request, "roles", [views.role(request, r) for r in found]))


async def create_role(request: Request) -> Response:
    await caller(request, "identity:create_role")
    fields = schemas.validate(schemas.ROLE_CREATE, await json_body(request))["role"]
    created = await identity(request).directory.create_role(fields)
    return json_response({"role": views.role(request, created)}, 201)


async def get_role(request: Request) -> Response:
    await caller(request, "identity:get_role")
    found = await identity(request).directory.require_role(param(request, "role_id"))
    return json_response({"role": views.role(request, found)})


async def update_role(request: Request) -> Response:
    await caller(request, "identity:update_role")
    fields = schemas.validate(schemas.ROLE_UPDATE, await json_body(request))["role"]
    updated = await identity(request).directory.update_role(param(request, "role_id"), fields)
    return json_response({"role": views.role(request, updated)})


async def delete_role(request: Request) -> Response:
    await caller(request, "identity:delete_role")
    await identity(request).directory.delete_role(param(request, "role_id"))
    return empty(204)


async def _inferences(request: Request) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return await identity(request).directory.role_inferences()


async def list_role_inferences(request: Request) -> Response:
    await caller(request, "identity:list_role_inference_rules")
    items = [views.role_inference(request, p, i) for p, i in await _inferences(request)]
    return json_response(views.collection(request, "role_inferences", items))


async def implied_roles(request: Request) -> Response:
    await caller(request, "identity:list_implied_roles")
    prior = await identity(request).directory.require_role(param(request, "prior_id"))
    implied = next((i for p, i in await _inferences(request) if p["id"] == prior["id"]), [])
    body = {
        "role_inference": views.role_inference(request, prior, implied),
        "links": {"self": str(request.url)},
    }
    return json_response(body)


async def get_implied_role(request: Request) -> Response:
    await caller(request, "identity:get_implied_role")
    prior_id, implied_id = param(request, "prior_id"), param(request, "implied_id")
    for p, implied in await _inferences(request):
        match = next((r for r in implied if r["id"] == implied_id), None)
        if p["id"] == prior_id and match is not None:
            if request.method == "HEAD":
                return empty(204)
            body = {"prior_role": views.role_ref(request, p), "implies": views.role_ref(request, match)}
            return json_response({"role_inference": body, "links": {"self": str(request.url)}})
    raise errors.NotFound(f"{prior_id} does not imply {implied_id}.")


ROUTES: list[BaseRoute] = [
    route("/v3/roles", list_roles, "GET"),
    route("/v3/roles", create_role, "POST"),
    route("/v3/roles/{role_id}", get_role, "GET"),
    route("/v3/roles/{role_id}", update_role, "PATCH"),
    route("/v3/roles/{role_id}", delete_role, "DELETE"),
    route("/v3/roles/{prior_id}/implies", implied_roles, "GET"),
    route("/v3/roles/{prior_id}/implies/{implied_id}", get_implied_role, "GET", "HEAD"),
    route("/v3/role_inferences", list_role_inferences, "GET"),
]
