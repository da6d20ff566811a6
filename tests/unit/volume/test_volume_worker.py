"""The volume worker (cumulo.volume.worker.manager) behind the volume API, on a real file store
in a temp state dir: what each cast leaves in the DB and on disk, failures with their reason, and
the settling at start of rows a previous worker left mid-work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from vol_support import act, make_volume, show

from cumulo.blockstore import open_store
from cumulo.blockstore.base import GIB, StoreConfig, StoreError
from cumulo.volume.models import volume_admin_metadata, volumes
from cumulo.volume.service import VolumeService
from cumulo.volume.worker.manager import UPLOADING_TO, VolumeManager
from cumulo.volume.worker_api import NullWorker


@pytest.fixture
async def manager(svc: VolumeService) -> VolumeManager:
    m = VolumeManager(svc.db, open_store("file", StoreConfig.under(svc.conf.state_dir)), "host1")
    await m.start()
    svc.worker = m
    return m


def vol_file(svc: VolumeService, vid: str) -> Path:
    return Path(svc.conf.state_dir) / "volumes" / f"{vid}.raw"


async def test_create_extend_snapshot_delete(svc: VolumeService, manager: VolumeManager,
                                            alice: httpx.AsyncClient) -> None:
    vol = await make_volume(alice, 1)
    shown = await show(alice, vol["id"])
    assert shown["status"] == "available"
    assert vol_file(svc, vol["id"]).stat().st_size == GIB
    assert (await act(alice, vol["id"], "os-extend", {"new_size": 2})).status_code == 202
    shown = await show(alice, vol["id"])
    assert (shown["status"], shown["size"]) == ("available", 2)
    assert vol_file(svc, vol["id"]).stat().st_size == 2 * GIB
    r = await alice.post("/snapshots", json={"snapshot": {"volume_id": vol["id"], "name": "s"}})
    assert r.status_code == 202, r.text
    snap = r.json()["snapshot"]
    assert (await alice.get(f"/snapshots/{snap['id']}")).json()["snapshot"]["status"] == "available"
    clone = await make_volume(alice, 2, snapshot_id=snap["id"])
    assert (await show(alice, clone["id"]))["status"] == "available"
    assert (await alice.delete(f"/snapshots/{snap['id']}")).status_code == 202
    assert (await alice.get(f"/snapshots/{snap['id']}")).status_code == 404
    for vid in (vol["id"], clone["id"]):
        assert (await alice.delete(f"/volumes/{vid}")).status_code == 202
        assert (await alice.get(f"/volumes/{vid}")).status_code == 404
        assert not vol_file(svc, vid).exists()


async def test_a_failed_create_is_error_with_the_reason(manager: VolumeManager, alice: httpx.AsyncClient,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(volume_id: str, size: int) -> None:
        raise StoreError("the disk is full")

    monkeypatch.setattr(manager.store, "create", broken)
    vol = await make_volume(alice, 1)
    shown = await show(alice, vol["id"])
    assert shown["status"] == "error"
    async with manager.db.read() as conn:
        row: Any = (await conn.execute(volumes.select().where(volumes.c.id == vol["id"]))).one()
    assert row.error_message == "the disk is full"


async def test_start_settles_rows_left_mid_work(svc: VolumeService, manager: VolumeManager,
                                                alice: httpx.AsyncClient) -> None:
    done = await make_volume(alice, 1)  # made for real, then its delete is cut short
    svc.worker = NullWorker()  # the worker "died": casts are lost
    cut = await make_volume(alice, 1)
    assert (await alice.delete(f"/volumes/{done['id']}")).status_code == 202
    assert (await show(alice, cut["id"]))["status"] == "creating"
    assert (await show(alice, done["id"]))["status"] == "deleting"
    await manager.start()  # a restarted worker
    shown = await show(alice, cut["id"])
    assert shown["status"] == "error"
    assert (await alice.get(f"/volumes/{done['id']}")).status_code == 404
    assert not vol_file(svc, done["id"]).exists()


async def test_start_settles_an_upload_cut_short(svc: VolumeService, alice: httpx.AsyncClient) -> None:
    """A worker killed mid upload-to-image: the restarted one drops the queued image, puts the
    attached volume back in-use with the reason, and removes the export and its temp file."""
    filled: list[tuple[str, Path | None]] = []

    async def fill(image_id: str, path: Path | None) -> None:
        filled.append((image_id, path))

    config = StoreConfig.under(svc.conf.state_dir)
    m = VolumeManager(svc.db, open_store("file", config), "host1", image_fill=fill, scratch=config.run_dir)
    await m.start()
    svc.worker = m
    vol = await make_volume(alice, 1)
    async with svc.db.write() as conn:
        await conn.execute(volumes.update().where(volumes.c.id == vol["id"]).values(
            status="uploading", attach_status="attached"))
        await conn.execute(volume_admin_metadata.insert().values(volume_id=vol["id"], key=UPLOADING_TO, value="img-1"))
    export = config.run_dir / "upload-img-1.qcow2"
    partial = config.run_dir / ".upload-img-1.qcow2.999999999.0badf00d.tmp"  # its writer is gone
    export.write_bytes(b"x")
    partial.write_bytes(b"x")

    await m.start()  # the restarted worker
    assert filled == [("img-1", None)]
    async with svc.db.read() as conn:
        row: Any = (await conn.execute(volumes.select().where(volumes.c.id == vol["id"]))).one()
        meta = list(await conn.execute(volume_admin_metadata.select().where(
            volume_admin_metadata.c.volume_id == vol["id"], volume_admin_metadata.c.key == UPLOADING_TO)))
    assert row.status == "in-use"
    assert "restarted while the volume was uploading to image img-1" in row.error_message
    assert meta == []
    assert not export.exists() and not partial.exists()
