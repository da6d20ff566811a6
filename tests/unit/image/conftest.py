"""Fixtures for the image service alone: a temp DB, the service, and the /image app behind the
same prefix dispatcher the cloud uses, with requests made as a chosen RequestContext."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_ctx import AsCtx, ctx_for, outside, temp_database

from cumulo import conf as conf_mod
from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.context import RequestContext
from cumulo.image.api import make_app
from cumulo.image.service import ImageService
from cumulo.web.http import PrefixDispatcher


@pytest.fixture
def image_conf(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", extra={"image_size_cap": 4 << 20})


@pytest.fixture
async def svc(image_conf: conf_mod.Settings) -> AsyncIterator[ImageService]:
    async with temp_database(image_conf) as db:
        service = ImageService(db, image_conf)
        await service.bootstrap()
        yield service


@pytest.fixture
def ctx() -> Callable[..., RequestContext]:
    """ctx(project, *roles) → a RequestContext (member by default)."""
    return ctx_for


@pytest.fixture
def client(svc: ImageService) -> Callable[[RequestContext], httpx.AsyncClient]:
    """client(ctx) → an httpx client whose base URL is the /image endpoint of the catalog."""
    app = PrefixDispatcher({"/image": make_app(svc, axis=MICROVERSIONS)}, outside("/image"))

    def factory(ctx: RequestContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=AsCtx(app, ctx)), base_url="http://cumulo.test/image"
        )

    return factory


@pytest.fixture
def alice(client: Callable[[RequestContext], httpx.AsyncClient]) -> httpx.AsyncClient:
    return client(ctx_for("project-a", "member"))


@pytest.fixture
def bob(client: Callable[[RequestContext], httpx.AsyncClient]) -> httpx.AsyncClient:
    return client(ctx_for("project-b", "member"))


@pytest.fixture
def admin(client: Callable[[RequestContext], httpx.AsyncClient]) -> httpx.AsyncClient:
    return client(ctx_for("project-admin", "admin"))


@pytest.fixture
def reader(client: Callable[[RequestContext], httpx.AsyncClient]) -> httpx.AsyncClient:
    return client(ctx_for("project-a", "reader"))


async def _make_image(c: httpx.AsyncClient, data: bytes | None = None, **body: Any) -> dict[str, Any]:
    """Create an image (raw/bare unless told otherwise) and upload `data` if given."""
    payload = {"disk_format": "raw", "container_format": "bare", **body}
    r = await c.post("/v2/images", json=payload)
    assert r.status_code == 201, r.text
    image: dict[str, Any] = r.json()
    if data is not None:
        r = await c.put(
            f"/v2/images/{image['id']}/file", content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert r.status_code == 204, r.text
        image = (await c.get(f"/v2/images/{image['id']}")).json()
    return image


@pytest.fixture
def make_image() -> Callable[..., Any]:
    return _make_image
