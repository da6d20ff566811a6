"""os-simple-tenant-usage on the API side: the instance rows (deleted ones included) that ran in a
period, oldest first and paged by a server uuid; the handler turns them into server hours."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from cumulo.compute.models import instances
from cumulo.db import Database
from cumulo.errors import Invalid


class TenantUsageService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def instances_in(
        self, start: dt.datetime, stop: dt.datetime, project: str | None, limit: int, marker: str | None
    ) -> list[dict[str, Any]]:
        """Servers launched before `stop` and not terminated before `start`, of one project (every
        project when None), after the server `marker`."""
        c = instances.c
        q = (
            sa.select(c.id, c.uuid, c.display_name, c.project_id, c.flavor, c.vcpus, c.memory_mb, c.root_gb, c.ephemeral_gb,
                      c.vm_state, c.launched_at, c.terminated_at, c.created_at)
            .where(sa.or_(c.terminated_at.is_(None), c.terminated_at > start), c.launched_at < stop)
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        if project is not None:
            q = q.where(c.project_id == project)
        async with self.db.read() as conn:
            if marker is not None:
                after = (await conn.execute(sa.select(c.created_at, c.id).where(c.uuid == marker))).first()
                if after is None:
                    raise Invalid(f"Marker {marker} could not be found.")
                q = q.where(sa.or_(c.created_at > after[0], sa.and_(c.created_at == after[0], c.id > after[1])))
            return [dict(r) for r in (await conn.execute(q)).mappings()]
