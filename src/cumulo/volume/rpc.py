"""The volume worker's message API: the `VolumeWorker` casts, sent over the bus to `volume.<host>`.

The API side holds one `VolumeAPI` (the worker of the cloud's volume host); the worker
(`cumulo.volume.worker.manager.VolumeManager`) serves the topic with methods of the same names and
keyword arguments. Arguments are ids and sizes (JSON primitives), so any transport works.
"""

from __future__ import annotations

from typing import Any

from cumulo.bus.base import Bus


def volume_topic(host: str) -> str:
    return f"volume.{host}"


class VolumeAPI:
    """A `VolumeWorker` whose every call is a cast to the volume host's worker."""

    def __init__(self, bus: Bus, host: str) -> None:
        self.bus = bus
        self.host = host

    async def _cast(self, method: str, **args: Any) -> None:
        await self.bus.cast(volume_topic(self.host), method, **args)

    async def create_volume(self, volume_id: str, size_gb: int, *, snapshot_id: str | None = None,
                            source_volid: str | None = None, image_id: str | None = None,
                            backup_id: str | None = None) -> None:
        await self._cast("create_volume", volume_id=volume_id, size_gb=size_gb, snapshot_id=snapshot_id,
                         source_volid=source_volid, image_id=image_id, backup_id=backup_id)

    async def delete_volume(self, volume_id: str) -> None:
        await self._cast("delete_volume", volume_id=volume_id)

    async def extend_volume(self, volume_id: str, new_size_gb: int, *, attached: bool = False) -> None:
        await self._cast("extend_volume", volume_id=volume_id, new_size_gb=new_size_gb, attached=attached)

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        await self._cast("create_snapshot", snapshot_id=snapshot_id, volume_id=volume_id)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self._cast("delete_snapshot", snapshot_id=snapshot_id)

    async def create_backup(self, backup_id: str, volume_id: str, *, snapshot_id: str | None = None) -> None:
        await self._cast("create_backup", backup_id=backup_id, volume_id=volume_id, snapshot_id=snapshot_id)

    async def delete_backup(self, backup_id: str) -> None:
        await self._cast("delete_backup", backup_id=backup_id)

    async def restore_backup(self, backup_id: str, volume_id: str) -> None:
        await self._cast("restore_backup", backup_id=backup_id, volume_id=volume_id)

    async def retype_volume(self, volume_id: str, new_type_id: str) -> None:
        await self._cast("retype_volume", volume_id=volume_id, new_type_id=new_type_id)

    async def upload_to_image(self, volume_id: str, image_id: str, disk_format: str) -> None:
        await self._cast("upload_to_image", volume_id=volume_id, image_id=image_id, disk_format=disk_format)

    async def offline_volume(self, volume_id: str) -> None:
        await self._cast("offline_volume", volume_id=volume_id)

    async def online_volume(self, volume_id: str) -> None:
        await self._cast("online_volume", volume_id=volume_id)

    # Calls, to the host that holds the volume (its row's `host`): a connection needs the answer.

    async def initialize_connection(self, volume_host: str, volume_id: str, attachment_id: str, consumer: str,
                                    mode: str) -> dict[str, Any]:
        """The volume's NBD export for an attachment on host `consumer` (its connection_info)."""
        info: dict[str, Any] = await self.bus.call(volume_topic(volume_host), "initialize_connection", timeout=60.0,
                                                   volume_id=volume_id, attachment_id=attachment_id,
                                                   consumer=consumer, mode=mode)
        return info

    async def terminate_connection(self, volume_host: str, attachment_id: str) -> None:
        await self.bus.call(volume_topic(volume_host), "terminate_connection", timeout=30.0,
                            attachment_id=attachment_id)
