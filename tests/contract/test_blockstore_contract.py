"""The block store contract (cumulo.blockstore), checked on every registered backend the same way,
with real files, qemu-img and loop devices.

A backend joins by being registered in cumulo.blockstore.REGISTRY (and, if it needs a host set-up
such as a volume group, by a branch in `store` below). Sizes here are a few MiB: the store speaks
bytes. Every test's files live under its tmp_path; its loop devices are detached by their backing
file there.
"""

# ruff: noqa: S603 - every host command here is a fixed argv over the test's own tmp paths
from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cumulo.blockstore import REGISTRY, open_store
from cumulo.blockstore.base import (
    MIB,
    BadImage,
    BlockStore,
    OnlineResizeUnavailable,
    ShrinkRefused,
    StoreConfig,
    TooLarge,
    UnsafeSource,
    VolumeExists,
    VolumeMissing,
)
from cumulo.blockstore.loop import (
    XFS_MIN_BYTES,
    LoopTable,
    can_grow_online,
    devices_of,
    fs_type,
    grow_fs,
    make_fs,
)
from cumulo.errors import Conflict, Invalid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(params=sorted(REGISTRY))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlockStore]:
    s = open_store(request.param, StoreConfig.under(tmp_path / "state", max_bytes=64 * MIB))
    await s.ensure_dirs()
    yield s
    _detach_loops_under(tmp_path)


def _detach_loops_under(root: Path) -> None:
    """Detach every loop device bound to a file under `root` (this test's own)."""
    prefix = str(root)
    for f in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            backing = f.read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix + "/"):
            subprocess.run(["losetup", "-d", f"/dev/{f.parent.parent.name}"], check=False)


def leftovers(s: BlockStore) -> list[str]:
    """Every file under the store's dirs that is not a finished volume, snapshot or backup."""
    out = []
    for d in (s.config.root, s.config.root / "snapshots", s.config.backup_dir):
        for name in os.listdir(d):
            if name.startswith(".") and d / name != s.config.run_dir:
                out.append(f"{d}/{name}")
    return out


async def write_at(s: BlockStore, volume_id: str, offset: int, data: bytes) -> None:
    """Write into a volume as a guest would (through its location: a file or a device)."""
    def w() -> None:
        fd = os.open(s.location(volume_id).path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    await asyncio.to_thread(w)


async def digest(s: BlockStore, volume_id: str, length: int | None = None) -> str:
    def h() -> str:
        with open(s.location(volume_id).path, "rb") as fh:
            data = fh.read() if length is None else fh.read(length)
        return hashlib.sha256(data).hexdigest()

    return await asyncio.to_thread(h)


async def read_at(s: BlockStore, volume_id: str, offset: int, n: int) -> bytes:
    def r() -> bytes:
        with open(s.location(volume_id).path, "rb") as fh:
            fh.seek(offset)
            return fh.read(n)

    return await asyncio.to_thread(r)


# -- volumes ------------------------------------------------------------------------------------------


async def test_create_is_blank_sparse_and_listed(store: BlockStore) -> None:
    vid = new_id()
    await store.create(vid, 8 * MIB)
    assert await store.exists(vid)
    assert vid in await store.list_volumes()
    u = await store.usage(vid)
    assert u.size == 8 * MIB
    assert u.allocated < 1 * MIB  # sparse
    assert await read_at(store, vid, 4 * MIB, 16) == b"\0" * 16
    with pytest.raises(VolumeExists):
        await store.create(vid, 8 * MIB)
    assert leftovers(store) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "", "x" * 36, "0" * 31])
async def test_ids_are_uuids_only(store: BlockStore, bad: str) -> None:
    with pytest.raises(Invalid):
        await store.create(bad, MIB)
    with pytest.raises(Invalid):
        await store.delete(bad)
    with pytest.raises(Invalid):
        store.location(bad)


@pytest.mark.parametrize("size", [0, -MIB, 1000, 65 * MIB])
async def test_bad_sizes_refused(store: BlockStore, size: int) -> None:
    with pytest.raises(Invalid):
        await store.create(new_id(), size)
    assert await store.list_volumes() == []


async def test_delete_is_idempotent(store: BlockStore) -> None:
    vid = new_id()
    await store.create(vid, MIB)
    await store.delete(vid)
    assert not await store.exists(vid)
    await store.delete(vid)
    assert await store.list_volumes() == []


