"""Database access: one metadata shared by every domain's models, and a small session API.

Writes go through `Database.write()`, which serialises writers on SQLite (one writer at a time is
what SQLite allows anyway; doing it in-process avoids 'database is locked' retries). On PostgreSQL
writers run concurrently and correctness comes from compare-and-swap UPDATEs and row locks.

PostgreSQL (issue 14): `postgresql://` and `postgres://` URLs run on asyncpg. The pool checks a
connection before handing it out (closed by the server, or idle for long and failing a ping:
replaced; `_checkout_alive`), so the first request after a PostgreSQL restart
works without restarting Cumulo; while the server is down a request fails fast (connect timeout,
pool timeout) with `DatabaseUnavailable`, a 503 in each API family's fault format, never a hang or
a 500. Cluster-wide named locks: `advisory_lock` and `try_leader` (db/locks.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cumulo.db import inline_sqlite
from cumulo.db.locks import Leadership, Locks
from cumulo.errors import Invalid, Unavailable

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


class DatabaseUnavailable(Unavailable):
    """The database server cannot be reached (down, restarting, out of connections)."""


# PostgreSQL connection settings: a connect that does not complete in CONNECT_TIMEOUT seconds, or a
# pool that has no free connection within POOL_TIMEOUT, is a DatabaseUnavailable (503), not a hang.
CONNECT_TIMEOUT = 5.0
POOL_TIMEOUT = 10.0
# A statement running longer than this is cut (asyncpg's command_timeout): no request waits forever
# on a server that stopped answering mid-query.
COMMAND_TIMEOUT = 120.0
# The pool's liveness check at checkout (see _checkout_alive): a connection the server or the network
# closed is seen for free (asyncpg noticed the EOF); one idle longer than this is pinged as well.
PING_AFTER_IDLE = 10.0


def normalise_url(url: str) -> str:
    """The SQLAlchemy async URL for `url`: postgres:// and postgresql:// run on asyncpg, sqlite:///
    on Cumulo's inline aiosqlite connection; URLs naming a driver are kept."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    return url


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 20) -> None:
        url = normalise_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        lock_engine: AsyncEngine | None = None
        if self.is_sqlite:
            path = sa.engine.make_url(url).database or ":memory:"
            _private_sqlite_file(path)
            kwargs["async_creator"] = inline_sqlite.creator(path, timeout=30.0)
            self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        else:
            connect_args = {"timeout": CONNECT_TIMEOUT, "command_timeout": COMMAND_TIMEOUT,
                            "server_settings": {"application_name": "cumulo"}}
            # pool_use_lifo: the connection used last goes out first, so a process's steady work
            # keeps reusing a few warm connections: a statement is prepared once per connection
            # (asyncpg's cache; one more round trip the first time), and FIFO rotated every
            # checkout through the whole pool, each connection paying its own first time.
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=max_overflow, pool_use_lifo=True,
                pool_timeout=POOL_TIMEOUT, pool_recycle=3600, connect_args=connect_args, **kwargs)
            # Instead of pool_pre_ping (three round trips per checkout on asyncpg: BEGIN, ";",
            # ROLLBACK, a third of a boot's database time; issue 14, benchmarks/scaleout.py).
            event.listen(self.engine.sync_engine, "connect", _used_now)
            event.listen(self.engine.sync_engine, "checkin", _used_now)
            event.listen(self.engine.sync_engine, "checkout", _checkout_alive)
            # Reads run without BEGIN/ROLLBACK (two round trips each): under PostgreSQL's READ
            # COMMITTED every statement takes its own snapshot anyway, so a read-only block of
            # statements sees exactly what it saw inside a transaction.
            self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            # Locks hold a session each, outside the pool (db/locks.py); waiting for a lock is not
            # a stuck statement, so no command timeout there.
            lock_args = {k: v for k, v in connect_args.items() if k != "command_timeout"}
            lock_engine = create_async_engine(url, poolclass=sa.pool.NullPool, connect_args=lock_args, **kwargs)
        if self.is_sqlite:
            self._read_engine = self.engine
        self.locks = Locks(url, lock_engine)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # On SQLite the single writer gets its own connection, so a write never queues behind readers
        # for a pooled connection while holding the write lock.
        self.write_engine: AsyncEngine = (
            create_async_engine(url, pool_size=1, max_overflow=0, **kwargs) if self.is_sqlite else self.engine
        )
        if self.is_sqlite:
            for engine in (self.engine, self.write_engine):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

    def advisory_lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """`async with db.advisory_lock("image-store"):` one holder at a time across every process
        of the cloud (PostgreSQL's pg_advisory_lock; on SQLite, in this process). Waits for it."""
        return self.locks.advisory_lock(name)

    async def try_leader(self, name: str) -> Leadership | None:
        """The leadership `name` if no other process holds it (never waits), else None. Held until
        `release()` or the process ends; check `still_held()` before acting as the leader."""
        with _unreachable_is_unavailable(self.is_sqlite):
            return await self.locks.try_leader(name)

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
        with _out_of_range_is_invalid(), _unreachable_is_unavailable(self.is_sqlite):
            async with self._read_engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on any exception."""
        with _out_of_range_is_invalid(), _unreachable_is_unavailable(self.is_sqlite):
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
        if self.locks.engine is not None:
            await self.locks.engine.dispose()


@contextmanager
def _out_of_range_is_invalid() -> Iterator[None]:
    """A value from a request that the database cannot hold (a number beyond 64 bits; on PostgreSQL a
    NUL character or a string over the column's length) is bad input (400), not a crash."""
    try:
        yield
    except OverflowError:
        raise Invalid("A number in the request is out of range") from None
    except sa.exc.DBAPIError as exc:
        text = str(exc.orig) if exc.orig is not None else str(exc)
        if re.search(r"out of (\w+ )?range", text):  # asyncpg: "value out of int32 range"
            field = _column_of(exc, lambda v: isinstance(v, int) and not -(2**31) <= v < 2**31)
            raise Invalid(f"A number in the request is out of range{field}") from None
        # PostgreSQL refuses what SQLite stores: NUL characters in text, text over a column's length.
        if "0x00" in text or "\\u0000" in text:
            field = _column_of(exc, lambda v: isinstance(v, str) and "\x00" in v)
            raise Invalid(f"A NUL character (\\u0000) is not allowed in the request{field}") from None
        long = re.search(r"value too long for type character varying\((\d+)\)", text)
        if long:
            n = int(long.group(1))
            field = _column_of(exc, lambda v: isinstance(v, str) and len(v) > n)
            raise Invalid(f"A value in the request is longer than the {n} characters allowed{field}") from None
        raise


def _column_of(exc: sa.exc.DBAPIError, bad: Any) -> str:
    """': field <column>' for the first parameter of a failed INSERT/UPDATE that `bad(value)` flags,
    found from the statement's column list (asyncpg's parameters are positional); '' if unknown."""
    params, statement = exc.params, exc.statement or ""
    if not isinstance(params, (tuple, list)) or any(isinstance(p, (tuple, list, dict)) for p in params):
        return ""
    columns: dict[int, str] = {}
    # (re.search: a data-modifying CTE's INSERT, `WITH made AS (INSERT INTO ...`, names its columns too)
    insert = re.search(r"INSERT INTO \S+ \(([^)]*)\) VALUES \(([^)]*)\)", statement)
    if insert:
        for name, value in zip(insert.group(1).split(","), insert.group(2).split(","), strict=False):
            if value.strip().startswith("$"):
                columns[int(value.strip()[1:].split("::")[0])] = name.strip()
    for name, index in re.findall(r"(\w+)=\$(\d+)", statement):
        columns.setdefault(int(index), name)
    for i, value in enumerate(params, start=1):
        if bad(value) and i in columns:
            return f": field {columns[i]}"
    return ""


@contextmanager
def _unreachable_is_unavailable(is_sqlite: bool) -> Iterator[None]:
    """PostgreSQL down, restarting or unreachable: DatabaseUnavailable (503) instead of a 500 or a
    hang. A connection lost mid-transaction is invalidated by SQLAlchemy, and the pool's checkout check
    replaces it on the next checkout."""
    if is_sqlite:
        yield
        return
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if not (exc.connection_invalidated or _is_connection_error(exc.orig)):
            raise
        raise DatabaseUnavailable("The database is unavailable, retry later") from exc
    except sa.exc.TimeoutError as exc:  # no pooled connection came free in POOL_TIMEOUT
        raise DatabaseUnavailable("The database is busy (no free connection), retry later") from exc
    except (OSError, TimeoutError) as exc:  # a connect refused, reset or timed out
        raise DatabaseUnavailable("The database is unavailable, retry later") from exc


def _is_connection_error(orig: BaseException | None) -> bool:
    """Whether a driver error means the connection, not the statement, failed."""
    if orig is None:
        return False
    if isinstance(orig, (OSError, TimeoutError, ConnectionError)):
        return True
    cause = getattr(orig, "__cause__", None)
    import asyncpg  # type: ignore[import-untyped]  # no stubs; only PostgreSQL errors come here

    if isinstance(cause, (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
                          asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
                          asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.TooManyConnectionsError,
                          asyncpg.exceptions.ConnectionFailureError, OSError, TimeoutError)):
        return True
    sqlstate = getattr(orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
    # class 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now; 53300: too many connections
    return bool(sqlstate) and (str(sqlstate).startswith("08") or str(sqlstate) in ("57P01", "57P02", "57P03", "53300"))


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


def _used_now(_dbapi_conn: Any, record: Any) -> None:
    record.info["cumulo_used"] = time.monotonic()


def _checkout_alive(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """The pool's check of a PostgreSQL connection it hands out (instead of pool_pre_ping): one the
    server closed (a restart, a relay cut: asyncpg saw the EOF) or that fails a ping after
    PING_AFTER_IDLE seconds unused is replaced (DisconnectionError: the pool connects anew), so
    the first request after a PostgreSQL restart works. One that dies silently while in use fails
    its statement: DatabaseUnavailable (503), and SQLAlchemy drops the pool's older connections."""
    driver = record.driver_connection
    if driver is None or driver.is_closed():
        raise sa.exc.DisconnectionError("the database closed the connection")
    if time.monotonic() - record.info.get("cumulo_used", 0.0) > PING_AFTER_IDLE:
        try:
            dbapi_conn.ping()  # runs inside SQLAlchemy's greenlet, as pool_pre_ping's does
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"the database connection failed its ping: {exc}") from exc


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
