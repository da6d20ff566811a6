"""A server's encrypted admin password, as Nova keeps it: system_metadata password_0..password_3
(255 characters each). Cumulo has no metadata service yet, so nothing stores one; it can be read
("" when absent) and cleared.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import instances as inst_db
from cumulo.compute.models import instances
from cumulo.db import Database

CHUNKS = 4
CHUNK_LENGTH = 255


def extract_password(system_metadata: dict[str, Any] | None) -> str:
    """The stored password: the password_N chunks in key order (Nova's extract_password)."""
    meta = system_metadata or {}
    return "".join(str(meta[k] or "") for k in sorted(meta) if k.startswith("password_"))


def cleared(system_metadata: dict[str, Any] | None) -> dict[str, Any]:
    """system_metadata with empty password chunks (Nova's convert_password(None))."""
    return {**(system_metadata or {}), **{f"password_{i}": "" for i in range(CHUNKS)}}


async def clear(db: Database, uuid: str) -> None:
    """Empty the password chunks. Read-modify-write in one write transaction: an agent may change
    other system_metadata keys."""
    async with db.write() as conn:
        q = sa.select(instances.c.system_metadata).where(instances.c.uuid == uuid, instances.c.deleted.is_(False))
        if conn.dialect.name != "sqlite":
            q = q.with_for_update()
        current = (await conn.execute(q)).first()
        if current is None:
            raise errors.NotFound(f"Instance {uuid} could not be found.")
        await inst_db.cas_update(conn, uuid, {"system_metadata": cleared(current[0])})
