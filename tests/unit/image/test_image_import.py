"""Interoperable import, glance-direct: stage, import, the image's task; refusals in Glance's words."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cumulo.context import RequestContext
from cumulo.image.models import image_tasks, images

Client = Callable[[RequestContext], httpx.AsyncClient]
OCTET = {"Content-Type": "application/octet-stream"}
DATA = b"cumulo-glance-direct" * 100


def _fault(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"message", "code", "title"}
    return str(r.json()["message"])


@pytest.fixture
def member(client: Client, ctx: Callable[..., RequestContext]) -> httpx.AsyncClient:
    return client(ctx("p1"))


async def _image(c: httpx.AsyncClient, **extra: Any) -> str:
    r = await c.post("/v2/images", json={"name": "imp", "disk_format": "raw", "container_format": "bare", **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_info_import_offers_glance_direct(member: httpx.AsyncClient) -> None:
    body = (await member.get("/v2/info/import")).json()
    assert body["import-methods"]["value"] == ["glance-direct"]
    r = await member.post("/v2/images", json={"name": "x"})
    assert r.headers["openstack-image-import-methods"] == "glance-direct"  # openstacksdk reads it


async def test_stage_then_import_activates_and_records_the_task(member: httpx.AsyncClient) -> None:
    image_id = await _image(member)
    assert (await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)).status_code == 204
    staged = (await member.get(f"/v2/images/{image_id}")).json()
    assert staged["status"] == "uploading"
    assert (await member.get(f"/v2/images/{image_id}/file")).status_code == 204  # not the image's data yet
    r = await member.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202, r.text
    request_id = r.headers.get("x-openstack-request-id")
    image = (await member.get(f"/v2/images/{image_id}")).json()
    assert image["status"] == "active" and image["size"] == len(DATA)
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()  # noqa: S324 - Glance's checksum is md5
    got = await member.get(f"/v2/images/{image_id}/file")
    assert got.status_code == 200 and got.content == DATA
    tasks = (await member.get(f"/v2/images/{image_id}/tasks")).json()["tasks"]
    assert len(tasks) == 1
    task = tasks[0]
    assert task["status"] == "success" and task["type"] == "api_image_import"
    assert task["input"]["import_req"]["method"]["name"] == "glance-direct"
    assert task["image_id"] == image_id and task["owner"] == "p1" and task["user_id"] == "user-p1"
    if request_id is not None:  # the cloud's request-id middleware sits outside this test app
        assert task["request_id"] == request_id


@pytest.mark.parametrize("extra", [{"all_stores": True}, {"stores": ["any"]}, {"all_stores_must_succeed": False}])
async def test_store_choices_are_ignored_on_one_store(member: httpx.AsyncClient, extra: dict[str, Any]) -> None:
    image_id = await _image(member)
    await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)
    r = await member.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}, **extra})
    assert r.status_code == 202, r.text
    assert (await member.get(f"/v2/images/{image_id}")).json()["status"] == "active"


async def test_import_needs_a_staged_image(member: httpx.AsyncClient) -> None:
    image_id = await _image(member)
    body = {"method": {"name": "glance-direct"}}
    assert "staged" in _fault(await member.post(f"/v2/images/{image_id}/import", json=body), 409)
    await member.put(f"/v2/images/{image_id}/file", content=DATA, headers=OCTET)
    assert "active" in _fault(await member.post(f"/v2/images/{image_id}/import", json=body), 409)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"method": "glance-direct"}, 400),
        ({"method": {"name": "web-download", "uri": "http://example.invalid/x"}}, 400),
        ({"method": {"name": "copy-image"}, "all_stores": True}, 400),
        ({"method": {"name": "nope"}}, 400),
    ],
)
async def test_bad_import_requests(member: httpx.AsyncClient, body: Any, status: int) -> None:
    image_id = await _image(member)
    await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)
    _fault(await member.post(f"/v2/images/{image_id}/import", json=body), status)
    assert (await member.get(f"/v2/images/{image_id}")).json()["status"] == "uploading"


async def test_stage_refusals(member: httpx.AsyncClient, client: Client, ctx: Callable[..., RequestContext]) -> None:
    image_id = await _image(member)
    _fault(await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers={"Content-Type": "text/plain"}), 415)
    _fault(await client(ctx("p2")).put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET), 404)
    _fault(await client(ctx("p1", "reader")).put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET), 403)
    assert (await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)).status_code == 204
    _fault(await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET), 409)  # not queued now
    too_big = {**OCTET, "Content-Length": str(5 << 20)}
    other = await _image(member)
    _fault(await member.put(f"/v2/images/{other}/stage", content=b"x", headers=too_big), 413)


async def test_deleting_a_staged_image_drops_it(member: httpx.AsyncClient) -> None:
    image_id = await _image(member)
    await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)
    assert (await member.delete(f"/v2/images/{image_id}")).status_code == 204
    _fault(await member.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}}), 404)


async def test_the_admin_sees_import_tasks_in_the_tasks_api(
    member: httpx.AsyncClient, client: Client, ctx: Callable[..., RequestContext]
) -> None:
    image_id = await _image(member)
    await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)
    await member.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    admin = client(ctx("admin-project", "admin"))
    listed = (await admin.get("/v2/tasks")).json()["tasks"]
    assert len(listed) == 1 and listed[0]["self"] == f"/v2/tasks/{listed[0]['id']}"
    assert "input" not in listed[0]
    shown = (await admin.get(f"/v2/tasks/{listed[0]['id']}")).json()
    assert shown["status"] == "success" and shown["input"]["image_id"] == image_id
    assert (await admin.get("/v2/tasks", params={"status": "failure"})).json()["tasks"] == []


async def test_a_restart_mid_import_puts_the_image_back_to_uploading(member: httpx.AsyncClient, svc: Any) -> None:
    image_id = await _image(member)
    await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)
    async with svc.db.write() as conn:  # as if the process died between the import's two steps
        await conn.execute(sa.update(images).where(images.c.id == image_id).values(status="importing"))
        await conn.execute(sa.insert(image_tasks).values(
            id="00000000-0000-4000-8000-000000000001", type="api_image_import", status="processing", owner="p1",
            image_id=image_id, message="", created_at=sa.func.now(), updated_at=sa.func.now()))
    await svc.bootstrap()
    assert (await member.get(f"/v2/images/{image_id}")).json()["status"] == "uploading"
    assert (await member.get(f"/v2/images/{image_id}/tasks")).json()["tasks"][0]["status"] == "failure"
    r = await member.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202 and (await member.get(f"/v2/images/{image_id}")).json()["status"] == "active"


async def test_concurrent_imports_make_one_task(member: httpx.AsyncClient) -> None:
    image_id = await _image(member)
    await member.put(f"/v2/images/{image_id}/stage", content=DATA, headers=OCTET)
    body = {"method": {"name": "glance-direct"}}
    results = await asyncio.gather(*(member.post(f"/v2/images/{image_id}/import", json=body) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [202, 409, 409, 409]
    assert len((await member.get(f"/v2/images/{image_id}/tasks")).json()["tasks"]) == 1
