"""Values PostgreSQL refuses where SQLite stores them (issue 14): a NUL character in a name, a
filter or an id, and over-long strings, are 4xx in each API family's fault format, never a 500."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_ctx import AsCtx

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles

NUL = "a\u0000b"
PROJECT = uuid.uuid4().hex
# (role, method, path, body): each was a 500 on PostgreSQL before the database layer mapped it.
PROBES: list[tuple[str, str, str, Any]] = [
    ("member", "GET", "/compute/v2.1/servers?name=a%00b", None),
    ("member", "GET", "/compute/v2.1/servers/a%00b", None),
    ("member", "GET", "/compute/v2.1/flavors/a%00b", None),
    ("member", "POST", "/image/v2/images", {"name": NUL}),
    ("member", "POST", "/image/v2/images", {"name": "ok", "extra": NUL}),
    ("member", "GET", "/image/v2/images?name=a%00b", None),
    ("member", "GET", "/networking/v2.0/networks/a%00b", None),
    ("member", "GET", f"/volume/v3/{PROJECT}/volumes/a%00b", None),
    ("admin", "POST", "/identity/v3/projects", {"project": {"name": NUL}}),
    ("admin", "POST", "/identity/v3/users", {"user": {"name": NUL, "password": "pw-pw-pw-pw"}}),
    ("admin", "GET", "/identity/v3/users?name=a%00b", None),
    ("admin", "GET", "/identity/v3/projects/a%00b", None),
]


@pytest.fixture
async def pg_cloud(scale_services: dict[str, str], pg_template: str, tmp_path: Path) -> AsyncIterator[Any]:
    import _pg

    from cumulo.runtime import Cloud

    url = _pg.create_database(scale_services["database_url"], template=pg_template)
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state", database=url, local_driver="fake",
                         power_sync_interval=3600.0, port=8080)
    cloud = Cloud(conf)
    await cloud.start()
    try:
        yield cloud
    finally:
        await cloud.stop()
        _pg.drop_database(scale_services["database_url"], url)


async def test_values_postgresql_refuses_are_4xx(pg_cloud: Any) -> None:
    app = pg_cloud.asgi_app()
    clients = {
        role: httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, RequestContext(
            user_id=uuid.uuid4().hex, project_id=PROJECT, roles=expand_roles([role])))), base_url="http://cumulo.test")
        for role in ("member", "admin")
    }
    wrong = []
    for role, method, path, body in PROBES:
        resp = await clients[role].request(method, path, json=body)
        if not 400 <= resp.status_code < 500:
            wrong.append((method, path, resp.status_code, resp.text[:200]))
    assert not wrong
    # the family's own fault format, naming the problem
    resp = await clients["admin"].post("/identity/v3/projects", json={"project": {"name": NUL}})
    assert resp.json()["error"]["code"] == 400 and "NUL" in resp.json()["error"]["message"]
    resp = await clients["member"].get("/compute/v2.1/servers?name=a%00b")
    assert "NUL" in resp.json()["badRequest"]["message"]
    # the pool is healthy after the refusals
    assert (await clients["member"].get("/compute/v2.1/servers")).status_code == 200


async def test_database_layer_names_the_column(scale_services: dict[str, str]) -> None:
    """The safety net under the API schemas: an over-long string or a NUL reaching PostgreSQL is an
    Invalid (400) naming the column, and an integer beyond the column's range is one too."""
    import _pg
    import sqlalchemy as sa

    from cumulo.db import Database
    from cumulo.errors import Invalid

    url = _pg.create_database(scale_services["database_url"])
    db = Database(url)
    t = sa.Table("probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("label", sa.String(5)), sa.Column("count", sa.Integer))
    try:
        async with db.write() as conn:
            await conn.run_sync(t.metadata.create_all)
        for values, words in (({"label": "x" * 6}, ("5 characters", "field label")),
                              ({"label": NUL}, ("NUL", "field label")),
                              ({"label": "ok", "count": 2**40}, ("out of range",))):
            with pytest.raises(Invalid) as caught:
                async with db.write() as conn:
                    await conn.execute(sa.insert(t).values(**values))
            assert all(w in caught.value.message for w in words), caught.value.message
        with pytest.raises(Invalid) as caught:
            async with db.write() as conn:
                await conn.execute(sa.update(t).where(t.c.id == 1).values(label="y" * 9))
        assert "field label" in caught.value.message
        async with db.read() as conn:  # the connection that saw the errors is usable again
            assert (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one() == 0
    finally:
        await db.dispose()
        _pg.drop_database(scale_services["database_url"], url)
