"""Nova flavors API: /flavors (+detail), os-flavor-manage, os-extra_specs and os-flavor-access."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api._common import Field
from cumulo.compute.api.deps import services_of
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas import flavors as schemas
from cumulo.compute.api.schemas._base import NAME_ERROR, bool_from_string, validate
from cumulo.compute.service import flavors as service
from cumulo.context import RequestContext
from cumulo.errors import Invalid, NotFound
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register(
    {
        "os_compute_api:flavors:index": policy.READER,
        "os_compute_api:flavors:show": policy.READER,
        "os_compute_api:os-flavor-manage:create": policy.ADMIN,
        "os_compute_api:os-flavor-manage:update": policy.ADMIN,
        "os_compute_api:os-flavor-manage:delete": policy.ADMIN,
        "os_compute_api:os-flavor-extra-specs:index": policy.READER,
        "os_compute_api:os-flavor-extra-specs:show": policy.READER,
        "os_compute_api:os-flavor-extra-specs:create": policy.ADMIN,
        "os_compute_api:os-flavor-extra-specs:update": policy.ADMIN,
        "os_compute_api:os-flavor-extra-specs:delete": policy.ADMIN,
        "os_compute_api:os-flavor-access": policy.ADMIN,
        "os_compute_api:os-flavor-access:add_tenant_access": policy.ADMIN,
        "os_compute_api:os-flavor-access:remove_tenant_access": policy.ADMIN,
    }
)

V2_55, V2_61, V2_75 = v("2.55"), v("2.61"), v("2.75")

# GET /flavors
BRIEF = (
    Field("id", lambda f: f["flavorid"]),
    Field("name", lambda f: f["name"]),
    Field("links", lambda f: f["links"]),
    Field("description", lambda f: f["description"], min=V2_55),
)

# GET /flavors/detail, /flavors/{id}, POST and PUT responses.
DETAIL = (
    Field("id", lambda f: f["flavorid"]),
    Field("name", lambda f: f["name"]),
    Field("ram", lambda f: f["memory_mb"]),
    Field("disk", lambda f: f["root_gb"]),
    # Nova renders swap 0 as "" until 2.75.
    Field("swap", lambda f: f["swap"] or "", max=v("2.74")),
    Field("swap", lambda f: f["swap"] or 0, min=V2_75),
    Field("OS-FLV-EXT-DATA:ephemeral", lambda f: f["ephemeral_gb"]),
    Field("OS-FLV-DISABLED:disabled", lambda f: bool(f["disabled"])),
    Field("vcpus", lambda f: f["vcpus"]),
    Field("os-flavor-access:is_public", lambda f: bool(f["is_public"])),
    Field("rxtx_factor", lambda f: f["rxtx_factor"] or ""),
    Field("links", lambda f: f["links"]),
    Field("description", lambda f: f["description"], min=V2_55),
)
# Only for callers allowed to read extra specs.
EXTRA_SPECS = (Field("extra_specs", lambda f: dict(f["extra_specs"] or {}), min=V2_61),)


def _fields(ctx: RequestContext, detail: bool) -> tuple[Field, ...]:
    if not detail:
        return BRIEF
    if policy.allowed(ctx, "os_compute_api:os-flavor-extra-specs:index"):
        return DETAIL + EXTRA_SPECS
    return DETAIL


def _view(request: Request, ctx: RequestContext, row: dict[str, Any], *, detail: bool = True) -> dict[str, Any]:
    obj = {**row, "links": _common.links(request, "flavors", row["flavorid"])}
    return _common.render(_fields(ctx, detail), obj, _common.version(request))


def _parse_is_public(raw: str | None) -> bool | None:
    if raw is None:
        return True
    if raw.strip().lower() == "none":
        return None
    try:
        return bool_from_string(raw, strict=True)
    except Invalid:
        raise Invalid(f"Invalid is_public filter [{raw}]") from None


def _int_filter(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"Invalid {name} filter [{raw}]") from None


async def _list(request: Request, *, detail: bool) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:flavors:index")
    version = _common.version(request)
    q = request.query_params
    _common.check_query(request, schemas.LIST_QUERY, strict=version >= V2_75)
    sort_key = q.get("sort_key") or "flavorid"
    sort_dir = q.get("sort_dir") or "asc"
    if sort_key not in service.SORT_KEYS:
        raise Invalid(f"Invalid input for query parameters sort_key. Value: {sort_key}. '{sort_key}' is not one of {sorted(service.SORT_KEYS)}")
    if sort_dir not in schemas.SORT_DIRS:
        raise Invalid(f"Invalid input for query parameters sort_dir. Value: {sort_dir}. '{sort_dir}' is not one of ['asc', 'desc']")
    limit, marker = _common.limit_and_marker(request)
    # Only admins choose public/private; everyone else gets what they may use.
    is_public = _parse_is_public(q.get("is_public")) if ctx.is_admin else True
    min_ram, min_disk = _int_filter(request, "minRam"), _int_filter(request, "minDisk")
    rows = await _common.flavor_service(request).list_flavors(
        ctx, is_public=is_public, min_ram=min_ram, min_disk=min_disk,
        sort_key=sort_key, sort_dir=sort_dir, limit=limit, marker=marker,
    )
    body: dict[str, Any] = {"flavors": [_view(request, ctx, r, detail=detail) for r in rows]}
    links = _common.collection_links(
        request, len(rows), "flavors/detail" if detail else "flavors", rows[-1]["flavorid"] if rows else None
    )
    if links:
        body["flavors_links"] = links
    return json_response(body)


async def index(request: Request) -> Response:
    return await _list(request, detail=False)


async def detail(request: Request) -> Response:
    return await _list(request, detail=True)


async def show(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:flavors:show")
    row = await _common.flavor_service(request).get(ctx, request.path_params["flavor_id"])
    return json_response({"flavor": _view(request, ctx, row)})


async def create(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-manage:create")
    version = _common.version(request)
    body = await json_body(request)
    validate(_common.by_version(schemas.CREATE, version), body)
    vals = body["flavor"]
    fid = vals.get("id")
    name = vals["name"].strip()
    if not name:
        raise Invalid(NAME_ERROR)
    try:
        rxtx = float(vals.get("rxtx_factor", 1.0))
        if not 0 < rxtx <= 3.40282e38:
            raise ValueError
    except ValueError:
        raise Invalid("Invalid input received: 'rxtx_factor' argument must be a float between 0 and 3.40282e+38") from None
    values = {
        "flavorid": None if fid is None else str(fid),
        "name": name,
        "memory_mb": int(vals["ram"]),
        "vcpus": int(vals["vcpus"]),
        "root_gb": int(vals["disk"]),
        "ephemeral_gb": int(vals.get("OS-FLV-EXT-DATA:ephemeral", 0)),
        "swap": int(vals.get("swap", 0)),
        "rxtx_factor": rxtx,
        "is_public": bool_from_string(vals.get("os-flavor-access:is_public", True), strict=True),
        "description": vals.get("description") if version >= V2_55 else None,
    }
    row = await _common.flavor_service(request).create(values)
    return json_response({"flavor": _view(request, ctx, row)})


async def update(request: Request) -> Response:
    ctx = await authenticate(request)
    if _common.version(request) < V2_55:
        raise NotFound("The resource could not be found.")
    policy.authorize(ctx, "os_compute_api:os-flavor-manage:update")
    body = await json_body(request)
    validate(schemas.update, body)
    row = await _common.flavor_service(request).update_description(
        request.path_params["flavor_id"], body["flavor"]["description"]
    )
    return json_response({"flavor": _view(request, ctx, row)})


async def delete(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-manage:delete")
    await _common.flavor_service(request).delete(request.path_params["flavor_id"])
    return empty(202)


# --- extra specs --------------------------------------------------------------------------------

def _check_spec_values(specs: dict[str, Any]) -> None:
    for value in specs.values():
        # JSON schema cannot bound the length of a number; Nova checks its text.
        if isinstance(value, int | float) and len(str(value)) > 255:
            raise Invalid("extra_specs value has more than 255 characters.")


async def extra_specs_index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-extra-specs:index")
    row = await _common.flavor_service(request).get(ctx, request.path_params["flavor_id"])
    return json_response({"extra_specs": dict(row["extra_specs"] or {})})


async def extra_specs_create(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-extra-specs:create")
    body = await json_body(request)
    validate(schemas.extra_specs_create, body)
    _check_spec_values(body["extra_specs"])
    await _common.flavor_service(request).merge_extra_specs(ctx, request.path_params["flavor_id"], body["extra_specs"])
    # Nova answers with the request body as sent.
    return json_response(body)


async def extra_spec_show(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-extra-specs:show")
    flavor_id, key = request.path_params["flavor_id"], request.path_params["key"]
    row = await _common.flavor_service(request).get(ctx, flavor_id)
    specs = row["extra_specs"] or {}
    if key not in specs:
        raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
    return json_response({key: specs[key]})


async def extra_spec_update(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-extra-specs:update")
    body = await json_body(request)
    validate(schemas.extra_spec_update, body)
    _check_spec_values(body)
    if request.path_params["key"] not in body:
        raise Invalid("Request body and URI mismatch")
    await _common.flavor_service(request).merge_extra_specs(ctx, request.path_params["flavor_id"], body)
    return json_response(body)


async def extra_spec_delete(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-extra-specs:delete")
    await _common.flavor_service(request).delete_extra_spec(ctx, request.path_params["flavor_id"], request.path_params["key"])
    return empty(200)


# --- flavor access ------------------------------------------------------------------------------

def _access_body(flavorid: str, projects: list[str]) -> dict[str, Any]:
    return {"flavor_access": [{"flavor_id": flavorid, "tenant_id": p} for p in projects]}


async def access_index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-flavor-access")
    flavorid = request.path_params["flavor_id"]
    projects = await _common.flavor_service(request).access_list(ctx, flavorid)
    return json_response(_access_body(flavorid, projects))


async def action(request: Request) -> Response:
    ctx = await authenticate(request)
    body = await json_body(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise Invalid("Malformed request body")
    name = next(iter(body))
    flavorid = request.path_params["flavor_id"]
    s = services_of(request)
    flavors = _common.flavor_service(request)
    if name == "addTenantAccess":
        policy.authorize(ctx, "os_compute_api:os-flavor-access:add_tenant_access")
        validate(schemas.add_tenant_access, body)
        tenant = body[name]["tenant"]
        if await s.identity.get_project(tenant) is None:
            raise Invalid(f"Project ID {tenant} is not a valid project.")
        projects = await flavors.add_access(flavorid, tenant, reject_public=_common.version(request) >= v("2.7"))
    elif name == "removeTenantAccess":
        policy.authorize(ctx, "os_compute_api:os-flavor-access:remove_tenant_access")
        validate(schemas.remove_tenant_access, body)
        # Removing a grant of a project that no longer exists is fine.
        projects = await flavors.remove_access(flavorid, body[name]["tenant"])
    else:
        raise Invalid(f"There is no such action: {name}")
    return json_response(_access_body(flavorid, projects))


ROUTES = [
    Route("/v2.1/flavors", index, methods=["GET"]),
    Route("/v2.1/flavors", create, methods=["POST"]),
    Route("/v2.1/flavors/detail", detail, methods=["GET"]),
    Route("/v2.1/flavors/{flavor_id}", show, methods=["GET"]),
    Route("/v2.1/flavors/{flavor_id}", update, methods=["PUT"]),
    Route("/v2.1/flavors/{flavor_id}", delete, methods=["DELETE"]),
    Route("/v2.1/flavors/{flavor_id}/action", action, methods=["POST"]),
    Route("/v2.1/flavors/{flavor_id}/os-flavor-access", access_index, methods=["GET"]),
    Route("/v2.1/flavors/{flavor_id}/os-extra_specs", extra_specs_index, methods=["GET"]),
    Route("/v2.1/flavors/{flavor_id}/os-extra_specs", extra_specs_create, methods=["POST"]),
    Route("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", extra_spec_show, methods=["GET"]),
    Route("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", extra_spec_update, methods=["PUT"]),
    Route("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", extra_spec_delete, methods=["DELETE"]),
]
