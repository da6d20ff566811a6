"""The agent's reconcile of an attach a restart cut short after the driver recorded the volume
(the runc driver records it before the loop device and mounts): the driver's attach runs again to
make the host's part whole BEFORE the attachment is completed, and a failure there rolls the
attach back (volume available, no mapping, nothing held, a fault) instead of an in-use volume the
host does not have. Fake driver, real volume service and worker (tests/system/test_volume_crash.py
kills a real cloud at that moment)."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import World, make_ctx, make_world, settings  # noqa: F401  (settings is a fixture override)
from test_volume_attachments_api import _host_of, _volume, _wait_volume

from cumulo.compute import instances as inst_db
from cumulo.compute import volume_records
from cumulo.compute import volumes as vol
from cumulo.compute.agent import disks
from cumulo.compute.agent import volumes as agent_volumes
from cumulo.compute.drivers.base import DiskSpec
from cumulo.errors import DriverError


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def _cut_short_after_the_driver(world: World) -> tuple[str, str, Any, Any]:
    """A server with a volume whose attach got as far as the driver's record (attachment attaching)."""
    sid = (await world.active("rc"))["id"]
    host = await _host_of(world, sid)
    node = next(m for m in world.cloud.managers if m.host == host).node
    client = world.cloud.services.compute.volumes
    ctx = make_ctx(world.project_id, "member")
    vid = await _volume(world)
    async with world.cloud.db.write() as conn:
        row = await volume_records.insert(conn, instance_uuid=sid, source_type="volume", destination_type="volume",
                                          volume_id=vid, device_name="/dev/vdb")
    att = await client.attachment_create(ctx, vid, sid)
    await client.attachment_update(ctx, att["id"], vol.connector_for(host, "/dev/vdb"))
    async with world.cloud.db.write() as conn:
        await volume_records.update(conn, row["uuid"], attachment_id=att["id"])
    [disk] = await disks.disk_specs([{**row, "attachment_id": att["id"]}], node.host_volumes)
    await node.driver.attach_volume(sid, disk)
    await _wait_volume(world, vid, "attaching")
    return sid, vid, node, node.driver


async def test_the_driver_completes_before_the_attachment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sid, vid, node, driver = await _cut_short_after_the_driver(world)
    client = world.cloud.services.compute.volumes
    calls: list[str] = []
    real_attach, real_complete = driver.attach_volume, client.attachment_complete

    async def attach_volume(uuid: str, disk: DiskSpec) -> None:
        calls.append(f"driver {disk.volume_id}")
        await real_attach(uuid, disk)

    async def attachment_complete(ctx: Any, attachment_id: str) -> Any:
        calls.append("complete")
        return await real_complete(ctx, attachment_id)

    monkeypatch.setattr(driver, "attach_volume", attach_volume)
    monkeypatch.setattr(client, "attachment_complete", attachment_complete)
    await agent_volumes.reconcile(node)
    assert calls == [f"driver {vid}", "complete"]
    assert (await _wait_volume(world, vid, "in-use"))["attachments"][0]["server_id"] == sid


