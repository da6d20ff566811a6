"""os-server-password: show ("" when none is stored, the stored chunks otherwise), clear, scope."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_world,
    mv,
    settings,
)

from cumulo.compute import instances as inst_db


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def _store(world: World, sid: str, password: str) -> None:
    """What Nova's metadata service does when a guest posts its encrypted password."""
    async with world.cloud.db.write() as conn:
        row = await inst_db.get(conn, sid)
        assert row is not None
        chunks = {f"password_{i}": password[i * 255:(i + 1) * 255] for i in range(4)}
        await inst_db.cas_update(conn, sid, {"system_metadata": {**(row["system_metadata"] or {}), **chunks}})


async def test_show_and_clear(world: World) -> None:
    sid = (await world.active())["id"]
    url = f"{API}/servers/{sid}/os-server-password"
    resp = await world.member.get(url)
    assert resp.status_code == 200 and resp.json() == {"password": ""}
    secret = "x" * 300 + "tail"  # spans two chunks
    await _store(world, sid, secret)
    assert (await world.reader.get(url)).json() == {"password": secret}
    assert (await world.member.get(url, headers=mv("2.79"))).json() == {"password": secret}
    resp = await world.member.delete(url)
    assert resp.status_code == 204 and resp.content == b""
    assert (await world.member.get(url)).json() == {"password": ""}
    # Clearing keeps the rest of the system metadata.
    async with world.cloud.db.read() as conn:
        row = await inst_db.get(conn, sid)
    assert row is not None and "auto_disk_config" in row["system_metadata"]
    assert (await world.member.delete(url)).status_code == 204  # idempotent


async def test_scope_and_policy(world: World) -> None:
    sid = (await world.active())["id"]
    url = f"{API}/servers/{sid}/os-server-password"
    await _store(world, sid, "secret")
    resp = await world.other.get(url)
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"
    assert (await world.other.delete(url)).status_code == 404
    assert (await world.reader.delete(url)).status_code == 403
    assert (await world.member.get(url)).json() == {"password": "secret"}
    assert (await world.admin.get(url)).json() == {"password": "secret"}
    missing = f"{API}/servers/3f0a6a2e-5d4b-4bd5-8a55-0d1b3f3a9d11/os-server-password"
    assert (await world.member.get(missing)).status_code == 404
    assert (await world.member.post(url, json={})).status_code == 405
