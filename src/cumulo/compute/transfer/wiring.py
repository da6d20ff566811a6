"""What a `cumulo compute` process does to take part in migrations across machines (issue 14).

    self.transfer = await start_host_transfers(db, conf, conf.host_name, managers)   # after the agents
    ...
    if self.transfer is not None:
        await self.transfer.stop()

With `underlay_ip` set, the host's own agents (the managers whose node is `host_name`; fake
hosts of the same process keep their local copy) send a migration's files with `HttpSender`, and
the host's `TransferServer` listens on `underlay_ip:transfer_port`, writing into the dir the cold
migration's agent reads (`migrate_files.incoming_dir`). Without it: None, nothing changes (one
host: `migrate_files.LocalSender` copies under the one state dir).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cumulo.compute.agent import migrate_files
from cumulo.compute.transfer.sender import HttpSender
from cumulo.compute.transfer.server import TransferServer
from cumulo.conf import Settings
from cumulo.db import Database


async def start_host_transfers(
    db: Database, conf: Settings, host_name: str, managers: Sequence[Any]
) -> TransferServer | None:
    """Give the host's agents the HTTP sender and start its endpoint; None without an underlay."""
    if not conf.underlay_ip:
        return None
    sender = HttpSender(db, conf.transfer_port)
    for m in managers:
        node = getattr(m, "node", None)
        if node is not None and getattr(node, "host", None) == host_name:
            node.transfer = sender
    server = TransferServer(
        db, conf, host_name, incoming=lambda mid: migrate_files.incoming_dir(conf.state_dir, host_name, mid),
        copying_only=True,
    )
    await server.start()
    return server
