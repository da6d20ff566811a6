"""Fixtures for the volume API alone: a temp DB, the service over an in-memory worker, and the
/volume app behind the prefix dispatcher the cloud uses, with requests made as a chosen context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fake_worker import FakeImages, FakeWorker
from vol_support import AsCtx, ctx_for

from cumulo import conf as conf_mod
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.volume.api.app import make_app
from cumulo.volume.service import VolumeService
from cumulo.web.http import PrefixDispatcher


async def _outside(scope: object, receive: object, send: object) -> None:
    raise AssertionError("request outside /volume")


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[VolumeService]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    conf.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{conf.state_dir / 'test.sqlite'}")
    await db.create_all()
    service = VolumeService(db, conf, FakeWorker(db))
    service.images = FakeImages()
    try:
        yield service
    finally:
        await db.dispose()


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
    app = PrefixDispatcher({"/volume": make_app(svc)}, _outside)

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
