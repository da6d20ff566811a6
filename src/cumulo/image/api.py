"""The Glance-compatible image API (v2), mounted at /image.

Faults: Glance's errors come from WebOb, which (for JSON-accepting clients such as openstacksdk)
renders {"message": ..., "code": "404 Not Found", "title": "Not Found"}. We send that shape; the SDK
and OSC show the "message" text. Links inside bodies (`self`, `file`, `schema`, `first`, `next`) are
relative to the API root ("/v2/..."), exactly as Glance writes them; clients resolve them.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from cumulo import errors, policy
from cumulo.image import _patch, _schemas, _upload, host_tokens, imports, members, openapi_ops, tasks
from cumulo.image.deps import ImageDeps, services_of
from cumulo.image.metadefs import api as metadefs_api
from cumulo.image.records import POLICY_RULES
from cumulo.image.service import ImageService
from cumulo.web.http import (
    MAX_JSON_BODY,
    Authenticator,
    authenticate,
    base_url,
    empty,
    family_app,
    json_body,
    json_response,
    route_path,
)
from cumulo.web.openapi import Microversions, openapi_route

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Scope


policy.register(POLICY_RULES)


def render_fault(status: int, message: str, request: Request) -> Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return json_response({"message": message, "code": f"{status} {title}", "title": title}, status=status)


def _svc(request: Request) -> ImageService:
    return services_of(request).images


async def _ctx(request: Request, rule: str) -> Any:
    ctx = await authenticate(request)
    policy.authorize(ctx, rule)
    return ctx


# ---- version discovery ----------------------------------------------------------------------


async def versions(request: Request) -> Response:
    """GET / answers 300 Multiple Choices and GET /versions 200, as Glance does."""
    status = 200 if request.url.path.rstrip("/").endswith("/versions") else 300
    return json_response(_schemas.versions_document(base_url(request)), status=status)


# ---- images ---------------------------------------------------------------------------------


async def list_images(request: Request) -> Response:
    ctx = await _ctx(request, "image:get_images")
    params = list(request.query_params.multi_items())
    page, next_marker = await _svc(request).list_images(ctx, params)
    without_marker = [(k, v) for k, v in params if k != "marker"]
    body: dict[str, Any] = {
        "images": page,
        "first": "/v2/images" + (f"?{urlencode(without_marker)}" if without_marker else ""),
        "schema": "/v2/schemas/images",
    }
    if next_marker is not None:
        body["next"] = "/v2/images?" + urlencode([*without_marker, ("marker", next_marker)])
    return json_response(body)


async def create_image(request: Request) -> Response:
    ctx = await _ctx(request, "image:add_image")
    image = await _svc(request).create(ctx, await json_body(request))
    headers = {
        "Location": f"{base_url(request)}/v2/images/{image['id']}",
        "OpenStack-image-import-methods": ",".join(imports.METHODS),  # as Glance does when import is on
    }
    return json_response(image, status=201, headers=headers)


async def show_image(request: Request) -> Response:
    ctx = await _ctx(request, "image:get_image")
    return json_response(await _svc(request).get(ctx, request.path_params["image_id"]))


async def update_image(request: Request) -> Response:
    ctx = await _ctx(request, "image:modify_image")
    try:
        draft = _patch.media_version(request.headers.get("content-type"))
    except errors.UnsupportedMediaType as exc:
        resp = render_fault(415, exc.message, request)
        resp.headers["Accept-Patch"] = ", ".join(sorted(_patch.MEDIA_TYPES))
        return resp
    changes = _patch.parse(await json_body(request), draft)
    return json_response(await _svc(request).update(ctx, request.path_params["image_id"], changes))


async def delete_image(request: Request) -> Response:
    ctx = await _ctx(request, "image:delete_image")
    await _svc(request).delete(ctx, request.path_params["image_id"])
    return empty(204)


# ---- data -----------------------------------------------------------------------------------


async def _data_ctx(request: Request, rule: str) -> Any:
    """A compute host's token for this image (image.host_tokens), else the caller's Keystone token."""
    ctx = await host_tokens.host_context(request, _svc(request).db, request.path_params["image_id"])
    return ctx if ctx is not None else await _ctx(request, rule)


async def upload_data(request: Request) -> Response:
    ctx = await _data_ctx(request, "image:upload_image")
    await _upload.receive(request, _svc(request), ctx)
    return empty(204)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(offset, length) for a single "bytes=a-b" / "bytes=-n" range; 416 when unsatisfiable."""
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        raise _RangeError(size)
    if not m.group(1):
        n = min(int(m.group(2)), size)
        start, end = size - n, size - 1
    else:
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        raise _RangeError(size)
    return start, end - start + 1


