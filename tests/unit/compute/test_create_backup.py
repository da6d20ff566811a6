"""createBackup: the backup image's properties, rotation (oldest first, 0 deletes all, per type),
the response per microversion, states and bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_world,
    settings,
    wait_status,
)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _backup(name: str, backup_type: str = "daily", rotation: Any = 2, **extra: Any) -> dict[str, Any]:
    return {"createBackup": {"name": name, "backup_type": backup_type, "rotation": rotation, **extra}}


async def _make(world: World, sid: str, name: str, backup_type: str = "daily", rotation: Any = 2, **extra: Any) -> str:
    resp = await world.action(sid, _backup(name, backup_type, rotation, **extra), version="2.45")
    assert resp.status_code == 202, resp.text
    assert set(resp.json()) == {"image_id"}
    image_id: str = resp.json()["image_id"]
    await wait_status(world.member, sid, "ACTIVE")
    return image_id


async def _backups(world: World, sid: str, backup_type: str = "daily") -> list[str]:
    resp = await world.member.get(
        "/image/v2/images",
        params={"image_type": "backup", "backup_type": backup_type, "instance_uuid": sid, "sort_key": "created_at",
                "sort_dir": "asc"},
    )
    assert resp.status_code == 200, resp.text
    return [i["name"] for i in resp.json()["images"]]


async def _expect(world: World, sid: str, names: list[str], backup_type: str = "daily") -> None:
    """Rotation runs on the agent after the snapshot (as in Nova): wait for the listing to settle."""
    found: list[str] = []
    for _ in range(500):
        found = await _backups(world, sid, backup_type)
        if found == names:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{backup_type} backups of {sid}: {found}, expected {names}")


async def _wait_active(world: World, image_id: str) -> dict[str, Any]:
    image: dict[str, Any] = {}
    for _ in range(500):
        image = (await world.member.get(f"/image/v2/images/{image_id}")).json()
        if image.get("status") == "active":
            return image
        await asyncio.sleep(0.02)
    raise AssertionError(f"backup {image_id} not active: {image}")


async def test_backup_image_properties(world: World) -> None:
    sid = (await world.active())["id"]
    image_id = await _make(world, sid, "b-1", metadata={"purpose": "nightly"})
    image = await _wait_active(world, image_id)
    assert image["image_type"] == "backup" and image["backup_type"] == "daily" and image["instance_uuid"] == sid
    assert image["purpose"] == "nightly" and image["name"] == "b-1" and image["visibility"] == "private"
    actions = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert actions[0]["action"] == "createBackup"


async def test_rotation_keeps_the_newest(world: World) -> None:
    sid = (await world.active())["id"]
    for name in ("b-1", "b-2"):
        await _make(world, sid, name)
    await _expect(world, sid, ["b-1", "b-2"])
    await _make(world, sid, "b-3")
    await _expect(world, sid, ["b-2", "b-3"])
    # Another type rotates on its own.
    await _make(world, sid, "w-1", backup_type="weekly", rotation="1")
    await _make(world, sid, "w-2", backup_type="weekly", rotation=1)
    await _expect(world, sid, ["w-2"], "weekly")
    await _expect(world, sid, ["b-2", "b-3"])
    # Rotation 0 deletes every backup of the type, the new one included.
    await _make(world, sid, "b-4", rotation=0)
    await _expect(world, sid, [])


async def test_rotation_is_per_server(world: World) -> None:
    one = (await world.active("one"))["id"]
    two = (await world.active("two"))["id"]
    await _make(world, one, "one-1", rotation=1)
    await _make(world, two, "two-1", rotation=1)
    await _make(world, one, "one-2", rotation=1)
    await _expect(world, one, ["one-2"])
    await _expect(world, two, ["two-1"])


async def test_response_before_2_45(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(sid, _backup("old"), version="2.44")
    assert resp.status_code == 202 and resp.content == b""
    image_id = resp.headers["location"].rsplit("/", 1)[-1]
    assert resp.headers["location"].endswith(f"/compute/v2.1/images/{image_id}")
    await _wait_active(world, image_id)
    await wait_status(world.member, sid, "ACTIVE")
    # No Location when the backup will not be kept.
    resp = await world.action(sid, _backup("gone", rotation=0), version="2.1")
    assert resp.status_code == 202 and "location" not in resp.headers
    await wait_status(world.member, sid, "ACTIVE")


async def test_bad_input(world: World) -> None:
    sid = (await world.active())["id"]
    for body in (
        {"createBackup": {"name": "x", "backup_type": "daily"}},
        {"createBackup": {"name": "x", "rotation": 1}},
        {"createBackup": {"backup_type": "daily", "rotation": 1}},
        _backup("x", rotation=-1),
        _backup("x", rotation="two"),
        _backup("x", backup_type=3),
        _backup(" x"),
        _backup("x", extra=1),
        _backup("x", metadata={"k": 1}),
        {"createBackup": None},
    ):
        resp = await world.action(sid, body)
        assert resp.status_code == 400, (body, resp.text)
        assert fault_of(resp)[0] == "badRequest"
    # Nothing was created by the refused requests.
    await _expect(world, sid, [])


async def test_states_and_scope(world: World) -> None:
    sid = (await world.create())["id"]
    resp = await world.action(sid, _backup("early"))
    assert resp.status_code == 409 and "vm_state building" in fault_of(resp)[2]
    await wait_status(world.member, sid, "ACTIVE")
    assert (await world.action(sid, _backup("x"), client=world.other)).status_code == 404
    assert (await world.action(sid, _backup("x"), client=world.reader)).status_code == 403
    # A lock does not stop a backup (Nova does not check it for backups).
    assert (await world.action(sid, {"lock": None})).status_code == 202
    await _make(world, sid, "locked")
    # Before 2.39 the metadata quota applies to the backup's metadata.
    async with world.cloud.db.write() as conn:
        await world.cloud.services.compute.quotas.set_limits(conn, world.project_id, {"metadata_items": 1})
    resp = await world.action(sid, _backup("meta", metadata={"a": "1", "b": "2"}), version="2.38")
    assert resp.status_code == 403 and fault_of(resp)[2] == "Image metadata limit exceeded"
    await _make(world, sid, "meta-ok", metadata={"a": "1", "b": "2"})
