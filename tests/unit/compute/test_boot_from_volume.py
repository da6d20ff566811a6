"""Boot from volume and block_device_mapping_v2 against the in-process cloud (fake driver, the real
volume service and worker on a file store): image -> volume, an existing volume, blank volumes,
ephemeral and swap; what the driver is told; delete_on_termination; and the refusals with Nova's
faults. The real VM boot is tests/system/test_volume_boot_cli.py's."""

from __future__ import annotations

import asyncio
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

from cumulo.compute import volume_records

V = "2.79"
MISSING = "6f1d2a9e-0000-4000-8000-000000000000"


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _vol_url(world: World, suffix: str = "") -> str:
    return f"/volume/v3/{world.project_id}/volumes{suffix}"


async def _wait_volume(world: World, vid: str, status: str | None, timeout: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    body: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        resp = await world.member.get(_vol_url(world, f"/{vid}"), headers={"OpenStack-API-Version": "volume 3.60"})
        if status is None and resp.status_code == 404:
            return {}
        assert resp.status_code == 200, resp.text
        body = resp.json()["volume"]
        if body["status"] == status:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"volume {vid} not {status}: {body.get('status')}")


async def _volume(world: World, **extra: Any) -> str:
    resp = await world.member.post(_vol_url(world), json={"volume": {"size": 1, **extra}})
    assert resp.status_code == 202, resp.text
    vid = str(resp.json()["volume"]["id"])
    await _wait_volume(world, vid, "available")
    return vid


async def _flavor(world: World, name: str, **numbers: Any) -> str:
    body = {"flavor": {"name": name, "ram": 64, "vcpus": 1, "disk": 0, **numbers}}
    resp = await world.admin.post(f"{API}/flavors", json=body, headers=mv("2.1"))
    assert resp.status_code == 200, resp.text
    return str(resp.json()["flavor"]["id"])


async def _boot(world: World, bdms: list[dict[str, Any]], *, flavor: str | None = None, **extra: Any) -> Any:
    server = {"name": "bfv", "imageRef": "", "flavorRef": flavor or "42",
              "block_device_mapping_v2": bdms, "networks": "none", **extra}
    return await world.member.post(f"{API}/servers", json={"server": server}, headers=mv(V))


def _driver_record(world: World, sid: str) -> dict[str, Any]:
    for m in world.cloud.managers:
        rec = getattr(m.driver, "_instances", {}).get(sid)
        if rec is not None:
            return dict(rec)
    raise AssertionError(f"no driver holds {sid}")


async def _volume_of(world: World, sid: str) -> list[dict[str, Any]]:
    async with world.cloud.db.read() as conn:
        return await volume_records.of_instance(conn, sid)


async def test_boot_from_an_image_volume_then_again_from_the_same_volume(world: World) -> None:
    flavor = await _flavor(world, "zero-disk")
    resp = await _boot(world, [{"uuid": world.image_id, "source_type": "image", "destination_type": "volume",
                                "boot_index": 0, "volume_size": 1}], flavor=flavor)
    assert resp.status_code == 202, resp.text
    sid = resp.json()["server"]["id"]
    server = await wait_status(world.member, sid, "ACTIVE", version=V)
    assert server["image"] == ""  # volume-backed, as Nova shows it
    [att] = server["os-extended-volumes:volumes_attached"]
    vid = att["id"]
    assert att["delete_on_termination"] is False
    volume = await _wait_volume(world, vid, "in-use")
    assert volume["bootable"] == "true" and volume["volume_image_metadata"]["image_id"] == world.image_id
    [root] = _driver_record(world, sid)["disks"]
    assert root["volume_id"] == vid and root["boot_index"] == 0 and root["device_name"] == "/dev/vda"
    [row] = await _volume_of(world, sid)
    assert row["source_type"] == "image" and row["attachment_id"] and row["connection_info"]
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    await _wait_volume(world, vid, "available")  # kept: no delete_on_termination
    # again, from the same (existing) volume
    resp = await _boot(world, [{"uuid": vid, "source_type": "volume", "destination_type": "volume",
                                "boot_index": "0", "delete_on_termination": True}], flavor=flavor)
    assert resp.status_code == 202, resp.text
    sid = resp.json()["server"]["id"]
    await wait_status(world.member, sid, "ACTIVE", version=V)
    assert _driver_record(world, sid)["disks"][0]["volume_id"] == vid
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    await _wait_volume(world, vid, None)  # delete_on_termination this time


