"""Database.advisory_lock and Database.try_leader (OWNERS D3) on SQLite and on PostgreSQL, the URL
normalisation, and the PG test mode's settings."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cumulo.db import Database, normalise_url
from cumulo.db.locks import lock_key


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two Database objects on one database: on PostgreSQL they stand for two processes (separate
    sessions); on SQLite (one process only) they share the in-process locks of one Database."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'l.sqlite'}")
        yield db, db
        await db.dispose()
        return
    url = request.getfixturevalue("scale_services")["database_url"]
    a, b = Database(url), Database(url)
    yield a, b
    await a.dispose()
    await b.dispose()


def test_normalise_url() -> None:
    assert normalise_url("postgresql://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"
    assert normalise_url("postgres://u:p@h/d") == "postgresql+asyncpg://u:p@h/d"
    assert normalise_url("postgresql+asyncpg://h/d") == "postgresql+asyncpg://h/d"
    assert normalise_url("sqlite:////var/lib/c.sqlite") == "sqlite+aiosqlite:////var/lib/c.sqlite"
    assert normalise_url("sqlite+aiosqlite:///x") == "sqlite+aiosqlite:///x"


def test_lock_key_is_stable_signed_64_bit() -> None:
    assert lock_key("image-store") == lock_key("image-store")
    assert lock_key("a") != lock_key("b")
    for name in ("a", "image-store", "paas-autoscaler", "x" * 300):
        assert -(2**63) <= lock_key(name) < 2**63


async def test_advisory_lock_excludes(db_pair: tuple[Database, Database]) -> None:
    a, b = db_pair
    name = f"test-{uuid.uuid4().hex}"
    inside: list[str] = []
    overlap = False

    async def hold(db: Database, who: str) -> None:
        nonlocal overlap
        async with db.advisory_lock(name):
            if inside:
                overlap = True
            inside.append(who)
            await asyncio.sleep(0.05)
            inside.remove(who)

    await asyncio.gather(*(hold(db, f"{i}") for i, db in enumerate([a, b, a, b])))
    assert not overlap
    # released: free to take at once, and a different name never waits on it
    async with a.advisory_lock(name):
        async with asyncio.timeout(10):
            async with b.advisory_lock(name + "-other"):
                pass
    async with asyncio.timeout(10):
        async with b.advisory_lock(name):
            pass


async def test_advisory_lock_released_on_error(db_pair: tuple[Database, Database]) -> None:
    a, b = db_pair
    name = f"test-{uuid.uuid4().hex}"
    with pytest.raises(RuntimeError):
        async with a.advisory_lock(name):
            raise RuntimeError("boom")
    async with asyncio.timeout(10):
        async with b.advisory_lock(name):
            pass


async def test_try_leader_one_at_a_time(db_pair: tuple[Database, Database]) -> None:
    a, b = db_pair
    name = f"test-{uuid.uuid4().hex}"
    first = await a.try_leader(name)
    assert first is not None and await first.still_held()
    assert await b.try_leader(name) is None  # never waits
    other = await b.try_leader(name + "-other")
    assert other is not None
    await first.release()
    assert not await first.still_held()
    second = await b.try_leader(name)
    assert second is not None and await second.still_held()
    await second.release()
    await other.release()


async def test_pg_leadership_lost_with_its_session(scale_services: dict[str, str]) -> None:
    """A leader whose session the server ended (a PostgreSQL restart does that) learns it from
    still_held(), and another process can lead."""
    import _pg

    url = _pg.create_database(scale_services["database_url"])
    a, b = Database(url), Database(url)
    try:
        name = f"test-{uuid.uuid4().hex}"
        lead = await a.try_leader(name)
        assert lead is not None
        _pg.terminate_sessions(scale_services["database_url"], url)
        assert not await lead.still_held()
        again = await b.try_leader(name)
        assert again is not None
        await again.release()
    finally:
        await a.dispose()
        await b.dispose()
        _pg.drop_database(scale_services["database_url"], url)


async def test_settings_follow_the_test_mode(settings: Any) -> None:
    """CUMULO_TEST_DB=postgresql: the settings fixture's database is a fresh PostgreSQL one, at head."""
    if os.environ.get("CUMULO_TEST_DB", "sqlite") != "postgresql":
        assert settings.database_url.startswith("sqlite")  # SQLite in the state dir
        return
    db = Database(settings.database_url)
    try:
        assert not db.is_sqlite
        await db.create_all()
        async with db.read() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM instances"))).scalar_one() == 0
    finally:
        await db.dispose()
