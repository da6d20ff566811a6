"""Project isolation and quotas: one project cannot see, attach, snapshot, back up, clone or
restore another's volume; quotas are Cinder's, passing one is 413 overLimit."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from _asgi_ctx import ctx_for
from vol_support import act, fault, make_volume, show

SERVER = "11111111-2222-4333-8444-555555555555"


async def test_other_project_sees_nothing(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    vol = await make_volume(alice)
    vid = vol["id"]
    assert (await bob.get("/volumes/detail")).json()["volumes"] == []
    fault(await bob.get(f"/volumes/{vid}"), 404, "itemNotFound")
    fault(await bob.put(f"/volumes/{vid}", json={"volume": {"name": "x"}}), 404)
    fault(await bob.delete(f"/volumes/{vid}"), 404)
    fault(await bob.get(f"/volumes/{vid}/metadata"), 404)
    fault(await bob.post(f"/volumes/{vid}/metadata", json={"metadata": {"a": "b"}}), 404)
    for name, value in (("os-attach", {"instance_uuid": SERVER, "mountpoint": "/dev/vdb"}), ("os-reserve", None),
                        ("os-extend", {"new_size": 5}), ("os-set_bootable", {"bootable": True}),
                        ("os-detach", {}), ("os-begin_detaching", None)):
        fault(await act(bob, vid, name, value), 404)
    fault(await bob.post("/attachments", json={"attachment": {"volume_uuid": vid, "instance_uuid": SERVER}}), 404)
    fault(await bob.post("/snapshots", json={"snapshot": {"volume_id": vid}}), 404)
    fault(await bob.post("/backups", json={"backup": {"volume_id": vid}}), 404)
    fault(await bob.post("/volumes", json={"volume": {"size": 1, "source_volid": vid}}), 404)
    assert (await show(alice, vid))["status"] == "available"


async def test_other_projects_snapshots_backups_attachments(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    snap = (await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}})).json()["snapshot"]
    bak = (await alice.post("/backups", json={"backup": {"volume_id": vid}})).json()["backup"]
    att = (await alice.post("/attachments", json={"attachment": {"volume_uuid": vid, "instance_uuid": SERVER}})).json()["attachment"]
    assert (await bob.get("/snapshots")).json()["snapshots"] == []
    assert (await bob.get("/backups")).json()["backups"] == []
    assert (await bob.get("/attachments")).json()["attachments"] == []
    fault(await bob.get(f"/snapshots/{snap['id']}"), 404)
    fault(await bob.delete(f"/snapshots/{snap['id']}"), 404)
    fault(await bob.post("/volumes", json={"volume": {"snapshot_id": snap["id"]}}), 404)
    fault(await bob.get(f"/backups/{bak['id']}"), 404)
    fault(await bob.post(f"/backups/{bak['id']}/restore", json={"restore": {}}), 404)
    fault(await bob.post("/volumes", json={"volume": {"backup_id": bak["id"]}}), 404)
    fault(await bob.get(f"/attachments/{att['id']}"), 404)
    fault(await bob.delete(f"/attachments/{att['id']}"), 404)
    fault(await bob.put(f"/attachments/{att['id']}", json={"attachment": {"connector": {}}}), 404)
    # bob cannot restore alice's backup into his own volume either, nor hers into his
    bobs = await make_volume(bob)
    fault(await alice.post(f"/backups/{bak['id']}/restore", json={"restore": {"volume_id": bobs["id"]}}), 404)


async def test_project_in_url_must_be_callers(client: Callable[..., httpx.AsyncClient], alice: httpx.AsyncClient) -> None:
    await make_volume(alice)
    wrong = httpx.AsyncClient(transport=alice._transport, base_url="http://cumulo.test/volume/v3/project-a",
                              headers={"OpenStack-API-Version": "volume 3.70"})
    bob = client(ctx_for("project-b", "member"))
    fault(await httpx.AsyncClient(transport=bob._transport, base_url=str(wrong.base_url)).get("/volumes"), 400)
    # 3.67: no project id in the URL
    plain = httpx.AsyncClient(transport=alice._transport, base_url="http://cumulo.test/volume/v3",
                              headers={"OpenStack-API-Version": "volume 3.70"})
    assert len((await plain.get("/volumes")).json()["volumes"]) == 1


async def test_admin_all_tenants(alice: httpx.AsyncClient, admin: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    assert (await admin.get("/volumes")).json()["volumes"] == []
    r = await admin.get("/volumes", params={"all_tenants": "1"})
    assert [v["id"] for v in r.json()["volumes"]] == [vid]
    r = await bob.get("/volumes", params={"all_tenants": "1"})  # ignored for a member
    assert r.json()["volumes"] == []
    assert (await admin.get(f"/volumes/{vid}")).status_code == 200


async def test_quota_volumes_and_gigabytes(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    r = await alice.get("/os-quota-sets/project-a")
    assert r.status_code == 200
    q = r.json()["quota_set"]
    assert q["volumes"] == 10 and q["gigabytes"] == 1000 and q["per_volume_gigabytes"] == -1 and q["id"] == "project-a"
    fault(await alice.put("/os-quota-sets/project-a", json={"quota_set": {"volumes": 100}}), 403, "forbidden")
    fault(await alice.get("/os-quota-sets/project-b"), 403)
    r = await admin.put("/os-quota-sets/project-a", json={"quota_set": {"volumes": 2, "gigabytes": 5, "per_volume_gigabytes": 3}})
    assert r.status_code == 200 and r.json()["quota_set"]["volumes"] == 2
    msg = fault(await alice.post("/volumes", json={"volume": {"size": 4}}), 413, "overLimit")
    assert "3G" in msg
    await make_volume(alice, size=3)
    msg = fault(await alice.post("/volumes", json={"volume": {"size": 3}}), 413, "overLimit")
    assert "gigabytes" in msg
    await make_volume(alice, size=1)
    msg = fault(await alice.post("/volumes", json={"volume": {"size": 1}}), 413, "overLimit")
    assert "volumes" in msg
    r = await alice.get("/os-quota-sets/project-a", params={"usage": "true"})
    assert r.json()["quota_set"]["volumes"] == {"limit": 2, "in_use": 2, "reserved": 0}
    limits = (await alice.get("/limits")).json()["limits"]
    assert limits["rate"] == [] and limits["absolute"]["totalVolumesUsed"] == 2
    assert limits["absolute"]["maxTotalVolumeGigabytes"] == 5
    fault(await admin.put("/os-quota-sets/project-a", json={"quota_set": {"volumes": 1}}), 400)
    fault(await admin.put("/os-quota-sets/project-a", json={"quota_set": {"bogus": 1}}), 400)
    fault(await admin.put("/os-quota-sets/project-a", json={"quota_set": {"volumes": "many"}}), 400)
    fault(await admin.put("/os-quota-sets/project-a", json={"quota_set": {"volumes": -2}}), 400)
    assert (await admin.delete("/os-quota-sets/project-a")).status_code == 200
    assert (await alice.get("/os-quota-sets/project-a")).json()["quota_set"]["volumes"] == 10


async def test_quota_extend_snapshots_backups(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    await admin.put("/os-quota-sets/project-a", json={"quota_set": {"gigabytes": 3, "snapshots": 1, "backups": 1,
                                                                    "backup_gigabytes": 10}})
    vid = (await make_volume(alice, size=1))["id"]
    fault(await act(alice, vid, "os-extend", {"new_size": 4}), 413, "overLimit")
    assert (await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}})).status_code == 202
    fault(await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}}), 413, "overLimit")
    assert (await alice.post("/backups", json={"backup": {"volume_id": vid}})).status_code == 202
    fault(await alice.post("/backups", json={"backup": {"volume_id": vid}}), 413, "overLimit")


async def test_concurrent_creates_respect_quota(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    import asyncio

    await admin.put("/os-quota-sets/project-a", json={"quota_set": {"volumes": 2}})
    results = await asyncio.gather(*(alice.post("/volumes", json={"volume": {"size": 1}}) for _ in range(6)))
    codes = sorted(r.status_code for r in results)
    assert codes == [202, 202, 413, 413, 413, 413], codes
    assert len((await alice.get("/volumes")).json()["volumes"]) == 2


async def test_admin_lists_one_project(alice: httpx.AsyncClient, bob: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    a = (await make_volume(alice))["id"]
    await make_volume(bob)
    r = await admin.get("/volumes/detail", params={"all_tenants": "true", "project_id": "project-a"})
    assert [v["id"] for v in r.json()["volumes"]] == [a]
    r = await admin.get("/volumes/detail", params={"all_tenants": "true"})
    assert len(r.json()["volumes"]) == 2


async def test_per_type_quotas(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    await admin.post("/types", json={"volume_type": {"name": "gold"}})
    q = (await alice.get("/os-quota-sets/project-a")).json()["quota_set"]
    assert q["volumes_gold"] == -1 and q["gigabytes___DEFAULT__"] == -1 and q["snapshots_gold"] == -1
    r = await admin.put("/os-quota-sets/project-a", json={"quota_set": {"volumes_gold": 1}})
    assert r.status_code == 200 and r.json()["quota_set"]["volumes_gold"] == 1
    await make_volume(alice, volume_type="gold")
    fault(await alice.post("/volumes", json={"volume": {"size": 1, "volume_type": "gold"}}), 413, "overLimit")
    await make_volume(alice)  # another type is not limited
    usage = (await alice.get("/os-quota-sets/project-a", params={"usage": "true"})).json()["quota_set"]
    assert usage["volumes_gold"]["in_use"] == 1 and usage["volumes"]["in_use"] == 2
    fault(await admin.put("/os-quota-sets/project-a", json={"quota_set": {"volumes_silver": 1}}), 400)


async def test_pending_extends_hold_quota(alice: httpx.AsyncClient, admin: httpx.AsyncClient, worker: object) -> None:
    from fake_worker import FakeWorker

    assert isinstance(worker, FakeWorker)
    await admin.put("/os-quota-sets/project-a", json={"quota_set": {"gigabytes": 5}})
    a = (await make_volume(alice))["id"]
    b = (await make_volume(alice))["id"]
    worker.hold = True
    assert (await act(alice, a, "os-extend", {"new_size": 3})).status_code == 202  # 2 GB more, pending
    fault(await act(alice, b, "os-extend", {"new_size": 3}), 413, "overLimit")  # would pass 5 with a's
    usage = (await alice.get("/os-quota-sets/project-a", params={"usage": "true"})).json()["quota_set"]
    assert usage["gigabytes"]["in_use"] == 4
