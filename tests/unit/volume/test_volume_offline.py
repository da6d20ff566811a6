"""Offline volumes (OCCI's storage offline/online actions) in the volume service and the real
worker on a file store: the Cinder status an offline volume shows (`maintenance`) and what Cinder's
API then refuses, the seal on the host (the file immutable: even root cannot open it for writing),
online reversing both, the refusals (attached, not offline, another project's), an admin's
force-delete of an offline volume, and a restarted worker finishing what a crash cut short."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from _asgi_ctx import ctx_for
from fake_worker import FakeWorker
from vol_support import act, fault, make_volume, show

from cumulo import errors
from cumulo.blockstore import open_store
from cumulo.blockstore.base import StoreConfig
from cumulo.volume.base import OFFLINE, OFFLINE_ENTERING
from cumulo.volume.service import VolumeService
from cumulo.volume.worker import offline
from cumulo.volume.worker.manager import VolumeManager
from cumulo.volume.worker_api import NullWorker

ALICE = ctx_for("project-a", "member")
ROOT = os.geteuid() == 0  # the seal (chattr +i) needs CAP_LINUX_IMMUTABLE


@pytest.fixture
async def manager(svc: VolumeService) -> AsyncIterator[VolumeManager]:
    m = VolumeManager(svc.db, open_store("file", StoreConfig.under(svc.conf.state_dir)), "host1")
    await m.start()
    svc.worker = m
    yield m
    unseal_all(Path(svc.conf.state_dir))


def unseal_all(state_dir: Path) -> None:
    """A test that failed half way must not leave an immutable file (its temp dir could not go)."""
    if ROOT and (state_dir / "volumes").is_dir():
        subprocess.run(["chattr", "-R", "-i", str(state_dir / "volumes")], check=False, capture_output=True)  # noqa: S603, S607


def vol_file(svc: VolumeService, vid: str) -> Path:
    return Path(svc.conf.state_dir) / "volumes" / f"{vid}.raw"


def writable(path: Path) -> bool:
    try:
        with open(path, "r+b"):
            return True
    except PermissionError:
        return False


@pytest.mark.skipif(not ROOT, reason="sealing a file (chattr +i) needs root")
async def test_offline_seals_the_file_and_cinder_refuses_the_volume_until_online(
        svc: VolumeService, manager: VolumeManager, alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice, 1))["id"]
    path = vol_file(svc, vid)
    assert writable(path)
    await svc.set_offline(ALICE, vid)
    shown = await show(alice, vid)
    assert shown["status"] == "maintenance"
    assert await offline.sealed(path) and not writable(path)  # root included
    assert (await svc.admin_metadata(vid))[OFFLINE] == "True"  # the worker marks it once the file is sealed
    with pytest.raises(PermissionError):
        path.unlink()
    # Cinder's API refuses what it refuses for a volume in maintenance
    assert "maintenance" in fault(await act(alice, vid, "os-extend", {"new_size": 2}), 400)
    assert "maintenance" in fault(await act(alice, vid, "os-reserve"), 400)
    r = await alice.post("/attachments", json={"attachment": {"volume_uuid": vid}}, headers={
        "OpenStack-API-Version": "volume 3.44"})
    fault(r, 400)
    fault(await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}}), 400)
    fault(await alice.delete(f"/volumes/{vid}"), 400)
    with pytest.raises(errors.InvalidState, match="already offline"):
        await svc.set_offline(ALICE, vid)
    # online reverses both
    await svc.set_online(ALICE, vid)
    shown = await show(alice, vid)
    assert shown["status"] == "available"
    assert OFFLINE not in await svc.admin_metadata(vid)
    assert not await offline.sealed(path) and writable(path)
    with pytest.raises(errors.InvalidState, match="not offline"):
        await svc.set_online(ALICE, vid)
    assert (await act(alice, vid, "os-extend", {"new_size": 2})).status_code == 202
    assert (await alice.delete(f"/volumes/{vid}")).status_code == 202
    assert not path.exists()


async def test_offline_is_refused_while_attached_and_to_others(
        svc: VolumeService, manager: VolumeManager, alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice, 1))["id"]
    body = {"instance_uuid": "6d3c2b7e-0a7b-4a57-9a35-0c5b8f1f4d11", "mountpoint": "/dev/vdb"}
    assert (await act(alice, vid, "os-attach", body)).status_code == 202
    with pytest.raises(errors.InvalidState, match="detach it"):
        await svc.set_offline(ALICE, vid)
    assert (await show(alice, vid))["status"] == "in-use"
    with pytest.raises(errors.NotFound):
        await svc.set_offline(ctx_for("project-b", "member"), vid)
    with pytest.raises(errors.Forbidden):
        await svc.set_offline(ctx_for("project-a", "reader"), vid)
    assert (await act(alice, vid, "os-detach", {})).status_code == 202
    creating = await make_volume(alice, 1)
    svc.worker = NullWorker()
    held = (await make_volume(alice, 1))["id"]  # stays creating
    with pytest.raises(errors.InvalidState, match="only an available volume"):
        await svc.set_offline(ALICE, held)
    assert creating["id"] != held


@pytest.mark.skipif(not ROOT, reason="sealing a file (chattr +i) needs root")
async def test_force_delete_of_an_offline_volume_and_a_restart_mid_offline(
        svc: VolumeService, manager: VolumeManager, alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    gone, cut, leaving = [(await make_volume(alice, 1))["id"] for _ in range(3)]
    await svc.set_offline(ALICE, gone)
    assert (await act(admin, gone, "os-force_delete")).status_code == 202
    assert (await alice.get(f"/volumes/{gone}")).status_code == 404
    assert not vol_file(svc, gone).exists()
    await svc.set_offline(ALICE, leaving)
    svc.worker = NullWorker()  # the worker died: the seal of `cut` and the unseal of `leaving` are lost
    await svc.set_offline(ALICE, cut)
    await svc.set_online(ALICE, leaving)
    assert not await offline.sealed(vol_file(svc, cut))
    assert (await show(alice, leaving))["status"] == "maintenance"
    await manager.start()  # a restarted worker
    assert await offline.sealed(vol_file(svc, cut))
    assert (await show(alice, cut))["status"] == "maintenance"
    assert not await offline.sealed(vol_file(svc, leaving))
    assert (await show(alice, leaving))["status"] == "available"
    svc.worker = manager
    await svc.set_online(ALICE, cut)
    for vid in (cut, leaving):
        assert (await alice.delete(f"/volumes/{vid}")).status_code == 202
        assert not vol_file(svc, vid).exists()


async def test_a_failed_seal_leaves_the_volume_available_with_the_reason(
        svc: VolumeService, manager: VolumeManager, alice: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(store: object, volume_id: str) -> Path:
        raise errors.HostError("chattr +i failed (1): Operation not supported")

    monkeypatch.setattr(offline, "seal", broken)
    vid = (await make_volume(alice, 1))["id"]
    await svc.set_offline(ALICE, vid)
    shown = await show(alice, vid)
    assert shown["status"] == "available"
    assert OFFLINE not in await svc.admin_metadata(vid)
    r = await alice.get("/messages", headers={"OpenStack-API-Version": "volume 3.3"})
    assert any("take volume offline" in m["user_message"] for m in r.json()["messages"]), r.text


@pytest.mark.skipif(not ROOT, reason="sealing a file (chattr +i) needs root")
async def test_an_admin_reset_out_of_maintenance_unseals(
        svc: VolumeService, manager: VolumeManager, alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice, 1))["id"]
    await svc.set_offline(ALICE, vid)
    assert await offline.sealed(vol_file(svc, vid))
    assert (await act(admin, vid, "os-reset_status", {"status": "available"})).status_code == 202
    assert (await show(alice, vid))["status"] == "available"
    assert not await offline.sealed(vol_file(svc, vid)) and writable(vol_file(svc, vid))
    assert OFFLINE not in await svc.admin_metadata(vid)
    assert (await alice.delete(f"/volumes/{vid}")).status_code == 202


async def test_offline_is_entering_until_the_worker_has_sealed(
        svc: VolumeService, worker: FakeWorker, alice: httpx.AsyncClient) -> None:
    """Between the API's mark and the worker's seal the volume is `maintenance` marked "entering":
    online is refused (nothing to undo yet), and OCCI still shows it online (going offline)."""
    vid = (await make_volume(alice, 1))["id"]
    worker.hold = True
    await svc.set_offline(ALICE, vid)
    assert (await svc.admin_metadata(vid))[OFFLINE] == OFFLINE_ENTERING
    with pytest.raises(errors.InvalidState, match="still being taken offline"):
        await svc.set_online(ALICE, vid)
    worker.hold = False
    await worker.offline_volume(vid)  # the worker's seal done
    assert (await svc.admin_metadata(vid))[OFFLINE] == "True"
    await svc.set_online(ALICE, vid)
