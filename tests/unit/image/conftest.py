"""Fixtures for the image service alone: a temp DB, the service, and the /image app behind the
same prefix dispatcher the cloud uses, with requests made as a chosen RequestContext."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo import conf as conf_mod
from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database
from cumulo.image.api import make_app
from cumulo.image.service import ImageService
from cumulo.web.http import PrefixDispatcher


class _AsCtx:
    """ASGI wrapper: every request acts as `ctx` (authenticate() reads it from the scope)."""

    def __init__(self, app: Any, ctx: RequestContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["cumulo.context"] = self.ctx
        await self.app(scope, receive, send)


async def _no_root(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"request outside /image: {scope.get('path')}")


def ctx_for(project: str, *roles: str) -> RequestContext:
    return RequestContext(user_id=f"user-{project}", project_id=project, roles=expand_roles(list(roles or ("member",))))


@pytest.fixture
def image_conf(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", extra={"image_size_cap": 4 << 20})


@pytest.fixture
async def svc(image_conf: conf_mod.Settings) -> AsyncIterator[ImageService]:
    image_conf.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{image_conf.state_dir / 'test.sqlite'}")
    await db.create_all()
    service = ImageService(db, image_conf)
    await service.bootstrap()
    try:
        yield service
    finally:
        await db.dispose()


@pytest.fixture
def ctx() -> Callable[..., RequestContext]:
    """ctx(project, *roles) → a RequestContext (member by default)."""
    return ctx_for


@pytest.fixture
def client(svc: ImageService) -> Callable[[RequestContext], httpx.AsyncClient]:
    """client(ctx) → an httpx client whose base URL is the /image endpoint of the catalog."""
    app = PrefixDispatcher({"/image": make_app(svc, axis=MICROVERSIONS)}, _no_root)

    def factory(ctx: RequestContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=_AsCtx(app, ctx)), base_url="http://cumulo.test/image"
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
