"""Fixtures for the volume API alone: a temp DB, the service over an in-memory worker, and the
/volume app behind the prefix dispatcher the cloud uses, with requests made as a chosen context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from _asgi_ctx import AsCtx, ctx_for, outside, temp_database
from fake_worker import FakeImages, FakeWorker

from cumulo import conf as conf_mod
from cumulo.context import RequestContext
from cumulo.volume.api.app import make_app
from cumulo.volume.service import VolumeService
from cumulo.web.http import PrefixDispatcher


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[VolumeService]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    async with temp_database(conf) as db:
        service = VolumeService(db, conf, FakeWorker(db))
        service.images = FakeImages()
        yield service


@pytest.fixture
def worker(svc: VolumeService) -> FakeWorker:
    assert isinstance(svc.worker, FakeWorker)
    return svc.worker


@pytest.fixture
def images(svc: VolumeService) -> FakeImages:
    assert isinstance(svc.images, FakeImages)
    return svc.images


@pytest.fixture
def client(svc: VolumeService) -> Callable[..., httpx.AsyncClient]:
    """client(ctx, version="3.70") -> an httpx client whose base URL is /volume/v3/<ctx's project>."""
    app = PrefixDispatcher({"/volume": make_app(svc)}, outside("/volume"))

    def factory(ctx: RequestContext, version: str | None = "3.70") -> httpx.AsyncClient:
        headers = {"OpenStack-API-Version": f"volume {version}"} if version else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx)),
                                 base_url=f"http://cumulo.test/volume/v3/{ctx.project_id}", headers=headers)

    return factory


@pytest.fixture
def alice(client: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    return client(ctx_for("project-a", "member"))


@pytest.fixture
def bob(client: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    return client(ctx_for("project-b", "member"))


@pytest.fixture
def admin(client: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    return client(ctx_for("project-admin", "admin"))
