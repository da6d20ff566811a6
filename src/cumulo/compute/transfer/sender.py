"""The transfer endpoint as a cold migration's `FileSender` (compute/agent/migrate_files.py).

    node.transfer = HttpSender(db, conf.transfer_port)

`send(migration_uuid=, dest_host=, address=, files=)` discards whatever the destination holds for
the migration (a retried send starts from nothing), then sends each `MigrationFile`: a tree with
`client.send_tree`, a file with `client.send_file`, to `address:port` (the destination's
underlay_ip, compute_nodes.host_ip). All or an error: on a failure the destination's copy is
discarded (best effort) and a DriverError names the file and the reason. The destination's
`TransferServer` must write where its agent looks: `TransferServer(..., incoming=lambda uuid:
migrate_files.incoming_dir(conf.state_dir, host, uuid))`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cumulo.compute.transfer import client
from cumulo.db import Database
from cumulo.errors import CumuloError, DriverError

if TYPE_CHECKING:
    from cumulo.compute.drivers.base import MigrationFile

LOG = logging.getLogger(__name__)


class HttpSender:
    """A migration's files to the destination agent's transfer endpoint."""

    def __init__(self, db: Database, port: int) -> None:
        self.db = db
        self.port = port

    async def send(
        self, *, migration_uuid: str, dest_host: str, address: str | None, files: Sequence[MigrationFile]
    ) -> None:
        if not address:
            raise DriverError(f"host {dest_host} has no underlay address (host_ip): its transfer endpoint "
                              "cannot be reached")
        t = await client.target(self.db, migration_uuid, dest_host, address, self.port)
        current = ""
        try:
            await client.discard(t)
            for f in files:
                current = f.name
                if f.tree:
                    await client.send_tree(t, f.name, f.path)
                else:
                    await client.send_file(t, f.name, f.path)
        except (CumuloError, OSError) as exc:
            with contextlib.suppress(CumuloError):
                await client.discard(t)
            what = f" ({current})" if current else ""
            message = exc.message if isinstance(exc, CumuloError) else str(exc)
            raise DriverError(f"sending the migration's files to {dest_host}{what} failed: {message}") from exc
        LOG.info("migration %s: %d files sent to %s (%s)", migration_uuid, len(files), dest_host, address)
