"""Nova's os-volume_attachments against the in-process cloud (fake driver, the real volume service and
worker on a file store): attach/list/show/detach shapes per microversion, the server view's
volumes_attached, delete_on_termination at server delete, online extend reaching the driver, the
agent's reconcile of attachments, and each refusal with Nova's fault."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_ctx,
    make_world,
    mv,
    settings,
    wait_gone,
)

from cumulo.compute import volume_records
from cumulo.compute.agent import volumes as agent_volumes

V = "2.79"


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _vol_url(world: World, suffix: str = "") -> str:
    return f"/volume/v3/{world.project_id}/volumes{suffix}"


async def _volume(world: World, client: Any = None, **extra: Any) -> str:
    resp = await (client or world.member).post(_vol_url(world), json={"volume": {"size": 1, **extra}})
    assert resp.status_code == 202, resp.text
    vid = str(resp.json()["volume"]["id"])
    await _wait_volume(world, vid, "available", client)
    return vid


async def _wait_volume(world: World, vid: str, status: str | None, client: Any = None,
                       timeout: float = 20.0) -> dict[str, Any]:
    """Poll the volume until `status` (None: until it is gone)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    body: dict[str, Any] = {}
    while loop.time() < deadline:
        resp = await (client or world.member).get(_vol_url(world, f"/{vid}"), headers={"OpenStack-API-Version": "volume 3.60"})
        if status is None and resp.status_code == 404:
            return {}
        assert resp.status_code == 200, resp.text
        body = resp.json()["volume"]
        if body["status"] == status:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"volume {vid} not {status}: {body.get('status')}")


async def _host_of(world: World, sid: str) -> str:
    resp = await world.admin.get(f"{API}/servers/{sid}")
    return str(resp.json()["server"]["OS-EXT-SRV-ATTR:host"])


async def _driver_of(world: World, sid: str) -> Any:
    host = await _host_of(world, sid)
    return next(m.driver for m in world.cloud.managers if m.host == host)


async def _attach(world: World, sid: str, vid: str, version: str = V, **extra: Any) -> Any:
    return await world.member.post(f"{API}/servers/{sid}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": vid, **extra}}, headers=mv(version))


async def test_attach_list_show_detach_and_the_server_view(world: World) -> None:
    server = await world.active("att")
    sid = server["id"]
    vid = await _volume(world)
    resp = await _attach(world, sid, vid, tag="data", delete_on_termination=True)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"volumeAttachment": {"device": "/dev/vdb", "id": vid, "serverId": sid, "volumeId": vid,
                                                "tag": "data", "delete_on_termination": True}}
    volume = await _wait_volume(world, vid, "in-use")
    [att] = volume["attachments"]
    assert att["server_id"] == sid and att["device"] == "/dev/vdb"
    assert vid in await (await _driver_of(world, sid)).attached_volumes(sid)
    # list and show, per microversion
    listed = (await world.member.get(f"{API}/servers/{sid}/os-volume_attachments", headers=mv("2.1"))).json()
    assert listed == {"volumeAttachments": [{"device": "/dev/vdb", "id": vid, "serverId": sid, "volumeId": vid}]}
    shown = (await world.reader.get(f"{API}/servers/{sid}/os-volume_attachments/{vid}", headers=mv("2.70"))).json()
    assert shown == {"volumeAttachment": {"device": "/dev/vdb", "id": vid, "serverId": sid, "volumeId": vid, "tag": "data"}}
    view = (await world.member.get(f"{API}/servers/{sid}", headers=mv(V))).json()["server"]
    assert view["os-extended-volumes:volumes_attached"] == [{"id": vid, "delete_on_termination": True}]
    view = (await world.member.get(f"{API}/servers/detail", headers=mv("2.1"))).json()["servers"]
    assert [s["os-extended-volumes:volumes_attached"] for s in view if s["id"] == sid] == [[{"id": vid}]]
    # a second volume takes the next device
    vid2 = await _volume(world)
    resp = await _attach(world, sid, vid2, version="2.1")
    assert resp.status_code == 200 and resp.json()["volumeAttachment"]["device"] == "/dev/vdc", resp.text
    await _wait_volume(world, vid2, "in-use")
    # detach
    resp = await world.member.delete(f"{API}/servers/{sid}/os-volume_attachments/{vid}")
    assert resp.status_code == 202, resp.text
    await _wait_volume(world, vid, "available")
    assert vid not in await (await _driver_of(world, sid)).attached_volumes(sid)
    listed = (await world.member.get(f"{API}/servers/{sid}/os-volume_attachments")).json()["volumeAttachments"]
    assert [a["volumeId"] for a in listed] == [vid2]
    # server delete: the remaining volume (no delete_on_termination) is available again
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    await _wait_volume(world, vid2, "available")
    async with world.cloud.db.read() as conn:
        assert await volume_records.of_instance(conn, sid) == []