async def test_a_failed_completion_rolls_the_attach_back(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sid, vid, node, driver = await _cut_short_after_the_driver(world)

    async def attach_volume(uuid: str, disk: DiskSpec) -> None:
        raise DriverError(f"cannot mount volume {disk.volume_id} in container {uuid}")

    monkeypatch.setattr(driver, "attach_volume", attach_volume)
    await agent_volumes.reconcile(node)
    assert (await _wait_volume(world, vid, "available"))["attachments"] == []
    assert await driver.attached_volumes(sid) == []
    async with world.cloud.db.read() as conn:
        assert await volume_records.of_instance(conn, sid) == []
        faults = await inst_db.latest_faults(conn, [sid])  # Nova shows it only on an ERROR server
    assert "cannot mount volume" in faults[sid]["message"], faults


async def test_a_detach_the_driver_cannot_finish_goes_back_in_use(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A detach cut short whose driver detach fails at the restart: the volume is in-use again
    (attached on the host, as before the detach), never left detaching; a fault says why."""
    sid, vid, node, driver = await _cut_short_after_the_driver(world)
    client = world.cloud.services.compute.volumes
    ctx = make_ctx(world.project_id, "member")
    async with world.cloud.db.read() as conn:
        [row] = await volume_records.of_instance(conn, sid)
    await client.attachment_complete(ctx, row["attachment_id"])
    await client.begin_detaching(ctx, vid)
    await _wait_volume(world, vid, "detaching")

    async def detach_volume(uuid: str, volume_id: str, force: bool = False) -> None:
        raise DriverError(f"volume {volume_id} is busy in {uuid}")

    monkeypatch.setattr(driver, "detach_volume", detach_volume)
    await agent_volumes.reconcile(node)
    assert (await _wait_volume(world, vid, "in-use"))["attachments"][0]["server_id"] == sid
    assert await driver.attached_volumes(sid) == [vid]
    async with world.cloud.db.read() as conn:
        assert [r["volume_id"] for r in await volume_records.of_instance(conn, sid)] == [vid]
        faults = await inst_db.latest_faults(conn, [sid])
    assert "is busy" in faults[sid]["message"], faults


async def test_an_attached_volume_goes_through_the_driver_again(world: World,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-use volume the driver holds is attached again (idempotent): what a crash left
    unmounted (a runc growth cut short) is mounted again; the volume stays in-use."""
    sid, vid, node, driver = await _cut_short_after_the_driver(world)
    client = world.cloud.services.compute.volumes
    async with world.cloud.db.read() as conn:
        [row] = await volume_records.of_instance(conn, sid)
    await client.attachment_complete(make_ctx(world.project_id, "member"), row["attachment_id"])
    calls: list[str] = []
    real_attach = driver.attach_volume

    async def attach_volume(uuid: str, disk: DiskSpec) -> None:
        calls.append(disk.volume_id)
        await real_attach(uuid, disk)

    monkeypatch.setattr(driver, "attach_volume", attach_volume)
    await agent_volumes.reconcile(node)
    assert calls == [vid]
    assert (await _wait_volume(world, vid, "in-use"))["attachments"][0]["server_id"] == sid


async def test_a_reservation_the_mapping_never_recorded_is_given_back(world: World) -> None:
    """Killed between the volume's reservation (attachment made) and the mapping's record of the
    attachment id: the restart deletes that attachment (volume available) and the mapping."""
    sid = (await world.active("rv"))["id"]
    host = await _host_of(world, sid)
    node = next(m for m in world.cloud.managers if m.host == host).node
    client = world.cloud.services.compute.volumes
    vid = await _volume(world)
    async with world.cloud.db.write() as conn:
        await volume_records.insert(conn, instance_uuid=sid, source_type="volume", destination_type="volume",
                                    volume_id=vid, device_name="/dev/vdb")
    await client.attachment_create(make_ctx(world.project_id, "member"), vid, sid)
    await _wait_volume(world, vid, "reserved")
    await agent_volumes.reconcile(node)
    assert (await _wait_volume(world, vid, "available"))["attachments"] == []
    async with world.cloud.db.read() as conn:
        assert await volume_records.of_instance(conn, sid) == []


async def test_an_attached_volume_the_driver_holds_is_never_pulled_on_a_failure(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's attach failing at the restart (a QMP timeout on a busy host) leaves an in-use
    volume the driver holds attached (a guest may be using it), with a fault."""
    sid, vid, node, driver = await _cut_short_after_the_driver(world)
    client = world.cloud.services.compute.volumes
    async with world.cloud.db.read() as conn:
        [row] = await volume_records.of_instance(conn, sid)
    await client.attachment_complete(make_ctx(world.project_id, "member"), row["attachment_id"])

    async def attach_volume(uuid: str, disk: DiskSpec) -> None:
        raise DriverError("QMP did not answer")

    monkeypatch.setattr(driver, "attach_volume", attach_volume)
    await agent_volumes.reconcile(node)
    assert (await _wait_volume(world, vid, "in-use"))["attachments"][0]["server_id"] == sid
    assert await driver.attached_volumes(sid) == [vid]
    async with world.cloud.db.read() as conn:
        assert [r["volume_id"] for r in await volume_records.of_instance(conn, sid)] == [vid]
        faults = await inst_db.latest_faults(conn, [sid])
    assert "QMP did not answer" in faults[sid]["message"], faults