async def test_extend_grows_keeps_data_and_refuses_shrink(store: BlockStore) -> None:
    vid = new_id()
    await store.create(vid, 4 * MIB)
    await write_at(store, vid, 0, b"keep me")
    await store.extend(vid, 8 * MIB)
    assert (await store.usage(vid)).size == 8 * MIB
    await store.extend(vid, 8 * MIB)  # same size: no-op
    with pytest.raises(ShrinkRefused, match="shrink"):
        await store.extend(vid, 4 * MIB)
    assert (await store.usage(vid)).size == 8 * MIB
    assert await read_at(store, vid, 0, 7) == b"keep me"
    with pytest.raises(VolumeMissing):
        await store.extend(new_id(), 8 * MIB)


async def test_clone_copies_data_sparsely_and_is_independent(store: BlockStore) -> None:
    src, dst, big = new_id(), new_id(), new_id()
    await store.create(src, 16 * MIB)
    await write_at(store, src, 3 * MIB, b"A" * 4096)
    await write_at(store, src, 12 * MIB, b"B" * 4096)
    await store.clone(src, dst)
    assert await digest(store, dst) == await digest(store, src)
    assert (await store.usage(dst)).allocated < 2 * MIB  # holes stayed holes
    await write_at(store, src, 3 * MIB, b"C")
    assert await read_at(store, dst, 3 * MIB, 1) == b"A"
    await store.clone(src, big, 32 * MIB)
    assert (await store.usage(big)).size == 32 * MIB
    with pytest.raises(ShrinkRefused):
        await store.clone(src, new_id(), 8 * MIB)
    with pytest.raises(VolumeExists):
        await store.clone(src, dst)
    with pytest.raises(VolumeMissing):
        await store.clone(new_id(), new_id())
    assert sorted(await store.list_volumes()) == sorted([src, dst, big])
    assert leftovers(store) == []


async def test_snapshot_and_volume_from_snapshot(store: BlockStore) -> None:
    vid, sid, restored = new_id(), new_id(), new_id()
    await store.create(vid, 8 * MIB)
    await write_at(store, vid, MIB, b"snapshot data")
    before = await digest(store, vid)
    await store.create_snapshot(vid, sid)
    assert await store.snapshot_exists(sid)
    assert await store.list_snapshots() == [sid]
    await write_at(store, vid, MIB, b"changed after")
    await store.delete(vid)  # a snapshot outlives its volume
    await store.create_from_snapshot(sid, restored, 16 * MIB)
    assert (await store.usage(restored)).size == 16 * MIB
    assert await digest(store, restored, 8 * MIB) == before
    await store.delete_snapshot(sid)
    await store.delete_snapshot(sid)
    assert not await store.snapshot_exists(sid)
    assert await store.list_snapshots() == []
    with pytest.raises(VolumeMissing):
        await store.create_from_snapshot(sid, new_id())
    assert leftovers(store) == []


async def test_backup_and_restore(store: BlockStore) -> None:
    vid, bid, new, other = new_id(), new_id(), new_id(), new_id()
    await store.create(vid, 8 * MIB)
    await write_at(store, vid, 2 * MIB, os.urandom(64 * 1024))
    before = await digest(store, vid)
    usage = await store.backup(vid, bid)
    assert usage.size == 8 * MIB and 0 < usage.allocated < 1 * MIB  # compressed, holes skipped
    assert await store.backup_exists(bid)
    assert await store.list_backups() == [bid]
    (path,) = [p for p in store.config.backup_dir.iterdir() if p.name.startswith(bid)]
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", "qcow2", str(path)],
                                     check=True, capture_output=True).stdout)
    assert info["format-specific"]["data"]["compression-type"] == "zstd"
    await store.restore(bid, new)
    assert await digest(store, new) == before
    # over an existing volume, which keeps its (larger) size
    await store.create(other, 12 * MIB)
    await write_at(store, other, 0, b"old")
    await store.restore(bid, other, overwrite=True)
    assert (await store.usage(other)).size == 12 * MIB
    assert await digest(store, other, 8 * MIB) == before
    with pytest.raises(ShrinkRefused):
        await store.restore(bid, new_id(), 4 * MIB)
    with pytest.raises(VolumeExists):
        await store.restore(bid, new)
    await store.delete_backup(bid)
    await store.delete_backup(bid)
    assert await store.list_backups() == []
    with pytest.raises(VolumeMissing):
        await store.restore(bid, new_id())
    assert leftovers(store) == []


