"""Bad input gets Glance's 4xx answers in the JSON fault shape; discovery and schema documents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "n" * 256}, 400),
        ({"disk_format": "floppy"}, 400),
        ({"container_format": "crate"}, 400),
        ({"visibility": "everyone"}, 400),
        ({"min_ram": -1}, 400),
        ({"min_disk": "ten"}, 400),
        ({"protected": "yes"}, 400),
        ({"tags": "not-a-list"}, 400),
        ({"tags": ["t" * 256]}, 400),
        ({"id": "not-a-uuid"}, 400),
        ({"custom": 5}, 400),  # extra properties are strings
        ({"k" * 256: "v"}, 400),
        ({"status": "active"}, 403),  # read-only attributes
        ({"checksum": "abc"}, 403),
        ({"self": "/x"}, 403),
        ({"os_glance_import": "x"}, 403),  # reserved namespace
        ({"location": "http://x"}, 403),
        ({"tags": [f"t{i}" for i in range(129)]}, 413),
        ([], 400),
        ("name", 400),
    ],
)
async def test_create_rejects(alice: httpx.AsyncClient, body: Any, status: int) -> None:
    r = await alice.post("/v2/images", json=body)
    assert r.status_code == status, r.text
    fault = r.json()
    assert set(fault) == {"code", "title", "message"}
    assert fault["code"].startswith(str(status)) and fault["message"]
    assert (await alice.get("/v2/images")).json()["images"] == []


async def test_malformed_json_and_unknown_routes(alice: httpx.AsyncClient) -> None:
    r = await alice.post("/v2/images", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["title"] == "Bad Request"
    r = await alice.get("/v2/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "404 Not Found"
    r = await alice.post("/v2/images/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 405


@pytest.mark.parametrize("image_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "1" * 300])
async def test_unknown_or_malformed_ids_are_404(alice: httpx.AsyncClient, image_id: str) -> None:
    for method, path in (
        ("GET", ""), ("DELETE", ""), ("GET", "/file"), ("PUT", "/tags/x"), ("DELETE", "/tags/x"),
        ("POST", "/actions/deactivate"), ("GET", "/members"),
    ):
        r = await alice.request(method, f"/v2/images/{image_id}{path}")
        assert r.status_code == 404, (method, path, r.status_code)
    r = await alice.put(
        f"/v2/images/{image_id}/file", content=b"x", headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 404


async def test_create_with_everything(alice: httpx.AsyncClient) -> None:
    body = {
        "id": "b2173dd3-7ad6-4362-baa6-a68bce3565cb", "name": "Ubuntu", "disk_format": "qcow2",
        "container_format": "bare", "visibility": "private", "protected": False, "os_hidden": False,
        "min_ram": 512, "min_disk": 1, "tags": ["ubuntu", "lts"], "os_distro": "ubuntu", "name_x": "",
    }
    r = await alice.post("/v2/images", json=body)
    assert r.status_code == 201
    image = r.json()
    for key, value in body.items():
        assert image[key] == value, key
    assert image["status"] == "queued" and image["size"] is None and image["virtual_size"] is None
    r = await alice.post("/v2/images", json=body)
    assert r.status_code == 409


async def test_versions_document(alice: httpx.AsyncClient) -> None:
    r = await alice.get("/")
    assert r.status_code == 300
    versions = r.json()["versions"]
    current = [v for v in versions if v["status"] == "CURRENT"]
    assert [v["id"] for v in current] == ["v2.17"]
    assert {v["status"] for v in versions} == {"CURRENT", "SUPPORTED"}
    assert all(v["links"] == [{"rel": "self", "href": "http://cumulo.test/image/v2/"}] for v in versions)
    assert "v2.0" in [v["id"] for v in versions]
    r = await alice.get("/versions")
    assert r.status_code == 200 and r.json()["versions"] == versions


async def test_schemas(alice: httpx.AsyncClient) -> None:
    image = (await alice.get("/v2/schemas/image")).json()
    assert image["name"] == "image"
    assert image["additionalProperties"] == {"type": "string"}
    assert "raw" in image["properties"]["disk_format"]["enum"]
    images = (await alice.get("/v2/schemas/images")).json()
    assert images["properties"]["images"]["items"]["name"] == "image"
    assert (await alice.get("/v2/schemas/member")).json()["name"] == "member"
    assert (await alice.get("/v2/schemas/members")).json()["name"] == "members"


async def test_responses_validate_against_served_schema(alice: httpx.AsyncClient, make_image: Any) -> None:
    import jsonschema

    schema = (await alice.get("/v2/schemas/image")).json()
    schema.pop("links")
    await make_image(alice, b"abc", name="v", tags=["t"], hw_disk_bus="virtio")
    await make_image(alice, name=None)
    for image in (await alice.get("/v2/images")).json()["images"]:
        jsonschema.validate(image, schema)
