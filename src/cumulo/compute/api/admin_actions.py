"""Admin server actions os-resetState, injectNetworkInfo (Nova's os-admin-actions) and migrate
(os-migrate-server); server_actions dispatches to ACTIONS here, with their schemas in SCHEMAS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas._base import bool_from_string
from cumulo.compute.api.schemas.admin_actions import SCHEMAS as SCHEMAS
from cumulo.compute.service import admin_actions, migrate
from cumulo.compute.service.boot import generate_password
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_response

policy.register(
    {
        "os_compute_api:os-admin-actions:reset_state": policy.ADMIN,
        "os_compute_api:os-admin-actions:inject_network_info": policy.ADMIN,
        "os_compute_api:os-migrate-server:migrate": policy.ADMIN,
        "os_compute_api:os-migrate-server:migrate:host": policy.ADMIN,
        "os_compute_api:os-evacuate": policy.ADMIN,
    }
)

Handler = Callable[[Request, RequestContext, ComputeService, dict[str, Any], Any], Awaitable[Response]]


async def _reset_state(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "os_compute_api:os-admin-actions:reset_state")
    await admin_actions.reset_state(svc, ctx, row, arg["state"])
    return empty(202)


async def _inject_network_info(
    request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any
) -> Response:
    policy.authorize(ctx, "os_compute_api:os-admin-actions:inject_network_info")
    await admin_actions.inject_network_info(svc, ctx, row)
    return empty(202)


async def _migrate(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "os_compute_api:os-migrate-server:migrate")
    # The schema admits "host" only from 2.56; before, any argument is ignored as in Nova.
    host = arg.get("host") if isinstance(arg, dict) and _common.version(request) >= v("2.56") else None
    if host:
        policy.authorize(ctx, "os_compute_api:os-migrate-server:migrate:host")
    await admin_actions.migrate(svc, ctx, row, host)
    return empty(202)


async def _evacuate(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    """os-evacuate (compute/service/migrate.py); before 2.14 the answer carries the admin password."""
    policy.authorize(ctx, "os_compute_api:os-evacuate")
    version = _common.version(request)
    shared = bool_from_string(arg.get("onSharedStorage")) if version < v("2.14") else None
    force = bool_from_string(arg.get("force")) if v("2.29") <= version < v("2.68") else False
    await migrate.evacuate(svc, ctx, row, host=arg.get("host") or None, force=force, on_shared_storage=shared)
    if version < v("2.14"):
        return json_response({"adminPass": arg.get("adminPass") or generate_password()})
    return empty(200)


ACTIONS: dict[str, Handler] = {
    "os-resetState": _reset_state,
    "injectNetworkInfo": _inject_network_info,
    "migrate": _migrate,
    "evacuate": _evacuate,
}
