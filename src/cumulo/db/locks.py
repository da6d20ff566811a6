"""Cluster-wide named locks (issue 14, OWNERS D3): `Database.advisory_lock` and `Database.try_leader`.

PostgreSQL: a session-level `pg_advisory_lock` keyed by a stable signed 64-bit hash of the name, on
a connection of its own (a NullPool engine: closing it, or the process dying, releases the lock;
the server sees the session end). The lock never rides a pooled connection, whose reset on return
would not release it.

SQLite: one process only runs on a SQLite database, so an in-process lock by name stands in: an
asyncio.Lock per name for `advisory_lock`, a process-wide set of names for `try_leader`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

LOG = logging.getLogger(__name__)

# (database url, name) of every leadership this process holds on a SQLite database.
_SQLITE_LEADERS: set[tuple[str, str]] = set()


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (pg_advisory_lock takes a bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


async def xact_lock(conn: AsyncConnection, name: str) -> None:
    """Serialise the rest of this write transaction with every other transaction that takes the
    same name, in any process: PostgreSQL's pg_advisory_xact_lock (released at commit or rollback).
    A check-then-insert (a quota count, then the rows) needs it where no row exists to lock. A no-op
    on SQLite, where writers are serialised already."""
    if conn.dialect.name != "sqlite":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(name)})


class Leadership:
    """A held `try_leader(name)`: held until `release()` or the process ends. On PostgreSQL the
    session that holds it can be lost (a server restart, a network cut): `still_held()` says whether
    it still is, and a leader that finds it is not stops leading and tries again."""

    def __init__(self, name: str, *, conn: AsyncConnection | None = None, key: str = "") -> None:
        self.name = name
        self._conn = conn
        self._key = key
        self.released = False

    async def still_held(self) -> bool:
        if self.released:
            return False
        if self._conn is None:
            return True
        try:
            key = lock_key(self.name) & 0xFFFFFFFFFFFFFFFF  # a bigint key shows as (classid, objid, 1)
            row = (await self._conn.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND pid = pg_backend_pid() AND classid::bigint = :hi AND objid::bigint = :lo "
                        "AND objsubid = 1"),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
            )).scalar_one()
            await self._conn.commit()
        except Exception:  # the session is gone: so is the lock
            LOG.warning("leadership %r lost with its database session", self.name)
            await self.release()
            return False
        return bool(row)

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._conn is None:
            _SQLITE_LEADERS.discard((self._key, self.name))
            return
        try:  # closing the session releases the lock whether or not the unlock ran
            await self._conn.close()
        except Exception:  # the session is already gone: nothing is held
            LOG.debug("closing the session of leadership %r failed", self.name, exc_info=True)


class Locks:
    """The lock half of a Database (one per Database)."""

    def __init__(self, url: str, lock_engine: AsyncEngine | None) -> None:
        self._url = url
        self.engine = lock_engine  # None on SQLite
        self._local: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def advisory_lock(self, name: str) -> AsyncIterator[None]:
        if self.engine is None:
            lock = self._local.setdefault(name, asyncio.Lock())
            async with lock:
                yield
            return
        conn = await self.engine.connect()
        try:
            await conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": lock_key(name)})
            await conn.commit()  # not idle in a transaction while held: the lock is the session's
            yield
        finally:
            try:
                await conn.close()  # ends the session: the lock goes with it
            except Exception:
                LOG.debug("closing the session of advisory lock %r failed", name, exc_info=True)

    async def try_leader(self, name: str) -> Leadership | None:
        if self.engine is None:
            key = (self._url, name)
            if key in _SQLITE_LEADERS:
                return None
            _SQLITE_LEADERS.add(key)
            return Leadership(name, key=self._url)
        conn = await self.engine.connect()
        try:
            got = (await conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(name)})).scalar_one()
            await conn.commit()
        except BaseException:
            await _close_quietly(conn)
            raise
        if not got:
            await _close_quietly(conn)
            return None
        return Leadership(name, conn=conn)


async def _close_quietly(conn: Any) -> None:
    try:
        await conn.close()
    except Exception:
        LOG.debug("closing a lock session failed", exc_info=True)
