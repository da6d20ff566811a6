"""The Keystone v3 compatible API (a subset), mounted at /identity.

Routes start at "/" (version list) and "/v3". Policy: directory administration needs admin; users
may read themselves, their own project and their own assignments; roles and the domain are
readable by any reader.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from cumulo import errors, policy
from cumulo.context import RequestContext
from cumulo.identity import schemas, views
from cumulo.identity.api_credentials import ROUTES as CREDENTIAL_ROUTES
from cumulo.identity.service import IdentityService
from cumulo.web.http import authenticate, base_url, empty, family_app, json_body, json_response, services_of

if TYPE_CHECKING:
    from cumulo.runtime import Services

A, R = policy.ADMIN, policy.READER
policy.register(
    {
        "identity:validate_token": A,
        "identity:revoke_token": A,
        "identity:list_projects": A,
        "identity:get_project": A,
        "identity:create_project": A,
        "identity:update_project": A,
        "identity:delete_project": A,
        "identity:list_users": A,
        "identity:get_user": A,
        "identity:create_user": A,
        "identity:update_user": A,
        "identity:delete_user": A,
        "identity:change_password": A,
        "identity:list_user_projects": A,
        "identity:list_roles": R,
        "identity:get_role": R,
        "identity:create_role": A,
        "identity:update_role": A,
        "identity:delete_role": A,
        "identity:list_role_inference_rules": R,
        "identity:list_implied_roles": R,
        "identity:get_implied_role": R,
        "identity:list_domains": R,
        "identity:get_domain": R,
        "identity:create_grant": A,
        "identity:check_grant": A,
        "identity:revoke_grant": A,
        "identity:list_grants": A,
        "identity:list_role_assignments": A,
        "identity:list_services": R,
        "identity:list_endpoints": R,
        "identity:list_regions": R,
    }
)

_TITLES = {413: "Request Entity Too Large"}


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


def _identity(request: Request) -> IdentityService:
    return services_of(request).identity


async def _caller(request: Request, rule: str) -> RequestContext:
    ctx = await authenticate(request)
    policy.authorize(ctx, rule)
    return ctx


async def _caller_owning(
    request: Request, rule: str, owns: Callable[[RequestContext], bool]
) -> RequestContext:
    """Authenticate, then enforce `rule` unless the caller owns the target (self-service reads)."""
    ctx = await authenticate(request)
    if not owns(ctx):
        policy.authorize(ctx, rule)
    return ctx


def _flag(request: Request, name: str) -> bool | None:
    """Keystone's reading of boolean query filters: present and not 0/false means true."""
    if name not in request.query_params:
        return None
    return request.query_params[name].strip().lower() not in ("0", "false", "no", "off")


def _param(request: Request, name: str) -> str:
    return str(request.path_params[name])


# -- versions ----------------------------------------------------------------------------------


async def versions(request: Request) -> Response:
    return json_response({"versions": {"values": [views.version_entry(request)]}}, 300)


async def version_v3(request: Request) -> Response:
    return json_response({"version": views.version_entry(request)})


# -- tokens ------------------------------------------------------------------------------------


def _token_response(request: Request, info: Any, status: int, token: str) -> Response:
    s = services_of(request)
    cat = None if "nocatalog" in request.query_params else views.catalog(request, s.catalog, s.conf.region)
    return json_response(views.token(info, cat), status, {"X-Subject-Token": token})


async def issue_token(request: Request) -> Response:
    body = schemas.validate(schemas.TOKEN_ISSUE, await json_body(request))
    auth = body["auth"]
    issued = await _identity(request).authenticate(auth["identity"], auth.get("scope"))
    return _token_response(request, issued.info, 201, issued.token)


async def _subject(request: Request, rule: str) -> tuple[str, Any]:
    ctx = await authenticate(request)
    subject = request.headers.get("x-subject-token")
    if not subject:
        raise errors.Invalid("X-Subject-Token header is required.")
    info = await _identity(request).subject_token(subject)
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
    await _identity(request).revoke_token(subject)
    return empty(204)


async def auth_projects(request: Request) -> Response:
    ctx = await authenticate(request)
    found = await _identity(request).directory.user_projects(ctx.user_id or "")
    items = [views.project(request, p) for p in found if p["enabled"]]
    return json_response(views.collection(request, "projects", items))


