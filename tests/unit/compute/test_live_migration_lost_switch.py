"""A live migration whose last step (the row's switch to the destination, a compare-and-swap on
task_state migrating) loses to an admin's reset: the row still names the source, so the guest runs
on there (resumed), the destination's copy and claim go, and the record says error; before, the
record stayed "running" and the source's copy was dropped too, leaving an ACTIVE server with no
guest anywhere."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from servers_support import API, World, make_world, settings  # noqa: F401

from cumulo.compute.conductor import live
from cumulo.compute.drivers.base import PowerState
from cumulo.compute.models import instances, migrations


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def test_a_lost_switch_leaves_the_guest_running_on_its_source(
    world: World, cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = (await world.active())["id"]
    source = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    real = live._switch

    async def reset_first(conductor: Any, uuid: str, *args: Any) -> bool:
        async with conductor.db.write() as conn:  # an admin's os-resetState lands just before
            await conn.execute(sa.update(instances).where(instances.c.uuid == uuid).values(task_state=None))
        return await real(conductor, uuid, *args)

    monkeypatch.setattr(live, "_switch", reset_first)
    resp = await world.action(sid, {"os-migrateLive": {"host": None, "block_migration": "auto"}},
                              client=world.admin, version="2.30")
    assert resp.status_code == 202, resp.text
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        async with cloud.db.read() as conn:
            rec = (await conn.execute(sa.select(migrations).where(migrations.c.instance_uuid == sid))).mappings().first()
        assert rec is not None
        if rec["status"] not in ("accepted", "queued", "preparing", "running"):
            break
        assert loop.time() < deadline, f"the record stays {rec['status']}"
        await asyncio.sleep(0.05)
    assert rec["status"] == "error"
    await asyncio.sleep(0)  # the conductor's last casts
    drivers = {m.host: m.driver for m in cloud.managers}
    deadline = loop.time() + 20
    while sid in drivers[rec["dest_compute"]]._instances:
        assert loop.time() < deadline, "the destination's copy stays"
        await asyncio.sleep(0.05)
    while PowerState(int(drivers[source]._instances.get(sid, {}).get("power", 0))) != PowerState.RUNNING:
        assert loop.time() < deadline, "the guest does not run on its source"
        await asyncio.sleep(0.05)
    got = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]
    assert got["OS-EXT-SRV-ATTR:host"] == source and got["status"] == "ACTIVE"
    placement = cloud.services.placement
    assert await placement.allocations_for(rec["uuid"]) == {}
    assert set(await placement.allocations_for(sid)) == {m.node.node_uuid for m in cloud.managers if m.host == source}
