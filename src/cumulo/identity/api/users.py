"""Keystone's /v3/users: admins administer users; a user reads itself and changes its password.

A user may also list its own projects."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo import errors, policy
from cumulo.identity import schemas, views
from cumulo.identity.api._common import A, caller, caller_owning, flag, identity, param, route
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register(
    {
        "identity:list_users": A,
        "identity:get_user": A,
        "identity:create_user": A,
        "identity:update_user": A,
        "identity:delete_user": A,
        "identity:change_password": A,
        "identity:list_user_projects": A,
    }
)


async def list_users(request: Request) -> Response:
    await caller(request, "identity:list_users")
    q = request.query_params
    filters = {"name": q.get("name"), "domain_id": q.get("domain_id"), "enabled": flag(request, "enabled")}
    found = await identity(request).directory.list_users(filters)
    return json_response(views.collection(request, "users", [views.user(request, u) for u in found]))


async def _check_default_project(request: Request, fields: dict[str, Any]) -> None:
    pid = fields.get("default_project_id")
    if pid is not None and await identity(request).get_project(pid) is None:
        raise errors.Invalid(
            f"Invalid input for field 'user/default_project_id': Could not find project: {pid}."
        )


async def create_user(request: Request) -> Response:
    await caller(request, "identity:create_user")
    body = schemas.validate(schemas.USER_CREATE, await json_body(request))["user"]
    fields, extra = schemas.split_extras("user", body, schemas.USER_KNOWN)
    fields["extra"] = extra
    await _check_default_project(request, fields)
    created = await identity(request).directory.create_user(fields)
    return json_response({"user": views.user(request, created)}, 201)


async def get_user(request: Request) -> Response:
    uid = param(request, "user_id")
    await caller_owning(request, "identity:get_user", lambda c: c.user_id == uid)
    found = await identity(request).directory.require_user(uid)
    return json_response({"user": views.user(request, found)})


async def update_user(request: Request) -> Response:
    await caller(request, "identity:update_user")
    body = schemas.validate(schemas.USER_UPDATE, await json_body(request))["user"]
    fields, extra = schemas.split_extras("user", body, schemas.USER_KNOWN, schemas.USER_FIXED)
    await _check_default_project(request, fields)
    changes = {k: v for k, v in fields.items() if k != "options"}
    if extra:
        changes["extra"] = extra
    updated = await identity(request).directory.update_user(param(request, "user_id"), changes)
    return json_response({"user": views.user(request, updated)})


async def delete_user(request: Request) -> Response:
    await caller(request, "identity:delete_user")
    await identity(request).directory.delete_user(param(request, "user_id"))
    return empty(204)


async def change_password(request: Request) -> Response:
    uid = param(request, "user_id")
    ctx = await authenticate(request)
    if ctx.user_id != uid:
        # Only the user knows the original password; admins reset passwords with PATCH.
        raise errors.Forbidden(
            "You are not authorized to perform the requested action: identity:change_password."
        )
    fields = schemas.validate(schemas.PASSWORD_CHANGE, await json_body(request))["user"]
    await identity(request).directory.change_password(uid, fields["original_password"], fields["password"])
    return empty(204)


async def user_projects(request: Request) -> Response:
    uid = param(request, "user_id")
    await caller_owning(request, "identity:list_user_projects", lambda c: c.user_id == uid)
    directory = identity(request).directory
    await directory.require_user(uid)
    found = await directory.user_projects(uid)
    return json_response(views.collection(request, "projects", [views.project(request, p) for p in found]))


ROUTES: list[BaseRoute] = [
    route("/v3/users", list_users, "GET"),
    route("/v3/users", create_user, "POST"),
    route("/v3/users/{user_id}", get_user, "GET"),
    route("/v3/users/{user_id}", update_user, "PATCH"),
    route("/v3/users/{user_id}", delete_user, "DELETE"),
    route("/v3/users/{user_id}/projects", user_projects, "GET"),
    route("/v3/users/{user_id}/password", change_password, "POST"),
]
