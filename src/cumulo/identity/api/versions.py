"""Keystone's version documents: the version list at / and v3 at /v3."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo.identity import views
from cumulo.identity.api._common import route
from cumulo.web.http import json_response


async def versions(request: Request) -> Response:
    return json_response({"versions": {"values": [views.version_entry(request)]}}, 300)


async def version_v3(request: Request) -> Response:
    return json_response({"version": views.version_entry(request)})


ROUTES: list[BaseRoute] = [
    route("/", versions, "GET"),
    route("/v3", version_v3, "GET"),
    route("/v3/", version_v3, "GET"),
]
