"""A server's volumes (Nova's os-volume_attachments, `openstack server add/remove volume`).

Nova's flow over Cinder's attachments API: attach checks the server (not locked, in a state that
takes a volume) and the volume (visible to the caller; multiattach only from 2.60; not already on
this server), picks the device name, writes the block device mapping, creates the attachment (the
volume is `reserved`; a volume in use elsewhere and not multiattach is the volume service's 400)
and casts the agent, which connects, attaches through the driver and completes the attachment
(volume `in-use`). Detach marks the volume `detaching` and casts the agent, which detaches through
the driver and deletes the attachment (volume `available`). The root volume of a server booted
from a volume cannot be detached (403, as Nova). Swapping volumes (PUT with another volumeId) is
refused: 409 for the admin (policy `swap`), 403 for others; from 2.85 the PUT changes
delete_on_termination.

`volume_extended` is Nova's external event "volume-extended" as the volume worker sends it: each
server holding the volume is told, through its agent, to show the guest the new size.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import actions as act
from cumulo.compute import states as st
from cumulo.compute import volume_records
from cumulo.compute import volumes as vol
from cumulo.compute.models import instances
from cumulo.compute.service import transitions as tr
from cumulo.context import RequestContext

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService

LOG = logging.getLogger(__name__)

# Nova's check_instance_state of attach_volume / detach_volume (no shelve here).
_ATTACH_STATES = frozenset({st.ACTIVE, st.PAUSED, st.STOPPED, st.RESIZED})
GIB = 1024 ** 3


class VolumeAttachmentService:
    def __init__(self, compute: ComputeService) -> None:
        self.compute = compute
        self.db = compute.db

    def client(self) -> vol.VolumeClient:
        if self.compute.volumes is None:
            raise errors.NotFound("The resource could not be found.")  # no block storage in this cloud
        return self.compute.volumes

    # ---- reads ------------------------------------------------------------------------------

    async def of_server(self, inst: dict[str, Any]) -> list[dict[str, Any]]:
        """The server's volume mappings, in Nova's order."""
        async with self.db.read() as conn:
            return [dict(r) for r in vol.volume_rows(await volume_records.of_instance(conn, inst["uuid"]))]

    async def get(self, inst: dict[str, Any], volume_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await volume_records.volume_of_instance(conn, inst["uuid"], volume_id)
        if row is None:
            raise errors.NotFound(f"volume_id not found: {volume_id}")
        return row

    async def of_servers(self, uuids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The mappings of many servers at once (the server views' volumes_attached)."""
        async with self.db.read() as conn:
            return await volume_records.of_instances(conn, uuids)

    # ---- attach -----------------------------------------------------------------------------

    def _check(self, ctx: RequestContext, inst: dict[str, Any], api_name: str) -> str:
        return tr.device_host(ctx, inst, api_name, _ATTACH_STATES)

    async def attach(
        self, ctx: RequestContext, inst: dict[str, Any], volume_id: str, *, device: str | None = None,
        tag: str | None = None, delete_on_termination: bool = False, multiattach_ok: bool = True,
    ) -> dict[str, Any]:
        """Reserve the volume for the server and cast the agent; returns the new mapping."""
        client = self.client()
        host = self._check(ctx, inst, "attach_volume")
        volume = await client.get_volume(ctx, volume_id)  # NotFound: "Volume <id> could not be found."
        if volume.get("multiattach") and not multiattach_ok:
            raise errors.Invalid("Multiattach volumes are only supported starting with compute API version 2.60.")
        wanted = None
        if device:
            wanted = volume_records.normalize_device(device)
            if wanted is None:
                raise errors.Invalid(f"The supplied device path ({device}) is invalid.")
        async with self.db.write() as conn:
            rows = await volume_records.of_instance(conn, inst["uuid"])
            if any(r.get("volume_id") == volume_id for r in rows):
                raise errors.Invalid(f"Invalid volume: volume {volume_id} already attached")
            used = [r.get("device_name") for r in rows]
            if wanted is not None and wanted in used:
                raise errors.Conflict(f"The supplied device path ({wanted}) is in use.")
            name = wanted or volume_records.next_device_name(used)
            bdm = await volume_records.insert(
                conn, instance_uuid=inst["uuid"], source_type=vol.SOURCE_VOLUME, destination_type=vol.DEST_VOLUME,
                volume_id=volume_id, device_name=name, boot_index=None, tag=tag,
                delete_on_termination=bool(delete_on_termination), device_type="disk", disk_bus="virtio",
                volume_size=volume.get("size"))
        try:
            attachment = await client.attachment_create(ctx, volume_id, inst["uuid"])
        except BaseException:
            async with self.db.write() as conn:
                await volume_records.delete(conn, bdm["uuid"])
            raise
        async with self.db.write() as conn:
            await volume_records.update(conn, bdm["uuid"], attachment_id=attachment["id"])
            await act.record_action(conn, ctx, inst["uuid"], vol.ATTACH_VOLUME)
        bdm["attachment_id"] = attachment["id"]
        try:
            await self.compute.agents.attach_volume(host, inst["uuid"], bdm_uuid=bdm["uuid"], request_id=ctx.request_id)
        except Exception:  # the agent was not told: the reservation and the mapping are given back
            with contextlib.suppress(errors.CumuloError):
                await client.attachment_delete(ctx, str(attachment["id"]))
            async with self.db.write() as conn:
                await volume_records.delete(conn, bdm["uuid"])
            raise
        return bdm

    # ---- update (2.85) / swap ---------------------------------------------------------------

    async def update(self, ctx: RequestContext, inst: dict[str, Any], volume_id: str,
                     delete_on_termination: bool | None) -> None:
        row = await self.get(inst, volume_id)
        tr.check_lock(ctx, inst)
        if delete_on_termination is not None:
            async with self.db.write() as conn:
                await volume_records.update(conn, row["uuid"], delete_on_termination=bool(delete_on_termination))

    @staticmethod
    def refuse_swap(old_volume_id: str, new_volume_id: str) -> errors.CumuloError:
        return errors.Conflict(
            f"Swapping volume {old_volume_id} for {new_volume_id} is not supported by this cloud: detach the "
            "volume and attach the other one.")

    # ---- detach -----------------------------------------------------------------------------

    async def detach(self, ctx: RequestContext, inst: dict[str, Any], volume_id: str) -> None:
        client = self.client()
        row = await self.get(inst, volume_id)
        host = self._check(ctx, inst, "detach_volume")
        if row.get("boot_index") == 0:
            raise errors.Forbidden("Cannot detach a root device volume")
        if not row.get("attachment_id"):
            raise errors.Invalid(f"Invalid volume: volume {volume_id} is still being attached.")
        await client.begin_detaching(ctx, volume_id)  # not in-use (still attaching): the volume service's 400
        async with self.db.write() as conn:
            await act.record_action(conn, ctx, inst["uuid"], vol.DETACH_VOLUME)
        try:
            await self.compute.agents.detach_volume(host, inst["uuid"], volume_id=volume_id, request_id=ctx.request_id)
        except Exception:  # the agent was not told: the volume is in-use again, not left detaching
            with contextlib.suppress(errors.CumuloError):
                await client.roll_detaching(ctx, volume_id)
            raise

    # ---- the volume worker's event ---------------------------------------------------------

    async def volume_extended(self, volume_id: str, new_size_gb: int) -> None:
        """Nova's "volume-extended" external event: each live server on a host that maps the volume
        is told (an instance action extend_volume, a cast to its agent)."""
        async with self.db.read() as conn:
            rows = await volume_records.of_volume(conn, volume_id)
            uuids = sorted({str(r["instance_uuid"]) for r in rows})
            servers = (await conn.execute(sa.select(instances.c.uuid, instances.c.host, instances.c.project_id,
                                                    instances.c.user_id).where(
                instances.c.uuid.in_(uuids), instances.c.deleted.is_(False)))).all() if uuids else []
        for uuid, host, project_id, user_id in servers:
            if not host:
                continue
            ctx = vol.owner_context({"project_id": project_id, "user_id": user_id})
            async with self.db.write() as conn:
                await act.record_action(conn, ctx, uuid, vol.EXTEND_VOLUME)
            LOG.info("volume %s grew to %s GiB: telling server %s on %s", volume_id, new_size_gb, uuid, host)
            await self.compute.agents.extend_volume(host, uuid, volume_id=volume_id,
                                                    new_size_bytes=int(new_size_gb) * GIB, request_id=ctx.request_id)
