"""GET /v2/images: filters, sorting, marker/limit pagination with `next` links."""

from __future__ import annotations

from typing import Any

import httpx
from _disk_images import qcow2_bytes


async def _names(c: httpx.AsyncClient, query: str = "") -> list[str]:
    r = await c.get("/v2/images" + query)
    assert r.status_code == 200, r.text
    return [i["name"] for i in r.json()["images"]]


async def test_list_shape(alice: httpx.AsyncClient, make_image: Any) -> None:
    await make_image(alice, b"x", name="one")
    body = (await alice.get("/v2/images")).json()
    assert body["first"] == "/v2/images"
    assert body["schema"] == "/v2/schemas/images"
    assert "next" not in body
    (image,) = body["images"]
    expected = {
        "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
        "os_hash_value", "owner", "size", "virtual_size", "container_format", "disk_format",
        "created_at", "updated_at", "tags", "min_ram", "min_disk", "self", "file", "schema",
    }
    assert set(image) == expected
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert image["schema"] == "/v2/schemas/image"
    assert image["owner"] == "project-a"
    assert image["visibility"] == "shared"  # Glance's default since v2.5
    assert image["created_at"].endswith("Z")


async def test_filters(alice: httpx.AsyncClient, make_image: Any) -> None:
    await make_image(alice, b"a" * 10, name="small", tags=["x86", "cirros"], protected=True)
    await make_image(alice, qcow2_bytes(b"b" * 1000), name="big", disk_format="qcow2", tags=["x86"], os_distro="debian")
    await make_image(alice, name="empty", container_format="ovf")
    await make_image(alice, name="hidden", os_hidden=True)

    assert sorted(await _names(alice)) == ["big", "empty", "small"]
    assert await _names(alice, "?name=big") == ["big"]
    assert sorted(await _names(alice, '?name=in:big,"small"')) == ["big", "small"]
    assert sorted(await _names(alice, "?status=active")) == ["big", "small"]
    assert await _names(alice, "?status=queued") == ["empty"]
    assert await _names(alice, "?disk_format=qcow2") == ["big"]
    assert await _names(alice, "?container_format=ovf") == ["empty"]
    assert await _names(alice, "?size_min=100") == ["big"]
    assert await _names(alice, "?size_max=100") == ["small"]
    assert sorted(await _names(alice, "?tag=x86")) == ["big", "small"]
    assert await _names(alice, "?tag=x86&tag=cirros") == ["small"]
    assert await _names(alice, "?protected=true") == ["small"]
    assert await _names(alice, "?os_hidden=true") == ["hidden"]
    assert await _names(alice, "?os_distro=debian") == ["big"]
    assert sorted(await _names(alice, "?owner=project-a")) == ["big", "empty", "small"]
    assert await _names(alice, "?owner=project-b") == []
    assert await _names(alice, "?visibility=public") == []
    assert len(await _names(alice, "?created_at=gte:2000-01-01T00:00:00Z")) == 3
    assert await _names(alice, "?created_at=lt:2000-01-01T00:00:00Z") == []


async def test_bad_filters_are_400(alice: httpx.AsyncClient) -> None:
    for query in (
        "?limit=abc", "?limit=-1", "?sort_key=nope", "?sort_dir=sideways", "?sort=name:up",
        "?sort=name&sort_key=name", "?visibility=everyone", "?protected=maybe", "?os_hidden=2",
        "?member_status=bogus", "?size_min=big", "?name=like:x", "?created_at=gt:yesterday",
        "?marker=00000000-0000-0000-0000-000000000000", "?changes-since=2020-01-01",
    ):
        r = await alice.get("/v2/images" + query)
        assert r.status_code == 400, query
        body = r.json()
        assert body["code"] == "400 Bad Request" and body["title"] == "Bad Request" and body["message"]


async def test_sorting(alice: httpx.AsyncClient, make_image: Any) -> None:
    for name, size in (("b", 30), ("a", 10), ("c", 20)):
        await make_image(alice, b"x" * size, name=name)
    assert await _names(alice) == ["c", "a", "b"]  # default: created_at desc
    assert await _names(alice, "?sort_key=name&sort_dir=asc") == ["a", "b", "c"]
    assert await _names(alice, "?sort_key=name") == ["c", "b", "a"]
    assert await _names(alice, "?sort=size:asc") == ["a", "c", "b"]
    assert await _names(alice, "?sort=size") == ["b", "c", "a"]
    assert await _names(alice, "?sort_key=status&sort_key=name&sort_dir=asc&sort_dir=desc") == ["c", "b", "a"]


async def test_pagination_follows_next(alice: httpx.AsyncClient, make_image: Any) -> None:
    created = [(await make_image(alice, name=f"img-{i:02d}"))["id"] for i in range(7)]
    await make_image(alice, name=None)  # a null name sorts first ascending; pagination must not lose it
    seen: list[str] = []
    url = "/v2/images?limit=3&sort_key=name&sort_dir=asc"
    pages = 0
    while url:
        body = (await alice.get(url)).json()
        assert len(body["images"]) <= 3
        seen.extend(i["id"] for i in body["images"])
        assert body["first"] == "/v2/images?limit=3&sort_key=name&sort_dir=asc"
        url = body.get("next", "")
        assert not url or url.startswith("/v2/images?")
        pages += 1
    assert pages == 3
    assert len(seen) == 8 and len(set(seen)) == 8
    assert seen[1:] == created  # null name first, then by name

    # Same with a descending order and the marker given by hand.
    first = (await alice.get("/v2/images?limit=4&sort_key=name&sort_dir=desc")).json()
    marker = first["images"][-1]["id"]
    assert first["next"].endswith(f"marker={marker}")
    rest = (await alice.get(f"/v2/images?limit=10&sort_key=name&sort_dir=desc&marker={marker}")).json()
    assert [i["id"] for i in first["images"] + rest["images"]] == list(reversed(seen))
    assert "next" not in rest


async def test_limit_zero_and_max(alice: httpx.AsyncClient, make_image: Any) -> None:
    await make_image(alice, name="only")
    body = (await alice.get("/v2/images?limit=0")).json()
    assert body["images"] == [] and "next" not in body
    assert len((await alice.get("/v2/images?limit=100000")).json()["images"]) == 1