async def auth_catalog(request: Request) -> Response:
    ctx = await authenticate(request)
    if ctx.project_id is None:
        raise errors.Forbidden("A project-scoped token is required to produce a service catalog.")
    s = services_of(request)
    return json_response(
        views.collection(request, "catalog", views.catalog(request, s.catalog, s.conf.region))
    )


async def auth_domains(request: Request) -> Response:
    await authenticate(request)
    # Cumulo has no domain-scoped role assignments.
    return json_response(views.collection(request, "domains", []))


async def auth_system(request: Request) -> Response:
    await authenticate(request)
    return json_response(views.collection(request, "system", []))


# -- domains -----------------------------------------------------------------------------------


async def list_domains(request: Request) -> Response:
    await _caller(request, "identity:list_domains")
    found = await _identity(request).directory.list_domains(
        request.query_params.get("name"), _flag(request, "enabled")
    )
    return json_response(views.collection(request, "domains", [views.domain(request, d) for d in found]))


async def get_domain(request: Request) -> Response:
    await _caller(request, "identity:get_domain")
    d = await _identity(request).directory.get_domain(_param(request, "domain_id"))
    return json_response({"domain": views.domain(request, d)})


# -- projects ----------------------------------------------------------------------------------


async def list_projects(request: Request) -> Response:
    await _caller(request, "identity:list_projects")
    q = request.query_params
    if _flag(request, "is_domain"):
        return json_response(views.collection(request, "projects", []))
    filters: dict[str, Any] = {
        "name": q.get("name"),
        "domain_id": q.get("domain_id"),
        "enabled": _flag(request, "enabled"),
    }
    if q.get("parent_id") not in (None, filters["domain_id"] or "default"):
        return json_response(views.collection(request, "projects", []))  # no nested projects exist
    if q.get("tags"):
        filters["tags"] = q["tags"].split(",")
    found = await _identity(request).directory.list_projects(filters)
    return json_response(views.collection(request, "projects", [views.project(request, p) for p in found]))


async def create_project(request: Request) -> Response:
    await _caller(request, "identity:create_project")
    body = schemas.validate(schemas.PROJECT_CREATE, await json_body(request))["project"]
    fields, extra = schemas.split_extras("project", body, schemas.PROJECT_KNOWN)
    fields["extra"] = extra
    domain_id = fields.get("domain_id") or "default"
    if fields.get("parent_id") not in (None, domain_id):
        raise errors.Invalid(
            "Invalid input for field 'project/parent_id': Cumulo projects are flat; "
            "the parent must be the project's domain."
        )
    created = await _identity(request).directory.create_project(fields)
    return json_response({"project": views.project(request, created)}, 201)


async def get_project(request: Request) -> Response:
    pid = _param(request, "project_id")
    await _caller_owning(request, "identity:get_project", lambda c: c.project_id == pid)
    found = await _identity(request).directory.require_project(pid)
    return json_response({"project": views.project(request, found)})


async def update_project(request: Request) -> Response:
    await _caller(request, "identity:update_project")
    body = schemas.validate(schemas.PROJECT_UPDATE, await json_body(request))["project"]
    fields, extra = schemas.split_extras("project", body, schemas.PROJECT_KNOWN, schemas.PROJECT_FIXED)
    changes = {k: v for k, v in fields.items() if k in ("name", "description", "enabled", "tags")}
    if extra:
        changes["extra"] = extra
    if "description" in changes and changes["description"] is None:
        changes["description"] = ""
    updated = await _identity(request).directory.update_project(_param(request, "project_id"), changes)
    return json_response({"project": views.project(request, updated)})


async def delete_project(request: Request) -> Response:
    await _caller(request, "identity:delete_project")
    await _identity(request).directory.delete_project(_param(request, "project_id"))
    return empty(204)


# -- users -------------------------------------------------------------------------------------


async def list_users(request: Request) -> Response:
    await _caller(request, "identity:list_users")
    q = request.query_params
    filters = {"name": q.get("name"), "domain_id": q.get("domain_id"), "enabled": _flag(request, "enabled")}
    found = await _identity(request).directory.list_users(filters)
    return json_response(views.collection(request, "users", [views.user(request, u) for u in found]))


