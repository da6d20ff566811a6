"""Database access: one metadata shared by every domain's models, and a small session API.

Writes go through `Database.write()`, which serialises writers on SQLite (one writer at a time is
what SQLite allows anyway; doing it in-process avoids 'database is locked' retries). On PostgreSQL
writers run concurrently and correctness comes from compare-and-swap UPDATEs and row locks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cumulo.db import inline_sqlite
from cumulo.errors import Invalid

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def utcnow() -> dt.datetime:
    """Naive UTC, microsecond precision: what every timestamp column stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_uuid() -> str:
    return str(uuid.uuid4())


def isotime(value: dt.datetime | None, *, micro: bool = False) -> str | None:
    """ISO 8601 with a trailing Z, as Nova and Glance render times."""
    if value is None:
        return None
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(fmt)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            path = sa.engine.make_url(url).database or ":memory:"
            _private_sqlite_file(path)
            kwargs["async_creator"] = inline_sqlite.creator(path, timeout=30.0)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # On SQLite the single writer gets its own connection, so a write never queues behind readers
        # for a pooled connection while holding the write lock.
        self.write_engine: AsyncEngine = (
            create_async_engine(url, pool_size=1, max_overflow=0, **kwargs) if self.is_sqlite else self.engine
        )
        if self.is_sqlite:
            for engine in (self.engine, self.write_engine):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

    async def create_all(self) -> None:
        """Bring the schema to the newest Alembic revision (creating it on a new database)."""
        await self.migrate()

    async def migrate(self, revision: str = "heads") -> None:
        # "heads": migrations written side by side may branch from one parent until a merge
        # revision joins them; every branch is applied either way.
        async with self.write() as conn:
            await conn.run_sync(_upgrade, revision)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with _out_of_range_is_invalid():
            async with self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on any exception."""
        with _out_of_range_is_invalid():
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_lock:
                async with self.write_engine.begin() as conn:
                    yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


@contextmanager
def _out_of_range_is_invalid() -> Iterator[None]:
    """A number from a request that the database cannot hold (beyond 64 bits) is bad input, not a crash."""
    try:
        yield
    except OverflowError:
        raise Invalid("A number in the request is out of range") from None
    except sa.exc.DataError as exc:
        if "out of range" not in str(exc):
            raise
        raise Invalid("A number in the request is out of range") from None


def _private_sqlite_file(path: str) -> None:
    """The database file 0600 before SQLite opens it (its -wal and -shm files take the same mode):
    it holds password hashes and user data."""
    if path == ":memory:" or path.startswith("file:") or not path:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config() -> Any:
    from pathlib import Path

    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def _upgrade(sync_conn: Any, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)
