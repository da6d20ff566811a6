"""/v2.1/servers/{id}/os-volume_attachments: a server's volumes (Nova's VolumeAttachmentController).

GET lists them (limit/offset), GET .../{volume_id} shows one, POST attaches (200 with the
attachment: device, id, serverId, volumeId; tag from 2.70, delete_on_termination from 2.79; the
body takes tag from 2.49 and delete_on_termination from 2.79), PUT .../{volume_id} changes
delete_on_termination from 2.85 (swapping for another volume is refused: 403 without the admin's
swap policy, 400 when the new volume does not exist, else 409), DELETE .../{volume_id} detaches (202). The attach and detach finish on
the server's agent: poll the volume's status (in-use / available), as with Nova.
Faults are Nova's: volume or server not found 404, a volume in use / already attached / bad
device 400, locked server or wrong state 409, root volume detach 403.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.api.schemas._base import bool_from_string
from cumulo.compute.api.schemas.volume_attachments import CREATE, UPDATE
from cumulo.compute.service.volume_attachments import VolumeAttachmentService
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_response

PREFIX = "os_compute_api:os-volumes-attachments"
policy.register(
    {
        f"{PREFIX}:index": policy.READER,
        f"{PREFIX}:show": policy.READER,
        f"{PREFIX}:create": policy.MEMBER,
        f"{PREFIX}:update": policy.MEMBER,
        f"{PREFIX}:swap": policy.ADMIN,
        f"{PREFIX}:delete": policy.MEMBER,
    }
)


def view(row: dict[str, Any], server_id: str, ver: Version) -> dict[str, Any]:
    out: dict[str, Any] = {"device": row.get("device_name"), "id": row["volume_id"], "serverId": server_id,
                           "volumeId": row["volume_id"]}
    if ver >= v("2.70"):
        out["tag"] = row.get("tag")
    if ver >= v("2.79"):
        out["delete_on_termination"] = bool(row.get("delete_on_termination"))
    return out


async def _server(request: Request, action: str) -> tuple[RequestContext, dict[str, Any], VolumeAttachmentService]:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, f"{PREFIX}:{action}")
    return ctx, row, VolumeAttachmentService(svc)


async def index(request: Request) -> Response:
    _, row, svc = await _server(request, "index")
    ver = _common.version(request)
    items = _common.limited(request, await svc.of_server(row))
    return json_response({"volumeAttachments": [view(r, row["uuid"], ver) for r in items]})


async def show(request: Request) -> Response:
    _, row, svc = await _server(request, "show")
    bdm = await svc.get(row, request.path_params["volume_id"])
    return json_response({"volumeAttachment": view(bdm, row["uuid"], _common.version(request))})


async def create(request: Request) -> Response:
    ctx, row, svc = await _server(request, "create")
    data = await _common.body(request, CREATE)
    att = data["volumeAttachment"]
    ver = _common.version(request)
    bdm = await svc.attach(
        ctx, row, str(att["volumeId"]), device=att.get("device"), tag=att.get("tag"),
        delete_on_termination=bool_from_string(att.get("delete_on_termination", False), strict=True),
        multiattach_ok=ver >= v("2.60"))
    return json_response({"volumeAttachment": view(bdm, row["uuid"], ver)})


async def update(request: Request) -> Response:
    ctx, row, svc = await _server(request, "update")
    data = await _common.body(request, UPDATE)
    att = data["volumeAttachment"]
    volume_id = request.path_params["volume_id"]
    ver = _common.version(request)
    bdm = await svc.get(row, volume_id)
    if att["volumeId"] != volume_id:
        policy.authorize(ctx, f"{PREFIX}:swap")
        try:  # a new volume that does not exist is Nova's 400, before the refusal to swap at all
            await svc.client().get_volume(ctx, str(att["volumeId"]))
        except errors.NotFound as exc:
            raise errors.Invalid(str(exc)) from exc
        raise svc.refuse_swap(volume_id, str(att["volumeId"]))
    if ver < v("2.85"):
        raise errors.Invalid(f"The volume {volume_id} cannot be swapped with itself.")
    for key, current in (("device", bdm.get("device_name")), ("tag", bdm.get("tag")), ("serverId", row["uuid"]),
                         ("id", volume_id)):
        if key in att and att[key] != current:
            raise errors.Invalid(f"The {key} of the volume attachment cannot be changed (only delete_on_termination).")
    dot = att.get("delete_on_termination")
    await svc.update(ctx, row, volume_id, bool_from_string(dot, strict=True) if dot is not None else None)
    return empty(202)


async def delete(request: Request) -> Response:
    ctx, row, svc = await _server(request, "delete")
    await svc.detach(ctx, row, request.path_params["volume_id"])
    return empty(202)


ROUTES = [
    Route("/v2.1/servers/{server_id}/os-volume_attachments", index, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/os-volume_attachments", create, methods=["POST"]),
    Route("/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", show, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", update, methods=["PUT"]),
    Route("/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", delete, methods=["DELETE"]),
]
