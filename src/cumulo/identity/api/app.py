"""The identity family's app: Keystone's fault format and every resource module's routes.

Policy: directory administration needs admin; users may read themselves, their own project and
their own assignments; roles and the domain are readable by any reader (each resource module
registers its rules).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from cumulo.catalog import CatalogEntry
from cumulo.conf import Settings
from cumulo.identity.api import (
    assignments,
    catalog,
    credentials,
    domains,
    projects,
    roles,
    tokens,
    users,
    versions,
)
from cumulo.identity.api.deps import IdentityDeps
from cumulo.web.http import base_url, family_app, json_response

if TYPE_CHECKING:
    from cumulo.identity.service import IdentityService

_TITLES = {413: "Request Entity Too Large"}

ROUTES: list[BaseRoute] = [
    route
    for module in (versions, tokens, domains, projects, assignments, users, roles, catalog, credentials)
    for route in module.ROUTES
]


def render_fault(status: int, message: str, request: Request) -> Response:
    """Keystone's error body; a 401 also names where to authenticate, as Keystone does."""
    try:
        title = _TITLES.get(status) or HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": f'Keystone uri="{base_url(request)}"'}
    return json_response({"error": {"code": status, "title": title, "message": message}}, status, headers)


def make_app(identity: IdentityService, conf: Settings, catalog_entries: tuple[CatalogEntry, ...]) -> ASGIApp:
    """The identity family's ASGI app over `identity`, which also checks the tokens; the Keystone
    catalog lists `catalog_entries`. (Its operations are in openapi_ops for the fuzz and bad-input
    suites; the app serves no /openapi.json, as before.)"""
    deps = IdentityDeps(identity=identity, conf=conf, catalog=catalog_entries)
    return family_app(deps, ROUTES, render_fault, authenticator=identity)
