"""Keystone's /v3/projects: admins administer projects; a user may read its token's project.
Cumulo's projects are flat: a project's parent is its domain."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo import errors, policy
from cumulo.identity import schemas, views
from cumulo.identity.api._common import A, caller, caller_owning, flag, identity, param, route
from cumulo.web.http import empty, json_body, json_response

policy.register(
    {
        "identity:list_projects": A,
        "identity:get_project": A,
        "identity:create_project": A,
        "identity:update_project": A,
        "identity:delete_project": A,
    }
)


async def list_projects(request: Request) -> Response:
    await caller(request, "identity:list_projects")
    q = request.query_params
    if flag(request, "is_domain"):
        return json_response(views.collection(request, "projects", []))
    filters: dict[str, Any] = {
        "name": q.get("name"),
        "domain_id": q.get("domain_id"),
        "enabled": flag(request, "enabled"),
    }
    if q.get("parent_id") not in (None, filters["domain_id"] or "default"):
        return json_response(views.collection(request, "projects", []))  # no nested projects exist
    if q.get("tags"):
        filters["tags"] = q["tags"].split(",")
    found = await identity(request).directory.list_projects(filters)
    return json_response(views.collection(request, "projects", [views.project(request, p) for p in found]))


async def create_project(request: Request) -> Response:
    await caller(request, "identity:create_project")
    body = schemas.validate(schemas.PROJECT_CREATE, await json_body(request))["project"]
    fields, extra = schemas.split_extras("project", body, schemas.PROJECT_KNOWN)
    fields["extra"] = extra
    domain_id = fields.get("domain_id") or "default"
    if fields.get("parent_id") not in (None, domain_id):
        raise errors.Invalid(
            "Invalid input for field 'project/parent_id': Cumulo projects are flat; "
            "the parent must be the project's domain."
        )
    created = await identity(request).directory.create_project(fields)
    return json_response({"project": views.project(request, created)}, 201)


async def get_project(request: Request) -> Response:
    pid = param(request, "project_id")
    await caller_owning(request, "identity:get_project", lambda c: c.project_id == pid)
    found = await identity(request).directory.require_project(pid)
    return json_response({"project": views.project(request, found)})


async def update_project(request: Request) -> Response:
    await caller(request, "identity:update_project")
    body = schemas.validate(schemas.PROJECT_UPDATE, await json_body(request))["project"]
    fields, extra = schemas.split_extras("project", body, schemas.PROJECT_KNOWN, schemas.PROJECT_FIXED)
    changes = {k: v for k, v in fields.items() if k in ("name", "description", "enabled", "tags")}
    if extra:
        changes["extra"] = extra
    if "description" in changes and changes["description"] is None:
        changes["description"] = ""
    updated = await identity(request).directory.update_project(param(request, "project_id"), changes)
    return json_response({"project": views.project(request, updated)})


async def delete_project(request: Request) -> Response:
    await caller(request, "identity:delete_project")
    await identity(request).directory.delete_project(param(request, "project_id"))
    return empty(204)


ROUTES: list[BaseRoute] = [
    route("/v3/projects", list_projects, "GET"),
    route("/v3/projects", create_project, "POST"),
    route("/v3/projects/{project_id}", get_project, "GET"),
    route("/v3/projects/{project_id}", update_project, "PATCH"),
    route("/v3/projects/{project_id}", delete_project, "DELETE"),
]
