"""A new server's block device mappings on the agent, before and after spawn (Nova's
_prep_block_device and _await_block_device_map_created, with Cinder's attachments API).

prepare (the build, before the driver's spawn): every mapping onto a volume gets its volume and
its attachment. A volume to be made (source image, snapshot or blank) is created through the volume
service as the server's owner, its id recorded on the mapping at once (so a delete or a failed build
finds it), then waited for until `available` (an `error` volume fails the build with its reason;
at most VOLUME_WAIT seconds). Each volume is then reserved for the server (an existing volume was
reserved by the API already) and given this host's connector (attachment `attaching`, its
connection_info kept on the mapping). The driver then spawns with the volumes as
InstanceSpec.disks (Node.spec): the boot_index 0 one is the root.

complete (after a successful spawn): every attachment completed (volumes in-use).

A failed build gives everything back (compute/agent/volumes.release: attachments deleted, the
volumes with delete_on_termination deleted, the mappings removed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.compute import volume_records
from cumulo.compute import volumes as vol
from cumulo.context import RequestContext

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

VOLUME_WAIT = 300.0  # Nova: block_device_allocate_retries (60) x its interval (3 s) = 180 s; slow hosts here


class VolumeNotReady(errors.CumuloError):
    code = 500


def _mappings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("destination_type") == vol.DEST_VOLUME]


async def _rows(node: Node, uuid: str) -> list[dict[str, Any]]:
    async with node.db.read() as conn:
        return _mappings(await volume_records.of_instance(conn, uuid))


async def has_volumes(node: Node, uuid: str) -> bool:
    return bool(await _rows(node, uuid))


async def every_mapping(node: Node, uuid: str) -> list[dict[str, Any]]:
    """Every block device mapping of the server (local disks too), as Node.spec reads them."""
    async with node.db.read() as conn:
        return await volume_records.of_instance(conn, uuid)


async def prepare(
    node: Node, inst: dict[str, Any], request_id: str | None, *, mappings: list[dict[str, Any]] | None = None
) -> bool:
    """The server's volumes made and connected; False when it has none (then the build skips
    `complete`: a read less on the build path). `mappings`: `every_mapping` just read (the build
    hands the same rows to Node.spec when there is no volume to make: one read for both)."""
    rows = _mappings(mappings) if mappings is not None else await _rows(node, str(inst["uuid"]))
    if not rows:
        return False
    if node.volumes is None:
        raise errors.CumuloError(f"Host {node.host} has no volume service for the server's volumes.")
    client = node.volumes
    ctx = vol.owner_context(inst, request_id)
    made: list[tuple[dict[str, Any], str]] = []
    for row in rows:  # first every volume to be made, so they are made side by side
        if not row.get("volume_id"):
            made.append((row, await _create(node, client, ctx, inst, row)))
    for row, volume_id in made:
        await _wait_available(client, ctx, volume_id)
        row["volume_id"] = volume_id
    for row in rows:
        await _connect(node, client, ctx, str(inst["uuid"]), row)
    return True


async def _create(node: Node, client: vol.VolumeClient, ctx: RequestContext, inst: dict[str, Any],
                  row: dict[str, Any]) -> str:
    source = row.get("source_type")
    size = int(row.get("volume_size") or 0)
    if source == vol.SOURCE_IMAGE:
        volume = await client.create_volume(ctx, size_gb=size, image_id=str(row["image_id"]),
                                            volume_type=row.get("volume_type"))
    elif source == vol.SOURCE_SNAPSHOT:
        volume = await client.create_volume(ctx, size_gb=size, snapshot_id=str(row["snapshot_id"]),
                                            volume_type=row.get("volume_type"))
    elif source == vol.SOURCE_BLANK:
        volume = await client.create_volume(ctx, size_gb=size, volume_type=row.get("volume_type"))
    else:
        raise errors.Invalid(f"Block device mapping {row['uuid']} of a {source} has no volume.")
    volume_id = str(volume["id"])
    async with node.db.write() as conn:  # recorded before waiting: a delete meanwhile releases it
        await volume_records.update(conn, str(row["uuid"]), volume_id=volume_id)
    LOG.info("server %s: volume %s made from %s for mapping %s", inst["uuid"], volume_id, source, row["uuid"])
    return volume_id


async def _wait_available(client: vol.VolumeClient, ctx: RequestContext, volume_id: str) -> None:
    deadline = time.monotonic() + VOLUME_WAIT
    delay = 0.1
    while True:
        volume = await client.get_volume(ctx, volume_id)
        status = volume.get("status")
        if status == "available":
            return
        if status in ("error", "error_restoring"):
            reason = volume.get("error_message") or "no reason given"
            raise VolumeNotReady(f"Volume {volume_id} did not finish creation and is in status {status}: {reason}")
        if time.monotonic() >= deadline:
            raise VolumeNotReady(f"Volume {volume_id} did not finish being created even after we waited "
                                 f"{VOLUME_WAIT:.0f} seconds; its status is {status}.")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)


async def _connect(node: Node, client: vol.VolumeClient, ctx: RequestContext, uuid: str, row: dict[str, Any]) -> None:
    """The volume reserved for the server (unless the API did) and this host's connector given."""
    attachment_id = row.get("attachment_id")
    if not attachment_id:
        att = await client.attachment_create(ctx, str(row["volume_id"]), uuid)
        attachment_id = str(att["id"])
        async with node.db.write() as conn:
            await volume_records.update(conn, str(row["uuid"]), attachment_id=attachment_id)
        row["attachment_id"] = attachment_id
    att = await client.attachment_update(ctx, str(attachment_id), vol.connector_for(node.host, row.get("device_name"), node.conf.underlay_ip))
    async with node.db.write() as conn:
        await volume_records.update(conn, str(row["uuid"]), connection_info=att.get("connection_info"))


async def complete(node: Node, inst: dict[str, Any], request_id: str | None) -> None:
    """After the spawn: the attachments completed (the volumes in-use). A failure is logged: the
    server runs with the volume, and the agent's reconcile completes an attach cut short."""
    rows = await _rows(node, str(inst["uuid"]))
    if not rows or node.volumes is None:
        return
    ctx = vol.owner_context(inst, request_id)
    for row in rows:
        if row.get("attachment_id"):
            try:
                await node.volumes.attachment_complete(ctx, str(row["attachment_id"]))
            except errors.CumuloError as exc:
                LOG.warning("server %s: completing the attachment of volume %s failed: %s", inst["uuid"],
                            row.get("volume_id"), exc)
