"""Nova's image proxy (/v2.1/images), deprecated: list, detail, show and delete, up to 2.35.

Served from the image service in process, scoped to the caller exactly like Glance's own API
(never by HTTP to ourselves), in Nova's view shape. From 2.36 the routes are 404, as in Nova.
Filters are Nova's: name, status, changes-since, server, type, minRam, minDisk and property-*,
translated to the image service's Glance filters the way Nova's glance client translates them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.deps import services_of
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas import images as schema
from cumulo.compute.api.schemas._base import bool_from_string, validate_query
from cumulo.context import RequestContext
from cumulo.image._schemas import CORE_FIELDS
from cumulo.web.http import empty, json_response

policy.register({"compute:images:list": policy.READER, "compute:images:delete": policy.MEMBER})

MAX_PROXY_VERSION = "2.35"
MAX_LIMIT = 1000  # Nova's [api] max_limit
# Nova's image status and progress for each Glance status.
STATUS = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING", "deleted": "DELETED",
          "pending_delete": "DELETED", "killed": "ERROR"}
PROGRESS = {"queued": 25, "saving": 50, "active": 100}
# Nova's SUPPORTED_FILTERS, to the Glance v2 names Nova's glance client sends.
_FILTERS = {"name": "name", "status": "status", "server": "instance_uuid", "type": "image_type",
            "minRam": "min_ram", "minDisk": "min_disk"}
_NOT_FOUND = "Image not found."


def check_version(request: Request, maximum: str = MAX_PROXY_VERSION) -> None:
    """The proxy is gone after `maximum`: 404, as Nova's removed routes answer."""
    if _common.version(request) > v(maximum):
        raise errors.NotFound("The resource could not be found.")


def properties(image: dict[str, Any]) -> dict[str, Any]:
    """The extra properties of a Glance-shaped image (what Nova calls its metadata)."""
    return {k: val for k, val in image.items() if k not in CORE_FIELDS}


def image_root(request: Request) -> str:
    """The image service's root as the client reached the compute API (Nova's glance URL)."""
    base = _common.root(request)
    return (base[: -len("/compute")] if base.endswith("/compute") else base) + "/image"


def _links(request: Request, image_id: str) -> list[dict[str, str]]:
    return [
        *_common.links(request, "images", image_id),
        {"rel": "alternate", "type": "application/vnd.openstack.image", "href": f"{image_root(request)}/images/{image_id}"},
    ]


def basic(request: Request, image: dict[str, Any]) -> dict[str, Any]:
    return {"id": image["id"], "name": image.get("name"), "links": _links(request, image["id"])}


def detailed(request: Request, image: dict[str, Any]) -> dict[str, Any]:
    """Nova's images view builder `show`."""
    meta = properties(image)
    body: dict[str, Any] = {
        "id": image["id"],
        "name": image.get("name"),
        "minRam": int(image.get("min_ram") or 0),
        "minDisk": int(image.get("min_disk") or 0),
        "metadata": meta,
        "created": image.get("created_at"),
        "updated": image.get("updated_at"),
        "status": STATUS.get(image.get("status") or "", "UNKNOWN"),
        "progress": PROGRESS.get(image.get("status") or "", 0),
        "OS-EXT-IMG-SIZE:size": int(image.get("size") or 0),
        "links": _links(request, image["id"]),
    }
    server = meta.get("instance_uuid")
    if server is not None:
        body["server"] = {"id": server, "links": _common.links(request, "servers", str(server))}
    if meta.get("auto_disk_config") is not None:
        body["OS-DCF:diskConfig"] = "AUTO" if bool_from_string(meta["auto_disk_config"]) else "MANUAL"
    return body


def glance_params(request: Request) -> tuple[list[tuple[str, str]], int]:
    """Nova's filters and paging as image-service (Glance v2) query parameters, and the limit."""
    params = _common.query_lists(request)
    validate_query(schema.index_query, params)
    last = {k: vals[-1] for k, vals in params.items()}
    out: list[tuple[str, str]] = []
    for key, value in last.items():
        if key in _FILTERS:
            name = _FILTERS[key]
            if key == "server":
                value = value.rsplit("/", 1)[-1]  # a server link works as well as its id
            elif key == "status":
                value = value.lower()
            out.append((name, value))
        elif key == "changes-since":
            out.append(("updated_at", f"gte:{value}"))
        elif key.startswith("property-") and len(key) > len("property-"):
            out.append((key[len("property-"):], value))
    limit = MAX_LIMIT
    for key in ("limit", "page_size"):
        if key in last:
            limit = min(int(last[key]), MAX_LIMIT)
    out.append(("limit", str(limit)))
    if "marker" in last:
        out.append(("marker", last["marker"]))
    return out, limit


async def _list(request: Request, detail: bool) -> Response:
    check_version(request)
    ctx = await _common.caller(request)
    policy.authorize(ctx, "compute:images:list")
    params, limit = glance_params(request)
    page, _next = await services_of(request).images.list_images(ctx, params)
    view = detailed if detail else basic
    body: dict[str, Any] = {"images": [view(request, i) for i in page]}
    if page and len(page) == limit:
        body["images_links"] = _common.next_link(request, "images/detail" if detail else "images", page[-1]["id"])
    return json_response(body)


async def index(request: Request) -> Response:
    return await _list(request, detail=False)


async def detail(request: Request) -> Response:
    return await _list(request, detail=True)


async def get_image(request: Request, ctx: RequestContext, image_id: str) -> dict[str, Any]:
    try:
        return await services_of(request).images.get(ctx, image_id)
    except errors.NotFound:
        raise errors.NotFound(_NOT_FOUND) from None


async def show(request: Request) -> Response:
    check_version(request)
    ctx = await _common.caller(request)
    policy.authorize(ctx, "compute:images:list")
    image = await get_image(request, ctx, request.path_params["image_id"])
    return json_response({"image": detailed(request, image)})


async def delete(request: Request) -> Response:
    check_version(request)
    ctx = await _common.caller(request)
    policy.authorize(ctx, "compute:images:delete")
    try:
        await services_of(request).images.delete(ctx, request.path_params["image_id"])
    except errors.NotFound:
        raise errors.NotFound(_NOT_FOUND) from None
    except errors.Forbidden:
        raise errors.Forbidden("You are not allowed to delete the image.") from None
    return empty(204)


async def delete_blank(request: Request) -> Response:
    """DELETE /images/ (an empty id): Nova answers 404 for the image "", not a redirect to the
    collection (which has no DELETE)."""
    check_version(request)
    ctx = await _common.caller(request)
    policy.authorize(ctx, "compute:images:delete")
    raise errors.NotFound(_NOT_FOUND)


ROUTES = [
    Route("/v2.1/images", index, methods=["GET"]),
    Route("/v2.1/images/", delete_blank, methods=["DELETE"]),
    Route("/v2.1/images/detail", detail, methods=["GET"]),
    Route("/v2.1/images/{image_id}", show, methods=["GET"]),
    Route("/v2.1/images/{image_id}", delete, methods=["DELETE"]),
]
