"""Volume transfers: /os-volume-transfer, and /volume-transfers from 3.55 (which adds
`no_snapshots`; 3.57 shows source/destination project and `accepted`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.volume.api import views
from cumulo.volume.api.common import Call, begin, body_of
from cumulo.web.http import empty, json_response


def _view(call: Call, t: dict[str, Any], *, detail: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": t["id"], "name": t["name"], "volume_id": t["volume_id"],
                           "links": views.links(call.base, t["source_project_id"], "os-volume-transfer", t["id"])}
    if detail:
        out["created_at"] = t["created_at"]
        if call.at_least(57):
            out.update(source_project_id=t["source_project_id"], destination_project_id=None, accepted=False)
    return out


async def _begin(request: Request) -> Call:
    call = await begin(request)
    if "/volume-transfers" in request.url.path and not call.at_least(55):
        raise errors.NotFound("The resource could not be found.")
    return call


async def create_transfer(request: Request) -> Response:
    call = await _begin(request)
    t = await call.svc.create_transfer(call.ctx, await body_of(request), no_snapshots_allowed=call.at_least(55))
    return json_response({"transfer": {**_view(call, t), "auth_key": t["auth_key"]}}, status=202)


async def _list(request: Request, *, detail: bool) -> Response:
    call = await _begin(request)
    found = await call.svc.list_transfers(call.ctx, call.params())
    return json_response({"transfers": [_view(call, t, detail=detail) for t in found]})


async def list_transfers(request: Request) -> Response:
    return await _list(request, detail=False)


async def list_transfers_detail(request: Request) -> Response:
    return await _list(request, detail=True)


async def show_transfer(request: Request) -> Response:
    call = await _begin(request)
    return json_response({"transfer": _view(call, await call.svc.get_transfer(call.ctx, call.path("transfer_id")))})


async def delete_transfer(request: Request) -> Response:
    call = await _begin(request)
    await call.svc.delete_transfer(call.ctx, call.path("transfer_id"))
    return empty(202)


async def accept_transfer(request: Request) -> Response:
    call = await _begin(request)
    t = await call.svc.accept_transfer(call.ctx, call.path("transfer_id"), await body_of(request))
    return json_response({"transfer": _view(call, t, detail=False)}, status=202)


def routes(prefix: str) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for base in (f"{prefix}/os-volume-transfer", f"{prefix}/volume-transfers"):
        out += [
            Route(base, list_transfers, methods=["GET"]),
            Route(base, create_transfer, methods=["POST"]),
            Route(f"{base}/detail", list_transfers_detail, methods=["GET"]),
            Route(f"{base}/{{transfer_id}}", show_transfer, methods=["GET"]),
            Route(f"{base}/{{transfer_id}}", delete_transfer, methods=["DELETE"]),
            Route(f"{base}/{{transfer_id}}/accept", accept_transfer, methods=["POST"]),
        ]
    return out
