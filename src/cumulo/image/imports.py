"""Glance's interoperable import, glance-direct only: PUT /v2/images/{id}/stage streams the bytes
into the store (queued → saving → uploading; archives and disk formats are checked as for PUT /file,
a refusal is the stage's 415), then
POST /v2/images/{id}/import with {"method": {"name": "glance-direct"}} makes them the image's data
(uploading → importing → active) and records an `api_image_import` task, which
GET /v2/images/{id}/tasks (2.12) and the admin's /v2/tasks show.

The other methods are absent on purpose: web-download and glance-download would make the cloud
fetch a URL (or another region's image) on a caller's behalf; copy-image needs several stores, and
there is one."""

from __future__ import annotations

from typing import Any

import jsonschema
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors, policy
from cumulo.context import RequestContext
from cumulo.db import isotime, new_uuid, utcnow
from cumulo.image import _upload
from cumulo.image.deps import services_of
from cumulo.image.models import image_tasks
from cumulo.image.service import ImageService
from cumulo.web.http import authenticate, empty, json_body

METHODS = ("glance-direct",)
ABSENT = ("web-download", "glance-download", "copy-image")

_IMPORT = jsonschema.Draft4Validator(
    {
        "type": "object",
        "properties": {
            "method": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "stores": {"type": "array", "items": {"type": "string"}},
            "all_stores": {"type": "boolean"},
            "all_stores_must_succeed": {"type": "boolean"},
        },
        "required": ["method"],
    }
)


def render_task(row: Any, *, view: str = "image") -> dict[str, Any]:
    """A task as GET /v2/images/{id}/tasks gives it (Glance's task row), or as the tasks API shows
    it: `view="list"` (summary) or `"show"` (with input, result and message), both with links."""
    task: dict[str, Any] = {
        "id": row["id"],
        "type": row["type"],
        "status": row["status"],
        "owner": row["owner"],
        "expires_at": isotime(row["expires_at"]),
        "created_at": isotime(row["created_at"]),
        "updated_at": isotime(row["updated_at"]),
    }
    if view == "image":
        task.update({
            "deleted_at": None, "deleted": False, "image_id": row["image_id"], "request_id": row["request_id"],
            "user_id": row["user_id"], "input": row["input"], "result": row["result"], "message": row["message"],
        })
        return task
    if view == "show":
        task.update({"input": row["input"], "result": row["result"], "message": row["message"]})
    task.update({"self": f"/v2/tasks/{row['id']}", "schema": "/v2/schemas/task"})
    return task


def _svc(request: Request) -> ImageService:
    return services_of(request).images


async def stage(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "image:upload_image")
    await _upload.receive(request, _svc(request), ctx, final="uploading")
    return empty(204)


async def import_image(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "image:modify_image")
    body = await json_body(request)
    error = jsonschema.exceptions.best_match(_IMPORT.iter_errors(body))
    if error is not None:
        raise errors.Invalid(f"Provided object does not match schema 'import': {error.message}")
    method = body["method"]["name"]
    if method in ABSENT:
        raise errors.Invalid(f"Import method {method} is not supported by this cloud; use glance-direct "
                             "(PUT /v2/images/{image_id}/stage, then import) or upload with PUT /file.")
    if method not in METHODS:
        raise errors.Invalid(f"Unknown import method name '{method}'.")
    # `stores` / `all_stores` are ignored, as a single-store Glance ignores them: the one store is all of them.
    await run_glance_direct(_svc(request), ctx, request.path_params["image_id"], body,
                            request.scope.get("cumulo.request_id"))
    return empty(202)


async def run_glance_direct(
    svc: ImageService, ctx: RequestContext, image_id: str, import_req: dict[str, Any], request_id: str | None
) -> None:
    """uploading → importing → active, with its task. The staged bytes are already in the store
    (content-addressed), so the import is a state change: done before the 202, task "success"."""
    now = utcnow()
    task_id = new_uuid()
    async with svc.db.write() as conn:
        row = await svc.load_owned(conn, ctx, image_id, "import_image")
        if row["status"] == "active":
            raise errors.Conflict("Image with status active cannot be target for import")
        if row["status"] != "uploading":
            raise errors.Conflict("Image needs to be staged before 'glance-direct' method can be used")
        if not await svc.set_status(conn, image_id, ("uploading",), "importing"):  # a concurrent import won
            raise errors.Conflict("Image needs to be staged before 'glance-direct' method can be used")
        await conn.execute(
            sa.insert(image_tasks).values(
                id=task_id, type="api_image_import", status="processing", owner=row["owner"], image_id=image_id,
                request_id=request_id, user_id=ctx.user_id,
                input={"image_id": image_id, "import_req": import_req, "backend": None},
                result=None, message="", created_at=now, updated_at=now,
            )
        )
    async with svc.db.write() as conn:
        done = await svc.set_status(conn, image_id, ("importing",), "active")
        await conn.execute(
            sa.update(image_tasks).where(image_tasks.c.id == task_id).values(
                status="success" if done else "failure", updated_at=utcnow(),
                result={"image_id": image_id} if done else None,
                message="" if done else "The image was deleted during the import.",
            )
        )


async def tasks_of_image(svc: ImageService, ctx: RequestContext, image_id: str) -> list[dict[str, Any]]:
    async with svc.db.read() as conn:
        await svc.load(conn, ctx, image_id)  # 404 unless visible
        q = sa.select(image_tasks).where(image_tasks.c.image_id == image_id).order_by(image_tasks.c.created_at)
        return [render_task(r) for r in (await conn.execute(q)).mappings()]


async def all_tasks(svc: ImageService) -> list[dict[str, Any]]:
    async with svc.db.read() as conn:
        q = sa.select(image_tasks).order_by(image_tasks.c.created_at.desc())
        return [render_task(r, view="list") for r in (await conn.execute(q)).mappings()]


async def one_task(svc: ImageService, task_id: str) -> dict[str, Any] | None:
    async with svc.db.read() as conn:
        row = (await conn.execute(sa.select(image_tasks).where(image_tasks.c.id == task_id))).mappings().first()
        return render_task(row, view="show") if row is not None else None


ROUTES: list[BaseRoute] = [
    Route("/v2/images/{image_id}/stage", stage, methods=["PUT"]),
    Route("/v2/images/{image_id}/import", import_image, methods=["POST"]),
]
