"""Hostile bodies and ids for issue 14's new compute API surface (os-migrateLive, migrate,
evacuate, /servers/{id}/migrations, os-migrations): every one answers a 4xx Nova fault naming the
problem, never a 500, and a member is refused the admin actions (403)."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import API, World, make_world, mv, settings  # noqa: F401

HUGE = "9" * 30  # past any 64-bit integer column

BAD_ACTIONS: list[tuple[str, Any]] = [
    ("2.30", {"os-migrateLive": []}),
    ("2.30", {"os-migrateLive": "now"}),
    ("2.30", {"os-migrateLive": {"host": 5, "block_migration": False}}),
    ("2.30", {"os-migrateLive": {"host": "x" * 300, "block_migration": False}}),
    ("2.30", {"os-migrateLive": {"host": None, "block_migration": "maybe"}}),
    ("2.30", {"os-migrateLive": {"host": None, "block_migration": False, "force": "sometimes"}}),
    ("2.30", {"os-migrateLive": {"host": None, "block_migration": False, "extra": 1}}),
    ("2.68", {"os-migrateLive": {"host": None, "block_migration": "auto", "force": True}}),
    ("2.1", {"os-migrateLive": {"host": None}}),
    ("2.56", {"migrate": {"host": 7}}),
    ("2.56", {"migrate": {"host": "a b"}}),
    ("2.56", {"migrate": {"other": "x"}}),
    ("2.56", {"migrate": "host-1"}),
    ("2.1", {"evacuate": {"host": "h"}}),  # onSharedStorage required before 2.14
    ("2.14", {"evacuate": {"host": {"a": 1}}}),
    ("2.14", {"evacuate": {"onSharedStorage": True}}),
    ("2.29", {"evacuate": {"force": "yes please"}}),
    ("2.68", {"evacuate": {"force": True}}),
    ("2.14", {"evacuate": None}),
    ("2.14", {"evacuate": [1]}),
    ("2.14", {"evacuate": {"adminPass": 12}}),
]


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _fault(resp: Any) -> str:
    body = resp.json()
    assert len(body) == 1, body
    (key, inner), = body.items()
    assert isinstance(inner, dict) and inner.get("code") == resp.status_code and inner.get("message"), body
    return key


async def test_bad_bodies_of_the_move_actions_are_4xx_faults(world: World) -> None:
    sid = (await world.active())["id"]
    for version, body in BAD_ACTIONS:
        resp = await world.action(sid, body, client=world.admin, version=version)
        assert 400 <= resp.status_code < 500, (version, body, resp.status_code, resp.text)
        _fault(resp)
    # nothing moved, nothing stuck
    got = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]
    assert got["status"] == "ACTIVE" and got["OS-EXT-STS:task_state"] is None


async def test_members_are_refused_the_move_actions(world: World) -> None:
    sid = (await world.active())["id"]
    for version, body in [("2.30", {"os-migrateLive": {"host": None, "block_migration": "auto"}}),
                          ("2.56", {"migrate": None}), ("2.14", {"evacuate": {}})]:
        resp = await world.action(sid, body, client=world.member, version=version)
        assert resp.status_code == 403, (body, resp.text)
        assert _fault(resp) == "forbidden"
    for method, path, kw in [
        ("GET", f"/servers/{sid}/migrations", {}), ("GET", f"/servers/{sid}/migrations/1", {}),
        ("POST", f"/servers/{sid}/migrations/1/action", {"json": {"force_complete": None}}),
        ("DELETE", f"/servers/{sid}/migrations/1", {}), ("GET", "/os-migrations", {}),
    ]:
        resp = await world.member.request(method, f"{API}{path}", headers=mv("2.79"), **kw)
        assert resp.status_code == 403, (method, path, resp.text)


async def test_bad_migration_ids_and_bodies_are_4xx(world: World) -> None:
    sid = (await world.active())["id"]
    for method, path, kw in [
        ("GET", f"/servers/{sid}/migrations/abc", {}), ("GET", f"/servers/{sid}/migrations/{HUGE}", {}),
        ("GET", f"/servers/{sid}/migrations/-1", {}),
        ("DELETE", f"/servers/{sid}/migrations/{HUGE}", {}),
        ("POST", f"/servers/{sid}/migrations/{HUGE}/action", {"json": {"force_complete": None}}),
        ("POST", f"/servers/{sid}/migrations/1/action", {"json": {"force_complete": 1, "x": 2}}),
        ("POST", f"/servers/{sid}/migrations/1/action", {"content": b"{not json"}),
        ("GET", f"/os-migrations?instance_uuid={sid}&limit=abc", {}),
        ("GET", f"/os-migrations?marker={HUGE}", {}),
        ("GET", "/os-migrations?changes-since=yesterday", {}),
        ("GET", "/os-migrations?limit=-3", {}),
    ]:
        resp = await world.admin.request(method, f"{API}{path}", headers=mv("2.79"), **kw)
        assert 400 <= resp.status_code < 500, (method, path, resp.status_code, resp.text)
        _fault(resp)
