"""The workers inside the real in-process Cloud, driven through the Nova API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles

H = {"OpenStack-API-Version": "compute 2.79"}


@pytest.fixture
def settings(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0, fake_hosts=2, quota_ram=-1,
                         fake_host_ram_mb=8192, local_driver="fake")


def admin() -> RequestContext:
    return RequestContext(user_id="admin-user", project_id="admin-project", roles=expand_roles(["admin"]))


async def image(client: httpx.AsyncClient, **props: Any) -> str:
    r = await client.post("/image/v2/images", json={"name": "img", "disk_format": "raw", "container_format": "bare",
                                                    "visibility": "public", **props})
    assert r.status_code == 201, r.text
    image_id = str(r.json()["id"])
    r = await client.put(f"/image/v2/images/{image_id}/file", content=b"bytes",
                         headers={"content-type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return image_id


async def boot(client: httpx.AsyncClient, image_id: str, flavor: str = "2", **extra: Any) -> str:
    body = {"server": {"name": "w", "imageRef": image_id, "flavorRef": flavor, "networks": "none", **extra}}
    r = await client.post("/compute/v2.1/servers", json=body, headers=H)
    assert r.status_code == 202, r.text
    return str(r.json()["server"]["id"])


async def settle(client: httpx.AsyncClient, sid: str, timeout: float = 15.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await client.get(f"/compute/v2.1/servers/{sid}", headers=H)
        assert r.status_code == 200, r.text
        server: dict[str, Any] = r.json()["server"]
        if server["OS-EXT-STS:task_state"] is None and server["status"] != "BUILD":
            return server
        assert loop.time() < deadline, f"server stuck in {server['status']}"
        await asyncio.sleep(0.03)


async def usage_matches_servers(cloud: Any) -> None:
    """Placement usage per node equals the flavors of the servers placed there."""
    import sqlalchemy as sa

    from cumulo.compute.models import instances

    want: dict[str, dict[str, int]] = {}
    async with cloud.db.read() as conn:
        rows = await conn.execute(sa.select(instances).where(instances.c.deleted.is_(False), instances.c.host.is_not(None)))
        for r in rows.mappings():
            acc = want.setdefault(r["node"], {})
            for rc, n in (("VCPU", r["vcpus"]), ("MEMORY_MB", r["memory_mb"]), ("DISK_GB", r["root_gb"])):
                if n:
                    acc[rc] = acc.get(rc, 0) + n
    got = {s.name: {k: v for k, v in s.usage.items() if v} for s in (await cloud.services.placement.summaries()).values()}
    assert {k: v for k, v in got.items() if v} == want


async def test_boot_act_and_delete_through_the_api(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
    client = as_ctx(admin())
    img = await image(client)
    sid = await boot(client, img)
    server = await settle(client, sid)
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:power_state"] == 1
    assert server["OS-EXT-SRV-ATTR:host"] in {cloud.conf.host_name, "fake-host-1", "fake-host-2"}
    await usage_matches_servers(cloud)
    r = await client.get(f"/compute/v2.1/servers/{sid}/os-instance-actions/{(await _create_req(client, sid))}",
                         headers=H)
    events = {e["event"]: e["result"] for e in r.json()["instanceAction"]["events"]}
    assert events == {"conductor_schedule_and_build_instances": "Success", "compute_build_and_run_instance": "Success"}
    r = await client.post(f"/compute/v2.1/servers/{sid}/action", json={"os-stop": None}, headers=H)
    assert r.status_code == 202
    assert (await settle(client, sid))["status"] == "SHUTOFF"
    r = await client.delete(f"/compute/v2.1/servers/{sid}", headers=H)
    assert r.status_code == 204
    for _ in range(200):
        if (await client.get(f"/compute/v2.1/servers/{sid}", headers=H)).status_code == 404:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("server was never deleted")
    await usage_matches_servers(cloud)


async def _create_req(client: httpx.AsyncClient, sid: str) -> str:
    r = await client.get(f"/compute/v2.1/servers/{sid}/os-instance-actions", headers=H)
    return str(next(a["request_id"] for a in r.json()["instanceActions"] if a["action"] == "create"))


async def test_no_valid_host_fault_is_visible(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
    client = as_ctx(admin())
    r = await client.post("/compute/v2.1/flavors", json={"flavor": {"name": "huge", "ram": 10**7, "vcpus": 1, "disk": 1}},
                          headers=H)
    assert r.status_code == 200, r.text
    sid = await boot(client, await image(client), flavor=r.json()["flavor"]["id"])
    server = await settle(client, sid)
    assert server["status"] == "ERROR"
    message = server["fault"]["message"]
    assert message.startswith("No valid host was found.") and "RamFilter removed 3 of 3" in message
    assert server["fault"]["code"] == 500
    await usage_matches_servers(cloud)


async def test_spawn_failure_fault_quotes_the_driver(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
    client = as_ctx(admin())
    sid = await boot(client, await image(client), metadata={"cumulo_fake_fail": "spawn"})
    server = await settle(client, sid)
    assert server["status"] == "ERROR" and "spawn failed as requested" in server["fault"]["message"]
    await usage_matches_servers(cloud)


class _As:
    """ASGI wrapper: requests act as `ctx` (what tests/conftest.py's as_ctx does, for a second cloud)."""

    def __init__(self, app: Any, ctx: RequestContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "cumulo.context": self.ctx}
        await self.app(scope, receive, send)


def client_for(cloud: Any, ctx: RequestContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_As(cloud.asgi_app(), ctx)), base_url="http://cumulo.test")


async def test_restart_of_the_whole_cloud_settles_builds(settings: conf_mod.Settings) -> None:
    from cumulo.runtime import Cloud

    slow = Cloud(settings.replace(fake_spawn_delay=0.4))
    await slow.start()
    try:
        client = client_for(slow, admin())
        img = await image(client)
        sids = [await boot(client, img) for _ in range(6)]
        await asyncio.sleep(0.1)
    finally:
        await slow.stop()  # in-flight builds are cut off
    again = Cloud(settings)
    await again.start()
    try:
        client = client_for(again, admin())
        servers = [await settle(client, sid) for sid in sids]
        assert all(s["status"] in ("ACTIVE", "ERROR") for s in servers)
        assert any(s["status"] == "ACTIVE" for s in servers)
        await usage_matches_servers(again)
    finally:
        await again.stop()
