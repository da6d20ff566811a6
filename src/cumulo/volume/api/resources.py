"""Cinder's other collections: /types (+ extra_specs, access actions), /snapshots, /backups
(+ restore), /attachments (3.27+), /os-quota-sets and /limits."""

from __future__ import annotations

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

# ---- types -------------------------------------------------------------------------------------


async def list_types(request: Request) -> Response:
    call = await begin(request)
    is_public = call.params().get("is_public")
    flag = None
    if is_public is not None and is_public.lower() != "none" and call.ctx.is_admin:
        flag = records.boolean(is_public, "is_public")
    types = await call.svc.list_types(call.ctx, is_public=flag if call.ctx.is_admin else None)
    return json_response({"volume_types": [views.volume_type(t, call.ctx) for t in types]})


async def show_type(request: Request) -> Response:
    call = await begin(request)
    return json_response({"volume_type": views.volume_type(await call.svc.get_type(call.ctx, call.path("type_id")), call.ctx)})


async def create_type(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.create_type(call.ctx, records.unwrap(await body_of(request), "volume_type"))
    return json_response({"volume_type": views.volume_type(rec, call.ctx, qos=False)})


async def update_type(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.update_type(call.ctx, call.path("type_id"), records.unwrap(await body_of(request), "volume_type"))
    return json_response({"volume_type": views.volume_type(rec, call.ctx, qos=False, access=False)})


async def delete_type(request: Request) -> Response:
    call = await begin(request)
    await call.svc.delete_type(call.ctx, call.path("type_id"))
    return empty(202)


async def get_specs(request: Request) -> Response:
    call = await begin(request)
    return json_response({"extra_specs": await call.svc.get_extra_specs(call.ctx, call.path("type_id"))})


async def post_specs(request: Request) -> Response:
    call = await begin(request)
    body = await body_of(request)
    if not isinstance(body, dict) or "extra_specs" not in body:
        raise errors.Invalid("Missing required element 'extra_specs' in request body.")
    return json_response({"extra_specs": await call.svc.set_extra_specs(call.ctx, call.path("type_id"), body["extra_specs"])})


async def get_spec(request: Request) -> Response:
    call = await begin(request)
    specs = await call.svc.get_extra_specs(call.ctx, call.path("type_id"))
    key = call.path("key")
    if key not in specs:
        raise errors.NotFound(f"Volume Type {call.path('type_id')} has no extra specs with key {key}.")
    return json_response({key: specs[key]})


async def put_spec(request: Request) -> Response:
    call = await begin(request)
    body = await body_of(request)
    key = call.path("key")
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("Request body contains too many items" if isinstance(body, dict) and body else "Malformed request body")
    if key not in body:
        raise errors.Invalid("Request body and URI mismatch")
    await call.svc.set_extra_specs(call.ctx, call.path("type_id"), body)
    return json_response(body)


async def delete_spec(request: Request) -> Response:
    call = await begin(request)
    await call.svc.delete_extra_spec(call.ctx, call.path("type_id"), call.path("key"))
    return empty(202)


async def type_action(request: Request) -> Response:
    call = await begin(request)
    name, value = action_body(await body_of(request))
    if name not in ("addProjectAccess", "removeProjectAccess"):
        raise errors.Invalid(f"Invalid input received: There is no such action: {name[:64]}")
    project = obj(value, name, nullable=False).get("project")
    await call.svc.change_type_access(call.ctx, call.path("type_id"), project, add=name == "addProjectAccess")
    return empty(202)


async def type_access(request: Request) -> Response:
    call = await begin(request)
    return json_response({"volume_type_access": await call.svc.type_access(call.ctx, call.path("type_id"))})


# ---- snapshots -----------------------------------------------------------------------------------


async def _list_snapshots(request: Request, *, detail: bool) -> Response:
    call = await begin(request)
    page = await call.svc.list_snapshots(call.ctx, call.params())
    return json_response(listing(call, "snapshots", page, lambda s: views.snapshot(s, call.version, detail=detail)))


async def list_snapshots(request: Request) -> Response:
    return await _list_snapshots(request, detail=False)


async def list_snapshots_detail(request: Request) -> Response:
    return await _list_snapshots(request, detail=True)


async def create_snapshot(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.create_snapshot(call.ctx, await body_of(request))
    return json_response({"snapshot": views.snapshot(rec, call.version, detail=False)}, status=202)


async def show_snapshot(request: Request) -> Response:
    call = await begin(request)
    return json_response({"snapshot": views.snapshot(await call.svc.get_snapshot(call.ctx, call.path("snapshot_id")), call.version)})


async def update_snapshot(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.update_snapshot(call.ctx, call.path("snapshot_id"), await body_of(request))
    return json_response({"snapshot": views.snapshot(rec, call.version, detail=False)})


async def delete_snapshot(request: Request) -> Response:
    call = await begin(request)
    await call.svc.delete_snapshot(call.ctx, call.path("snapshot_id"))
    return empty(202)


async def snapshot_action(request: Request) -> Response:
    call = await begin(request)
    name, value = action_body(await body_of(request))
    sid = call.path("snapshot_id")
    if name == "os-force_delete":
        await call.svc.delete_snapshot(call.ctx, sid, force=True)
        return empty(202)
    if name == "os-reset_status":
        await call.svc.reset_snapshot_status(call.ctx, sid, obj(value, name, nullable=False))
        return empty(202)
    if name == "os-update_snapshot_status":
        await call.svc.update_snapshot_status(call.ctx, sid, obj(value, name, nullable=False))
        return empty(202)
    raise errors.Invalid(f"Invalid input received: There is no such action: {name[:64]}")


async def snapshot_metadata(request: Request) -> Response:
    call = await begin(request)
    if request.method == "GET":
        return json_response({"metadata": await call.svc.snapshot_metadata(call.ctx, call.path("snapshot_id"))})
    meta = await call.svc.snapshot_metadata(call.ctx, call.path("snapshot_id"), metadata_of(await body_of(request)),
                                            replace=request.method == "PUT")
    return json_response({"metadata": meta})


async def snapshot_metadata_key(request: Request) -> Response:
    """GET/PUT/DELETE /snapshots/{id}/metadata/{key} (PUT takes {"meta": {key: value}})."""
    call = await begin(request)
    sid, key = call.path("snapshot_id"), call.path("key")
    if request.method == "PUT":
        item = meta_item_of(await body_of(request), key)
        await call.svc.snapshot_metadata(call.ctx, sid, item)
        return json_response({"meta": item})
    meta = await call.svc.snapshot_metadata(call.ctx, sid)
    if key not in meta:
        raise errors.NotFound("Metadata item was not found")
    if request.method == "DELETE":
        rest = {k: v for k, v in meta.items() if k != key}
        await call.svc.snapshot_metadata(call.ctx, sid, rest, replace=True)
        return empty(200)
    return json_response({"meta": {key: meta[key]}})


# ---- backups -------------------------------------------------------------------------------------


async def _list_backups(request: Request, *, detail: bool) -> Response:
    call = await begin(request)
    page = await call.svc.list_backups(call.ctx, call.params())
    if detail:
        return json_response(listing(call, "backups", page,
                                     lambda b: views.backup_detail(b, call.base, call.version, call.ctx)))
    return json_response(listing(call, "backups", page, lambda b: views.backup_summary(b, call.base)))


async def list_backups(request: Request) -> Response:
    return await _list_backups(request, detail=False)


async def list_backups_detail(request: Request) -> Response:
    return await _list_backups(request, detail=True)


async def create_backup(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.create_backup(call.ctx, await body_of(request), version=call.version)
    return json_response({"backup": views.backup_summary(rec, call.base)}, status=202)


async def show_backup(request: Request) -> Response:
    call = await begin(request)
    rec = await call.svc.get_backup(call.ctx, call.path("backup_id"))
    return json_response({"backup": views.backup_detail(rec, call.base, call.version, call.ctx)})


async def update_backup(request: Request) -> Response:
    call = await begin(request)
    if not call.at_least(9):
        raise errors.NotFound("The resource could not be found.")
    rec = await call.svc.update_backup(call.ctx, call.path("backup_id"), await body_of(request))
    return json_response({"backup": views.backup_summary(rec, call.base)})


async def delete_backup(request: Request) -> Response:
    call = await begin(request)
    await call.svc.delete_backup(call.ctx, call.path("backup_id"))
    return empty(202)


async def restore_backup(request: Request) -> Response:
    call = await begin(request)
    out = await call.svc.restore_backup(call.ctx, call.path("backup_id"), await body_of(request))
    return json_response({"restore": out}, status=202)


async def backup_action(request: Request) -> Response:
    call = await begin(request)
    name, value = action_body(await body_of(request))
    if name == "os-force_delete":
        await call.svc.delete_backup(call.ctx, call.path("backup_id"), force=True)
        return empty(202)
    if name == "os-reset_status":
        await call.svc.reset_backup_status(call.ctx, call.path("backup_id"), obj(value, name, nullable=False))
        return empty(202)
    raise errors.Invalid(f"Invalid input received: There is no such action: {name[:64]}")


# ---- attachments (3.27+) -------------------------------------------------------------------------


def _needs_attachments(call: Call) -> None:
    if not call.at_least(27):
        raise errors.NotFound("The resource could not be found.")


async def _list_attachments(request: Request, *, detail: bool) -> Response:
    call = await begin(request)
    _needs_attachments(call)
    page = await call.svc.list_attachments(call.ctx, call.params())
    render = views.attachment_detail if detail else views.attachment_summary
    return json_response(listing(call, "attachments", page, render))


async def list_attachments(request: Request) -> Response:
    return await _list_attachments(request, detail=False)


async def list_attachments_detail(request: Request) -> Response:
    return await _list_attachments(request, detail=True)


async def create_attachment(request: Request) -> Response:
    call = await begin(request)
    _needs_attachments(call)
    rec = await call.svc.create_attachment(call.ctx, await body_of(request), version=call.version)
    return json_response({"attachment": views.attachment_detail(rec)})


async def show_attachment(request: Request) -> Response:
    call = await begin(request)
    _needs_attachments(call)
    return json_response({"attachment": views.attachment_detail(await call.svc.get_attachment(call.ctx, call.path("attachment_id")))})


async def update_attachment(request: Request) -> Response:
    call = await begin(request)
    _needs_attachments(call)
    rec = await call.svc.update_attachment(call.ctx, call.path("attachment_id"), await body_of(request))
    return json_response({"attachment": views.attachment_detail(rec)})


async def delete_attachment(request: Request) -> Response:
    call = await begin(request)
    _needs_attachments(call)
    await call.svc.delete_attachment(call.ctx, call.path("attachment_id"))
    return json_response({"attachments": []})


async def attachment_action(request: Request) -> Response:
    call = await begin(request)
    if not call.at_least(44):
        raise errors.NotFound("The resource could not be found.")
    name, _ = action_body(await body_of(request))
    if name != "os-complete":
        raise errors.Invalid(f"Invalid input received: There is no such action: {name[:64]}")
    await call.svc.complete_attachment(call.ctx, call.path("attachment_id"))
    return empty(204)


# ---- quotas and limits ---------------------------------------------------------------------------


async def show_quota(request: Request) -> Response:
    call = await begin(request)
    usage = records.boolean(call.params().get("usage", "false"), "usage")
    project = call.path("target_project")
    quota = await call.svc.get_quota_set(call.ctx, project, usage=usage)
    return json_response({"quota_set": {"id": project, **quota}})


async def show_default_quota(request: Request) -> Response:
    call = await begin(request)
    return json_response({"quota_set": {"id": call.path("target_project"), **await call.svc.default_quota_set(call.ctx)}})


async def update_quota(request: Request) -> Response:
    call = await begin(request)
    quota = await call.svc.update_quota_set(call.ctx, call.path("target_project"), await body_of(request))
    return json_response({"quota_set": quota})


async def delete_quota(request: Request) -> Response:
    call = await begin(request)
    await call.svc.delete_quota_set(call.ctx, call.path("target_project"))
    return empty(200)


async def limits(request: Request) -> Response:
    call = await begin(request)
    return json_response({"limits": {"rate": [], "absolute": await call.svc.absolute_limits(call.ctx)}})


# Cinder's API extensions (cinder/api/contrib) whose routes or attributes this API serves:
# (name, alias, description).
EXTENSIONS = (
    ("AdminActions", "os-admin-actions", "Enable admin actions."),
    ("AvailabilityZones", "os-availability-zone", "Describe Availability Zones."),
    ("Backups", "backups", "Backups support."),
    ("Capabilities", "capabilities", "Capabilities support."),
    ("ExtendedSnapshotAttributes", "os-extended-snapshot-attributes", "Extended SnapshotAttributes support."),
    ("Hosts", "os-hosts", "Admin-only host administration."),
    ("QuotaClasses", "os-quota-class-sets", "Quota classes management support."),
    ("Quotas", "os-quota-sets", "Quota management support."),
    ("SchedulerStats", "scheduler-stats", "Scheduler stats support."),
    ("Services", "os-services", "Services support."),
    ("SnapshotActions", "os-snapshot-actions", "Enable snapshot manager actions."),
    ("TypesExtraSpecs", "os-types-extra-specs", "Type extra specs support."),
    ("TypesManage", "os-types-manage", "Types manage support."),
    ("UsedLimits", "os-used-limits", "Provide data on limited resources that are being used."),
    ("VolumeActions", "os-volume-actions", "Enable volume actions."),
    ("VolumeHostAttribute", "os-vol-host-attr", "Expose host as an attribute of a volume."),
    ("VolumeImageMetadata", "os-vol-image-meta", "Show image metadata associated with the volume."),
    ("VolumeMigStatusAttribute", "os-vol-mig-status-attr", "Expose migration_status as an attribute of a volume."),
    ("VolumeTenantAttribute", "os-vol-tenant-attr", "Expose the internal project_id as an attribute of a volume."),
    ("VolumeTypeAccess", "os-volume-type-access", "Volume type access support."),
)


async def extensions(request: Request) -> Response:
    """GET /extensions: the Cinder API extensions this API serves."""
    await begin(request)
    return json_response({"extensions": [
        {"name": name, "alias": alias, "description": text, "links": [], "updated": "2013-01-01T00:00:00+00:00"}
        for name, alias, text in EXTENSIONS]})


async def availability_zones(request: Request) -> Response:
    """GET /os-availability-zone: the one zone, `nova` (Cinder's default storage_availability_zone)."""
    await begin(request)
    return json_response({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True}}]})


def routes(prefix: str) -> list[BaseRoute]:
    t = f"{prefix}/types/{{type_id}}"
    s = f"{prefix}/snapshots"
    b = f"{prefix}/backups"
    a = f"{prefix}/attachments"
    q = f"{prefix}/os-quota-sets/{{target_project}}"
    return [
        Route(f"{prefix}/types", list_types, methods=["GET"]),
        Route(f"{prefix}/types", create_type, methods=["POST"]),
        Route(t, show_type, methods=["GET"]),
        Route(t, update_type, methods=["PUT"]),
        Route(t, delete_type, methods=["DELETE"]),
        Route(f"{t}/action", type_action, methods=["POST"]),
        Route(f"{t}/os-volume-type-access", type_access, methods=["GET"]),
        Route(f"{t}/extra_specs", get_specs, methods=["GET"]),
        Route(f"{t}/extra_specs", post_specs, methods=["POST"]),
        Route(f"{t}/extra_specs/{{key}}", get_spec, methods=["GET"]),
        Route(f"{t}/extra_specs/{{key}}", put_spec, methods=["PUT"]),
        Route(f"{t}/extra_specs/{{key}}", delete_spec, methods=["DELETE"]),
        Route(s, list_snapshots, methods=["GET"]),
        Route(s, create_snapshot, methods=["POST"]),
        Route(f"{s}/detail", list_snapshots_detail, methods=["GET"]),
        Route(f"{s}/{{snapshot_id}}", show_snapshot, methods=["GET"]),
        Route(f"{s}/{{snapshot_id}}", update_snapshot, methods=["PUT"]),
        Route(f"{s}/{{snapshot_id}}", delete_snapshot, methods=["DELETE"]),
        Route(f"{s}/{{snapshot_id}}/action", snapshot_action, methods=["POST"]),
        Route(f"{s}/{{snapshot_id}}/metadata", snapshot_metadata, methods=["GET", "POST", "PUT"]),
        Route(f"{s}/{{snapshot_id}}/metadata/{{key}}", snapshot_metadata_key, methods=["GET", "PUT", "DELETE"]),
        Route(b, list_backups, methods=["GET"]),
        Route(b, create_backup, methods=["POST"]),
        Route(f"{b}/detail", list_backups_detail, methods=["GET"]),
        Route(f"{b}/{{backup_id}}", show_backup, methods=["GET"]),
        Route(f"{b}/{{backup_id}}", update_backup, methods=["PUT"]),
        Route(f"{b}/{{backup_id}}", delete_backup, methods=["DELETE"]),
        Route(f"{b}/{{backup_id}}/restore", restore_backup, methods=["POST"]),
        Route(f"{b}/{{backup_id}}/action", backup_action, methods=["POST"]),
        Route(a, list_attachments, methods=["GET"]),
        Route(a, create_attachment, methods=["POST"]),
        Route(f"{a}/detail", list_attachments_detail, methods=["GET"]),
        Route(f"{a}/{{attachment_id}}", show_attachment, methods=["GET"]),
        Route(f"{a}/{{attachment_id}}", update_attachment, methods=["PUT"]),
        Route(f"{a}/{{attachment_id}}", delete_attachment, methods=["DELETE"]),
        Route(f"{a}/{{attachment_id}}/action", attachment_action, methods=["POST"]),
        Route(q, show_quota, methods=["GET"]),
        Route(q, update_quota, methods=["PUT"]),
        Route(q, delete_quota, methods=["DELETE"]),
        Route(f"{q}/defaults", show_default_quota, methods=["GET"]),
        Route(f"{prefix}/limits", limits, methods=["GET"]),
        Route(f"{prefix}/extensions", extensions, methods=["GET"]),
        Route(f"{prefix}/os-availability-zone", availability_zones, methods=["GET"]),
    ]
