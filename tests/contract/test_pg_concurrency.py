"""Compare-and-swap, quota and placement claims stay correct with writers in separate OS processes
on one PostgreSQL database (issue 14, the service layer; PROC proves the same through two `cumulo
api` processes).

A cloud in this process makes the world (an ACTIVE server, a project with an instances quota of K,
a small resource provider); two racer processes (pg_race_worker.py), each with its own in-process
cloud on the same database, then fire at once: os-stop on the one server (exactly one 202), N creates
against the quota of K (exactly K 202s, K rows), and claims of one VCPU on the small provider (never
beyond its capacity; usage equals the claims that succeeded).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from _asgi_ctx import AsCtx

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles
from cumulo.placement.inventory import VCPU

API = "/compute/v2.1"
QUOTA = 3
CREATES = 5  # per racer
STOPS = 4  # per racer
CLAIMS = 4  # per racer
WORKER = Path(__file__).with_name("pg_race_worker.py")


def _client(app: Any, project: str, role: str) -> httpx.AsyncClient:
    ctx = RequestContext(user_id=uuid.uuid4().hex, project_id=project, roles=expand_roles([role]))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx)), base_url="http://cumulo.test")


@pytest.fixture
def race_db(scale_services: dict[str, str], pg_template: str) -> Iterator[str]:
    import _pg

    url = _pg.create_database(scale_services["database_url"], template=pg_template)
    yield url
    _pg.drop_database(scale_services["database_url"], url)


@pytest.fixture
async def main_cloud(race_db: str, tmp_path: Path) -> AsyncIterator[Any]:
    from cumulo.runtime import Cloud

    conf = conf_mod.load(env={}, state_dir=tmp_path / "main", database=race_db, host_name="race-main",
                         local_driver="fake", power_sync_interval=3600.0, port=8080)
    cloud = Cloud(conf)
    await cloud.start()
    yield cloud
    await cloud.stop()


class Racer:
    def __init__(self, url: str, state_dir: Path, host: str) -> None:
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, str(WORKER), url, str(state_dir), host],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(WORKER.parent),
        )

    async def line(self, timeout: float = 180.0) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                text = await asyncio.to_thread(self.proc.stdout.readline)
                if not text:
                    raise AssertionError(f"racer exited ({self.proc.poll()}) before answering")
                if text.startswith(("READY", "{")):
                    return text.strip()

    def send(self, job: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


async def _wait_active(client: httpx.AsyncClient, server_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        body = (await client.get(f"{API}/servers/{server_id}")).json()["server"]
        if body["status"] == "ACTIVE" and body["OS-EXT-STS:task_state"] is None:
            return
        assert body["status"] != "ERROR", body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_two_processes_race_on_one_database(main_cloud: Any, race_db: str, tmp_path: Path) -> None:
    app = main_cloud.asgi_app()
    admin = _client(app, uuid.uuid4().hex, "admin")
    resp = await admin.post("/identity/v3/projects", json={"project": {"name": "race", "domain_id": "default"}})
    assert resp.status_code == 201, resp.text
    server_project, project = uuid.uuid4().hex, resp.json()["project"]["id"]
    owner = _client(app, server_project, "member")
    resp = await admin.post("/image/v2/images", json={"name": "race", "disk_format": "raw", "container_format": "bare",
                                                      "visibility": "public"})
    image = resp.json()["id"]
    resp = await admin.put(f"/image/v2/images/{image}/file", content=b"\0" * 4096,
                            headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 204, resp.text
    resp = await owner.post(f"{API}/servers", json={"server": {"name": "target", "imageRef": image, "flavorRef": "42",
                                                              "networks": "none"}},
                            headers={"OpenStack-API-Version": "compute 2.37"})
    assert resp.status_code == 202, resp.text
    server = resp.json()["server"]["id"]
    await _wait_active(owner, server)
    resp = await admin.put(f"{API}/os-quota-sets/{project}", json={"quota_set": {"instances": QUOTA}})
    assert resp.status_code == 200, resp.text
    placement = main_cloud.services.placement
    provider = str(uuid.uuid4())
    await placement.ensure_provider(provider, "race-small", vcpus=3, memory_mb=1024, disk_gb=10, ratios={VCPU: 1.0})
    inv = (await placement.get_inventory(provider))[VCPU]
    capacity = int((inv.total - inv.reserved) * inv.allocation_ratio)
    assert 0 < capacity < 2 * CLAIMS

    racers: list[Racer] = []
    try:
        for name in ("race-a", "race-b"):  # one after the other: each cloud's start-up is its own
            racers.append(Racer(race_db, tmp_path / name, name))
            assert await racers[-1].line() == "READY"
        job = {"server": server, "server_project": server_project, "project": project, "image": image,
               "provider": provider, "stops": STOPS, "creates": CREATES, "claims": CLAIMS}
        for racer in racers:
            racer.send(job)
        results = [json.loads(await racer.line()) for racer in racers]
    finally:
        for racer in racers:
            racer.kill()

    stops = [code for r in results for code in r["stops"]]
    assert sorted(stops) == [202] + [409] * (2 * STOPS - 1), stops
    creates = [code for r in results for code in r["creates"]]
    assert creates.count(202) == QUOTA and set(creates) <= {202, 403}, creates
    claims = [c for r in results for c in r["claims"]]
    assert set(claims) <= {"ok", "full", "conflict"}
    used = (await placement.usage(provider)).get(VCPU, 0)
    assert used == claims.count("ok") <= capacity, (claims, used)
    if "conflict" not in claims:
        assert claims.count("ok") == capacity, claims

    from cumulo.compute.models import instances

    async with main_cloud.db.read() as conn:
        rows = (await conn.execute(sa.select(sa.func.count()).where(
            instances.c.project_id == project, instances.c.deleted.is_(False)))).scalar_one()
        task = (await conn.execute(sa.select(instances.c.task_state).where(instances.c.uuid == server))).scalar_one()
    assert rows == QUOTA
    assert task == "powering-off"
