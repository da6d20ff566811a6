"""Migration records (Nova's migrations table) for resizes, cold migrations and evacuations:
written as one moves along, listed by GET /os-migrations.

A resize that fits stays on its host (source = destination); a cold migration (type "migration")
or a resize that does not fit moves (compute/conductor/migrate.py, compute/agent/migrate.py).
Status as in Nova: pre-migrating (API accepted) → migrating (source agent at work) →
post-migrating (disks sent) → finished (VERIFY_RESIZE) → confirmed | reverted; error when it fails
on the way. An evacuation: accepted → pre-migrating → done (rebuilt on the destination) →
completed (the source host came back and destroyed its copy) | failed.
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
EVACUATION = "evacuation"

PRE_MIGRATING = "pre-migrating"
MIGRATING = "migrating"
FINISHED = "finished"
CONFIRMED = "confirmed"
REVERTED = "reverted"
ERROR = "error"
POST_MIGRATING = "post-migrating"
# An evacuation's statuses (Nova's): accepted by the API, done on the destination, completed once
# the source host came back and destroyed its copy, failed.
ACCEPTED = "accepted"
DONE = "done"
COMPLETED = "completed"
FAILED = "failed"
# Statuses a resize's record has until it settles.
OPEN = (PRE_MIGRATING, MIGRATING, POST_MIGRATING, FINISHED)
# Statuses a record never leaves (a live migration's "cancelled" too: one table). Every status write
# is a compare-and-swap on the status it expects (by default: any but these), so two workers that
# race to settle one migration (two conductors, a sweep and an agent) never both confirm, revert
# or error it: the second write finds nothing to change and says so.
FINAL = (CONFIRMED, REVERTED, ERROR, COMPLETED, FAILED, "cancelled")


async def _flavor_id(conn: AsyncConnection, flavor: dict[str, Any] | None) -> int | None:
    """Nova's integer instance_type id of a flavor snapshot (None once the flavor is deleted)."""
    flavorid = (flavor or {}).get("flavorid")
    if flavorid is None:
        return None
    found = await conn.execute(sa.select(flavors.c.id).where(flavors.c.flavorid == str(flavorid)))
    value = found.scalar()
    return int(value) if value is not None else None


async def start_resize(
    conn: AsyncConnection, ctx: RequestContext, inst: dict[str, Any], new_flavor: dict[str, Any],
    *, migration_type: str = RESIZE, status: str = PRE_MIGRATING,
) -> str:
    """The record of a resize (or cold migration, or evacuation) the API has just accepted (in the
    transaction that accepted it); the destination is the source until the conductor chose one.
    Returns the record's uuid."""
    now = utcnow()
    uuid = new_uuid()
    await conn.execute(
        sa.insert(migrations).values(
            uuid=uuid, instance_uuid=inst["uuid"], project_id=inst["project_id"], user_id=ctx.user_id,
            source_compute=inst.get("host"), dest_compute=inst.get("host"), source_node=inst.get("node"),
            dest_node=inst.get("node"), dest_host=None,
            old_instance_type_id=await _flavor_id(conn, inst.get("flavor")),
            new_instance_type_id=await _flavor_id(conn, new_flavor),
            status=status, migration_type=migration_type, hidden=False, created_at=now, updated_at=now,
        )
    )
    return uuid


async def latest_open(db: Database, instance_uuid: str, current: Iterable[str] = OPEN) -> dict[str, Any] | None:
    """The instance's latest record in one of the `current` statuses, or None."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(migrations)
                .where(migrations.c.instance_uuid == instance_uuid, migrations.c.status.in_(list(current)))
                .order_by(migrations.c.id.desc())
                .limit(1)
            )
        ).mappings().first()
    return dict(row) if row is not None else None


async def set_destination(db: Database, migration_uuid: str, host: str, node: str, host_ip: str | None) -> None:
    """The conductor chose (and claimed on) the destination."""
    async with db.write() as conn:
        await conn.execute(
            sa.update(migrations).where(migrations.c.uuid == migration_uuid).values(
                dest_compute=host, dest_node=node, dest_host=host_ip, updated_at=utcnow()
            )
        )


def _expected(expect: Iterable[str] | None) -> Any:
    if expect is None:
        return migrations.c.status.not_in(list(FINAL))
    return migrations.c.status.in_(list(expect))


async def set_status_of(db: Database, migration_uuid: str, status: str, *, expect: Iterable[str] | None = None) -> bool:
    """One record (by its uuid) to `status`, if its status is one of `expect` (None: any not in
    FINAL); whether it was."""
    async with db.write() as conn:
        res = await conn.execute(
            sa.update(migrations).where(migrations.c.uuid == migration_uuid, _expected(expect))
            .values(status=status, updated_at=utcnow())
        )
    return bool(res.rowcount)


async def evacuations_from(db: Database, host: str) -> list[dict[str, Any]]:
    """Evacuations away from `host` its agent has not cleaned up yet (accepted, pre-migrating, done)."""
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(migrations).where(
                migrations.c.source_compute == host, migrations.c.migration_type == EVACUATION,
                migrations.c.status.in_([ACCEPTED, PRE_MIGRATING, DONE]),
            )
        )
        return [dict(r) for r in rows.mappings()]


async def set_status(db: Database, instance_uuid: str, status: str, *, current: Iterable[str] = OPEN) -> bool:
    """Move the instance's latest record in one of the `current` statuses to `status` (a CAS on
    that status: nothing when it has none, or when another writer settled it first); whether it did."""
    current = list(current)
    async with db.write() as conn:
        latest = (
            await conn.execute(
                sa.select(migrations.c.id)
                .where(migrations.c.instance_uuid == instance_uuid, migrations.c.status.in_(current))
                .order_by(migrations.c.id.desc())
                .limit(1)
            )
        ).scalar()
        if latest is None:
            return False
        res = await conn.execute(
            sa.update(migrations).where(migrations.c.id == latest, migrations.c.status.in_(current))
            .values(status=status, updated_at=utcnow())
        )
    return bool(res.rowcount)
