"""The adapters that join compute and volume (siblings that never import each other).

The runtime wires them: compute's `VolumeClient` over the volume service (Nova's cinder.API over Cinder's
REST API, here in process), its `HostVolumes` over the host's block store and loop table, and the
volume worker's notifier over compute's external events (Cinder's "volume-extended").
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.compute import volume_records
from cumulo.context import RequestContext
from cumulo.db import Database

if TYPE_CHECKING:
    from cumulo.blockstore.base import BlockStore, Location
    from cumulo.blockstore.loop import LoopTable
    from cumulo.volume.service import VolumeService

LOG = logging.getLogger(__name__)

# The microversion compute speaks (attachments with a mode: 3.54; Nova asks for 3.44+).
VOLUME_VERSION = (3, 60)


class VolumeClientAdapter:
    """cumulo.compute.volumes.VolumeClient over cumulo.volume.service.VolumeService."""

    def __init__(self, service: VolumeService) -> None:
        self.service = service

    async def get_volume(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        return await self.service.get_volume(ctx, volume_id)

    async def list_volumes(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return (await self.service.list_volumes(ctx, {})).items

    async def create_volume(
        self, ctx: RequestContext, *, size_gb: int, name: str = "", description: str = "",
        image_id: str | None = None, snapshot_id: str | None = None, source_volid: str | None = None,
        volume_type: str | None = None, availability_zone: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"size": size_gb, "name": name, "description": description}
        for key, value in (("imageRef", image_id), ("snapshot_id", snapshot_id), ("source_volid", source_volid),
                           ("volume_type", volume_type), ("availability_zone", availability_zone)):
            if value is not None:
                body[key] = value
        if metadata:
            body["metadata"] = dict(metadata)
        return await self.service.create_volume(ctx, {"volume": body}, version=VOLUME_VERSION)

    async def delete_volume(self, ctx: RequestContext, volume_id: str) -> None:
        await self.service.delete_volume(ctx, volume_id)

    async def attachment_create(
        self, ctx: RequestContext, volume_id: str, instance_uuid: str, *,
        connector: Mapping[str, Any] | None = None, mode: str = "rw",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"volume_uuid": volume_id, "instance_uuid": instance_uuid, "mode": mode}
        if connector is not None:
            body["connector"] = dict(connector)
        return await self.service.create_attachment(ctx, {"attachment": body}, version=VOLUME_VERSION)

    async def attachment_update(self, ctx: RequestContext, attachment_id: str,
                                connector: Mapping[str, Any]) -> dict[str, Any]:
        return await self.service.update_attachment(ctx, attachment_id, {"attachment": {"connector": dict(connector)}})

    async def attachment_complete(self, ctx: RequestContext, attachment_id: str) -> None:
        await self.service.complete_attachment(ctx, attachment_id)

    async def attachment_reconnect(self, ctx: RequestContext, attachment_id: str,
                                   connector: Mapping[str, Any]) -> dict[str, Any]:
        return await self.service.reconnect_attachment(ctx, attachment_id, dict(connector))

    async def attachment_delete(self, ctx: RequestContext, attachment_id: str) -> None:
        await self.service.delete_attachment(ctx, attachment_id)

    async def attachment_get(self, ctx: RequestContext, attachment_id: str) -> dict[str, Any]:
        return await self.service.get_attachment(ctx, attachment_id)

    async def attachments_of(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> list[dict[str, Any]]:
        page = await self.service.list_attachments(ctx, {"volume_id": volume_id, "instance_id": instance_uuid})
        return list(page.items)

    async def begin_detaching(self, ctx: RequestContext, volume_id: str) -> None:
        await self.service.begin_detaching(ctx, volume_id)

    async def roll_detaching(self, ctx: RequestContext, volume_id: str) -> None:
        await self.service.roll_detaching(ctx, volume_id)

    async def create_snapshot(
        self, ctx: RequestContext, volume_id: str, *, name: str = "", description: str = "",
        force: bool = True, metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"volume_id": volume_id, "name": name, "description": description, "force": force}
        if metadata:
            body["metadata"] = dict(metadata)
        return await self.service.create_snapshot(ctx, {"snapshot": body})

    async def get_snapshot(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        return await self.service.get_snapshot(ctx, snapshot_id)

    async def list_snapshots(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return (await self.service.list_snapshots(ctx, {})).items

    async def delete_snapshot(self, ctx: RequestContext, snapshot_id: str) -> None:
        await self.service.delete_snapshot(ctx, snapshot_id)


class HostBlockStore:
    """cumulo.compute.volumes.HostVolumes over the host's block store and its loop-device table
    (the one the runc driver and the volume worker share: `<state>/volumes/.run/loops`)."""

    def __init__(self, store: BlockStore, loops: LoopTable, db: Database | None = None,
                 keys_dir: Path | None = None) -> None:
        self.store = store
        self.loops = loops
        self.db = db  # the cluster secret the NBD keys derive from
        self.keys_dir = keys_dir  # <run_dir>/nbd-keys: one tls-creds-psk dir per attachment

    async def location(self, volume_id: str) -> Location:
        if not await self.store.exists(volume_id):
            raise errors.NotFound(f"Volume {volume_id} has no data on this host.")
        return self.store.location(volume_id)

    async def reap_loops(self, keep: set[str]) -> list[str]:
        released = await self.loops.reap(keep)
        if self.keys_dir is not None:  # connections to other hosts' volumes no server here holds
            from cumulo.blockstore import nbd

            run_dir = self.keys_dir.parent
            for volume_id in await asyncio.to_thread(_listed, run_dir / nbd.CONNECTIONS):
                if volume_id in keep:
                    continue
                try:
                    if await nbd.disconnect(run_dir, volume_id):
                        released.append(volume_id)
                except errors.CumuloError as exc:  # a name that is no volume id: not ours to touch
                    LOG.warning("NBD connection %s left alone: %s", volume_id, exc)
        return released

    async def nbd_credentials(self, attachment_id: str, identity: str) -> str:
        from cumulo.blockstore import nbd
        from cumulo.blockstore.base import check_id
        from cumulo.volume.worker.exports import attachment_key

        if self.db is None or self.keys_dir is None:
            raise errors.CumuloError("this host has no key for volumes of other hosts")
        directory = self.keys_dir / check_id(attachment_id)
        key = await attachment_key(self.db, attachment_id)
        await asyncio.to_thread(nbd.write_psk, directory, identity, key)
        return str(directory)

    async def forget_credentials(self, attachment_id: str) -> None:
        from cumulo.blockstore.base import check_id

        if self.keys_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self.keys_dir / check_id(attachment_id), True)


class VolumeEventsAdapter:
    """The volume worker's notifier (cumulo.volume.events.ComputeNotifier) over compute's handling of
    Nova's external event "volume-extended" (ComputeService.volume_extended)."""

    def __init__(self, handler: Callable[[str, int], Awaitable[Any]]) -> None:
        self.handler = handler

    async def volume_extended(self, volume_id: str, new_size_gb: int) -> None:
        await self.handler(volume_id, new_size_gb)


class ServerMappings:
    """Whether a server still maps a volume (compute's block_device_mapping rows): what the volume
    service asks before a user deletes an attachment a server is connected through, as Cinder asks
    Nova since OSSA-2023-003."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def holds(self, instance_uuid: str, volume_id: str) -> bool:
        async with self.db.read() as conn:
            return await volume_records.volume_of_instance(conn, instance_uuid, volume_id) is not None


def _listed(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