async def test_delete_on_termination_deletes_the_volume_with_the_server(world: World) -> None:
    sid = (await world.active("dot"))["id"]
    vid = await _volume(world)
    assert (await _attach(world, sid, vid, delete_on_termination=True)).status_code == 200
    await _wait_volume(world, vid, "in-use")
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    await _wait_volume(world, vid, None)


async def test_refusals_with_novas_faults(world: World) -> None:
    sid = (await world.active("a"))["id"]
    other_sid = (await world.active("b"))["id"]
    vid = await _volume(world)
    missing = "6f1d2a9e-0000-4000-8000-000000000000"
    resp = await _attach(world, sid, missing)
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound", resp.text
    # another project's volume is not found either
    theirs = make_ctx(world.project_id + "x", "member")
    client = world.as_ctx(theirs)
    resp = await client.post(f"/volume/v3/{theirs.project_id}/volumes", json={"volume": {"size": 1}})
    assert resp.status_code == 202, resp.text
    assert (await _attach(world, sid, resp.json()["volume"]["id"])).status_code == 404
    # bad bodies
    for body, version in (({"volumeId": vid, "tag": "t"}, "2.48"), ({"volumeId": vid, "delete_on_termination": True}, "2.78"),
                          ({"volumeId": "nope"}, V), ({"volumeId": vid, "device": "/etc/passwd"}, V), ({}, V)):
        resp = await world.member.post(f"{API}/servers/{sid}/os-volume_attachments",
                                       json={"volumeAttachment": body}, headers=mv(version))
        assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest", (body, resp.text)
    # a reader may not attach
    resp = await world.reader.post(f"{API}/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": vid}})
    assert resp.status_code == 403, resp.text
    assert (await _attach(world, sid, vid)).status_code == 200
    await _wait_volume(world, vid, "in-use")
    # attached again to the same server, or to another while not multiattach: 400
    resp = await _attach(world, sid, vid)
    assert resp.status_code == 400 and "already attached" in fault_of(resp)[2], resp.text
    resp = await _attach(world, other_sid, vid)
    assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest", resp.text
    assert "in-use" in fault_of(resp)[2] or "attached" in fault_of(resp)[2]
    # a device in use is a 409
    vid2 = await _volume(world)
    resp = await _attach(world, sid, vid2, device="/dev/vdb")
    assert resp.status_code == 409, resp.text
    assert (await _wait_volume(world, vid2, "available"))["attachments"] == []
    # detach / show of a volume not attached here: 404
    assert (await world.member.delete(f"{API}/servers/{other_sid}/os-volume_attachments/{vid}")).status_code == 404
    assert (await world.member.get(f"{API}/servers/{other_sid}/os-volume_attachments/{vid}")).status_code == 404
    # swap: 403 for a member, 409 for the admin; PUT with the same volume before 2.85: 400
    put = {"volumeAttachment": {"volumeId": vid2}}
    assert (await world.member.put(f"{API}/servers/{sid}/os-volume_attachments/{vid}", json=put)).status_code == 403
    admin = world.as_ctx(make_ctx(world.project_id, "admin"))
    resp = await admin.put(f"{API}/servers/{sid}/os-volume_attachments/{vid}", json=put)
    assert resp.status_code == 409 and "not supported" in fault_of(resp)[2], resp.text
    resp = await admin.put(f"{API}/servers/{sid}/os-volume_attachments/{vid}",
                           json={"volumeAttachment": {"volumeId": missing}})
    assert resp.status_code == 400, resp.text
    resp = await admin.put(f"{API}/servers/{sid}/os-volume_attachments/{missing}", json=put)
    assert resp.status_code == 404, resp.text
    resp = await world.member.put(f"{API}/servers/{sid}/os-volume_attachments/{vid}",
                                  json={"volumeAttachment": {"volumeId": vid}})
    assert resp.status_code == 400, resp.text
    # a deleting in-use volume is refused by the volume service (400)
    resp = await world.member.delete(_vol_url(world, f"/{vid}"))
    assert resp.status_code == 400, resp.text
    # locked server: 409
    assert (await world.action(sid, {"lock": None})).status_code == 202
    resp = await world.member.delete(f"{API}/servers/{sid}/os-volume_attachments/{vid}")
    assert resp.status_code == 409, resp.text


