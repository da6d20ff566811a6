"""Nova's os-volumes and os-snapshots over the volume service, below microversion 2.36 (404 from 2.36
on, as Nova: use the block-storage API).

Nova proxies Cinder and shows what its old volume extension showed: a volume as `id`, `status`,
`size`, `availabilityZone`, `createdAt`, `attachments` (`[{}]` when not attached; else the
attachment as os-volume_attachments shows it), `displayName`, `displayDescription`, `volumeType`,
`snapshotId`, `metadata`; a snapshot as `id`, `volumeId`, `status`, `size`, `createdAt`,
`displayName`, `displayDescription`. Create answers 200 with the new (creating) item, delete 202.
The volume service's refusals keep their codes (404 not found, 400 in use, 413 over quota).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute import volumes as vol
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas._base import bool_from_string
from cumulo.compute.api.schemas.volume_proxies import CREATE, SNAPSHOT_CREATE
from cumulo.context import RequestContext
from cumulo.db import isotime
from cumulo.web.http import empty, json_response

RULE = "os_compute_api:os-volumes"
policy.register(
    {
        f"{RULE}:list": policy.READER, f"{RULE}:detail": policy.READER, f"{RULE}:show": policy.READER,
        f"{RULE}:create": policy.MEMBER, f"{RULE}:delete": policy.MEMBER,
        f"{RULE}:snapshots:list": policy.READER, f"{RULE}:snapshots:detail": policy.READER,
        f"{RULE}:snapshots:show": policy.READER, f"{RULE}:snapshots:create": policy.MEMBER,
        f"{RULE}:snapshots:delete": policy.MEMBER,
    }
)

def _time(value: Any) -> Any:
    return isotime(value, micro=True) if value is not None and not isinstance(value, str) else value


def volume_view(volume: dict[str, Any]) -> dict[str, Any]:
    attached = [a for a in volume.get("attachments") or [] if a.get("instance_uuid")]
    attachments: list[dict[str, Any]] = [{}]
    if attached:
        a = attached[0]
        item = {"id": volume["id"], "volumeId": volume["id"], "serverId": a["instance_uuid"]}
        if a.get("mountpoint"):
            item["device"] = a["mountpoint"]
        attachments = [item]
    return {
        "id": volume["id"], "status": volume["status"], "size": volume["size"],
        "availabilityZone": volume.get("availability_zone"), "createdAt": _time(volume.get("created_at")),
        "attachments": attachments, "displayName": volume.get("name"),
        "displayDescription": volume.get("description"), "volumeType": volume.get("volume_type"),
        "snapshotId": volume.get("snapshot_id"), "metadata": dict(volume.get("metadata") or {}),
    }


def snapshot_view(snap: dict[str, Any]) -> dict[str, Any]:
    return {"id": snap["id"], "volumeId": snap["volume_id"], "status": snap["status"], "size": snap["size"],
            "createdAt": _time(snap.get("created_at")), "displayName": snap.get("name"),
            "displayDescription": snap.get("description")}


async def _caller(request: Request, rule: str) -> tuple[RequestContext, vol.VolumeClient]:
    if _common.version(request) >= v("2.36"):
        raise errors.NotFound("The resource could not be found.")
    ctx = await _common.caller(request)
    policy.authorize(ctx, f"{RULE}:{rule}")
    client = _common.compute_service(request).volumes
    if client is None:
        raise errors.NotFound("The resource could not be found.")
    return ctx, client


async def list_volumes(request: Request) -> Response:
    detail = request.url.path.endswith("/detail")
    ctx, client = await _caller(request, "detail" if detail else "list")
    items = _common.limited(request, await client.list_volumes(ctx))
    return json_response({"volumes": [volume_view(i) for i in items]})


async def show_volume(request: Request) -> Response:
    ctx, client = await _caller(request, "show")
    return json_response({"volume": volume_view(await client.get_volume(ctx, request.path_params["volume_id"]))})


async def create_volume(request: Request) -> Response:
    ctx, client = await _caller(request, "create")
    body = (await _common.body(request, CREATE))["volume"]
    made = await client.create_volume(
        ctx, size_gb=int(body["size"]), name=body.get("display_name") or "",
        description=body.get("display_description") or "", snapshot_id=body.get("snapshot_id"),
        volume_type=body.get("volume_type"), availability_zone=body.get("availability_zone"),
        metadata=body.get("metadata"))
    return json_response({"volume": volume_view(made)})


async def delete_volume(request: Request) -> Response:
    ctx, client = await _caller(request, "delete")
    await client.delete_volume(ctx, request.path_params["volume_id"])
    return empty(202)


async def list_snapshots(request: Request) -> Response:
    detail = request.url.path.endswith("/detail")
    ctx, client = await _caller(request, "snapshots:detail" if detail else "snapshots:list")
    items = _common.limited(request, await client.list_snapshots(ctx))
    return json_response({"snapshots": [snapshot_view(i) for i in items]})


async def show_snapshot(request: Request) -> Response:
    ctx, client = await _caller(request, "snapshots:show")
    snap = await client.get_snapshot(ctx, request.path_params["snapshot_id"])
    return json_response({"snapshot": snapshot_view(snap)})


async def create_snapshot(request: Request) -> Response:
    ctx, client = await _caller(request, "snapshots:create")
    body = (await _common.body(request, SNAPSHOT_CREATE))["snapshot"]
    made = await client.create_snapshot(
        ctx, str(body["volume_id"]), name=body.get("display_name") or "",
        description=body.get("display_description") or "",
        force=bool_from_string(body.get("force", False), strict=True))
    return json_response({"snapshot": snapshot_view(made)})


async def delete_snapshot(request: Request) -> Response:
    ctx, client = await _caller(request, "snapshots:delete")
    await client.delete_snapshot(ctx, request.path_params["snapshot_id"])
    return empty(202)


async def no_id(request: Request) -> Response:
    """An empty id (`os-volumes/`): 404 as Nova, not the router's redirect to the list."""
    raise errors.NotFound("The resource could not be found.")


ROUTES = [
    Route("/v2.1/os-volumes/", no_id, methods=["GET", "DELETE"]),
    Route("/v2.1/os-snapshots/", no_id, methods=["GET", "DELETE"]),
    Route("/v2.1/os-volumes", list_volumes, methods=["GET"]),
    Route("/v2.1/os-volumes/detail", list_volumes, methods=["GET"]),
    Route("/v2.1/os-volumes", create_volume, methods=["POST"]),
    Route("/v2.1/os-volumes/{volume_id}", show_volume, methods=["GET"]),
    Route("/v2.1/os-volumes/{volume_id}", delete_volume, methods=["DELETE"]),
    Route("/v2.1/os-snapshots", list_snapshots, methods=["GET"]),
    Route("/v2.1/os-snapshots/detail", list_snapshots, methods=["GET"]),
    Route("/v2.1/os-snapshots", create_snapshot, methods=["POST"]),
    Route("/v2.1/os-snapshots/{snapshot_id}", show_snapshot, methods=["GET"]),
    Route("/v2.1/os-snapshots/{snapshot_id}", delete_snapshot, methods=["DELETE"]),
]
