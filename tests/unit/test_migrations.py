"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cumulo import schema as _schema  # noqa: F401
from cumulo.db import Database, metadata


async def test_migrations_match_models(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    await db.create_all()
    await db.create_all()  # idempotent on an up-to-date database

    def diff(sync_conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(sync_conn), metadata))

    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
        versions = {r[0] for r in (await conn.exec_driver_sql("SELECT version_num FROM alembic_version"))}
    from alembic.script import ScriptDirectory

    from cumulo.db import alembic_config

    assert versions == set(ScriptDirectory.from_config(alembic_config()).get_heads())
    await db.dispose()
