"""Attachments: the 3.27+ attachments API and the old os-reserve/os-attach/os-begin_detaching/
os-roll_detaching/os-detach/os-unreserve actions, as state changes and attachment records.

The API only records: which instance or host holds the volume, its device, mode and connector.
Making the host match (loop device, QMP blockdev-add) is the compute side's work (ATTACH/NOVAVOL),
which then calls these records (`os-attach`, or `attachments` update + `os-complete`). A volume
that is not multiattach takes one attachment: a second is a 400, as in Cinder. Every status change
is a compare-and-swap; a lost race is a 409.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.volume import query, records, states
from cumulo.volume.base import authorize, check_uuid, not_found, wants_all_tenants
from cumulo.volume.models import volume_admin_metadata, volume_attachments, volumes
from cumulo.volume.volumes import Volumes

LOG = logging.getLogger(__name__)

ATTACHMENT_SORT_KEYS = ("id", "status", "created_at", "volume_id", "instance")
ATTACHMENT_FILTERS = {
    "volume_id": query.equals("volume_id"),
    "instance_id": query.equals("instance"),
    "status": query.equals("status"),
    "attach_status": query.equals("status"),
}


def _mode(value: Any) -> str:
    if value not in ("rw", "ro"):
        raise errors.Invalid("Invalid request to attach volume with an invalid mode. Attaching mode should be 'rw' or 'ro'.")
    return str(value)


def _connector(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.Invalid("Invalid input received: connector must be an object.")
    raw = json.dumps(value)
    if len(raw) > 16384:
        raise errors.Invalid("Invalid input received: connector is too large.")
    for key in ("host", "mountpoint"):  # kept in the attachment's columns: strings of 255 at most
        records.text(value.get(key), f"connector/{key}")
    return value


def _takes_connector(att: Any) -> None:
    if att.attach_status not in (states.ATTACHMENT_RESERVED, states.ATTACHMENT_ATTACHING):
        raise errors.Invalid(f"Invalid input received: attachment {att.id} is {att.attach_status}; only a reserved "
                             "attachment takes a connector.")


def _remote(volume_host: str | None, connector: dict[str, Any]) -> bool:
    """Whether the connector's host reaches the volume over the network: another host than the
    volume's, with an underlay address (one machine, or no volume host recorded: the file)."""
    return bool(volume_host and connector.get("ip") and connector.get("host") != volume_host)


def exported(att: Any) -> bool:
    """Whether the attachment's connection is a volume host's NBD export."""
    try:
        info = json.loads(att.connection_info_json or "null")
    except ValueError:
        return False
    return isinstance(info, dict) and info.get("driver_volume_type") == "nbd"


def attachment_record(row: Any) -> dict[str, Any]:
    rec = dict(row._mapping)
    rec["connector"] = json.loads(rec.pop("connector_json") or "null")
    rec["connection_info"] = json.loads(rec.pop("connection_info_json") or "null")
    rec["status"] = rec["attach_status"]
    rec["instance"] = rec["instance_uuid"]
    return rec


def connection_info(volume_id: str, mode: str, connector: dict[str, Any] | None) -> dict[str, Any]:
    """What the compute side needs to reach the volume: Cumulo's file backend is local to the volume
    worker's host, found by volume id (blockstore's `location`), never a path from the request."""
    return {
        "driver_volume_type": "cumulo_file",
        "data": {"volume_id": volume_id, "access_mode": mode, "encrypted": False, "discard": True,
                 "host": (connector or {}).get("host")},
    }


