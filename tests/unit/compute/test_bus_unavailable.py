"""The broker away (bus.base.BusUnavailable on a cast): the compute API answers 503 in Nova's fault
shape ({"serviceUnavailable": {"code": 503, "message"}}) and undoes what the request changed, so
nothing stays in a task state and a retry once the broker is back starts clean."""

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
    settings,
    wait_gone,
    wait_status,
)

from cumulo.bus.base import BusUnavailable


class BrokerSwitch:
    """The cloud's bus with its casts failing while `down` (as AmqpBus does without a broker)."""

    def __init__(self, bus: Any) -> None:
        self.down = False
        self._cast = bus.cast

    async def cast(self, topic: str, method: str, **args: Any) -> None:
        if self.down:
            raise BusUnavailable(f"message broker unreachable: {topic} not sent within 5 s")
        await self._cast(topic, method, **args)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    switch = BrokerSwitch(cloud.bus)
    monkeypatch.setattr(cloud.bus, "cast", switch.cast)
    w = await make_world(cloud, as_ctx)
    w.switch = switch  # type: ignore[attr-defined]
    return w


def unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.text
    name, code, message = fault_of(resp)
    assert (name, code) == ("serviceUnavailable", 503)
    assert "message broker unreachable" in message


async def used_instances(world: World) -> int:
    resp = await world.member.get(f"{API}/limits")
    return int(resp.json()["limits"]["absolute"]["totalInstancesUsed"])


async def actions_of(world: World, sid: str) -> list[str]:
    resp = await world.member.get(f"{API}/servers/{sid}/os-instance-actions")
    return [a["action"] for a in resp.json()["instanceActions"]]


async def test_a_create_with_the_broker_away_leaves_nothing(world: World) -> None:
    world.switch.down = True  # type: ignore[attr-defined]
    body = {"server": {"name": "nope", "imageRef": world.image_id, "flavorRef": TINY, "min_count": 2}}
    unavailable(await world.member.post(f"{API}/servers", json=body))
    listed = (await world.member.get(f"{API}/servers/detail")).json()["servers"]
    assert listed == []
    assert await used_instances(world) == 0  # the quota usage went with the rows
    world.switch.down = False  # type: ignore[attr-defined]
    server = await world.active("again")  # the retry is clean
    assert server["name"] == "again"
    assert await used_instances(world) == 1


async def test_an_action_with_the_broker_away_puts_the_task_state_back(world: World) -> None:
    sid = (await world.active())["id"]
    world.switch.down = True  # type: ignore[attr-defined]
    unavailable(await world.action(sid, {"os-stop": None}))
    unavailable(await world.action(sid, {"resize": {"flavorRef": TINY}}))
    unavailable(await world.member.delete(f"{API}/servers/{sid}"))
    server = (await world.member.get(f"{API}/servers/{sid}")).json()["server"]
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    assert server["flavor"]["id"] == NANO  # the resize left no new flavor behind
    assert await actions_of(world, sid) == ["create"]  # the refused requests recorded nothing
    migrations = (await world.admin.get(f"{API}/os-migrations")).json()["migrations"]
    assert [m for m in migrations if m["instance_uuid"] == sid] == []
    world.switch.down = False  # type: ignore[attr-defined]
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    await wait_status(world.member, sid, "SHUTOFF")
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)


async def test_a_move_with_the_broker_away_leaves_nothing(world: World) -> None:
    """Cold and live migration (os-migrateLive's cast had no undo before): 503, the server as it
    was, no action and no migration record; the retry moves it."""
    sid = (await world.active())["id"]
    host = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    world.switch.down = True  # type: ignore[attr-defined]
    live = {"os-migrateLive": {"host": None, "block_migration": "auto"}}
    unavailable(await world.action(sid, live, client=world.admin, version="2.30"))
    unavailable(await world.action(sid, {"migrate": None}, client=world.admin))
    server = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]
    assert (server["status"], server["OS-EXT-STS:task_state"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", None, host)
    assert await actions_of(world, sid) == ["create"]
    migrations = (await world.admin.get(f"{API}/os-migrations")).json()["migrations"]
    assert [m for m in migrations if m["instance_uuid"] == sid] == []
    world.switch.down = False  # type: ignore[attr-defined]
    resp = await world.action(sid, live, client=world.admin, version="2.30")
    assert resp.status_code == 202, resp.text
    async with asyncio.timeout(20):
        while True:
            server = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]
            if server["OS-EXT-STS:task_state"] is None and server["OS-EXT-SRV-ATTR:host"] != host:
                break
            await asyncio.sleep(0.05)
    assert server["status"] == "ACTIVE"
    assert await actions_of(world, sid) == ["live-migration", "create"]


# -- the block storage family (Cinder's fault shape; same 503, same undo) -------------------------


async def volume_status(world: World, vid: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            vol: dict[str, Any] = (await world.member.get(f"/volume/v3/{world.project_id}/volumes/{vid}")).json()["volume"]
            if vol["status"] == status:
                return vol
            await asyncio.sleep(0.05)


async def test_volume_requests_with_the_broker_away(world: World) -> None:
    base = f"/volume/v3/{world.project_id}/volumes"
    world.switch.down = True  # type: ignore[attr-defined]
    unavailable(await world.member.post(base, json={"volume": {"size": 1, "name": "nope"}}))
    assert (await world.member.get(base)).json()["volumes"] == []  # nothing made, nothing counted
    world.switch.down = False  # type: ignore[attr-defined]
    resp = await world.member.post(base, json={"volume": {"size": 1, "name": "v"}})
    assert resp.status_code == 202, resp.text
    vid = resp.json()["volume"]["id"]
    await volume_status(world, vid, "available")
    world.switch.down = True  # type: ignore[attr-defined]
    unavailable(await world.member.post(f"{base}/{vid}/action", json={"os-extend": {"new_size": 2}}))
    unavailable(await world.member.delete(f"{base}/{vid}"))
    vol = await volume_status(world, vid, "available")  # as it was: not extending, deleting or error
    assert vol["size"] == 1
    world.switch.down = False  # type: ignore[attr-defined]
    assert (await world.member.post(f"{base}/{vid}/action", json={"os-extend": {"new_size": 2}})).status_code == 202
    assert (await volume_status(world, vid, "available"))["size"] == 2
