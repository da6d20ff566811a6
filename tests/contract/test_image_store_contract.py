"""The image store contract (image/store.py's ContentStore), checked on every store the same way.

Each store joins by adding a factory to STORES: given a directory, the store kept under it (called
again with the same directory, the same store after a restart). Today: "local" (ImageStore,
content-addressed files under <state_dir>/images). A store that keeps its bytes elsewhere (Swift,
Ceph) must pass the same tests: a key is a sha256 hex digest and nothing else; an upload hashes
as it streams and is not in the store until committed; identical bytes are kept once; an aborted,
oversized or crashed upload leaves nothing; garbage collection keeps exactly the referenced keys;
what was committed survives a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cumulo import errors
from cumulo.image.store import CHUNK, HEAD_BYTES, ContentStore, Digest, ImageStore, StoreUpload

STORES: dict[str, Callable[[Path], ContentStore]] = {
    "local": lambda root: ImageStore(root / "images"),
}

BAD_KEYS = [
    "../../etc/passwd",
    "/etc/passwd",
    "a" * 63,
    "A" * 64,
    "g" * 64,
    "aa/" + "a" * 61,
    "." * 64,
    "",
    "a" * 64 + "\n",
    "../../victim",
]


@pytest.fixture(params=sorted(STORES))
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ContentStore]:
    """Opens the store under this test's directory (again: as the cloud does after a restart)."""
    return lambda: STORES[request.param](tmp_path / "store")


@pytest.fixture
async def store(reopen: Callable[[], ContentStore]) -> ContentStore:
    s = reopen()
    await s.ensure_dirs()
    return s


