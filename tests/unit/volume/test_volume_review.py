"""Findings of the issue-11 review of the volume service: each test failed before its fix."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_worker import FakeImages, FakeWorker
from vol_support import act, fault, make_volume, show

from cumulo import errors
from cumulo.blockstore import open_store
from cumulo.blockstore.base import StoreConfig
from cumulo.volume.models import backups, snapshots, volumes
from cumulo.volume.service import VolumeService
from cumulo.volume.worker.manager import VolumeManager

UPLOAD = {"image_name": "img", "disk_format": "qcow2"}


async def test_two_uploads_of_one_volume_at_once_leave_one_queued_image(
        alice: httpx.AsyncClient, worker: FakeWorker, images: FakeImages) -> None:
    vid = (await make_volume(alice))["id"]
    worker.hold = True
    answers = await asyncio.gather(*(act(alice, vid, "os-volume_upload_image", UPLOAD) for _ in range(2)))
    assert sorted(r.status_code for r in answers) in ([202, 400], [202, 409])
    # the loser made no image: nothing is left queued for ever
    assert len(images.uploads) == 1
    assert [c[0] for c in worker.casts].count("upload_to_image") == 1


async def test_an_image_record_that_cannot_be_made_leaves_the_volume_as_it_was(
        alice: httpx.AsyncClient, images: FakeImages, monkeypatch: pytest.MonkeyPatch) -> None:
    vid = (await make_volume(alice))["id"]

    async def refuse(ctx: Any, **kw: Any) -> dict[str, Any]:
        raise errors.Forbidden("no image for you")

    monkeypatch.setattr(images, "create_image_for_upload", refuse)
    fault(await act(alice, vid, "os-volume_upload_image", UPLOAD), 403)
    assert (await show(alice, vid))["status"] == "available"


async def test_the_worker_removes_an_upload_export_off_the_event_loop(
        svc: VolumeService, alice: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    config = StoreConfig.under(svc.conf.state_dir)
    filled: list[Path | None] = []

    async def fill(image_id: str, path: Path | None) -> None:
        filled.append(path)

    manager = VolumeManager(svc.db, open_store("file", config), "host1", image_fill=fill, scratch=config.run_dir)
    await manager.start()
    svc.worker = manager
    vid = (await make_volume(alice))["id"]
    on_loop: list[bool] = []
    real = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith("upload-"):
            try:
                asyncio.get_running_loop()
                on_loop.append(True)
            except RuntimeError:
                on_loop.append(False)
        real(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert (await act(alice, vid, "os-volume_upload_image", UPLOAD)).status_code == 202
    assert filled and filled[0] is not None and not filled[0].exists()
    assert on_loop == [False]  # a big export takes a while to free: not on the event loop
    assert (await show(alice, vid))["status"] == "available"


async def test_an_unreachable_worker_fails_the_snapshot_or_backup_not_the_volume(
        alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    vid = (await make_volume(alice))["id"]
    r = await alice.post("/backups", json={"backup": {"volume_id": vid}})
    assert r.status_code == 202, r.text
    backup_id = r.json()["backup"]["id"]
    worker.fail = True  # the bus is down
    r = await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}})
    assert r.status_code == 202, r.text
    snap_id = r.json()["snapshot"]["id"]
    assert (await alice.delete(f"/backups/{backup_id}")).status_code == 202
    worker.fail = False
    assert (await show(alice, vid))["status"] == "available"  # untouched: it was not what failed
    assert (await alice.get(f"/snapshots/{snap_id}")).json()["snapshot"]["status"] == "error"
    assert (await alice.get(f"/backups/{backup_id}")).json()["backup"]["status"] == "error"
    # and both may be deleted again by their owner
    assert (await alice.delete(f"/snapshots/{snap_id}")).status_code == 202
    assert (await alice.delete(f"/backups/{backup_id}")).status_code == 202


async def test_a_volume_force_deleted_while_its_file_is_made_leaves_no_file(
        svc: VolumeService, alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    """The forced delete ran first (no file yet, the row gone); the create finishing afterwards
    must not leave the file behind, which no row would ever own."""
    worker.hold = True
    vid = (await make_volume(alice))["id"]
    async with svc.db.write() as conn:  # what the forced delete's worker did: no file, row removed
        await conn.execute(volumes.delete().where(volumes.c.id == vid))
    config = StoreConfig.under(svc.conf.state_dir)
    manager = VolumeManager(svc.db, open_store("file", config), "host1")
    await manager.start()
    await manager.create_volume(vid, 1)
    assert not (Path(config.root) / f"{vid}.raw").exists()


async def test_a_snapshot_or_backup_force_deleted_while_made_leaves_no_file(
        svc: VolumeService, alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    config = StoreConfig.under(svc.conf.state_dir)
    manager = VolumeManager(svc.db, open_store("file", config), "host1")
    await manager.start()
    svc.worker = manager
    vid = (await make_volume(alice))["id"]
    svc.worker = worker
    worker.hold = True
    snap_id = (await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}})).json()["snapshot"]["id"]
    async with svc.db.write() as conn:  # what the forced delete's worker did: no file yet, row removed
        await conn.execute(snapshots.delete().where(snapshots.c.id == snap_id))
    await manager.create_snapshot(snap_id, vid)
    assert not (Path(config.root) / "snapshots" / f"{snap_id}.raw").exists()
    backup_id = (await alice.post("/backups", json={"backup": {"volume_id": vid}})).json()["backup"]["id"]
    async with svc.db.write() as conn:
        await conn.execute(backups.delete().where(backups.c.id == backup_id))
    await manager.create_backup(backup_id, vid)
    assert not (Path(config.backup_dir) / f"{backup_id}.qcow2").exists()
    assert (await show(alice, vid))["status"] == "available"


@pytest.mark.parametrize("connector", [{"host": ["x"]}, {"host": "h", "mountpoint": {"a": 1}}, {"host": "h" * 300},
                                       {"mountpoint": 7}])
async def test_a_connector_whose_host_or_mountpoint_is_not_a_short_string_is_a_400(
        alice: httpx.AsyncClient, connector: dict[str, Any]) -> None:
    vid = (await make_volume(alice))["id"]
    fault(await alice.post("/attachments", json={"attachment": {"volume_uuid": vid, "connector": connector}}), 400)
    r = await alice.post("/attachments", json={"attachment": {"volume_uuid": vid}})
    assert r.status_code == 200, r.text
    aid = r.json()["attachment"]["id"]
    fault(await alice.put(f"/attachments/{aid}", json={"attachment": {"connector": connector}}), 400)
    assert (await alice.delete(f"/attachments/{aid}")).status_code == 200
    assert (await show(alice, vid))["status"] == "available"


async def test_an_incremental_backup_never_takes_another_projects_backup_as_its_parent(
        alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    """After a transfer, the volume's old backups stay with the project that made them: the new
    owner's incremental backup must not hang on one (its maker could not delete it any more)."""
    vid = (await make_volume(alice))["id"]
    r = await alice.post("/backups", json={"backup": {"volume_id": vid}})
    assert r.status_code == 202, r.text
    alices = r.json()["backup"]["id"]
    t = (await alice.post("/os-volume-transfer", json={"transfer": {"volume_id": vid}})).json()["transfer"]
    r = await bob.post(f"/os-volume-transfer/{t['id']}/accept", json={"accept": {"auth_key": t["auth_key"]}})
    assert r.status_code == 202, r.text
    r = await bob.post("/backups", json={"backup": {"volume_id": vid, "incremental": True}})
    assert "No backups available" in fault(r, 400)
    assert (await alice.delete(f"/backups/{alices}")).status_code == 202


