"""A volume reached from another host over NBD (cumulo.blockstore.nbd), with the real qemu-nbd and
qemu-storage-daemon on loopback: the export with TLS and the attachment's pre-shared key, the
container host's FUSE file over it, a peer with another key refused, and nothing left (process,
FUSE mount, dir) after disconnect and unserve; a restarted export keeps its port and name."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cumulo.blockstore import nbd
from cumulo.blockstore.base import StoreError

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("qemu-nbd") or not shutil.which("qemu-storage-daemon")
    or not Path("/dev/fuse").exists(), reason="needs root, qemu-nbd, qemu-storage-daemon and /dev/fuse")

SECRET = b"k" * 32
MIB = 1 << 20


def processes_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as fh:
        return any(str(path) in line for line in fh)


@pytest.fixture
async def exported(tmp_path: Path) -> AsyncIterator[tuple[Path, nbd.Export, Path]]:
    run = tmp_path / "run"
    volume = tmp_path / "volume.raw"
    with open(volume, "wb") as fh:
        fh.truncate(8 * MIB)
    att, vid = str(uuid.uuid4()), str(uuid.uuid4())
    port = nbd.free_port("127.0.0.1", 20809, 20999, set())
    export = nbd.new_export(att, vid, "127.0.0.1", port, read_only=False)
    await nbd.serve(run, export, str(volume), nbd.psk_key(SECRET, att))
    try:
        yield run, export, volume
    finally:
        await nbd.disconnect(run, vid)
        await nbd.unserve(run, att)
        assert not processes_naming(str(tmp_path)), "a qemu-nbd or qemu-storage-daemon outlived its test"


async def test_a_container_host_reads_and_writes_the_export_through_its_fuse_file(
        exported: tuple[Path, nbd.Export, Path], tmp_path: Path) -> None:
    run, export, volume = exported
    assert nbd.serving(run, export.attachment_id) and nbd.exports(run) == [export]
    keys = nbd.write_psk(tmp_path / "keys", nbd.psk_identity(export.attachment_id),
                         nbd.psk_key(SECRET, export.attachment_id))
    assert (keys / nbd.PSK_FILE).stat().st_mode & 0o777 == 0o600
    disk = await nbd.connect(run, export.volume_id, export.target(), str(keys), read_only=False)
    assert disk.stat().st_size == 8 * MIB and mounted(disk)
    assert await nbd.connect(run, export.volume_id, export.target(), str(keys), read_only=False) == disk  # reused
    fd = os.open(disk, os.O_RDWR)
    try:
        os.pwrite(fd, b"over-nbd", 3 * MIB)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(volume, "rb") as fh:
        fh.seek(3 * MIB)
        assert fh.read(8) == b"over-nbd"
    assert await nbd.disconnect(run, export.volume_id)
    assert not mounted(disk) and not disk.parent.exists() and nbd.connected(run, export.volume_id) is None
    assert not processes_naming(str(run / nbd.CONNECTIONS))


async def test_a_peer_without_the_attachments_key_is_refused(exported: tuple[Path, nbd.Export, Path],
                                                             tmp_path: Path) -> None:
    run, export, _volume = exported
    wrong = nbd.write_psk(tmp_path / "wrong", nbd.psk_identity(export.attachment_id),
                          nbd.psk_key(b"x" * 32, export.attachment_id))
    with pytest.raises(StoreError, match="cannot connect"):
        await nbd.connect(run, export.volume_id, export.target(), str(wrong), read_only=False)
    assert not (run / nbd.CONNECTIONS / export.volume_id).exists()
    assert not processes_naming(str(run / nbd.CONNECTIONS))


async def test_unserve_stops_the_export_and_a_restart_keeps_its_port_and_name(
        exported: tuple[Path, nbd.Export, Path]) -> None:
    run, export, volume = exported
    await nbd.unserve(run, export.attachment_id)
    assert not nbd.serving(run, export.attachment_id) and nbd.exports(run) == []
    assert not processes_naming(str(nbd.export_dir(run, export.attachment_id)))
    await nbd.serve(run, export, str(volume), nbd.psk_key(SECRET, export.attachment_id))
    assert nbd.recorded(run, export.attachment_id) == export and nbd.serving(run, export.attachment_id)


async def test_the_volume_hosts_exports_follow_their_attachments(tmp_path: Path) -> None:
    """volume/worker/exports.NbdExports over a real block store and database: initialize serves one
    export per attachment (idempotent), a host restart serves a live attachment's export again on
    the same port and name, an attachment gone or detached has its export stopped, and a deleted
    volume's exports go."""
    import signal

    import sqlalchemy as sa
    from _asgi_ctx import temp_database

    from cumulo import conf as conf_mod
    from cumulo.blockstore import open_store
    from cumulo.blockstore.base import StoreConfig
    from cumulo.db import utcnow
    from cumulo.volume.models import volume_attachments, volumes
    from cumulo.volume.worker.exports import NbdExports

    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    config = StoreConfig.under(conf.state_dir)
    store = open_store("file", config)
    await store.ensure_dirs()
    vid = str(uuid.uuid4())
    atts = [str(uuid.uuid4()) for _ in range(2)]
    await store.create(vid, 4 * MIB)
    async with temp_database(conf) as db:
        async with db.write() as conn:
            await conn.execute(sa.insert(volumes).values(id=vid, project_id="p", size=1, status="in-use", host="h1",
                                                         attach_status="attached", created_at=utcnow()))
            for att in atts:
                await conn.execute(sa.insert(volume_attachments).values(
                    id=att, volume_id=vid, project_id="p", attach_status="attached", attach_mode="rw",
                    created_at=utcnow()))
        exports = NbdExports(db, store, config.run_dir, "127.0.0.1", "22809-22999")
        try:
            info = await exports.initialize(vid, atts[0], "h2", "rw")
            data = info["data"]
            assert info["driver_volume_type"] == "nbd" and data["target_host"] == "127.0.0.1"
            assert data["psk_identity"] == nbd.psk_identity(atts[0]) and "key" not in str(data).lower().replace("psk", "")
            assert await exports.initialize(vid, atts[0], "h2", "rw") == info  # the same export
            other = await exports.initialize(vid, atts[1], "h3", "rw")
            assert other["data"]["target_port"] != data["target_port"]
            # the host killed: its qemu-nbd died with it; the restart serves it again, same port and name
            pid = int((nbd.export_dir(config.run_dir, atts[0]) / "pid").read_text())
            os.kill(pid, signal.SIGKILL)
            while nbd.serving(config.run_dir, atts[0]):
                await asyncio.sleep(0.05)
            async with db.write() as conn:  # and the second attachment went meanwhile
                await conn.execute(sa.delete(volume_attachments).where(volume_attachments.c.id == atts[1]))
            await exports.reconcile()
            assert nbd.serving(config.run_dir, atts[0]) and nbd.recorded(config.run_dir, atts[0]).port == data["target_port"]
            assert nbd.recorded(config.run_dir, atts[1]) is None and not nbd.serving(config.run_dir, atts[1])
            await exports.terminate_volume(vid)
            assert nbd.exports(config.run_dir) == []
        finally:
            for att in atts:
                await nbd.unserve(config.run_dir, att)
    assert not processes_naming(str(tmp_path))