async def test_image_round_trip_raw_and_qcow2(store: BlockStore, tmp_path: Path) -> None:
    vid = new_id()
    await store.create(vid, 4 * MIB)
    await write_at(store, vid, 0, b"\x55\xaa" * 1000)
    out = tmp_path / "out"
    out.mkdir()
    for fmt in ("raw", "qcow2"):
        dest = out / f"image.{fmt}"
        assert await store.export(vid, dest, fmt) > 0
        with pytest.raises(VolumeExists):
            await store.export(vid, dest, fmt)
        copy = new_id()
        assert await store.create_from_image(copy, dest, fmt) == 4 * MIB
        assert await digest(store, copy) == await digest(store, vid)
        bigger = new_id()
        assert await store.create_from_image(bigger, dest, fmt, 8 * MIB) == 8 * MIB
        assert await digest(store, bigger, 4 * MIB) == await digest(store, vid)
    with pytest.raises(TooLarge, match="does not fit"):
        await store.create_from_image(new_id(), out / "image.qcow2", "qcow2", 2 * MIB)
    with pytest.raises(BadImage, match="not supported"):
        await store.create_from_image(new_id(), out / "image.raw", "vmdk")
    with pytest.raises(BadImage, match="not supported"):
        await store.export(vid, out / "x.vmdk", "vmdk")
    assert sorted(os.listdir(out)) == ["image.qcow2", "image.raw"]
    assert leftovers(store) == []


