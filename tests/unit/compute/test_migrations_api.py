"""GET /os-migrations: one record per resize, its status following the resize (confirmed,
reverted), Nova's view per microversion (2.23 migration_type, 2.59 uuid and paging), filters,
admin-only; /servers/{id}/migrations (in-progress live migrations: none)."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import API, NANO, TINY, World, fault_of, make_world, mv, settings, wait_status  # noqa: F401

BASE_KEYS = {"id", "status", "instance_uuid", "source_node", "source_compute", "dest_node", "dest_compute",
             "dest_host", "old_instance_type_id", "new_instance_type_id", "created_at", "updated_at"}


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def _resize(world: World, sid: str, flavor: str, finish: str) -> None:
    assert (await world.action(sid, {"resize": {"flavorRef": flavor}})).status_code == 202
    await wait_status(world.member, sid, "VERIFY_RESIZE")
    listed = (await world.admin.get(f"{API}/os-migrations?instance_uuid={sid}")).json()["migrations"]
    assert listed[0]["status"] == "finished"
    assert (await world.action(sid, {finish: None})).status_code in (202, 204)
    await wait_status(world.member, sid, "ACTIVE")


async def _flavor_ids(cloud: Any) -> dict[str, int]:
    import sqlalchemy as sa

    from cumulo.compute.models import flavors

    async with cloud.db.read() as conn:
        return {r[0]: r[1] for r in await conn.execute(sa.select(flavors.c.flavorid, flavors.c.id))}


async def test_resizes_are_listed(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    assert (await world.admin.get(f"{API}/os-migrations")).json() == {"migrations": []}
    await _resize(world, sid, TINY, "confirmResize")
    await _resize(world, sid, NANO, "revertResize")
    assert (await world.member.get(f"{API}/os-migrations")).status_code == 403
    body = (await world.admin.get(f"{API}/os-migrations")).json()
    assert set(body) == {"migrations"}
    reverted, confirmed = body["migrations"]  # newest first
    assert set(confirmed) == BASE_KEYS
    ids = await _flavor_ids(cloud)
    host = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    assert confirmed["status"] == "confirmed" and reverted["status"] == "reverted"
    assert confirmed["instance_uuid"] == sid and confirmed["source_compute"] == confirmed["dest_compute"] == host
    assert (confirmed["old_instance_type_id"], confirmed["new_instance_type_id"]) == (ids[NANO], ids[TINY])
    assert (reverted["old_instance_type_id"], reverted["new_instance_type_id"]) == (ids[TINY], ids[NANO])
    assert isinstance(confirmed["id"], int) and confirmed["created_at"].count(".") == 1
    # Filters.
    for query, expected in (("status=confirmed", [confirmed["id"]]), (f"host={host}", [reverted["id"], confirmed["id"]]),
                            ("host=elsewhere", []), ("migration_type=resize", [reverted["id"], confirmed["id"]]),
                            ("migration_type=live-migration", []), ("instance_uuid=nope", [])):
        got = (await world.admin.get(f"{API}/os-migrations?{query}")).json()["migrations"]
        assert [m["id"] for m in got] == expected, query
    # 2.23: migration_type; 2.59: uuid and paging.
    v223 = (await world.admin.get(f"{API}/os-migrations", headers=mv("2.23"))).json()["migrations"][0]
    assert set(v223) == BASE_KEYS | {"migration_type"} and v223["migration_type"] == "resize"
    page = (await world.admin.get(f"{API}/os-migrations?limit=1", headers=mv("2.59"))).json()
    first = page["migrations"][0]
    assert set(first) == BASE_KEYS | {"migration_type", "uuid"} and first["id"] == reverted["id"]
    assert page["migrations_links"][0]["rel"] == "next" and f"marker={first['uuid']}" in page["migrations_links"][0]["href"]
    rest = (await world.admin.get(f"{API}/os-migrations?limit=1&marker={first['uuid']}", headers=mv("2.59"))).json()
    assert [m["id"] for m in rest["migrations"]] == [confirmed["id"]]
    resp = await world.admin.get(f"{API}/os-migrations?marker=nope", headers=mv("2.59"))
    assert resp.status_code == 400 and fault_of(resp)[2] == "Marker nope could not be found."
    assert (await world.admin.get(f"{API}/os-migrations?bogus=1", headers=mv("2.59"))).status_code == 400
    assert (await world.admin.get(f"{API}/os-migrations?bogus=1")).status_code == 200  # ignored before 2.59
    assert (await world.admin.get(f"{API}/os-migrations?limit=-1", headers=mv("2.59"))).status_code == 400


async def test_server_migrations_are_live_ones_only(world: World) -> None:
    sid = (await world.active())["id"]
    path = f"{API}/servers/{sid}/migrations"
    assert (await world.admin.get(path, headers=mv("2.22"))).status_code == 404
    assert (await world.member.get(path, headers=mv("2.23"))).status_code == 403
    assert (await world.admin.get(path, headers=mv("2.23"))).json() == {"migrations": []}
    resp = await world.admin.get(f"{path}/1", headers=mv("2.23"))
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"
    resp = await world.admin.get(f"{API}/servers/8c1a3b52-3f83-4bd0-9c1d-3f1f1d9f0a11/migrations", headers=mv("2.23"))
    assert resp.status_code == 404
