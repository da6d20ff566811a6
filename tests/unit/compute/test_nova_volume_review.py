"""Findings of the issue-11 review on Nova's volume side: each test failed before its fix."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_world,
    mv,
    settings,
    wait_gone,
    wait_status,
)

from cumulo import errors
from cumulo.context import RequestContext


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def test_os_volumes_create_with_a_size_of_thousands_of_digits_is_a_400(world: World) -> None:
    resp = await world.member.post(f"{API}/os-volumes", json={"volume": {"size": "1" * 5000}}, headers=mv("2.35"))
    assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest"


async def test_a_volume_backed_snapshot_cut_short_by_the_quota_leaves_no_volume_snapshot(world: World) -> None:
    """createImage of a server with two volumes when the project may hold one more snapshot: the
    second is refused (413) and the first, still `creating` then, must go too."""
    server = {"name": "bfv", "imageRef": "", "flavorRef": "42", "networks": "none", "block_device_mapping_v2": [
        {"uuid": world.image_id, "source_type": "image", "destination_type": "volume", "boot_index": 0,
         "volume_size": 1, "delete_on_termination": True},
        {"source_type": "blank", "destination_type": "volume", "volume_size": 1, "delete_on_termination": True}]}
    resp = await world.member.post(f"{API}/servers", json={"server": server}, headers=mv("2.79"))
    assert resp.status_code == 202, resp.text
    sid = resp.json()["server"]["id"]
    await wait_status(world.member, sid, "ACTIVE", version="2.79")
    admin = RequestContext(user_id="admin", project_id="admin", roles=frozenset({"admin", "member", "reader"}))
    await world.cloud.services.volume.update_quota_set(admin, world.project_id, {"quota_set": {"snapshots": 1}})
    resp = await world.action(sid, {"createImage": {"name": "over"}}, version="2.45")
    assert resp.status_code == 413, resp.text
    snaps = f"/volume/v3/{world.project_id}/snapshots"
    deadline = asyncio.get_running_loop().time() + 30
    left = (await world.member.get(snaps)).json()["snapshots"]
    while left and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        left = (await world.member.get(snaps)).json()["snapshots"]
    assert left == []
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)


async def test_an_attach_the_agent_cannot_be_told_of_gives_the_volume_back(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = (await world.active("att"))["id"]
    resp = await world.member.post(f"/volume/v3/{world.project_id}/volumes", json={"volume": {"size": 1}})
    vid = resp.json()["volume"]["id"]
    vol_url = f"/volume/v3/{world.project_id}/volumes/{vid}"
    for _ in range(400):
        if (await world.member.get(vol_url)).json()["volume"]["status"] == "available":
            break
        await asyncio.sleep(0.02)

    async def bus_down(*args: Any, **kwargs: Any) -> None:
        raise errors.CumuloError("the message bus is down")

    monkeypatch.setattr(world.cloud.services.compute.agents, "attach_volume", bus_down)
    resp = await world.member.post(f"{API}/servers/{sid}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": vid}}, headers=mv("2.79"))
    assert resp.status_code == 500, resp.text
    # nothing is left: the volume is not reserved for an attach nobody will do, the server maps nothing
    assert (await world.member.get(vol_url)).json()["volume"]["status"] == "available"
    listed = await world.member.get(f"{API}/servers/{sid}/os-volume_attachments", headers=mv("2.79"))
    assert listed.json()["volumeAttachments"] == []
    monkeypatch.undo()
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)


async def test_a_detach_the_agent_cannot_be_told_of_leaves_the_volume_in_use(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = (await world.active("det"))["id"]
    resp = await world.member.post(f"/volume/v3/{world.project_id}/volumes", json={"volume": {"size": 1}})
    vid = resp.json()["volume"]["id"]
    vol_url = f"/volume/v3/{world.project_id}/volumes/{vid}"

    async def status_is(wanted: str) -> bool:
        for _ in range(400):
            if (await world.member.get(vol_url)).json()["volume"]["status"] == wanted:
                return True
            await asyncio.sleep(0.02)
        return False

    assert await status_is("available")
    resp = await world.member.post(f"{API}/servers/{sid}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": vid}}, headers=mv("2.79"))
    assert resp.status_code == 200, resp.text
    assert await status_is("in-use")

    async def bus_down(*args: Any, **kwargs: Any) -> None:
        raise errors.CumuloError("the message bus is down")

    monkeypatch.setattr(world.cloud.services.compute.agents, "detach_volume", bus_down)
    resp = await world.member.delete(f"{API}/servers/{sid}/os-volume_attachments/{vid}")
    assert resp.status_code == 500, resp.text
    assert (await world.member.get(vol_url)).json()["volume"]["status"] == "in-use"  # not stuck detaching
    monkeypatch.undo()
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)


@pytest.mark.parametrize("extra", [{"disk_bus": {"a": 1}}, {"tag": ["x"]}, {"device_type": "d" * 300},
                                   {"volume_size": 1 << 40}, {"source_type": ["blank"]},
                                   {"destination_type": {"v": 1}}])
async def test_an_image_whose_block_device_mapping_property_is_junk_boots_to_a_400(
        world: World, extra: dict[str, Any]) -> None:
    """An image's block_device_mapping property is the tenant's own JSON (no API schema checked it)."""
    mapping = {"source_type": "blank", "destination_type": "volume", "volume_size": 1, "boot_index": 0, **extra}
    resp = await world.member.post("/image/v2/images", json={
        "name": "bdm", "disk_format": "raw", "container_format": "bare", "bdm_v2": "True",
        "block_device_mapping": json.dumps([mapping])})
    assert resp.status_code == 201, resp.text
    server = {"name": "x", "imageRef": resp.json()["id"], "flavorRef": "42", "networks": "none"}
    resp = await world.member.post(f"{API}/servers", json={"server": server}, headers=mv("2.79"))
    assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest", resp.text


async def test_a_user_cannot_pull_a_connected_attachment_from_under_the_server(world: World) -> None:
    """OSSA-2023-003: a user's Cinder-side delete of an attachment a server is connected through
    would show the volume available while the guest keeps the disk (then transferable to another
    project). Only the compute service deletes it; Nova's detach still works."""
    sid = (await world.active("holder"))["id"]
    vol_base = f"/volume/v3/{world.project_id}"
    vid = (await world.member.post(f"{vol_base}/volumes", json={"volume": {"size": 1}})).json()["volume"]["id"]

    async def status_is(wanted: str) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for _ in range(400):
            body = (await world.member.get(f"{vol_base}/volumes/{vid}")).json()["volume"]
            if body["status"] == wanted:
                return body
            await asyncio.sleep(0.02)
        raise AssertionError(f"volume {vid} not {wanted}: {body.get('status')}")

    await status_is("available")
    resp = await world.member.post(f"{API}/servers/{sid}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": vid}}, headers=mv("2.79"))
    assert resp.status_code == 200, resp.text
    attachment_id = (await status_is("in-use"))["attachments"][0]["attachment_id"]
    h = {"OpenStack-API-Version": "volume 3.44"}
    resp = await world.member.delete(f"{vol_base}/attachments/{attachment_id}", headers=h)
    assert resp.status_code == 409 and "using the Compute API" in resp.text, resp.text
    resp = await world.member.post(f"{vol_base}/volumes/{vid}/action", json={"os-detach": {}}, headers=h)
    assert resp.status_code == 409, resp.text
    await status_is("in-use")
    assert (await world.member.delete(f"{API}/servers/{sid}/os-volume_attachments/{vid}")).status_code == 202
    await status_is("available")
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
