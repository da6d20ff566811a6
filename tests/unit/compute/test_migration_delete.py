"""A server deleted while it waits in VERIFY_RESIZE after a move to another host: its copy kept on
the source for a revert goes too, and the migration is closed (Nova confirms the resize when such
a server is deleted), so nothing of it stays on either host and no claim is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from servers_support import API, World, make_world, wait_gone, wait_status

from cumulo import conf as conf_mod
from cumulo.compute.agent import migrate as agent_migrate
from cumulo.compute.models import migrations
from cumulo.placement.service import migration_consumer


@pytest.fixture
def settings(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0,
                         fake_hosts=2, local_driver="fake")


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def test_deleting_a_moved_server_in_verify_resize_leaves_nothing_on_the_source(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    source = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    assert (await world.action(sid, {"migrate": None}, world.admin)).status_code == 202
    body = await wait_status(world.admin, sid, "VERIFY_RESIZE")
    dest = body["OS-EXT-SRV-ATTR:host"]
    assert dest != source
    nodes = {m.node.host: m.node for m in cloud.managers}
    assert sid in {s.uuid for s in await nodes[source].driver.list_instances()}  # kept for a revert
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    for host in (source, dest):
        assert sid not in {s.uuid for s in await nodes[host].driver.list_instances()}, host
    assert await agent_migrate.kept_for_revert(nodes[source]) == set()
    async with cloud.db.read() as conn:
        status = (await conn.execute(sa.select(migrations.c.status).where(migrations.c.instance_uuid == sid))).scalar()
    assert status == "confirmed"
    placement = cloud.services.placement
    assert await placement.allocations_for(sid) == {} and await placement.allocations_for(migration_consumer(sid)) == {}
