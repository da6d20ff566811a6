"""One racer of tests/contract/test_pg_concurrency.py: a separate OS process running its own
in-process cloud (fake driver, its own compute host and state dir) on the shared PostgreSQL database.

    python pg_race_worker.py DATABASE_URL STATE_DIR HOST   (then a JSON job on stdin)

It prints READY once its cloud has started, waits for one line of JSON on stdin (the job: the server
to stop, the project and image to create in, the provider to claim on and how many of each), runs
every request of the job at once and prints one line of JSON with the outcome of each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles
from cumulo.errors import Conflict
from cumulo.placement.inventory import VCPU
from cumulo.runtime import Cloud

API = "/compute/v2.1"


class _As:
    def __init__(self, app: Any, ctx: RequestContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "cumulo.context": self.ctx}
        await self.app(scope, receive, send)


def client(app: Any, project: str, role: str) -> httpx.AsyncClient:
    ctx = RequestContext(user_id=uuid.uuid4().hex, project_id=project, roles=expand_roles([role]))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_As(app, ctx)), base_url="http://cumulo.test")


async def main(url: str, state_dir: str, host: str) -> None:
    conf = conf_mod.load(env={}, state_dir=Path(state_dir), database=url, host_name=host, local_driver="fake",
                         power_sync_interval=3600.0, port=8080)
    cloud = Cloud(conf)
    await cloud.start()
    try:
        print("READY", flush=True)
        job = json.loads(await asyncio.to_thread(sys.stdin.readline))
        app = cloud.asgi_app()
        owner = client(app, job["server_project"], "member")
        member = client(app, job["project"], "member")

        async def stop() -> int:
            resp = await owner.post(f"{API}/servers/{job['server']}/action", json={"os-stop": None})
            return resp.status_code

        async def create(i: int) -> int:
            body = {"server": {"name": f"{host}-{i}", "imageRef": job["image"], "flavorRef": "42", "networks": "none"}}
            resp = await member.post(f"{API}/servers", json=body, headers={"OpenStack-API-Version": "compute 2.37"})
            return resp.status_code

        async def claim(i: int) -> str:
            try:
                got = await cloud.services.placement.claim(f"{host}-claim-{i}", job["provider"], {VCPU: 1})
            except Conflict:  # lost the generation race every attempt: refused, never half-done
                return "conflict"
            return "ok" if got else "full"

        stops, creates, claims = await asyncio.gather(
            asyncio.gather(*(stop() for _ in range(job["stops"]))),
            asyncio.gather(*(create(i) for i in range(job["creates"]))),
            asyncio.gather(*(claim(i) for i in range(job["claims"]))),
        )
        print(json.dumps({"stops": stops, "creates": creates, "claims": claims}), flush=True)
    finally:
        await cloud.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
