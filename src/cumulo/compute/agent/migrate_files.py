"""How a cold migration's files reach the destination host, and where they land there.

The source agent hands the driver's `migration_files` (drivers.base.MigrationFile) to a
`FileSender`; the destination agent finds them under `incoming_dir(state_dir, host, migration)`
and gives that dir to the driver's `finish_migration`, then removes it.

Two senders stand behind the one Protocol:
- `LocalSender` (the default): the hosts share this process and machine (`cumulo up` with several
  nodes, the two-host test rigs): files are copied (`cp -a --sparse=always`) into the
  destination's incoming dir under the same state dir.
- Across machines the destination agent's transfer endpoint (compute/transfer, issue 14 D5:
  `send_file`/`send_tree` with a token signed with the cluster secret "transfer" for
  "<migration uuid>|<dest host>") writes into the same incoming dir on its side; a node is given
  that sender by setting `node.transfer` (compute/agent/node.py).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cumulo import host
from cumulo.compute.drivers.base import MigrationFile
from cumulo.errors import DriverError, HostError

INCOMING = "migrations-in"


def incoming_dir(state_dir: str | Path, host: str, migration_uuid: str) -> Path:
    """Where host `host` receives the files of one migration (under its own state dir)."""
    if "/" in host or "/" in migration_uuid or host in ("", ".", "..") or migration_uuid in ("", ".", ".."):
        raise DriverError(f"bad migration target {host!r} / {migration_uuid!r}")
    return Path(state_dir).absolute() / INCOMING / host / migration_uuid


class FileSender(Protocol):
    async def send(
        self, *, migration_uuid: str, dest_host: str, address: str | None, files: Sequence[MigrationFile]
    ) -> None:
        """Deliver `files` to the destination's incoming dir for this migration (all or an error)."""
        ...


def _fresh(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)  # a retried send starts from nothing
    target.mkdir(parents=True, mode=0o700)


class LocalSender:
    """Both hosts in this process, under `state_dir`: a copy into the destination's incoming dir."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)

    async def send(
        self, *, migration_uuid: str, dest_host: str, address: str | None, files: Sequence[MigrationFile]
    ) -> None:
        target = incoming_dir(self.state_dir, dest_host, migration_uuid)
        try:
            await asyncio.to_thread(_fresh, target)
            for f in files:
                if not f.name or "/" in f.name or f.name in (".", ".."):
                    raise DriverError(f"bad migration file name {f.name!r}")
                # cp keeps disk images sparse and a tree's links as links (never followed).
                await host.run(["cp", "-a", "--sparse=always", "--", f.path, str(target / f.name)], timeout=3600)
        except (OSError, HostError, DriverError) as exc:
            await asyncio.to_thread(shutil.rmtree, target, True)  # nothing half-copied stays
            raise DriverError(f"copying the migration's files to {dest_host} failed: {exc}") from exc


async def drop_incoming(state_dir: str | Path, host: str, migration_uuid: str) -> None:
    """The received files are used (or the migration failed): gone."""
    target = incoming_dir(state_dir, host, migration_uuid)
    await asyncio.to_thread(shutil.rmtree, target, True)
