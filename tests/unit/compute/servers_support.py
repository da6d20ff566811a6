"""Shared pieces of the servers API tests (test_servers*.py): a project world and polling helpers.

The `settings` fixture here overrides the root one (import it into a test module) so that two
simulated fake hosts give room for more than a handful of servers on a small test machine.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles

API = "/compute/v2.1"
NANO = "42"  # m1.nano: 64 MB, 1 vCPU, 1 GB (bootstrap default flavors)
TINY = "1"  # m1.tiny: 512 MB, 1 vCPU, 1 GB
JSON = dict[str, Any]


def mv(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


def make_ctx(project_id: str, *roles: str, user_id: str | None = None) -> RequestContext:
    return RequestContext(user_id=user_id or uuid.uuid4().hex, project_id=project_id, roles=expand_roles(list(roles)))


@pytest.fixture
def settings(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(
        env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0, fake_hosts=2, local_driver="fake"
    )


@dataclass
class World:
    project_id: str
    member: httpx.AsyncClient
    reader: httpx.AsyncClient
    admin: httpx.AsyncClient  # an admin scoped to another project
    other: httpx.AsyncClient  # a member of another project
    image_id: str
    as_ctx: Callable[[RequestContext], httpx.AsyncClient]
    cloud: Any

    async def create(self, name: str = "vm", *, flavor: str = NANO, version: str | None = None, **extra: Any) -> JSON:
        body = {"server": {"name": name, "imageRef": self.image_id, "flavorRef": flavor, **extra}}
        resp = await self.member.post(f"{API}/servers", json=body, headers=mv(version) if version else {})
        assert resp.status_code == 202, resp.text
        server: JSON = resp.json()["server"]
        return server

    async def active(self, name: str = "vm", **extra: Any) -> JSON:
        server = await self.create(name, **extra)
        return await wait_status(self.member, server["id"], "ACTIVE")

    async def action(self, server_id: str, body: JSON, client: httpx.AsyncClient | None = None, version: str | None = None) -> httpx.Response:
        return await (client or self.member).post(
            f"{API}/servers/{server_id}/action", json=body, headers=mv(version) if version else {}
        )


async def upload_image(client: httpx.AsyncClient, name: str = "srv-image", **props: Any) -> str:
    resp = await client.post("/image/v2/images", json={"name": name, "disk_format": "raw", "container_format": "bare", **props})
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    resp = await client.put(
        f"/image/v2/images/{image_id}/file", content=b"\0" * 4096, headers={"Content-Type": "application/octet-stream"}
    )
    assert resp.status_code == 204, resp.text
    return image_id


async def make_world(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> World:
    project = uuid.uuid4().hex
    member = as_ctx(make_ctx(project, "member"))
    world = World(
        project_id=project,
        member=member,
        reader=as_ctx(make_ctx(project, "reader")),
        admin=as_ctx(make_ctx(uuid.uuid4().hex, "admin")),
        other=as_ctx(make_ctx(uuid.uuid4().hex, "member")),
        image_id=await upload_image(member),
        as_ctx=as_ctx,
        cloud=cloud,
    )
    return world


async def wait_status(client: httpx.AsyncClient, server_id: str, status: str, timeout: float = 20.0, version: str | None = None) -> JSON:
    """Poll GET /servers/{id} until `status` (ERROR fails fast unless it is what we wait for)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    body: JSON = {}
    while loop.time() < deadline:
        resp = await client.get(f"{API}/servers/{server_id}", headers=mv(version) if version else {})
        assert resp.status_code == 200, resp.text
        body = resp.json()["server"]
        if body["status"] == status and body.get("OS-EXT-STS:task_state") is None:
            return body
        if body["status"] == "ERROR" and status != "ERROR":
            raise AssertionError(f"server went to ERROR: {body.get('fault')}")
        await asyncio.sleep(0.02)
    raise AssertionError(f"server {server_id} not {status} after {timeout}s: {body.get('status')} {body.get('OS-EXT-STS:task_state')}")


async def wait_gone(client: httpx.AsyncClient, server_id: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        resp = await client.get(f"{API}/servers/{server_id}")
        if resp.status_code == 404:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"server {server_id} still there after {timeout}s")


def fault_of(resp: httpx.Response) -> tuple[str, int, str]:
    """(fault name, code, message) of a Nova fault body."""
    body = resp.json()
    assert len(body) == 1, body
    name, inner = next(iter(body.items()))
    assert set(inner) == {"code", "message"}, inner
    return name, inner["code"], inner["message"]


async def make_network(client: httpx.AsyncClient, name: str = "net", cidr: str = "10.9.0.0/24", **extra: Any) -> JSON:
    """A network with one IPv4 subnet through the Neutron API, as the client's project: {"network", "subnet"}."""
    resp = await client.post("/networking/v2.0/networks", json={"network": {"name": name, **extra}})
    assert resp.status_code == 201, resp.text
    net: JSON = resp.json()["network"]
    resp = await client.post("/networking/v2.0/subnets",
                             json={"subnet": {"network_id": net["id"], "cidr": cidr, "ip_version": 4}})
    assert resp.status_code == 201, resp.text
    return {"network": net, "subnet": resp.json()["subnet"]}
