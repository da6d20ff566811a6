"""Fixtures for the identity service alone: a temp DB, a bootstrapped IdentityService, and the
/identity app behind the same prefix dispatcher the cloud uses. Requests authenticate with real
tokens (X-Auth-Token), so the whole Keystone path is exercised."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo import conf as conf_mod
from cumulo.catalog import CATALOG
from cumulo.db import Database
from cumulo.identity import passwords
from cumulo.identity.api.app import make_app
from cumulo.identity.service import IdentityService
from cumulo.web.http import PrefixDispatcher


async def _no_root(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"request outside /identity: {scope.get('path')}")


@dataclass
class IdentityEnv:
    svc: IdentityService
    creds: dict[str, dict[str, str]]
    client: httpx.AsyncClient
    db: Database

    async def login(
        self,
        user: str = "admin",
        password: str | None = None,
        project: str | None = "default",
        *,
        expect: int = 201,
    ) -> tuple[str, dict[str, Any]]:
        """Password-authenticate by names; project "default" means the user's bootstrap project."""
        password = password if password is not None else self.creds[user]["password"]
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
            }
        }
        if project == "default":
            project = self.creds[user]["project"]
        if project is not None:
            auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        resp = await self.client.post("/identity/v3/auth/tokens", json={"auth": auth})
        assert resp.status_code == expect, resp.text
        return resp.headers.get("x-subject-token", ""), resp.json()

    async def headers(self, user: str = "admin", project: str | None = "default") -> dict[str, str]:
        token, _ = await self.login(user, project=project)
        return {"X-Auth-Token": token}


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with test-sized cost: the default (~0.1 s a hash) would dominate the run."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def id_conf(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state")


@pytest.fixture
async def make_env(id_conf: conf_mod.Settings) -> AsyncIterator[Callable[..., Awaitable[IdentityEnv]]]:
    """make_env(**settings overrides) → a fresh bootstrapped IdentityEnv, closed at teardown."""
    opened: list[IdentityEnv] = []

    async def factory(**overrides: Any) -> IdentityEnv:
        conf = id_conf.replace(**overrides)
        conf.state_dir.mkdir(parents=True, exist_ok=True)
        db = Database(f"sqlite+aiosqlite:///{conf.state_dir / f'id{len(opened)}.sqlite'}")
        await db.create_all()
        svc = IdentityService(db, conf)
        creds = await svc.bootstrap()
        app = PrefixDispatcher({"/identity": make_app(svc, conf, CATALOG)}, _no_root)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cumulo.test")
        env = IdentityEnv(svc=svc, creds=creds, client=client, db=db)
        opened.append(env)
        return env

    yield factory
    for e in opened:
        await e.client.aclose()
        await e.db.dispose()


@pytest.fixture
async def env(make_env: Callable[..., Awaitable[IdentityEnv]]) -> IdentityEnv:
    return await make_env()
