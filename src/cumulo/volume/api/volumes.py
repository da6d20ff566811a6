"""Cinder's /volumes routes: CRUD, detail lists, summary, metadata, and POST /volumes/{id}/action."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.volume import records
from cumulo.volume.api import views
from cumulo.volume.api.common import (
    Call,
    action_body,
    begin,
    body_of,
    listing,
    meta_item_of,
    metadata_of,
    obj,
)
from cumulo.web.http import empty, json_response


async def list_volumes(request: Request, *, detail: bool) -> Response:
    call = await begin(request)
    params = call.params()
    page = await call.svc.list_volumes(call.ctx, params)
    if detail:
        body = listing(call, "volumes", page, lambda r: views.volume_detail(r, call.base, call.version, call.ctx))
    else:
        body = listing(call, "volumes", page, lambda r: views.volume_summary(r, call.base))
    if call.at_least(45) and params.get("with_count", "").lower() in ("true", "1", "yes"):
        body["count"] = page.count
    return json_response(body)


async def index(request: Request) -> Response:
    return await list_volumes(request, detail=False)


async def detail(request: Request) -> Response:
    return await list_volumes(request, detail=True)


async def summary(request: Request) -> Response:
    call = await begin(request)
    if not call.at_least(12):
        raise errors.NotFound("The resource could not be found.")
    page = await call.svc.list_volumes(call.ctx, {k: v for k, v in call.params().items() if k == "all_tenants"})
    out: dict[str, Any] = {"total_size": sum(r["size"] for r in page.items), "total_count": len(page.items)}
    if call.at_least(36):
        meta: dict[str, list[str]] = {}
        for r in page.items:
            for k, v in r["metadata"].items():
                if v not in meta.setdefault(k, []):
                    meta[k].append(v)
        out["metadata"] = meta
    return json_response({"volume-summary": out})


async def create(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.create_volume(call.ctx, await body_of(request), version=call.version)
    return json_response({"volume": views.volume_detail(rec, call.base, call.version, call.ctx, extended=False)},
                         status=202)


async def show(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.get_volume(call.ctx, call.path("volume_id"))
    return json_response({"volume": views.volume_detail(rec, call.base, call.version, call.ctx)})


async def update(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.update_volume(call.ctx, call.path("volume_id"), await body_of(request))
    return json_response({"volume": views.volume_detail(rec, call.base, call.version, call.ctx, extended=False)})


async def delete(request: Request) -> Response:
    call = await begin(request)
    params = call.params()
    cascade = records.boolean(params.get("cascade", "false"), "cascade")
    force = records.boolean(params.get("force", "false"), "force") if call.at_least(23) else False
    await call.svc.delete_volume(call.ctx, call.path("volume_id"), cascade=cascade, force=force)
    return empty(202)


# ---- metadata ------------------------------------------------------------------------------------


async def get_metadata(request: Request) -> Response:
    call = await begin(request)
    return json_response({"metadata": await call.svc.get_metadata(call.ctx, call.path("volume_id"))})


async def _write_metadata(request: Request, *, replace: bool) -> Response:
    call = await begin(request)
    metadata = metadata_of(await body_of(request))
    meta = await call.svc.set_metadata(call.ctx, call.path("volume_id"), metadata, replace=replace)
    return json_response({"metadata": meta})


async def post_metadata(request: Request) -> Response:
    return await _write_metadata(request, replace=False)


async def put_metadata(request: Request) -> Response:
    return await _write_metadata(request, replace=True)


async def get_metadata_key(request: Request) -> Response:
    call = await begin(request)
    key = call.path("key")
    meta = await call.svc.get_metadata(call.ctx, call.path("volume_id"))
    if key not in meta:
        raise errors.NotFound("Metadata item was not found")
    return json_response({"meta": {key: meta[key]}})


async def put_metadata_key(request: Request) -> Response:
    call = await begin(request)
    meta = meta_item_of(await body_of(request), call.path("key"))
    await call.svc.set_metadata(call.ctx, call.path("volume_id"), meta, replace=False)
    return json_response({"meta": meta})


async def delete_metadata_key(request: Request) -> Response:
    call = await begin(request)
    await call.svc.delete_metadata_key(call.ctx, call.path("volume_id"), call.path("key"))
    return empty(200)


# ---- actions ---------------------------------------------------------------------------------------

ActionHandler = Callable[[Call, str, Any], Awaitable[Response]]


async def _extend(call: Call, vid: str, value: Any) -> Response:
    await call.svc.extend(call.ctx, vid, obj(value, "os-extend", nullable=False).get("new_size"), version=call.version)
    return empty(202)


async def _reserve(call: Call, vid: str, value: Any) -> Response:
    await call.svc.reserve(call.ctx, vid)
    return empty(202)


async def _unreserve(call: Call, vid: str, value: Any) -> Response:
    await call.svc.unreserve(call.ctx, vid)
    return empty(202)


async def _attach(call: Call, vid: str, value: Any) -> Response:
    await call.svc.attach(call.ctx, vid, obj(value, "os-attach", nullable=False))
    return empty(202)


async def _begin_detaching(call: Call, vid: str, value: Any) -> Response:
    await call.svc.begin_detaching(call.ctx, vid)
    return empty(202)


async def _roll_detaching(call: Call, vid: str, value: Any) -> Response:
    await call.svc.roll_detaching(call.ctx, vid)
    return empty(202)


async def _detach(call: Call, vid: str, value: Any) -> Response:
    await call.svc.detach(call.ctx, vid, obj(value, "os-detach").get("attachment_id"))
    return empty(202)


async def _force_detach(call: Call, vid: str, value: Any) -> Response:
    await call.svc.detach(call.ctx, vid, obj(value, "os-force_detach").get("attachment_id"), force=True)
    return empty(202)


async def _bootable(call: Call, vid: str, value: Any) -> Response:
    body = obj(value, "os-set_bootable", nullable=False)
    if "bootable" not in body:
        raise errors.Invalid("Invalid input received: Must specify bootable in request.")
    await call.svc.set_bootable(call.ctx, vid, body["bootable"])
    return empty(200)


async def _readonly(call: Call, vid: str, value: Any) -> Response:
    body = obj(value, "os-update_readonly_flag", nullable=False)
    if "readonly" not in body:
        raise errors.Invalid("Invalid input received: Must specify readonly in request.")
    await call.svc.update_readonly(call.ctx, vid, body["readonly"])
    return empty(202)


async def _retype(call: Call, vid: str, value: Any) -> Response:
    await call.svc.retype(call.ctx, vid, obj(value, "os-retype", nullable=False))
    return empty(202)


async def _reset_status(call: Call, vid: str, value: Any) -> Response:
    await call.svc.reset_status(call.ctx, vid, obj(value, "os-reset_status", nullable=False))
    return empty(202)


async def _force_delete(call: Call, vid: str, value: Any) -> Response:
    await call.svc.delete_volume(call.ctx, vid, force=True)
    return empty(202)


async def _upload(call: Call, vid: str, value: Any) -> Response:
    body = obj(value, "os-volume_upload_image", nullable=False)
    if not call.at_least(1):  # visibility and protected arrive at 3.1; before, Cinder ignores them
        body = {k: v for k, v in body.items() if k not in ("visibility", "protected")}
    out = await call.svc.upload_to_image(call.ctx, vid, body)
    if isinstance(out.get("volume_type"), dict):
        out["volume_type"] = {**views.volume_type(out["volume_type"], call.ctx),
                              "created_at": views.when(out["volume_type"]["created_at"]),
                              "updated_at": views.when(out["volume_type"]["updated_at"]), "deleted": False}
    return json_response({"os-volume_upload_image": out}, status=202)


async def _initialize(call: Call, vid: str, value: Any) -> Response:
    info = await call.svc.initialize_connection(call.ctx, vid, obj(value, "os-initialize_connection", nullable=False).get("connector"))
    return json_response({"connection_info": info})


async def _terminate(call: Call, vid: str, value: Any) -> Response:
    obj(value, "os-terminate_connection", nullable=False)
    await call.svc.get_volume(call.ctx, vid)
    return empty(202)


async def _set_image_metadata(call: Call, vid: str, value: Any) -> Response:
    items = metadata_of(obj(value, "os-set_image_metadata", nullable=False))
    return json_response({"metadata": await call.svc.image_metadata(call.ctx, vid, items)})


async def _unset_image_metadata(call: Call, vid: str, value: Any) -> Response:
    key = obj(value, "os-unset_image_metadata", nullable=False).get("key")
    if not isinstance(key, str) or not key:
        raise errors.Invalid("Invalid input received: os-unset_image_metadata needs a 'key'.")
    await call.svc.image_metadata(call.ctx, vid, unset=key)
    return empty(200)


async def _show_image_metadata(call: Call, vid: str, value: Any) -> Response:
    return json_response({"metadata": await call.svc.image_metadata(call.ctx, vid)})


ACTIONS: dict[str, ActionHandler] = {
    "os-set_image_metadata": _set_image_metadata,
    "os-unset_image_metadata": _unset_image_metadata,
    "os-show_image_metadata": _show_image_metadata,
    "os-extend": _extend,
    "os-reserve": _reserve,
    "os-unreserve": _unreserve,
    "os-attach": _attach,
    "os-begin_detaching": _begin_detaching,
    "os-roll_detaching": _roll_detaching,
    "os-detach": _detach,
    "os-force_detach": _force_detach,
    "os-set_bootable": _bootable,
    "os-update_readonly_flag": _readonly,
    "os-retype": _retype,
    "os-reset_status": _reset_status,
    "os-force_delete": _force_delete,
    "os-volume_upload_image": _upload,
    "os-initialize_connection": _initialize,
    "os-terminate_connection": _terminate,
}


async def action(request: Request) -> Response:
    call = await begin(request)
    name, value = action_body(await body_of(request))
    handler = ACTIONS.get(name)
    if handler is None:
        raise errors.Invalid(f"Invalid input received: There is no such action: {name[:64]}")
    return await handler(call, call.path("volume_id"), value)


def routes(prefix: str) -> list[BaseRoute]:
    v = f"{prefix}/volumes"
    one = f"{v}/{{volume_id}}"
    return [
        Route(v, index, methods=["GET"]),
        Route(v, create, methods=["POST"]),
        Route(f"{v}/detail", detail, methods=["GET"]),
        Route(f"{v}/summary", summary, methods=["GET"]),
        Route(one, show, methods=["GET"]),
        Route(one, update, methods=["PUT"]),
        Route(one, delete, methods=["DELETE"]),
        Route(f"{one}/action", action, methods=["POST"]),
        Route(f"{one}/metadata", get_metadata, methods=["GET"]),
        Route(f"{one}/metadata", post_metadata, methods=["POST"]),
        Route(f"{one}/metadata", put_metadata, methods=["PUT"]),
        Route(f"{one}/metadata/{{key}}", get_metadata_key, methods=["GET"]),
        Route(f"{one}/metadata/{{key}}", put_metadata_key, methods=["PUT"]),
        Route(f"{one}/metadata/{{key}}", delete_metadata_key, methods=["DELETE"]),
    ]
