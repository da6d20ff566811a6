"""A compute host's image backend without the image service (image.remote, issue 14): downloads into
the host's cache (checked, shared, nothing left on failure), host tokens on the image API's data
routes, snapshot uploads and the cache's collection."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from _asgi_ctx import outside

from cumulo import conf as conf_mod
from cumulo import errors
from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.context import RequestContext
from cumulo.hosts.secrets import secret, sign
from cumulo.image import host_tokens
from cumulo.image.api import make_app
from cumulo.image.models import images
from cumulo.image.remote import RemoteImages
from cumulo.image.service import ImageService
from cumulo.web.http import PrefixDispatcher


class Counting(httpx.AsyncBaseTransport):
    """The image app over ASGI, counting the requests per method."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.calls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def transport(svc: ImageService) -> Counting:
    return Counting(PrefixDispatcher({"/image": make_app(svc, axis=MICROVERSIONS)}, outside("/image")))


@pytest.fixture
async def remote(svc: ImageService, image_conf: conf_mod.Settings, tmp_path: Path,
                 transport: Counting) -> AsyncIterator[RemoteImages]:
    conf = dataclasses.replace(image_conf, state_dir=tmp_path / "host-b")
    r = RemoteImages(svc.db, conf, "host-b", api_url="http://cumulo.test", transport=transport)
    yield r
    await r.close()


def _cache_files(r: RemoteImages) -> list[str]:
    return sorted(os.listdir(r.cache_dir)) if r.cache_dir.exists() else []


async def test_download_is_checked_shared_and_read_only(
    alice: httpx.AsyncClient, make_image: Any, remote: RemoteImages, transport: Counting
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 3)
    image = await make_image(alice, data, visibility="private")
    paths = await asyncio.gather(*(remote.local_path(image["id"]) for _ in range(4)))
    assert len(set(paths)) == 1
    assert transport.calls.count("GET") == 1  # four callers, one download
    path = Path(paths[0])
    assert path.parent == remote.cache_dir and path.name == hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o444
    assert await remote.local_path(image["id"]) == str(path)  # cached: no new request
    assert await remote.local_file(image["id"]) == (str(path), "raw")  # the volume worker's call
    assert transport.calls.count("GET") == 1
    assert _cache_files(remote) == [path.name]


async def test_corrupt_or_oversized_download_leaves_nothing(
    alice: httpx.AsyncClient, make_image: Any, remote: RemoteImages, svc: ImageService
) -> None:
    data = os.urandom(300_000)
    image = await make_image(alice, data)
    async with svc.db.write() as conn:
        await conn.execute(sa.update(images).where(images.c.id == image["id"]).values(checksum="0" * 32))
    with pytest.raises(errors.InvalidState, match="corrupt"):
        await remote.local_path(image["id"])
    assert _cache_files(remote) == []
    async with svc.db.write() as conn:
        await conn.execute(sa.update(images).where(images.c.id == image["id"])
                           .values(checksum=hashlib.md5(data).hexdigest()))
    # An API that sends more than the record's size: cut at the size, nothing kept.
    liar = RemoteImages(svc.db, remote.conf, "host-b", api_url="http://cumulo.test",
                        transport=httpx.MockTransport(lambda _req: httpx.Response(200, content=data + b"more")))
    with pytest.raises(errors.InvalidState, match="larger than its recorded size"):
        await liar.local_path(image["id"])
    await liar.close()
    assert _cache_files(remote) == []
    assert Path(await remote.local_path(image["id"])).read_bytes() == data  # the real API's bytes pass


async def test_image_without_data_is_refused_without_a_request(
    alice: httpx.AsyncClient, make_image: Any, remote: RemoteImages, transport: Counting
) -> None:
    image = await make_image(alice)
    with pytest.raises(errors.InvalidState, match="has no data"):
        await remote.local_path(image["id"])
    with pytest.raises(errors.NotFound):
        await remote.local_path("00000000-0000-0000-0000-000000000000")
    assert transport.calls == []


async def test_host_tokens_on_the_data_routes(
    alice: httpx.AsyncClient, make_image: Any, svc: ImageService, transport: Counting
) -> None:
    data = b"private bytes" * 100
    image = await make_image(alice, data, visibility="private")
    other = await make_image(alice, b"x")
    c = httpx.AsyncClient(transport=transport, base_url="http://cumulo.test/image")
    url = f"/v2/images/{image['id']}/file"
    good = await host_tokens.host_headers(svc.db, "host-b", image["id"])
    r = await c.get(url, headers=good)  # a private image of another project: the host acts for the cloud
    assert r.status_code == 200 and r.content == data
    key = await secret(svc.db, host_tokens.SECRET)
    bad = {
        "foreign image": await host_tokens.host_headers(svc.db, "host-b", other["id"]),
        "other host": {**good, host_tokens.HOST_HEADER: "host-c"},
        "expired": {host_tokens.HOST_HEADER: "host-b", host_tokens.TOKEN_HEADER: sign(
            key, "image", f"host-b|{image['id']}", 60, now=time.time() - 120)},
        "other purpose": {host_tokens.HOST_HEADER: "host-b", host_tokens.TOKEN_HEADER: sign(
            key, "transfer", f"host-b|{image['id']}")},
        "garbage": {host_tokens.HOST_HEADER: "host-b", host_tokens.TOKEN_HEADER: "1.abc"},
        "no host": {host_tokens.TOKEN_HEADER: good[host_tokens.TOKEN_HEADER]},
        # a "|" in the host would shift the signed subject's parts: refused before the mac
        "host with the separator": {host_tokens.HOST_HEADER: "host-b|x", host_tokens.TOKEN_HEADER: sign(
            key, "image", f"host-b|x|{image['id']}")},
        "latin-1 digit in the expiry": {host_tokens.HOST_HEADER: "host-b",
                                        host_tokens.TOKEN_HEADER: b"\xb2." + b"0" * 64},
    }
    for why, headers in bad.items():
        r = await c.get(url, headers=headers)
        assert r.status_code == 401, why
        assert "host token" in r.json()["message"]
        r = await c.put(url, headers={**headers, "Content-Type": "application/octet-stream"}, content=b"x")
        assert r.status_code == 401, why
    # Neither a host token nor a Keystone token: the usual 401.
    assert (await c.get(url)).status_code == 401
    # The token opens the data routes only, not the image's record.
    assert (await c.get(f"/v2/images/{image['id']}", headers=good)).status_code == 401


