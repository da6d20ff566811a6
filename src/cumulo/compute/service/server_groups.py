"""os-server-groups on the API side: create (under the project's quota lock), list, show, delete,
and the groups a server is in. Storage, membership and the placement rules are the shared kernel's
(compute/server_groups.py), which the conductor and the scheduler use as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import server_groups as sg
from cumulo.compute.models import instance_group_member, instance_groups
from cumulo.compute.service.quotas import QuotaEngine
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow
from cumulo.scheduler.groups import ANTI_AFFINITY, POLICIES


async def create_group(
    db: Database, quotas: QuotaEngine, ctx: RequestContext, name: str, policy: str, rules: Mapping[str, int]
) -> dict[str, Any]:
    """Create a group; the server_groups quota is checked under the project's quota lock."""
    if policy not in POLICIES:
        raise errors.Invalid(f"Invalid server group policy {policy!r}")
    if rules and policy != ANTI_AFFINITY:
        raise errors.Invalid("Only anti-affinity policy supports rules.")
    project = ctx.project_id or ""
    now = utcnow()
    values: dict[str, Any] = {
        "uuid": new_uuid(), "name": name, "project_id": project, "user_id": ctx.user_id or "",
        "policy": policy, "rules": {k: int(n) for k, n in rules.items()}, "created_at": now, "updated_at": now,
    }
    async with db.write() as conn:
        await quotas.lock(conn, project)
        limit = (await quotas.limits(conn, project))["server_groups"]
        if 0 <= limit <= await sg.count_groups(conn, project):
            raise errors.OverQuota(sg.GROUP_QUOTA_MESSAGE)
        # A user with their own server_groups limit is also bound by it, counting their groups.
        own = (await quotas.user_overrides(conn, project, ctx.user_id or "")).get("server_groups")
        if own is not None and 0 <= own <= await sg.count_groups(conn, project, ctx.user_id or ""):
            raise errors.OverQuota(sg.GROUP_QUOTA_MESSAGE)
        res = await conn.execute(sa.insert(instance_groups).values(**values))
        values["id"] = int(res.inserted_primary_key[0])  # type: ignore[index]
    return {**values, "rules": dict(values["rules"]), "members": []}


async def delete_group(db: Database, ctx: RequestContext, uuid: str) -> None:
    """Delete the group and its membership rows; the servers stay as they are."""
    async with db.write() as conn:
        group = await sg.get_group(conn, ctx, uuid)
        await conn.execute(sa.delete(instance_group_member).where(instance_group_member.c.group_id == group["id"]))
        res = await conn.execute(sa.delete(instance_groups).where(instance_groups.c.id == group["id"]))
        if not res.rowcount:
            raise sg.not_found(uuid)


class ServerGroupService:
    """What os-server-groups and the server views ask for, one transaction per call."""

    def __init__(self, db: Database, conf: Settings) -> None:
        self.db = db
        self.quotas = QuotaEngine(conf)

    async def list_groups(self, project_id: str | None, *, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await sg.list_groups(conn, project_id, limit=limit, offset=offset)

    async def get(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await sg.get_group(conn, ctx, uuid)

    async def create(self, ctx: RequestContext, name: str, policy: str, rules: Mapping[str, int]) -> dict[str, Any]:
        return await create_group(self.db, self.quotas, ctx, name, policy, rules)

    async def delete(self, ctx: RequestContext, uuid: str) -> None:
        await delete_group(self.db, ctx, uuid)

    async def groups_of_server(self, instance_uuid: str) -> list[str]:
        async with self.db.read() as conn:
            return await sg.groups_of_server(conn, instance_uuid)
