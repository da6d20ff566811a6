"""Server actions: each one's happy path and its 409 in a wrong state, locks, resize confirm/revert,
createImage, console output, and the action dispatcher's bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    NANO,
    TINY,
    World,
    fault_of,
    make_world,
    mv,
    settings,
    wait_gone,
    wait_status,
)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def conflict(resp: Any, message: str) -> None:
    assert resp.status_code == 409, resp.text
    name, code, text = fault_of(resp)
    assert (name, code) == ("conflictingRequest", 409)
    assert text == message, text


async def test_stop_start(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    stopped = await wait_status(world.member, sid, "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == 4 and "progress" not in stopped
    conflict(await world.action(sid, {"os-stop": None}), f"Cannot 'stop' instance {sid} while it is in vm_state stopped")
    assert (await world.action(sid, {"os-start": {}})).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")
    conflict(await world.action(sid, {"os-start": None}), f"Cannot 'start' instance {sid} while it is in vm_state active")


async def test_reboot_soft_and_hard(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"reboot": {"type": "SOFT"}})).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    await wait_status(world.member, sid, "SHUTOFF")
    conflict(await world.action(sid, {"reboot": {"type": "soft"}}), f"Cannot 'reboot' instance {sid} while it is in vm_state stopped")
    assert (await world.action(sid, {"reboot": {"type": "HARD"}})).status_code == 202  # a hard reboot powers on
    await wait_status(world.member, sid, "ACTIVE")
    for bad in ({"reboot": {}}, {"reboot": {"type": "WARM"}}, {"reboot": {"type": "SOFT", "x": 1}}):
        assert (await world.action(sid, bad)).status_code == 400


async def test_pause_unpause_suspend_resume(world: World) -> None:
    sid = (await world.active())["id"]
    conflict(await world.action(sid, {"unpause": None}), f"Cannot 'unpause' instance {sid} while it is in vm_state active")
    assert (await world.action(sid, {"pause": None})).status_code == 202
    paused = await wait_status(world.member, sid, "PAUSED")
    assert paused["OS-EXT-STS:power_state"] == 3
    conflict(await world.action(sid, {"suspend": None}), f"Cannot 'suspend' instance {sid} while it is in vm_state paused")
    assert (await world.action(sid, {"unpause": None})).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")
    conflict(await world.action(sid, {"resume": None}), f"Cannot 'resume' instance {sid} while it is in vm_state active")
    assert (await world.action(sid, {"suspend": None})).status_code == 202
    suspended = await wait_status(world.member, sid, "SUSPENDED")
    assert suspended["OS-EXT-STS:power_state"] == 7
    conflict(await world.action(sid, {"pause": None}), f"Cannot 'pause' instance {sid} while it is in vm_state suspended")
    assert (await world.action(sid, {"resume": None})).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")


async def test_actions_while_building_are_409(world: World, cloud: Any) -> None:
    from cumulo.compute import instances as inst_db

    server = await world.create()
    sid = server["id"]
    await wait_status(world.member, sid, "ACTIVE")
    # Force a transitional state, as if another action were running.
    async with cloud.db.write() as conn:
        assert await inst_db.cas_update(conn, sid, {"task_state": "powering-off"})
    conflict(await world.action(sid, {"pause": None}), f"Cannot 'pause' instance {sid} while it is in task_state powering-off")
    async with cloud.db.write() as conn:
        assert await inst_db.cas_update(conn, sid, {"task_state": None})


async def test_racing_actions_one_wins(world: World) -> None:
    sid = (await world.active())["id"]
    results = await asyncio.gather(*(world.action(sid, {"os-stop": None}) for _ in range(5)))
    codes = sorted(r.status_code for r in results)
    assert codes == [202, 409, 409, 409, 409], codes
    await wait_status(world.member, sid, "SHUTOFF")
    actions = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [a["action"] for a in actions].count("stop") == 1


async def test_lock_semantics(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"lock": {"locked_reason": "maintenance"}}, version="2.73")).status_code == 202
    shown = (await world.member.get(f"{API}/servers/{sid}", headers=mv("2.73"))).json()["server"]
    assert shown["locked"] is True and shown["locked_reason"] == "maintenance"
    assert "locked_reason" not in (await world.member.get(f"{API}/servers/{sid}", headers=mv("2.72"))).json()["server"]
    locked = f"Instance {sid} is locked"
    conflict(await world.action(sid, {"os-stop": None}), locked)
    conflict(await world.action(sid, {"reboot": {"type": "HARD"}}), locked)
    conflict(await world.member.delete(f"{API}/servers/{sid}"), locked)
    conflict(await world.member.post(f"{API}/servers/{sid}/metadata", json={"metadata": {"a": "b"}}), locked)
    # Renaming is not guarded by the lock (as in Nova), and locking twice is harmless.
    assert (await world.member.put(f"{API}/servers/{sid}", json={"server": {"name": "renamed"}})).status_code == 200
    assert (await world.action(sid, {"lock": None})).status_code == 202
    # The owner unlocks their own lock.
    assert (await world.action(sid, {"unlock": None})).status_code == 202
    shown = (await world.member.get(f"{API}/servers/{sid}", headers=mv("2.73"))).json()["server"]
    assert shown["locked"] is False and shown["locked_reason"] is None
    # An admin's lock: the owner cannot lift it, the admin can act through it.
    assert (await world.action(sid, {"lock": None}, client=world.admin)).status_code == 202
    resp = await world.action(sid, {"unlock": None})
    assert resp.status_code == 403, resp.text
    assert (await world.action(sid, {"os-stop": None}, client=world.admin)).status_code == 202
    await wait_status(world.member, sid, "SHUTOFF")
    assert (await world.action(sid, {"unlock": None}, client=world.admin)).status_code == 202
    assert (await world.action(sid, {"os-start": None})).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")
    # locked_reason is only accepted from 2.73.
    assert (await world.action(sid, {"lock": {"locked_reason": "x"}}, version="2.73")).status_code == 202
    assert (await world.action(sid, {"lock": {"locked_reason": ""}}, version="2.73")).status_code == 400
    actions = [a["action"] for a in (await world.member.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]]
    assert "lock" in actions and "unlock" in actions


async def test_rebuild(world: World) -> None:
    sid = (await world.active("orig", metadata={"a": "1"}))["id"]
    resp = await world.action(sid, {"rebuild": {"imageRef": world.image_id, "name": "rebuilt", "adminPass": "s3cret"}})
    assert resp.status_code == 202, resp.text
    body = resp.json()["server"]
    assert body["name"] == "rebuilt" and body["adminPass"] == "s3cret" and body["status"] == "REBUILD"
    assert "OS-EXT-STS:vm_state" not in body and "progress" in body and "key_name" not in body
    assert resp.headers["location"].endswith(f"/servers/{sid}")
    await wait_status(world.member, sid, "ACTIVE")
    resp = await world.action(
        sid, {"rebuild": {"imageRef": world.image_id, "metadata": {"b": "2"}, "user_data": "aGk=", "key_name": None}},
        version="2.79",
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()["server"]
    assert body["metadata"] == {"b": "2"} and body["user_data"] == "aGk=" and body["key_name"] is None
    assert body["OS-EXT-STS:task_state"] == "rebuilding" and "OS-EXT-SRV-ATTR:user_data" not in body
    conflict(
        await world.action(sid, {"rebuild": {"imageRef": world.image_id}}),
        f"Cannot 'rebuild' instance {sid} while it is in task_state rebuilding",
    )
    await wait_status(world.member, sid, "ACTIVE")
    resp = await world.action(sid, {"rebuild": {"imageRef": "0e44cc9c-e052-415d-afbf-469b0d384170"}})
    assert resp.status_code == 400 and "Cannot find image for rebuild" in resp.text
    resp = await world.action(sid, {"rebuild": {"imageRef": world.image_id, "user_data": "aGk="}}, version="2.56")
    assert resp.status_code == 400  # user_data arrives in 2.57


async def test_resize_confirm_and_revert(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(sid, {"resize": {"flavorRef": NANO}})
    assert resp.status_code == 400 and "When resizing, instances must change flavor!" in resp.text
    resp = await world.action(sid, {"resize": {"flavorRef": "nope"}})
    assert resp.status_code == 400
    conflict(await world.action(sid, {"confirmResize": None}), f"Cannot 'confirmResize' instance {sid} while it is in vm_state active")
    conflict(await world.action(sid, {"revertResize": None}), f"Cannot 'revertResize' instance {sid} while it is in vm_state active")

    assert (await world.action(sid, {"resize": {"flavorRef": TINY}})).status_code == 202
    verify = await wait_status(world.member, sid, "VERIFY_RESIZE")
    assert verify["flavor"]["id"] == TINY
    conflict(await world.action(sid, {"resize": {"flavorRef": NANO}}), f"Cannot 'resize' instance {sid} while it is in vm_state resized")
    resp = await world.action(sid, {"confirmResize": None})
    assert resp.status_code == 204 and resp.content == b""
    done = await wait_status(world.member, sid, "ACTIVE")
    assert done["flavor"]["id"] == TINY

    assert (await world.action(sid, {"resize": {"flavorRef": f"http://x/flavors/{NANO}"}})).status_code == 202
    await wait_status(world.member, sid, "VERIFY_RESIZE")
    assert (await world.action(sid, {"revertResize": None})).status_code == 202
    back = await wait_status(world.member, sid, "ACTIVE")
    assert back["flavor"]["id"] == TINY
    names = [a["action"] for a in (await world.member.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]]
    assert names[:4] == ["revertResize", "resize", "confirmResize", "resize"]


async def test_resize_stopped_server_stays_stopped(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    await wait_status(world.member, sid, "SHUTOFF")
    assert (await world.action(sid, {"resize": {"flavorRef": TINY}})).status_code == 202
    await wait_status(world.member, sid, "VERIFY_RESIZE")
    assert (await world.action(sid, {"confirmResize": None})).status_code == 204
    await wait_status(world.member, sid, "SHUTOFF")


async def test_create_image(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(sid, {"createImage": {"name": "snap-1", "metadata": {"purpose": "backup"}}}, version="2.45")
    assert resp.status_code == 202, resp.text
    image_id = resp.json()["image_id"]
    for _ in range(200):
        image = (await world.member.get(f"/image/v2/images/{image_id}")).json()
        if image["status"] == "active":
            break
        await asyncio.sleep(0.02)
    assert image["status"] == "active" and image["name"] == "snap-1"
    assert image["purpose"] == "backup" and image["instance_uuid"] == sid and image["image_type"] == "snapshot"
    await wait_status(world.member, sid, "ACTIVE")
    # Before 2.45: no body, a Location header pointing at the image.
    resp = await world.action(sid, {"createImage": {"name": "snap-2"}}, version="2.44")
    assert resp.status_code == 202 and resp.content == b""
    assert "/image/v2/images/" in resp.headers["location"]
    await wait_status(world.member, sid, "ACTIVE")
    assert (await world.action(sid, {"createImage": {}})).status_code == 400
    # A snapshot is allowed on a locked server, not on one that is building.
    assert (await world.action(sid, {"lock": None})).status_code == 202
    resp = await world.action(sid, {"createImage": {"name": "snap-3"}}, version="2.45")
    assert resp.status_code == 202


async def test_console_output(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(sid, {"os-getConsoleOutput": {}})
    assert resp.status_code == 200, resp.text
    output = resp.json()["output"]
    assert set(resp.json()) == {"output"} and output
    one = (await world.action(sid, {"os-getConsoleOutput": {"length": 1}})).json()["output"]
    assert len(one.split("\n")) == 1
    # Nova (and Tempest's check) count the pieces between newlines: length=3 is exactly 3 of them.
    three = (await world.action(sid, {"os-getConsoleOutput": {"length": 3}})).json()["output"]
    assert len(three.split("\n")) == 3 and output.endswith(three)
    assert (await world.action(sid, {"os-getConsoleOutput": {"length": "-1"}})).json()["output"] == output
    assert (await world.action(sid, {"os-getConsoleOutput": {"length": -2}})).status_code == 400
    assert (await world.action(sid, {"os-getConsoleOutput": {"length": "x"}})).status_code == 400


async def test_delete_records_action_and_cleans_up(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    actions = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions", headers=mv("2.21"))).json()
    assert [a["action"] for a in actions["instanceActions"]] == ["delete", "create"]


async def test_action_dispatch_errors(world: World) -> None:
    sid = (await world.create())["id"]
    resp = await world.action(sid, {"frobnicate": None})
    assert resp.status_code == 400 and fault_of(resp)[2] == "There is no such action: frobnicate"
    resp = await world.action(sid, {"pause": None, "unpause": None})
    assert resp.status_code == 400
    resp = await world.member.post(f"{API}/servers/{sid}/action", content=b"nope", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    resp = await world.action("0e44cc9c-e052-415d-afbf-469b0d384170", {"pause": None})
    assert resp.status_code == 404