class _RangeError(errors.CumuloError):
    code = 416

    def __init__(self, size: int) -> None:
        super().__init__("Requested range not satisfiable")
        self.size = size


async def download_data(request: Request) -> Response:
    ctx = await _data_ctx(request, "image:download_image")
    svc = _svc(request)
    row, key = await svc.download(ctx, request.path_params["image_id"])
    if key is None:
        return empty(204)  # Glance: an image without data answers 204 No Content
    size = int(row["size"] or 0)
    headers = {"Content-Type": _upload.OCTET_STREAM}
    if row["checksum"]:
        headers["Content-MD5"] = row["checksum"]
    try:
        rng = _byte_range(request.headers.get("range"), size)
    except _RangeError as exc:
        resp = render_fault(416, exc.message, request)
        resp.headers["Content-Range"] = f"bytes */{exc.size}"
        return resp
    status = 200
    offset, length = 0, size
    if rng is not None:
        offset, length = rng
        status = 206
        headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{size}"
    headers["Content-Length"] = str(length)
    return StreamingResponse(svc.store.read(key, offset, length), status_code=status, headers=headers)


# ---- tags and actions -----------------------------------------------------------------------


async def add_tag(request: Request) -> Response:
    ctx = await _ctx(request, "image:modify_image")
    await _svc(request).add_tag(ctx, request.path_params["image_id"], request.path_params["tag"])
    return empty(204)


async def delete_tag(request: Request) -> Response:
    ctx = await _ctx(request, "image:modify_image")
    await _svc(request).remove_tag(ctx, request.path_params["image_id"], request.path_params["tag"])
    return empty(204)


async def deactivate(request: Request) -> Response:
    ctx = await _ctx(request, "image:deactivate")
    await _svc(request).set_active(ctx, request.path_params["image_id"], False)
    return empty(204)


async def reactivate(request: Request) -> Response:
    ctx = await _ctx(request, "image:reactivate")
    await _svc(request).set_active(ctx, request.path_params["image_id"], True)
    return empty(204)


# ---- members --------------------------------------------------------------------------------


async def list_members(request: Request) -> Response:
    ctx = await _ctx(request, "image:get_members")
    found = await members.list_members(_svc(request), ctx, request.path_params["image_id"])
    return json_response({"members": found, "schema": "/v2/schemas/members"})


async def add_member(request: Request) -> Response:
    ctx = await _ctx(request, "image:add_member")
    body = await json_body(request)
    member_id = body.get("member") if isinstance(body, dict) else None
    if not isinstance(member_id, str) or not member_id or len(member_id) > 255:
        raise errors.Invalid("Member to be added not specified")
    found = await members.add_member(_svc(request), ctx, request.path_params["image_id"], member_id)
    return json_response(found)


async def show_member(request: Request) -> Response:
    ctx = await _ctx(request, "image:get_member")
    p = request.path_params
    return json_response(await members.get_member(_svc(request), ctx, p["image_id"], p["member_id"]))


async def update_member(request: Request) -> Response:
    ctx = await _ctx(request, "image:modify_member")
    body = await json_body(request)
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, str):
        raise errors.Invalid("Status not specified")
    p = request.path_params
    return json_response(await members.update_member(_svc(request), ctx, p["image_id"], p["member_id"], status))


async def delete_member(request: Request) -> Response:
    ctx = await _ctx(request, "image:delete_member")
    p = request.path_params
    await members.remove_member(_svc(request), ctx, p["image_id"], p["member_id"])
    return empty(204)


# ---- schemas and discovery ------------------------------------------------------------------


def _schema_route(path: str, build: Any) -> Route:
    async def handler(request: Request) -> Response:
        await authenticate(request)
        return json_response(build())

    return Route(path, handler, methods=["GET"])


async def image_tasks(request: Request) -> Response:
    """GET /v2/images/{id}/tasks (2.12): the image's import tasks (glance-direct imports; an image
    uploaded with PUT /file or made by a snapshot has none). Tempest waits on this list after snapshots."""
    ctx = await _ctx(request, "image:get_image")
    return json_response({"tasks": await imports.tasks_of_image(_svc(request), ctx, request.path_params["image_id"])})


