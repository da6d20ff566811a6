"""/v2.1/servers/{id}/os-server-password: show and clear the encrypted admin password.

Nova's metadata service lets a guest post its encrypted password, which Nova keeps in the server's
system_metadata as password_0..password_3 (255 characters each). Cumulo has no metadata service, so
nothing stores one yet: GET answers "" unless a password is there, and DELETE clears it (204).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.service.passwords import extract_password
from cumulo.web.http import empty, json_response

policy.register(
    {
        "compute:os-server-password:show": policy.READER,
        "compute:os-server-password:clear": policy.MEMBER,
    }
)


async def show(request: Request) -> Response:
    ctx = await _common.caller(request)
    row = await _common.compute_service(request).get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, "compute:os-server-password:show")
    return json_response({"password": extract_password(row["system_metadata"])})


async def clear(request: Request) -> Response:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, "compute:os-server-password:clear")
    await svc.clear_password(row)
    return empty(204)


ROUTES = [
    Route("/v2.1/servers/{server_id}/os-server-password", show, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/os-server-password", clear, methods=["DELETE"]),
]
