"""The volume worker of one host: the `VolumeWorker` casts carried out on cumulo.blockstore.

Served on the bus topic `volume.<host>` (cumulo.volume.rpc). The API recorded each request with the
row in a transitional status; here the storage work runs, then the row moves on with the same
compare-and-swap as the API (`states.transition`): to its final status, or to error/error_* with
the reason in `error_message` (backups: `fail_reason`) and in a user message to the owner
(cumulo.volume.messages, Cinder's /messages), written in the same transaction. Deleted things lose their row once their
storage is gone. `start()` makes the store's dirs and settles rows a previous worker left in a
transitional status (a crash or a stop mid-work): deletes are finished, the rest go to error with
the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.blockstore.base import GIB, BlockStore
from cumulo.db import Database
from cumulo.volume import message_events as messages
from cumulo.volume import states
from cumulo.volume.base import EXTENDING_TO, OFFLINE, OFFLINE_LEAVING
from cumulo.volume.events import ComputeNotifier
from cumulo.volume.message_events import Event
from cumulo.volume.models import backups, snapshots, volume_admin_metadata, volume_attachments, volumes
from cumulo.volume.worker import offline
from cumulo.volume.worker.exports import NbdExports

LOG = logging.getLogger(__name__)

STATUS_BEFORE_BACKUP = "status_before_backup"
UPLOADING_TO = "uploading_to_image"  # admin metadata: the image an upload in flight fills (for a restart)
UPLOAD_SCRATCH = "upload-"  # the prefix of an upload's export under the scratch dir
RESTARTED = "the volume worker restarted while the volume was {}"

# image id -> (the image store's own file of its bytes, its disk_format): never a request's path
ImageFiles = Callable[[str], Awaitable[tuple[Path, str]]]
# (image id, a file of the volume's bytes in the image's disk_format) -> the image filled and active;
# (image id, None) -> the queued image dropped (the upload failed)
ImageFill = Callable[[str, Path | None], Awaitable[None]]


def reason(exc: BaseException) -> str:
    """The message a tenant sees in error_message (255 characters at most)."""
    text = str(exc) or type(exc).__name__
    return text[:255]


def create_event(*, image_id: str | None, backup_id: str | None, reason: str) -> Event:
    """The user message of a failed create: Cinder's copy-image or restore-backup action, else its
    create-from-backend one."""
    if image_id:
        return Event(messages.COPY_IMAGE_TO_VOLUME, messages.DRIVER_FAILED_CREATE, reason)
    if backup_id:
        return Event(messages.BACKUP_RESTORE, messages.BACKUP_RESTORE_ERROR, reason)
    return Event(messages.CREATE_VOLUME_FROM_BACKEND, messages.DRIVER_FAILED_CREATE, reason)


class VolumeManager:
    """The endpoint of `volume.<host>`: one async method per cast (cumulo.volume.rpc.VolumeAPI)."""

    def __init__(self, db: Database, store: BlockStore, host: str, image_files: ImageFiles | None = None,
                 image_fill: ImageFill | None = None, scratch: Path | None = None) -> None:
        self.db = db
        self.store = store
        self.host = host
        self.image_files = image_files
        self.image_fill = image_fill
        self.scratch = scratch  # where an upload's export is written (under the state dir)
        # Nova's external events ("volume-extended"), wired by the runtime; None: nobody is told.
        self.compute_events: ComputeNotifier | None = None
        # The NBD exports for servers on other hosts (exports.py), wired by the runtime.
        self.exports: NbdExports | None = None

    # ---- helpers ----------------------------------------------------------------------------

    async def _move(self, table: sa.Table, row_id: str, expected: set[str], values: dict[str, Any],
                    what: str = "volume", *, tell: Event | None = None) -> bool:
        """CAS the row; with `tell`, the owner gets a user message (/messages) in the same transaction."""
        try:
            async with self.db.write() as conn:
                await states.transition(conn, table, row_id, expected, values, what=what)
                if tell is not None:
                    await messages.post(conn, table, row_id, tell)
            return True
        except errors.Conflict as exc:  # someone (reset-status, a delete) moved it first
            LOG.warning("volume worker: %s", exc)
            return False

    async def _admin_meta(self, volume_id: str, key: str, *, drop: bool = False) -> str | None:
        md = volume_admin_metadata
        async with self.db.write() as conn:
            value = await conn.scalar(sa.select(md.c.value).where(md.c.volume_id == volume_id, md.c.key == key))
            if drop:
                await conn.execute(md.delete().where(md.c.volume_id == volume_id, md.c.key == key))
        return None if value is None else str(value)

    async def _set_admin_meta(self, volume_id: str, key: str, value: str) -> None:
        md = volume_admin_metadata
        async with self.db.write() as conn:
            await conn.execute(md.delete().where(md.c.volume_id == volume_id, md.c.key == key))
            await conn.execute(md.insert().values(volume_id=volume_id, key=key, value=value))

    async def _attempt(self, what: str, work: Callable[[], Awaitable[None]],
                       failed: Callable[[str], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception as exc:  # every failure ends in an error status with its reason
            LOG.warning("volume worker: %s failed: %s", what, exc, exc_info=not isinstance(exc, errors.CumuloError))
            await failed(reason(exc))

    # ---- volumes ----------------------------------------------------------------------------

    async def create_volume(self, volume_id: str, size_gb: int, *, snapshot_id: str | None = None,
                            source_volid: str | None = None, image_id: str | None = None,
                            backup_id: str | None = None) -> None:
        size = int(size_gb) * GIB

        async def work() -> None:
            if image_id:
                if self.image_files is None:
                    raise errors.Invalid("creating a volume from an image is not available on this cloud")
                path, fmt = await self.image_files(image_id)
                await self.store.create_from_image(volume_id, path, fmt, size)
            elif backup_id:
                await self.store.restore(backup_id, volume_id, size)
            elif snapshot_id:
                await self.store.create_from_snapshot(snapshot_id, volume_id, size)
            elif source_volid:
                await self.store.clone(source_volid, volume_id, size)
            else:
                await self.store.create(volume_id, size)
            if not await self._move(volumes, volume_id, {states.CREATING, states.RESTORING_BACKUP},
                                    {"status": states.AVAILABLE, "host": self.host, "error_message": None}):
                await self._drop_unowned(volumes, volume_id, self.store.delete)
            if backup_id:
                await self._move(backups, backup_id, {"restoring"}, {"status": states.AVAILABLE}, "backup")

        async def failed(msg: str) -> None:
            await self._move(volumes, volume_id, {states.CREATING, states.RESTORING_BACKUP},
                             {"status": states.ERROR, "host": self.host, "error_message": msg},
                             tell=create_event(image_id=image_id, backup_id=backup_id, reason=msg))
            if backup_id:
                await self._move(backups, backup_id, {"restoring"}, {"status": states.AVAILABLE}, "backup")

        await self._attempt(f"create of volume {volume_id}", work, failed)

    async def _drop_unowned(self, table: sa.Table, row_id: str, remove: Callable[[str], Awaitable[None]]) -> None:
        """A volume, snapshot or backup force-deleted while its file was being made: the delete found
        no file, so the file made afterwards goes here (nothing else would ever remove it)."""
        async with self.db.read() as conn:
            status = await conn.scalar(sa.select(table.c.status).where(table.c.id == row_id))
        if status is None or status == states.DELETING:
            LOG.info("volume worker: %s %s was deleted while it was made: its file goes", table.name, row_id)
            await remove(row_id)

    async def delete_volume(self, volume_id: str) -> None:
        async def work() -> None:
            async with self.db.read() as conn:
                snaps = [str(r[0]) for r in await conn.execute(
                    sa.select(snapshots.c.id).where(snapshots.c.volume_id == volume_id))]
                sealed = await conn.scalar(sa.select(volume_admin_metadata.c.value).where(
                    volume_admin_metadata.c.volume_id == volume_id, volume_admin_metadata.c.key == OFFLINE))
            for snap in snaps:
                await self.store.delete_snapshot(snap)
            if sealed is not None:  # an admin's force-delete of an offline volume
                await offline.unseal(self.store, volume_id)
            if self.exports is not None:  # a force-delete of a volume a server elsewhere still had
                await self.exports.terminate_volume(volume_id)
            await self.store.delete(volume_id)
            async with self.db.write() as conn:
                await conn.execute(volume_attachments.delete().where(volume_attachments.c.volume_id == volume_id))
                await conn.execute(snapshots.delete().where(snapshots.c.volume_id == volume_id))
                await conn.execute(volume_admin_metadata.delete().where(volume_admin_metadata.c.volume_id == volume_id))
                await conn.execute(volumes.delete().where(volumes.c.id == volume_id,
                                                          volumes.c.status == states.DELETING))

        async def failed(msg: str) -> None:
            await self._move(volumes, volume_id, {states.DELETING},
                             {"status": states.ERROR_DELETING, "error_message": msg},
                             tell=Event(messages.DELETE_VOLUME, messages.UNKNOWN_ERROR, msg))

        await self._attempt(f"delete of volume {volume_id}", work, failed)

    async def extend_volume(self, volume_id: str, new_size_gb: int, *, attached: bool = False) -> None:
        done = states.IN_USE if attached else states.AVAILABLE

        async def work() -> None:
            # Here the storage grows; an attached server's driver is told by the compute side
            # (Cinder's "volume-extended" event to Nova), once the row says the new size.
            await self.store.extend(volume_id, int(new_size_gb) * GIB)
            await self._admin_meta(volume_id, EXTENDING_TO, drop=True)
            moved = await self._move(volumes, volume_id, {states.EXTENDING},
                                     {"status": done, "size": int(new_size_gb), "error_message": None})
            if moved and attached and self.compute_events is not None:
                try:
                    await self.compute_events.volume_extended(volume_id, int(new_size_gb))
                except Exception as exc:  # noqa: BLE001 - the volume did grow; the guest sees it at its next start
                    LOG.warning("volume worker: telling compute that %s grew failed: %s", volume_id, exc)

        async def failed(msg: str) -> None:
            await self._admin_meta(volume_id, EXTENDING_TO, drop=True)
            await self._move(volumes, volume_id, {states.EXTENDING},
                             {"status": states.ERROR_EXTENDING, "error_message": msg},
                             tell=Event(messages.EXTEND_VOLUME, messages.DRIVER_FAILED_EXTEND, msg))

        await self._attempt(f"extend of volume {volume_id}", work, failed)

    async def retype_volume(self, volume_id: str, new_type_id: str) -> None:
        return None  # one backend: a retype is a change of the record (the API's)

    # ---- offline / online -------------------------------------------------------------------

    async def offline_volume(self, volume_id: str) -> None:
        """The API made the volume `maintenance` and marked it offline: seal its file. On failure
        the volume is available again (its file was never sealed), with the reason."""
        async def work() -> None:
            path = await offline.seal(self.store, volume_id)
            await self._set_admin_meta(volume_id, OFFLINE, "True")  # offline on the host now, not only in the DB
            LOG.info("volume %s is offline: %s sealed", volume_id, path)

        async def failed(msg: str) -> None:
            await self._admin_meta(volume_id, OFFLINE, drop=True)
            await self._move(volumes, volume_id, {states.MAINTENANCE},
                             {"status": states.AVAILABLE, "error_message": f"offline failed: {msg}"[:255]},
                             tell=Event(messages.OFFLINE_VOLUME, messages.UNKNOWN_ERROR, msg))

        await self._attempt(f"offline of volume {volume_id}", work, failed)

    async def online_volume(self, volume_id: str) -> None:
        """Unseal the file, then maintenance -> available. On failure the volume stays offline."""
        async def work() -> None:
            await offline.unseal(self.store, volume_id)
            await self._admin_meta(volume_id, OFFLINE, drop=True)
            await self._move(volumes, volume_id, {states.MAINTENANCE}, {"status": states.AVAILABLE, "error_message": None})
            LOG.info("volume %s is online", volume_id)

        async def failed(msg: str) -> None:
            await self._set_admin_meta(volume_id, OFFLINE, "True")
            await self._move(volumes, volume_id, {states.MAINTENANCE}, {"error_message": f"online failed: {msg}"[:255]},
                             tell=Event(messages.ONLINE_VOLUME, messages.UNKNOWN_ERROR, msg))

        await self._attempt(f"online of volume {volume_id}", work, failed)

    async def _settle_offline(self) -> None:
        """At start: offline volumes sealed again (a crash between the API's mark and the seal), and
        those a crash left half way online brought online."""
        md = volume_admin_metadata
        async with self.db.read() as conn:
            marked = list(await conn.execute(
                sa.select(volumes.c.id, md.c.value).join(md, md.c.volume_id == volumes.c.id).where(
                    md.c.key == OFFLINE, volumes.c.status == states.MAINTENANCE,
                    sa.or_(volumes.c.host == self.host, volumes.c.host.is_(None)))))
        for volume_id, mark in marked:
            if mark == OFFLINE_LEAVING:
                await self.online_volume(volume_id)
            else:
                await self.offline_volume(volume_id)

    async def _after_upload(self, volume_id: str, msg: str | None) -> None:
        await self._admin_meta(volume_id, UPLOADING_TO, drop=True)
        async with self.db.read() as conn:
            attached = await conn.scalar(sa.select(volumes.c.attach_status).where(volumes.c.id == volume_id))
        await self._move(volumes, volume_id, {states.UPLOADING},
                         {"status": states.IN_USE if attached == states.ATTACHED else states.AVAILABLE,
                          "error_message": msg},
                         tell=None if msg is None else Event(messages.COPY_VOLUME_TO_IMAGE,
                                                             messages.FAILED_TO_UPLOAD_VOLUME, msg))

    async def upload_to_image(self, volume_id: str, image_id: str, disk_format: str) -> None:
        """Export the volume (raw or qcow2) into a scratch file, hand it to the image service, and
        put the volume back (available, or in-use when attached). On failure the queued image goes."""
        fill, scratch = self.image_fill, self.scratch

        async def work() -> None:
            if fill is None or scratch is None:
                raise errors.Invalid("upload to image is not available on this cloud")
            dest = scratch / f"{UPLOAD_SCRATCH}{image_id}.{disk_format}"
            await self._set_admin_meta(volume_id, UPLOADING_TO, image_id)
            try:
                await self.store.export(volume_id, dest, disk_format)
                await fill(image_id, dest)
            finally:
                await asyncio.to_thread(dest.unlink, True)  # missing_ok; a big export takes a while to free
            await self._after_upload(volume_id, None)

        async def failed(msg: str) -> None:
            if fill is not None:
                try:
                    await fill(image_id, None)
                except Exception as exc:  # the image may be gone already
                    LOG.warning("volume worker: dropping image %s failed: %s", image_id, exc)
            await self._after_upload(volume_id, f"upload to image {image_id} failed: {msg}"[:255])

        await self._attempt(f"upload of volume {volume_id} to image {image_id}", work, failed)

    # ---- snapshots --------------------------------------------------------------------------

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        async def work() -> None:
            await self.store.create_snapshot(volume_id, snapshot_id)
            if not await self._move(snapshots, snapshot_id, {states.CREATING},
                                    {"status": states.AVAILABLE, "progress": "100%"}, "snapshot"):
                await self._drop_unowned(snapshots, snapshot_id, self.store.delete_snapshot)

        async def failed(msg: str) -> None:
            await self._move(snapshots, snapshot_id, {states.CREATING}, {"status": states.ERROR}, "snapshot",
                             tell=Event(messages.SNAPSHOT_CREATE, messages.SNAPSHOT_CREATE_ERROR, msg))

        await self._attempt(f"snapshot {snapshot_id} of volume {volume_id}", work, failed)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        async def work() -> None:
            await self.store.delete_snapshot(snapshot_id)
            async with self.db.write() as conn:
                await conn.execute(snapshots.delete().where(snapshots.c.id == snapshot_id))

        async def failed(msg: str) -> None:
            await self._move(snapshots, snapshot_id, {states.DELETING}, {"status": states.ERROR_DELETING}, "snapshot",
                             tell=Event(messages.SNAPSHOT_DELETE, messages.SNAPSHOT_DELETE_ERROR, msg))

        await self._attempt(f"delete of snapshot {snapshot_id}", work, failed)

    # ---- backups ----------------------------------------------------------------------------

    async def _volume_back(self, volume_id: str) -> None:
        before = await self._admin_meta(volume_id, STATUS_BEFORE_BACKUP, drop=True)
        await self._move(volumes, volume_id, {states.BACKING_UP}, {"status": before or states.AVAILABLE})

    async def create_backup(self, backup_id: str, volume_id: str, *, snapshot_id: str | None = None) -> None:
        # A backup "from a snapshot" copies the volume itself (the store backs up volumes only).
        async def work() -> None:
            used = await self.store.backup(volume_id, backup_id)
            await self._volume_back(volume_id)
            if not await self._move(backups, backup_id, {states.CREATING},
                                    {"status": states.AVAILABLE, "object_count": 1, "host": self.host,
                                     "container": "backups", "fail_reason": None}, "backup"):
                await self._drop_unowned(backups, backup_id, self.store.delete_backup)
            LOG.info("backup %s of volume %s: %d bytes", backup_id, volume_id, used.allocated)

        async def failed(msg: str) -> None:
            await self._volume_back(volume_id)
            await self._move(backups, backup_id, {states.CREATING},
                             {"status": states.ERROR, "fail_reason": msg}, "backup",
                             tell=Event(messages.BACKUP_CREATE, messages.BACKUP_CREATE_DRIVER_ERROR, msg))

        await self._attempt(f"backup {backup_id} of volume {volume_id}", work, failed)

    async def delete_backup(self, backup_id: str) -> None:
        async def work() -> None:
            await self.store.delete_backup(backup_id)
            async with self.db.write() as conn:
                await conn.execute(backups.delete().where(backups.c.id == backup_id))

        async def failed(msg: str) -> None:
            await self._move(backups, backup_id, {states.DELETING},
                             {"status": states.ERROR_DELETING, "fail_reason": msg}, "backup",
                             tell=Event(messages.BACKUP_DELETE, messages.BACKUP_DELETE_DRIVER_ERROR, msg))

        await self._attempt(f"delete of backup {backup_id}", work, failed)

    async def restore_backup(self, backup_id: str, volume_id: str) -> None:
        async def work() -> None:
            async with self.db.read() as conn:
                size = await conn.scalar(sa.select(volumes.c.size).where(volumes.c.id == volume_id))
            exists = await self.store.exists(volume_id)
            await self.store.restore(backup_id, volume_id, int(size or 0) * GIB or None, overwrite=exists)
            await self._move(volumes, volume_id, {states.RESTORING_BACKUP},
                             {"status": states.AVAILABLE, "host": self.host, "error_message": None})
            await self._move(backups, backup_id, {"restoring"}, {"status": states.AVAILABLE}, "backup")

        async def failed(msg: str) -> None:
            await self._move(volumes, volume_id, {states.RESTORING_BACKUP},
                             {"status": states.ERROR_RESTORING, "error_message": msg},
                             tell=Event(messages.BACKUP_RESTORE, messages.BACKUP_RESTORE_ERROR, msg))
            await self._move(backups, backup_id, {"restoring"}, {"status": states.AVAILABLE}, "backup")

        await self._attempt(f"restore of backup {backup_id} into volume {volume_id}", work, failed)

    # ---- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.ensure_dirs()
        async with self.db.write() as conn:
            purged = await messages.purge_expired(conn)
        if purged:
            LOG.info("volume worker %s: removed %d expired user messages", self.host, purged)
        await self.reconcile()
        if self.exports is not None:
            await self.exports.reconcile()

    # ---- connections (Cinder's initialize/terminate_connection: bus calls) ----------------------

    async def initialize_connection(self, volume_id: str, attachment_id: str, consumer: str,
                                    mode: str = "rw") -> dict[str, Any]:
        """The attachment's NBD export for a server on host `consumer`; returns its connection_info."""
        if self.exports is None:
            raise errors.InvalidState(f"volume host {self.host} exports no volumes to other hosts")
        return await self.exports.initialize(volume_id, attachment_id, consumer, mode)

    async def terminate_connection(self, attachment_id: str) -> None:
        if self.exports is not None:
            await self.exports.terminate(attachment_id)

    async def reconcile(self) -> None:
        """Settle what a previous worker of this host left half done."""
        mine = sa.or_(volumes.c.host == self.host, volumes.c.host.is_(None))
        async with self.db.read() as conn:
            vols = list(await conn.execute(sa.select(
                volumes.c.id, volumes.c.status, volumes.c.image_id, volumes.c.backup_id).where(mine, volumes.c.status.in_(
                [states.CREATING, states.DELETING, states.EXTENDING, states.BACKING_UP, states.RESTORING_BACKUP,
                 states.UPLOADING]))))
            snaps = list(await conn.execute(sa.select(snapshots.c.id, snapshots.c.status).where(
                snapshots.c.status.in_([states.CREATING, states.DELETING]))))
            baks = list(await conn.execute(sa.select(backups.c.id, backups.c.volume_id, backups.c.status).where(
                backups.c.status.in_([states.CREATING, states.DELETING, "restoring"]))))
        for b in baks:
            if b.status == states.DELETING:
                await self.delete_backup(b.id)
            elif b.status == states.CREATING:
                await self.store.delete_backup(b.id)
                why = RESTARTED.format("backed up")
                await self._move(backups, b.id, {states.CREATING}, {"status": states.ERROR, "fail_reason": why},
                                 "backup", tell=Event(messages.BACKUP_CREATE, messages.BACKUP_CREATE_DRIVER_ERROR, why))
            else:
                await self._move(backups, b.id, {"restoring"}, {"status": states.AVAILABLE}, "backup")
        for s in snaps:
            if s.status == states.DELETING:
                await self.delete_snapshot(s.id)
            else:
                why = "the volume worker restarted while the snapshot was being created"
                await self._move(snapshots, s.id, {states.CREATING}, {"status": states.ERROR}, "snapshot",
                                 tell=Event(messages.SNAPSHOT_CREATE, messages.SNAPSHOT_CREATE_ERROR, why))
        for v in vols:
            if v.status == states.DELETING:
                await self.delete_volume(v.id)
            elif v.status == states.BACKING_UP:
                await self._volume_back(v.id)
            elif v.status == states.UPLOADING:
                await self._upload_cut_short(v.id)
            else:
                final = {states.CREATING: states.ERROR, states.EXTENDING: states.ERROR_EXTENDING,
                         states.RESTORING_BACKUP: states.ERROR_RESTORING}[v.status]
                if v.status == states.EXTENDING:
                    await self._admin_meta(v.id, EXTENDING_TO, drop=True)
                why = RESTARTED.format(v.status)
                tell = {states.CREATING: create_event(image_id=v.image_id, backup_id=v.backup_id, reason=why),
                        states.EXTENDING: Event(messages.EXTEND_VOLUME, messages.DRIVER_FAILED_EXTEND, why),
                        states.RESTORING_BACKUP: Event(messages.BACKUP_RESTORE, messages.BACKUP_RESTORE_ERROR, why),
                        }[v.status]
                await self._move(volumes, v.id, {v.status}, {"status": final, "error_message": why}, tell=tell)
        await self._reap_upload_scratch()
        await self._settle_offline()
        if vols or snaps or baks:
            LOG.info("volume worker %s: settled %d volumes, %d snapshots, %d backups left mid-work",
                     self.host, len(vols), len(snaps), len(baks))

    async def _upload_cut_short(self, volume_id: str) -> None:
        """An upload the restart cut short: its queued image is dropped, and the volume goes back
        (available, or in-use when attached) with the reason."""
        image_id = await self._admin_meta(volume_id, UPLOADING_TO)
        if image_id and self.image_fill is not None:
            try:
                await self.image_fill(image_id, None)
            except Exception as exc:  # the image may be gone already
                LOG.warning("volume worker: dropping image %s failed: %s", image_id, exc)
        await self._after_upload(volume_id, RESTARTED.format(states.UPLOADING) + (
            f" to image {image_id}" if image_id else ""))

    async def _reap_upload_scratch(self) -> None:
        """Exports a killed worker left in the scratch dir (nothing uploads while the worker starts)."""
        scratch = self.scratch
        if scratch is None:
            return

        def reap() -> list[str]:
            left = [p for p in scratch.glob(f"{UPLOAD_SCRATCH}*") if p.is_file() and not p.is_symlink()]
            for p in left:
                p.unlink(missing_ok=True)
            return [p.name for p in left]

        removed = await asyncio.to_thread(reap)
        if removed:
            LOG.info("volume worker %s: removed upload exports left by a crash: %s", self.host, ", ".join(removed))

    async def stop(self) -> None:
        return None
