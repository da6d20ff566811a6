"""An in-memory VolumeWorker for the volume API tests: it records every cast and, unless `hold` is
set, carries it out at once on the DB rows the way the real worker will (statuses only, no files)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cumulo.db import Database
from cumulo.volume import states
from cumulo.volume.models import (
    backups,
    snapshots,
    volume_admin_metadata,
    volume_attachments,
    volumes,
)


class FakeWorker:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.casts: list[tuple[str, dict[str, Any]]] = []
        self.hold = False  # leave rows in their transitional status
        self.fail = False  # every cast raises (the bus is down)

    async def _record(self, name: str, **kw: Any) -> bool:
        if self.fail:
            raise ConnectionError("bus unreachable")
        self.casts.append((name, kw))
        return not self.hold

    async def _set(self, table: sa.Table, row_id: str, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(table.update().where(table.c.id == row_id).values(**values))

    async def create_volume(self, volume_id: str, size_gb: int, *, snapshot_id: str | None = None,
                            source_volid: str | None = None, image_id: str | None = None,
                            backup_id: str | None = None) -> None:
        if await self._record("create_volume", volume_id=volume_id, size_gb=size_gb, snapshot_id=snapshot_id,
                              source_volid=source_volid, image_id=image_id, backup_id=backup_id):
            await self._set(volumes, volume_id, status=states.AVAILABLE)
            if backup_id:
                await self._set(backups, backup_id, status=states.AVAILABLE)

    async def delete_volume(self, volume_id: str) -> None:
        if await self._record("delete_volume", volume_id=volume_id):
            async with self.db.write() as conn:
                await conn.execute(volume_attachments.delete().where(volume_attachments.c.volume_id == volume_id))
                await conn.execute(snapshots.delete().where(snapshots.c.volume_id == volume_id))
                await conn.execute(volumes.delete().where(volumes.c.id == volume_id))

    async def extend_volume(self, volume_id: str, new_size_gb: int, *, attached: bool = False) -> None:
        if await self._record("extend_volume", volume_id=volume_id, new_size_gb=new_size_gb, attached=attached):
            await self._set(volumes, volume_id, size=new_size_gb, status=states.IN_USE if attached else states.AVAILABLE)
            async with self.db.write() as conn:
                await conn.execute(volume_admin_metadata.delete().where(
                    volume_admin_metadata.c.volume_id == volume_id, volume_admin_metadata.c.key == "extending_to"))

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        if await self._record("create_snapshot", snapshot_id=snapshot_id, volume_id=volume_id):
            await self._set(snapshots, snapshot_id, status=states.AVAILABLE, progress="100%")

    async def delete_snapshot(self, snapshot_id: str) -> None:
        if await self._record("delete_snapshot", snapshot_id=snapshot_id):
            async with self.db.write() as conn:
                await conn.execute(snapshots.delete().where(snapshots.c.id == snapshot_id))

    async def create_backup(self, backup_id: str, volume_id: str, *, snapshot_id: str | None = None) -> None:
        if await self._record("create_backup", backup_id=backup_id, volume_id=volume_id, snapshot_id=snapshot_id):
            async with self.db.write() as conn:
                before = await conn.scalar(sa.select(volume_admin_metadata.c.value).where(
                    volume_admin_metadata.c.volume_id == volume_id, volume_admin_metadata.c.key == "status_before_backup"))
            await self._set(backups, backup_id, status=states.AVAILABLE, object_count=1)
            await self._set(volumes, volume_id, status=before or states.AVAILABLE)

    async def delete_backup(self, backup_id: str) -> None:
        if await self._record("delete_backup", backup_id=backup_id):
            async with self.db.write() as conn:
                await conn.execute(backups.delete().where(backups.c.id == backup_id))

    async def restore_backup(self, backup_id: str, volume_id: str) -> None:
        if await self._record("restore_backup", backup_id=backup_id, volume_id=volume_id):
            await self._set(backups, backup_id, status=states.AVAILABLE)
            await self._set(volumes, volume_id, status=states.AVAILABLE)

    async def retype_volume(self, volume_id: str, new_type_id: str) -> None:
        await self._record("retype_volume", volume_id=volume_id, new_type_id=new_type_id)

    async def upload_to_image(self, volume_id: str, image_id: str, disk_format: str) -> None:
        if await self._record("upload_to_image", volume_id=volume_id, image_id=image_id, disk_format=disk_format):
            await self._set(volumes, volume_id, status=states.AVAILABLE)

    async def offline_volume(self, volume_id: str) -> None:
        if await self._record("offline_volume", volume_id=volume_id):  # the status is already maintenance
            async with self.db.write() as conn:  # "sealed": the mark goes from entering to True, as the worker's
                await conn.execute(volume_admin_metadata.update().where(
                    volume_admin_metadata.c.volume_id == volume_id, volume_admin_metadata.c.key == "offline",
                ).values(value="True"))

    async def online_volume(self, volume_id: str) -> None:
        if await self._record("online_volume", volume_id=volume_id):
            await self._set(volumes, volume_id, status=states.AVAILABLE)
            async with self.db.write() as conn:
                await conn.execute(volume_admin_metadata.delete().where(
                    volume_admin_metadata.c.volume_id == volume_id, volume_admin_metadata.c.key == "offline"))


class FakeImages:
    """The image service seam: a few images by id, visible to their owner (or public)."""

    def __init__(self) -> None:
        self.images: dict[str, dict[str, Any]] = {}
        self.uploads: list[dict[str, Any]] = []

    def add(self, image_id: str, *, owner: str | None = None, status: str = "active", size: int = 1 << 20,
            min_disk: int = 0, disk_format: str = "qcow2") -> None:
        self.images[image_id] = {"id": image_id, "name": f"img-{image_id[:4]}", "status": status, "size": size,
                                 "min_disk": min_disk, "disk_format": disk_format, "container_format": "bare",
                                 "owner": owner, "properties": {"hw_disk_bus": "virtio"}}

    async def image_for_volume(self, ctx: Any, image_id: str) -> dict[str, Any] | None:
        img = self.images.get(image_id)
        if img is None or (img["owner"] is not None and img["owner"] != ctx.project_id):
            return None
        return img

    async def create_image_for_upload(self, ctx: Any, *, name: str, disk_format: str, container_format: str,
                                      visibility: str, protected: bool) -> dict[str, Any]:
        image = {"id": "0b5c1a9e-3c1e-4d4b-9a51-5d2d6f0c0a11", "name": name, "status": "queued"}
        self.uploads.append(image)
        return image
