"""Shared HTTP plumbing for every API family: JSON in and out, faults, authentication, dispatch.

Each family (identity, compute, image, ...) is a Starlette app built with `family_app`, which maps
domain errors to that family's native fault body. Nothing here knows a family's wire format or its
services: a family app holds the dependencies its factory was given (`deps_of` reads them back,
typed) and an `Authenticator`, the one thing `authenticate` needs to turn a token into a context.

Hostile clients: every request body is counted while it streams (`BodyLimitMiddleware`), so no
route, authenticated or not, can be made to hold more than its limit in memory; a body without
Content-Length is cut off as soon as it passes the limit (413 in the family's fault format). Every
JSON body is parsed by `parse_json`, which refuses what Python's json accepts but nothing
downstream can store or print: lone UTF-16 surrogates.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cumulo import errors
from cumulo.context import RequestContext

LOG = logging.getLogger(__name__)

MAX_JSON_BODY = 1 << 20  # 1 MiB is far more than any JSON body the APIs accept.

# (status, message, request) -> Response in the family's native fault format.
FaultRenderer = Callable[[int, str, Request], Response]
# scope -> the most bytes this request's body may carry.
BodyLimit = Callable[[Scope], int]

_SURROGATE = re.compile(r"[\ud800-\udfff]")

T = TypeVar("T")


class Authenticator(Protocol):
    """What `authenticate` asks who a token stands for (the identity service implements it)."""

    async def validate_token(self, token: str) -> RequestContext:
        """The context the token stands for; Unauthorized if it is unknown, expired or revoked."""
        ...


class JSON(JSONResponse):
    """Compact JSON, non-ASCII kept as is."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate got this far: escape it rather than crash
            return json.dumps(content, separators=(",", ":")).encode()


def _too_large(limit: int) -> errors.PayloadTooLarge:
    size = "1 MiB" if limit == MAX_JSON_BODY else f"{limit} bytes"
    return errors.PayloadTooLarge(f"Request body is larger than {size}")


class BodyLimitMiddleware:
    """Counts the request body as the app receives it; past the limit, the receive call raises
    PayloadTooLarge, which the family renders as its own 413. A Content-Length over the limit
    fails on the first read, before any byte is taken. Routes that never read the body are not
    affected (the server does not buffer an unread body beyond its flow-control window)."""

    def __init__(self, app: ASGIApp, limit: BodyLimit | None = None) -> None:
        self.app = app
        self.limit = limit or (lambda scope: MAX_JSON_BODY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, receive if limit < 0 else limited, send)  # < 0: no limit


def route_path(scope: Scope) -> str:
    """The request path inside its family app (without the /compute, /image ... prefix)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _check_text(value: Any, where: str = "") -> None:
    """Refuse lone UTF-16 surrogates in any string or key: they cannot be stored, logged or sent."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        if m is not None:
            raise errors.Invalid(
                f"Invalid input{' for field ' + where if where else ''}: the string holds a lone UTF-16"
                f" surrogate (\\u{ord(m.group()):04x} at position {m.start()}), which is not valid Unicode"
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k, where)
            _check_text(v, f"{where}/{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, f"{where}/{i}")


def parse_json(raw: bytes) -> Any:
    """The one JSON decoder of request bodies: malformed input, bad UTF-8, nesting too deep and
    lone surrogates are Invalid (400), never an exception further down."""
    try:
        # Strict decoding (json.loads would pass encoded surrogates such as ED A0 80 through).
        text = raw.decode(json.detect_encoding(raw))
        value = json.loads(text)
        if "\\u" in text:  # after strict decoding, a surrogate can only come from a \\u escape
            _check_text(value)
    except errors.Invalid:
        raise
    except UnicodeDecodeError as exc:
        raise errors.Invalid(
            f"Malformed request body: not valid {exc.encoding.upper()} ({exc.reason} at byte {exc.start})"
        ) from None
    except ValueError as exc:
        raise errors.Invalid(f"Malformed request body: {exc}") from None
    except RecursionError:
        raise errors.Invalid("Malformed request body: JSON nested too deeply") from None
    return value


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSON(body, status_code=status, headers=headers)


def empty(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


async def json_body(request: Request, *, required: bool = True) -> Any:
    """Parse the request body as JSON, or raise Invalid naming what is wrong."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_JSON_BODY:
        raise _too_large(MAX_JSON_BODY)
    # Read as it streams and stop at the limit: a chunked body is never held whole first.
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise _too_large(MAX_JSON_BODY)
        parts.append(chunk)
    raw = b"".join(parts)
    if not raw.strip():
        if required:
            raise errors.Invalid("The request body is empty; a JSON document is required")
        return None
    return parse_json(raw)


async def with_headers(app: ASGIApp, scope: Scope, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]],
                       error: tuple[int, bytes] | None = None) -> None:
    """`app` answers with the `extra` headers added; or, given `error` (status, JSON body), that is the
    answer, with the `extra` headers too (a microversion middleware's negotiated or refused version)."""
    if error is not None:
        status, body = error
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})
        return

    async def send_with_extra(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    await app(scope, receive, send_with_extra)


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge ASGI lifespan startup and shutdown: the CLI starts and stops the cloud around the
    HTTP servers, so there is nothing to do in them."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def deps_of(request: Request, kind: type[T]) -> T:
    """The dependencies the request's family app was built with (family_app's `deps`), which the
    family's factory gave as a `kind`."""
    deps = getattr(request.app.state, "deps", None)
    if not isinstance(deps, kind):
        raise TypeError(f"this app was built with {type(deps).__name__} dependencies, not {kind.__name__}")
    return deps


def base_url(request: Request) -> str:
    """The URL of the family's root as the client reached it, without trailing slash."""
    return str(request.base_url).rstrip("/")


async def authenticate(request: Request) -> RequestContext:
    """The caller's context from X-Auth-Token, or Unauthorized. The token is checked by the
    app's `Authenticator` (family_app's `authenticator`); an app without one takes no token."""
    cached = request.scope.get("cumulo.context")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = request.headers.get("x-auth-token")
    if not token:
        raise errors.Unauthorized("The request you have made requires authentication.")
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise errors.Unauthorized("The request you have made requires authentication.")
    return remember(request, await authenticator.validate_token(token))


def remember(request: Request, ctx: RequestContext) -> RequestContext:
    """`ctx` with this request's id, kept in the request's scope: what `authenticate` answers for
    the rest of the request (another family's own authentication ends with it too)."""
    rid = request.scope.get("cumulo.request_id")
    if rid:
        ctx = dataclasses.replace(ctx, request_id=rid)
    request.scope["cumulo.context"] = ctx
    return ctx


def family_app(
    deps: object,
    routes: Sequence[BaseRoute],
    render_fault: FaultRenderer,
    body_limit: BodyLimit | None = None,
    *,
    authenticator: Authenticator | None = None,
) -> Starlette:
    """A Starlette app whose every error, including unknown routes and crashes, uses render_fault.
    Request bodies are limited to `body_limit(scope)` bytes (default: MAX_JSON_BODY for every route).
    Its handlers read `deps` back with `deps_of`; `authenticate` checks tokens with `authenticator`."""

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
        middleware=[Middleware(BodyLimitMiddleware, limit=body_limit)],
        exception_handlers={
            errors.CumuloError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_crash,
        },
    )
    app.state.deps = deps
    app.state.authenticator = authenticator
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
