"""Shared HTTP plumbing for every API family: JSON in and out, faults, authentication, dispatch.

Each family (identity, compute, image, ...) is a Starlette app built with `family_app`, which maps
domain errors to that family's native fault body. Nothing here knows a family's wire format.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo import errors
from cumulo.context import RequestContext

if TYPE_CHECKING:
    from cumulo.runtime import Services

LOG = logging.getLogger(__name__)

MAX_JSON_BODY = 1 << 20  # 1 MiB is far more than any JSON body the APIs accept.

# (status, message, request) -> Response in the family's native fault format.
FaultRenderer = Callable[[int, str, Request], Response]


class JSON(JSONResponse):
    """Compact JSON, non-ASCII kept as is."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSON(body, status_code=status, headers=headers)


def empty(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


async def json_body(request: Request, *, required: bool = True) -> Any:
    """Parse the request body as JSON, or raise Invalid naming what is wrong."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_JSON_BODY:
        raise errors.PayloadTooLarge("Request body is larger than 1 MiB")
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise errors.PayloadTooLarge("Request body is larger than 1 MiB")
    if not raw.strip():
        if required:
            raise errors.Invalid("The request body is empty; a JSON document is required")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid(f"Malformed request body: {exc}") from None
    except RecursionError:
        raise errors.Invalid("Malformed request body: JSON nested too deeply") from None


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def base_url(request: Request) -> str:
    """The URL of the family's root as the client reached it, without trailing slash."""
    return str(request.base_url).rstrip("/")


async def authenticate(request: Request) -> RequestContext:
    """The caller's context from X-Auth-Token, or Unauthorized."""
    cached = request.scope.get("cumulo.context")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = request.headers.get("x-auth-token")
    if not token:
        raise errors.Unauthorized("The request you have made requires authentication.")
    ctx: RequestContext = await services_of(request).identity.validate_token(token)
    rid = request.scope.get("cumulo.request_id")
    if rid:
        ctx = dataclasses.replace(ctx, request_id=rid)
    request.scope["cumulo.context"] = ctx
    return ctx


def family_app(services: Services, routes: Sequence[BaseRoute], render_fault: FaultRenderer) -> Starlette:
    """A Starlette app whose every error, including unknown routes and crashes, uses render_fault."""

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.CumuloError)
        if exc.code >= 500:
            LOG.error("%s %s: %s", request.method, request.url.path, exc.message)
        return render_fault(exc.code, exc.message, request)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = "The resource could not be found."
        resp = render_fault(exc.status_code, detail, request)
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp

    async def on_crash(request: Request, exc: Exception) -> Response:
        LOG.exception("unexpected error in %s %s", request.method, request.url.path)
        return render_fault(500, "An unexpected error prevented the server from fulfilling your request.", request)

    app = Starlette(
        routes=list(routes),
        exception_handlers={
            errors.CumuloError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_crash,
        },
    )
    app.state.services = services
    return app


class RequestIdMiddleware:
    """Gives each request an id (x-openstack-request-id), echoed in the response headers."""

    def __init__(self, app: ASGIApp, header_names: Sequence[str] = ("x-openstack-request-id",)) -> None:
        self.app = app
        self.header_names = [h.encode() for h in header_names]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import uuid

        rid = ("req-" + str(uuid.uuid4())).encode()
        scope["cumulo.request_id"] = rid.decode()

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend((h, rid) for h in self.header_names)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class PrefixDispatcher:
    """Routes /<prefix>/... to a family app, the way DevStack puts every API behind one port."""

    def __init__(self, apps: dict[str, ASGIApp], root: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        # Longest prefix first so "/compute" never shadows a longer one.
        self.apps = sorted(apps.items(), key=lambda kv: -len(kv[0]))
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.root(scope, receive, send)
            return
        path: str = scope.get("path", "")
        for prefix, app in self.apps:
            if path == prefix or path.startswith(prefix + "/"):
                scope = dict(scope)
                scope["root_path"] = scope.get("root_path", "") + prefix
                if path == prefix:
                    scope["path"] = prefix + "/"
                await app(scope, receive, send)
                return
        await self.root(scope, receive, send)
