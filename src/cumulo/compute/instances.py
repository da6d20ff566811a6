"""Instance rows: lookups and the compare-and-swap that guards every state change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import instance_faults, instances
from cumulo.db import utcnow

_ANY = object()


async def get(conn: AsyncConnection, uuid: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
    q = sa.select(instances).where(instances.c.uuid == uuid)
    if not include_deleted:
        q = q.where(instances.c.deleted.is_(False))
    row = (await conn.execute(q)).mappings().first()
    return dict(row) if row else None


async def cas_update(
    conn: AsyncConnection,
    uuid: str,
    values: dict[str, Any],
    *,
    expected_task_state: str | None | Iterable[str | None] | object = _ANY,
    expected_vm_state: str | Iterable[str] | object = _ANY,
) -> bool:
    """UPDATE instances SET values WHERE uuid AND task_state/vm_state are as expected.

    Returns False when another request changed the row first: the caller answers 409.
    """
    res = await conn.execute(cas_statement(uuid, values, expected_task_state=expected_task_state,
                                           expected_vm_state=expected_vm_state))
    return bool(res.rowcount)


def cas_statement(
    uuid: str,
    values: dict[str, Any],
    *,
    expected_task_state: str | None | Iterable[str | None] | object = _ANY,
    expected_vm_state: str | Iterable[str] | object = _ANY,
) -> sa.Update:
    """cas_update's statement, for a caller that adds to it (e.g. CTEs: one round trip for several writes)."""
    q = sa.update(instances).where(instances.c.uuid == uuid, instances.c.deleted.is_(False))
    if expected_task_state is not _ANY:
        q = q.where(_matches(instances.c.task_state, expected_task_state))
    if expected_vm_state is not _ANY:
        q = q.where(_matches(instances.c.vm_state, expected_vm_state))
    return q.values(**values, updated_at=utcnow())


def _matches(col: Any, expected: Any) -> Any:
    if expected is None or isinstance(expected, str):
        return col.is_(None) if expected is None else col == expected
    options = list(expected)
    named = [o for o in options if o is not None]
    clauses = [col.in_(named)] if named else []
    if None in options:
        clauses.append(col.is_(None))
    return sa.or_(*clauses) if clauses else sa.false()


async def add_fault(conn: AsyncConnection, uuid: str, code: int, message: str, details: str = "", host: str | None = None) -> None:
    await conn.execute(
        sa.insert(instance_faults).values(
            instance_uuid=uuid, code=code, message=message[:255], details=details, host=host, created_at=utcnow()
        )
    )


async def latest_faults(conn: AsyncConnection, uuids: list[str]) -> dict[str, dict[str, Any]]:
    """The newest fault of each instance (what the API shows as `fault`)."""
    if not uuids:
        return {}
    rows = await conn.execute(
        sa.select(instance_faults).where(instance_faults.c.instance_uuid.in_(uuids)).order_by(instance_faults.c.id)
    )
    out: dict[str, dict[str, Any]] = {}
    for row in rows.mappings():
        out[row["instance_uuid"]] = dict(row)
    return out
