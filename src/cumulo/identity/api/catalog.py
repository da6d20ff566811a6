"""Keystone's catalog administration, read-only: /v3/services, /v3/endpoints and /v3/regions.

The catalog is what this build serves, in the one region the cloud is configured with."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo import errors, policy
from cumulo.identity import views
from cumulo.identity.api._common import R, caller, catalog_entries, param, region, route
from cumulo.web.http import json_response

policy.register({"identity:list_services": R, "identity:list_endpoints": R, "identity:list_regions": R})


async def list_services(request: Request) -> Response:
    await caller(request, "identity:list_services")
    items = views.services(request, catalog_entries(request))
    if request.query_params.get("type"):
        items = [s for s in items if s["type"] == request.query_params["type"]]
    return json_response(views.collection(request, "services", items))


async def get_service(request: Request) -> Response:
    await caller(request, "identity:list_services")
    sid = param(request, "service_id")
    for item in views.services(request, catalog_entries(request)):
        if item["id"] == sid:
            return json_response({"service": item})
    raise errors.NotFound(f"Could not find service: {sid}.")


def _all_endpoints(request: Request) -> list[dict[str, Any]]:
    return views.endpoints(request, catalog_entries(request), region(request))


async def list_endpoints(request: Request) -> Response:
    await caller(request, "identity:list_endpoints")
    items = _all_endpoints(request)
    for key in ("interface", "service_id", "region_id"):
        if request.query_params.get(key):
            items = [e for e in items if e[key] == request.query_params[key]]
    return json_response(views.collection(request, "endpoints", items))


async def get_endpoint(request: Request) -> Response:
    await caller(request, "identity:list_endpoints")
    eid = param(request, "endpoint_id")
    for item in _all_endpoints(request):
        if item["id"] == eid:
            return json_response({"endpoint": item})
    raise errors.NotFound(f"Could not find endpoint: {eid}.")


def _region(request: Request) -> dict[str, Any]:
    name = region(request)
    return {
        "id": name,
        "description": "",
        "parent_region_id": None,
        "links": views.link(request, f"/v3/regions/{name}"),
    }


async def list_regions(request: Request) -> Response:
    await caller(request, "identity:list_regions")
    return json_response(views.collection(request, "regions", [_region(request)]))


async def get_region(request: Request) -> Response:
    await caller(request, "identity:list_regions")
    found = _region(request)
    if param(request, "region_id") != found["id"]:
        raise errors.NotFound(f"Could not find region: {param(request, 'region_id')}.")
    return json_response({"region": found})


ROUTES: list[BaseRoute] = [
    route("/v3/services", list_services, "GET"),
    route("/v3/services/{service_id}", get_service, "GET"),
    route("/v3/endpoints", list_endpoints, "GET"),
    route("/v3/endpoints/{endpoint_id}", get_endpoint, "GET"),
    route("/v3/regions", list_regions, "GET"),
    route("/v3/regions/{region_id}", get_region, "GET"),
]
