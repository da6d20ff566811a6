"""A compute host's image backend (image.remote.RemoteImages) against the real image API served by
uvicorn on loopback (issue 14): a download over real HTTP (Content-Length, chunking, host token),
a snapshot upload back, and the cache file's content key."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
import uvicorn
from _asgi_ctx import ctx_for, outside, temp_database

from cumulo import conf as conf_mod
from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.image.api import make_app
from cumulo.image.remote import RemoteImages
from cumulo.image.service import ImageService
from cumulo.web.http import PrefixDispatcher


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[ImageService, str]]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "api")
    async with temp_database(conf) as db:
        svc = ImageService(db, conf)
        await svc.bootstrap()
        app = PrefixDispatcher({"/image": make_app(svc, axis=MICROVERSIONS)}, outside("/image"))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
        try:
            yield svc, f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            await task


async def test_download_and_upload_over_http(api: tuple[ImageService, str], tmp_path: Path) -> None:
    svc, url = api
    owner = ctx_for("project-a")
    data = os.urandom(9 * 1024 * 1024 + 5)  # several chunks of the store and of the writer thread
    src = tmp_path / "base.raw"
    src.write_bytes(data)
    image = await svc.create_snapshot_record(owner, "base", {}, "raw", "bare")
    await svc.upload_from_path(image["id"], str(src))
    host = RemoteImages(svc.db, dataclasses.replace(svc.conf, state_dir=tmp_path / "host-b"), "host-b", api_url=url)
    try:
        path = Path(await host.local_path(image["id"]))
        assert path.name == hashlib.sha256(data).hexdigest() and path.read_bytes() == data
        snap = await svc.create_snapshot_record(owner, "snap", {}, "raw", "bare")
        out = tmp_path / "snap.raw"
        out.write_bytes(data[: 5 * 1024 * 1024])
        await host.upload_from_path(snap["id"], str(out))
        got = await svc.get_internal(snap["id"])
        assert got is not None and got["status"] == "active"
        assert got["os_hash_value"] == hashlib.sha512(data[: 5 * 1024 * 1024]).hexdigest()
    finally:
        await host.close()
