"""The Cinder v3 API through its app: version discovery, microversions, volume shapes, CRUD,
lists (filters, sorting, pagination) and metadata."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from _asgi_ctx import ctx_for
from vol_support import act, fault, make_volume, show

DETAIL_KEYS_3_0 = {
    "attachments", "availability_zone", "bootable", "consistencygroup_id", "created_at", "description", "encrypted",
    "id", "links", "metadata", "multiattach", "name", "os-vol-tenant-attr:tenant_id", "replication_status", "size",
    "snapshot_id", "source_volid", "status", "updated_at", "user_id", "volume_type",
}
LATER = {"group_id", "service_uuid", "shared_targets", "volume_type_id", "consumes_quota"}
ADMIN_ONLY = {"migration_status", "os-vol-host-attr:host", "os-vol-mig-status-attr:migstat",
              "os-vol-mig-status-attr:name_id"}


async def test_version_discovery(alice: httpx.AsyncClient) -> None:
    root = httpx.AsyncClient(transport=alice._transport, base_url="http://cumulo.test/volume")
    r = await root.get("/")
    assert r.status_code == 300
    (v,) = r.json()["versions"]
    assert v["id"] == "v3.0" and v["min_version"] == "3.0" and v["version"] == "3.70" and v["status"] == "CURRENT"
    assert {"href": "http://cumulo.test/volume/v3/", "rel": "self"} in v["links"]
    r = await root.get("/v3/")
    assert r.status_code == 200 and r.json()["versions"][0]["version"] == "3.70"


async def test_microversion_negotiation(client: Callable[..., httpx.AsyncClient]) -> None:
    ctx = ctx_for("project-a", "member")
    r = await client(ctx, None).get("/volumes")
    assert r.headers["openstack-api-version"] == "volume 3.0"
    assert "OpenStack-API-Version" in r.headers["vary"]
    r = await client(ctx, "latest").get("/volumes")
    assert r.headers["openstack-api-version"] == "volume 3.70"
    r = await client(ctx, "3.44").get("/volumes")
    assert r.headers["openstack-api-version"] == "volume 3.44"
    fault(await client(ctx, "3.71").get("/volumes"), 406)
    fault(await client(ctx, "2.5").get("/volumes"), 406)
    fault(await client(ctx, "three").get("/volumes"), 400, "badRequest")


async def test_create_show_shapes_by_version(client: Callable[..., httpx.AsyncClient], svc: object) -> None:
    ctx = ctx_for("project-a", "member")
    new = client(ctx, "3.70")
    vol = await make_volume(new, size=2, description="d", metadata={"k": "v"})
    assert vol["status"] == "creating" and vol["size"] == 2 and vol["metadata"] == {"k": "v"}
    assert vol["bootable"] == "false" and vol["volume_type"] == "__DEFAULT__"
    got = await show(new, vol["id"])
    assert got["status"] == "available"
    assert set(got) == DETAIL_KEYS_3_0 | LATER
    assert got["os-vol-tenant-attr:tenant_id"] == "project-a" and got["user_id"] == "user-project-a"
    assert got["links"][0]["href"].endswith(f"/volume/v3/project-a/volumes/{vol['id']}")
    old = await show(client(ctx, None), vol["id"])
    assert set(old) == DETAIL_KEYS_3_0
    admin = await show(client(ctx_for("project-a", "admin"), "3.70"), vol["id"])
    assert ADMIN_ONLY <= set(admin) and {"provider_id", "cluster_name"} <= set(admin)


async def test_list_summary_and_detail(alice: httpx.AsyncClient) -> None:
    vol = await make_volume(alice)
    r = await alice.get("/volumes")
    assert r.status_code == 200
    (item,) = r.json()["volumes"]
    assert set(item) == {"id", "links", "name"} and item["id"] == vol["id"]
    r = await alice.get("/volumes/detail")
    assert r.json()["volumes"][0]["status"] == "available"


async def test_list_filters_sort_and_pages(alice: httpx.AsyncClient) -> None:
    ids = []
    for n, size in enumerate((3, 1, 2)):
        ids.append((await make_volume(alice, size=size, name=f"v{n}", metadata={"n": str(n)}))["id"])
    r = await alice.get("/volumes/detail", params={"sort": "size:asc"})
    assert [v["size"] for v in r.json()["volumes"]] == [1, 2, 3]
    r = await alice.get("/volumes/detail", params={"sort_key": "name", "sort_dir": "desc"})
    assert [v["name"] for v in r.json()["volumes"]] == ["v2", "v1", "v0"]
    r = await alice.get("/volumes/detail", params={"name": "v1"})
    assert [v["id"] for v in r.json()["volumes"]] == [ids[1]]
    r = await alice.get("/volumes/detail", params={"metadata": '{"n": "2"}'})
    assert [v["id"] for v in r.json()["volumes"]] == [ids[2]]
    r = await alice.get("/volumes/detail", params={"status": "error"})
    assert r.json()["volumes"] == []
    r = await alice.get("/volumes", params={"sort": "size:asc", "limit": 2})
    body = r.json()
    assert len(body["volumes"]) == 2 and body["volumes_links"][0]["rel"] == "next"
    marker = body["volumes"][-1]["id"]
    nxt = httpx.URL(body["volumes_links"][0]["href"])
    assert nxt.path == "/volume/v3/project-a/volumes" and nxt.params["marker"] == marker
    assert nxt.params["limit"] == "2" and nxt.params["sort"] == "size:asc"
    r = await alice.get("/volumes", params={"sort": "size:asc", "limit": 2, "marker": marker})
    assert [v["id"] for v in r.json()["volumes"]] == [ids[0]] and "volumes_links" not in r.json()
    r = await alice.get("/volumes", params={"with_count": "true"})
    assert r.json()["count"] == 3
    fault(await alice.get("/volumes", params={"limit": "x"}), 400)
    fault(await alice.get("/volumes", params={"limit": "-1"}), 400)
    fault(await alice.get("/volumes", params={"sort": "password:asc"}), 400)
    fault(await alice.get("/volumes", params={"sort": "size:sideways"}), 400)
    fault(await alice.get("/volumes", params={"marker": "nope"}), 404, "itemNotFound")
    fault(await alice.get("/volumes", params={"metadata": "{not json"}), 400)


async def test_update_and_metadata(alice: httpx.AsyncClient) -> None:
    vol = await make_volume(alice, metadata={"a": "1"})
    vid = vol["id"]
    r = await alice.put(f"/volumes/{vid}", json={"volume": {"name": "renamed", "description": "x"}})
    assert r.status_code == 200 and r.json()["volume"]["name"] == "renamed"
    r = await alice.post(f"/volumes/{vid}/metadata", json={"metadata": {"b": "2"}})
    assert r.json()["metadata"] == {"a": "1", "b": "2"}
    r = await alice.put(f"/volumes/{vid}/metadata", json={"metadata": {"c": "3"}})
    assert r.json()["metadata"] == {"c": "3"}
    r = await alice.get(f"/volumes/{vid}/metadata/c")
    assert r.json() == {"meta": {"c": "3"}}
    r = await alice.put(f"/volumes/{vid}/metadata/c", json={"meta": {"c": "4"}})
    assert r.status_code == 200
    fault(await alice.put(f"/volumes/{vid}/metadata/c", json={"meta": {"d": "4"}}), 400)
    fault(await alice.put(f"/volumes/{vid}/metadata/c", json={"meta": {"c": "4", "d": "5"}}), 400)
    r = await alice.delete(f"/volumes/{vid}/metadata/c")
    assert r.status_code == 200
    fault(await alice.delete(f"/volumes/{vid}/metadata/c"), 404)
    assert (await alice.get(f"/volumes/{vid}/metadata")).json() == {"metadata": {}}


async def test_delete(alice: httpx.AsyncClient, worker: object) -> None:
    vol = await make_volume(alice)
    r = await alice.delete(f"/volumes/{vol['id']}")
    assert r.status_code == 202
    fault(await alice.get(f"/volumes/{vol['id']}"), 404, "itemNotFound")


async def test_create_from_image(alice: httpx.AsyncClient, images: object, worker: object) -> None:
    from fake_worker import FakeImages, FakeWorker

    assert isinstance(images, FakeImages) and isinstance(worker, FakeWorker)
    image_id = "6f1c1b0e-8d7b-4f42-9a51-5d2d6f0c0a11"
    images.add(image_id, owner="project-a", min_disk=2)
    fault(await alice.post("/volumes", json={"volume": {"size": 1, "imageRef": image_id}}), 400)
    vol = await make_volume(alice, size=2, imageRef=image_id)
    got = await show(alice, vol["id"])
    assert got["bootable"] == "true"
    assert got["volume_image_metadata"]["image_id"] == image_id
    assert worker.casts[-1] == ("create_volume", {"volume_id": vol["id"], "size_gb": 2, "snapshot_id": None,
                                                  "source_volid": None, "image_id": image_id, "backup_id": None})
    hidden = "7f1c1b0e-8d7b-4f42-9a51-5d2d6f0c0a11"
    images.add(hidden, owner="project-b")
    fault(await alice.post("/volumes", json={"volume": {"size": 2, "imageRef": hidden}}), 404)
    queued = "8f1c1b0e-8d7b-4f42-9a51-5d2d6f0c0a11"
    images.add(queued, owner="project-a", status="queued")
    fault(await alice.post("/volumes", json={"volume": {"size": 2, "imageRef": queued}}), 400)


async def test_clone_and_from_snapshot(alice: httpx.AsyncClient) -> None:
    src = await make_volume(alice, size=2)
    clone = await make_volume(alice, size=None, source_volid=src["id"])
    assert clone["size"] == 2 and clone["source_volid"] == src["id"]
    fault(await alice.post("/volumes", json={"volume": {"size": 1, "source_volid": src["id"]}}), 400)
    r = await alice.post("/snapshots", json={"snapshot": {"volume_id": src["id"], "name": "s"}})
    assert r.status_code == 202
    snap = r.json()["snapshot"]
    vol = await make_volume(alice, size=3, snapshot_id=snap["id"])
    assert vol["snapshot_id"] == snap["id"] and vol["size"] == 3


async def test_bootable_readonly_retype(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    vol = await make_volume(alice)
    vid = vol["id"]
    assert (await act(alice, vid, "os-set_bootable", {"bootable": True})).status_code == 200
    assert (await show(alice, vid))["bootable"] == "true"
    fault(await act(alice, vid, "os-set_bootable", {"bootable": "maybe"}), 400)
    assert (await act(alice, vid, "os-update_readonly_flag", {"readonly": True})).status_code == 202
    assert (await show(alice, vid))["metadata"] == {"readonly": "True"}  # Cinder's visible admin metadata
    r = await admin.post("/types", json={"volume_type": {"name": "fast", "extra_specs": {"k": "v"}}})
    assert r.status_code == 200
    assert (await act(alice, vid, "os-retype", {"new_type": "fast"})).status_code == 202
    assert (await show(alice, vid))["volume_type"] == "fast"
    fault(await act(alice, vid, "os-retype", {"new_type": "fast"}), 400)
    fault(await act(alice, vid, "os-retype", {"new_type": "nope"}), 404)


async def test_extensions_and_zones(alice: httpx.AsyncClient) -> None:
    exts = (await alice.get("/extensions")).json()["extensions"]
    assert {"Hosts", "Services", "QuotaClasses", "VolumeImageMetadata"} <= {e["name"] for e in exts}
    assert all(set(e) == {"name", "alias", "description", "links", "updated"} for e in exts)
    zones = (await alice.get("/os-availability-zone")).json()["availabilityZoneInfo"]
    assert zones == [{"zoneName": "nova", "zoneState": {"available": True}}]


async def test_openapi_document_covers_every_route(alice: httpx.AsyncClient) -> None:
    from cumulo.volume.api.app import ROUTES

    root = httpx.AsyncClient(transport=alice._transport, base_url="http://cumulo.test/volume")
    doc = (await root.get("/openapi.json")).json()
    assert doc["info"]["x-openstack-volume-microversion"] == "3.70"
    paths = doc["paths"]
    for route in ROUTES:
        path = getattr(route, "path", "")
        if path.startswith("/v3/{project_id}"):
            for method in set(getattr(route, "methods", ())) - {"HEAD"}:
                assert method.lower() in paths["/volume" + path], (method, path)
    old = (await root.get("/openapi.json", params={"microversion": "3.26"})).json()["paths"]
    assert "/volume/v3/{project_id}/attachments" not in old
    assert "/volume/v3/{project_id}/attachments" in paths
    fault(await root.get("/openapi.json", params={"microversion": "3.99"}), 400)