async def _check_default_project(request: Request, fields: dict[str, Any]) -> None:
    pid = fields.get("default_project_id")
    if pid is not None and await _identity(request).get_project(pid) is None:
        raise errors.Invalid(
            f"Invalid input for field 'user/default_project_id': Could not find project: {pid}."
        )


async def create_user(request: Request) -> Response:
    await _caller(request, "identity:create_user")
    body = schemas.validate(schemas.USER_CREATE, await json_body(request))["user"]
    fields, extra = schemas.split_extras("user", body, schemas.USER_KNOWN)
    fields["extra"] = extra
    await _check_default_project(request, fields)
    created = await _identity(request).directory.create_user(fields)
    return json_response({"user": views.user(request, created)}, 201)


async def get_user(request: Request) -> Response:
    uid = _param(request, "user_id")
    await _caller_owning(request, "identity:get_user", lambda c: c.user_id == uid)
    found = await _identity(request).directory.require_user(uid)
    return json_response({"user": views.user(request, found)})


async def update_user(request: Request) -> Response:
    await _caller(request, "identity:update_user")
    body = schemas.validate(schemas.USER_UPDATE, await json_body(request))["user"]
    fields, extra = schemas.split_extras("user", body, schemas.USER_KNOWN, schemas.USER_FIXED)
    await _check_default_project(request, fields)
    changes = {k: v for k, v in fields.items() if k != "options"}
    if extra:
        changes["extra"] = extra
    updated = await _identity(request).directory.update_user(_param(request, "user_id"), changes)
    return json_response({"user": views.user(request, updated)})


async def delete_user(request: Request) -> Response:
    await _caller(request, "identity:delete_user")
    await _identity(request).directory.delete_user(_param(request, "user_id"))
    return empty(204)


async def change_password(request: Request) -> Response:
    uid = _param(request, "user_id")
    ctx = await authenticate(request)
    if ctx.user_id != uid:
        # Only the user knows the original password; admins reset passwords with PATCH.
        raise errors.Forbidden(
            "You are not authorized to perform the requested action: identity:change_password."
        )
    fields = schemas.validate(schemas.PASSWORD_CHANGE, await json_body(request))["user"]
    await _identity(request).directory.change_password(uid, fields["original_password"], fields["password"])
    return empty(204)


async def user_projects(request: Request) -> Response:
    uid = _param(request, "user_id")
    await _caller_owning(request, "identity:list_user_projects", lambda c: c.user_id == uid)
    directory = _identity(request).directory
    await directory.require_user(uid)
    found = await directory.user_projects(uid)
    return json_response(views.collection(request, "projects", [views.project(request, p) for p in found]))


# -- roles -------------------------------------------------------------------------------------


async def list_roles(request: Request) -> Response:
    await _caller(request, "identity:list_roles")
    if request.query_params.get("domain_id"):
        return json_response(views.collection(request, "roles", []))  # no domain-specific roles
    found = await _identity(request).directory.list_roles(request.query_params.get("name"))
    return json_response(views.collection(request, "roles", [views.role(request, r) for r in found]))


async def create_role(request: Request) -> Response:
    await _caller(request, "identity:create_role")
    fields = schemas.validate(schemas.ROLE_CREATE, await json_body(request))["role"]
    created = await _identity(request).directory.create_role(fields)
    return json_response({"role": views.role(request, created)}, 201)


async def get_role(request: Request) -> Response:
    await _caller(request, "identity:get_role")
    found = await _identity(request).directory.require_role(_param(request, "role_id"))
    return json_response({"role": views.role(request, found)})


async def update_role(request: Request) -> Response:
    await _caller(request, "identity:update_role")
    fields = schemas.validate(schemas.ROLE_UPDATE, await json_body(request))["role"]
    updated = await _identity(request).directory.update_role(_param(request, "role_id"), fields)
    return json_response({"role": views.role(request, updated)})


async def delete_role(request: Request) -> Response:
    await _caller(request, "identity:delete_role")
    await _identity(request).directory.delete_role(_param(request, "role_id"))
    return empty(204)


async def _inferences(request: Request) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return await _identity(request).directory.role_inferences()


async def list_role_inferences(request: Request) -> Response:
    await _caller(request, "identity:list_role_inference_rules")
    items = [views.role_inference(request, p, i) for p, i in await _inferences(request)]
    return json_response(views.collection(request, "role_inferences", items))


