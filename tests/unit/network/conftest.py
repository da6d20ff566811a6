"""Fixtures for the network service alone: a temp DB, the service, and the /networking app behind the
same prefix dispatcher the cloud uses, with requests made as a chosen RequestContext."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from _asgi_ctx import AsCtx, ctx_for, outside, temp_database

from cumulo import conf as conf_mod
from cumulo.context import RequestContext
from cumulo.network.api import make_app
from cumulo.network.service import NetworkService
from cumulo.web.http import PrefixDispatcher


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[NetworkService]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    async with temp_database(conf) as db:
        yield NetworkService(db, conf)


@pytest.fixture
def client(svc: NetworkService) -> Callable[[RequestContext], httpx.AsyncClient]:
    """client(ctx) -> an httpx client whose base URL is the /networking endpoint of the catalog."""
    app = PrefixDispatcher({"/networking": make_app(svc)}, outside("/networking"))

    def factory(ctx: RequestContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=AsCtx(app, ctx)), base_url="http://cumulo.test/networking"
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
