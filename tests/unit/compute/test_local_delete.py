"""Deleting a server whose host is down (Nova's local delete, compute/service/local_delete.py).

Found by the 3-host acceptance test (tests/system/test_cluster_hosts.py): a server on a killed
host stayed in task_state `deleting` for good, its terminate cast waiting in the dead host's queue.
Two fake hosts in one process; the host is marked down through os-services (forced_down).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servers_support import API, World, make_network, make_world, mv, wait_gone

from cumulo import conf as conf_mod
from cumulo.compute.agent import reconcile


@pytest.fixture
def settings(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0,
                         fake_hosts=2, local_driver="fake")


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def _force_down(world: World, host: str, down: bool = True) -> None:
    svc = (await world.admin.get(f"{API}/os-services?binary=nova-compute&host={host}",
                                 headers=mv("2.53"))).json()["services"][0]
    resp = await world.admin.put(f"{API}/os-services/{svc['id']}", json={"forced_down": down}, headers=mv("2.53"))
    assert resp.status_code == 200, resp.text


async def test_a_server_on_a_down_host_is_deleted_by_the_api(world: World, cloud: Any) -> None:
    net = await make_network(world.member, "ld-net", "10.78.0.0/24")
    sid = (await world.active(networks=[{"uuid": net["network"]["id"]}]))["id"]
    host = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    node = next(m.node for m in cloud.managers if m.node.host == host)
    assert await cloud.services.placement.allocations_for(sid)
    await _force_down(world, host)

    resp = await world.member.delete(f"{API}/servers/{sid}")
    assert resp.status_code == 204, resp.text
    # gone at once: no cast waits for the dead host's agent
    assert (await world.member.get(f"{API}/servers/{sid}")).status_code == 404
    assert await cloud.services.placement.allocations_for(sid) == {}
    ports = (await world.admin.get(f"/networking/v2.0/ports?device_id={sid}")).json()["ports"]
    assert ports == []
    actions = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions",
                                      headers=mv("2.21"))).json()["instanceActions"]
    assert [a["action"] for a in actions][:1] == ["delete"], actions
    # the host comes back: its start-up reconcile destroys the guest no live server owns
    assert sid in {s.uuid for s in await node.driver.list_instances()}
    assert sid in await reconcile.reap_orphans(node)
    assert sid not in {s.uuid for s in await node.driver.list_instances()}


async def test_a_server_on_an_up_host_is_deleted_by_its_agent(world: World, cloud: Any) -> None:
    """The other host down changes nothing for a server whose own host is up."""
    sid = (await world.active())["id"]
    host = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    other = next(m.node.host for m in cloud.managers if m.node.host != host)
    await _force_down(world, other)
    node = next(m.node for m in cloud.managers if m.node.host == host)
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    # the agent destroyed it (no orphan left for a reconcile)
    assert sid not in {s.uuid for s in await node.driver.list_instances()}
