"""Keystone's role grants on projects (/v3/projects/{p}/users/{u}/roles) and /v3/role_assignments.
Admins grant and list; a user may list its own. Groups, domain, system and inherited assignments
do not exist in Cumulo, so filters on them find nothing."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from cumulo import policy
from cumulo.identity import views
from cumulo.identity.api._common import A, caller, caller_owning, flag, identity, param, route
from cumulo.web.http import empty, json_response

policy.register(
    {
        "identity:create_grant": A,
        "identity:check_grant": A,
        "identity:revoke_grant": A,
        "identity:list_grants": A,
        "identity:list_role_assignments": A,
    }
)


def _grant_ids(request: Request) -> tuple[str, str, str]:
    return param(request, "project_id"), param(request, "user_id"), param(request, "role_id")


async def put_grant(request: Request) -> Response:
    await caller(request, "identity:create_grant")
    await identity(request).directory.grant(*_grant_ids(request))
    return empty(204)


async def check_grant(request: Request) -> Response:
    await caller(request, "identity:check_grant")
    await identity(request).directory.check_grant(*_grant_ids(request))
    return empty(204)


async def delete_grant(request: Request) -> Response:
    await caller(request, "identity:revoke_grant")
    await identity(request).directory.revoke_grant(*_grant_ids(request))
    return empty(204)


async def list_grants(request: Request) -> Response:
    pid, uid = param(request, "project_id"), param(request, "user_id")
    await caller_owning(request, "identity:list_grants", lambda c: c.user_id == uid)
    directory = identity(request).directory
    await directory.require_project(pid)
    await directory.require_user(uid)
    rows = await directory.list_assignments(user_id=uid, project_id=pid)
    found = [await directory.require_role(a["role_id"]) for a in rows]
    return json_response(views.collection(request, "roles", [views.role(request, r) for r in found]))


async def list_role_assignments(request: Request) -> Response:
    q = request.query_params
    user_id = q.get("user.id")
    await caller_owning(
        request, "identity:list_role_assignments", lambda c: user_id is not None and c.user_id == user_id
    )
    # Groups, domain, system and inherited assignments do not exist in Cumulo.
    if (
        q.get("group.id")
        or q.get("scope.domain.id")
        or flag(request, "scope.system")
        or q.get("scope.OS-INHERIT:inherited_to")
    ):
        return json_response(views.collection(request, "role_assignments", []))
    rows = await identity(request).directory.list_assignments(
        user_id=user_id,
        project_id=q.get("scope.project.id"),
        role_id=q.get("role.id"),
        effective=bool(flag(request, "effective")),
    )
    names = bool(flag(request, "include_names"))
    items = [views.assignment(request, a, names=names) for a in rows]
    return json_response(views.collection(request, "role_assignments", items))


_GRANT = "/v3/projects/{project_id}/users/{user_id}/roles"
ROUTES: list[BaseRoute] = [
    route(_GRANT, list_grants, "GET"),
    route(_GRANT + "/{role_id}", put_grant, "PUT"),
    route(_GRANT + "/{role_id}", check_grant, "GET", "HEAD"),
    route(_GRANT + "/{role_id}", delete_grant, "DELETE"),
    route("/v3/role_assignments", list_role_assignments, "GET"),
]
