"""Nova's image proxy (/images up to 2.35) and image metadata (up to 2.38): view shape, filters,
paging, scope, delete, metadata CRUD and bad input, answered from the image service in process."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_world,
    mv,
    settings,
    upload_image,
    wait_status,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for `reference`
from reference import check, nova  # noqa: E402

OLD = mv("2.35")
META = mv("2.38")
DETAIL_KEYS = {"id", "name", "minRam", "minDisk", "metadata", "created", "updated", "status", "progress",
               "OS-EXT-IMG-SIZE:size", "links"}


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def _snapshot(world: World, sid: str, name: str) -> str:
    resp = await world.action(sid, {"createImage": {"name": name}}, version="2.45")
    assert resp.status_code == 202, resp.text
    image_id: str = resp.json()["image_id"]
    for _ in range(500):
        if (await world.member.get(f"{API}/images/{image_id}", headers=OLD)).json()["image"]["status"] == "ACTIVE":
            await wait_status(world.member, sid, "ACTIVE")
            return image_id
        await asyncio.sleep(0.02)
    raise AssertionError("snapshot never became ACTIVE")


async def test_show_shape(world: World) -> None:
    image_id = await upload_image(world.member, "shown", min_ram=64, os_distro="busybox")
    resp = await world.member.get(f"{API}/images/{image_id}", headers=OLD)
    assert resp.status_code == 200, resp.text
    image = resp.json()["image"]
    assert set(image) == DETAIL_KEYS
    assert image["id"] == image_id and image["name"] == "shown" and image["status"] == "ACTIVE"
    assert image["progress"] == 100 and image["minRam"] == 64 and image["minDisk"] == 0
    assert image["OS-EXT-IMG-SIZE:size"] == 4096 and image["metadata"] == {"os_distro": "busybox"}
    assert image["created"].endswith("Z") and image["updated"].endswith("Z")
    rels = [(link["rel"], link["href"]) for link in image["links"]]
    assert rels[0] == ("self", f"http://cumulo.test/compute/v2.1/images/{image_id}")
    assert rels[1] == ("bookmark", f"http://cumulo.test/compute/images/{image_id}")
    assert rels[2] == ("alternate", f"http://cumulo.test/image/images/{image_id}")
    assert image["links"][2]["type"] == "application/vnd.openstack.image"
    # Default microversion (2.1) works too; 2.36 and later: the proxy is gone.
    assert (await world.member.get(f"{API}/images/{image_id}")).status_code == 200
    resp = await world.member.get(f"{API}/images/{image_id}", headers=mv("2.36"))
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"
    assert (await world.member.get(f"{API}/images", headers=mv("2.79"))).status_code == 404


async def test_queued_image_is_saving(world: World) -> None:
    resp = await world.member.post("/image/v2/images", json={"name": "empty", "disk_format": "raw",
                                                             "container_format": "bare"})
    image_id = resp.json()["id"]
    image = (await world.member.get(f"{API}/images/{image_id}", headers=OLD)).json()["image"]
    assert (image["status"], image["progress"], image["OS-EXT-IMG-SIZE:size"]) == ("SAVING", 25, 0)


async def test_snapshot_links_its_server_and_filters(world: World) -> None:
    one = (await world.active("one"))["id"]
    two = (await world.active("two"))["id"]
    snap1 = await _snapshot(world, one, "snap-1")
    snap2 = await _snapshot(world, two, "snap-2")
    image = (await world.member.get(f"{API}/images/{snap1}", headers=OLD)).json()["image"]
    assert set(image) == DETAIL_KEYS | {"server"}
    assert image["server"]["id"] == one
    assert [link["rel"] for link in image["server"]["links"]] == ["self", "bookmark"]
    assert image["metadata"]["image_type"] == "snapshot"

    async def ids(**params: str) -> set[str]:
        resp = await world.member.get(f"{API}/images", params=params, headers=OLD)
        assert resp.status_code == 200, resp.text
        return {i["id"] for i in resp.json()["images"]}

    assert await ids(server=one) == {snap1}
    server_links = (await world.member.get(f"{API}/servers/{two}")).json()["server"]["links"]
    for link in server_links:
        assert await ids(server=link["href"]) == {snap2}
    assert await ids(type="snapshot") == {snap1, snap2}
    assert world.image_id not in await ids(type="snapshot")
    assert world.image_id in await ids(status="ACTIVE")
    assert await ids(name="snap-2") == {snap2}
    assert await ids(**{"property-image_type": "snapshot", "server": one}) == {snap1}
    assert await ids(status="SAVING") == set()


async def test_list_index_detail_and_paging(world: World) -> None:
    made = [await upload_image(world.member, f"page-{i}") for i in range(3)]
    resp = await world.member.get(f"{API}/images", headers=OLD)
    images = resp.json()["images"]
    assert all(set(i) == {"id", "name", "links"} for i in images)
    assert set(made) <= {i["id"] for i in images} and "images_links" not in resp.json()
    detail = (await world.member.get(f"{API}/images/detail", headers=OLD)).json()["images"]
    assert all(set(i) >= DETAIL_KEYS for i in detail)
    # limit and marker, with Nova's next link.
    resp = await world.member.get(f"{API}/images/detail", params={"limit": "2"}, headers=OLD)
    body = resp.json()
    assert len(body["images"]) == 2
    nxt = body["images_links"][0]
    assert nxt["rel"] == "next" and f"marker={body['images'][-1]['id']}" in nxt["href"]
    assert "/v2.1/images/detail?" in nxt["href"]
    rest = (await world.member.get(f"{API}/images/detail", params={"marker": body["images"][-1]["id"]},
                                   headers=OLD)).json()["images"]
    seen = [i["id"] for i in body["images"]] + [i["id"] for i in rest]
    assert len(seen) == len(set(seen)) and set(made) <= set(seen)
    # changes-since: only what changed at or after the time.
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await world.member.get(f"{API}/images", params={"changes-since": future}, headers=OLD)).json()["images"] == []
    created = (await world.member.get(f"{API}/images/{made[0]}", headers=OLD)).json()["image"]["created"]
    since = (await world.member.get(f"{API}/images", params={"changes-since": created}, headers=OLD)).json()
    assert made[0] in {i["id"] for i in since["images"]}


async def test_list_bad_input(world: World) -> None:
    for params in ({"limit": "-1"}, {"limit": "x"}, {"limit": "0"}, {"marker": "nope"},
                   {"changes-since": "yesterday"}):
        resp = await world.member.get(f"{API}/images", params=params, headers=OLD)
        assert resp.status_code == 400, (params, resp.text)
        assert fault_of(resp)[0] == "badRequest"
    # Unknown parameters are ignored, as Nova ignores them.
    assert (await world.member.get(f"{API}/images", params={"frob": "1"}, headers=OLD)).status_code == 200


async def test_scope_and_delete(world: World) -> None:
    mine = await upload_image(world.member, "mine")
    resp = await world.other.get(f"{API}/images/{mine}", headers=OLD)
    assert resp.status_code == 404 and fault_of(resp) == ("itemNotFound", 404, "Image not found.")
    assert mine not in {i["id"] for i in (await world.other.get(f"{API}/images", headers=OLD)).json()["images"]}
    assert (await world.other.delete(f"{API}/images/{mine}", headers=OLD)).status_code == 404
    assert (await world.reader.delete(f"{API}/images/{mine}", headers=OLD)).status_code == 403
    for bad in ("-1", "nothex-0000", "9f3c3c8a-0a52-4f57-9f7e-6bd0f4b9c37j", mine + "1"):
        assert (await world.member.delete(f"{API}/images/{bad}", headers=OLD)).status_code == 404
    resp = await world.member.delete(f"{API}/images/", headers=OLD)  # a blank id: 404, not a redirect
    assert resp.status_code == 404 and fault_of(resp) == ("itemNotFound", 404, "Image not found.")
    assert (await world.member.delete(f"{API}/images/{mine}", headers=mv("2.36"))).status_code == 404
    resp = await world.member.delete(f"{API}/images/{mine}", headers=OLD)
    assert resp.status_code == 204 and resp.content == b""
    assert (await world.member.get(f"{API}/images/{mine}", headers=OLD)).status_code == 404
    assert (await world.member.get(f"/image/v2/images/{mine}")).status_code == 404
    # A public image of another project: visible, but not deletable by this member.
    public = await upload_image(world.admin, "shared-pub", visibility="public")
    assert (await world.member.get(f"{API}/images/{public}", headers=OLD)).status_code == 200
    resp = await world.member.delete(f"{API}/images/{public}", headers=OLD)
    assert resp.status_code == 403 and fault_of(resp)[2] == "You are not allowed to delete the image."


async def test_metadata_crud(world: World) -> None:
    image_id = await upload_image(world.member, "meta")
    url = f"{API}/images/{image_id}/metadata"
    resp = await world.member.put(url, json={"metadata": {"os_version": "value1", "os_distro": "value2"}}, headers=META)
    assert resp.status_code == 200 and resp.json() == {"metadata": {"os_version": "value1", "os_distro": "value2"}}
    assert (await world.member.get(url, headers=META)).json() == {"metadata": {"os_version": "value1", "os_distro": "value2"}}
    resp = await world.member.post(url, json={"metadata": {"os_version": "alt1", "architecture": "value3"}}, headers=META)
    assert resp.json() == {"metadata": {"os_version": "alt1", "os_distro": "value2", "architecture": "value3"}}
    resp = await world.member.put(url, json={"metadata": {"os_version": "value2", "architecture": "value3"}}, headers=META)
    assert (await world.member.get(url, headers=META)).json() == {"metadata": {"os_version": "value2", "architecture": "value3"}}
    item = f"{url}/os_version"
    assert (await world.member.get(item, headers=META)).json() == {"meta": {"os_version": "value2"}}
    resp = await world.member.put(item, json={"meta": {"os_version": "alt"}}, headers=META)
    assert resp.status_code == 200 and resp.json() == {"meta": {"os_version": "alt"}}
    assert (await world.member.get(item, headers=META)).json() == {"meta": {"os_version": "alt"}}
    resp = await world.member.delete(item, headers=META)
    assert resp.status_code == 204
    assert (await world.member.get(url, headers=META)).json() == {"metadata": {"architecture": "value3"}}
    assert (await world.member.get(item, headers=META)).status_code == 404
    assert (await world.member.delete(item, headers=META)).status_code == 404
    # The same properties through Glance.
    assert (await world.member.get(f"/image/v2/images/{image_id}")).json()["architecture"] == "value3"
    # Gone from 2.39.
    assert (await world.member.get(url, headers=mv("2.39"))).status_code == 404


async def test_metadata_bad_input_and_scope(world: World) -> None:
    image_id = await upload_image(world.member, "meta-bad")
    url = f"{API}/images/{image_id}/metadata"
    for body in ({}, {"metadata": {"k": 1}}, {"metadata": {"": "v"}}, {"metadata": "x"}, {"metadata": {}, "x": 1}):
        resp = await world.member.post(url, json=body, headers=META)
        assert resp.status_code == 400, (body, resp.text)
    item = f"{url}/k"
    for body in ({"meta": {"other": "v"}}, {"meta": {"k": "v", "j": "w"}}, {"meta": {}}, {"metadata": {"k": "v"}}):
        resp = await world.member.put(item, json=body, headers=META)
        assert resp.status_code == 400, (body, resp.text)
    assert fault_of(await world.member.put(item, json={"meta": {"other": "v"}}, headers=META))[2] == "Request body and URI mismatch"
    for reserved in ("status", "name", "os_glance_x", "deleted"):
        resp = await world.member.post(url, json={"metadata": {reserved: "v"}}, headers=META)
        assert resp.status_code == 403, (reserved, resp.text)
    async with world.cloud.db.write() as conn:
        await world.cloud.services.compute.quotas.set_limits(conn, world.project_id, {"metadata_items": 1})
    resp = await world.member.put(url, json={"metadata": {"a": "1", "b": "2"}}, headers=META)
    assert resp.status_code == 403 and fault_of(resp)[2] == "Image metadata limit exceeded"
    # Another project: 404; a reader: 403; a missing image: 404.
    assert (await world.other.get(url, headers=META)).status_code == 404
    assert (await world.other.post(url, json={"metadata": {"a": "1"}}, headers=META)).status_code == 404
    assert (await world.reader.post(url, json={"metadata": {"a": "1"}}, headers=META)).status_code == 403
    missing = f"{API}/images/2d6c1f1b-8a2d-4f4e-9d51-2c4e3b9d7a10/metadata"
    assert (await world.member.get(missing, headers=META)).status_code == 404
    assert (await world.member.put(f"{missing}/k", json={"meta": {"k": "v"}}, headers=META)).status_code == 404
    assert (await world.member.delete(f"{missing}/k", headers=META)).status_code == 404


async def test_shapes_match_the_reference(world: World) -> None:
    sid = (await world.active())["id"]
    snap = await _snapshot(world, sid, "shape-snap")
    await upload_image(world.member, "shape-plain", os_distro="x")
    for version in ("2.1", "2.35"):
        h = mv(version)
        check((await world.member.get(f"{API}/images/{snap}", headers=h)).json(), nova.schema("image", version), "show")
        check((await world.member.get(f"{API}/images", headers=h)).json(), nova.schema("images", version), "index")
        body = (await world.member.get(f"{API}/images/detail", params={"limit": "1"}, headers=h)).json()
        check(body, nova.schema("images_detail", version), "detail")
        meta = (await world.member.get(f"{API}/images/{snap}/metadata", headers=h)).json()
        check(meta, nova.schema("image_metadata", version), "metadata")
        item = (await world.member.get(f"{API}/images/{snap}/metadata/image_type", headers=h)).json()
        check(item, nova.schema("image_metadata_item", version), "metadata item")
    body = (await world.member.get(f"{API}/servers/{sid}/os-server-password", headers=mv("2.79"))).json()
    check(body, nova.schema("server_password", "2.79"), "os-server-password")


async def test_glance_image_tasks_list(world: World) -> None:
    """Glance's GET /v2/images/{id}/tasks (Tempest waits on it after snapshots and backups)."""
    sid = (await world.active())["id"]
    snap = await _snapshot(world, sid, "tasks-snap")
    resp = await world.member.get(f"/image/v2/images/{snap}/tasks")
    assert resp.status_code == 200 and resp.json() == {"tasks": []}
    assert (await world.other.get(f"/image/v2/images/{snap}/tasks")).status_code == 404
    assert (await world.member.get("/image/v2/images/2d6c1f1b-8a2d-4f4e-9d51-2c4e3b9d7a10/tasks")).status_code == 404
