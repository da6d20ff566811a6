"""The Alembic migrations build exactly the schema the models describe, on SQLite and on
PostgreSQL (issue 14: one history for both; a fresh PostgreSQL database per test on the run's
server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from cumulo import schema as _schema  # noqa: F401
from cumulo.db import Database, alembic_config, metadata


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
        yield db
        await db.dispose()
        return
    import _pg

    base = request.getfixturevalue("scale_services")["database_url"]
    url = _pg.create_database(base)
    db = Database(url)
    try:
        yield db
    finally:
        await db.dispose()
        _pg.drop_database(base, url)


def _diff(sync_conn: Any) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(sync_conn), metadata))


async def test_migrations_match_models(empty_db: Database) -> None:
    db = empty_db
    await db.migrate()
    await db.migrate()  # idempotent on an up-to-date database

    async with db.read() as conn:
        assert await conn.run_sync(_diff) == []
        versions = {r[0] for r in (await conn.exec_driver_sql("SELECT version_num FROM alembic_version"))}
    assert versions == set(ScriptDirectory.from_config(alembic_config()).get_heads())


async def test_migrations_step_by_step(empty_db: Database) -> None:
    """Every revision applies on its own, in history order, from an empty database (a cloud
    upgraded release by release goes through each one), and the end matches the models."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    for rev in revisions:
        await empty_db.migrate(rev.revision)
    async with empty_db.read() as conn:
        assert await conn.run_sync(_diff) == []


def test_the_history_has_one_head() -> None:
    """Migrations written side by side are joined by a merge revision (0003, 0013_merge_issue14):
    a new one revises the head, so an upgraded cloud has one alembic_version row."""
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1
