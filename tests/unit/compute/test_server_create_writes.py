"""The create's write (compute/service/server_create.py): what a create of a project without instance,
core or ram limits writes and in how many statements, and that limits still bind (both databases:
CUMULO_TEST_DB=postgresql runs the PostgreSQL path)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from servers_support import API, NANO, World, make_ctx, make_world, settings  # noqa: F401  (settings is a fixture override)
from sqlalchemy import event

from cumulo.compute.models import instance_actions, instances
from cumulo.compute.service import server_create
from cumulo.db.locks import lock_key

UNLIMITED = {"instances": -1, "cores": -1, "ram": -1}


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def set_quota(world: World, quota: dict[str, Any]) -> None:
    admin = world.as_ctx(make_ctx(world.project_id, "admin"))
    r = await admin.put(f"{API}/os-quota-sets/{world.project_id}", json={"quota_set": quota})
    assert r.status_code == 200, r.text


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    """The SQL the cloud's database runs meanwhile (BEGIN and COMMIT included; the build the create
    starts runs in this process too). A quota lock is written "LOCK <key>" with its key, a statement
run alone in autocommit (its own transaction) "AUTOCOMMIT <sql>"."""
    seen: list[str] = []
    db = world.cloud.db
    engines = {id(e.sync_engine): e.sync_engine for e in (db.engine, db.write_engine)}.values()

    def on_sql(conn: Any, _cursor: Any, statement: str, params: Any, *_a: Any) -> None:
        text = " ".join(statement.split())
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            text = "AUTOCOMMIT " + text
        if "pg_advisory_xact_lock" in text:
            text = f"LOCK {(list(params.values()) if isinstance(params, dict) else list(params))[0]}"
        seen.append(text)

    def on_begin(_conn: Any) -> None:
        seen.append("BEGIN")

    def on_commit(_conn: Any) -> None:
        seen.append("COMMIT")

    listeners = [("before_cursor_execute", on_sql), ("begin", on_begin), ("commit", on_commit)]
    for engine in engines:
        for name, fn in listeners:
            event.listen(engine, name, fn)
    try:
        yield seen
    finally:
        for engine in engines:
            for name, fn in listeners:
                event.remove(engine, name, fn)


async def rows_of(world: World) -> tuple[list[Any], list[Any]]:
    async with world.cloud.db.read() as conn:
        made = (await conn.execute(sa.select(instances.c.uuid, instances.c.display_name, instances.c.user_id)
                                   .where(instances.c.project_id == world.project_id))).all()
        acts = (await conn.execute(sa.select(instance_actions.c.instance_uuid, instance_actions.c.action,
                                             instance_actions.c.project_id)
                                   .where(instance_actions.c.project_id == world.project_id))).all()
    return made, acts


async def test_unlimited_project_writes_row_and_action_without_lock_or_count(world: World) -> None:
    await set_quota(world, UNLIMITED)
    with statements(world) as seen:
        server = await world.create("free")
    made, acts = await rows_of(world)
    assert [(r.uuid, r.display_name) for r in made] == [(server["id"], "free")]
    assert [(a.instance_uuid, a.action) for a in acts] == [(server["id"], "create")]
    key = lock_key(f"compute-quota:{world.project_id}")
    assert f"LOCK {key}" not in seen and not any(s.startswith("SELECT count(instances.id)") for s in seen)
    writes = [s for s in seen if s.startswith(("INSERT INTO instances", "INSERT INTO instance_actions", "WITH made"))]
    if world.cloud.db.is_sqlite:
        assert [s.split(" (")[0] for s in writes] == ["INSERT INTO instances", "INSERT INTO instance_actions"]
    else:  # one statement, its own transaction: no BEGIN ... COMMIT around it
        mine = [s for s in seen if s.startswith("AUTOCOMMIT WITH made AS (INSERT INTO instances")]
        assert len(mine) == 1 and writes == [], (mine, writes)


async def test_unlimited_project_many_servers_each_with_an_action(world: World) -> None:
    await set_quota(world, UNLIMITED)
    resp = await world.member.post(f"{API}/servers", json={"server": {
        "name": "many", "imageRef": world.image_id, "flavorRef": NANO, "min_count": 3, "max_count": 3}})
    assert resp.status_code == 202, resp.text
    made, acts = await rows_of(world)
    assert sorted(r.display_name for r in made) == ["many-1", "many-2", "many-3"]
    assert sorted(a.instance_uuid for a in acts) == sorted(r.uuid for r in made)


async def test_limits_still_bind_under_the_lock(world: World) -> None:
    await set_quota(world, {"instances": 1, "cores": -1, "ram": -1})
    with statements(world) as seen:
        await world.create("one")
    if not world.cloud.db.is_sqlite:
        after = seen[seen.index(f"LOCK {lock_key(f'compute-quota:{world.project_id}')}"):]
        assert after[1].startswith("SELECT count") and after[2].startswith("WITH made AS (INSERT INTO instances")
        assert "COMMIT" in after
    over = await world.member.post(f"{API}/servers", json={"server": {"name": "two", "imageRef": world.image_id,
                                                                      "flavorRef": NANO}})
    assert over.status_code == 403, over.text
    made, acts = await rows_of(world)
    assert len(made) == 1 and len(acts) == 1


def test_row_with_action_is_built_once_and_cacheable() -> None:
    columns = ("uuid", "project_id", "user_id", "display_name")
    stmt = server_create._row_with_action(columns)
    assert server_create._row_with_action(columns) is stmt
    assert stmt._generate_cache_key() is not None  # compiled once per process, not per create


def test_a_bad_value_in_the_cte_insert_names_its_column() -> None:
    """db._column_of finds the column of a refused value in the create's one-statement form too."""
    from sqlalchemy.dialects import postgresql

    from cumulo.db import _column_of

    columns = ("uuid", "display_name")
    sql = str(server_create._row_with_action(columns).compile(dialect=postgresql.asyncpg.dialect()))
    # asyncpg's positional parameters in the compiled order: the action's six, then the instance's
    params = ("create", "req-1", "u", "p", None, None, "uuid-1", "x" * 300)
    exc = sa.exc.DBAPIError(sql, params, Exception("value too long for type character varying(255)"))
    assert _column_of(exc, lambda v: isinstance(v, str) and len(v) > 255) == ": field display_name"