async def test_a_failed_driver_attach_leaves_the_volume_available(world: World) -> None:
    sid = (await world.active("f", metadata={"cumulo_fake_fail": "attach_volume"}))["id"]
    vid = await _volume(world)
    assert (await _attach(world, sid, vid)).status_code == 200
    await _wait_volume(world, vid, "available")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (await world.member.get(f"{API}/servers/{sid}/os-volume_attachments")).json()["volumeAttachments"]:
        assert loop.time() < deadline
        await asyncio.sleep(0.02)


async def test_online_extend_reaches_the_driver(world: World) -> None:
    sid = (await world.active("x"))["id"]
    vid = await _volume(world)
    assert (await _attach(world, sid, vid)).status_code == 200
    await _wait_volume(world, vid, "in-use")
    resp = await world.member.post(_vol_url(world, f"/{vid}/action"), json={"os-extend": {"new_size": 2}},
                                   headers={"OpenStack-API-Version": "volume 3.42"})
    assert resp.status_code == 202, resp.text
    assert (await _wait_volume(world, vid, "in-use"))["size"] == 2
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        out = await world.action(sid, {"os-getConsoleOutput": {}})
        if f"volume {vid} grew to {2 << 30} bytes" in out.json()["output"]:
            break
        assert loop.time() < deadline, out.text
        await asyncio.sleep(0.05)


async def test_reconcile_settles_half_done_attaches_and_detaches(world: World) -> None:
    """What a restart finds: an attach cut short before the driver (rolled back), one cut short
    after it (completed), a detach cut short (finished), and a volume the driver holds with no
    mapping (detached)."""
    sid = (await world.active("r"))["id"]
    host = await _host_of(world, sid)
    mgr = next(m for m in world.cloud.managers if m.host == host)
    node, driver = mgr.node, mgr.driver
    client = world.cloud.services.compute.volumes
    ctx = make_ctx(world.project_id, "member")
    before, after, detaching, stray = [await _volume(world) for _ in range(4)]
    rows = {}
    for i, vid in enumerate((before, after, detaching)):
        async with world.cloud.db.write() as conn:
            rows[vid] = await volume_records.insert(conn, instance_uuid=sid, source_type="volume",
                                                    destination_type="volume", volume_id=vid,
                                                    device_name=f"/dev/vd{'bcd'[i]}")
        att = await client.attachment_create(ctx, vid, sid)
        async with world.cloud.db.write() as conn:
            await volume_records.update(conn, rows[vid]["uuid"], attachment_id=att["id"])
        rows[vid]["attachment_id"] = att["id"]
    # `after` and `detaching` reached the driver; `detaching` completed, then began detaching
    from cumulo.compute.agent import disks

    for vid in (after, detaching, stray):
        [disk] = await disks.disk_specs([{**rows.get(vid, {}), "volume_id": vid, "destination_type": "volume"}],
                                        node.host_volumes)
        await driver.attach_volume(sid, disk)
    await client.attachment_complete(ctx, rows[detaching]["attachment_id"])
    await client.begin_detaching(ctx, detaching)

    await agent_volumes.reconcile(node)

    assert (await _wait_volume(world, before, "available"))["attachments"] == []
    assert (await _wait_volume(world, after, "in-use"))["attachments"][0]["server_id"] == sid
    await _wait_volume(world, detaching, "available")
    assert sorted(await driver.attached_volumes(sid)) == [after]
    async with world.cloud.db.read() as conn:
        assert [r["volume_id"] for r in await volume_records.of_instance(conn, sid)] == [after]


