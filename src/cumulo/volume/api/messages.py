"""Cinder's user messages: GET /messages, GET and DELETE /messages/{message_id} (3.3; filters,
sorting and paging from 3.5). Below 3.3 the routes are 404, as Cinder's versioned controller."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.volume.api import views
from cumulo.volume.api.common import Call, begin, listing
from cumulo.web.http import empty, json_response


def _view(call: Call, m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m["id"],
        "event_id": m["event_id"],
        "user_message": m["user_message"],
        "message_level": m["message_level"],
        "created_at": views.when(m["created_at"]),
        "guaranteed_until": views.when(m["guaranteed_until"]),
        "request_id": m["request_id"],
        "links": views.links(call.base, m["project_id"], "messages", m["id"]),
    }
    if m["resource_type"]:
        out["resource_type"] = m["resource_type"]
    if m["resource_uuid"]:
        out["resource_uuid"] = m["resource_uuid"]
    return out


async def _begin(request: Request) -> Call:
    call = await begin(request)
    if not call.at_least(3):
        raise errors.NotFound("The resource could not be found.")
    return call


async def list_messages(request: Request) -> Response:
    """List messages"""
    call = await _begin(request)
    page = await call.svc.list_messages(call.ctx, call.params(), paging=call.at_least(5))
    return json_response(listing(call, "messages", page, lambda m: _view(call, m)))


async def show_message(request: Request) -> Response:
    """Show a message"""
    call = await _begin(request)
    return json_response({"message": _view(call, await call.svc.get_message(call.ctx, call.path("message_id")))})


async def delete_message(request: Request) -> Response:
    """Delete a message"""
    call = await _begin(request)
    await call.svc.delete_message(call.ctx, call.path("message_id"))
    return empty(204)


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/messages", list_messages, methods=["GET"]),
        Route(f"{prefix}/messages/{{message_id}}", show_message, methods=["GET"]),
        Route(f"{prefix}/messages/{{message_id}}", delete_message, methods=["DELETE"]),
    ]
