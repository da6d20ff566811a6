"""Keystone's /v3/auth: issue, validate and revoke tokens, and what a token reaches.

What a token reaches: its projects, catalog, domains and system."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo import errors, policy
from cumulo.identity import schemas, views
from cumulo.identity.api._common import A, catalog_entries, identity, region, route
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register({"identity:validate_token": A, "identity:revoke_token": A})


def _token_response(request: Request, info: Any, status: int, token: str) -> Response:
    cat = None if "nocatalog" in request.query_params else views.catalog(request, catalog_entries(request), region(request),
                                                                        info.project_id)
    return json_response(views.token(info, cat), status, {"X-Subject-Token": token})


async def issue_token(request: Request) -> Response:
    body = schemas.validate(schemas.TOKEN_ISSUE, await json_body(request))
    auth = body["auth"]
    issued = await identity(request).authenticate(auth["identity"], auth.get("scope"))
    return _token_response(request, issued.info, 201, issued.token)


async def _subject(request: Request, rule: str) -> tuple[str, Any]:
    ctx = await authenticate(request)
    subject = request.headers.get("x-subject-token")
    if not subject:
        raise errors.Invalid("X-Subject-Token header is required.")
    info = await identity(request).subject_token(subject)
    if info.user_id != ctx.user_id:
        policy.authorize(ctx, rule)
    return subject, info


async def validate_token(request: Request) -> Response:
    subject, info = await _subject(request, "identity:validate_token")
    if request.method == "HEAD":
        return empty(200, {"X-Subject-Token": subject})
    return _token_response(request, info, 200, subject)


async def revoke_token(request: Request) -> Response:
    subject, _ = await _subject(request, "identity:revoke_token")
    await identity(request).revoke_token(subject)
    return empty(204)


async def auth_projects(request: Request) -> Response:
    ctx = await authenticate(request)
    found = await identity(request).directory.user_projects(ctx.user_id or "")
    items = [views.project(request, p) for p in found if p["enabled"]]
    return json_response(views.collection(request, "projects", items))


async def auth_catalog(request: Request) -> Response:
    ctx = await authenticate(request)
    if ctx.project_id is None:
        raise errors.Forbidden("A project-scoped token is required to produce a service catalog.")
    return json_response(
        views.collection(request, "catalog", views.catalog(request, catalog_entries(request), region(request),
                                                           ctx.project_id))
    )


async def auth_domains(request: Request) -> Response:
    await authenticate(request)
    # Cumulo has no domain-scoped role assignments.
    return json_response(views.collection(request, "domains", []))


async def auth_system(request: Request) -> Response:
    await authenticate(request)
    return json_response(views.collection(request, "system", []))


ROUTES: list[BaseRoute] = [
    route("/v3/auth/tokens", issue_token, "POST"),
    route("/v3/auth/tokens", validate_token, "GET", "HEAD"),
    route("/v3/auth/tokens", revoke_token, "DELETE"),
    route("/v3/auth/projects", auth_projects, "GET"),
    route("/v3/auth/catalog", auth_catalog, "GET"),
    route("/v3/auth/domains", auth_domains, "GET"),
    route("/v3/auth/system", auth_system, "GET"),
]
