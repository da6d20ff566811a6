"""Volume transfers between projects, the admin's deployment views (services, hosts, pools,
capabilities), the default quota class, and the snapshot/backup admin actions Tempest uses."""

from __future__ import annotations

import httpx
from vol_support import act, fault, make_volume, show


async def test_transfer_accept_moves_volume_and_snapshots(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    vol = await make_volume(alice)
    snap = (await alice.post("/snapshots", json={"snapshot": {"volume_id": vol["id"]}})).json()["snapshot"]
    r = await alice.post("/os-volume-transfer", json={"transfer": {"volume_id": vol["id"], "name": "t"}})
    assert r.status_code == 202, r.text
    t = r.json()["transfer"]
    assert set(t) >= {"id", "auth_key", "volume_id", "name", "created_at", "links"} and t["name"] == "t"
    assert (await show(alice, vol["id"]))["status"] == "awaiting-transfer"
    listed = (await alice.get("/volume-transfers/detail")).json()["transfers"]
    assert [x["id"] for x in listed] == [t["id"]] and "auth_key" not in listed[0]
    assert listed[0]["source_project_id"] == "project-a" and listed[0]["accepted"] is False  # 3.57
    assert (await bob.get("/os-volume-transfer")).json()["transfers"] == []  # another project sees none
    fault(await bob.get(f"/os-volume-transfer/{t['id']}"), 404)
    fault(await act(alice, vol["id"], "os-extend", {"new_size": 2}), 400)  # awaiting transfer: no extend
    fault(await bob.post(f"/os-volume-transfer/{t['id']}/accept", json={"accept": {"auth_key": "wrong"}}), 400)
    r = await bob.post(f"/os-volume-transfer/{t['id']}/accept", json={"accept": {"auth_key": t["auth_key"]}})
    assert r.status_code == 202, r.text
    moved = await show(bob, vol["id"])
    assert moved["status"] == "available" and moved["os-vol-tenant-attr:tenant_id"] == "project-b"
    fault(await alice.get(f"/volumes/{vol['id']}"), 404)
    assert (await bob.get(f"/snapshots/{snap['id']}")).status_code == 200
    fault(await bob.get(f"/os-volume-transfer/{t['id']}"), 404)  # an accepted transfer is gone


async def test_transfer_delete_and_versions(alice: httpx.AsyncClient) -> None:
    vol = await make_volume(alice)
    t = (await alice.post("/os-volume-transfer", json={"transfer": {"volume_id": vol["id"]}})).json()["transfer"]
    fault(await alice.post("/os-volume-transfer", json={"transfer": {"volume_id": vol["id"]}}), 400)  # one at a time
    assert (await alice.delete(f"/os-volume-transfer/{t['id']}")).status_code == 202
    assert (await show(alice, vol["id"]))["status"] == "available"
    fault(await alice.delete(f"/os-volume-transfer/{t['id']}"), 404)
    old = alice.headers.copy()
    alice.headers["OpenStack-API-Version"] = "volume 3.54"
    fault(await alice.get("/volume-transfers"), 404)  # the new resource arrives at 3.55
    alice.headers.update(old)


async def test_admin_deployment_views(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    fault(await alice.get("/os-services"), 403)
    services = (await admin.get("/os-services")).json()["services"]
    assert {s["binary"] for s in services} == {"cinder-scheduler", "cinder-volume", "cinder-backup"}
    volume_host = next(s["host"] for s in services if s["binary"] == "cinder-volume")
    assert volume_host.endswith("@cumulo")
    only = (await admin.get("/os-services", params={"binary": "cinder-volume"})).json()["services"]
    assert [s["binary"] for s in only] == ["cinder-volume"]
    fault(await admin.put("/os-services/enable", json={"host": "nowhere", "binary": "cinder-volume"}), 404)
    fault(await admin.put("/os-services/disable-log-reason",
                          json={"host": volume_host, "binary": "cinder-volume", "disabled_reason": None}), 400)
    fault(await admin.put("/os-services/disable", json={"host": volume_host, "binary": "cinder-volume"}), 400)
    fault(await admin.put("/os-services/freeze", json={"host": "nowhere"}), 400)
    vol = await make_volume(alice, size=3)
    hosts = (await admin.get("/os-hosts")).json()["hosts"]
    assert len(hosts) == 3
    usage = (await admin.get(f"/os-hosts/{volume_host}")).json()["host"]
    total = usage[0]["resource"]
    assert total["project"] == "(total)" and total["volume_count"] == "1" and total["total_volume_gb"] == "3"
    fault(await admin.get("/os-hosts/nowhere"), 404)
    pools = (await admin.get("/scheduler-stats/get_pools", params={"detail": "true"})).json()["pools"]
    assert pools[0]["name"] == f"{volume_host}#cumulo" and pools[0]["capabilities"]["total_capacity_gb"] > 0
    caps = (await admin.get(f"/capabilities/{pools[0]['name']}")).json()
    assert caps["volume_backend_name"] == "cumulo" and caps["namespace"].startswith("OS::Storage::Capabilities::")
    assert (await show(admin, vol["id"]))["os-vol-host-attr:host"] in (None, f"{volume_host}#cumulo")


async def test_default_quota_class(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    fault(await alice.get("/os-quota-class-sets/default"), 403)
    r = await admin.put("/os-quota-class-sets/default", json={"quota_class_set": {"volumes": 1}})
    assert r.status_code == 200 and r.json()["quota_class_set"]["volumes"] == 1
    assert (await admin.get("/os-quota-class-sets/default")).json()["quota_class_set"]["id"] == "default"
    assert (await alice.get("/os-quota-sets/project-a/defaults")).json()["quota_set"]["volumes"] == 1
    await make_volume(alice)
    fault(await alice.post("/volumes", json={"volume": {"size": 1}}), 413)  # the class's limit applies
    fault(await admin.put("/os-quota-class-sets/gold", json={"quota_class_set": {"volumes": 1}}), 400)


async def test_snapshot_and_backup_admin_actions(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    vol = await make_volume(alice)
    snap = (await alice.post("/snapshots", json={"snapshot": {"volume_id": vol["id"]}})).json()["snapshot"]
    sid = snap["id"]
    fault(await alice.post(f"/snapshots/{sid}/action", json={"os-reset_status": {"status": "creating"}}), 403)
    assert (await admin.post(f"/snapshots/{sid}/action", json={"os-reset_status": {"status": "creating"}})).status_code == 202
    r = await alice.post(f"/snapshots/{sid}/action", json={"os-update_snapshot_status": {"status": "error", "progress": "80%"}})
    assert r.status_code == 202, r.text
    seen = (await alice.get(f"/snapshots/{sid}")).json()["snapshot"]
    assert seen["status"] == "error" and seen["os-extended-snapshot-attributes:progress"] == "80%"
    # error is not a status a snapshot reports from (only creating/deleting move on)
    fault(await alice.post(f"/snapshots/{sid}/action", json={"os-update_snapshot_status": {"status": "available"}}), 400)
    fault(await alice.post("/snapshots", json={"snapshot": {"volume_id": None}}), 404)
    fault(await alice.post("/snapshots", json={"snapshot": {"volume_id": "x"}}), 400)


async def test_retype_follows_the_multiattach_spec(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    r = await admin.post("/types", json={"volume_type": {"name": "shared", "extra_specs": {"multiattach": "<is> True"}}})
    assert r.status_code == 200, r.text
    vol = await make_volume(alice)
    assert vol["multiattach"] is False
    assert (await act(alice, vol["id"], "os-retype", {"new_type": "shared"})).status_code == 202
    assert (await show(alice, vol["id"]))["multiattach"] is True
    assert (await act(alice, vol["id"], "os-retype", {"new_type": "__DEFAULT__"})).status_code == 202
    assert (await show(alice, vol["id"]))["multiattach"] is False
