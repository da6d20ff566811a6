"""Nova os-server-groups: list, create, show, delete.

Bodies per microversion, exactly as the API reference shows them:
- id, name, members, and before 2.64 `policies` (a one-item list) and an empty `metadata`;
- from 2.13 project_id and user_id;
- from 2.64 `policy` (a string) and `rules` instead of policies and metadata.

Another project's group is not found (404), as Cumulo hides other projects' servers; admins see
every group, and list them all with `all_projects`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api._common import Field
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas import server_groups as schemas
from cumulo.compute.api.schemas._base import validate, validate_query
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register(
    {
        "os_compute_api:os-server-groups:index": policy.READER,
        "os_compute_api:os-server-groups:index:all_projects": policy.ADMIN,
        "os_compute_api:os-server-groups:show": policy.READER,
        "os_compute_api:os-server-groups:create": policy.MEMBER,
        "os_compute_api:os-server-groups:delete": policy.MEMBER,
    }
)

V2_13, V2_64, V2_75 = v("2.13"), v("2.64"), v("2.75")

GROUP = (
    Field("id", lambda g: g["uuid"]),
    Field("name", lambda g: g["name"]),
    Field("policies", lambda g: [g["policy"]], max=v("2.63")),
    Field("members", lambda g: list(g["members"])),
    Field("metadata", lambda g: {}, max=v("2.63")),
    Field("project_id", lambda g: g["project_id"], min=V2_13),
    Field("user_id", lambda g: g["user_id"], min=V2_13),
    Field("policy", lambda g: g["policy"], min=V2_64),
    Field("rules", lambda g: dict(g["rules"]), min=V2_64),
)


def _last_int(params: dict[str, list[str]], key: str, default: int) -> int:
    values = params.get(key)
    return int(values[-1]) if values else default


async def index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-server-groups:index")
    version = _common.version(request)
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    validate_query(_common.by_version(schemas.INDEX_QUERY, version), params)
    project: str | None = ctx.project_id or ""
    # Like Nova: a non-admin asking for all_projects simply gets their own groups.
    if "all_projects" in params and ctx.is_admin:
        policy.authorize(ctx, "os_compute_api:os-server-groups:index:all_projects")
        project = None
    # Nova's common.limited: limit 0 or absent means the maximum page.
    limit = min(_last_int(params, "limit", 0) or _common.MAX_LIMIT, _common.MAX_LIMIT)
    offset = _last_int(params, "offset", 0)
    groups = await _common.server_group_service(request).list_groups(project, limit=limit, offset=offset)
    return json_response({"server_groups": [_common.render(GROUP, g, version) for g in groups]})


async def create(request: Request) -> Response:
    ctx = await authenticate(request)
    version = _common.version(request)
    policy.authorize(ctx, "os_compute_api:os-server-groups:create")
    body = await json_body(request)
    validate(_common.by_version(schemas.CREATE, version), body)
    params: dict[str, Any] = body["server_group"]
    if version >= V2_64:
        chosen = params["policy"]
        rules = {k: int(n) for k, n in (params.get("rules") or {}).items()}
    else:
        chosen, rules = params["policies"][0], {}
    group = await _common.server_group_service(request).create(ctx, params["name"], chosen, rules)
    return json_response({"server_group": _common.render(GROUP, group, version)})


async def show(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-server-groups:show")
    version = _common.version(request)
    group = await _common.server_group_service(request).get(ctx, request.path_params["group_id"])
    return json_response({"server_group": _common.render(GROUP, group, version)})


async def delete(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-server-groups:delete")
    await _common.server_group_service(request).delete(ctx, request.path_params["group_id"])
    return empty(204)


ROUTES = [
    Route("/v2.1/os-server-groups", index, methods=["GET"]),
    Route("/v2.1/os-server-groups", create, methods=["POST"]),
    Route("/v2.1/os-server-groups/{group_id}", show, methods=["GET"]),
    Route("/v2.1/os-server-groups/{group_id}", delete, methods=["DELETE"]),
]
