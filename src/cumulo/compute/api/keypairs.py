"""Nova os-keypairs API. Keypairs belong to the calling user; admins may name another (2.10+)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api._common import Field
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.api.schemas import keypairs as schemas
from cumulo.compute.api.schemas._base import validate
from cumulo.context import RequestContext
from cumulo.errors import Invalid
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register(
    {
        "os_compute_api:os-keypairs:index": policy.READER,
        "os_compute_api:os-keypairs:show": policy.READER,
        "os_compute_api:os-keypairs:create": policy.MEMBER,
        "os_compute_api:os-keypairs:delete": policy.MEMBER,
        # Acting on another user's keypairs (user_id parameter, 2.10+).
        "os_compute_api:os-keypairs:other_user": policy.ADMIN,
    }
)

V2_2, V2_10, V2_35, V2_75 = v("2.2"), v("2.10"), v("2.35"), v("2.75")


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


INDEX = (
    Field("name", lambda k: k["name"]),
    Field("public_key", lambda k: k["public_key"]),
    Field("fingerprint", lambda k: k["fingerprint"]),
    Field("type", lambda k: k["type"], min=V2_2),
)
CREATE = (
    *INDEX,
    Field("user_id", lambda k: k["user_id"]),
)
SHOW = (
    *CREATE,
    Field("created_at", lambda k: _time(k["created_at"])),
    # Soft-delete fields Nova still shows; never set.
    Field("deleted", lambda k: False),
    Field("deleted_at", lambda k: None),
    Field("updated_at", lambda k: None),
    Field("id", lambda k: k["id"]),
)


def _target_user(request: Request, ctx: RequestContext, version: Version, requested: Any = None) -> str:
    """The keypair owner: the caller, or (2.10+) the user_id an admin names."""
    if version >= V2_10:
        requested = requested if requested is not None else request.query_params.get("user_id")
    else:
        requested = None
    if requested is None or requested == ctx.user_id:
        return ctx.user_id or ""
    policy.authorize(ctx, "os_compute_api:os-keypairs:other_user")
    return str(requested)


async def index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-keypairs:index")
    version = _common.version(request)
    _common.check_query(request, _common.by_version(schemas.INDEX_QUERY, version), strict=version >= V2_75)
    user_id = _target_user(request, ctx, version)
    limit: int | None = None
    marker: str | None = None
    if version >= V2_35:
        limit, marker = _common.limit_and_marker(request)
    rows = await _common.keypair_service(request).list_keypairs(user_id, limit, marker)
    body: dict[str, Any] = {"keypairs": [{"keypair": _common.render(INDEX, r, version)} for r in rows]}
    if version >= V2_35:
        links = _common.collection_links(request, len(rows), "os-keypairs", rows[-1]["name"] if rows else None)
        if links:
            body["keypairs_links"] = links
    return json_response(body)


async def create(request: Request) -> Response:
    ctx = await authenticate(request)
    version = _common.version(request)
    body = await json_body(request)
    validate(_common.by_version(schemas.CREATE, version), body)
    params = body["keypair"]
    user_id = _target_user(request, ctx, version, params.get("user_id"))
    policy.authorize(ctx, "os_compute_api:os-keypairs:create")
    key_type = params.get("type", "ssh")
    algorithm = params.get("key_algorithm")
    if algorithm is not None and ("public_key" in params or key_type != "ssh"):
        raise Invalid("key_algorithm applies only when an SSH key pair is generated (no public_key, type ssh)")
    keypair = await _common.keypair_service(request).create(
        user_id=user_id,
        project_id=ctx.project_id or "",
        name=params["name"],
        key_type=key_type,
        public_key=params.get("public_key"),
        algorithm=algorithm,
    )
    out = _common.render(CREATE, keypair, version)
    if "private_key" in keypair:
        out["private_key"] = keypair["private_key"]
    return json_response({"keypair": out}, status=201 if version >= V2_2 else 200)


async def show(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-keypairs:show")
    version = _common.version(request)
    _common.check_query(request, _common.by_version(schemas.ITEM_QUERY, version), strict=version >= V2_75)
    user_id = _target_user(request, ctx, version)
    keypair = await _common.keypair_service(request).get(user_id, request.path_params["name"])
    return json_response({"keypair": _common.render(SHOW, keypair, version)})


async def delete(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-keypairs:delete")
    version = _common.version(request)
    _common.check_query(request, _common.by_version(schemas.ITEM_QUERY, version), strict=version >= V2_75)
    user_id = _target_user(request, ctx, version)
    await _common.keypair_service(request).delete(user_id, request.path_params["name"])
    return empty(204 if version >= V2_2 else 202)


ROUTES = [
    Route("/v2.1/os-keypairs", index, methods=["GET"]),
    Route("/v2.1/os-keypairs", create, methods=["POST"]),
    Route("/v2.1/os-keypairs/{name}", show, methods=["GET"]),
    Route("/v2.1/os-keypairs/{name}", delete, methods=["DELETE"]),
]