async def import_info(request: Request) -> Response:
    """The interoperable-import methods offered: glance-direct only (see image/imports.py)."""
    await authenticate(request)
    return json_response(
        {"import-methods": {"description": "Import methods available.", "type": "array",
                            "value": list(imports.METHODS)}}
    )


ROUTES: list[BaseRoute] = [
    Route("/", versions, methods=["GET"]),
    Route("/versions", versions, methods=["GET"]),
    Route("/v2/images", list_images, methods=["GET"]),
    Route("/v2/images", create_image, methods=["POST"]),
    Route("/v2/images/{image_id}", show_image, methods=["GET"]),
    Route("/v2/images/{image_id}", update_image, methods=["PATCH"]),
    Route("/v2/images/{image_id}", delete_image, methods=["DELETE"]),
    Route("/v2/images/{image_id}/tasks", image_tasks, methods=["GET"]),
    Route("/v2/images/{image_id}/file", upload_data, methods=["PUT"]),
    Route("/v2/images/{image_id}/file", download_data, methods=["GET"]),
    Route("/v2/images/{image_id}/tags/{tag:path}", add_tag, methods=["PUT"]),
    Route("/v2/images/{image_id}/tags/{tag:path}", delete_tag, methods=["DELETE"]),
    Route("/v2/images/{image_id}/actions/deactivate", deactivate, methods=["POST"]),
    Route("/v2/images/{image_id}/actions/reactivate", reactivate, methods=["POST"]),
    Route("/v2/images/{image_id}/members", list_members, methods=["GET"]),
    Route("/v2/images/{image_id}/members", add_member, methods=["POST"]),
    Route("/v2/images/{image_id}/members/{member_id}", show_member, methods=["GET"]),
    Route("/v2/images/{image_id}/members/{member_id}", update_member, methods=["PUT"]),
    Route("/v2/images/{image_id}/members/{member_id}", delete_member, methods=["DELETE"]),
    _schema_route("/v2/schemas/image", _schemas.image_schema),
    _schema_route("/v2/schemas/images", _schemas.images_schema),
    _schema_route("/v2/schemas/member", _schemas.member_schema),
    _schema_route("/v2/schemas/members", _schemas.members_schema),
    Route("/v2/info/import", import_info, methods=["GET"]),
    *metadefs_api.ROUTES,
]


async def blank_image_id(request: Request) -> Response:
    """GET/DELETE /v2/images/ (an empty id): Glance answers 404; without this route the router
    would redirect to /v2/images and a GET would list the images."""
    await authenticate(request)
    raise errors.NotFound("The resource could not be found.")


# Kept out of the OpenAPI document (whose fuzz expects each operation to succeed sometimes): the
# blank-id answer, the tasks API (task create never does) and stage/import (an import needs a staged
# image first); tests/unit/image/test_metadefs_fuzz.py and test_image_import.py cover them.
EXTRA_ROUTES: list[BaseRoute] = [
    Route("/v2/images/", blank_image_id, methods=["GET", "DELETE"]),
    *tasks.ROUTES,
    *imports.ROUTES,
]


_DATA_PATH = re.compile(r"^/v2/images/[^/]+/(file|stage)$")


def make_app(images: ImageService, *, axis: Microversions, authenticator: Authenticator | None = None) -> ASGIApp:
    """The image family's ASGI app over `images`. Its OpenAPI document is described along `axis`
    (the assembly passes compute's microversions, which every Cumulo document states); tokens are
    checked by `authenticator` (without one, only requests that arrive with a context get past
    `authenticate`)."""

    def body_limit(scope: Scope) -> int:
        """Image data (PUT /file or /stage) streams to disk up to image_size_cap; every other body is JSON (1 MiB)."""
        if scope.get("method") == "PUT" and _DATA_PATH.match(route_path(scope)):
            return int(images.size_cap)
        return MAX_JSON_BODY

    routes = [*ROUTES, *EXTRA_ROUTES, openapi_route(openapi_ops.FAMILY, axis, public_url=images.conf.public_url)]
    return family_app(ImageDeps(images), routes, render_fault, body_limit, authenticator=authenticator)
