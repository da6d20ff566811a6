"""Cinder's response bodies, by microversion (cinder/api/v3/views): volumes, types, snapshots,
backups, attachments. Fields a later microversion adds appear only from that version on; the
admin-only attributes (os-vol-host-attr:host, migration status, provider_id, cluster_name,
qos_specs_id, the backup's project) only for the admin."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cumulo.context import RequestContext
from cumulo.volume.scheduling import BACKEND

Version = tuple[int, int]
# Extra specs a non-admin sees (Cinder's user-visible ones).
USER_VISIBLE_SPECS = ("multiattach", "RESKEY:availability_zones", "replication_enabled")
# Admin metadata Cinder shows inside a volume's metadata (utils.add_visible_admin_metadata).
VISIBLE_ADMIN_METADATA = ("readonly", "attached_mode")


def when(value: dt.datetime | None) -> str | None:
    """Cinder's timestamps: ISO 8601 with microseconds, no zone."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def links(base: str, project_id: str, collection: str, item_id: str) -> list[dict[str, str]]:
    root = base.rsplit("/v3", 1)[0]
    return [
        {"href": f"{base}/{project_id}/{collection}/{item_id}", "rel": "self"},
        {"href": f"{root}/{project_id}/{collection}/{item_id}", "rel": "bookmark"},
    ]


def volume_summary(rec: dict[str, Any], base: str) -> dict[str, Any]:
    return {"id": rec["id"], "links": links(base, rec["project_id"], "volumes", rec["id"]), "name": rec["name"]}


