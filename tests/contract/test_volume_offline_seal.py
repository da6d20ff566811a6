"""The host effect of an offline volume (cumulo.volume.worker.offline) on the real host: a sealed
volume file cannot be bound to a loop device (what a container attach does), opened by QEMU for
writing (what a VM attach does), written, truncated, renamed or removed, by root; reads still
work. Unsealed, the same loop device binding works again. Needs root (CAP_LINUX_IMMUTABLE) and a
state dir on a filesystem with the immutable attribute (ext4 here). ~1 s."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cumulo import errors
from cumulo.blockstore import open_store
from cumulo.blockstore.base import GIB, BlockStore, StoreConfig
from cumulo.blockstore.loop import LoopTable
from cumulo.volume.worker import offline

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sealing a file (chattr +i) needs root")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[BlockStore]:
    s = open_store("file", StoreConfig.under(tmp_path / "state"))
    await s.ensure_dirs()
    yield s
    # never leave an immutable file behind (tmp_path could not be removed)
    subprocess.run(["chattr", "-R", "-i", str(tmp_path)], check=False, capture_output=True)  # noqa: S603, S607


async def test_a_sealed_volume_file_is_unusable_for_writing_by_anyone(store: BlockStore, tmp_path: Path) -> None:
    vid = str(uuid.uuid4())
    await store.create(vid, GIB)
    path = Path(store.location(vid).path)
    with open(path, "r+b") as f:
        f.write(b"before offline")
    loops = LoopTable(tmp_path / "loops")
    assert await offline.seal(store, vid) == path
    assert await offline.sealed(path)
    with open(path, "rb") as f:  # reads still work
        assert f.read(14) == b"before offline"
    for attempt in (lambda: open(path, "r+b"), lambda: os.truncate(path, 2 * GIB),
                    lambda: path.rename(path.with_suffix(".moved")), path.unlink):
        with pytest.raises(PermissionError):
            attempt()
    with pytest.raises(errors.HostError, match="Operation not permitted"):
        await loops.attach(vid, path)
    assert await loops.device(vid) is None
    if shutil.which("qemu-io"):
        r = subprocess.run(["qemu-io", "-f", "raw", "-c", "write 0 4k", str(path)],  # noqa: S603, S607
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr + r.stdout, r
    with pytest.raises(PermissionError):  # the store's own delete too (the worker unseals first)
        await store.delete(vid)
    # unsealed: everything works again (a loop device binds, and is released)
    assert await offline.unseal(store, vid) == path
    assert not await offline.sealed(path)
    device = await loops.attach(vid, path)
    try:
        assert device.startswith("/dev/loop")
    finally:
        await loops.detach(vid)
    await store.delete(vid)
    assert not path.exists()
    assert await offline.unseal(store, vid) is None  # gone: nothing to unseal


async def test_only_an_existing_file_is_sealed(store: BlockStore) -> None:
    with pytest.raises(errors.NotFound):
        await offline.seal(store, str(uuid.uuid4()))
