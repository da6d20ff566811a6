"""Fresh PostgreSQL databases on the run's server (the `scale_services` fixture), for tests.

    url = create_database(base_url)                      # an empty database
    url = create_database(base_url, template=TEMPLATE)   # a copy of a migrated one (fast)
    drop_database(base_url, url)

Each database is named cumulo_<random>, so tests and xdist workers never share one; the test that
made it drops it (WITH (FORCE): a connection a failed test left open does not keep it alive).
The statements run on asyncpg in a thread of their own, so sync fixtures can call them whether or
not an event loop runs in the calling thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9_]+$")


def _in_thread(fn: Callable[[], Awaitable[T]]) -> T:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = asyncio.run(fn())  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]  # type: ignore[no-any-return]


def _dsn(url: str) -> str:
    u = sa.engine.make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(base_url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(base_url), timeout=30)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def with_database(url: str, name: str) -> str:
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


def create_database(base_url: str, *, template: str = "", prefix: str = "cumulo_") -> str:
    """A new database on `base_url`'s server (a copy of database `template` if given); its URL."""
    name = prefix + secrets.token_hex(6)
    assert _NAME.match(name) and (not template or _NAME.match(template))
    statement = f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
    _in_thread(lambda: _admin(base_url, statement))
    return with_database(base_url, name)


def drop_database(base_url: str, url: str) -> None:
    name = sa.engine.make_url(url).database or ""
    assert _NAME.match(name), name
    _in_thread(lambda: _admin(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextlib.contextmanager
def fresh_database(request: Any) -> Iterator[str]:
    """For a fixture: a new database on the run's PostgreSQL (the `scale_services` fixture), a copy
    of the migrated template (`pg_template`); its URL, dropped afterwards."""
    base = request.getfixturevalue("scale_services")["database_url"]
    url = create_database(base, template=request.getfixturevalue("pg_template"))
    try:
        yield url
    finally:
        drop_database(base, url)


def terminate_sessions(base_url: str, url: str) -> None:
    """Cut every session of database `url` on the server (what a PostgreSQL restart does to them),
    without disturbing any other database of the shared server."""
    name = sa.engine.make_url(url).database or ""
    assert _NAME.match(name), name
    _in_thread(lambda: _admin(
        base_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
