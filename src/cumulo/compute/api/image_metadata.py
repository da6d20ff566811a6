"""Nova's image metadata proxy (/v2.1/images/{id}/metadata), deprecated: up to 2.38, 404 after.

An image's metadata is its Glance extra properties. Writes go through the image service as the
caller (only the owner, or an admin, may change an image); core attributes and Glance's reserved
names are not metadata and are refused with 403, as Glance refuses them. Before writing, the
total is checked against the project's metadata_items quota (Nova's image metadata quota).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.deps import services_of
from cumulo.compute.api.images import check_version as _check_version
from cumulo.compute.api.images import get_image, properties
from cumulo.compute.api.schemas import images as schema
from cumulo.context import RequestContext
from cumulo.image._patch import Change
from cumulo.image._schemas import CORE_FIELDS, READ_ONLY, RESERVED, RESERVED_PREFIX
from cumulo.web.http import empty, json_response

policy.register({"compute:image_metadata:show": policy.READER, "compute:image_metadata:update": policy.MEMBER})

MAX_METADATA_VERSION = "2.38"


def check_version(request: Request) -> None:
    _check_version(request, MAX_METADATA_VERSION)


async def _start(request: Request, rule: str) -> tuple[RequestContext, dict[str, Any]]:
    check_version(request)
    ctx = await _common.caller(request)
    policy.authorize(ctx, rule)
    image = await get_image(request, ctx, request.path_params["image_id"])
    return ctx, image


async def _write(request: Request, ctx: RequestContext, image: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Make the image's extra properties equal to `new`; the properties as stored."""
    for key in new:
        if key in CORE_FIELDS or key in READ_ONLY or key in RESERVED or key.startswith(RESERVED_PREFIX):
            raise errors.Forbidden(f"Attribute '{key}' is reserved.")
    limit = (await _common.quota_service(request).limits(ctx.project_id or ""))["metadata_items"]
    if 0 <= limit < len(new):
        raise errors.Forbidden("Image metadata limit exceeded")
    old = properties(image)
    changes = [Change("remove", k) for k in old if k not in new]
    changes += [Change("add", k, str(val)) for k, val in new.items() if old.get(k) != val]
    if not changes:
        return old
    updated = await services_of(request).images.update(ctx, image["id"], changes)
    return properties(updated)


async def index(request: Request) -> Response:
    _ctx, image = await _start(request, "compute:image_metadata:show")
    return json_response({"metadata": properties(image)})


async def show(request: Request) -> Response:
    _ctx, image = await _start(request, "compute:image_metadata:show")
    key = request.path_params["key"]
    meta = properties(image)
    if key not in meta:
        raise errors.NotFound("The resource could not be found.")
    return json_response({"meta": {key: meta[key]}})


async def create(request: Request) -> Response:
    """POST: merge the given items into the metadata."""
    ctx, image = await _start(request, "compute:image_metadata:update")
    body = await _common.body(request, schema.create_metadata)
    merged = {**properties(image), **body["metadata"]}
    return json_response({"metadata": await _write(request, ctx, image, merged)})


async def update_all(request: Request) -> Response:
    """PUT: replace the whole metadata."""
    ctx, image = await _start(request, "compute:image_metadata:update")
    body = await _common.body(request, schema.update_all_metadata)
    await _write(request, ctx, image, dict(body["metadata"]))
    return json_response({"metadata": body["metadata"]})


async def update_item(request: Request) -> Response:
    ctx, image = await _start(request, "compute:image_metadata:update")
    body = await _common.body(request, schema.update_item)
    key = request.path_params["key"]
    if key not in body["meta"]:
        raise errors.Invalid("Request body and URI mismatch")
    await _write(request, ctx, image, {**properties(image), key: body["meta"][key]})
    return json_response({"meta": body["meta"]})


async def delete_item(request: Request) -> Response:
    ctx, image = await _start(request, "compute:image_metadata:update")
    key = request.path_params["key"]
    meta = properties(image)
    if key not in meta:
        raise errors.NotFound("Invalid metadata key")
    del meta[key]
    await _write(request, ctx, image, meta)
    return empty(204)


ROUTES = [
    Route("/v2.1/images/{image_id}/metadata", index, methods=["GET"]),
    Route("/v2.1/images/{image_id}/metadata", create, methods=["POST"]),
    Route("/v2.1/images/{image_id}/metadata", update_all, methods=["PUT"]),
    Route("/v2.1/images/{image_id}/metadata/{key}", show, methods=["GET"]),
    Route("/v2.1/images/{image_id}/metadata/{key}", update_item, methods=["PUT"]),
    Route("/v2.1/images/{image_id}/metadata/{key}", delete_item, methods=["DELETE"]),
]