async def test_every_qemu_img_call_names_its_formats(store: BlockStore, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every qemu-img run of a whole workflow: formats given (-f, and -O for convert), no backing or
    data file options, ever."""
    from cumulo import host

    seen: list[list[str]] = []
    real = host.run

    async def recording(argv: list[str], **kw: Any) -> host.Result:
        seen.append(list(argv))
        return await real(argv, **kw)

    monkeypatch.setattr(host, "run", recording)
    vid, bid = new_id(), new_id()
    await store.create(vid, 2 * MIB)
    await store.backup(vid, bid)
    await store.restore(bid, new_id())
    for fmt in ("raw", "qcow2"):
        await store.export(vid, tmp_path / f"out.{fmt}", fmt)
        await store.create_from_image(new_id(), tmp_path / f"out.{fmt}", fmt)
    calls = [argv[argv.index("qemu-img"):] for argv in seen if "qemu-img" in argv]
    assert {c[1] for c in calls} >= {"convert", "info", "check"}
    for call in calls:
        assert "-f" in call, call
        assert not {"-b", "-B", "-F", "--image-opts"} & set(call), call
        options = [call[i + 1] for i, a in enumerate(call) if a == "-o"]
        assert set(options) <= {"compression_type=zstd"}, call
        assert not any("data_file" in a or "backing" in a for a in call), call
        if call[1] == "convert":
            assert "-O" in call, call


# -- hostile images -----------------------------------------------------------------------------------


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


async def test_qcow2_with_backing_file_outside_the_store_refused(store: BlockStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"host secret" + b"\0" * (MIB - 11))
    evil = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(secret), str(evil), "1M")
    vid = new_id()
    with pytest.raises(BadImage, match="backing file"):
        await store.create_from_image(vid, evil, "qcow2")
    assert not await store.exists(vid)
    assert leftovers(store) == []


async def test_qcow2_with_data_file_refused(store: BlockStore, tmp_path: Path) -> None:
    evil = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'},data_file_raw=on", str(evil), "1M")
    vid = new_id()
    with pytest.raises(BadImage, match="data file"):
        await store.create_from_image(vid, evil, "qcow2")
    assert not await store.exists(vid)
    assert leftovers(store) == []


async def test_qcow2_over_the_size_limit_refused(store: BlockStore, tmp_path: Path) -> None:
    huge = tmp_path / "huge.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(huge), "1T")
    with pytest.raises(TooLarge, match="virtual size"):
        await store.create_from_image(new_id(), huge, "qcow2")
    assert await store.list_volumes() == []


async def test_raw_passing_as_qcow2_refused(store: BlockStore, tmp_path: Path) -> None:
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\0" * MIB)
    with pytest.raises(BadImage, match="not a qcow2"):
        await store.create_from_image(new_id(), raw, "qcow2")
    # a raw that holds a qcow2 header stays raw: read as its bytes, its backing never opened
    evil = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow", str(evil), "1M")
    vid = new_id()
    await store.create_from_image(vid, evil, "raw")
    assert await read_at(store, vid, 0, 4) == b"QFI\xfb"
    assert (await store.usage(vid)).size == 512 * ((evil.stat().st_size + 511) // 512)


async def test_symlink_fifo_and_device_sources_refused(store: BlockStore, tmp_path: Path) -> None:
    real = tmp_path / "real.raw"
    real.write_bytes(b"\0" * MIB)
    link = tmp_path / "link.raw"
    link.symlink_to(real)
    fifo = tmp_path / "fifo.raw"
    os.mkfifo(fifo)
    for source, what in ((link, "symbolic link"), (fifo, "FIFO"), (Path("/dev/zero"), "device"),
                         (tmp_path, "directory"), (tmp_path / "missing.raw", "cannot be opened")):
        with pytest.raises(UnsafeSource, match=what):
            await store.create_from_image(new_id(), source, "raw")
    assert await store.list_volumes() == []
    assert leftovers(store) == []


async def test_raw_over_the_size_limit_refused(store: BlockStore, tmp_path: Path) -> None:
    huge = tmp_path / "huge.raw"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 40)  # sparse: a TiB of holes
    with pytest.raises(TooLarge, match="virtual size"):
        await store.create_from_image(new_id(), huge, "raw")
    assert await store.list_volumes() == [] and leftovers(store) == []


async def test_a_planted_symlink_in_the_store_is_never_followed(store: BlockStore, tmp_path: Path) -> None:
    if store.location(new_id()).kind != "file":
        pytest.skip("the backend keeps no files")
    victim = tmp_path / "victim"
    victim.write_bytes(b"host file" + b"\0" * (MIB - 9))
    vid = new_id()
    Path(store.location(vid).path).symlink_to(victim)
    for attempt in (store.usage(vid), store.extend(vid, 2 * MIB), store.clone(vid, new_id()),
                    store.create_snapshot(vid, new_id()), store.backup(vid, new_id()),
                    store.export(vid, tmp_path / "out.raw", "raw")):
        with pytest.raises(Conflict, match="symbolic link"):
            await attempt
    await store.delete(vid)
    assert victim.stat().st_size == MIB and not os.path.lexists(store.location(vid).path)
    assert leftovers(store) == [] and not (tmp_path / "out.raw").exists()


async def test_corrupt_backup_refused_on_restore(store: BlockStore) -> None:
    vid, bid = new_id(), new_id()
    await store.create(vid, 2 * MIB)
    await store.backup(vid, bid)
    backups = store.config.backup_dir
    (path,) = [p for p in backups.iterdir() if p.name.startswith(bid)]
    with open(path, "r+b") as fh:  # a backing file name slipped into the header
        fh.seek(8)
        fh.write((512).to_bytes(8, "big") + (11).to_bytes(4, "big"))
    new = new_id()
    with pytest.raises(BadImage, match="backing file"):
        await store.restore(bid, new)
    assert not await store.exists(new)


async def test_failed_convert_leaves_nothing(store: BlockStore, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(bad), "2M")
    data = bad.read_bytes()
    bad.write_bytes(data[:200])  # the header survives, its tables do not
    vid = new_id()
    with pytest.raises(BadImage):
        await store.create_from_image(vid, bad, "qcow2")
    assert not await store.exists(vid)
    assert leftovers(store) == []


async def test_failure_after_the_convert_leaves_nothing_and_old_data_whole(
        store: BlockStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step failing after qemu-img wrote its file (here: the grow to the size asked, as on a
    full disk): no volume, no temporary file; a restore over a volume leaves its data as it was."""
    vid, bid, other = new_id(), new_id(), new_id()
    await store.create(vid, 4 * MIB)
    await write_at(store, vid, 0, b"backed up")
    await store.backup(vid, bid)
    image = tmp_path / "image.qcow2"
    await store.export(vid, image, "qcow2")
    await store.create(other, 4 * MIB)
    await write_at(store, other, 0, b"keep this")

    def full_disk(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cumulo.blockstore.sparse.grow", full_disk)
    new = new_id()
    with pytest.raises(OSError, match="No space"):
        await store.create_from_image(new, image, "qcow2", 8 * MIB)
    with pytest.raises(OSError, match="No space"):
        await store.restore(bid, other, overwrite=True)
    with pytest.raises(OSError, match="No space"):
        await store.clone(vid, new)
    assert not await store.exists(new)
    assert await read_at(store, other, 0, 9) == b"keep this"
    assert leftovers(store) == []


async def test_cancel_mid_backup_leaves_nothing(store: BlockStore) -> None:
    src = new_id()
    await store.create(src, 64 * MIB)
    await write_at(store, src, 0, os.urandom(32 * MIB))
    dst = new_id()
    task = asyncio.create_task(store.backup(src, dst))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not leftovers(store):  # qemu-img has made its temporary file
        assert not task.done() and loop.time() < deadline
        await asyncio.sleep(0.002)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.backup_exists(dst)
    assert leftovers(store) == []


KILLED_WORKER = """
import asyncio, sys
from pathlib import Path
from cumulo.blockstore import open_store
from cumulo.blockstore.base import StoreConfig
store = open_store(sys.argv[1], StoreConfig.under(Path(sys.argv[2]), max_bytes=64 << 20))
asyncio.run(store.backup(sys.argv[3], sys.argv[4]))
"""


def processes_naming(text: str) -> list[int]:
    """Pids whose command line names `text` (this test's own temporary file)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


async def test_kill_9_mid_backup_leaves_nothing_after_restart(store: BlockStore, tmp_path: Path) -> None:
    """The worker killed with SIGKILL while qemu-img converts: qemu-img dies with it (pdeathsig),
    and the restarted store's ensure_dirs removes the temporary file."""
    vid, bid = new_id(), new_id()
    await store.create(vid, 64 * MIB)
    await write_at(store, vid, 0, os.urandom(48 * MIB))
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, store.name, str(tmp_path / "state"), vid, bid])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    converters: list[int] = []
    try:
        while not leftovers(store):
            assert worker.poll() is None and loop.time() < deadline, "the backup ended before it was killed"
            await asyncio.sleep(0.005)
        (tmp,) = leftovers(store)
        converters = processes_naming(tmp)
        assert converters
        for pid in converters:  # held mid-convert: only its parent's death can end it now
            os.kill(pid, signal.SIGSTOP)
    finally:
        worker.kill()
        worker.wait()
    try:
        while processes_naming(tmp):
            assert loop.time() < deadline, "qemu-img outlived its worker"
            await asyncio.sleep(0.05)
    finally:
        for pid in processes_naming(tmp):
            os.kill(pid, signal.SIGKILL)
    restarted = open_store(store.name, store.config)
    await restarted.ensure_dirs()
    assert leftovers(restarted) == []
    assert not await restarted.backup_exists(bid)


