"""Server actions restore, forceDelete (Nova's os-deferred-delete) and createBackup (os-create-backup).

server_actions dispatches to the handlers here (ACTIONS, with their schemas in SCHEMAS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas.deferred_actions import SCHEMAS as SCHEMAS
from cumulo.compute.service import backup, softdelete
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_response

policy.register(
    {
        "compute:servers:restore": policy.MEMBER,
        "compute:servers:force_delete": policy.MEMBER,
        "compute:servers:create_backup": policy.MEMBER,
    }
)

Handler = Callable[[Request, RequestContext, ComputeService, dict[str, Any], Any], Awaitable[Response]]


async def _restore(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:restore")
    await softdelete.restore(svc, ctx, row)
    return empty(202)


async def _force_delete(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:force_delete")
    await softdelete.force_delete(svc, ctx, row)
    return empty(202)


async def _create_backup(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:create_backup")
    ver = _common.version(request)
    rotation = int(arg["rotation"])
    props = {str(k): str(val) for k, val in (arg.get("metadata") or {}).items()}
    if ver < v("2.39") and props:
        # Before 2.39 the image metadata quota applies (Nova's check_img_metadata_properties_quota).
        limit = (await _common.quota_service(request).limits(row["project_id"]))["metadata_items"]
        if 0 <= limit < len(props):
            raise errors.Forbidden("Image metadata limit exceeded")
    image_id = await backup.create_backup(svc, ctx, row, arg["name"].strip(), arg["backup_type"], rotation, props)
    if ver >= v("2.45"):
        return json_response({"image_id": image_id}, status=202)
    # Before 2.45: no body; a Location (the compute image proxy's URL) only when the backup is kept.
    headers = {"Location": f"{_common.api_root(request)}/images/{image_id}"} if rotation > 0 else None
    return empty(202, headers=headers)


ACTIONS: dict[str, Handler] = {
    "restore": _restore,
    "forceDelete": _force_delete,
    "createBackup": _create_backup,
}
