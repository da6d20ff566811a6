"""Migration records (Nova's migrations table) for resizes: written as a resize moves along,
listed by GET /os-migrations.

A resize is a migration to the same host (Cumulo resizes in place): source and destination are the
instance's host and node. Status as in Nova: pre-migrating (API accepted) → migrating (agent at
work) → finished (VERIFY_RESIZE) → confirmed | reverted; error when it fails on the way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import flavors, migrations
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow

RESIZE = "resize"
MIGRATION = "migration"

PRE_MIGRATING = "pre-migrating"
MIGRATING = "migrating"
FINISHED = "finished"
CONFIRMED = "confirmed"
REVERTED = "reverted"
ERROR = "error"
# Statuses a resize's record has until it settles.
OPEN = (PRE_MIGRATING, MIGRATING, FINISHED)


async def _flavor_id(conn: AsyncConnection, flavor: dict[str, Any] | None) -> int | None:
    """Nova's integer instance_type id of a flavor snapshot (None once the flavor is deleted)."""
    flavorid = (flavor or {}).get("flavorid")
    if flavorid is None:
        return None
    found = await conn.execute(sa.select(flavors.c.id).where(flavors.c.flavorid == str(flavorid)))
    value = found.scalar()
    return int(value) if value is not None else None


async def start_resize(conn: AsyncConnection, ctx: RequestContext, inst: dict[str, Any], new_flavor: dict[str, Any]) -> None:
    """The record of a resize the API has just accepted (in the transaction that accepted it)."""
    now = utcnow()
    await conn.execute(
        sa.insert(migrations).values(
            uuid=new_uuid(), instance_uuid=inst["uuid"], project_id=inst["project_id"], user_id=ctx.user_id,
            source_compute=inst.get("host"), dest_compute=inst.get("host"), source_node=inst.get("node"),
            dest_node=inst.get("node"), dest_host=None,
            old_instance_type_id=await _flavor_id(conn, inst.get("flavor")),
            new_instance_type_id=await _flavor_id(conn, new_flavor),
            status=PRE_MIGRATING, migration_type=RESIZE, hidden=False, created_at=now, updated_at=now,
        )
    )


async def set_status(db: Database, instance_uuid: str, status: str, *, current: Iterable[str] = OPEN) -> None:
    """Move the instance's latest open record to `status` (nothing when it has none)."""
    async with db.write() as conn:
        latest = (
            await conn.execute(
                sa.select(migrations.c.id)
                .where(migrations.c.instance_uuid == instance_uuid, migrations.c.status.in_(list(current)))
                .order_by(migrations.c.id.desc())
                .limit(1)
            )
        ).scalar()
        if latest is not None:
            await conn.execute(
                sa.update(migrations).where(migrations.c.id == latest).values(status=status, updated_at=utcnow())
            )
