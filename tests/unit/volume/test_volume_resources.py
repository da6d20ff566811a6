"""Types (admin), snapshots, backups and restore through the API, with Cinder's shapes."""

from __future__ import annotations

import httpx
from fake_worker import FakeWorker
from vol_support import act, fault, make_volume, show

SNAPSHOT_KEYS = {"id", "created_at", "updated_at", "name", "description", "volume_id", "status", "size", "metadata",
                 "os-extended-snapshot-attributes:project_id", "os-extended-snapshot-attributes:progress",
                 "group_snapshot_id", "user_id", "consumes_quota"}
BACKUP_KEYS = {"availability_zone", "container", "created_at", "data_timestamp", "description", "fail_reason",
               "has_dependent_backups", "id", "is_incremental", "links", "name", "object_count", "size", "snapshot_id",
               "status", "updated_at", "volume_id", "metadata", "encryption_key_id", "user_id"}


async def test_types_admin_only(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    r = await alice.get("/types")
    assert [t["name"] for t in r.json()["volume_types"]] == ["__DEFAULT__"]
    fault(await alice.post("/types", json={"volume_type": {"name": "x"}}), 403, "forbidden")
    r = await admin.post("/types", json={"volume_type": {"name": "gold", "description": "d",
                                                         "extra_specs": {"multiattach": "<is> True", "secret": "s"}}})
    assert r.status_code == 200
    t = r.json()["volume_type"]
    # Cinder's create answer has no qos_specs_id (Tempest's schema forbids it); the admin's show has it
    assert set(t) == {"id", "name", "description", "is_public", "os-volume-type-access:is_public", "extra_specs"}
    assert "qos_specs_id" in (await admin.get(f"/types/{t['id']}")).json()["volume_type"]
    fault(await admin.post("/types", json={"volume_type": {"name": "gold"}}), 409, "conflictingRequest")
    seen = (await alice.get(f"/types/{t['id']}")).json()["volume_type"]
    assert seen["extra_specs"] == {"multiattach": "<is> True"} and "qos_specs_id" not in seen
    r = await admin.put(f"/types/{t['id']}/extra_specs/k", json={"k": "v"})
    assert r.json() == {"k": "v"}
    assert (await admin.get(f"/types/{t['id']}/extra_specs")).json()["extra_specs"]["k"] == "v"
    fault(await admin.put(f"/types/{t['id']}/extra_specs/k", json={"j": "v"}), 400)
    assert (await admin.delete(f"/types/{t['id']}/extra_specs/k")).status_code == 202
    fault(await admin.delete(f"/types/{t['id']}/extra_specs/k"), 404)
    fault(await alice.put(f"/types/{t['id']}", json={"volume_type": {"name": "y"}}), 403)
    r = await admin.put(f"/types/{t['id']}", json={"volume_type": {"description": "new"}})
    assert r.json()["volume_type"]["description"] == "new"
    await make_volume(alice, volume_type="gold")
    fault(await admin.delete(f"/types/{t['id']}"), 400)  # in use


async def test_private_type_access(alice: httpx.AsyncClient, bob: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    r = await admin.post("/types", json={"volume_type": {"name": "priv", "os-volume-type-access:is_public": False}})
    tid = r.json()["volume_type"]["id"]
    fault(await alice.post("/volumes", json={"volume": {"size": 1, "volume_type": "priv"}}), 404)
    r = await admin.post(f"/types/{tid}/action", json={"addProjectAccess": {"project": "project-a"}})
    assert r.status_code == 202
    assert (await admin.get(f"/types/{tid}/os-volume-type-access")).json()["volume_type_access"] == [
        {"volume_type_id": tid, "project_id": "project-a"}]
    await make_volume(alice, volume_type="priv")
    fault(await bob.get(f"/types/{tid}"), 404)


async def test_snapshot_lifecycle(alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice, size=2))["id"]
    r = await alice.post("/snapshots", json={"snapshot": {"volume_id": vid, "name": "s1", "metadata": {"a": "b"}}})
    assert r.status_code == 202
    snap = r.json()["snapshot"]
    assert snap["status"] == "creating" and snap["size"] == 2
    got = (await alice.get(f"/snapshots/{snap['id']}")).json()["snapshot"]
    assert set(got) == SNAPSHOT_KEYS and got["status"] == "available" and got["metadata"] == {"a": "b"}
    listed = (await alice.get("/snapshots")).json()["snapshots"]
    assert [s["id"] for s in listed] == [snap["id"]]
    assert "os-extended-snapshot-attributes:project_id" not in listed[0]
    r = await alice.put(f"/snapshots/{snap['id']}", json={"snapshot": {"name": "s2"}})
    assert r.json()["snapshot"]["name"] == "s2"
    r = await alice.post(f"/snapshots/{snap['id']}/metadata", json={"metadata": {"c": "d"}})
    assert r.json()["metadata"] == {"a": "b", "c": "d"}
    r = await alice.put(f"/snapshots/{snap['id']}/metadata/c", json={"meta": {"c": "e"}})
    assert r.json() == {"meta": {"c": "e"}}
    assert (await alice.get(f"/snapshots/{snap['id']}/metadata/c")).json() == {"meta": {"c": "e"}}
    fault(await alice.put(f"/snapshots/{snap['id']}/metadata/c", json={"meta": {"x": "e"}}), 400)
    assert (await alice.delete(f"/snapshots/{snap['id']}/metadata/c")).status_code == 200
    fault(await alice.get(f"/snapshots/{snap['id']}/metadata/c"), 404)
    # an attached volume needs force
    assert (await act(alice, vid, "os-attach", {"instance_uuid": "11111111-2222-4333-8444-555555555555",
                                                "mountpoint": "/dev/vdb"})).status_code == 202
    fault(await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}}), 400)
    assert (await alice.post("/snapshots", json={"snapshot": {"volume_id": vid, "force": True}})).status_code == 202
    assert (await alice.delete(f"/snapshots/{snap['id']}")).status_code == 202
    fault(await alice.get(f"/snapshots/{snap['id']}"), 404)


