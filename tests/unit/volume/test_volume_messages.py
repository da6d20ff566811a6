"""Cinder's user messages (/messages, 3.3): the volume worker (real, on a file store in tmp) tells
the owner why a create, extend, backup ... failed; the owner lists, shows and deletes them, another
project sees nothing, the admin sees all with all_tenants; below 3.3 the routes are 404."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_ctx import ctx_for
from fake_worker import FakeImages
from vol_support import act, fault, make_volume, show

from cumulo.blockstore import open_store
from cumulo.blockstore.base import StoreConfig, StoreError
from cumulo.db import utcnow
from cumulo.volume.models import volume_messages
from cumulo.volume.service import VolumeService
from cumulo.volume.worker.manager import RESTARTED, VolumeManager
from cumulo.volume.worker_api import NullWorker

IMAGE = "5f0e7a1c-0d7e-4b8e-9a0e-1c2b3d4e5f60"


@pytest.fixture
async def manager(svc: VolumeService, tmp_path: Path) -> VolumeManager:
    bogus = tmp_path / "not-a-qcow2"
    bogus.write_bytes(b"this is no qcow2 image at all\n" * 100)

    async def image_files(image_id: str) -> tuple[Path, str]:
        return bogus, "qcow2"

    m = VolumeManager(svc.db, open_store("file", StoreConfig.under(svc.conf.state_dir)), "host1",
                      image_files=image_files)
    await m.start()
    svc.worker = m
    return m


async def messages_of(c: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    r = await c.get("/messages", params=params)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["messages"]
    return found


async def test_a_bad_image_create_tells_its_owner_only(manager: VolumeManager, images: FakeImages,
                                                       alice: httpx.AsyncClient, bob: httpx.AsyncClient,
                                                       admin: httpx.AsyncClient) -> None:
    images.add(IMAGE, owner="project-a")
    vol = await make_volume(alice, 1, imageRef=IMAGE)
    shown = await show(alice, vol["id"])
    assert shown["status"] == "error"
    found = await messages_of(alice)
    assert len(found) == 1, found
    m = found[0]
    assert m["resource_uuid"] == vol["id"] and m["resource_type"] == "VOLUME"
    assert m["event_id"] == "VOLUME_VOLUME_005_012" and m["message_level"] == "ERROR"
    assert m["user_message"].startswith("copy image to volume: ")
    async with manager.db.read() as conn:
        reason = await conn.scalar(sa_error_message(vol["id"]))
    assert reason and reason in m["user_message"]
    created = dt.datetime.fromisoformat(m["created_at"])
    assert dt.datetime.fromisoformat(m["guaranteed_until"]) - created == dt.timedelta(days=30)
    assert m["request_id"].startswith("req-")
    assert {link["rel"] for link in m["links"]} == {"self", "bookmark"}
    # show; another project sees nothing and cannot show or delete it
    r = await alice.get(f"/messages/{m['id']}")
    assert r.status_code == 200 and r.json()["message"] == m
    assert await messages_of(bob) == []
    fault(await bob.get(f"/messages/{m['id']}"), 404, "itemNotFound")
    fault(await bob.delete(f"/messages/{m['id']}"), 404, "itemNotFound")
    # the admin: its own project without all_tenants, every project with it
    assert await messages_of(admin) == []
    assert [x["id"] for x in await messages_of(admin, all_tenants="1")] == [m["id"]]
    assert [x["id"] for x in await messages_of(admin, project_id="project-a")] == [m["id"]]
    assert await messages_of(bob, project_id="project-a") == []  # only the admin picks a project
    # filters (3.5+): by resource and event
    assert len(await messages_of(alice, resource_uuid=vol["id"])) == 1
    assert await messages_of(alice, event_id="VOLUME_VOLUME_007_010") == []
    # the owner deletes it
    assert (await alice.delete(f"/messages/{m['id']}")).status_code == 204
    fault(await alice.get(f"/messages/{m['id']}"), 404, "itemNotFound")
    assert await messages_of(alice) == []


def sa_error_message(volume_id: str) -> Any:
    from cumulo.volume.models import volumes
    return volumes.select().with_only_columns(volumes.c.error_message).where(volumes.c.id == volume_id)


async def test_worker_failures_and_a_restart_leave_messages(svc: VolumeService, manager: VolumeManager,
                                                            alice: httpx.AsyncClient,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    vol = await make_volume(alice, 1)

    async def broken_extend(volume_id: str, size: int) -> None:
        raise StoreError("no space left to grow")

    async def broken_backup(volume_id: str, backup_id: str) -> Any:
        raise StoreError("backup dir unwritable")

    monkeypatch.setattr(manager.store, "extend", broken_extend)
    monkeypatch.setattr(manager.store, "backup", broken_backup)
    assert (await act(alice, vol["id"], "os-extend", {"new_size": 2})).status_code == 202
    assert (await show(alice, vol["id"]))["status"] == "error_extending"
    other = await make_volume(alice, 1)
    r = await alice.post("/backups", json={"backup": {"volume_id": other["id"]}})
    assert r.status_code == 202, r.text
    backup_id = r.json()["backup"]["id"]
    by_event = {m["event_id"]: m for m in await messages_of(alice)}
    assert by_event["VOLUME_VOLUME_007_010"]["user_message"] == "extend volume: no space left to grow"
    assert by_event["VOLUME_VOLUME_BACKUP_013_020"]["resource_uuid"] == backup_id
    assert by_event["VOLUME_VOLUME_BACKUP_013_020"]["user_message"] == "create backup: backup dir unwritable"
    # a create the worker never finished: the restart's reconcile puts it in error, with a message
    svc.worker = NullWorker()
    cut = await make_volume(alice, 1)
    await manager.start()
    assert (await show(alice, cut["id"]))["status"] == "error"
    mine = await messages_of(alice, resource_uuid=cut["id"])
    assert [m["user_message"] for m in mine] == [
        "create volume from backend storage: " + RESTARTED.format("creating")]


async def test_versions_and_expiry(svc: VolumeService, manager: VolumeManager,
                                   client: Callable[..., httpx.AsyncClient], alice: httpx.AsyncClient) -> None:
    old = client(ctx_for("project-a", "member"), version="3.2")
    fault(await old.get("/messages"), 404, "itemNotFound")
    at_3_3 = client(ctx_for("project-a", "member"), version="3.3")
    assert (await at_3_3.get("/messages")).json() == {"messages": []}
    fault(await alice.get("/messages/not-a-message"), 404, "itemNotFound")
    fault(await alice.get("/messages", params={"sort": "bogus:asc"}), 400, "badRequest")
    now = utcnow()
    async with svc.db.write() as conn:
        for n, expires in enumerate((now - dt.timedelta(seconds=1), now + dt.timedelta(days=1))):
            await conn.execute(volume_messages.insert().values(
                id=f"00000000-0000-4000-8000-00000000000{n}", project_id="project-a", request_id="req-x",
                resource_type="VOLUME", resource_uuid=None, event_id="VOLUME_VOLUME_001_001",
                message_level="ERROR", user_message="x", created_at=now - dt.timedelta(days=30),
                expires_at=expires))
    assert len(await messages_of(alice)) == 2
    # 3.3 lists every message, unfiltered (filters come with 3.5)
    assert len((await at_3_3.get("/messages", params={"event_id": "nothing"})).json()["messages"]) == 2
    await manager.start()  # the worker's start removes the expired one
    assert [m["id"] for m in await messages_of(alice)] == ["00000000-0000-4000-8000-000000000001"]


async def test_a_type_no_backend_satisfies_fails_the_volume_with_a_message(
        manager: VolumeManager, alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    """Tempest's user messages test: a type whose storage_protocol/vendor_name no backend has."""
    specs = {"storage_protocol": "bogus-protocol", "vendor_name": "bogus-vendor"}
    r = await admin.post("/types", json={"volume_type": {"name": "nowhere", "extra_specs": specs}})
    assert r.status_code == 200, r.text
    vol = await make_volume(alice, 1, volume_type="nowhere")
    assert (await show(alice, vol["id"]))["status"] == "error"
    (m,) = await messages_of(alice, resource_uuid=vol["id"])
    assert m["event_id"] == "VOLUME_VOLUME_001_003"
    assert m["user_message"].startswith("schedule allocate volume: No valid backend was found")
    assert "storage_protocol=bogus-protocol" in m["user_message"]
    # the backend's own capabilities (and free-form or other-scoped specs) are satisfied
    good = {"storage_protocol": "file", "vendor_name": "Cumulo", "capabilities:volume_backend_name": "cumulo",
            "free_form": "x", "RESKEY:availability_zones": "nova"}
    r = await admin.post("/types", json={"volume_type": {"name": "here", "extra_specs": good}})
    assert r.status_code == 200, r.text
    ok = await make_volume(alice, 1, volume_type="here")
    assert (await show(alice, ok["id"]))["status"] == "available"
    assert await messages_of(alice, resource_uuid=ok["id"]) == []
