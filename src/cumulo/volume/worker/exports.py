"""The volume host's NBD exports: Cinder's target side (initialize_connection / terminate_connection).

A server on another host than the volume's reaches the volume over NBD (docs/architecture.md "Scale
out (issue 14): volumes from any host"). The volume service asks this host's worker, by a bus call
when a connector from another host (with an underlay address) updates an attachment, for an
export of the volume for that attachment: one `qemu-nbd` (cumulo.blockstore.nbd) on this host's
underlay address, a port of `volume_export_ports`, a random export name, TLS with the
attachment's pre-shared key (derived from the cluster secret `volume-nbd`). The answer is the
connection_info the consumer's agent opens. The export goes when the attachment goes
(terminate_connection), and at the worker's start every recorded export whose attachment is gone
or detached is stopped, and every one whose attachment lives but whose process died (the host
restarted) is served again on the same port and name, so a consumer's nbd client reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.blockstore import nbd
from cumulo.blockstore.base import BlockStore
from cumulo.db import Database
from cumulo.hosts.secrets import secret
from cumulo.volume import states
from cumulo.volume.models import volume_attachments

LOG = logging.getLogger(__name__)

SECRET = "volume-nbd"  # the cluster secret each attachment's NBD key derives from
NBD = "nbd"  # connection_info's driver_volume_type of a volume reached over NBD


def port_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        raise errors.InvalidState(f"setting volume_export_ports {text!r} is not a port range such as 10809-10872") from None
    if not 0 < lo <= hi < 65536:
        raise errors.InvalidState(f"setting volume_export_ports {text!r} is not a port range such as 10809-10872")
    return lo, hi


async def attachment_key(db: Database, attachment_id: str) -> str:
    """The attachment's pre-shared key (hex): what both ends of its NBD connection hold."""
    return nbd.psk_key(await secret(db, SECRET), attachment_id)


class NbdExports:
    """This host's exports, one per attachment of a volume here to a server on another host."""

    def __init__(self, db: Database, store: BlockStore, run_dir: Path, bind: str, ports: str) -> None:
        self.db = db
        self.store = store
        self.run_dir = run_dir
        self.bind = bind
        self.ports = port_range(ports)
        self._lock = asyncio.Lock()  # ports are picked one export at a time

    def connection_info(self, export: nbd.Export, consumer: str) -> dict[str, Any]:
        return {"driver_volume_type": NBD,
                "data": {"volume_id": export.volume_id, "access_mode": "ro" if export.read_only else "rw",
                         "encrypted": False, "discard": not export.read_only, "host": consumer, **export.target()}}

    async def initialize(self, volume_id: str, attachment_id: str, consumer: str, mode: str) -> dict[str, Any]:
        """The attachment's export, started (idempotent: a live one is returned as it is)."""
        if not self.bind:
            raise errors.InvalidState("this volume host has no underlay_ip: a server on another host cannot "
                                      "reach its volumes")
        if not await self.store.exists(volume_id):
            raise errors.NotFound(f"Volume {volume_id} has no data on this host.")
        path = self.store.location(volume_id).path
        key = await attachment_key(self.db, attachment_id)
        async with self._lock:
            known = await asyncio.to_thread(nbd.recorded, self.run_dir, attachment_id)
            if known is not None and known.volume_id == volume_id:
                if not await asyncio.to_thread(nbd.serving, self.run_dir, attachment_id):
                    await nbd.serve(self.run_dir, known, str(path), key)
                return self.connection_info(known, consumer)
            taken = {e.port for e in await asyncio.to_thread(nbd.exports, self.run_dir)}
            port = await asyncio.to_thread(nbd.free_port, self.bind, *self.ports, taken)
            export = nbd.new_export(attachment_id, volume_id, self.bind, port, read_only=mode == "ro")
            try:
                await nbd.serve(self.run_dir, export, str(path), key)
            except Exception:
                await nbd.unserve(self.run_dir, attachment_id)
                raise
        LOG.info("volume %s exported over NBD on %s:%d for attachment %s (host %s)", volume_id, self.bind, port,
                 attachment_id, consumer)
        return self.connection_info(export, consumer)

    async def terminate(self, attachment_id: str) -> None:
        if await asyncio.to_thread(nbd.recorded, self.run_dir, attachment_id) is not None:
            LOG.info("the NBD export of attachment %s stopped", attachment_id)
        await nbd.unserve(self.run_dir, attachment_id)

    async def terminate_volume(self, volume_id: str) -> None:
        """Every export of the volume stopped (it is being deleted)."""
        for export in await asyncio.to_thread(nbd.exports, self.run_dir):
            if export.volume_id == volume_id:
                await self.terminate(export.attachment_id)

    async def reconcile(self) -> None:
        """At start: exports of live attachments served (again), the others stopped."""
        recorded = await asyncio.to_thread(nbd.exports, self.run_dir)
        if not recorded:
            return
        async with self.db.read() as conn:
            live = set((await conn.execute(sa.select(volume_attachments.c.id).where(
                volume_attachments.c.id.in_([e.attachment_id for e in recorded]),
                volume_attachments.c.attach_status != states.ATTACHMENT_DETACHED))).scalars())
        for export in recorded:
            if export.attachment_id not in live:
                LOG.info("stopping the NBD export of attachment %s (gone)", export.attachment_id)
                await nbd.unserve(self.run_dir, export.attachment_id)
            elif not await asyncio.to_thread(nbd.serving, self.run_dir, export.attachment_id):
                try:
                    path = self.store.location(export.volume_id).path
                    await nbd.serve(self.run_dir, export, str(path), await attachment_key(self.db, export.attachment_id))
                    LOG.info("the NBD export of attachment %s served again on port %d", export.attachment_id, export.port)
                except Exception as exc:  # noqa: BLE001 - the consumer's I/O fails; the others go on
                    LOG.warning("serving the NBD export of attachment %s again failed: %s", export.attachment_id, exc)