async def test_os_volumes_and_os_snapshots_proxies_below_2_36(world: World) -> None:
    h = mv("2.35")
    resp = await world.member.post(f"{API}/os-volumes", json={"volume": {"size": 1, "display_name": "old",
                                                                         "metadata": {"k": "v"}}}, headers=h)
    assert resp.status_code == 200, resp.text
    made = resp.json()["volume"]
    assert set(made) == {"id", "status", "size", "availabilityZone", "createdAt", "attachments", "displayName",
                         "displayDescription", "volumeType", "snapshotId", "metadata"}
    assert (made["displayName"], made["size"], made["attachments"], made["metadata"]) == ("old", 1, [{}], {"k": "v"})
    vid = made["id"]
    await _wait_volume(world, vid, "available")
    for path in ("os-volumes", "os-volumes/detail"):
        listed = (await world.member.get(f"{API}/{path}", headers=h)).json()["volumes"]
        assert [v["id"] for v in listed] == [vid]
    assert (await world.other.get(f"{API}/os-volumes/{vid}", headers=h)).status_code == 404
    sid = (await world.active("p"))["id"]
    assert (await _attach(world, sid, vid)).status_code == 200
    await _wait_volume(world, vid, "in-use")
    shown = (await world.member.get(f"{API}/os-volumes/{vid}", headers=h)).json()["volume"]
    assert shown["attachments"] == [{"id": vid, "volumeId": vid, "serverId": sid, "device": "/dev/vdb"}]
    # snapshots (force: the volume is in use)
    resp = await world.member.post(f"{API}/os-snapshots", json={"snapshot": {"volume_id": vid, "force": True,
                                                                             "display_name": "s"}}, headers=h)
    assert resp.status_code == 200, resp.text
    snap = resp.json()["snapshot"]
    assert set(snap) == {"id", "volumeId", "status", "size", "createdAt", "displayName", "displayDescription"}
    assert (snap["volumeId"], snap["displayName"]) == (vid, "s")
    listed = (await world.member.get(f"{API}/os-snapshots/detail", headers=h)).json()["snapshots"]
    assert [s["id"] for s in listed] == [snap["id"]]
    # an in-use volume cannot be deleted; bad bodies; 404 from 2.36
    assert (await world.member.delete(f"{API}/os-volumes/{vid}", headers=h)).status_code == 400
    bad = await world.member.post(f"{API}/os-volumes", json={"volume": {"size": 0}}, headers=h)
    assert bad.status_code == 400 and fault_of(bad)[0] == "badRequest"
    assert (await world.member.get(f"{API}/os-volumes", headers=mv("2.36"))).status_code == 404
    for method in ("GET", "DELETE"):  # Tempest's empty-id negative tests
        assert (await world.member.request(method, f"{API}/os-volumes/", headers=h)).status_code == 404
    assert (await world.reader.post(f"{API}/os-volumes", json={"volume": {"size": 1}}, headers=h)).status_code == 403
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (await world.member.get(f"{API}/os-snapshots/{snap['id']}", headers=h)).json()["snapshot"]["status"] != "available":
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    assert (await world.member.delete(f"{API}/os-snapshots/{snap['id']}", headers=h)).status_code == 202
