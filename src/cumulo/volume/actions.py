"""Volume actions that are not attachments: extend, bootable and read-only flags, retype,
upload to image, and the admin's reset-status and force-delete (POST /volumes/{id}/action)."""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.volume import records, states
from cumulo.volume.attachments import Attachments
from cumulo.volume.base import (
    EXTENDING_TO,
    MAX_SIZE_GB,
    OFFLINE,
    OFFLINE_ENTERING,
    OFFLINE_LEAVING,
    OverLimit,
    authorize,
)
from cumulo.volume.models import volume_admin_metadata, volume_type_extra_specs, volume_types, volumes
from cumulo.volume.types import is_true_spec

UPLOAD_DISK_FORMATS = ("raw", "qcow2")
UPLOAD_CONTAINER_FORMATS = ("bare",)


class VolumeActions(Attachments):
    """Extend, flags, retype, upload, reset-status."""

    async def extend(self, ctx: RequestContext, volume_id: str, new_size: Any, *, version: tuple[int, int]) -> None:
        authorize(ctx, "volume:extend")
        size = records.size(new_size, "new_size")
        if size > MAX_SIZE_GB:
            raise errors.Invalid(f"Invalid input received: new_size {size} is larger than {MAX_SIZE_GB} GiB.")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            action = "extend_attached" if row.status == states.IN_USE and version >= (3, 42) else "extend"
            states.check_status(row.status, states.allowed_from(action), action="extend")
            if size <= row.size:
                raise errors.Invalid(
                    f"Invalid input received: New size for extend must be greater than current size. "
                    f"(current: {row.size}, extended: {size}).")
            limits = await self.quota_limits(conn, row.project_id)
            if 0 <= limits["per_volume_gigabytes"] < size:
                raise OverLimit(f"Requested volume size {size}G is larger than maximum allowed limit {limits['per_volume_gigabytes']}G.")
            await self.check_quota(conn, row.project_id, gigabytes=size - row.size)
            await states.transition(conn, volumes, row.id, states.allowed_from(action), {"status": states.EXTENDING})
            # counted by the quota until the worker sets the size (and drops the key): two extends of
            # two volumes cannot both take the last gigabytes
            await records.write_kv(conn, volume_admin_metadata, "volume_id", row.id,
                                   {EXTENDING_TO: str(size)}, replace=False)
        async def undo() -> None:  # the broker away: the volume as it was, its quota hold dropped (503)
            async with self.db.write() as conn:
                await conn.execute(volumes.update().where(volumes.c.id == row.id, volumes.c.status == states.EXTENDING)
                                   .values(status=row.status, updated_at=utcnow()))
                await conn.execute(volume_admin_metadata.delete().where(
                    volume_admin_metadata.c.volume_id == row.id, volume_admin_metadata.c.key == EXTENDING_TO))

        await self._cast(row.id, self.worker.extend_volume(row.id, size, attached=action == "extend_attached"),
                         undo=undo)

    # ---- offline / online (OCCI's storage actions; no Cinder action) --------------------------

    async def set_offline(self, ctx: RequestContext, volume_id: str) -> None:
        """Take a detached, available volume offline: Cinder's status `maintenance` (which every
        Cinder action but a force-delete refuses: no attach, extend, snapshot, backup, transfer or
        delete) and admin metadata `offline`; the worker then seals its file on the host (immutable:
        no process, root's included, can open it for writing, rename or remove it)."""
        authorize(ctx, "volume:offline")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            meta = (await records.kv_of(conn, volume_admin_metadata, "volume_id", [row.id]))[row.id]
            if row.status == states.MAINTENANCE and OFFLINE in meta:
                raise errors.InvalidState(f"Volume {row.id} is already offline.")
            if row.attach_status == states.ATTACHED or await self._live_attachments(conn, row.id):
                raise errors.InvalidState(
                    f"Volume {row.id} is attached to a server ({row.status}): detach it before taking it offline.")
            if row.status != states.AVAILABLE:
                raise errors.InvalidState(
                    f"Volume {row.id} is {row.status}: only an available volume can be taken offline.")
            await states.transition(conn, volumes, row.id, {states.AVAILABLE}, {"status": states.MAINTENANCE})
            await records.write_kv(conn, volume_admin_metadata, "volume_id", row.id, {OFFLINE: OFFLINE_ENTERING},
                                   replace=False)
        await self._cast(row.id, self.worker.offline_volume(row.id))

    async def set_online(self, ctx: RequestContext, volume_id: str) -> None:
        """Bring an offline volume back: the worker unseals its file, then the volume is `available`
        again (it stays `maintenance` until the file is writable, so no attach can race the worker)."""
        authorize(ctx, "volume:offline")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            meta = (await records.kv_of(conn, volume_admin_metadata, "volume_id", [row.id]))[row.id]
            if row.status != states.MAINTENANCE or OFFLINE not in meta:
                raise errors.InvalidState(f"Volume {row.id} is {row.status}, not offline: it is online already.")
            if meta[OFFLINE] == OFFLINE_LEAVING:
                raise errors.InvalidState(f"Volume {row.id} is being brought online already.")
            if meta[OFFLINE] == OFFLINE_ENTERING:
                raise errors.InvalidState(f"Volume {row.id} is still being taken offline.")
            await states.transition(conn, volumes, row.id, {states.MAINTENANCE}, {})
            await records.write_kv(conn, volume_admin_metadata, "volume_id", row.id, {OFFLINE: OFFLINE_LEAVING},
                                   replace=False)
        await self._cast(row.id, self.worker.online_volume(row.id))

    async def set_bootable(self, ctx: RequestContext, volume_id: str, value: Any) -> None:
        authorize(ctx, "volume:set_bootable")
        bootable = records.boolean(value, "bootable")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            states.check_status(row.status, {states.AVAILABLE, states.IN_USE}, action="set bootable")
            await states.transition(conn, volumes, row.id, {row.status}, {"bootable": bootable})

    async def update_readonly(self, ctx: RequestContext, volume_id: str, value: Any) -> None:
        authorize(ctx, "volume:update_readonly_flag")
        readonly = records.boolean(value, "readonly")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            states.check_status(row.status, {states.AVAILABLE}, action="update readonly flag")
            await records.write_kv(conn, volume_admin_metadata, "volume_id", row.id,
                                   {"readonly": str(readonly)}, replace=False)
            await states.transition(conn, volumes, row.id, {states.AVAILABLE}, {})

    async def retype(self, ctx: RequestContext, volume_id: str, body: dict[str, Any]) -> None:
        """One backend holds every type here, so a retype is a record change: no data moves (the
        worker's retype_volume is for a future second backend)."""
        authorize(ctx, "volume:retype")
        policy = body.get("migration_policy", "never")
        if policy not in ("never", "on-demand", None):
            raise errors.Invalid(f"Invalid input received: migration_policy must be 'on-demand' or 'never', passed: {str(policy)[:32]}")
        if body.get("new_type") is None:
            raise errors.Invalid("Invalid input received: New volume type must be specified.")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            states.check_status(row.status, states.allowed_from("retype"), action="retype")
            new_type = await self.type_row(conn, ctx, body["new_type"])
            if new_type.id == row.volume_type_id:
                raise errors.Invalid("Invalid input received: New volume type must be different from the original.")
            # the new type's multiattach spec decides the volume's flag (Cinder's retype); an attached
            # volume keeps its flag, so such a retype waits until it is available
            specs = (await records.kv_of(conn, volume_type_extra_specs, "volume_type_id", [new_type.id]))[new_type.id]
            multiattach = is_true_spec(specs.get("multiattach"))
            if multiattach != bool(row.multiattach) and row.status != states.AVAILABLE:
                raise errors.Invalid("Invalid volume: a retype that changes multiattach needs the volume available "
                                     f"(it is {row.status}).")
            await states.transition(conn, volumes, row.id, states.allowed_from("retype"),
                                    {"volume_type_id": new_type.id, "multiattach": multiattach})

    async def reset_status(self, ctx: RequestContext, volume_id: str, body: dict[str, Any]) -> None:
        authorize(ctx, "volume:reset_status")
        values: dict[str, Any] = {}
        if "status" in body:
            if not isinstance(body["status"], str) or body["status"] not in states.VOLUME_STATUSES:
                raise errors.Invalid(f"Invalid input received: Invalid status: {str(body['status'])[:32]}")
            values["status"] = body["status"]
        if "attach_status" in body:
            if body["attach_status"] not in (states.ATTACHED, states.DETACHED):
                raise errors.Invalid(f"Invalid input received: Invalid attach status: {str(body['attach_status'])[:32]}")
            values["attach_status"] = body["attach_status"]
        if "migration_status" in body:
            values["migration_status"] = records.text(body["migration_status"], "migration_status")
        if not values:
            raise errors.Invalid("Invalid input received: Must specify 'status', 'attach_status' or 'migration_status' for update.")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            await conn.execute(volumes.update().where(volumes.c.id == row.id).values(updated_at=utcnow(), **values))
            meta = (await records.kv_of(conn, volume_admin_metadata, "volume_id", [row.id]))[row.id]
        if OFFLINE in meta and values.get("status", states.MAINTENANCE) != states.MAINTENANCE:
            # an offline volume reset out of maintenance: its file must not stay sealed
            await self._cast(row.id, self.worker.online_volume(row.id))

    async def upload_to_image(self, ctx: RequestContext, volume_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """os-volume_upload_image: a queued image the worker fills from the volume."""
        authorize(ctx, "volume:upload_image")
        image_name = records.text(body.get("image_name"), "image_name", nullable=False)
        disk_format = body.get("disk_format", "raw")
        container_format = body.get("container_format", "bare")
        if disk_format not in UPLOAD_DISK_FORMATS:
            raise errors.Invalid(f"Invalid input received: Invalid disk-format '{str(disk_format)[:32]}' is specified. Allowed disk-formats are {', '.join(UPLOAD_DISK_FORMATS)}.")
        if container_format not in UPLOAD_CONTAINER_FORMATS:
            raise errors.Invalid(f"Invalid input received: Invalid container-format '{str(container_format)[:32]}' is specified. Allowed container-formats are bare.")
        force = records.boolean(body.get("force", False), "force")
        visibility = body.get("visibility", "private")
        if visibility not in ("private", "public", "shared", "community"):
            raise errors.Invalid(f"Invalid input received: Invalid visibility {str(visibility)[:32]}.")
        protected = records.boolean(body.get("protected", False), "protected")
        if visibility == "public":
            authorize(ctx, "volume:upload_public")
        if self.images is None:
            raise errors.Invalid("Invalid input received: uploading a volume to an image is not available in this cloud yet.")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            allowed = states.allowed_from("upload") if force else {states.AVAILABLE}
            states.check_status(row.status, allowed, action="upload to image")
            # the volume is claimed before the image is made: a lost race leaves no queued image behind
            await states.transition(conn, volumes, row.id, allowed, {"status": states.UPLOADING})
            vtype = None
            if row.volume_type_id:
                trow = (await conn.execute(sa.select(volume_types).where(volume_types.c.id == row.volume_type_id))).first()
                vtype = await self.type_record(conn, trow) if trow is not None else None
        assert image_name is not None
        try:
            image = await self.images.create_image_for_upload(
                ctx, name=image_name, disk_format=disk_format, container_format=container_format,
                visibility=visibility, protected=protected)
        except BaseException:
            async with self.db.write() as conn:
                with contextlib.suppress(errors.Conflict):
                    await states.transition(conn, volumes, row.id, {states.UPLOADING}, {"status": row.status})
            raise
        await self._cast(row.id, self.worker.upload_to_image(row.id, str(image["id"]), disk_format))
        return {
            "id": row.id, "updated_at": None, "status": states.UPLOADING, "display_description": row.description,
            "size": row.size, "volume_type": vtype, "image_id": image["id"], "container_format": container_format,
            "disk_format": disk_format, "image_name": image_name, "visibility": visibility, "protected": protected,
        }