async def test_snapshot_upload_and_describe(
    svc: ImageService, remote: RemoteImages, tmp_path: Path
) -> None:
    owner = RequestContext(user_id="u", project_id="project-a", roles=frozenset({"member", "reader"}))
    snap = await svc.create_snapshot_record(owner, "snap", {"instance_uuid": "i-1"}, "raw", "bare")
    await remote.describe_snapshot(snap["id"], "qcow2", "bare", {"hw_disk_bus": "virtio"})
    src = tmp_path / "snap.qcow2"
    src.write_bytes(b"QFI\xfb" + b"\0" * 100)  # not a qcow2 header: the image API's inspector refuses it
    with pytest.raises(errors.InvalidState, match="415"):
        await remote.upload_from_path(snap["id"], str(src))
    src = tmp_path / "snap.raw"
    data = os.urandom(70_000)
    src.write_bytes(data)
    await remote.describe_snapshot(snap["id"], "raw", "bare", {})
    await remote.upload_from_path(snap["id"], str(src))
    got = await remote.get_internal(snap["id"])
    assert got is not None and got["status"] == "active" and got["checksum"] == hashlib.md5(data).hexdigest()
    assert got["hw_disk_bus"] == "virtio" and got["instance_uuid"] == "i-1"
    failed = await svc.create_snapshot_record(owner, "snap2", {}, "raw", "bare")
    await remote.mark_failed(failed["id"])
    assert await remote.get_internal(failed["id"]) is None


async def test_collection_keeps_live_and_leased_copies(
    alice: httpx.AsyncClient, make_image: Any, remote: RemoteImages, svc: ImageService
) -> None:
    live = await make_image(alice, b"live" * 1000)
    gone = await make_image(alice, b"gone" * 1000)
    live_path = Path(await remote.local_path(live["id"]))
    gone_path = Path(await remote.local_path(gone["id"]))
    (remote.cache_dir / f".{'a' * 64}.1234.part").write_bytes(b"half")  # an interrupted download
    await svc.delete(RequestContext.system(), gone["id"])
    keep = await remote.live_content_keys()
    assert gone_path.name not in keep
    assert await remote.collect_cache(keep) == []  # handed out just now: leased
    remote._leases.clear()  # the lease ran out (image_cache_min_age)
    assert await remote.collect_cache(keep) == [gone_path.name]
    assert _cache_files(remote) == [live_path.name]


async def test_an_interrupted_download_leaves_nothing(
    alice: httpx.AsyncClient, make_image: Any, remote: RemoteImages, svc: ImageService
) -> None:
    data = os.urandom(200_000)
    image = await make_image(alice, data)
    started, never = asyncio.Event(), asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield data[:100_000]
        started.set()
        await never.wait()  # the API host stops sending mid-body
        yield data[100_000:]

    stuck = RemoteImages(svc.db, remote.conf, "host-b", api_url="http://cumulo.test",
                         transport=httpx.MockTransport(lambda _req: httpx.Response(200, content=stalls())))
    waiter = asyncio.create_task(stuck.local_path(image["id"]))
    await started.wait()
    waiter.cancel()  # a caller that gives up does not end the shared download ...
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(stuck._inflight) == 1
    await stuck.close()  # ... the agent stopping does, and nothing is left
    assert stuck._inflight == {}
    assert _cache_files(stuck) == []


async def test_a_remembered_row_serves_the_next_local_path_without_a_read(
    alice: httpx.AsyncClient, make_image: Any, remote: RemoteImages, svc: ImageService
) -> None:
    data = os.urandom(1000)
    image = await make_image(alice, data)
    await remote.local_path(image["id"])  # downloaded (the image API, in this process, reads it too)
    async with svc.db.read() as conn:
        row = dict((await conn.execute(sa.select(images).where(images.c.id == image["id"]))).mappings().one())
    remote.remember_row(row)  # what the agent's take read with the instance
    reads: list[str] = []

    def seen(*args: Any) -> None:
        reads.append(args[2])

    sa.event.listen(svc.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        path = await remote.local_path(image["id"])
    finally:
        sa.event.remove(svc.db.engine.sync_engine, "before_cursor_execute", seen)
    assert Path(path).read_bytes() == data
    assert not [s for s in reads if "FROM images" in s]  # the row came with the take
    # used once: the next call reads the image afresh (a delete in between is seen)
    await svc.delete(RequestContext(user_id=None, project_id=image["owner"], roles=frozenset({"admin"})), image["id"])
    with pytest.raises(errors.NotFound):
        await remote.local_path(image["id"])
