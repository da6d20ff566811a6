"""Snapshots and backups of volumes: records, quotas and casts to the worker.

A snapshot is taken of an available volume (an in-use one with `force`, as in Cinder); a backup
of an available volume (in-use with `force`), the volume showing `backing-up` meanwhile. A
restore overwrites an existing available volume (`restoring-backup`) or makes a new one. Only
the caller's own volumes can be snapshotted or backed up: another project's is NotFound.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.volume import query, records, states
from cumulo.volume.actions import VolumeActions
from cumulo.volume.base import authorize, check_uuid, wants_all_tenants
from cumulo.volume.models import (
    backups,
    snapshot_metadata,
    snapshots,
    volume_admin_metadata,
    volume_metadata,
    volumes,
)

SNAPSHOT_SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "volume_id", "project_id")
SNAPSHOT_FILTERS = {
    "name": query.equals("name"),
    "status": query.equals("status"),
    "volume_id": query.equals("volume_id"),
    "project_id": query.equals("project_id"),
    "metadata": query.metadata_filter("metadata"),
}
# os-update_snapshot_status: the statuses a snapshot may report from each status (Cinder's table)
SNAPSHOT_STATUS_UPDATES = {
    states.CREATING: frozenset({states.CREATING, states.AVAILABLE, states.ERROR}),
    states.DELETING: frozenset({states.DELETING, states.ERROR_DELETING}),
}
BACKUP_SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "volume_id", "project_id")
BACKUP_FILTERS = {
    "name": query.equals("name"),
    "status": query.equals("status"),
    "volume_id": query.equals("volume_id"),
    "project_id": query.equals("project_id"),
}


class SnapshotsAndBackups(VolumeActions):
    """Snapshots (with metadata) and backups (create, restore, delete)."""

    # ---- snapshots --------------------------------------------------------------------------

    async def _snapshot_records(self, conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
        meta = await records.kv_of(conn, snapshot_metadata, "snapshot_id", [r.id for r in rows])
        return [{**dict(r._mapping), "metadata": meta[r.id]} for r in rows]

    async def create_snapshot(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        authorize(ctx, "snapshot:create")
        s = records.unwrap(body, "snapshot")
        if "volume_id" in s and s["volume_id"] is None:  # Cinder's schema allows null: the volume is not found
            raise errors.NotFound("Volume None could not be found.")
        volume_id = check_uuid(s.get("volume_id"), "volume_id")
        force = records.boolean(s.get("force", False), "force")
        name = records.text(s.get("name", s.get("display_name")), "name")
        description = records.text(s.get("description", s.get("display_description")), "description")
        meta = records.metadata(s["metadata"]) if s.get("metadata") is not None else {}
        snapshot_id = new_uuid()
        async with self.db.write() as conn:
            vol = await self.volume_row(conn, ctx, volume_id)
            allowed = states.allowed_from("snapshot_force" if force else "snapshot")
            states.check_status(vol.status, allowed, action="create snapshot")
            await self.check_quota(conn, vol.project_id, snapshots=1, gigabytes=vol.size)
            # CAS on the volume's own status: a concurrent delete or detach loses or wins, never both
            await states.transition(conn, volumes, vol.id, {vol.status}, {})
            await conn.execute(snapshots.insert().values(
                id=snapshot_id, project_id=vol.project_id, user_id=ctx.user_id, volume_id=vol.id, name=name,
                description=description, size=vol.size, status=states.CREATING, progress="0%", created_at=utcnow()))
            await records.write_kv(conn, snapshot_metadata, "snapshot_id", snapshot_id, meta, replace=True)
            row = (await conn.execute(sa.select(snapshots).where(snapshots.c.id == snapshot_id))).one()
            record = (await self._snapshot_records(conn, [row]))[0]
        await self._cast(snapshot_id, self.worker.create_snapshot(snapshot_id, vol.id), table=snapshots)
        return record

    async def list_snapshots(self, ctx: RequestContext, params: dict[str, str]) -> query.Page:
        authorize(ctx, "snapshot:get")
        all_tenants = wants_all_tenants(ctx, params)
        q = sa.select(snapshots)
        if not all_tenants:
            q = q.where(snapshots.c.project_id == ctx.project_id)
        async with self.db.read() as conn:
            items = await self._snapshot_records(conn, list((await conn.execute(q)).all()))
        return query.apply(items, params, allowed_sort=SNAPSHOT_SORT_KEYS, filters=SNAPSHOT_FILTERS)

    async def get_snapshot(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        authorize(ctx, "snapshot:get")
        async with self.db.read() as conn:
            row = await self.owned_row(conn, ctx, snapshots, "snapshot", snapshot_id)
            return (await self._snapshot_records(conn, [row]))[0]

    async def update_snapshot(self, ctx: RequestContext, snapshot_id: str, body: Any) -> dict[str, Any]:
        authorize(ctx, "snapshot:create")
        s = records.unwrap(body, "snapshot")
        values: dict[str, Any] = {}
        for field, aliases in (("name", ("name", "display_name")), ("description", ("description", "display_description"))):
            for alias in aliases:
                if alias in s:
                    values[field] = records.text(s[alias], alias)
        if not values:
            raise errors.Invalid("Invalid input received: The snapshot update needs name or description.")
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, snapshots, "snapshot", snapshot_id)
            await conn.execute(snapshots.update().where(snapshots.c.id == row.id).values(updated_at=utcnow(), **values))
            row = (await conn.execute(sa.select(snapshots).where(snapshots.c.id == row.id))).one()
            return (await self._snapshot_records(conn, [row]))[0]

    async def delete_snapshot(self, ctx: RequestContext, snapshot_id: str, *, force: bool = False) -> None:
        authorize(ctx, "volume:force_delete" if force else "snapshot:delete")
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, snapshots, "snapshot", snapshot_id)
            # Cinder: a forced delete takes any status (a snapshot stuck deleting is deleted again)
            allowed = states.SNAPSHOT_STATUSES if force else states.SNAPSHOT_DELETABLE
            states.check_status(row.status, allowed, what="snapshot", action="delete")
            await states.transition(conn, snapshots, row.id, allowed, {"status": states.DELETING}, what="snapshot")
        await self._cast(row.id, self.worker.delete_snapshot(row.id), table=snapshots)

    async def reset_snapshot_status(self, ctx: RequestContext, snapshot_id: str, body: Any) -> None:
        """os-reset_status (admin): any snapshot status, no check of the current one (Cinder's)."""
        authorize(ctx, "volume:reset_status")
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str) or status not in states.SNAPSHOT_STATUSES:
            raise errors.Invalid(f"Invalid input received: Invalid status: {str(status)[:32]}")
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, snapshots, "snapshot", snapshot_id)
            await conn.execute(snapshots.update().where(snapshots.c.id == row.id).values(updated_at=utcnow(), status=status))

    async def update_snapshot_status(self, ctx: RequestContext, snapshot_id: str, body: Any) -> None:
        """os-update_snapshot_status (the owner: Nova's assisted snapshots report through it): only
        Cinder's transitions, creating -> creating|available|error, deleting -> deleting|error_deleting;
        `progress` a percentage string."""
        authorize(ctx, "snapshot:create")
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise errors.Invalid("Invalid input received: 'status' must be specified.")
        status = body["status"]
        values: dict[str, Any] = {"status": status}
        if "progress" in body:
            values["progress"] = records.text(body["progress"], "progress", nullable=False)
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, snapshots, "snapshot", snapshot_id)
            allowed = SNAPSHOT_STATUS_UPDATES.get(row.status, frozenset())
            if status not in allowed:
                raise errors.Invalid(f"Invalid input received: Provided snapshot status {status[:32]} not allowed "
                                     f"for snapshot with status {row.status}.")
            await states.transition(conn, snapshots, row.id, {row.status}, values, what="snapshot")

    async def reset_backup_status(self, ctx: RequestContext, backup_id: str, body: Any) -> None:
        """Backups' os-reset_status (admin): available or error only, as Cinder allows."""
        authorize(ctx, "volume:reset_status")
        status = body.get("status") if isinstance(body, dict) else None
        if status not in (states.AVAILABLE, states.ERROR):
            raise errors.Invalid(f"Invalid input received: Invalid backup status {str(status)[:32]}: it must be "
                                 "available or error.")
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, backups, "backup", backup_id)
            await conn.execute(backups.update().where(backups.c.id == row.id).values(updated_at=utcnow(), status=status))

    async def snapshot_metadata(self, ctx: RequestContext, snapshot_id: str, items: Any = None, *,
                                replace: bool = False) -> dict[str, str]:
        """Read (items None) or write the snapshot's metadata."""
        authorize(ctx, "snapshot:get" if items is None else "snapshot:create")
        meta = records.metadata(items) if items is not None else None
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, snapshots, "snapshot", snapshot_id)
            if meta is not None:
                await records.write_kv(conn, snapshot_metadata, "snapshot_id", row.id, meta, replace=replace)
            return (await records.kv_of(conn, snapshot_metadata, "snapshot_id", [row.id]))[row.id]

    # ---- backups ----------------------------------------------------------------------------

    @staticmethod
    def _backup_record(row: Any, parents: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """A backup's record; `parents`: the ids of backups that incremental backups depend on."""
        rec = dict(row._mapping)
        rec["metadata"] = json.loads(rec.pop("metadata_json") or "{}")
        rec["has_dependent_backups"] = rec["id"] in parents
        return rec

    @staticmethod
    async def _parents(conn: Any) -> set[str]:
        return set(await conn.scalars(sa.select(backups.c.parent_id).where(backups.c.parent_id.is_not(None))))

    async def create_backup(self, ctx: RequestContext, body: Any, *, version: tuple[int, int]) -> dict[str, Any]:
        authorize(ctx, "backup:create")
        b = records.unwrap(body, "backup")
        volume_id = check_uuid(b.get("volume_id"), "volume_id")
        force = records.boolean(b.get("force", False), "force")
        # An incremental backup names its parent (the volume's latest available backup), which cannot be
        # deleted while it has one; its data is a full compressed copy all the same (restorable alone).
        incremental = records.boolean(b.get("incremental", False), "incremental")
        name = records.text(b.get("name"), "name")
        description = records.text(b.get("description"), "description")
        container = records.text(b.get("container"), "container")
        snapshot_id = check_uuid(b["snapshot_id"], "snapshot_id") if b.get("snapshot_id") is not None else None
        meta = records.metadata(b["metadata"]) if version >= (3, 43) and b.get("metadata") is not None else {}
        backup_id = new_uuid()
        async with self.db.write() as conn:
            vol = await self.volume_row(conn, ctx, volume_id)
            if snapshot_id is not None:
                snap = await self.owned_row(conn, ctx, snapshots, "snapshot", snapshot_id)
                if snap.volume_id != vol.id:
                    raise errors.Invalid(f"Invalid input received: Snapshot {snapshot_id} is not of volume {vol.id}.")
                states.check_status(snap.status, {states.AVAILABLE}, what="snapshot", action="back up")
            allowed = states.allowed_from("backup") if force else frozenset({states.AVAILABLE})
            states.check_status(vol.status, allowed, action="back up")
            parent_id = None
            if incremental:
                parent_id = await conn.scalar(
                    sa.select(backups.c.id).where(backups.c.volume_id == vol.id, backups.c.status == states.AVAILABLE,
                                                  backups.c.project_id == vol.project_id)  # not a former owner's
                    .order_by(backups.c.data_timestamp.desc(), backups.c.created_at.desc()).limit(1))
                if parent_id is None:
                    raise errors.Invalid("Invalid backup: No backups available to do an incremental backup.")
            await self.check_quota(conn, vol.project_id, backups=1, backup_gigabytes=vol.size)
            # the volume shows backing-up; the worker puts back its previous status (admin metadata)
            await states.transition(conn, volumes, vol.id, allowed, {"status": states.BACKING_UP})
            await records.write_kv(conn, volume_admin_metadata, "volume_id", vol.id,
                                   {"status_before_backup": vol.status}, replace=False)
            now = utcnow()
            await conn.execute(backups.insert().values(
                id=backup_id, project_id=vol.project_id, user_id=ctx.user_id, volume_id=vol.id, snapshot_id=snapshot_id,
                name=name, description=description, size=vol.size, object_count=0, status=states.CREATING,
                availability_zone=vol.availability_zone, container=container, is_incremental=incremental,
                parent_id=parent_id,
                data_timestamp=now, metadata_json=json.dumps(meta), created_at=now, updated_at=now))
            row = (await conn.execute(sa.select(backups).where(backups.c.id == backup_id))).one()
        await self._cast(vol.id, self.worker.create_backup(backup_id, vol.id, snapshot_id=snapshot_id))
        return self._backup_record(row)

    async def list_backups(self, ctx: RequestContext, params: dict[str, str]) -> query.Page:
        authorize(ctx, "backup:get")
        all_tenants = wants_all_tenants(ctx, params)
        q = sa.select(backups)
        if not all_tenants:
            q = q.where(backups.c.project_id == ctx.project_id)
        async with self.db.read() as conn:
            parents = await self._parents(conn)
            items = [self._backup_record(r, parents) for r in (await conn.execute(q)).all()]
        return query.apply(items, params, allowed_sort=BACKUP_SORT_KEYS, filters=BACKUP_FILTERS)

    async def get_backup(self, ctx: RequestContext, backup_id: str) -> dict[str, Any]:
        authorize(ctx, "backup:get")
        async with self.db.read() as conn:
            return self._backup_record(await self.owned_row(conn, ctx, backups, "backup", backup_id),
                                       await self._parents(conn))

    async def update_backup(self, ctx: RequestContext, backup_id: str, body: Any) -> dict[str, Any]:
        authorize(ctx, "backup:create")
        b = records.unwrap(body, "backup")
        values: dict[str, Any] = {}
        for field in ("name", "description"):
            if field in b:
                values[field] = records.text(b[field], field)
        if "metadata" in b:
            values["metadata_json"] = json.dumps(records.metadata(b["metadata"]))
        if not values:
            raise errors.Invalid("Invalid input received: The backup update needs name, description or metadata.")
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, backups, "backup", backup_id)
            await conn.execute(backups.update().where(backups.c.id == row.id).values(updated_at=utcnow(), **values))
            return self._backup_record((await conn.execute(sa.select(backups).where(backups.c.id == row.id))).one())

    async def delete_backup(self, ctx: RequestContext, backup_id: str, *, force: bool = False) -> None:
        authorize(ctx, "volume:force_delete" if force else "backup:delete")
        async with self.db.write() as conn:
            row = await self.owned_row(conn, ctx, backups, "backup", backup_id)
            if row.id in await self._parents(conn):
                raise errors.Invalid("Invalid backup: Incremental backups exist for this backup.")
            allowed = states.BACKUP_STATUSES - {states.DELETING} if force else states.BACKUP_DELETABLE
            if row.status not in allowed:
                raise errors.Invalid(f"Invalid backup: Backup status must be available or error, but current status is: {row.status}.")
            await states.transition(conn, backups, row.id, allowed, {"status": states.DELETING}, what="backup")
        await self._cast(row.id, self.worker.delete_backup(row.id), table=backups)

    async def restore_backup(self, ctx: RequestContext, backup_id: str, body: Any) -> dict[str, Any]:
        """Restore into `volume_id` (available, at least as big) or a new volume; {backup_id, volume_id, volume_name}."""
        authorize(ctx, "backup:restore")
        r = records.unwrap(body, "restore")
        name = records.text(r.get("name"), "name")
        target = check_uuid(r["volume_id"], "volume_id") if r.get("volume_id") is not None else None
        async with self.db.write() as conn:
            bak = await self.owned_row(conn, ctx, backups, "backup", backup_id)
            if bak.status != states.AVAILABLE:
                raise errors.Invalid(f"Invalid backup: Backup status must be available but current status is: {bak.status}.")
            if target is None:
                await self.check_quota(conn, ctx.project_id or "", volumes=1, gigabytes=bak.size)
                target = new_uuid()
                now = utcnow()
                await conn.execute(volumes.insert().values(
                    id=target, project_id=ctx.project_id, user_id=ctx.user_id,
                    name=name or f"restore_backup_{bak.id}", size=bak.size, status=states.RESTORING_BACKUP,
                    attach_status=states.DETACHED, availability_zone="nova",
                    volume_type_id=await self.default_type_id(conn), bootable=False, multiattach=False,
                    backup_id=bak.id, created_at=now, updated_at=now))
                vol_name = name or f"restore_backup_{bak.id}"
                # Cinder restores the volume metadata the backup saved; here it is taken from the backed-up
                # volume while that still exists (the backup record keeps no copy of it)
                src_meta = (await records.kv_of(conn, volume_metadata, "volume_id", [bak.volume_id]))[bak.volume_id]
                src_project = await conn.scalar(sa.select(volumes.c.project_id).where(volumes.c.id == bak.volume_id))
                if src_project != bak.project_id:  # transferred since: the metadata is another project's now
                    src_meta = {}
                await records.write_kv(conn, volume_metadata, "volume_id", target, src_meta, replace=True)
            else:
                vol = await self.volume_row(conn, ctx, target)
                states.check_status(vol.status, states.allowed_from("restore"), action="restore a backup into")
                if vol.size < bak.size:
                    raise errors.Invalid(
                        f"Invalid volume: volume size {vol.size} is too small to restore backup of size {bak.size}.")
                await states.transition(conn, volumes, vol.id, states.allowed_from("restore"),
                                        {"status": states.RESTORING_BACKUP})
                vol_name = vol.name
            await states.transition(conn, backups, bak.id, {states.AVAILABLE},
                                    {"status": "restoring", "restore_volume_id": target}, what="backup")
        await self._cast(target, self.worker.restore_backup(bak.id, target))
        return {"backup_id": bak.id, "volume_id": target, "volume_name": vol_name}
