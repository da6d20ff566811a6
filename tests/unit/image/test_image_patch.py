"""PATCH /v2/images/{id} with Glance's JSON-patch media types, and the tags sub-resource."""

from __future__ import annotations

from typing import Any

import httpx

PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


async def _patch(c: httpx.AsyncClient, image_id: str, ops: Any, headers: dict[str, str] = PATCH) -> httpx.Response:
    return await c.patch(f"/v2/images/{image_id}", json=ops, headers=headers)


async def test_replace_core_and_extra_properties(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, name="old", os_distro="cirros")
    r = await _patch(
        alice,
        image["id"],
        [
            {"op": "replace", "path": "/name", "value": "new"},
            {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
            {"op": "replace", "path": "/os_distro", "value": "debian"},
            {"op": "replace", "path": "/min_ram", "value": 512},
            {"op": "replace", "path": "/protected", "value": True},
            {"op": "replace", "path": "/tags", "value": ["a", "b", "a"]},
            {"op": "add", "path": "/a~1b", "value": "slash"},
        ],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "new" and body["min_ram"] == 512 and body["protected"] is True
    assert body["hw_disk_bus"] == "virtio" and body["os_distro"] == "debian" and body["a/b"] == "slash"
    assert body["tags"] == ["a", "b"]
    assert (await alice.get(f"/v2/images/{image['id']}")).json() == body

    r = await _patch(alice, image["id"], [{"op": "remove", "path": "/hw_disk_bus"}])
    assert r.status_code == 200
    assert "hw_disk_bus" not in r.json()


async def test_patch_errors(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, b"data", name="x")
    iid = image["id"]
    cases: list[tuple[Any, int]] = [
        ([{"op": "replace", "path": "/status", "value": "queued"}], 403),  # read-only
        ([{"op": "replace", "path": "/checksum", "value": "0"}], 403),
        ([{"op": "add", "path": "/os_glance_x", "value": "y"}], 403),  # reserved namespace
        ([{"op": "add", "path": "/deleted", "value": "y"}], 403),
        ([{"op": "remove", "path": "/name"}], 403),  # core attributes cannot be removed
        ([{"op": "replace", "path": "/disk_format", "value": "qcow2"}], 403),  # only while queued
        ([{"op": "replace", "path": "/owner", "value": "project-b"}], 403),  # only admin
        ([{"op": "replace", "path": "/visibility", "value": "public"}], 403),  # publicize is admin-only
        ([{"op": "replace", "path": "/nope", "value": "x"}], 409),  # replace needs an existing property
        ([{"op": "remove", "path": "/nope"}], 409),
        ([{"op": "add", "path": "/prop", "value": 5}], 400),  # extra properties are strings
        ([{"op": "replace", "path": "/min_ram", "value": -1}], 400),
        ([{"op": "replace", "path": "/name", "value": "n" * 256}], 400),
        ([{"op": "replace", "path": "/visibility", "value": "everyone"}], 400),
        ([{"op": "move", "path": "/name", "value": "x"}], 400),
        ([{"op": "replace", "path": "name", "value": "x"}], 400),
        ([{"op": "replace", "path": "/name"}], 400),
        ([{"op": "replace", "path": "/tags/0", "value": "x"}], 400),
        ({"op": "replace", "path": "/name", "value": "x"}, 400),
        (["replace"], 400),
    ]
    for ops, status in cases:
        r = await _patch(alice, iid, ops)
        assert r.status_code == status, (ops, r.status_code, r.text)
    # Nothing above changed the image, not even partially.
    after = (await alice.get(f"/v2/images/{iid}")).json()
    assert after["name"] == "x" and after["updated_at"] == image["updated_at"]


async def test_patch_media_type(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, name="x")
    r = await _patch(alice, image["id"], [{"op": "replace", "path": "/name", "value": "y"}], {"Content-Type": "application/json"})
    assert r.status_code == 415
    assert "application/openstack-images-v2.1-json-patch" in r.headers["accept-patch"]
    # The deprecated draft-4 media type is still understood.
    r = await _patch(
        alice, image["id"], [{"replace": "/name", "value": "y"}],
        {"Content-Type": "application/openstack-images-v2.0-json-patch"},
    )
    assert r.status_code == 200 and r.json()["name"] == "y"


async def test_disk_format_replace_while_queued(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice)
    r = await _patch(alice, image["id"], [{"op": "replace", "path": "/disk_format", "value": "qcow2"}])
    assert r.status_code == 200 and r.json()["disk_format"] == "qcow2"


async def test_tags_api(alice: httpx.AsyncClient, bob: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, name="t")
    iid = image["id"]
    assert (await alice.put(f"/v2/images/{iid}/tags/gold")).status_code == 204
    assert (await alice.put(f"/v2/images/{iid}/tags/gold")).status_code == 204  # idempotent
    assert (await alice.put(f"/v2/images/{iid}/tags/silver")).status_code == 204
    assert (await alice.get(f"/v2/images/{iid}")).json()["tags"] == ["gold", "silver"]
    assert (await alice.delete(f"/v2/images/{iid}/tags/gold")).status_code == 204
    assert (await alice.delete(f"/v2/images/{iid}/tags/gold")).status_code == 404
    assert (await alice.get(f"/v2/images/{iid}")).json()["tags"] == ["silver"]
    assert (await alice.put(f"/v2/images/{iid}/tags/{'x' * 256}")).status_code == 400
    assert (await bob.put(f"/v2/images/{iid}/tags/evil")).status_code == 404
