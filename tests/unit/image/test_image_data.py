"""Create → upload → download round trips, statuses, checksums and the data-path error cases."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx

OCTET = {"Content-Type": "application/octet-stream"}


async def test_round_trip_with_checksums(alice: httpx.AsyncClient, svc: Any) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one store chunk, not a multiple of it
    r = await alice.post("/v2/images", json={"name": "cirros", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201
    image = r.json()
    assert image["status"] == "queued"
    assert r.headers["location"].endswith(f"/image/v2/images/{image['id']}")
    assert image["checksum"] is None and image["os_hash_algo"] is None and image["size"] is None

    r = await alice.put(f"/v2/images/{image['id']}/file", content=data, headers=OCTET)
    assert r.status_code == 204, r.text

    shown = (await alice.get(f"/v2/images/{image['id']}")).json()
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["virtual_size"] == len(data)  # raw: virtual size is the file size
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()

    r = await alice.get(f"/v2/images/{image['id']}/file")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["content-type"] == "application/octet-stream"

    # The bytes live at their content address inside the state dir.
    path = await svc.local_path(image["id"])
    assert path.endswith(hashlib.sha256(data).hexdigest())
    assert str(svc.store.root) in path


async def test_status_is_saving_while_bytes_stream(alice: httpx.AsyncClient, svc: Any, make_image: Any) -> None:
    image = await make_image(alice)
    seen: list[str] = []

    async def body() -> Any:
        yield b"a" * 1000
        seen.append((await svc.get_internal(image["id"]))["status"])
        yield b"b" * 1000

    r = await alice.put(f"/v2/images/{image['id']}/file", content=body(), headers=OCTET)
    assert r.status_code == 204
    assert seen == ["saving"]
    assert (await svc.get_internal(image["id"]))["status"] == "active"


async def test_download_of_queued_image_is_204(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice)
    r = await alice.get(f"/v2/images/{image['id']}/file")
    assert r.status_code == 204
    assert r.content == b""


async def test_second_upload_conflicts(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, b"first")
    r = await alice.put(f"/v2/images/{image['id']}/file", content=b"second", headers=OCTET)
    assert r.status_code == 409
    assert (await alice.get(f"/v2/images/{image['id']}/file")).content == b"first"


async def test_upload_needs_octet_stream(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice)
    r = await alice.put(f"/v2/images/{image['id']}/file", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert (await alice.get(f"/v2/images/{image['id']}")).json()["status"] == "queued"


async def test_upload_needs_formats(alice: httpx.AsyncClient) -> None:
    image = (await alice.post("/v2/images", json={"name": "noformat"})).json()
    r = await alice.put(f"/v2/images/{image['id']}/file", content=b"x", headers=OCTET)
    assert r.status_code == 400
    assert "disk_format" in r.json()["message"]


async def test_size_header_mismatch_restores_queued(alice: httpx.AsyncClient, make_image: Any, svc: Any) -> None:
    image = await make_image(alice)
    headers = {**OCTET, "X-OpenStack-Image-Size": "99"}
    r = await alice.put(f"/v2/images/{image['id']}/file", content=b"12345", headers=headers)
    assert r.status_code == 400
    assert (await alice.get(f"/v2/images/{image['id']}")).json()["status"] == "queued"
    assert await svc.store.keys() == []
    assert list(svc.store.tmp_dir.iterdir()) == []  # the partial upload was removed


async def test_upload_over_size_cap_is_413(alice: httpx.AsyncClient, make_image: Any, svc: Any) -> None:
    image = await make_image(alice)

    async def body() -> Any:  # streamed, so no Content-Length gives it away up front
        for _ in range(5):
            yield b"z" * (1 << 20)

    r = await alice.put(f"/v2/images/{image['id']}/file", content=body(), headers=OCTET)
    assert r.status_code == 413
    assert (await alice.get(f"/v2/images/{image['id']}")).json()["status"] == "queued"
    assert list(svc.store.tmp_dir.iterdir()) == []

    r = await alice.put(
        f"/v2/images/{image['id']}/file", content=b"x", headers={**OCTET, "Content-Length": str(5 << 20)}
    )
    assert r.status_code == 413


async def test_range_download(alice: httpx.AsyncClient, make_image: Any) -> None:
    data = bytes(range(256)) * 4
    image = await make_image(alice, data)
    r = await alice.get(f"/v2/images/{image['id']}/file", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = await alice.get(f"/v2/images/{image['id']}/file", headers={"Range": "bytes=-5"})
    assert r.content == data[-5:]
    r = await alice.get(f"/v2/images/{image['id']}/file", headers={"Range": "bytes=5000-"})
    assert r.status_code == 416


async def test_qcow2_virtual_size_is_read_from_header(alice: httpx.AsyncClient, make_image: Any) -> None:
    header = b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(16) + (10 << 30).to_bytes(8, "big")
    image = await make_image(alice, header + bytes(500), disk_format="qcow2")  # the inspector reads 512 bytes
    assert image["virtual_size"] == 10 << 30
    assert image["size"] == len(header) + 500


async def test_deactivated_image_download_forbidden_to_non_admin(
    alice: httpx.AsyncClient, admin: httpx.AsyncClient, make_image: Any
) -> None:
    image = await make_image(alice, b"payload")
    assert (await alice.post(f"/v2/images/{image['id']}/actions/deactivate")).status_code == 204
    assert (await alice.get(f"/v2/images/{image['id']}")).json()["status"] == "deactivated"
    assert (await alice.get(f"/v2/images/{image['id']}/file")).status_code == 403
    assert (await admin.get(f"/v2/images/{image['id']}/file")).content == b"payload"
    assert (await alice.post(f"/v2/images/{image['id']}/actions/reactivate")).status_code == 204
    assert (await alice.get(f"/v2/images/{image['id']}/file")).content == b"payload"
    queued = await make_image(alice)
    assert (await alice.post(f"/v2/images/{queued['id']}/actions/deactivate")).status_code == 400


async def test_delete_during_upload_is_410_and_leaves_no_bytes(
    alice: httpx.AsyncClient, make_image: Any, svc: Any
) -> None:
    image = await make_image(alice)

    async def body() -> Any:
        yield b"a" * 5000
        r = await alice.delete(f"/v2/images/{image['id']}")
        assert r.status_code == 204
        yield b"b" * 5000

    r = await alice.put(f"/v2/images/{image['id']}/file", content=body(), headers=OCTET)
    assert r.status_code == 410
    assert await svc.store.keys() == []
    assert list(svc.store.tmp_dir.iterdir()) == []
    assert (await alice.get(f"/v2/images/{image['id']}")).status_code == 404


async def test_concurrent_uploads_one_wins(alice: httpx.AsyncClient, make_image: Any) -> None:
    import asyncio

    image = await make_image(alice)
    gate = asyncio.Event()

    async def slow() -> Any:
        yield b"slow"
        await gate.wait()
        yield b"-done"

    async def fast() -> httpx.Response:
        await asyncio.sleep(0.05)
        try:
            return await alice.put(f"/v2/images/{image['id']}/file", content=b"fast", headers=OCTET)
        finally:
            gate.set()

    first, second = await asyncio.gather(
        alice.put(f"/v2/images/{image['id']}/file", content=slow(), headers=OCTET), fast()
    )
    assert first.status_code == 204
    assert second.status_code == 409
    assert (await alice.get(f"/v2/images/{image['id']}/file")).content == b"slow-done"
