"""GET /os-migrations on the API side: the migration records (compute/migration_records.py writes
them) filtered and paged as Nova's migration list does, newest first."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute.models import migrations
from cumulo.db import Database


@dataclasses.dataclass
class MigrationQuery:
    hidden: bool = False  # include hidden records
    equal: dict[str, str] = dataclasses.field(default_factory=dict)  # column -> value
    host: str | None = None  # source or destination compute
    since: dt.datetime | None = None  # updated_at bounds (2.59+)
    before: dt.datetime | None = None
    limit: int = 1000
    marker: str | None = None  # the uuid of the last record seen


class MigrationService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_migrations(self, query: MigrationQuery) -> list[dict[str, Any]]:
        m = migrations.c
        q = sa.select(migrations)
        if not query.hidden:
            q = q.where(m.hidden.is_(False))
        for key, value in query.equal.items():
            q = q.where(getattr(m, key) == value)
        if query.host is not None:
            q = q.where(sa.or_(m.source_compute == query.host, m.dest_compute == query.host))
        if query.since is not None:
            q = q.where(m.updated_at >= query.since)
        if query.before is not None:
            q = q.where(m.updated_at <= query.before)
        async with self.db.read() as conn:
            if query.marker is not None:
                found = (await conn.execute(sa.select(m.created_at, m.id).where(m.uuid == query.marker))).first()
                if found is None:
                    raise errors.Invalid(f"Marker {query.marker} could not be found.")
                q = q.where(sa.or_(m.created_at < found[0], sa.and_(m.created_at == found[0], m.id < found[1])))
            q = q.order_by(m.created_at.desc(), m.id.desc()).limit(query.limit)
            return [dict(r) for r in (await conn.execute(q)).mappings()]
