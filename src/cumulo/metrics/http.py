"""Request latency per API route: an ASGI middleware around each API family's app.

The route label is the template Starlette matched (`/compute/v2.1/servers/{server_id}`), never the
raw path, so the number of series stays bounded whatever clients send; a path no route matched is
"(unmatched)". Methods outside the standard set are "OTHER".
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cumulo.metrics.control import REQUEST_LATENCY

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"


def route_template(scope: Scope) -> str:
    """The matched route's path template under the family's prefix (root_path)."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if not isinstance(path, str) or not path:
        return UNMATCHED
    return f"{scope.get('root_path', '')}{path}"


class RouteMetrics:
    def __init__(self, app: ASGIApp, family: str) -> None:
        self.app = app
        self.family = family

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an app that raises without answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = str(scope.get("method", "GET")).upper()
            REQUEST_LATENCY.labels(
                self.family, method if method in _METHODS else "OTHER", route_template(scope), str(status),
            ).observe(time.perf_counter() - started)