def attachment_in_volume(a: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return {
        "server_id": a["instance_uuid"],
        "attachment_id": a["id"],
        "attached_at": when(a.get("attach_time")),
        # Cinder shows the host only to the admin and the service role
        "host_name": a["attached_host"] if ctx.is_admin or ctx.has_role("service") else None,
        "volume_id": a["volume_id"],
        "device": a["mountpoint"],
        "id": a["volume_id"],
    }


def volume_detail(rec: dict[str, Any], base: str, version: Version, ctx: RequestContext, *,
                  extended: bool = True) -> dict[str, Any]:
    """A volume; `extended` adds what Cinder's show/detail extensions add (os-vol-tenant-attr,
    os-vol-host-attr, os-vol-mig-status-attr, volume_image_metadata): not in create/update answers."""
    out: dict[str, Any] = {
        "attachments": [attachment_in_volume(a, ctx) for a in rec["attachments"]],
        "availability_zone": rec["availability_zone"],
        "bootable": "true" if rec["bootable"] else "false",
        "consistencygroup_id": None,
        "created_at": when(rec["created_at"]),
        "description": rec["description"],
        "encrypted": bool(rec["encrypted"]),
        "id": rec["id"],
        "links": links(base, rec["project_id"], "volumes", rec["id"]),
        "metadata": {**rec["metadata"], **{k: v for k, v in rec["admin_metadata"].items() if k in VISIBLE_ADMIN_METADATA}},
        "multiattach": bool(rec["multiattach"]),
        "name": rec["name"],
        "replication_status": None,
        "size": rec["size"],
        "snapshot_id": rec["snapshot_id"],
        "source_volid": rec["source_volid"],
        "status": rec["status"],
        "updated_at": when(rec["updated_at"]),
        "user_id": rec["user_id"],
        "volume_type": rec["volume_type"],
    }
    if ctx.is_admin:
        out["migration_status"] = rec["migration_status"]
    if extended:
        out["os-vol-tenant-attr:tenant_id"] = rec["project_id"]
        if rec["image_metadata"]:
            out["volume_image_metadata"] = rec["image_metadata"]
    if extended and ctx.is_admin:
        # Cinder's host@backend#pool
        out["os-vol-host-attr:host"] = f"{rec['host']}@{BACKEND}#{BACKEND}" if rec["host"] else None
        out["os-vol-mig-status-attr:migstat"] = rec["migration_status"]
        out["os-vol-mig-status-attr:name_id"] = None
    if version >= (3, 13):
        out["group_id"] = None
    if version >= (3, 21) and ctx.is_admin:
        out["provider_id"] = None
    if version >= (3, 48):
        out["service_uuid"] = None
        out["shared_targets"] = False  # a local file: no target shared between volumes
    if version >= (3, 61) and ctx.is_admin:
        out["cluster_name"] = None
    if version >= (3, 63):
        out["volume_type_id"] = rec["volume_type_id"]
    if version >= (3, 65):  # (3.64's encryption_key_id appears only on encrypted volumes: none here)
        out["consumes_quota"] = True
    return out


def volume_type(rec: dict[str, Any], ctx: RequestContext, *, qos: bool = True, access: bool = True) -> dict[str, Any]:
    """A volume type; the admin's show and list add qos_specs_id (not the create/update answers),
    and the update answer lacks os-volume-type-access:is_public (Cinder's)."""
    specs = rec["extra_specs"]
    if not ctx.is_admin:
        specs = {k: v for k, v in specs.items() if k in USER_VISIBLE_SPECS}
    out: dict[str, Any] = {
        "id": rec["id"],
        "name": rec["name"],
        "description": rec["description"],
        "is_public": bool(rec["is_public"]),
        "os-volume-type-access:is_public": bool(rec["is_public"]),
        "extra_specs": specs,
    }
    if ctx.is_admin and qos:
        out["qos_specs_id"] = None
    if not access:
        del out["os-volume-type-access:is_public"]
    return out


def snapshot(rec: dict[str, Any], version: Version, *, detail: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rec["id"],
        "created_at": when(rec["created_at"]),
        "updated_at": when(rec["updated_at"]),
        "name": rec["name"],
        "description": rec["description"],
        "volume_id": rec["volume_id"],
        "status": rec["status"],
        "size": rec["size"],
        "metadata": rec["metadata"],
    }
    if detail:
        out["os-extended-snapshot-attributes:project_id"] = rec["project_id"]
        out["os-extended-snapshot-attributes:progress"] = rec["progress"]
    if version >= (3, 14):
        out["group_snapshot_id"] = rec["group_snapshot_id"]
    if version >= (3, 41):
        out["user_id"] = rec["user_id"]
    if version >= (3, 65):
        out["consumes_quota"] = True
    return out


def backup_summary(rec: dict[str, Any], base: str) -> dict[str, Any]:
    return {"id": rec["id"], "links": links(base, rec["project_id"], "backups", rec["id"]), "name": rec["name"]}


def backup_detail(rec: dict[str, Any], base: str, version: Version, ctx: RequestContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "availability_zone": rec["availability_zone"],
        "container": rec["container"],
        "created_at": when(rec["created_at"]),
        "data_timestamp": when(rec["data_timestamp"]),
        "description": rec["description"],
        "fail_reason": rec["fail_reason"],
        "has_dependent_backups": bool(rec.get("has_dependent_backups", False)),
        "id": rec["id"],
        "is_incremental": bool(rec["is_incremental"]),
        "links": links(base, rec["project_id"], "backups", rec["id"]),
        "name": rec["name"],
        "object_count": rec["object_count"],
        "size": rec["size"],
        "snapshot_id": rec["snapshot_id"],
        "status": rec["status"],
        "updated_at": when(rec["updated_at"]),
        "volume_id": rec["volume_id"],
    }
    if version >= (3, 18) and ctx.is_admin:
        out["os-backup-project-attr:project_id"] = rec["project_id"]
    if version >= (3, 43):
        out["metadata"] = rec["metadata"]
    if version >= (3, 51):
        out["encryption_key_id"] = None
    if version >= (3, 56):
        out["user_id"] = rec["user_id"]
    return out


def attachment_summary(rec: dict[str, Any]) -> dict[str, Any]:
    return {"id": rec["id"], "status": rec["status"], "instance": rec["instance"], "volume_id": rec["volume_id"]}


def attachment_detail(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        **attachment_summary(rec),
        "attached_at": when(rec.get("attach_time")),
        "detached_at": when(rec.get("detach_time")),
        "attach_mode": rec["attach_mode"],
        "connection_info": rec["connection_info"],
    }