async def implied_roles(request: Request) -> Response:
    await _caller(request, "identity:list_implied_roles")
    prior = await _identity(request).directory.require_role(_param(request, "prior_id"))
    implied = next((i for p, i in await _inferences(request) if p["id"] == prior["id"]), [])
    body = {
        "role_inference": views.role_inference(request, prior, implied),
        "links": {"self": str(request.url)},
    }
    return json_response(body)


async def get_implied_role(request: Request) -> Response:
    await _caller(request, "identity:get_implied_role")
    prior_id, implied_id = _param(request, "prior_id"), _param(request, "implied_id")
    for p, implied in await _inferences(request):
        match = next((r for r in implied if r["id"] == implied_id), None)
        if p["id"] == prior_id and match is not None:
            if request.method == "HEAD":
                return empty(204)
            body = {"prior_role": views.role_ref(request, p), "implies": views.role_ref(request, match)}
            return json_response({"role_inference": body, "links": {"self": str(request.url)}})
    raise errors.NotFound(f"{prior_id} does not imply {implied_id}.")


# -- grants and assignments --------------------------------------------------------------------


def _grant_ids(request: Request) -> tuple[str, str, str]:
    return _param(request, "project_id"), _param(request, "user_id"), _param(request, "role_id")


async def put_grant(request: Request) -> Response:
    await _caller(request, "identity:create_grant")
    await _identity(request).directory.grant(*_grant_ids(request))
    return empty(204)


async def check_grant(request: Request) -> Response:
    await _caller(request, "identity:check_grant")
    await _identity(request).directory.check_grant(*_grant_ids(request))
    return empty(204)


async def delete_grant(request: Request) -> Response:
    await _caller(request, "identity:revoke_grant")
    await _identity(request).directory.revoke_grant(*_grant_ids(request))
    return empty(204)


async def list_grants(request: Request) -> Response:
    pid, uid = _param(request, "project_id"), _param(request, "user_id")
    await _caller_owning(request, "identity:list_grants", lambda c: c.user_id == uid)
    directory = _identity(request).directory
    await directory.require_project(pid)
    await directory.require_user(uid)
    rows = await directory.list_assignments(user_id=uid, project_id=pid)
    found = [await directory.require_role(a["role_id"]) for a in rows]
    return json_response(views.collection(request, "roles", [views.role(request, r) for r in found]))


async def list_role_assignments(request: Request) -> Response:
    q = request.query_params
    user_id = q.get("user.id")
    await _caller_owning(
        request, "identity:list_role_assignments", lambda c: user_id is not None and c.user_id == user_id
    )
    # Groups, domain, system and inherited assignments do not exist in Cumulo.
    if (
        q.get("group.id")
        or q.get("scope.domain.id")
        or _flag(request, "scope.system")
        or q.get("scope.OS-INHERIT:inherited_to")
    ):
        return json_response(views.collection(request, "role_assignments", []))
    rows = await _identity(request).directory.list_assignments(
        user_id=user_id,
        project_id=q.get("scope.project.id"),
        role_id=q.get("role.id"),
        effective=bool(_flag(request, "effective")),
    )
    names = bool(_flag(request, "include_names"))
    items = [views.assignment(request, a, names=names) for a in rows]
    return json_response(views.collection(request, "role_assignments", items))


# -- catalog administration (read-only: the catalog is what this build serves) -----------------


async def list_services(request: Request) -> Response:
    await _caller(request, "identity:list_services")
    items = views.services(request, services_of(request).catalog)
    if request.query_params.get("type"):
        items = [s for s in items if s["type"] == request.query_params["type"]]
    return json_response(views.collection(request, "services", items))


async def get_service(request: Request) -> Response:
    await _caller(request, "identity:list_services")
    sid = _param(request, "service_id")
    for item in views.services(request, services_of(request).catalog):
        if item["id"] == sid:
            return json_response({"service": item})
    raise errors.NotFound(f"Could not find service: {sid}.")


def _all_endpoints(request: Request) -> list[dict[str, Any]]:
    s = services_of(request)
    return views.endpoints(request, s.catalog, s.conf.region)


async def list_endpoints(request: Request) -> Response:
    await _caller(request, "identity:list_endpoints")
    items = _all_endpoints(request)
    for key in ("interface", "service_id", "region_id"):
        if request.query_params.get(key):
            items = [e for e in items if e[key] == request.query_params[key]]
    return json_response(views.collection(request, "endpoints", items))


