"""Keystone's /v3/domains: Cumulo has the one default domain, readable by any reader."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo import policy
from cumulo.identity import views
from cumulo.identity.api._common import R, caller, flag, identity, param, route
from cumulo.web.http import json_response

policy.register({"identity:list_domains": R, "identity:get_domain": R})


async def list_domains(request: Request) -> Response:
    await caller(request, "identity:list_domains")
    found = await identity(request).directory.list_domains(request.query_params.get("name"), flag(request, "enabled"))
    return json_response(views.collection(request, "domains", [views.domain(request, d) for d in found]))


async def get_domain(request: Request) -> Response:
    await caller(request, "identity:get_domain")
    d = await identity(request).directory.get_domain(param(request, "domain_id"))
    return json_response({"domain": views.domain(request, d)})


ROUTES: list[BaseRoute] = [
    route("/v3/domains", list_domains, "GET"),
    route("/v3/domains/{domain_id}", get_domain, "GET"),
]
