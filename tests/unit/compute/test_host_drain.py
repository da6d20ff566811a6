"""Host maintenance: `cumulo admin host drain` (cli/host_drain.py) against the compute API of a
cloud with three fake hosts: the host's services are disabled, its ACTIVE servers live-migrate
away, a stopped one is reported as left, and nothing new is scheduled there."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from servers_support import API, World, make_world, mv, settings, wait_status  # noqa: F401

from cumulo.cli import host_drain


class AsgiApi:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        resp = await self.client.request(method, f"{API}{path}", json=body, headers=mv(host_drain.MICROVERSION))
        return resp.status_code, (resp.json() if resp.content else None)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def _host(world: World, sid: str) -> str:
    return str((await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"])


async def test_drain_moves_everything_off_the_host(world: World, cloud: Any) -> None:
    ids = [(await world.active(f"vm{i}"))["id"] for i in range(4)]
    hosts = {sid: await _host(world, sid) for sid in ids}
    busiest = max(set(hosts.values()), key=lambda h: sum(1 for v in hosts.values() if v == h))
    on_it = [sid for sid, h in hosts.items() if h == busiest]
    stopped = on_it[-1] if len(on_it) > 1 else None
    if stopped:
        assert (await world.action(stopped, {"os-stop": None})).status_code == 202
        await wait_status(world.member, stopped, "SHUTOFF")
    out = await host_drain.drain(AsgiApi(world.admin), busiest, parallel=2, timeout=60)
    movable = [s for s in on_it if s != stopped]
    assert sorted(s for s, _d in out.moved) == sorted(movable) and not out.failed
    assert out.left == ([(stopped, "SHUTOFF")] if stopped else [])
    for sid in movable:
        assert await _host(world, sid) != busiest
        assert (await world.member.get(f"{API}/servers/{sid}")).json()["server"]["status"] == "ACTIVE"
    services = (await world.admin.get(f"{API}/os-services?binary=nova-compute&host={busiest}",
                                      headers=mv("2.53"))).json()["services"]
    assert services and all(s["status"] == "disabled" and s["disabled_reason"] == host_drain.REASON for s in services)
    # The scheduler sends nothing new there.
    fresh = (await world.active("after"))["id"]
    assert await _host(world, fresh) != busiest
    with pytest.raises(RuntimeError, match="no nova-compute service"):
        await host_drain.drain(AsgiApi(world.admin), "nowhere")