async def test_crashed_process_temp_files_reaped(store: BlockStore) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = store.config.root / f".{new_id()}.raw.{dead.pid}.0badf00d.tmp"
    stale.write_bytes(b"x")
    await store.ensure_dirs()
    assert not stale.exists()
    assert leftovers(store) == []


# -- loop devices and ext4 (container attach) ----------------------------------------------------------


def fs_blocks(mountpoint: Path) -> int:
    st = os.statvfs(mountpoint)
    return st.f_blocks * st.f_frsize


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    yield mnt
    if os.path.ismount(mnt):
        subprocess.run(["umount", str(mnt)], check=False)


async def test_loop_attach_mkfs_grow_detach(store: BlockStore, tmp_path: Path, mountpoint: Path) -> None:
    vid = new_id()
    await store.create(vid, 16 * MIB)
    where = store.location(vid)
    if where.kind != "file":
        pytest.skip("the backend's volumes are block devices already")
    table = LoopTable(tmp_path / "loops")
    dev = await table.attach(vid, where.path)
    assert dev.startswith("/dev/loop")
    assert devices_of(where.path) == [dev]
    assert table.recorded() == [vid]
    assert await table.attach(vid, where.path) == dev  # attached again: the same device
    assert await table.device(vid) == dev
    with pytest.raises(Conflict, match="attached"):
        await store.delete(vid)

    assert await fs_type(dev) is None
    await make_fs(dev, "ext4", label=vid)
    assert await fs_type(dev) == "ext4"
    with pytest.raises(Conflict, match="not blank"):
        await make_fs(dev, "xfs")

    subprocess.run(["mount", "-t", "ext4", dev, str(mountpoint)], check=True)
    (mountpoint / "data").write_bytes(b"written in a container")
    before = fs_blocks(mountpoint)
    await store.extend(vid, 32 * MIB)
    await table.refresh(vid)
    if can_grow_online():
        assert await grow_fs(dev, mountpoint=mountpoint) == "ext4"
        assert fs_blocks(mountpoint) > before
        subprocess.run(["umount", str(mountpoint)], check=True)
    else:
        with pytest.raises(OnlineResizeUnavailable, match="CAP_SYS_RESOURCE"):
            await grow_fs(dev, mountpoint=mountpoint)
        assert fs_blocks(mountpoint) == before
        subprocess.run(["umount", str(mountpoint)], check=True)
        assert await grow_fs(dev, mountpoint=None) == "ext4"
    subprocess.run(["mount", "-t", "ext4", dev, str(mountpoint)], check=True)
    assert fs_blocks(mountpoint) > before * 1.8
    assert (mountpoint / "data").read_bytes() == b"written in a container"
    subprocess.run(["umount", str(mountpoint)], check=True)

    bid = new_id()
    await store.backup(vid, bid)
    with pytest.raises(Conflict, match="attached"):
        await store.restore(bid, vid, overwrite=True)
    await table.detach(vid)
    assert devices_of(where.path) == []
    assert table.recorded() == []
    await table.detach(vid)  # idempotent
    ro = await table.attach(vid, where.path, read_only=True)
    assert Path(f"/sys/block/{Path(ro).name}/ro").read_text().strip() == "1"
    fd = -1
    with pytest.raises(OSError) as refused:
        fd = os.open(ro, os.O_WRONLY)
        os.pwrite(fd, bytes(4096), 0)
    assert refused.value.errno in (errno.EPERM, errno.EACCES, errno.EROFS)
    if fd >= 0:
        os.close(fd)
    await table.detach(vid)
    await store.delete(vid)
    assert not await store.exists(vid)


