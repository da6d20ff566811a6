"""Cinder's initialize/terminate_connection in the volume service (issue 14, volumes from any host):
a connector from another host than the volume's, with an underlay address, makes the volume host's
worker export the volume (its connection_info is the worker's answer, `nbd`); the attachment's
delete stops that export; a connector from the volume host (or one machine: no address) gets the
file as before, and no call is made."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from _asgi_ctx import ctx_for
from fake_worker import FakeWorker

from cumulo import errors
from cumulo.volume.models import volumes
from cumulo.volume.service import VolumeService

V = (3, 60)
CTX = ctx_for("project-a", "member")
SERVICE = ctx_for("project-a", "member", "service")


class ExportingWorker(FakeWorker):
    def __init__(self, svc: VolumeService) -> None:
        super().__init__(svc.db)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.refuse = False

    async def initialize_connection(self, volume_host: str, volume_id: str, attachment_id: str, consumer: str,
                                    mode: str) -> dict[str, Any]:
        self.calls.append(("initialize", (volume_host, volume_id, attachment_id, consumer, mode)))
        if self.refuse:
            raise errors.InvalidState("no export")
        return {"driver_volume_type": "nbd", "data": {"volume_id": volume_id, "access_mode": mode, "host": consumer,
                                                      "target_host": "198.18.0.2", "target_port": 10809,
                                                      "export": "ab" * 16, "psk_identity": f"cumulo-{attachment_id}"}}

    async def terminate_connection(self, volume_host: str, attachment_id: str) -> None:
        self.calls.append(("terminate", (volume_host, attachment_id)))


@pytest.fixture
async def setup(svc: VolumeService) -> tuple[VolumeService, ExportingWorker, str, str]:
    worker = ExportingWorker(svc)
    svc.worker = worker
    vol = await svc.create_volume(CTX, {"volume": {"size": 1, "name": "v"}}, version=V)
    async with svc.db.write() as conn:  # the real worker records its host when the file is made
        await conn.execute(sa.update(volumes).where(volumes.c.id == vol["id"]).values(host="host1"))
    att = await svc.create_attachment(CTX, {"attachment": {"volume_uuid": vol["id"], "instance_uuid": str(uuid.uuid4())}},
                                      version=V)
    return svc, worker, str(vol["id"]), str(att["id"])


def connector(host: str, ip: str = "") -> dict[str, Any]:
    doc = {"host": host, "mountpoint": "/dev/vdb", "platform": "x86_64", "os_type": "linux"}
    if ip:
        doc["ip"] = ip
    return doc


async def test_another_hosts_connector_gets_the_volume_hosts_export_and_the_delete_stops_it(setup: Any) -> None:
    svc, worker, vid, att_id = setup
    att = await svc.update_attachment(CTX, att_id, {"attachment": {"connector": connector("host2", "198.18.0.3")}})
    assert worker.calls == [("initialize", ("host1", vid, att_id, "host2", "rw"))]
    assert att["connection_info"]["driver_volume_type"] == "nbd" and att["status"] == "attaching"
    assert (await svc.get_attachment(CTX, att_id))["connection_info"]["data"]["export"] == "ab" * 16
    await svc.complete_attachment(CTX, att_id)
    await svc.delete_attachment(SERVICE, att_id)
    assert worker.calls[-1] == ("terminate", ("host1", att_id))
    assert (await svc.get_volume(CTX, vid))["status"] == "available"


@pytest.mark.parametrize("conn", [connector("host1", "198.18.0.2"), connector("host2")], ids=["volume-host", "no-ip"])
async def test_the_volume_hosts_own_connector_and_one_machine_get_the_file(setup: Any, conn: dict[str, Any]) -> None:
    svc, worker, vid, att_id = setup
    att = await svc.update_attachment(CTX, att_id, {"attachment": {"connector": conn}})
    assert att["connection_info"]["driver_volume_type"] == "cumulo_file"
    await svc.delete_attachment(SERVICE, att_id)
    assert worker.calls == []


async def test_a_refused_export_leaves_the_attachment_reserved(setup: Any) -> None:
    svc, worker, vid, att_id = setup
    worker.refuse = True
    with pytest.raises(errors.InvalidState):
        await svc.update_attachment(CTX, att_id, {"attachment": {"connector": connector("host2", "198.18.0.3")}})
    att = await svc.get_attachment(CTX, att_id)
    assert att["status"] == "reserved" and att["connection_info"] is None


async def test_an_attachment_moving_to_the_volume_host_stops_its_export(setup: Any) -> None:
    svc, worker, vid, att_id = setup
    await svc.update_attachment(CTX, att_id, {"attachment": {"connector": connector("host2", "198.18.0.3")}})
    att = await svc.update_attachment(CTX, att_id, {"attachment": {"connector": connector("host1", "198.18.0.2")}})
    assert att["connection_info"]["driver_volume_type"] == "cumulo_file"
    assert worker.calls[-1] == ("terminate", ("host1", att_id))


async def test_os_detach_of_an_exported_attachment_stops_the_export(setup: Any) -> None:
    svc, worker, vid, att_id = setup
    await svc.update_attachment(CTX, att_id, {"attachment": {"connector": connector("host2", "198.18.0.3")}})
    await svc.complete_attachment(CTX, att_id)
    await svc.detach(ctx_for("project-a", "admin"), vid, att_id, force=True)
    assert worker.calls[-1] == ("terminate", ("host1", att_id))


async def test_a_server_that_moved_off_the_volume_host_gets_an_export_for_its_attachment(setup: Any) -> None:
    """Nova's attachment update at a migration or evacuation: an attached attachment whose server
    now runs on another host gets that host's connection (the export), and back on the volume host
    its file again (the export stopped); the volume stays in-use throughout."""
    svc, worker, vid, att_id = setup
    await svc.update_attachment(CTX, att_id, {"attachment": {"connector": connector("host1", "198.18.0.2")}})
    await svc.complete_attachment(CTX, att_id)
    moved = await svc.reconnect_attachment(SERVICE, att_id, connector("host3", "198.18.0.4"))
    assert worker.calls == [("initialize", ("host1", vid, att_id, "host3", "rw"))]
    assert moved["connection_info"]["driver_volume_type"] == "nbd" and moved["status"] == "attached"
    assert moved["attached_host"] == "host3" and (await svc.get_volume(CTX, vid))["status"] == "in-use"
    back = await svc.reconnect_attachment(SERVICE, att_id, connector("host1", "198.18.0.2"))
    assert back["connection_info"]["driver_volume_type"] == "cumulo_file"
    assert worker.calls[-1] == ("terminate", ("host1", att_id))
