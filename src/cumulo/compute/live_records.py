"""Live migration records (Nova's migrations rows of type "live-migration").

Status as Nova's live migration: accepted (the API took it) → queued (the conductor placed and
claimed it) → preparing (the destination makes its files and waiting QEMU) → running (memory and
disks move) → completed; error when it fails (a pre-check after the API, or any step), cancelled
when an admin aborts it (DELETE /servers/{id}/migrations/{id}). GET /servers/{id}/migrations lists
the in-progress ones (queued, preparing, running), as Nova does. The progress columns (memory_*,
disk_*) are filled while it runs; downtime_ms is the downtime QEMU measured at the switchover.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import migrations
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow

LIVE_MIGRATION = "live-migration"

ACCEPTED = "accepted"
QUEUED = "queued"
PREPARING = "preparing"
RUNNING = "running"
COMPLETED = "completed"
ERROR = "error"
CANCELLED = "cancelled"
# Nova's in-progress live migration statuses (GET /servers/{id}/migrations, abort, force_complete).
IN_PROGRESS = (QUEUED, PREPARING, RUNNING)
OPEN = (ACCEPTED, *IN_PROGRESS)


async def start(conn: AsyncConnection, ctx: RequestContext, inst: dict[str, Any], dest_host: str | None) -> str:
    """The record of a live migration the API has just accepted (in its transaction); its uuid."""
    now = utcnow()
    uuid = new_uuid()
    await conn.execute(
        sa.insert(migrations).values(
            uuid=uuid, instance_uuid=inst["uuid"], project_id=inst["project_id"], user_id=ctx.user_id,
            source_compute=inst.get("host"), source_node=inst.get("node"), dest_compute=dest_host, dest_node=None,
            dest_host=None, old_instance_type_id=None, new_instance_type_id=None, status=ACCEPTED,
            migration_type=LIVE_MIGRATION, hidden=False, created_at=now, updated_at=now,
        )
    )
    return uuid


async def get(db: Database, uuid: str) -> dict[str, Any] | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(migrations).where(migrations.c.uuid == uuid))).mappings().first()
    return dict(row) if row is not None else None


async def update(db: Database, uuid: str, *, expect: tuple[str, ...] | None = None, **values: Any) -> bool:
    """Write `values` on the record (when its status is one of `expect`); whether it did."""
    q = sa.update(migrations).where(migrations.c.uuid == uuid)
    if expect is not None:
        q = q.where(migrations.c.status.in_(list(expect)))
    async with db.write() as conn:
        res = await conn.execute(q.values(updated_at=utcnow(), **values))
    return bool(res.rowcount)


async def in_progress(db: Database, instance_uuid: str, migration_id: int | None = None) -> list[dict[str, Any]]:
    """The instance's in-progress live migrations (all, or the one with that integer id)."""
    m = migrations.c
    q = sa.select(migrations).where(
        m.instance_uuid == instance_uuid, m.migration_type == LIVE_MIGRATION, m.status.in_(list(IN_PROGRESS))
    )
    if migration_id is not None:
        q = q.where(m.id == migration_id)
    async with db.read() as conn:
        return [dict(r) for r in (await conn.execute(q.order_by(m.id))).mappings()]


async def by_id(db: Database, instance_uuid: str, migration_id: int) -> dict[str, Any] | None:
    """The instance's live migration record with that integer id, whatever its status."""
    m = migrations.c
    async with db.read() as conn:
        row = (await conn.execute(sa.select(migrations).where(
            m.instance_uuid == instance_uuid, m.id == migration_id))).mappings().first()
    return dict(row) if row is not None else None
