"""A migration's files, host to host: the destination agent's transfer endpoint and its client (issue 14).

The destination `cumulo compute` runs `server.TransferServer` on `underlay_ip:transfer_port`
(setting, default 8790). It accepts a migration's files only with a token signed with the cluster
secret "transfer" (`hosts.secrets`) for the subject "<migration uuid>|<destination host>", and
writes them under `<state_dir>/incoming/<migration uuid>/` on the destination, each appearing at
once (temp + rename):

    PUT    /v1/migrations/<uuid>/files/<name>    a file (disk image, a container's root disk):
                                                 streamed, sparse (holes stay holes), fsynced
    PUT    /v1/migrations/<uuid>/trees/<name>    a tar stream (a container's overlay upper dir):
                                                 extracted by `tarsafe.extract`'s rules
    DELETE /v1/migrations/<uuid>                 discard everything received for the migration

`<name>`: 1-128 of [A-Za-z0-9._-], not starting with a dot. A PUT again replaces (retries are
safe). In `cumulo compute` (wiring.py: `copying_only`) a PUT is taken only while the migration's
record names this host as destination and says "migrating": the token (valid TOKEN_TTL, sent in
clear on the underlay) cannot be replayed after the copy phase. Answers: 204; 401 without a token,
403 with a wrong or expired one or outside the copy phase, 400 bad name or data,
413 over `transfer_max_bytes` (one file or tar) or `transfer_max_entries` (one tar's members).

The sending side (MIGCOLD/MIGLIVE), from the source agent:

    from cumulo.compute.transfer import client
    target = await client.target(db, migration_uuid, dest_host, dest_underlay_ip, conf.transfer_port)
    await client.send_file(target, "disk", "/path/to/disk.qcow2")     # -> incoming/<uuid>/disk
    await client.send_tree(target, "upper", Path(".../upper"))        # -> incoming/<uuid>/upper/
    await client.send(target, "name", path)                           # a file or a dir, by its kind
    await client.discard(target)                                      # on failure/revert

and on the destination, `incoming_dir(conf.state_dir, migration_uuid)` is where they are; the
destination removes it when the migration is done with them (`remove_incoming`).

The cold migration's agent (compute/agent/migrate_files.py) uses it through `sender.HttpSender`
(its `FileSender` across machines: `node.transfer = HttpSender(db, conf.transfer_port)`), and
its destination's server writes into that module's incoming dir (`TransferServer(...,
incoming=lambda uuid: migrate_files.incoming_dir(conf.state_dir, host, uuid))`).
"""

from __future__ import annotations

import re
import shutil
import uuid as _uuid
from pathlib import Path

SECRET = "transfer"  # the cluster secret's name (hosts.secrets)
PURPOSE = "transfer"
TOKEN_HEADER = "X-Cumulo-Transfer-Token"
TOKEN_TTL = 3600.0  # one migration's copying; each request is checked at its start
INCOMING = "incoming"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def subject(migration_uuid: str, dest_host: str) -> str:
    return f"{migration_uuid}|{dest_host}"


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def valid_uuid(value: str) -> bool:
    try:
        return str(_uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def incoming_dir(state_dir: Path | str, migration_uuid: str) -> Path:
    """Where the destination finds a migration's files (`<state_dir>/incoming/<uuid>/`)."""
    if not valid_uuid(migration_uuid):
        raise ValueError(f"not a migration uuid: {migration_uuid!r}")
    return Path(state_dir) / INCOMING / migration_uuid.lower()


def remove_incoming(state_dir: Path | str, migration_uuid: str) -> None:
    """Drop what a migration received (blocking: call it through asyncio.to_thread)."""
    shutil.rmtree(incoming_dir(state_dir, migration_uuid), ignore_errors=True)
