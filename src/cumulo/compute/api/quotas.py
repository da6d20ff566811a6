"""Nova limits, os-quota-sets (show, detail, defaults, update, delete; per project or, with
?user_id=, per user in the project) and os-quota-class-sets."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api._common import Field
from cumulo.compute.api.deps import ComputeDeps, services_of
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.api.schemas import quota_sets as schemas
from cumulo.compute.api.schemas._base import bool_from_string, validate
from cumulo.context import RequestContext
from cumulo.errors import Forbidden, Invalid
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register(
    {
        "os_compute_api:limits": policy.READER,
        "os_compute_api:limits:other_project": policy.ADMIN,
        "os_compute_api:os-quota-sets:show": policy.READER,
        "os_compute_api:os-quota-sets:detail": policy.READER,
        "os_compute_api:os-quota-sets:defaults": policy.READER,
        # Reading another project's quotas.
        "os_compute_api:os-quota-sets:other_project": policy.ADMIN,
        "os_compute_api:os-quota-sets:update": policy.ADMIN,
        "os_compute_api:os-quota-sets:delete": policy.ADMIN,
        "os_compute_api:os-quota-class-sets:show": policy.ADMIN,
        "os_compute_api:os-quota-class-sets:update": policy.ADMIN,
    }
)

V2_75 = v("2.75")


def _lim(name: str) -> Any:
    return lambda d: d["limit"][name]


def _used(name: str) -> Any:
    return lambda d: d["used"].get(name, 0)


# GET /limits "absolute": Nova's names for the quota resources, by microversion.
ABSOLUTE = (
    Field("maxTotalRAMSize", _lim("ram")),
    Field("maxTotalInstances", _lim("instances")),
    Field("maxTotalCores", _lim("cores")),
    Field("maxTotalKeypairs", _lim("key_pairs")),
    Field("maxServerMeta", _lim("metadata_items")),
    Field("maxImageMeta", _lim("metadata_items"), max=v("2.38")),
    Field("maxPersonality", _lim("injected_files"), max=v("2.56")),
    Field("maxPersonalitySize", _lim("injected_file_content_bytes"), max=v("2.56")),
    Field("maxTotalFloatingIps", _lim("floating_ips"), max=v("2.35")),
    Field("maxSecurityGroups", _lim("security_groups"), max=v("2.35")),
    Field("maxSecurityGroupRules", _lim("security_group_rules"), max=v("2.35")),
    Field("maxServerGroups", _lim("server_groups")),
    Field("maxServerGroupMembers", _lim("server_group_members")),
    Field("totalRAMUsed", _used("ram")),
    Field("totalCoresUsed", _used("cores")),
    Field("totalInstancesUsed", _used("instances")),
    Field("totalFloatingIpsUsed", _used("floating_ips"), max=v("2.35")),
    Field("totalSecurityGroupsUsed", _used("security_groups"), max=v("2.35")),
    Field("totalServerGroupsUsed", _used("server_groups")),
)


async def limits(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:limits")
    version = _common.version(request)
    _common.check_query(request, schemas.LIMITS_QUERY, strict=version >= V2_75)
    project_id = ctx.project_id or ""
    if "tenant_id" in request.query_params:
        policy.authorize(ctx, "os_compute_api:limits:other_project")
        project_id = request.query_params["tenant_id"]
    limit, used = await _common.quota_service(request).limits_and_usage(project_id)
    data = {"limit": limit, "used": used}
    return json_response({"limits": {"rate": [], "absolute": _common.render(ABSOLUTE, data, version)}})


# --- os-quota-sets ------------------------------------------------------------------------------

def _quota_body(values: dict[str, Any], version: Version, ident: str | None, table: Any = schemas.QUOTA_SET_RESOURCES) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ident} if ident is not None else {}
    for name in schemas.resources_at(table, version):
        out[name] = values[name]
    return out


async def _authorize_project(request: Request, ctx: RequestContext, rule: str, project_id: str) -> ComputeDeps:
    """Policy for this project (another project's quotas need admin), then the project must exist."""
    policy.authorize(ctx, rule)
    if project_id != ctx.project_id and not policy.allowed(ctx, "os_compute_api:os-quota-sets:other_project"):
        raise Forbidden(f"Policy doesn't allow {rule} to be performed.")
    s = services_of(request)
    await _verify_project(s, ctx, project_id)
    return s


async def _verify_project(s: ComputeDeps, ctx: RequestContext, project_id: str) -> None:
    """Nova asks Keystone whether the project exists; the caller's own (token-scoped) one does."""
    if project_id != ctx.project_id and await s.identity.get_project(project_id) is None:
        raise Invalid(f"Project ID {project_id} is not a valid project.")


def _user_id(request: Request) -> str | None:
    """The `user_id` query parameter, as Nova reads it: the first non-blank value, else None."""
    user_id = next((u for u in request.query_params.getlist("user_id") if u), None)
    if user_id is not None and len(user_id) > 255:
        raise Invalid("Invalid input for query parameters user_id. Value: too long; at most 255 characters.")
    return user_id


async def quota_show(request: Request) -> Response:
    ctx = await authenticate(request)
    version = _common.version(request)
    _common.check_query(request, schemas.QUOTA_QUERY, strict=version >= V2_75)
    project_id = request.path_params["project_id"]
    user_id = _user_id(request)
    await _authorize_project(request, ctx, "os_compute_api:os-quota-sets:show", project_id)
    values = await _common.quota_service(request).limits(project_id, user_id)
    return json_response({"quota_set": _quota_body(values, version, project_id)})


async def quota_detail(request: Request) -> Response:
    ctx = await authenticate(request)
    version = _common.version(request)
    _common.check_query(request, schemas.QUOTA_QUERY, strict=version >= V2_75)
    project_id = request.path_params["project_id"]
    user_id = _user_id(request)
    await _authorize_project(request, ctx, "os_compute_api:os-quota-sets:detail", project_id)
    values, used = await _common.quota_service(request).limits_and_usage(project_id, user_id)
    detail = {k: {"in_use": used.get(k, 0), "limit": val, "reserved": 0} for k, val in values.items()}
    return json_response({"quota_set": _quota_body(detail, version, project_id)})


async def quota_defaults(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-quota-sets:defaults")
    project_id = request.path_params["project_id"]
    s = services_of(request)
    await _verify_project(s, ctx, project_id)
    values = await _common.quota_service(request).class_limits()
    return json_response({"quota_set": _quota_body(values, _common.version(request), project_id)})


async def quota_update(request: Request) -> Response:
    ctx = await authenticate(request)
    version = _common.version(request)
    _common.check_query(request, schemas.QUOTA_QUERY, strict=version >= V2_75)
    project_id = request.path_params["project_id"]
    user_id = _user_id(request)
    await _authorize_project(request, ctx, "os_compute_api:os-quota-sets:update", project_id)
    body = await json_body(request)
    validate(schemas.quota_set_update_for(version), body)
    requested = dict(body["quota_set"])
    force = bool_from_string(requested.pop("force", False))
    # Unless forced, a limit stays within Nova's settable range (-1 is unlimited).
    values = await _common.quota_service(request).update(project_id, user_id, requested, force=force)
    return json_response({"quota_set": _quota_body(values, version, None)})


async def quota_delete(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-quota-sets:delete")
    version = _common.version(request)
    _common.check_query(request, schemas.QUOTA_QUERY, strict=version >= V2_75)
    user_id = _user_id(request)
    await _common.quota_service(request).delete(request.path_params["project_id"], user_id)
    return empty(202)


# --- os-quota-class-sets ------------------------------------------------------------------------

def _class_name(request: Request) -> str:
    name: str = request.path_params["class_name"]
    if len(name) > 255:
        raise Invalid("quota_class_name has more than 255 characters.")
    return name


async def quota_class_show(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-quota-class-sets:show")
    name = _class_name(request)
    values = await _common.quota_service(request).class_limits(name)
    body = _quota_body(values, _common.version(request), name, schemas.QUOTA_CLASS_RESOURCES)
    return json_response({"quota_class_set": body})


async def quota_class_update(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-quota-class-sets:update")
    version = _common.version(request)
    name = _class_name(request)
    body = await json_body(request)
    validate(schemas.quota_class_update_for(version), body)
    values = await _common.quota_service(request).update_class(name, body["quota_class_set"])
    return json_response({"quota_class_set": _quota_body(values, version, None, schemas.QUOTA_CLASS_RESOURCES)})


ROUTES = [
    Route("/v2.1/limits", limits, methods=["GET"]),
    Route("/v2.1/os-quota-sets/{project_id}", quota_show, methods=["GET"]),
    Route("/v2.1/os-quota-sets/{project_id}", quota_update, methods=["PUT"]),
    Route("/v2.1/os-quota-sets/{project_id}", quota_delete, methods=["DELETE"]),
    Route("/v2.1/os-quota-sets/{project_id}/defaults", quota_defaults, methods=["GET"]),
    Route("/v2.1/os-quota-sets/{project_id}/detail", quota_detail, methods=["GET"]),
    Route("/v2.1/os-quota-class-sets/{class_name}", quota_class_show, methods=["GET"]),
    Route("/v2.1/os-quota-class-sets/{class_name}", quota_class_update, methods=["PUT"]),
]