class Attachments(Volumes):
    """Attachment records and the attach/detach actions."""

    # Whether a server still maps the volume (the runtime wires compute's block device mappings;
    # None: no compute service to ask).
    nova_holds: Callable[[str, str], Awaitable[bool]] | None = None

    async def _check_deletion_allowed(self, ctx: RequestContext, att: Any) -> None:
        """Cinder's fix of OSSA-2023-003: an attachment a server is connected through (an
        instance's, with connection_info, that the server still maps) is deleted only by the
        compute service (its `service` role) or an admin. A user's delete would leave the disk in
        the guest while the volume shows available, to be transferred and attached elsewhere."""
        if ctx.is_admin or ctx.has_role("service") or not (att.instance_uuid and att.connection_info_json):
            return
        if self.nova_holds is not None and await self.nova_holds(str(att.instance_uuid), str(att.volume_id)):
            raise errors.Conflict(f"Detach volume from instance {att.instance_uuid} using the Compute API")

    async def _readonly(self, conn: AsyncConnection, volume_id: str) -> bool:
        meta = (await records.kv_of(conn, volume_admin_metadata, "volume_id", [volume_id]))[volume_id]
        return meta.get("readonly", "False") == "True"

    async def _live_attachments(self, conn: AsyncConnection, volume_id: str) -> list[Any]:
        q = sa.select(volume_attachments).where(
            volume_attachments.c.volume_id == volume_id, volume_attachments.c.attach_status != states.ATTACHMENT_DETACHED)
        return list((await conn.execute(q)).all())

    async def _reserve_for(self, conn: AsyncConnection, row: Any, action: str) -> None:
        """CAS the volume into its reserved state for a new attachment (multiattach: more than one)."""
        if row.multiattach:
            allowed = states.allowed_from(f"{action}_multiattach")
        else:
            allowed = states.allowed_from(action)
            if row.attach_status == states.ATTACHED or await self._live_attachments(conn, row.id):
                raise errors.Invalid(
                    f"Invalid volume: Volume {row.id} status must be available to reserve, but the current status "
                    f"is {row.status} (it is attached and not multiattach).")
        states.check_status(row.status, allowed, action="reserve")
        target = row.status if row.status == states.IN_USE else states.target_of(action)
        await states.transition(conn, volumes, row.id, allowed, {"status": target})

    # ---- the 3.27+ attachments API ------------------------------------------------------------

    async def create_attachment(self, ctx: RequestContext, body: Any, *, version: tuple[int, int]) -> dict[str, Any]:
        authorize(ctx, "attachment:manage")
        a = records.unwrap(body, "attachment")
        volume_id = check_uuid(a.get("volume_uuid"), "volume_uuid")
        instance = check_uuid(a["instance_uuid"], "instance_uuid") if a.get("instance_uuid") is not None else None
        connector = _connector(a.get("connector"))
        mode = _mode(a.get("mode", "rw")) if version >= (3, 54) else "rw"
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            if mode == "rw" and await self._readonly(conn, row.id):
                mode = "ro"
            await self._reserve_for(conn, row, "attachment_create")
            attachment_id = new_uuid()
            status = states.ATTACHMENT_RESERVED
            info = None
            if connector is not None:
                status = states.ATTACHMENT_ATTACHING
                info = connection_info(row.id, mode, connector)
                await states.transition(conn, volumes, row.id, states.allowed_from("attachment_update"),
                                        {"status": row.status if row.status == states.IN_USE else states.ATTACHING})
            await conn.execute(volume_attachments.insert().values(
                id=attachment_id, volume_id=row.id, project_id=row.project_id, instance_uuid=instance,
                attached_host=(connector or {}).get("host"), mountpoint=(connector or {}).get("mountpoint"),
                attach_mode=mode, attach_status=status, connector_json=json.dumps(connector) if connector else None,
                connection_info_json=json.dumps(info) if info else None, created_at=utcnow()))
            return attachment_record(await self._attachment_row(conn, ctx, attachment_id))

    async def _attachment_row(self, conn: AsyncConnection, ctx: RequestContext, attachment_id: str) -> Any:
        return await self.owned_row(conn, ctx, volume_attachments, "attachment", attachment_id)

    async def update_attachment(self, ctx: RequestContext, attachment_id: str, body: Any) -> dict[str, Any]:
        authorize(ctx, "attachment:manage")
        a = records.unwrap(body, "attachment")
        connector = _connector(a.get("connector"))
        if connector is None:
            raise errors.Invalid("Invalid input received: Attachment update requires a connector.")
        async with self.db.read() as conn:
            att = await self._attachment_row(conn, ctx, attachment_id)
            _takes_connector(att)
            volume_host = await conn.scalar(sa.select(volumes.c.host).where(volumes.c.id == att.volume_id))
        # Cinder's initialize_connection: a connector from another host (with an underlay address)
        # gets an NBD export of the volume host (volume/worker/exports.py); the local host its file.
        remote = _remote(volume_host, connector)
        info = None
        if remote:
            info = await self.worker.initialize_connection(str(volume_host), att.volume_id, att.id,
                                                           str(connector.get("host")), att.attach_mode)
        try:
            done = await self._record_connection(ctx, att.id, connector, info)
        except BaseException:
            if remote:
                await self._terminate(str(volume_host), att.id)
            raise
        if exported(att) and not remote:  # it was exported, and its host now is the volume's
            await self._terminate(volume_host, att.id)
        return done

    async def reconnect_attachment(self, ctx: RequestContext, attachment_id: str, connector: Any) -> dict[str, Any]:
        """Nova's attachment update for a server that moved to another host (migration, evacuation)
        while attached: the attachment's connection for the new host's connector (the volume host's
        export, or its file when the server is now there), its status unchanged."""
        authorize(ctx, "attachment:manage")
        conn_spec = _connector(connector)
        if conn_spec is None:
            raise errors.Invalid("Invalid input received: Attachment update requires a connector.")
        async with self.db.read() as conn:
            att = await self._attachment_row(conn, ctx, attachment_id)
            volume_host = await conn.scalar(sa.select(volumes.c.host).where(volumes.c.id == att.volume_id))
        remote = _remote(volume_host, conn_spec)
        if remote:
            info = await self.worker.initialize_connection(str(volume_host), att.volume_id, att.id,
                                                           str(conn_spec.get("host")), att.attach_mode)
        else:
            info = connection_info(att.volume_id, att.attach_mode, conn_spec)
        async with self.db.write() as conn:
            await conn.execute(volume_attachments.update().where(volume_attachments.c.id == att.id).values(
                connector_json=json.dumps(conn_spec), connection_info_json=json.dumps(info),
                attached_host=conn_spec.get("host"), updated_at=utcnow()))
            done = attachment_record(await self._attachment_row(conn, ctx, att.id))
        if exported(att) and not remote:
            await self._terminate(volume_host, att.id)
        return done

    async def _terminate(self, volume_host: str | None, attachment_id: str) -> None:
        """Cinder's terminate_connection: the attachment's export stopped. The volume host away
        is logged, not raised: its worker stops exports of gone attachments when it starts."""
        if not volume_host:
            return
        try:
            await self.worker.terminate_connection(volume_host, attachment_id)
        except Exception as exc:  # noqa: BLE001 - the attachment goes anyway
            LOG.warning("stopping the NBD export of attachment %s on %s failed: %s", attachment_id, volume_host, exc)

    async def _record_connection(self, ctx: RequestContext, attachment_id: str, connector: dict[str, Any],
                                 exported: dict[str, Any] | None) -> dict[str, Any]:
        async with self.db.write() as conn:
            att = await self._attachment_row(conn, ctx, attachment_id)
            _takes_connector(att)
            vol = (await conn.execute(sa.select(volumes).where(volumes.c.id == att.volume_id))).one()
            await states.transition(conn, volumes, vol.id, states.allowed_from("attachment_update"),
                                    {"status": vol.status if vol.status == states.IN_USE else states.ATTACHING})
            info = exported or connection_info(vol.id, att.attach_mode, connector)
            await conn.execute(volume_attachments.update().where(volume_attachments.c.id == att.id).values(
                attach_status=states.ATTACHMENT_ATTACHING, connector_json=json.dumps(connector),
                connection_info_json=json.dumps(info), attached_host=connector.get("host"),
                mountpoint=connector.get("mountpoint", att.mountpoint), updated_at=utcnow()))
            return attachment_record(await self._attachment_row(conn, ctx, att.id))

    async def complete_attachment(self, ctx: RequestContext, attachment_id: str) -> None:
        authorize(ctx, "attachment:manage")
        async with self.db.write() as conn:
            att = await self._attachment_row(conn, ctx, attachment_id)
            if att.attach_status == states.ATTACHMENT_ATTACHED:
                return
            if att.attach_status not in (states.ATTACHMENT_RESERVED, states.ATTACHMENT_ATTACHING):
                raise errors.Invalid(f"Invalid input received: attachment {att.id} is {att.attach_status}.")
            await self._mark_attached(conn, att.volume_id, att.id)

    async def _mark_attached(self, conn: AsyncConnection, volume_id: str, attachment_id: str) -> None:
        now = utcnow()
        await states.transition(conn, volumes, volume_id, states.allowed_from("attach"),
                                {"status": states.IN_USE, "attach_status": states.ATTACHED})
        await conn.execute(volume_attachments.update().where(volume_attachments.c.id == attachment_id).values(
            attach_status=states.ATTACHMENT_ATTACHED, attach_time=now, updated_at=now))

    async def delete_attachment(self, ctx: RequestContext, attachment_id: str) -> str:
        """Drop the attachment; the volume goes back to available when none is left. Returns the
        volume's status afterwards (Cinder answers {"attachments": [...]}: the remaining ones)."""
        authorize(ctx, "attachment:manage")
        async with self.db.read() as conn:
            await self._check_deletion_allowed(ctx, await self._attachment_row(conn, ctx, attachment_id))
        async with self.db.write() as conn:
            att = await self._attachment_row(conn, ctx, attachment_id)
            status = await self._drop_attachment(conn, att)
            volume_host = await conn.scalar(sa.select(volumes.c.host).where(volumes.c.id == att.volume_id))
        if exported(att):
            await self._terminate(volume_host, att.id)
        return status

    async def _drop_attachment(self, conn: AsyncConnection, att: Any) -> str:
        await conn.execute(volume_attachments.delete().where(volume_attachments.c.id == att.id))
        vol = (await conn.execute(sa.select(volumes).where(volumes.c.id == att.volume_id))).one()
        left = await self._live_attachments(conn, vol.id)
        attached = any(a.attach_status == states.ATTACHMENT_ATTACHED for a in left)
        if attached:
            status, attach_status = states.IN_USE, states.ATTACHED
        elif left:
            status, attach_status = states.RESERVED, states.DETACHED
        else:
            status, attach_status = states.AVAILABLE, states.DETACHED
        # (error: only a forced detach gets here with it; Cinder's volume_detached makes it available too)
        if vol.status in (states.RESERVED, states.ATTACHING, states.IN_USE, states.DETACHING, states.AVAILABLE,
                          "error_attaching", "error_detaching", states.ERROR):
            await states.transition(conn, volumes, vol.id, {vol.status},
                                    {"status": status, "attach_status": attach_status})
            return status
        await conn.execute(volumes.update().where(volumes.c.id == vol.id).values(attach_status=attach_status))
        return str(vol.status)

    async def list_attachments(self, ctx: RequestContext, params: dict[str, str]) -> query.Page:
        authorize(ctx, "volume:get")
        all_tenants = wants_all_tenants(ctx, params)
        q = sa.select(volume_attachments)
        if not all_tenants:
            q = q.where(volume_attachments.c.project_id == ctx.project_id)
        async with self.db.read() as conn:
            items = [attachment_record(r) for r in (await conn.execute(q)).all()]
        return query.apply(items, params, allowed_sort=ATTACHMENT_SORT_KEYS, filters=ATTACHMENT_FILTERS)

    async def get_attachment(self, ctx: RequestContext, attachment_id: str) -> dict[str, Any]:
        authorize(ctx, "volume:get")
        async with self.db.read() as conn:
            return attachment_record(await self._attachment_row(conn, ctx, attachment_id))

    # ---- the old actions --------------------------------------------------------------------

    async def reserve(self, ctx: RequestContext, volume_id: str) -> None:
        authorize(ctx, "volume:attach")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            await self._reserve_for(conn, row, "reserve")

    async def unreserve(self, ctx: RequestContext, volume_id: str) -> None:
        authorize(ctx, "volume:attach")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            if row.status == states.IN_USE:
                return  # a multiattach volume already in use stays so
            states.check_status(row.status, states.allowed_from("unreserve"), action="unreserve")
            target = states.IN_USE if row.attach_status == states.ATTACHED else states.AVAILABLE
            await states.transition(conn, volumes, row.id, states.allowed_from("unreserve"), {"status": target})

    async def attach(self, ctx: RequestContext, volume_id: str, body: dict[str, Any]) -> None:
        """os-attach: record the volume attached to an instance (or a host) at a mountpoint."""
        authorize(ctx, "volume:attach")
        instance = body.get("instance_uuid")
        host = records.text(body.get("host_name"), "host_name")
        if instance is None and not host:
            raise errors.Invalid("Invalid request to attach volume to an invalid target")
        if instance is not None:
            instance = check_uuid(instance, "instance_uuid")
        mountpoint = records.text(body.get("mountpoint"), "mountpoint", nullable=False)
        mode = _mode(body.get("mode", "rw"))
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            if mode == "rw" and await self._readonly(conn, row.id):
                raise errors.Invalid(f"Invalid attaching mode '{mode}' for volume {row.id}.")
            live = await self._live_attachments(conn, row.id)
            mine = [a for a in live if a.attach_status != states.ATTACHMENT_ATTACHED
                    and (a.instance_uuid == instance or a.instance_uuid is None)]
            if not mine:
                if row.status != states.ATTACHING:  # os-attach without os-reserve first
                    await self._reserve_for(conn, row, "reserve")
                attachment_id = new_uuid()
                await conn.execute(volume_attachments.insert().values(
                    id=attachment_id, volume_id=row.id, project_id=row.project_id, instance_uuid=instance,
                    attached_host=host, mountpoint=mountpoint, attach_mode=mode,
                    attach_status=states.ATTACHMENT_ATTACHING, created_at=utcnow()))
            else:
                attachment_id = mine[0].id
                await conn.execute(volume_attachments.update().where(volume_attachments.c.id == attachment_id).values(
                    instance_uuid=instance, attached_host=host, mountpoint=mountpoint, attach_mode=mode))
            await self._mark_attached(conn, row.id, attachment_id)
            await records.write_kv(conn, volume_admin_metadata, "volume_id", row.id, {"attached_mode": mode}, replace=False)

    async def begin_detaching(self, ctx: RequestContext, volume_id: str) -> None:
        authorize(ctx, "volume:attach")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            states.check_status(row.status, states.allowed_from("begin_detaching"), action="begin detaching")
            if row.attach_status != states.ATTACHED:
                raise errors.Invalid(f"Invalid volume: Volume {row.id} is not attached.")
            await states.transition(conn, volumes, row.id, states.allowed_from("begin_detaching"),
                                    {"status": states.DETACHING})

    async def roll_detaching(self, ctx: RequestContext, volume_id: str) -> None:
        authorize(ctx, "volume:attach")
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            if row.status != states.DETACHING:
                return  # Cinder: a no-op unless detaching
            await states.transition(conn, volumes, row.id, {states.DETACHING}, {"status": states.IN_USE})

    async def detach(self, ctx: RequestContext, volume_id: str, attachment_id: Any, *, force: bool = False) -> None:
        """os-detach (os-force_detach, admin, with `force`): drop one attachment."""
        authorize(ctx, "volume:reset_status" if force else "volume:attach")
        if not force:
            wanted = check_uuid(attachment_id, "attachment_id") if attachment_id is not None else None
            async with self.db.read() as conn:
                live = await self._live_attachments(conn, (await self.volume_row(conn, ctx, volume_id)).id)
            for att in live:
                if wanted is None or att.id == wanted:
                    await self._check_deletion_allowed(ctx, att)
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            live = await self._live_attachments(conn, row.id)
            if attachment_id is not None:
                attachment_id = check_uuid(attachment_id, "attachment_id")
                chosen = [a for a in live if a.id == attachment_id]
                if not chosen:
                    raise not_found("attachment", attachment_id)
            elif len(live) > 1:
                raise errors.Invalid("Invalid volume: Detach volume failed: more than one attachment, but no attachment_id provided.")
            else:
                chosen = live
            if not chosen and row.status == states.AVAILABLE:
                return  # Cinder: "Volume detach called, but volume not attached": a 202 that changes nothing
            if not force:
                states.check_status(row.status, states.allowed_from("detach"), action="detach")
            if not chosen:
                raise errors.Invalid(f"Invalid volume: Volume {row.id} is not attached.")
            await self._drop_attachment(conn, chosen[0])
        if exported(chosen[0]):
            await self._terminate(row.host, chosen[0].id)

    async def initialize_connection(self, ctx: RequestContext, volume_id: str, connector: Any) -> dict[str, Any]:
        authorize(ctx, "volume:attach")
        conn_spec = _connector(connector)
        if conn_spec is None:
            raise errors.Invalid("Invalid input received: os-initialize_connection needs a connector.")
        async with self.db.read() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            mode = "ro" if await self._readonly(conn, row.id) else "rw"
        return connection_info(row.id, mode, conn_spec)
