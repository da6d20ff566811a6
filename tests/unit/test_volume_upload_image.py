"""Upload to image through the whole cloud (the runtime's image adapter, the real volume worker on a
file store): Cinder 3.1's visibility and protected land on the new image; before 3.1 they are
ignored (private, unprotected); a public upload needs an admin (Cinder's upload_public policy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fuzz_support import World, assert_fault, start_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMG = "/image/v2/images"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("vol-upload")):
        yield w


def mv(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"volume {version}"}


async def _until(client: httpx.AsyncClient, url: str, key: str | None, status: str) -> dict[str, Any]:
    for _ in range(500):
        r = await client.get(url, headers=mv("3.70"))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()[key] if key else r.json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never {status}: {body}")


async def _volume(w: World, client: httpx.AsyncClient, project: str) -> str:
    r = await client.post(f"/volume/v3/{project}/volumes", json={"volume": {"size": 1, "name": "up"}}, headers=mv("3.70"))
    assert r.status_code == 202, r.text
    vid: str = r.json()["volume"]["id"]
    await _until(client, f"/volume/v3/{project}/volumes/{vid}", "volume", "available")
    return vid


async def _upload(w: World, client: httpx.AsyncClient, project: str, vid: str, version: str,
                  **params: Any) -> httpx.Response:
    body = {"os-volume_upload_image": {"image_name": "up-img", "disk_format": "qcow2", **params}}
    return await client.post(f"/volume/v3/{project}/volumes/{vid}/action", json=body, headers=mv(version))


@pytest.mark.parametrize(("version", "params", "visibility", "protected"), [
    ("3.1", {"visibility": "shared", "protected": True}, "shared", True),
    ("3.70", {"visibility": "community"}, "community", False),
    ("3.70", {}, "private", False),
    ("3.0", {"visibility": "community", "protected": True}, "private", False),  # ignored before 3.1
])
async def test_member_upload_applies_visibility_and_protected(world: World, version: str, params: dict[str, Any],
                                                              visibility: str, protected: bool) -> None:
    w, m = world, world.member
    vid = await _volume(w, m, w.project)
    r = await _upload(w, m, w.project, vid, version, **params)
    assert r.status_code == 202, r.text
    out = r.json()["os-volume_upload_image"]
    assert (out["visibility"], out["protected"]) == (visibility, protected), out
    image = await _until(m, f"{IMG}/{out['image_id']}", None, "active")
    assert (image["visibility"], image["protected"], image["owner"]) == (visibility, protected, w.project), image
    await _until(m, f"/volume/v3/{w.project}/volumes/{vid}", "volume", "available")
    if protected:  # Glance keeps a protected image until it is unprotected
        assert_fault(await m.delete(f"{IMG}/{image['id']}"), 403)
        r = await m.patch(f"{IMG}/{image['id']}", json=[{"op": "replace", "path": "/protected", "value": False}],
                          headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
        assert r.status_code == 200, r.text
    assert (await m.delete(f"{IMG}/{image['id']}")).status_code == 204


async def test_public_upload_needs_an_admin(world: World) -> None:
    w, m = world, world.member
    vid = await _volume(w, m, w.project)
    before = {i["id"] for i in (await m.get(IMG)).json()["images"]}
    assert_fault(await _upload(w, m, w.project, vid, "3.1", visibility="public"), 403)
    assert {i["id"] for i in (await m.get(IMG)).json()["images"]} == before  # no image was made
    r = await m.get(f"/volume/v3/{w.project}/volumes/{vid}", headers=mv("3.70"))
    assert r.json()["volume"]["status"] == "available"
    # before 3.1 the field is ignored, so the same request makes a private image
    r = await _upload(w, m, w.project, vid, "3.0", visibility="public")
    assert r.status_code == 202, r.text
    image = await _until(m, f"{IMG}/{r.json()['os-volume_upload_image']['image_id']}", None, "active")
    assert image["visibility"] == "private"
    # an admin may publish its own volume
    a = w.admin
    avid = await _volume(w, a, w.admin_project)
    r = await _upload(w, a, w.admin_project, avid, "3.1", visibility="public", protected=False)
    assert r.status_code == 202, r.text
    image = await _until(a, f"{IMG}/{r.json()['os-volume_upload_image']['image_id']}", None, "active")
    assert image["visibility"] == "public"
    assert (await m.get(f"{IMG}/{image['id']}")).status_code == 200  # everyone sees it


@pytest.mark.parametrize("params", [{"visibility": "everyone"}, {"protected": "maybe"}, {"visibility": 5}])
async def test_bad_visibility_or_protected_is_400(world: World, params: dict[str, Any]) -> None:
    w, m = world, world.member
    vid = await _volume(w, m, w.project)
    assert_fault(await _upload(w, m, w.project, vid, "3.1", **params), 400)
    r = await m.get(f"/volume/v3/{w.project}/volumes/{vid}", headers=mv("3.70"))
    assert r.json()["volume"]["status"] == "available"
