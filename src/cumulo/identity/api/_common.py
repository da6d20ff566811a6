"""What the identity API's resource modules share: caller checks, query and path parsing.

Also the identity service, catalog and region of the app that serves the request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.catalog import CatalogEntry
from cumulo.context import RequestContext
from cumulo.identity.api.deps import services_of
from cumulo.identity.service import IdentityService
from cumulo.web.http import authenticate

A, R = policy.ADMIN, policy.READER

Handler = Callable[[Request], Awaitable[Response]]


def route(path: str, endpoint: Handler, *methods: str) -> Route:
    return Route(path, endpoint, methods=list(methods))


def identity(request: Request) -> IdentityService:
    return services_of(request).identity


def catalog_entries(request: Request) -> Sequence[CatalogEntry]:
    return services_of(request).catalog


def region(request: Request) -> str:
    return services_of(request).conf.region


async def caller(request: Request, rule: str) -> RequestContext:
    ctx = await authenticate(request)
    policy.authorize(ctx, rule)
    return ctx


async def caller_owning(request: Request, rule: str, owns: Callable[[RequestContext], bool]) -> RequestContext:
    """Authenticate, then enforce `rule` unless the caller owns the target (self-service reads)."""
    ctx = await authenticate(request)
    if not owns(ctx):
        policy.authorize(ctx, rule)
    return ctx


def flag(request: Request, name: str) -> bool | None:
    """Keystone's reading of boolean query filters: present and not 0/false means true."""
    if name not in request.query_params:
        return None
    return request.query_params[name].strip().lower() not in ("0", "false", "no", "off")


def param(request: Request, name: str) -> str:
    return str(request.path_params[name])