async def test_backup_and_restore(alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    vid = (await make_volume(alice, size=2))["id"]
    r = await alice.post("/backups", json={"backup": {"volume_id": vid, "name": "b1", "metadata": {"k": "v"}}})
    assert r.status_code == 202
    bak = r.json()["backup"]
    assert set(bak) == {"id", "links", "name"}
    assert ("create_backup", {"backup_id": bak["id"], "volume_id": vid, "snapshot_id": None}) in worker.casts
    got = (await alice.get(f"/backups/{bak['id']}")).json()["backup"]
    assert set(got) == BACKUP_KEYS and got["status"] == "available" and got["metadata"] == {"k": "v"}
    assert (await show(alice, vid))["status"] == "available"
    detail = (await alice.get("/backups/detail")).json()["backups"]
    assert [b["id"] for b in detail] == [bak["id"]]
    r = await alice.post(f"/backups/{bak['id']}/restore", json={"restore": {"name": "restored"}})
    assert r.status_code == 202
    out = r.json()["restore"]
    assert out["backup_id"] == bak["id"] and out["volume_name"] == "restored"
    assert (await show(alice, out["volume_id"]))["status"] == "available"
    # into an existing volume: big enough and available
    small = (await make_volume(alice, size=1))["id"]
    fault(await alice.post(f"/backups/{bak['id']}/restore", json={"restore": {"volume_id": small}}), 400)
    r = await alice.post(f"/backups/{bak['id']}/restore", json={"restore": {"volume_id": vid}})
    assert r.status_code == 202 and r.json()["restore"]["volume_id"] == vid
    # from a backup at 3.47
    vol = await make_volume(alice, size=None, backup_id=bak["id"])
    assert vol["size"] == 2
    # incremental: needs a backup of the volume to depend on, which then cannot go first
    fault(await alice.post("/backups", json={"backup": {"volume_id": small, "incremental": True}}), 400)
    r = await alice.post("/backups", json={"backup": {"volume_id": vid, "incremental": True}})
    assert r.status_code == 202, r.text
    child = r.json()["backup"]["id"]
    assert (await alice.get(f"/backups/{child}")).json()["backup"]["is_incremental"] is True
    assert (await alice.get(f"/backups/{bak['id']}")).json()["backup"]["has_dependent_backups"] is True
    fault(await alice.delete(f"/backups/{bak['id']}"), 400)
    assert (await alice.delete(f"/backups/{child}")).status_code == 202
    assert (await alice.delete(f"/backups/{bak['id']}")).status_code == 202
    fault(await alice.get(f"/backups/{bak['id']}"), 404)


async def test_backup_of_in_use_needs_force(alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    vid = (await make_volume(alice))["id"]
    assert (await act(alice, vid, "os-attach", {"instance_uuid": "11111111-2222-4333-8444-555555555555",
                                                "mountpoint": "/dev/vdb"})).status_code == 202
    fault(await alice.post("/backups", json={"backup": {"volume_id": vid}}), 400)
    worker.hold = True
    assert (await alice.post("/backups", json={"backup": {"volume_id": vid, "force": True}})).status_code == 202
    assert (await show(alice, vid))["status"] == "backing-up"
    fault(await act(alice, vid, "os-detach", {}), 400)  # not while backing up


async def test_upload_to_image(alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    vid = (await make_volume(alice))["id"]
    r = await act(alice, vid, "os-volume_upload_image", {"image_name": "img", "disk_format": "qcow2"})
    assert r.status_code == 202, r.text
    out = r.json()["os-volume_upload_image"]
    assert out["image_name"] == "img" and out["status"] == "uploading" and out["volume_type"]["name"] == "__DEFAULT__"
    assert worker.casts[-1][0] == "upload_to_image"
    fault(await act(alice, vid, "os-volume_upload_image", {"image_name": "img", "disk_format": "vmdk"}), 400)
