"""The content-addressed store: path safety, de-duplication, garbage collection, crash recovery."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo import errors
from cumulo.image.service import ImageService
from cumulo.image.store import HEAD_BYTES, ImageStore


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a" * 63,
        "A" * 64,
        "g" * 64,
        "aa/" + "a" * 61,
        "." * 64,
        "",
        "a" * 64 + "\n",
    ],
)
def test_path_for_rejects_anything_but_a_sha256(tmp_path: Path, key: str) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ValueError):
        store.path_for(key)


def test_path_for_stays_inside_the_store(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    key = hashlib.sha256(b"x").hexdigest()
    path = store.path_for(key)
    assert path == store.root / "data" / key[:2] / key
    assert path.resolve().is_relative_to(store.root)


async def test_writer_hashes_and_commits_atomically(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    await store.ensure_dirs()
    data = b"0123456789" * 300_000
    writer = await store.open_writer()
    assert writer.path.parent == store.tmp_dir
    for i in range(0, len(data), 65536):
        await writer.write(data[i : i + 65536])
    digest = await writer.finish()
    assert digest.size == len(data)
    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.sha512 == hashlib.sha512(data).hexdigest()
    assert digest.head == data[:HEAD_BYTES]
    target = await store.commit(writer, digest)
    assert target.read_bytes() == data
    assert not writer.path.exists()
    assert b"".join([c async for c in store.read(digest.sha256, 5, 10)]) == data[5:15]

    # The same bytes again: one copy is kept and the temp file is dropped.
    writer2 = await store.open_writer()
    await writer2.write(data)
    digest2 = await writer2.finish()
    assert await store.commit(writer2, digest2) == target
    assert not writer2.path.exists()
    assert await store.keys() == [digest.sha256]


async def test_writer_limit(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    writer = await store.open_writer(limit=10)
    await writer.write(b"12345")
    with pytest.raises(errors.PayloadTooLarge):
        await writer.write(b"123456")
    await writer.abort()
    assert not writer.path.exists()


async def test_identical_images_share_bytes_until_the_last_goes(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, make_image: Any, svc: ImageService
) -> None:
    data = b"same bytes" * 1000
    key = hashlib.sha256(data).hexdigest()
    first = await make_image(alice, data, name="first")
    second = await make_image(bob, data, name="second")
    other = await make_image(alice, b"other bytes", name="other")
    assert sorted(await svc.store.keys()) == sorted([key, hashlib.sha256(b"other bytes").hexdigest()])
    assert await svc.local_path(first["id"]) == await svc.local_path(second["id"])

    assert (await alice.delete(f"/v2/images/{first['id']}")).status_code == 204
    assert await svc.store.exists(key)  # still used by bob's image
    assert (await bob.get(f"/v2/images/{second['id']}/file")).content == data

    assert (await bob.delete(f"/v2/images/{second['id']}")).status_code == 204
    assert not await svc.store.exists(key)
    assert await svc.store.keys() == [hashlib.sha256(b"other bytes").hexdigest()]
    assert (await alice.get(f"/v2/images/{other['id']}/file")).content == b"other bytes"


async def test_deleted_id_cannot_be_reused(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, name="gone")
    assert (await alice.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert (await alice.delete(f"/v2/images/{image['id']}")).status_code == 404
    r = await alice.post("/v2/images", json={"id": image["id"], "name": "again"})
    assert r.status_code == 409


async def test_bootstrap_reconciles_after_a_crash(alice: httpx.AsyncClient, make_image: Any, svc: ImageService) -> None:
    kept = await make_image(alice, b"kept", name="kept")
    stuck = await make_image(alice, name="stuck")
    # Simulate a crash mid-upload: status left at saving, a temp file, and an orphan blob.
    async with svc.db.write() as conn:
        await svc.set_status(conn, stuck["id"], ("queued",), "saving")
    writer = await svc.store.open_writer()
    await writer.write(b"partial")
    orphan_writer = await svc.store.open_writer()
    await orphan_writer.write(b"orphan")
    orphan = await orphan_writer.finish()
    await svc.store.commit(orphan_writer, orphan)

    await ImageService(svc.db, svc.conf).bootstrap()

    assert (await svc.get_internal(stuck["id"]))["status"] == "queued"
    assert list(svc.store.tmp_dir.iterdir()) == []
    assert not await svc.store.exists(orphan.sha256)
    assert (await alice.get(f"/v2/images/{kept['id']}/file")).content == b"kept"