async def test_a_restore_never_copies_metadata_from_a_volume_another_project_now_owns(
        alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice, metadata={"mine": "a"}))["id"]
    backup_id = (await alice.post("/backups", json={"backup": {"volume_id": vid}})).json()["backup"]["id"]
    t = (await alice.post("/os-volume-transfer", json={"transfer": {"volume_id": vid}})).json()["transfer"]
    r = await bob.post(f"/os-volume-transfer/{t['id']}/accept", json={"accept": {"auth_key": t["auth_key"]}})
    assert r.status_code == 202, r.text
    assert (await bob.put(f"/volumes/{vid}/metadata", json={"metadata": {"bobs": "secret"}})).status_code == 200
    r = await alice.post(f"/backups/{backup_id}/restore", json={"restore": {"name": "back"}})
    assert r.status_code == 202, r.text
    restored = await show(alice, r.json()["restore"]["volume_id"])
    assert "bobs" not in restored["metadata"]


async def test_a_volume_from_a_snapshot_never_copies_what_another_project_set_on_its_volume(
        alice: httpx.AsyncClient, bob: httpx.AsyncClient, worker: FakeWorker) -> None:
    vid = (await make_volume(alice))["id"]
    snap_id = (await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}})).json()["snapshot"]["id"]
    r = await alice.post("/volume-transfers", json={"transfer": {"volume_id": vid, "no_snapshots": True}})
    assert r.status_code == 202, r.text
    t = r.json()["transfer"]
    r = await bob.post(f"/volume-transfers/{t['id']}/accept", json={"accept": {"auth_key": t["auth_key"]}})
    assert r.status_code == 202, r.text
    assert (await act(bob, vid, "os-set_image_metadata", {"metadata": {"bobs": "secret"}})).status_code == 200
    assert (await act(bob, vid, "os-set_bootable", {"bootable": True})).status_code == 200
    made = (await alice.post("/volumes", json={"volume": {"snapshot_id": snap_id}})).json()["volume"]
    shown = await show(alice, made["id"])
    assert "bobs" not in (shown.get("volume_image_metadata") or {}) and shown["bootable"] == "false"


async def test_a_cascade_delete_never_deletes_another_projects_snapshot(
        alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    snap_id = (await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}})).json()["snapshot"]["id"]
    t = (await alice.post("/volume-transfers", json={"transfer": {"volume_id": vid, "no_snapshots": True}})
         ).json()["transfer"]
    r = await bob.post(f"/volume-transfers/{t['id']}/accept", json={"accept": {"auth_key": t["auth_key"]}})
    assert r.status_code == 202, r.text
    assert "another project" in fault(await bob.delete(f"/volumes/{vid}?cascade=true"), 400)
    assert (await alice.get(f"/snapshots/{snap_id}")).json()["snapshot"]["status"] == "available"
