"""Placement's writers under real concurrency (PostgreSQL, several processes; issue 14).

A claim is a compare-and-swap over generations (service.py), but on PostgreSQL the UPDATE that does
it also takes row locks, and an UPDATE locks the rows it matches in the order its scan meets them:
their physical order, which every update of a row changes. Two claims on the two nodes of one pool
(each bumping its node's row and the pool's) then locked the shared rows in opposite orders and
deadlocked. Every UPDATE of several providers here locks them in id order first (`in_id_order`),
and a writer that fails on contention anyway goes again (`retryable`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.placement.models import resource_providers


def in_id_order(conn: AsyncConnection, ids: Any) -> list[sa.ColumnElement[bool]]:
    """PostgreSQL: the extra condition for an UPDATE of the providers `ids` (ids, or a scalar
    subquery of them) that makes it lock their rows in id order (a locking subquery sorted by id),
    whatever order its scan meets them in. SQLite: nothing (one writer at a time)."""
    if conn.dialect.name != "postgresql":
        return []
    return [locked_in_id_order(ids if isinstance(ids, sa.ScalarSelect) else list(ids))]


def locked_in_id_order(ids: Any) -> sa.ColumnElement[bool]:
    """in_id_order's condition whatever the dialect (a statement built for PostgreSQL alone)."""
    rp = resource_providers
    locked = sa.select(rp.c.id).where(rp.c.id.in_(ids)).order_by(rp.c.id).with_for_update(key_share=True)
    return rp.c.id.in_(locked.scalar_subquery())


def retryable(exc: sa.exc.DBAPIError) -> bool:
    """A write transaction that failed on contention and may simply run again: a deadlock or a
    serialisation failure (PostgreSQL 40P01/40001; asyncpg's come as a plain DBAPIError, not an
    OperationalError), or SQLite's "database is locked" (an OperationalError)."""
    if isinstance(exc, sa.exc.OperationalError):
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return str(sqlstate) in ("40001", "40P01")
