"""The seam between the volume API and the volume worker: what the API casts, by ids.

The API records the request in the DB (row in a transitional status: creating, deleting,
extending, backing-up, restoring-backup ...) and then casts one of these calls; it never waits for
the slow work. The worker (wave 2: over the bus, topic `volume.<host>`, on cumulo.blockstore) does
the work and moves the row to its final status (available, in-use, error, error_* with a reason)
with the same compare-and-swap as the API (`cumulo.volume.states.transition`). Every call is a
cast: it returns once the message is sent. Sizes are GiB (the worker multiplies by GIB).

Tests use an in-memory implementation (tests/unit/volume/fake_worker.py) that records the casts.
"""

from __future__ import annotations

from typing import Any, Protocol

from cumulo.errors import InvalidState


class VolumeWorker(Protocol):
    """The volume worker's casts (all fire-and-forget)."""

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        snapshot_id: str | None = None,
        source_volid: str | None = None,
        image_id: str | None = None,
        backup_id: str | None = None,
    ) -> None:
        """Make the volume's storage: blank, from a snapshot, a clone of another volume, from an
        image (the image store's own file, never a request path) or restored from a backup; then
        status creating -> available (error on failure)."""
        ...

    async def delete_volume(self, volume_id: str) -> None:
        """Drop the storage (idempotent) and the row; status deleting -> gone (error_deleting)."""
        ...

    async def extend_volume(self, volume_id: str, new_size_gb: int, *, attached: bool = False) -> None:
        """Grow the storage (and tell an attached guest); extending -> available|in-use (error_extending)."""
        ...

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        """Copy the volume into the snapshot; snapshot creating -> available (error)."""
        ...

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Drop the snapshot's copy and its row; deleting -> gone (error_deleting)."""
        ...

    async def create_backup(self, backup_id: str, volume_id: str, *, snapshot_id: str | None = None) -> None:
        """Back the volume up; backup creating -> available, volume backing-up -> its previous status."""
        ...

    async def delete_backup(self, backup_id: str) -> None:
        """Drop the backup's file and its row; deleting -> gone (error_deleting)."""
        ...

    async def restore_backup(self, backup_id: str, volume_id: str) -> None:
        """Restore into the volume (overwriting it); backup restoring -> available, volume
        restoring-backup -> available (error_restoring)."""
        ...

    async def retype_volume(self, volume_id: str, new_type_id: str) -> None:
        """Move the volume to the new type's backend when it differs; retyping -> previous status."""
        ...

    async def upload_to_image(self, volume_id: str, image_id: str, disk_format: str) -> None:
        """Export the volume into the (queued) image; uploading -> previous status."""
        ...

    async def offline_volume(self, volume_id: str) -> None:
        """Seal the (maintenance, marked offline) volume's storage on the host; on failure the
        volume goes back to available with the reason."""
        ...

    async def online_volume(self, volume_id: str) -> None:
        """Unseal the storage of a volume being brought online; maintenance -> available."""
        ...

    # The two calls (they answer): Cinder's initialize/terminate_connection, to the volume's host.

    async def initialize_connection(self, volume_host: str, volume_id: str, attachment_id: str, consumer: str,
                                    mode: str) -> dict[str, Any]:
        """The volume exported for an attachment on another host (`consumer`): its connection_info."""
        ...

    async def terminate_connection(self, volume_host: str, attachment_id: str) -> None:
        """The attachment's export stopped (none: fine)."""
        ...


class NullWorker:
    """A worker that drops every cast: the API records requests, nothing carries them out. What
    the volume API runs on until the worker is wired (wave 2); rows stay in their transitional
    status."""

    async def create_volume(
        self,
        volume_id: str,
        size_gb: int,
        *,
        snapshot_id: str | None = None,
        source_volid: str | None = None,
        image_id: str | None = None,
        backup_id: str | None = None,
    ) -> None:
        return None

    async def delete_volume(self, volume_id: str) -> None:
        return None

    async def extend_volume(self, volume_id: str, new_size_gb: int, *, attached: bool = False) -> None:
        return None

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        return None

    async def delete_snapshot(self, snapshot_id: str) -> None:
        return None

    async def create_backup(self, backup_id: str, volume_id: str, *, snapshot_id: str | None = None) -> None:
        return None

    async def delete_backup(self, backup_id: str) -> None:
        return None

    async def restore_backup(self, backup_id: str, volume_id: str) -> None:
        return None

    async def retype_volume(self, volume_id: str, new_type_id: str) -> None:
        return None

    async def upload_to_image(self, volume_id: str, image_id: str, disk_format: str) -> None:
        return None

    async def offline_volume(self, volume_id: str) -> None:
        return None

    async def online_volume(self, volume_id: str) -> None:
        return None

    async def initialize_connection(self, volume_host: str, volume_id: str, attachment_id: str, consumer: str,
                                    mode: str) -> dict[str, Any]:
        raise InvalidState("no volume worker: a server on another host cannot reach this volume")

    async def terminate_connection(self, volume_host: str, attachment_id: str) -> None:
        return None


class ImageSource(Protocol):
    """What the volume API asks the image service (wave 2 wires cumulo.image behind it; the volume
    package does not import its sibling service)."""

    async def image_for_volume(self, ctx: Any, image_id: str) -> dict[str, Any] | None:
        """The image `ctx` may see, as {"id", "name", "status", "size" (bytes), "min_disk" (GiB),
        "disk_format", "container_format", "properties"}; None when it does not exist or is hidden."""
        ...

    async def create_image_for_upload(
        self, ctx: Any, *, name: str, disk_format: str, container_format: str, visibility: str, protected: bool,
    ) -> dict[str, Any]:
        """A queued image record owned by `ctx`'s project that the worker's upload fills (the same keys)."""
        ...
