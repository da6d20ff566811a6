"""The block store's pure helpers: ids, sizes, the qcow2 header and `qemu-img info` checks, the
capability parse, the loop-device lookup in a sysfs tree, and the sparse-file helpers."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import uuid
from pathlib import Path

import pytest

from cumulo.blockstore import REGISTRY, backend_class, sparse
from cumulo.blockstore.base import (
    GIB,
    MIB,
    StoreConfig,
    TooLarge,
    UnsafeSource,
    VolumeExists,
    check_id,
    check_size,
    round_up,
)
from cumulo.blockstore.loop import LoopTable, capable, devices_of
from cumulo.blockstore.qemuimg import info_problem, qcow2_header_problem, qcow2_virtual_size
from cumulo.errors import Invalid


def header(version: int = 3, backing: tuple[int, int] = (0, 0), incompatible: int = 0, size: int = MIB) -> bytes:
    head = bytearray(104)
    head[:4] = b"QFI\xfb"
    struct.pack_into(">IQIIQ", head, 4, version, backing[0], backing[1], 16, size)
    struct.pack_into(">Q", head, 72, incompatible)
    return bytes(head)


def test_check_id_canonical_or_invalid() -> None:
    u = uuid.uuid4()
    assert check_id(str(u).upper()) == str(u)
    assert check_id(u.hex) == str(u)
    for bad in ("../x", "", "a" * 36, str(u) + "\n", f"{u}/..", "/" + str(u)[1:]):
        with pytest.raises(Invalid):
            check_id(bad)


def test_check_size_and_round_up() -> None:
    assert check_size(MIB) == MIB
    for bad in (0, -512, 1000, True, 1.5):
        with pytest.raises(Invalid):
            check_size(bad)  # type: ignore[arg-type]  # wrong types on purpose
    with pytest.raises(TooLarge):
        check_size(2 * GIB, limit=GIB)
    assert round_up(1) == GIB and round_up(GIB) == GIB and round_up(GIB + 1) == 2 * GIB
    assert round_up(513, 512) == 1024


def test_qcow2_header_checks() -> None:
    assert qcow2_header_problem(header()) is None
    assert qcow2_header_problem(header(version=2)[:72]) is None
    assert "not a qcow2" in (qcow2_header_problem(b"\0" * 104) or "")
    assert "not a qcow2" in (qcow2_header_problem(header()[:40]) or "")
    assert "version 4" in (qcow2_header_problem(header(version=4)) or "")
    assert "backing file" in (qcow2_header_problem(header(backing=(512, 11))) or "")
    assert "backing file" in (qcow2_header_problem(header(backing=(0, 11))) or "")
    assert "data file" in (qcow2_header_problem(header(incompatible=4)) or "")
    assert "unknown incompatible" in (qcow2_header_problem(header(incompatible=1 << 40)) or "")
    assert "cut short" in (qcow2_header_problem(header()[:76]) or "")
    assert qcow2_virtual_size(header(size=5 * GIB)) == 5 * GIB


def test_info_checks() -> None:
    good = {"format": "qcow2", "virtual-size": MIB, "format-specific": {"type": "qcow2", "data": {}}}
    assert info_problem(good, "qcow2") is None
    assert "reads as 'raw'" in (info_problem({**good, "format": "raw"}, "qcow2") or "")
    assert "backing file" in (info_problem({**good, "backing-filename": "/etc/shadow"}, "qcow2") or "")
    assert "backing file" in (info_problem({**good, "full-backing-filename": "x"}, "qcow2") or "")
    data = {**good, "format-specific": {"type": "qcow2", "data": {"data-file": "/dev/sda"}}}
    assert "data file" in (info_problem(data, "qcow2") or "")
    assert "virtual size" in (info_problem({**good, "virtual-size": 0}, "qcow2") or "")


def test_capability_parse() -> None:
    status = "Name:\tx\nCapEff:\t000001fffeffffff\n"
    assert capable(21, status)  # CAP_SYS_ADMIN
    assert not capable(24, status)  # CAP_SYS_RESOURCE
    assert capable(24, "CapEff:\t0000000001000000\n")
    assert not capable(0, "Name: x\n")


def test_devices_of_reads_sysfs(tmp_path: Path) -> None:
    for n, backing in ((0, "/v/a.raw"), (3, "/v/b.raw"), (7, "/v/a.raw (deleted)")):
        d = tmp_path / f"loop{n}" / "loop"
        d.mkdir(parents=True)
        (d / "backing_file").write_text(backing + "\n")
    (tmp_path / "loop9").mkdir()  # unbound: no loop/ dir
    assert devices_of("/v/a.raw", sys_block=tmp_path) == ["/dev/loop0", "/dev/loop7"]
    assert devices_of("/v/b.raw", sys_block=tmp_path) == ["/dev/loop3"]
    assert devices_of("/v/c.raw", sys_block=tmp_path) == []


def test_sparse_copy_keeps_holes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with open(src, "wb") as fh:
        fh.truncate(16 * MIB)
        fh.seek(5 * MIB)
        fh.write(b"x" * 8192)
    sparse.copy_sparse(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert os.stat(dst).st_blocks * 512 < MIB
    with pytest.raises(FileExistsError):
        sparse.copy_sparse(src, dst)


def test_open_source_refuses_non_files(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    os.mkfifo(tmp_path / "p")
    os.close(sparse.open_source(tmp_path / "f"))
    for name, what in (("l", "symbolic link"), ("p", "FIFO"), ("missing", "cannot be opened"), (".", "directory")):
        with pytest.raises(UnsafeSource, match=what):
            sparse.open_source(tmp_path / name)


def test_publish_never_clobbers_and_grow_refuses_shrink(tmp_path: Path) -> None:
    final = tmp_path / "v.raw"
    final.write_bytes(b"old")
    tmp = sparse.temp_path(final)
    tmp.write_bytes(b"new")
    with pytest.raises(VolumeExists):
        sparse.publish(tmp, final)
    assert final.read_bytes() == b"old" and tmp.exists()
    sparse.publish(tmp, final, replace=True)
    assert final.read_bytes() == b"new" and not tmp.exists()
    assert sparse.grow(final, MIB) == 3
    with pytest.raises(Invalid, match="shrink"):
        sparse.grow(final, 512)


def test_reap_temps_takes_only_dead_processes(tmp_path: Path) -> None:
    mine = sparse.temp_path(tmp_path / "a.raw")
    mine.write_bytes(b"")
    dead = tmp_path / ".b.raw.999999999.0badf00d.tmp"  # no such pid
    dead.write_bytes(b"")
    other = tmp_path / ".c.raw.1.0badf00d.tmp"  # pid 1 lives
    other.write_bytes(b"")
    unrelated = tmp_path / ".hidden"
    unrelated.write_bytes(b"")
    assert sparse.reap_temps(tmp_path) == [dead.name]
    assert mine.exists() and other.exists() and unrelated.exists()


def test_reap_temps_takes_files_older_than_their_live_pid(tmp_path: Path) -> None:
    """A pid reused after a crash (the restarted cloud itself, in a fresh container): a live process
    that started after the file last changed is not its writer."""
    mine_before = sparse.temp_path(tmp_path / "a.raw")  # this pid, but from before this process started
    mine_before.write_bytes(b"")
    os.utime(mine_before, (0, 0))
    old_one = tmp_path / ".b.raw.1.0badf00d.tmp"  # pid 1, which started after 1970
    old_one.write_bytes(b"")
    os.utime(old_one, (0, 0))
    mine_now = tmp_path / f".c.raw.{os.getpid()}.0badf00d.tmp"  # written by this process: kept
    mine_now.write_bytes(b"")
    assert sorted(sparse.reap_temps(tmp_path)) == sorted([mine_before.name, old_one.name])
    assert mine_now.exists()
    assert not sparse.started_after(os.getpid(), time.time())


def test_registry() -> None:
    assert "file" in REGISTRY
    store = backend_class("file")(StoreConfig.under(Path("/nonexistent")))
    assert store.name == "file"
    assert store.config.root == Path("/nonexistent/volumes")
    with pytest.raises(ValueError, match="unknown volume backend"):
        backend_class("ceph")


async def test_whole_finishes_before_the_cancel_propagates() -> None:
    """A cancelled caller of `whole` sees the cancel only after the work ended (its cleanup comes
    after any write the work could still make)."""
    started, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def work() -> str:
        started.set()
        await release.wait()
        done.append("written")
        return "ok"

    caller = asyncio.create_task(sparse.whole(work()))
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0)
    assert not caller.done()  # still waiting for the work
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["written"]
    assert await sparse.whole(asyncio.sleep(0, result=5)) == 5


async def test_loop_reap_removes_records_a_dead_process_was_writing(tmp_path: Path) -> None:
    table = LoopTable(tmp_path)
    vid = str(uuid.uuid4())
    dead = tmp_path / f".{vid}.json.999999999.tmp"  # killed between the write and the rename
    alive = tmp_path / f".{vid}.json.1.tmp"  # pid 1 lives: its writer may still rename it
    dead.write_text("{}")
    alive.write_text("{}")
    assert await table.reap(set()) == []
    assert not dead.exists() and alive.exists()
