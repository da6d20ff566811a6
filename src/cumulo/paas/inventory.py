"""Read-only queries of the inventory (what is deployed), always scoped to the caller's project:
another project's instance, node, product, application, event or task is "not found". Writes to
the inventory are the engine's (paas/engine)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.paas.models import (
    paas_applications,
    paas_env_instances,
    paas_events,
    paas_exec_records,
    paas_product_instances,
    paas_tasks,
    paas_tier_instances,
)

MAX_EVENTS = 1000
REMOVED = "UNDEPLOYED"  # a node's status once a scale-in removed it


def _tail_of(col: Any, n: int) -> Any:
    """The last `n` characters of a text column, in SQL (SQLite and PostgreSQL alike)."""
    length = sa.func.length(col)
    return sa.case((length > n, sa.func.substr(col, length - n + 1)), else_=col).label(col.name)


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result.all()]


class Inventory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def instances(self, ctx: RequestContext, statuses: Sequence[str] = ()) -> list[dict[str, Any]]:
        q = sa.select(paas_env_instances).where(paas_env_instances.c.project_id == ctx.project_id)
        if statuses:
            q = q.where(paas_env_instances.c.status.in_(list(statuses)))
        async with self.db.read() as conn:
            return _rows(await conn.execute(q.order_by(paas_env_instances.c.created_at, paas_env_instances.c.name)))

    async def instance(self, ctx: RequestContext, name: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(paas_env_instances).where(
                paas_env_instances.c.project_id == ctx.project_id, paas_env_instances.c.name == name))).first()
        if row is None:
            raise errors.NotFound(f"environment instance {name[:64]} not found")
        return dict(row._mapping)

    async def nodes(self, instance_ids: Sequence[str], statuses: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The nodes of instances the caller already read (so already scoped). A node a scale-in
        removed keeps its row (status UNDEPLOYED, so its replica number is never reused): it is
        left out unless `statuses` asks for it, as Pegasus forgot removed nodes."""
        if not instance_ids:
            return []
        q = sa.select(paas_tier_instances).where(paas_tier_instances.c.env_instance_id.in_(list(instance_ids)))
        if statuses:
            q = q.where(paas_tier_instances.c.status.in_(list(statuses)))
        else:
            q = q.where(paas_tier_instances.c.status != REMOVED)
        async with self.db.read() as conn:
            return _rows(await conn.execute(q.order_by(paas_tier_instances.c.tier, paas_tier_instances.c.replica)))

    async def node(self, instance: dict[str, Any], name: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(paas_tier_instances).where(
                paas_tier_instances.c.env_instance_id == instance["id"], paas_tier_instances.c.name == name))).first()
        if row is None:
            raise errors.NotFound(f"tier instance {name[:64]} not found in environment instance {instance['name']}")
        return dict(row._mapping)

    async def _grouped(self, query: Any, key: str) -> dict[str, list[dict[str, Any]]]:
        """The rows of `query` by their `key` column, in the query's order."""
        out: dict[str, list[dict[str, Any]]] = {}
        async with self.db.read() as conn:
            for r in _rows(await conn.execute(query)):
                out.setdefault(r[key], []).append(r)
        return out

    async def products(self, instance_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Product instances by node id."""
        if not instance_ids:
            return {}
        p = paas_product_instances.c
        return await self._grouped(sa.select(paas_product_instances).where(p.env_instance_id.in_(list(instance_ids)))
                                   .order_by(p.created_at, p.product), "tier_instance_id")

    async def records(self, product_instance_ids: Sequence[str], *, tail: int | None = None
                      ) -> dict[str, list[dict[str, Any]]]:
        """Exec records by product instance id, in run order; `tail`: only the last `tail` characters
        of each stdout and stderr are read (a node's records grow with every reconfigure, each up to
        2 x 128 KiB: a view reads what it shows, not all of it)."""
        if not product_instance_ids:
            return {}
        e = paas_exec_records.c
        cols: list[Any] = list(paas_exec_records.c)
        if tail is not None:
            cols = [_tail_of(c, tail) if c.name in ("stdout", "stderr") else c for c in cols]
        return await self._grouped(sa.select(*cols).where(
            e.product_instance_id.in_(list(product_instance_ids))).order_by(e.id), "product_instance_id")

    async def applications(self, instance: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return _rows(await conn.execute(sa.select(paas_applications).where(
                paas_applications.c.env_instance_id == instance["id"]).order_by(paas_applications.c.created_at)))

    async def application(self, instance: dict[str, Any], name: str) -> dict[str, Any]:
        for app in await self.applications(instance):
            if app["name"] == name:
                return app
        raise errors.NotFound(f"application instance {name[:64]} not found in environment instance {instance['name']}")

    async def events(self, ctx: RequestContext, instance: dict[str, Any], tier: str | None = None
                     ) -> list[dict[str, Any]]:
        q = sa.select(paas_events).where(paas_events.c.env_instance_id == instance["id"],
                                         paas_events.c.project_id == ctx.project_id)
        if tier is not None:
            q = q.where(paas_events.c.tier == tier)
        async with self.db.read() as conn:
            rows = _rows(await conn.execute(q.order_by(paas_events.c.id.desc()).limit(MAX_EVENTS)))
        return rows[::-1]

    async def tasks(self, ctx: RequestContext, *, statuses: Sequence[str] = (), instance: str | None = None,
                    tier: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(paas_tasks).where(paas_tasks.c.project_id == ctx.project_id)
        if statuses:
            q = q.where(paas_tasks.c.status.in_(list(statuses)))
        if instance is not None:
            q = q.where(paas_tasks.c.env_instance_name == instance)
        if tier is not None:
            q = q.where(paas_tasks.c.tier == tier)
        async with self.db.read() as conn:
            return _rows(await conn.execute(q.order_by(paas_tasks.c.id)))

    async def task(self, ctx: RequestContext, task_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9]{1,18}", task_id):
            raise errors.NotFound(f"task {task_id[:64]} not found")
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(paas_tasks).where(
                paas_tasks.c.id == int(task_id), paas_tasks.c.project_id == ctx.project_id))).first()
        if row is None:
            raise errors.NotFound(f"task {task_id} not found")
        return dict(row._mapping)
