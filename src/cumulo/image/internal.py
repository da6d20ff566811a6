"""The image service's internal backend: what compute uses, without a tenant's visibility rules.

What the rest of Cumulo uses without a tenant's request (compute's API side and agents:
`compute.specs.ImageBackend`), where the caller, not Glance's visibility rules, vouches for the
access: a live image whoever owns it, the local file of its bytes, the content keys to keep, and
the records of server snapshots (made queued, described by the driver, filled through the data
path, or deleted when the snapshot fails).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.image._schemas import (
    CONTAINER_FORMATS,
    DISK_FORMATS,
    READ_ONLY,
    RESERVED,
    RESERVED_PREFIX,
    WRITABLE_CORE,
)
from cumulo.image.models import images
from cumulo.image.records import ImageRecords, not_found


def _settable(properties: dict[str, Any]) -> dict[str, str]:
    """The extra properties a server snapshot may carry (never a core or reserved field)."""
    return {
        str(k): str(v)
        for k, v in properties.items()
        if v is not None and len(str(k)) <= 255 and str(k) not in (*RESERVED, *READ_ONLY)
        and not str(k).startswith(RESERVED_PREFIX) and str(k) not in WRITABLE_CORE
    }


class InternalImages(ImageRecords):
    """The image service as compute sees it (no visibility checks: callers are trusted)."""

    async def get_internal(self, image_id: str) -> dict[str, Any] | None:
        """The live image regardless of who asks (for workers), or None."""
        async with self.db.read() as conn:
            row = await self._row(conn, image_id)
            return await self._render(conn, row) if row else None

    async def live_content_keys(self) -> set[str]:
        """The store keys (sha256 of the bytes) of every image not deleted, whoever owns it: the
        compute agents keep their local copies of these (unpacked roots, verified bases)."""
        async with self.db.read() as conn:
            return await self._live_keys(conn)

    async def local_path(self, image_id: str) -> str:
        """The file holding the image's bytes (read-only; shared with identical images)."""
        return (await self.local_file(image_id))[0]

    async def local_file(self, image_id: str) -> tuple[str, str | None]:
        """The file holding the image's bytes and the image's disk_format, from one row read (the
        volume worker's create-from-image needs both, and nothing else of the image)."""
        async with self.db.read() as conn:
            row = await self._row(conn, image_id)
        if row is None:
            raise not_found(image_id)
        if row["store_key"] is None:
            raise errors.InvalidState(f"Image {image_id} has no data (status {row['status']})")
        path = self.store.path_for(row["store_key"])
        if not await self.store.exists(row["store_key"]):
            raise errors.NotFound(f"The data of image {image_id} is missing from the image store")
        return str(path), row["disk_format"]

    async def create_snapshot_record(
        self,
        ctx: RequestContext,
        name: str,
        properties: dict[str, Any],
        disk_format: str,
        container_format: str,
        *,
        visibility: str = "private",
        protected: bool = False,
    ) -> dict[str, Any]:
        """A queued image owned by ctx's project (private unless told: a volume upload may ask for
        another visibility, under Glance's publicize/communitize rules), for a snapshot to fill."""
        if disk_format not in DISK_FORMATS or container_format not in CONTAINER_FORMATS:
            raise errors.Invalid(f"Invalid image formats {disk_format}/{container_format}")
        if visibility not in ("private", "shared", "community", "public"):
            raise errors.Invalid(f"Invalid visibility {visibility[:32]}")
        self._check_visibility_change(ctx, visibility)
        extra = _settable(properties)
        core = {"name": name[:255], "visibility": visibility, "protected": bool(protected), "disk_format": disk_format,
                "container_format": container_format}
        return await self.insert(ctx, core, extra, [])

    async def describe_snapshot(
        self, image_id: str, disk_format: str, container_format: str, properties: dict[str, Any]
    ) -> None:
        """Before a snapshot's bytes arrive: the formats and properties the driver says they have
        (they win over what was copied from the base image)."""
        if disk_format not in DISK_FORMATS or container_format not in CONTAINER_FORMATS:
            raise errors.Invalid(f"Invalid image formats {disk_format}/{container_format}")
        async with self.db.write() as conn:
            row = await self._row(conn, image_id)
            if row is None or row["status"] != "queued":
                raise errors.InvalidState(f"Image {image_id} is not a queued snapshot")
            old, _tags = await self._decorations(conn, [image_id])
            props = dict(old.get(image_id, {}))
            props.update(_settable(properties))
            await conn.execute(
                sa.update(images).where(images.c.id == image_id)
                .values(disk_format=disk_format, container_format=container_format)
            )
            await self._write_props(conn, image_id, old.get(image_id, {}), props)

    async def mark_failed(self, image_id: str) -> None:
        """A snapshot that could not be taken: its image is deleted, as Nova deletes it."""
        async with self._refs:
            async with self.db.write() as conn:
                row = await self._row(conn, image_id)
                if row is None or row["status"] not in ("queued", "saving"):
                    return
                await self._soft_delete(conn, image_id)
            await self._release(row["store_key"])