async def test_blank_volume_ephemeral_and_swap_mappings(world: World) -> None:
    flavor = await _flavor(world, "eph", disk=1, swap=128, **{"OS-FLV-EXT-DATA:ephemeral": 2})
    resp = await _boot(world, [
        {"source_type": "blank", "destination_type": "volume", "volume_size": 1, "delete_on_termination": True},
        {"source_type": "blank", "destination_type": "local", "volume_size": 1},
        {"source_type": "blank", "destination_type": "local", "guest_format": "swap", "volume_size": 64},
    ], flavor=flavor, imageRef=world.image_id)
    assert resp.status_code == 202, resp.text
    sid = resp.json()["server"]["id"]
    server = await wait_status(world.member, sid, "ACTIVE", version=V)
    assert server["image"]["id"] == world.image_id
    rec = _driver_record(world, sid)
    assert rec["flavor"]["ephemeral_gb"] == 1 and rec["flavor"]["swap"] == 64
    [data] = rec["disks"]
    assert data.get("boot_index") is None and data["device_name"] == "/dev/vdb"
    vid = data["volume_id"]
    await _wait_volume(world, vid, "in-use")
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    await _wait_volume(world, vid, None)


async def test_refusals_with_novas_faults(world: World) -> None:
    blank = await _volume(world)
    resp = await _boot(world, [{"uuid": blank, "source_type": "volume", "destination_type": "volume",
                                "boot_index": 0}])
    assert resp.status_code == 400 and f"Block Device {blank} is not bootable." in fault_of(resp)[2], resp.text
    resp = await _boot(world, [{"uuid": MISSING, "source_type": "volume", "destination_type": "volume",
                                "boot_index": 0}])
    assert resp.status_code == 400
    assert fault_of(resp)[2] == f"Block Device Mapping is Invalid: failed to get volume {MISSING}."
    resp = await _boot(world, [{"uuid": MISSING, "source_type": "snapshot", "destination_type": "volume",
                                "boot_index": 0}])
    assert resp.status_code == 400 and "failed to get snapshot" in fault_of(resp)[2]
    resp = await _boot(world, [{"uuid": MISSING, "source_type": "image", "destination_type": "volume",
                                "boot_index": 0, "volume_size": 1}])
    assert resp.status_code == 400 and "failed to get image" in fault_of(resp)[2]
    # a volume in use elsewhere
    bootable = await _volume(world, imageRef=world.image_id)
    sid = (await world.active("holder"))["id"]
    resp = await world.member.post(f"{API}/servers/{sid}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": bootable}})
    assert resp.status_code == 200, resp.text
    await _wait_volume(world, bootable, "in-use")
    resp = await _boot(world, [{"uuid": bootable, "source_type": "volume", "destination_type": "volume",
                                "boot_index": 0}])
    assert resp.status_code == 400
    assert "Invalid volume: volume" in fault_of(resp)[2] and "Currently in 'in-use'" in fault_of(resp)[2]
    # one volume, two servers
    spare = await _volume(world, imageRef=world.image_id)
    resp = await _boot(world, [{"uuid": spare, "source_type": "volume", "destination_type": "volume",
                                "boot_index": 0}], max_count=2)
    assert resp.status_code == 400 and "Cannot attach one or more volumes to multiple instances" in fault_of(resp)[2]
    # too much ephemeral for the flavor (m1.nano has none)
    resp = await _boot(world, [{"source_type": "blank", "destination_type": "local", "volume_size": 1}],
                       flavor="42", imageRef=world.image_id)
    assert resp.status_code == 400 and "Ephemeral disks requested are larger" in fault_of(resp)[2]
    # nothing was reserved by the refused requests: the spare volume is still available
    await _wait_volume(world, spare, "available")


