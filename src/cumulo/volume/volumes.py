"""Volumes: create (blank, from a snapshot, a clone, from an image, from a backup), list, show,
update, delete and metadata.

A create records the volume (`creating`), counts it against the project's quota in the same
transaction, and casts to the worker after the commit; the API answers 202 at once. A volume's
source (snapshot, volume, backup, image) must be one the caller can see: another project's is
NotFound, so nobody clones or restores what they could not read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.bus.base import BusUnavailable
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.volume import message_events as messages
from cumulo.volume import query, records, scheduling, states
from cumulo.volume.base import MAX_SIZE_GB, authorize, check_uuid, wants_all_tenants
from cumulo.volume.models import (
    backups,
    snapshots,
    volume_admin_metadata,
    volume_image_metadata,
    volume_metadata,
    volume_type_extra_specs,
    volume_types,
    volumes,
)
from cumulo.volume.types import VolumeTypes, is_true_spec
from cumulo.volume.worker_api import ImageSource

LOG = logging.getLogger(__name__)
GIB = 1 << 30
AVAILABILITY_ZONE = "nova"

VOLUME_SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "availability_zone",
                    "bootable", "project_id", "volume_type", "volume_type_id")
VOLUME_FILTERS = {
    "name": query.equals("name"),
    "status": query.equals("status"),
    "bootable": query.equals("bootable"),
    "availability_zone": query.equals("availability_zone"),
    "volume_type": query.equals("volume_type"),
    "project_id": query.equals("project_id"),
    "metadata": query.metadata_filter("metadata"),
    "image_metadata": query.metadata_filter("image_metadata"),
    "glance_metadata": query.metadata_filter("image_metadata"),
    "group_id": query.equals("group_id"),
}
IN_USE_MESSAGE = (
    "Invalid volume: Volume status must be available or error or error_restoring or error_extending or "
    "error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a "
    "transfer, or be disassociated from snapshots after volume transfer."
)


class Volumes(VolumeTypes):
    """Volume records and their metadata."""

    images: ImageSource | None = None  # wave 2: the image service behind the ImageSource seam

    # ---- create -----------------------------------------------------------------------------

    async def create_volume(self, ctx: RequestContext, body: Any, *, version: tuple[int, int] = (3, 0)) -> dict[str, Any]:
        authorize(ctx, "volume:create")
        v = records.unwrap(body, "volume")
        name = records.text(v.get("name", v.get("display_name")), "name")
        description = records.text(v.get("description", v.get("display_description")), "description")
        sources = {k: v.get(k) for k in ("snapshot_id", "source_volid", "backup_id") if v.get(k) is not None}
        image_ref = v.get("imageRef", v.get("image_id"))
        if image_ref is not None:
            sources["imageRef"] = image_ref
        if "backup_id" in sources and version < (3, 47):
            raise errors.Invalid("Invalid input received: backup_id requires microversion 3.47 or later.")
        if len(sources) > 1:
            raise errors.Invalid(
                "Invalid input received: Only one of snapshot_id, source_volid, imageRef or backup_id may be "
                f"given (got {', '.join(sorted(sources))}).")
        ids = {k: check_uuid(val, k) for k, val in sources.items() if k != "imageRef"}
        image_id = check_uuid(image_ref, "imageRef") if image_ref is not None else None
        size = records.size(v["size"]) if v.get("size") is not None else None
        if size is None and not ids:
            raise errors.Invalid("Invalid input received: Size must be specified for a blank volume or a volume from an image.")
        az = v.get("availability_zone")
        if az is not None and az != AVAILABILITY_ZONE:
            raise errors.Invalid(f"Invalid input received: Availability zone '{str(az)[:64]}' is invalid.")
        meta = records.metadata(v["metadata"]) if v.get("metadata") is not None else {}
        multiattach = records.boolean(v["multiattach"], "multiattach") if "multiattach" in v else False
        image = await self._image(ctx, image_id) if image_id else None
        volume_id = new_uuid()
        async with self.db.write() as conn:
            type_id = None
            source_type_id = None
            # a clone or a volume from a snapshot inherits the source volume's bootable flag and image
            # metadata (Cinder copies its glance metadata)
            source_volume: str | None = None
            if "snapshot_id" in ids:
                snap = await self.owned_row(conn, ctx, snapshots, "snapshot", ids["snapshot_id"])
                states.check_status(snap.status, {states.AVAILABLE}, what="snapshot")
                size = self._at_least(size, snap.size, "snapshot")
                source_type_id = await conn.scalar(sa.select(volumes.c.volume_type_id).where(volumes.c.id == snap.volume_id))
                owner = await conn.scalar(sa.select(volumes.c.project_id).where(volumes.c.id == snap.volume_id))
                # a volume transferred without its snapshots is another project's now: nothing of it is copied
                source_volume = snap.volume_id if owner == snap.project_id else None
            elif "source_volid" in ids:
                src = await self.volume_row(conn, ctx, ids["source_volid"])
                states.check_status(src.status, states.allowed_from("clone"), action="clone")
                size = self._at_least(size, src.size, "source volume")
                source_type_id = src.volume_type_id
                multiattach = multiattach or src.multiattach
                source_volume = src.id
            bootable = image is not None
            source_image_meta: dict[str, str] = {}
            if source_volume is not None:
                bootable = bool(await conn.scalar(sa.select(volumes.c.bootable).where(volumes.c.id == source_volume)))
                source_image_meta = (await records.kv_of(conn, volume_image_metadata, "volume_id",
                                                         [source_volume]))[source_volume]
            elif "backup_id" in ids:
                bak = await self.owned_row(conn, ctx, backups, "backup", ids["backup_id"])
                states.check_status(bak.status, states.BACKUP_RESTORABLE, what="backup")
                size = self._at_least(size, bak.size, "backup")
            elif image is not None:
                need = max(int(image.get("min_disk") or 0), math.ceil(int(image.get("size") or 0) / GIB))
                assert size is not None
                if size < need:
                    raise errors.Invalid(
                        f"Invalid input received: Size of specified image {need}GB is larger than volume size {size}GB.")
            assert size is not None
            if size > MAX_SIZE_GB:
                raise errors.Invalid(f"Invalid input received: size {size} is larger than {MAX_SIZE_GB} GiB.")
            if v.get("volume_type") is not None:
                type_id = (await self.type_row(conn, ctx, v["volume_type"])).id
            else:
                type_id = source_type_id or await self.default_type_id(conn)
            specs = (await records.kv_of(conn, volume_type_extra_specs, "volume_type_id", [type_id]))[type_id]
            multiattach = multiattach or is_true_spec(specs.get("multiattach"))
            # Cinder's scheduler: a type the one backend cannot satisfy leaves the volume in error
            no_backend = scheduling.unmet(specs)
            type_name = await conn.scalar(sa.select(volume_types.c.name).where(volume_types.c.id == type_id))
            await self.check_quota(conn, ctx.project_id or "", volumes=1, gigabytes=size,
                                   **{f"volumes_{type_name}": 1, f"gigabytes_{type_name}": size})
            now = utcnow()
            await conn.execute(volumes.insert().values(
                id=volume_id, project_id=ctx.project_id, user_id=ctx.user_id, name=name, description=description,
                size=size, status=states.ERROR if no_backend else states.CREATING, attach_status=states.DETACHED,
                availability_zone=AVAILABILITY_ZONE,
                volume_type_id=type_id, bootable=bootable, multiattach=multiattach,
                source_volid=ids.get("source_volid"), snapshot_id=ids.get("snapshot_id"), image_id=image_id,
                backup_id=ids.get("backup_id"), created_at=now, updated_at=now,
                error_message=f"No valid backend was found: the backend does not satisfy {no_backend}"[:255]
                if no_backend else None,
            ))
            await records.write_kv(conn, volume_metadata, "volume_id", volume_id, meta, replace=True)
            if image is not None or source_image_meta:
                await records.write_kv(conn, volume_image_metadata, "volume_id", volume_id,
                                       self._image_metadata(image) if image is not None else source_image_meta,
                                       replace=True)
            if no_backend:
                await messages.post(conn, volumes, volume_id, messages.Event(
                    messages.SCHEDULE_ALLOCATE_VOLUME, messages.NO_BACKEND_AVAILABLE,
                    f"No valid backend was found: the backend does not satisfy {no_backend}"), request_id=ctx.request_id)
            elif "backup_id" in ids:
                await states.transition(conn, backups, ids["backup_id"], states.BACKUP_RESTORABLE,
                                        {"status": "restoring", "restore_volume_id": volume_id}, what="backup")
            record = await records.load_one(conn, volume_id)
        if no_backend:
            return record
        async def undo() -> None:  # the broker away: the volume never existed (503, a retry starts clean)
            async with self.db.write() as conn:
                for table in (volume_metadata, volume_image_metadata, volume_admin_metadata):
                    await conn.execute(table.delete().where(table.c.volume_id == volume_id))
                await conn.execute(volumes.delete().where(volumes.c.id == volume_id))
                if "backup_id" in ids:
                    await conn.execute(backups.update().where(backups.c.id == ids["backup_id"]).values(
                        status=states.AVAILABLE, restore_volume_id=None, updated_at=utcnow()))

        await self._cast(volume_id, self.worker.create_volume(
            volume_id, size, snapshot_id=ids.get("snapshot_id"), source_volid=ids.get("source_volid"),
            image_id=image_id, backup_id=ids.get("backup_id")), undo=undo)
        return record

    @staticmethod
    def _at_least(size: int | None, source_size: int, what: str) -> int:
        if size is None:
            return source_size
        if size < source_size:
            raise errors.Invalid(
                f"Invalid input received: Volume size '{size}'GB cannot be smaller than the {what} size {source_size}GB. "
                "They must be >= original size.")
        return size

    async def _image(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        if self.images is None:
            raise errors.Invalid("Invalid input received: creating a volume from an image is not available in this cloud yet.")
        image = await self.images.image_for_volume(ctx, image_id)
        if image is None:
            raise errors.NotFound(f"Image {image_id} could not be found.")
        if image.get("status") != "active":
            raise errors.Invalid(f"Invalid image identifier or unable to access requested image: Image {image_id} is not active.")
        if image.get("disk_format") not in ("raw", "qcow2"):
            raise errors.Invalid(
                f"Invalid input received: Image {image_id} has disk format {image.get('disk_format')!r}; a volume "
                "is made only from a raw or qcow2 image.")
        return image

    @staticmethod
    def _image_metadata(image: dict[str, Any]) -> dict[str, str]:
        out = {k: str(image[k]) for k in ("disk_format", "container_format", "min_disk", "min_ram", "size", "checksum")
               if image.get(k) is not None}
        out["image_id"] = str(image["id"])
        out["image_name"] = str(image.get("name") or "")
        for k, val in (image.get("properties") or {}).items():
            if isinstance(val, str) and len(k) <= 255 and len(val) <= 255:
                out[k] = val
        return out

    async def _cast(self, volume_id: str, call: Any, *, table: sa.Table = volumes,
                    undo: Callable[[], Awaitable[None]] | None = None) -> None:
        """Send a cast; when the worker cannot be reached the row it is about (the volume, or a
        snapshot or backup of it: `table`) goes to error (which its owner may delete), a volume
        with the reason. With `undo`, the broker away (BusUnavailable) is the 503 instead, after
        `undo` put back what the request changed."""
        try:
            await call
        except BusUnavailable as exc:
            if undo is None:
                await self._cast_failed(volume_id, table, exc)
                return
            try:
                await undo()
            except Exception:  # the answer stays the 503; what was left is logged
                LOG.exception("%s %s: undoing the request failed", table.name, volume_id)
            raise
        except Exception as exc:  # noqa: BLE001 - any transport failure: the request is recorded, the volume fails
            await self._cast_failed(volume_id, table, exc)

    async def _cast_failed(self, volume_id: str, table: sa.Table, exc: BaseException) -> None:
        LOG.warning("%s %s: cast failed: %s", table.name, volume_id, exc)
        reason = {"error_message": f"volume worker unreachable: {exc}"[:255]} if table is volumes else {}
        async with self.db.write() as conn:
            await conn.execute(table.update().where(table.c.id == volume_id).values(
                status=states.ERROR, updated_at=utcnow(), **reason))
            await messages.post(conn, table, volume_id, messages.Event(
                messages.SCHEDULE_ALLOCATE_VOLUME, messages.NO_BACKEND_AVAILABLE,
                f"volume worker unreachable: {exc}"[:255]))

    # ---- read -------------------------------------------------------------------------------

    async def list_volumes(self, ctx: RequestContext, params: dict[str, str]) -> query.Page:
        authorize(ctx, "volume:get")
        all_tenants = wants_all_tenants(ctx, params)
        q = sa.select(volumes)
        if not all_tenants:
            q = q.where(volumes.c.project_id == ctx.project_id)
        elif "project_id" in params:
            q = q.where(volumes.c.project_id == params["project_id"])
        async with self.db.read() as conn:
            items = await records.load(conn, (await conn.execute(q)).all())
        return query.apply(items, params, allowed_sort=VOLUME_SORT_KEYS, filters=VOLUME_FILTERS)

    async def get_volume(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        authorize(ctx, "volume:get")
        async with self.db.read() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            return (await records.load(conn, [row]))[0]

    # ---- update / delete --------------------------------------------------------------------

    async def update_volume(self, ctx: RequestContext, volume_id: str, body: Any) -> dict[str, Any]:
        authorize(ctx, "volume:update")
        v = records.unwrap(body, "volume")
        values: dict[str, Any] = {}
        for field, aliases in (("name", ("name", "display_name")), ("description", ("description", "display_description"))):
            for alias in aliases:
                if alias in v:
                    values[field] = records.text(v[alias], alias)
        meta = records.metadata(v["metadata"]) if "metadata" in v else None
        if not values and meta is None:
            raise errors.Invalid("Invalid input received: The volume update needs name, description or metadata.")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            await conn.execute(volumes.update().where(volumes.c.id == row.id).values(updated_at=utcnow(), **values))
            if meta is not None:
                await records.write_kv(conn, volume_metadata, "volume_id", row.id, meta, replace=True)
            return await records.load_one(conn, row.id)

    async def delete_volume(self, ctx: RequestContext, volume_id: str, *, cascade: bool = False, force: bool = False) -> None:
        authorize(ctx, "volume:force_delete" if force else "volume:delete")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            action = "force_delete" if force else "delete"
            if not force:
                if row.status not in states.allowed_from("delete") or row.attach_status == states.ATTACHED:
                    raise errors.Invalid(IN_USE_MESSAGE)
                if row.migration_status not in (None, "", "success", "error"):
                    raise errors.Invalid(IN_USE_MESSAGE)
            snaps = (await conn.execute(sa.select(snapshots).where(snapshots.c.volume_id == row.id))).all()
            if snaps and not cascade:
                raise errors.Invalid(IN_USE_MESSAGE)
            if any(snap.project_id != row.project_id for snap in snaps) and not ctx.is_admin:
                # a transfer without its snapshots left them with the former owner: not this caller's to delete
                raise errors.Invalid(f"Invalid volume: Volume {row.id} has snapshots of another project; "
                                     "they must be deleted by their owner first.")
            for snap in snaps:
                if snap.status not in states.SNAPSHOT_DELETABLE and not force:
                    raise errors.Invalid(f"Invalid volume: Snapshot {snap.id} must be available or error to delete with cascade.")
            await states.transition(conn, volumes, row.id, states.allowed_from(action), {"status": states.DELETING})
            for snap in snaps:
                await conn.execute(snapshots.update().where(snapshots.c.id == snap.id)
                                   .values(status=states.DELETING, updated_at=utcnow()))
        async def undo() -> None:  # the broker away: the volume and its snapshots as they were (503)
            async with self.db.write() as conn:
                for table, rid, status in ((volumes, row.id, row.status), *((snapshots, s.id, s.status) for s in snaps)):
                    await conn.execute(table.update().where(table.c.id == rid, table.c.status == states.DELETING)
                                       .values(status=status, updated_at=utcnow()))

        for snap in snaps:
            await self._cast(snap.id, self.worker.delete_snapshot(snap.id), table=snapshots, undo=undo)
        await self._cast(row.id, self.worker.delete_volume(row.id), undo=undo)

    # ---- metadata ---------------------------------------------------------------------------

    async def get_metadata(self, ctx: RequestContext, volume_id: str) -> dict[str, str]:
        authorize(ctx, "volume:get")
        async with self.db.read() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            return (await records.kv_of(conn, volume_metadata, "volume_id", [row.id]))[row.id]

    async def set_metadata(self, ctx: RequestContext, volume_id: str, items: Any, *, replace: bool) -> dict[str, str]:
        """POST merges (replace=False), PUT replaces the whole set; the volume's metadata afterwards."""
        authorize(ctx, "volume:update")
        meta = records.metadata(items)
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            states.check_status(row.status, states.VOLUME_STATUSES - {states.DELETING, states.MAINTENANCE})
            await records.write_kv(conn, volume_metadata, "volume_id", row.id, meta, replace=replace)
            await conn.execute(volumes.update().where(volumes.c.id == row.id).values(updated_at=utcnow()))
            return (await records.kv_of(conn, volume_metadata, "volume_id", [row.id]))[row.id]

    async def delete_metadata_key(self, ctx: RequestContext, volume_id: str, key: str) -> None:
        authorize(ctx, "volume:update")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            res = await conn.execute(volume_metadata.delete().where(
                volume_metadata.c.volume_id == row.id, volume_metadata.c.key == key))
            if not res.rowcount:
                raise errors.NotFound("Metadata item was not found")

    async def image_metadata(self, ctx: RequestContext, volume_id: str, items: Any = None, *,
                             unset: str | None = None) -> dict[str, str]:
        """The volume's image metadata (os-show_image_metadata); `items` merges keys in
        (os-set_image_metadata), `unset` drops one (os-unset_image_metadata: NotFound when absent)."""
        authorize(ctx, "volume:get" if items is None and unset is None else "volume:update")
        meta = records.metadata(items) if items is not None else None
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            if meta is not None or unset is not None:
                states.check_status(row.status, {states.AVAILABLE, states.IN_USE}, action="update image metadata")
            if meta is not None:
                await records.write_kv(conn, volume_image_metadata, "volume_id", row.id, meta, replace=False)
            if unset is not None:
                res = await conn.execute(volume_image_metadata.delete().where(
                    volume_image_metadata.c.volume_id == row.id, volume_image_metadata.c.key == unset))
                if not res.rowcount:
                    raise errors.NotFound(f"The key {unset[:64]} is not in the image metadata of volume {row.id}.")
            return (await records.kv_of(conn, volume_image_metadata, "volume_id", [row.id]))[row.id]

    async def admin_metadata(self, volume_id: str) -> dict[str, str]:
        async with self.db.read() as conn:
            return (await records.kv_of(conn, volume_admin_metadata, "volume_id", [volume_id]))[volume_id]
