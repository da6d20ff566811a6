"""Instance rows: lookups and the compare-and-swap that guards every state change."""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute import worker_events
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


def bound_cas(
    uuid: str,
    values: dict[str, Any],
    *,
    expected_task_state: str | None | Iterable[str | None] | object = _ANY,
    expected_vm_state: str | Iterable[str] | object = _ANY,
    event: worker_events.EventHandle | None = None,
    event_error: BaseException | None = None,
) -> tuple[sa.Update, dict[str, Any]] | None:
    """PostgreSQL: `cas_statement` with `event`'s end in it (worker_events.bound_finish_ctes), built
    once per shape (the columns set, the expected states, an event or not) with the uuid and the
    values bound (cas_uuid, cas_now, cas_<column>), and its parameters: a state change on a hot
    path (the build's ACTIVE, the delete's last write) costs no Python to build. None when a value
    is an SQL expression (it cannot be bound): the caller builds `cas_statement` then."""
    if any(isinstance(v, sa.ClauseElement) for v in values.values()):
        return None
    keys = tuple(sorted(values))
    stmt = _bound_cas(keys, _shape(expected_task_state), _shape(expected_vm_state), event is not None)
    params = {"cas_uuid": uuid, "cas_now": utcnow(), **{f"cas_{k}": values[k] for k in keys}}
    if event is not None:
        params.update(worker_events.finish_values(event, event_error))
    return stmt, params


def _shape(expected: Any) -> Hashable:
    if expected is _ANY or expected is None or isinstance(expected, str):
        return expected
    return tuple(sorted(expected, key=lambda o: (o is None, str(o))))


@functools.cache
def _bound_cas(keys: tuple[str, ...], expected_task_state: Any, expected_vm_state: Any, finish: bool) -> sa.Update:
    q = sa.update(instances).where(instances.c.uuid == sa.bindparam("cas_uuid", type_=instances.c.uuid.type),
                                   instances.c.deleted.is_(False))
    if expected_task_state is not _ANY:
        q = q.where(_matches(instances.c.task_state, expected_task_state))
    if expected_vm_state is not _ANY:
        q = q.where(_matches(instances.c.vm_state, expected_vm_state))
    q = q.values(updated_at=sa.bindparam("cas_now", type_=instances.c.updated_at.type),
                 **{k: sa.bindparam(f"cas_{k}", type_=instances.c[k].type) for k in keys})
    return q.add_cte(*worker_events.bound_finish_ctes()) if finish else q


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