async def test_snapshot_of_a_volume_backed_server_and_booting_from_it(world: World) -> None:
    import json

    resp = await _boot(world, [{"uuid": world.image_id, "source_type": "image", "destination_type": "volume",
                                "boot_index": 0, "volume_size": 1, "delete_on_termination": True}])
    assert resp.status_code == 202, resp.text
    sid = resp.json()["server"]["id"]
    await wait_status(world.member, sid, "ACTIVE", version=V)
    [row] = await _volume_of(world, sid)
    resp = await world.action(sid, {"createImage": {"name": "bfv-snap", "metadata": {"k": "v"}}}, version="2.45")
    assert resp.status_code == 202, resp.text
    image_id = resp.json()["image_id"]
    image = (await world.member.get(f"/image/v2/images/{image_id}")).json()
    assert image["status"] == "active" and image["size"] == 0 and image["k"] == "v"
    assert image["bdm_v2"] == "True" and image["root_device_name"] == "/dev/vda"
    [mapping] = json.loads(image["block_device_mapping"])
    assert mapping["source_type"] == "snapshot" and mapping["boot_index"] == 0 and mapping["volume_size"] == 1
    snap = (await world.member.get(f"/volume/v3/{world.project_id}/snapshots/{mapping['snapshot_id']}")).json()
    assert snap["snapshot"]["volume_id"] == row["volume_id"]
    # not re-imaged, not backed up (Nova's refusals for volume-backed servers)
    resp = await world.action(sid, {"rebuild": {"imageRef": world.image_id}})
    assert resp.status_code == 400 and "volume-backed" in fault_of(resp)[2]
    resp = await world.action(sid, {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}})
    assert resp.status_code == 400 and "volume-backed" in fault_of(resp)[2]
    # booting the snapshot image makes a new volume from the snapshot, as the root
    for _ in range(200):
        got = (await world.member.get(f"/volume/v3/{world.project_id}/snapshots/{mapping['snapshot_id']}")).json()
        if got["snapshot"]["status"] == "available":
            break
        await asyncio.sleep(0.02)
    resp = await world.member.post(f"{API}/servers", json={"server": {
        "name": "from-snap", "imageRef": image_id, "flavorRef": "42", "networks": "none"}}, headers=mv(V))
    assert resp.status_code == 202, resp.text
    sid2 = resp.json()["server"]["id"]
    server = await wait_status(world.member, sid2, "ACTIVE", version=V)
    assert server["image"] == ""
    [root] = _driver_record(world, sid2)["disks"]
    assert root["boot_index"] == 0 and root["volume_id"] != row["volume_id"]
    [new_row] = await _volume_of(world, sid2)
    assert new_row["source_type"] == "snapshot" and new_row["snapshot_id"] == mapping["snapshot_id"]
    for s in (sid2, sid):
        assert (await world.member.delete(f"{API}/servers/{s}")).status_code == 204
        await wait_gone(world.member, s)
    await _wait_volume(world, root["volume_id"], None)


async def test_a_container_image_volume_cannot_be_booted(world: World) -> None:
    from servers_support import upload_image

    image = await upload_image(world.member, "ct-raw", hypervisor_type="container")
    resp = await _boot(world, [{"uuid": image, "source_type": "image", "destination_type": "volume",
                                "boot_index": 0, "volume_size": 1}])
    assert resp.status_code == 409, resp.text
    assert fault_of(resp)[:2] == ("conflictingRequest", 409)
    assert "A container cannot boot from a volume" in fault_of(resp)[2]


async def test_resize_of_a_volume_backed_server_claims_no_local_root(world: World) -> None:
    from cumulo.compute import instances as inst_db

    resp = await _boot(world, [{"uuid": world.image_id, "source_type": "image", "destination_type": "volume",
                                "boot_index": 0, "volume_size": 1, "delete_on_termination": True}])
    assert resp.status_code == 202, resp.text
    sid = resp.json()["server"]["id"]
    await wait_status(world.member, sid, "ACTIVE", version=V)
    bigger = await _flavor(world, "bigger", disk=5, ram=128)
    resp = await world.action(sid, {"resize": {"flavorRef": bigger}})
    assert resp.status_code == 202, resp.text
    await wait_status(world.member, sid, "VERIFY_RESIZE", version=V)
    async with world.cloud.db.read() as conn:
        row = await inst_db.get(conn, sid)
    assert row is not None and row["root_gb"] == 0 and row["memory_mb"] == 128
    assert (await world.action(sid, {"confirmResize": None})).status_code == 204
    await wait_status(world.member, sid, "ACTIVE", version=V)
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
