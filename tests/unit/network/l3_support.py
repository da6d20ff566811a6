"""Shared set-up of the L3 tests (routers, floating IPs, security groups): a migrated SQLite DB and
the real NetworkService over it; contexts of an admin and two member projects; an external
network made by the admin and tenant networks made by their owners."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database
from cumulo.network.service import NetworkService


def ctx(project: str, *roles: str) -> RequestContext:
    return RequestContext(user_id=f"user-{project}", project_id=project, roles=expand_roles(list(roles or ("member",))))


ADMIN = ctx("admin-proj", "admin")
ALICE = ctx("proj-a", "member")
BOB = ctx("proj-b", "member")
READER = ctx("proj-a", "reader")


@asynccontextmanager
async def make_service(tmp_path: Path) -> AsyncIterator[NetworkService]:
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state")
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/net.db")
    await db.create_all()
    try:
        yield NetworkService(db, settings)
    finally:
        await db.dispose()


async def external_network(svc: NetworkService, cidr: str = "172.24.4.0/24") -> tuple[dict[str, Any], dict[str, Any]]:
    net = await svc.create_network(ADMIN, {"name": "public", "router:external": True, "shared": False})
    sub = await svc.create_subnet(ADMIN, {"network_id": net["id"], "cidr": cidr, "ip_version": 4, "name": "public-v4"})
    return net, sub


async def tenant_network(svc: NetworkService, who: RequestContext, cidr: str = "10.0.0.0/24",
                         **subnet: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    net = await svc.create_network(who, {"name": f"net-{cidr}"})
    sub = await svc.create_subnet(who, {"network_id": net["id"], "cidr": cidr, "ip_version": 4, **subnet})
    return net, sub