async def test_loop_reap_releases_only_what_was_recorded(store: BlockStore, tmp_path: Path) -> None:
    crashed, kept, foreign = new_id(), new_id(), new_id()
    for vid in (crashed, kept, foreign):
        await store.create(vid, 4 * MIB)
    if store.location(crashed).kind != "file":
        pytest.skip("the backend's volumes are block devices already")
    table = LoopTable(tmp_path / "loops")
    kept_dev = await table.attach(kept, store.location(kept).path)
    # a process killed between recording the volume and learning its device
    (tmp_path / "loops" / f"{crashed}.json").write_text(
        json.dumps({"volume_id": crashed, "backing_file": store.location(crashed).path, "device": None}))
    crashed_dev = subprocess.run(["losetup", "--find", "--show", store.location(crashed).path],
                                 check=True, capture_output=True, text=True).stdout.strip()
    # a loop device nobody recorded (another cloud's)
    foreign_dev = subprocess.run(["losetup", "--find", "--show", store.location(foreign).path],
                                 check=True, capture_output=True, text=True).stdout.strip()
    with pytest.raises(Conflict, match="did not record"):
        await table.attach(foreign, store.location(foreign).path)

    fresh = LoopTable(tmp_path / "loops")  # the restarted process
    assert await fresh.reap(keep={kept}) == [crashed]
    assert devices_of(store.location(crashed).path) == []
    assert devices_of(store.location(kept).path) == [kept_dev]
    assert devices_of(store.location(foreign).path) == [foreign_dev]
    assert fresh.recorded() == [kept]
    assert crashed_dev != kept_dev
    await fresh.detach(kept)
    subprocess.run(["losetup", "-d", foreign_dev], check=True)


async def test_xfs_grows_online(tmp_path: Path, mountpoint: Path) -> None:
    """The alternative for containers where a mounted ext4 cannot grow: xfs grows mounted with
    CAP_SYS_ADMIN alone. (On a plain sparse file: the loop module does not need a store.)"""
    vid = new_id()
    image = tmp_path / f"{vid}.raw"
    with open(image, "wb") as fh:
        fh.truncate(XFS_MIN_BYTES + 20 * MIB)
    table = LoopTable(tmp_path / "loops")
    dev = await table.attach(vid, image)
    try:
        await make_fs(dev, "xfs", label="vol")
        assert await fs_type(dev) == "xfs"
        subprocess.run(["mount", "-t", "xfs", dev, str(mountpoint)], check=True)
        (mountpoint / "data").write_bytes(b"kept")
        before = fs_blocks(mountpoint)
        with open(image, "r+b") as fh:
            fh.truncate(2 * (XFS_MIN_BYTES + 20 * MIB))
        await table.refresh(vid)
        assert await grow_fs(dev, mountpoint=mountpoint) == "xfs"
        assert fs_blocks(mountpoint) > before * 1.8
        assert (mountpoint / "data").read_bytes() == b"kept"
        subprocess.run(["umount", str(mountpoint)], check=True)
        with pytest.raises(Conflict, match="only while mounted"):
            await grow_fs(dev, mountpoint=None)
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", str(mountpoint)], check=False)
        await table.detach(vid)
    assert devices_of(image) == []
