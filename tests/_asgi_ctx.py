"""What the in-process API tests of one service share: requests made as a chosen RequestContext
(an ASGI wrapper, no token round-trip), contexts by project and roles, and a temp SQLite database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database


class AsCtx:
    """ASGI wrapper: every request acts as `ctx` (authenticate() reads it from the scope)."""

    def __init__(self, app: Any, ctx: RequestContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["cumulo.context"] = self.ctx
        await self.app(scope, receive, send)


def ctx_for(project: str, *roles: str) -> RequestContext:
    """A context of user `user-<project>` in `project` with `roles` (member by default)."""
    return RequestContext(user_id=f"user-{project}", project_id=project, roles=expand_roles(list(roles or ("member",))))


def outside(prefix: str) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """The root app of a PrefixDispatcher that serves only `prefix`: any other path fails the test."""

    async def root(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"request outside {prefix}: {scope.get('path')}")

    return root


@contextlib.asynccontextmanager
async def temp_database(conf: conf_mod.Settings, name: str = "test.sqlite") -> AsyncIterator[Database]:
    """A fresh SQLite database with every table, in conf.state_dir (made), disposed on the way out."""
    conf.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{conf.state_dir / name}")
    await db.create_all()
    try:
        yield db
    finally:
        await db.dispose()
