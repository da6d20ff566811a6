"""Fixtures for the network service alone: a temp DB, the service, and the /networking app behind the
same prefix dispatcher the cloud uses, with requests made as a chosen RequestContext."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from net_support import AsCtx, ctx_for, no_root

from cumulo import conf as conf_mod
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.network.api import make_app
from cumulo.network.service import NetworkService
from cumulo.web.http import PrefixDispatcher


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[NetworkService]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    conf.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{conf.state_dir / 'test.sqlite'}")
    await db.create_all()
    try:
        yield NetworkService(db, conf)
    finally:
        await db.dispose()


@pytest.fixture
def client(svc: NetworkService) -> Callable[[RequestContext], httpx.AsyncClient]:
    """client(ctx) -> an httpx client whose base URL is the /networking endpoint of the catalog."""
    app = PrefixDispatcher({"/networking": make_app(svc)}, no_root)

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