def blob(n: int, seed: bytes = b"") -> bytes:
    """n bytes that differ from block to block (so chunking mistakes show)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


async def put(store: ContentStore, data: bytes, step: int = 65536) -> Digest:
    writer = await store.open_writer()
    for i in range(0, len(data), step):
        await writer.write(data[i : i + step])
    digest = await writer.finish()
    await store.commit(writer, digest)
    return digest


async def read_all(store: ContentStore, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, offset, length)])


# -- what every store is ------------------------------------------------------------------------


async def test_implements_the_protocols(store: ContentStore) -> None:
    assert isinstance(store, ContentStore)
    writer = await store.open_writer()
    assert isinstance(writer, StoreUpload)
    await writer.abort()
    assert await store.keys() == []


# -- uploads ------------------------------------------------------------------------------------


async def test_upload_hashes_as_it_streams_and_is_absent_until_committed(store: ContentStore) -> None:
    data = blob(3 * CHUNK + 12345)  # several chunks and a ragged end
    key = hashlib.sha256(data).hexdigest()
    writer = await store.open_writer()
    for i in range(0, len(data), 70001):  # writes that do not line up with the store's chunks
        await writer.write(data[i : i + 70001])
    assert writer.size == len(data)
    digest = await writer.finish()
    assert digest.size == len(data)
    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert digest.sha256 == key
    assert digest.sha512 == hashlib.sha512(data).hexdigest()
    assert digest.head == data[:HEAD_BYTES]
    assert not await store.exists(key) and await store.keys() == []  # finished is not committed

    await store.commit(writer, digest)
    assert await store.exists(key)
    assert await store.keys() == [key]
    assert await read_all(store, key) == data
    assert await asyncio.to_thread(store.path_for(key).read_bytes) == data


async def test_empty_upload(store: ContentStore) -> None:
    writer = await store.open_writer()
    digest = await writer.finish()
    assert (digest.size, digest.sha256, digest.head) == (0, hashlib.sha256(b"").hexdigest(), b"")
    await store.commit(writer, digest)
    assert await store.exists(digest.sha256)
    assert await read_all(store, digest.sha256) == b""


async def test_reads_ranges_in_bounded_chunks(store: ContentStore) -> None:
    data = blob(2 * CHUNK + 7)
    key = (await put(store, data)).sha256
    assert await read_all(store, key, 5, 10) == data[5:15]
    assert await read_all(store, key, len(data) - 3) == data[-3:]
    assert await read_all(store, key, 10, 10 * len(data)) == data[10:]  # a length past the end stops there
    assert await read_all(store, key, len(data)) == b""
    assert await read_all(store, key, 0, 0) == b""
    sizes = [len(chunk) async for chunk in store.read(key)]
    assert sum(sizes) == len(data) and max(sizes) <= CHUNK  # streamed, never the whole image at once


async def test_identical_bytes_are_stored_once(store: ContentStore) -> None:
    data = blob(CHUNK + 1, b"same")
    key = hashlib.sha256(data).hexdigest()
    digests = await asyncio.gather(*(put(store, data, step) for step in (4096, 65536, len(data))))
    assert {d.sha256 for d in digests} == {key}
    assert await store.keys() == [key]
    assert await read_all(store, key) == data
    assert await store.sweep_tmp() == 0  # the duplicates' temp files went with their commit


async def test_different_uploads_side_by_side(store: ContentStore) -> None:
    datas = [blob(100_000 + i, bytes([i])) for i in range(6)]
    digests = await asyncio.gather(*(put(store, d, 9999) for d in datas))
    assert sorted(await store.keys()) == sorted(hashlib.sha256(d).hexdigest() for d in datas)
    for d, digest in zip(datas, digests, strict=True):
        assert await read_all(store, digest.sha256) == d


async def test_a_limit_refuses_the_write_that_crosses_it(store: ContentStore) -> None:
    writer = await store.open_writer(limit=10)
    await writer.write(b"12345")
    await writer.write(b"67890")  # exactly the limit is fine
    with pytest.raises(errors.PayloadTooLarge):
        await writer.write(b"1")
    await writer.abort()
    assert await store.keys() == []
    assert await store.sweep_tmp() == 0  # the abort left nothing behind


@pytest.mark.parametrize("when", ["writing", "finished"])
async def test_abort_leaves_nothing(store: ContentStore, when: str) -> None:
    data = blob(CHUNK + 99)
    writer = await store.open_writer()
    await writer.write(data)
    if when == "finished":  # the image service aborts a finished upload whose check failed
        await writer.finish()
    await writer.abort()
    assert not await store.exists(hashlib.sha256(data).hexdigest())
    assert await store.keys() == []
    assert await store.sweep_tmp() == 0


async def test_import_file(store: ContentStore, tmp_path: Path) -> None:
    data = blob(CHUNK * 2 + 5)
    source = tmp_path / "source.img"
    source.write_bytes(data)
    writer, digest = await store.import_file(source)
    assert (digest.size, digest.sha256, digest.md5) == (len(data), hashlib.sha256(data).hexdigest(),
                                                        hashlib.md5(data).hexdigest())
    assert not await store.exists(digest.sha256)  # imported, not committed yet
    await store.commit(writer, digest)
    assert await read_all(store, digest.sha256) == data
    assert source.read_bytes() == data  # the source is copied, never moved


async def test_import_file_over_the_limit_leaves_nothing(store: ContentStore, tmp_path: Path) -> None:
    source = tmp_path / "big.img"
    source.write_bytes(blob(CHUNK + 1))
    with pytest.raises(errors.PayloadTooLarge):
        await store.import_file(source, limit=CHUNK)
    assert await store.keys() == []
    assert await store.sweep_tmp() == 0


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_anything_but_a_sha256_is_refused(store: ContentStore, tmp_path: Path, key: str) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not the store's")
    with pytest.raises(ValueError):
        store.path_for(key)
    with pytest.raises(ValueError):
        await store.exists(key)
    with pytest.raises(ValueError):
        await store.remove(key)
    with pytest.raises(ValueError):
        await read_all(store, key)
    assert victim.read_bytes() == b"not the store's"


async def test_remove_is_idempotent_and_spares_other_keys(store: ContentStore) -> None:
    a, b = (await put(store, b"a" * 1000)).sha256, (await put(store, b"b" * 1000)).sha256
    await store.remove(a)
    assert not await store.exists(a) and await store.exists(b)
    assert await store.keys() == [b]
    await store.remove(a)  # already gone
    await store.remove("f" * 64)  # never stored
    assert await read_all(store, b) == b"b" * 1000


async def test_remove_unreferenced_keeps_exactly_the_referenced(store: ContentStore) -> None:
    keys = [(await put(store, bytes([i]) * 5000)).sha256 for i in range(3)]
    never = "e" * 64
    removed = await store.remove_unreferenced({keys[0], never})
    assert sorted(removed) == sorted(keys[1:])
    assert await store.keys() == [keys[0]]
    assert await store.remove_unreferenced(keys) == []


async def test_committed_bytes_are_private(store: ContentStore) -> None:
    key = (await put(store, b"secret image")).sha256
    mode = (await asyncio.to_thread(os.stat, store.path_for(key))).st_mode
    assert mode & 0o077 == 0  # the cloud's user alone, as the whole state dir


# -- restarts -----------------------------------------------------------------------------------


async def test_committed_bytes_survive_a_restart(store: ContentStore, reopen: Callable[[], ContentStore]) -> None:
    data = blob(CHUNK + 3)
    key = (await put(store, data)).sha256
    again = reopen()
    await again.ensure_dirs()
    assert await again.exists(key) and await again.keys() == [key]
    assert await read_all(again, key) == data


async def test_a_crash_mid_upload_is_swept_at_the_next_start(
    store: ContentStore, reopen: Callable[[], ContentStore]
) -> None:
    cut_short = await store.open_writer()
    await cut_short.write(blob(CHUNK + 10))  # never finished: the process "dies" here
    finished = await store.open_writer()
    await finished.write(b"finished, never committed")
    await finished.finish()
    kept = (await put(store, b"kept")).sha256

    again = reopen()
    await again.ensure_dirs()
    assert await again.sweep_tmp() == 2
    assert await again.sweep_tmp() == 0
    assert await again.keys() == [kept]
    await cut_short.abort()  # the dead process's handle, closed for the test's sake
    await finished.abort()
