"""A server's volumes on the agent: attach, detach, extend, release and reconcile.

Nova's compute manager with Cinder's attachments API:

- attach (os-volume_attachments POST; the API reserved the volume and wrote the mapping): the
  host's connector to the volume service (attachment `attaching`, its connection_info kept on the
  mapping), the driver's attach_volume with a DiskSpec from the host's block store (by volume id),
  then the attachment completed (volume in-use). A failure undoes all three: driver detach, the
  attachment deleted (volume available), the mapping removed, an instance fault recorded.
- detach (DELETE; the API marked the volume detaching): the driver's detach_volume, the attachment
  deleted, the mapping removed. A driver refusal (a process holding the volume, a guest that does
  not let go) rolls the volume back to in-use and records a fault.
- extend (Cinder's "volume-extended" event): the driver's extend_volume.
- release (terminate, after the driver destroyed the server): every attachment deleted, the
  volumes with delete_on_termination deleted, the mappings removed.
- reconcile (agent start): the DB's attachments and the driver's records are made to agree, then
  the host's loop-device table is reaped (`reap_loops`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.compute import actions, volume_records
from cumulo.compute import instances as inst_db
from cumulo.compute import states as s
from cumulo.compute import volumes as vol
from cumulo.compute.agent import disks
from cumulo.compute.drivers.base import Capability, driver_for, supports
from cumulo.compute.faults import fault_text
from cumulo.context import RequestContext

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

# Attachment statuses (Cinder's) of an attach under way.
_ATTACHING = frozenset({"reserved", "attaching"})


def _client(node: Node) -> vol.VolumeClient:
    if node.volumes is None:
        raise errors.CumuloError("This cloud has no volume service.")
    return node.volumes


async def _fault(node: Node, uuid: str, exc: BaseException | str) -> None:
    if isinstance(exc, BaseException):
        message, details = fault_text(exc)
    else:
        message, details = exc, exc
    code = exc.code if isinstance(exc, errors.CumuloError) else 500
    async with node.db.write() as conn:
        await inst_db.add_fault(conn, uuid, code, message, details, host=node.host)


async def _bdm(node: Node, bdm_uuid: str) -> dict[str, Any] | None:
    async with node.db.read() as conn:
        return await volume_records.get(conn, bdm_uuid)


async def _drop_mapping(node: Node, ctx: RequestContext, bdm: Mapping[str, Any]) -> None:
    """The attachment deleted (already gone is fine) and the mapping row removed."""
    if bdm.get("attachment_id") and node.volumes is not None:
        with contextlib.suppress(errors.NotFound):
            await node.volumes.attachment_delete(ctx, str(bdm["attachment_id"]))
    async with node.db.write() as conn:
        await volume_records.delete(conn, str(bdm["uuid"]))
    await _forget_keys(node, [bdm])


async def forget_keys_of(node: Node, uuid: str) -> None:
    """A server gone from this host (a live migration's source): its NBD key files here removed."""
    async with node.db.read() as conn:
        rows = await volume_records.of_instance(conn, uuid)
    await _forget_keys(node, rows)


async def _forget_keys(node: Node, rows: Iterable[Mapping[str, Any]]) -> None:
    """The NBD key files of mappings that went (a volume of another host: disks.py)."""
    if node.host_volumes is None:
        return
    for row in rows:
        if (row.get("connection_info") or {}).get("driver_volume_type") == "nbd" and row.get("attachment_id"):
            with contextlib.suppress(Exception):
                await node.host_volumes.forget_credentials(str(row["attachment_id"]))


async def _driver_detach(node: Node, uuid: str, volume_id: str, *, force: bool) -> None:
    if supports(node.driver, Capability.VOLUMES):
        await driver_for(node.driver, Capability.VOLUMES, node=node.name).detach_volume(uuid, volume_id, force=force)


async def _driver_attach(node: Node, uuid: str, bdm: Mapping[str, Any]) -> None:
    if node.host_volumes is None:
        raise errors.CumuloError(f"Host {node.host} has no block store to attach volume {bdm['volume_id']} from.")
    [disk] = await disks.disk_specs([bdm], node.host_volumes)
    await driver_for(node.driver, Capability.VOLUMES, node=node.name).attach_volume(uuid, disk)


# ---- attach -----------------------------------------------------------------------------------


async def attach(node: Node, uuid: str, bdm_uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        bdm = await _bdm(node, bdm_uuid)
        if bdm is None:
            LOG.info("attach of mapping %s to %s: the mapping is gone (detached meanwhile)", bdm_uuid, uuid)
            return
        inst = await node.load(uuid)
        if inst is None:  # deleted meanwhile: give the reservation back (as the owner)
            async with node.db.read() as conn:
                gone = await inst_db.get(conn, uuid, include_deleted=True)
            await _drop_mapping(node, vol.owner_context(gone or {}, request_id), bdm)
            return
        req = await node.request_id_for(uuid, request_id, vol.ATTACH_VOLUME)
        ctx = vol.owner_context(inst, req)
        try:
            async with actions.event(node.db, uuid, req, "compute_attach_volume", node.host):
                await _attach_locked(node, uuid, bdm, ctx)
        except Exception as exc:
            LOG.warning("attach of volume %s to %s failed: %s", bdm.get("volume_id"), uuid, exc)
            with contextlib.suppress(Exception):
                await _driver_detach(node, uuid, str(bdm["volume_id"]), force=True)
            try:
                await _drop_mapping(node, ctx, bdm)
            except Exception:
                LOG.exception("undoing the attach of %s to %s failed", bdm.get("volume_id"), uuid)
            await _fault(node, uuid, exc)


async def _attach_locked(node: Node, uuid: str, bdm: dict[str, Any], ctx: RequestContext) -> None:
    client = _client(node)
    attachment_id = str(bdm["attachment_id"])
    att = await client.attachment_update(ctx, attachment_id, vol.connector_for(node.host, bdm.get("device_name"), node.conf.underlay_ip))
    info = att.get("connection_info")
    async with node.db.write() as conn:
        await volume_records.update(conn, str(bdm["uuid"]), connection_info=info)
    bdm["connection_info"] = info
    await _driver_attach(node, uuid, bdm)
    await client.attachment_complete(ctx, attachment_id)


# ---- detach -----------------------------------------------------------------------------------


async def detach(node: Node, uuid: str, volume_id: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None:
            return
        async with node.db.read() as conn:
            bdm = await volume_records.volume_of_instance(conn, uuid, volume_id)
        if bdm is None:
            return
        req = await node.request_id_for(uuid, request_id, vol.DETACH_VOLUME)
        ctx = vol.owner_context(inst, req)
        try:
            async with actions.event(node.db, uuid, req, "compute_detach_volume", node.host):
                await _driver_detach(node, uuid, volume_id, force=False)
        except Exception as exc:
            LOG.warning("detach of volume %s from %s failed: %s", volume_id, uuid, exc)
            if node.volumes is not None:
                with contextlib.suppress(Exception):
                    await node.volumes.roll_detaching(ctx, volume_id)
            await _fault(node, uuid, exc)
            return
        await _drop_mapping(node, ctx, bdm)


# ---- extend -----------------------------------------------------------------------------------


async def extend(node: Node, uuid: str, volume_id: str, new_size_bytes: int, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None:
            return
        req = await node.request_id_for(uuid, request_id, vol.EXTEND_VOLUME)
        try:
            async with actions.event(node.db, uuid, req, "compute_extend_volume", node.host):
                await driver_for(node.driver, Capability.VOLUMES, node=node.name).extend_volume(
                    uuid, volume_id, int(new_size_bytes))
        except Exception as exc:  # the file did grow: the guest sees it at its next start
            LOG.warning("extend of volume %s on %s failed: %s", volume_id, uuid, exc)
            await _fault(node, uuid, exc)


# ---- terminate --------------------------------------------------------------------------------


async def release(node: Node, inst: Mapping[str, Any]) -> None:
    """At terminate, once the driver destroyed the server (which let go of its volumes): every
    attachment deleted, the volumes marked delete_on_termination deleted, the mappings removed.
    Failures are logged: the volume stays (available or in error) for its owner to handle."""
    uuid = str(inst["uuid"])
    async with node.db.read() as conn:
        rows = await volume_records.of_instance(conn, uuid)
    if not rows:
        return
    await vol.release_rows(node.volumes, inst, rows)
    async with node.db.write() as conn:
        await volume_records.delete_of_instance(conn, uuid)
    await _forget_keys(node, rows)


# ---- reconcile --------------------------------------------------------------------------------


async def reconcile(node: Node) -> None:
    """After a restart: no volume in-use without being attached on the host, nor the other way round.

    Per live server of this node that is not building or being deleted (those workflows own their
    volumes): an attach cut short is completed when the driver has the volume, else rolled back;
    a detach cut short (volume detaching) is finished (back to in-use if the driver cannot); every
    attached volume goes through the driver's idempotent attach again, which makes whole what a
    crash cut short or the driver lost (rolled back if that fails); a mapping whose attachment is gone is removed (and
    the driver lets go); a volume the driver holds without a mapping is detached."""
    if node.volumes is None or not supports(node.driver, Capability.VOLUMES):
        return
    drv = driver_for(node.driver, Capability.VOLUMES, node=node.name)
    for inst in await node.host_instances():
        if inst["vm_state"] in (s.BUILDING, s.DELETED) or inst["task_state"] == s.DELETING:
            continue
        uuid = str(inst["uuid"])
        try:
            async with node.locks.hold(uuid):
                await _reconcile_instance(node, drv, inst)
        except Exception:
            LOG.exception("reconcile of the volumes of %s failed", uuid)


async def _reconcile_instance(node: Node, drv: Any, inst: Mapping[str, Any]) -> None:
    uuid = str(inst["uuid"])
    client = _client(node)
    ctx = vol.owner_context(inst)
    async with node.db.read() as conn:
        rows = vol.volume_rows(await volume_records.of_instance(conn, uuid))
    held = set(await drv.attached_volumes(uuid))
    for row in rows:
        volume_id = str(row["volume_id"])
        bdm = dict(row)
        status = await _attachment_status(client, ctx, bdm)
        try:
            volume = await client.get_volume(ctx, volume_id)
        except errors.NotFound:
            volume = None
        if status is None or volume is None:
            LOG.info("volume %s of %s has no attachment any more: let go", volume_id, uuid)
            if volume_id in held:
                await drv.detach_volume(uuid, volume_id, force=True)
            if volume is not None and not bdm.get("attachment_id"):
                # a crash between the volume's reservation and the mapping's record of its id
                for att in await client.attachments_of(ctx, volume_id, uuid):
                    if att.get("status") != "detached":
                        with contextlib.suppress(errors.NotFound):
                            await client.attachment_delete(ctx, str(att["id"]))
            await _drop_mapping(node, ctx, bdm)
        elif volume.get("status") == "detaching":
            LOG.info("finishing the interrupted detach of volume %s from %s", volume_id, uuid)
            try:
                await drv.detach_volume(uuid, volume_id, force=True)
            except Exception as exc:  # the host still has it: in-use again (never left detaching)
                LOG.warning("finishing the detach of volume %s from %s failed: %s", volume_id, uuid, exc)
                await client.roll_detaching(ctx, volume_id)
                with contextlib.suppress(Exception):  # whole again on the host, as the DB now says
                    await _driver_attach(node, uuid, bdm)
                await _fault(node, uuid, exc)
            else:
                await _drop_mapping(node, ctx, bdm)
        elif status in _ATTACHING:
            if volume_id in held:
                LOG.info("completing the interrupted attach of volume %s to %s", volume_id, uuid)
                try:
                    if status == "reserved":
                        await client.attachment_update(ctx, str(bdm["attachment_id"]),
                                                       vol.connector_for(node.host, bdm.get("device_name"), node.conf.underlay_ip))
                    # The driver records a volume before the host's part (loop device, mounts,
                    # hot plug): the crash may have cut that short. Attaching a recorded volume
                    # again makes it whole (idempotent), before the DB says in-use.
                    await _driver_attach(node, uuid, bdm)
                    await client.attachment_complete(ctx, str(bdm["attachment_id"]))
                except Exception as exc:
                    LOG.warning("completing the attach of volume %s to %s failed: %s", volume_id, uuid, exc)
                    with contextlib.suppress(Exception):
                        await drv.detach_volume(uuid, volume_id, force=True)
                    await _drop_mapping(node, ctx, bdm)
                    await _fault(node, uuid, exc)
            else:
                LOG.info("rolling back the interrupted attach of volume %s to %s", volume_id, uuid)
                await _drop_mapping(node, ctx, bdm)
                await _fault(node, uuid, f"The attach of volume {volume_id} was interrupted by a restart "
                                         "of the compute service")
        else:
            if volume_id not in held:
                LOG.info("volume %s is attached to %s in the DB but not on the host: attaching it again",
                         volume_id, uuid)
            try:
                # Held or not, the driver's idempotent attach makes the host's part whole where a
                # crash cut it short (a runc filesystem grown offline is unmounted for a moment).
                await _driver_attach(node, uuid, bdm)
            except Exception as exc:
                LOG.warning("attaching volume %s to %s again failed: %s", volume_id, uuid, exc)
                if volume_id in held:
                    # The host holds it (a guest may be using it): never pulled on a failure that
                    # may pass (a QMP timeout on a busy host); it stays in-use, and the fault says why.
                    await _fault(node, uuid, exc)
                    continue
                with contextlib.suppress(Exception):
                    await drv.detach_volume(uuid, volume_id, force=True)
                await _drop_mapping(node, ctx, bdm)
                await _fault(node, uuid, exc)
    mapped = {str(r["volume_id"]) for r in rows}
    for volume_id in sorted(held - mapped):
        LOG.info("volume %s is attached to %s on the host without a mapping: detached", volume_id, uuid)
        await drv.detach_volume(uuid, volume_id, force=True)


async def _attachment_status(client: vol.VolumeClient, ctx: RequestContext, bdm: Mapping[str, Any]) -> str | None:
    if not bdm.get("attachment_id"):
        return None
    try:
        att = await client.attachment_get(ctx, str(bdm["attachment_id"]))
    except errors.NotFound:
        return None
    return str(att.get("status") or att.get("attach_status") or "")


async def reap_loops(nodes: Iterable[Node]) -> list[str]:
    """Release the loop devices of the host's table that no server here holds: `keep` is every volume
    the DB maps to a live server of this host and every volume a driver here has recorded."""
    nodes = list(nodes)
    store = next((n.host_volumes for n in nodes if n.host_volumes is not None), None)
    if store is None:
        return []
    keep: set[str] = set()
    for node in nodes:
        uuids = await node.all_host_uuids()
        async with node.db.read() as conn:
            for rows in (await volume_records.of_instances(conn, sorted(uuids))).values():
                keep.update(str(r["volume_id"]) for r in vol.volume_rows(rows))
        if supports(node.driver, Capability.VOLUMES):
            drv = driver_for(node.driver, Capability.VOLUMES, node=node.name)
            for uuid in uuids:
                with contextlib.suppress(Exception):
                    keep.update(await drv.attached_volumes(uuid))
    released = await store.reap_loops(keep)
    if released:
        LOG.info("released the loop devices of volumes no server here holds: %s", ", ".join(released))
    return released
