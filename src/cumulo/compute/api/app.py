"""The compute family's app: Nova's fault format and every resource module's routes, behind the
microversion negotiation and the legacy /v2 prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from cumulo.compute.api.microversion import MicroversionMiddleware
from cumulo.web.http import family_app, json_response

if TYPE_CHECKING:
    from cumulo.runtime import Services

# Nova's fault names by HTTP status; anything else is computeFault.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def render_fault(status: int, message: str, request: Request) -> Response:
    name = FAULT_NAMES.get(status, "computeFault")
    return json_response({name: {"code": status, "message": message}}, status=status)


def make_app(services: Services) -> ASGIApp:
    from cumulo.compute.api import (
        admin,
        extensions,
        flavors,
        image_metadata,
        images,
        keypairs,
        migrations,
        quotas,
        server_actions,
        server_groups,
        server_password,
        server_resources,
        servers,
        versions,
    )
    from cumulo.web.openapi import openapi_route  # late: openapi imports the API schema modules

    routes: list[BaseRoute] = [openapi_route("compute")]
    for module in (versions, extensions, servers, server_actions, server_resources, server_groups, flavors, keypairs, quotas, admin):
        routes.extend(module.ROUTES)
    # Nova's deprecated proxies and os-server-password (kept apart from the line above, which others edit).
    for extra in (images, image_metadata, server_password, migrations):
        routes.extend(extra.ROUTES)
    # Aggregates, os-hosts, usage, external events, server security groups (their modules list them).
    from cumulo.compute.api import admin_extras

    routes.extend(admin_extras.ROUTES)
    return versions.LegacyV2(MicroversionMiddleware(family_app(services, routes, render_fault)))