async def get_endpoint(request: Request) -> Response:
    await _caller(request, "identity:list_endpoints")
    eid = _param(request, "endpoint_id")
    for item in _all_endpoints(request):
        if item["id"] == eid:
            return json_response({"endpoint": item})
    raise errors.NotFound(f"Could not find endpoint: {eid}.")


def _region(request: Request) -> dict[str, Any]:
    region = services_of(request).conf.region
    return {
        "id": region,
        "description": "",
        "parent_region_id": None,
        "links": views.link(request, f"/v3/regions/{region}"),
    }


async def list_regions(request: Request) -> Response:
    await _caller(request, "identity:list_regions")
    return json_response(views.collection(request, "regions", [_region(request)]))


async def get_region(request: Request) -> Response:
    await _caller(request, "identity:list_regions")
    region = _region(request)
    if _param(request, "region_id") != region["id"]:
        raise errors.NotFound(f"Could not find region: {_param(request, 'region_id')}.")
    return json_response({"region": region})


Handler = Callable[[Request], Awaitable[Response]]


def _r(path: str, endpoint: Handler, *methods: str) -> Route:
    return Route(path, endpoint, methods=list(methods))


ROUTES: list[BaseRoute] = [
    _r("/", versions, "GET"),
    _r("/v3", version_v3, "GET"),
    _r("/v3/", version_v3, "GET"),
    _r("/v3/auth/tokens", issue_token, "POST"),
    _r("/v3/auth/tokens", validate_token, "GET", "HEAD"),
    _r("/v3/auth/tokens", revoke_token, "DELETE"),
    _r("/v3/auth/projects", auth_projects, "GET"),
    _r("/v3/auth/catalog", auth_catalog, "GET"),
    _r("/v3/auth/domains", auth_domains, "GET"),
    _r("/v3/auth/system", auth_system, "GET"),
    _r("/v3/domains", list_domains, "GET"),
    _r("/v3/domains/{domain_id}", get_domain, "GET"),
    _r("/v3/projects", list_projects, "GET"),
    _r("/v3/projects", create_project, "POST"),
    _r("/v3/projects/{project_id}", get_project, "GET"),
    _r("/v3/projects/{project_id}", update_project, "PATCH"),
    _r("/v3/projects/{project_id}", delete_project, "DELETE"),
    _r("/v3/projects/{project_id}/users/{user_id}/roles", list_grants, "GET"),
    _r("/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", put_grant, "PUT"),
    _r("/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", check_grant, "GET", "HEAD"),
    _r("/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", delete_grant, "DELETE"),
    _r("/v3/users", list_users, "GET"),
    _r("/v3/users", create_user, "POST"),
    _r("/v3/users/{user_id}", get_user, "GET"),
    _r("/v3/users/{user_id}", update_user, "PATCH"),
    _r("/v3/users/{user_id}", delete_user, "DELETE"),
    _r("/v3/users/{user_id}/projects", user_projects, "GET"),
    _r("/v3/users/{user_id}/password", change_password, "POST"),
    _r("/v3/roles", list_roles, "GET"),
    _r("/v3/roles", create_role, "POST"),
    _r("/v3/roles/{role_id}", get_role, "GET"),
    _r("/v3/roles/{role_id}", update_role, "PATCH"),
    _r("/v3/roles/{role_id}", delete_role, "DELETE"),
    _r("/v3/roles/{prior_id}/implies", implied_roles, "GET"),
    _r("/v3/roles/{prior_id}/implies/{implied_id}", get_implied_role, "GET", "HEAD"),
    _r("/v3/role_inferences", list_role_inferences, "GET"),
    _r("/v3/role_assignments", list_role_assignments, "GET"),
    _r("/v3/services", list_services, "GET"),
    _r("/v3/services/{service_id}", get_service, "GET"),
    _r("/v3/endpoints", list_endpoints, "GET"),
    _r("/v3/endpoints/{endpoint_id}", get_endpoint, "GET"),
    _r("/v3/regions", list_regions, "GET"),
    _r("/v3/regions/{region_id}", get_region, "GET"),
]


def make_app(services: Services) -> ASGIApp:
    return family_app(services, ROUTES + CREDENTIAL_ROUTES, render_fault)
