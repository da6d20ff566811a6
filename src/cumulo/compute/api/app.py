"""The compute family's app: Nova's fault format and every resource module's routes.

`make_app` puts them behind the microversion negotiation and the legacy /v2 prefix, over the
dependencies the assembly hands it (`deps.ComputeDeps`) and an `Authenticator` for tokens.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from cumulo.compute.api import (
    admin,
    admin_extras,
    extensions,
    flavors,
    image_metadata,
    images,
    interfaces,
    keypairs,
    live_migration,
    migrations,
    network_proxies,
    nova_networks,
    openapi_ops,
    quotas,
    server_actions,
    server_groups,
    server_password,
    server_resources,
    servers,
    versions,
    volume_attachments,
    volume_proxies,
)
from cumulo.compute.api.deps import ComputeDeps
from cumulo.compute.api.microversion import MicroversionMiddleware
from cumulo.web.http import Authenticator, family_app, json_response
from cumulo.web.openapi import openapi_route

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


def make_app(deps: ComputeDeps, *, authenticator: Authenticator | None = None) -> ASGIApp:
    """The compute family's ASGI app over `deps`; tokens are checked by `authenticator` (without
    one, only requests that arrive with a context in their scope get past `authenticate`)."""
    routes: list[BaseRoute] = [
        openapi_route(openapi_ops.FAMILY, openapi_ops.MICROVERSIONS, public_url=deps.conf.public_url)
    ]
    for module in (versions, extensions, servers, server_actions, server_resources, server_groups, flavors, keypairs, quotas, admin):
        routes.extend(module.ROUTES)
    # Nova's deprecated proxies and os-server-password (kept apart from the line above, which others edit).
    for extra in (images, image_metadata, server_password, migrations, live_migration):
        routes.extend(extra.ROUTES)
    # Aggregates, os-hosts, usage, external events, server security groups (their modules list them).
    routes.extend(admin_extras.ROUTES)
    routes.extend(interfaces.ROUTES)  # os-interface (the network service's ports)
    routes.extend(network_proxies.ROUTES)  # os-security-groups & co. below 2.36
    routes.extend(nova_networks.ROUTES)  # os-networks, os-tenant-networks below 2.36
    routes.extend(volume_attachments.ROUTES)  # os-volume_attachments (the volume service's attachments)
    routes.extend(volume_proxies.ROUTES)  # os-volumes, os-snapshots below 2.36
    app = family_app(deps, routes, render_fault, authenticator=authenticator)
    return versions.LegacyV2(MicroversionMiddleware(app))
