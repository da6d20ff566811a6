"""A single claim on PostgreSQL as few statements as it can be (issue 14: the scaled boot's time).

The claim (service.py) reads the node and its pool in one statement (pools.node_and_pool), checks
capacity, then writes: here are those writes as ONE statement each, built once per shape with
their values bound, so that neither building nor compiling them is paid per claim:

- `bump_and_allocate`: the generations' compare-and-swap and the allocations, inserted only when
  every generation matched (data-modifying WITHs run once, from one snapshot);
- `claim_statement`: the same with the caller's own write (a batch.Rider: the conductor's
  placement of the instance and its event) in it, the allocations only when that write went in.
  Atomic on its own, it needs no transaction around it (`claim_in_one_statement`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable
from typing import Any

import sqlalchemy as sa

from cumulo.db import Database, utcnow
from cumulo.errors import NotFound
from cumulo.placement import pools
from cumulo.placement.batch import Claim, Rider
from cumulo.placement.inventory import Resources, shortfall
from cumulo.placement.locking import locked_in_id_order, retryable
from cumulo.placement.models import allocations, resource_providers

LOG = logging.getLogger(__name__)


def _bumped(expected: int) -> tuple[sa.CTE, sa.ScalarSelect[Any]]:
    """PostgreSQL: the compare-and-swap of `expected` generations (bound ba_id_<k>, ba_gen_<k>,
    locked in id order; ba_now) as a CTE, and how many it matched."""
    rp = resource_providers
    ids = [sa.bindparam(f"ba_id_{k}", type_=rp.c.id.type) for k in range(expected)]
    gens = [sa.bindparam(f"ba_gen_{k}", type_=rp.c.generation.type) for k in range(expected)]
    bumped = (
        sa.update(rp)
        .where(sa.or_(*(sa.and_(rp.c.id == i, rp.c.generation == g) for i, g in zip(ids, gens, strict=True))),
               locked_in_id_order(ids))
        .values(generation=rp.c.generation + 1, updated_at=sa.bindparam("ba_now", type_=rp.c.updated_at.type))
        .returning(rp.c.id)
        .cte("bumped")
    )
    return bumped, sa.select(sa.func.count()).select_from(bumped).scalar_subquery()


def _allocating(classes: tuple[str, ...], when: sa.ColumnElement[bool]) -> sa.CTE:
    """PostgreSQL: the consumer's allocations of `classes` (ba_pid, ba_consumer, ba_used_<i>, ba_now)
    as a data-modifying CTE, inserted only `when`."""
    a = allocations.c
    rows = [
        sa.select(sa.bindparam("ba_pid", type_=a.provider_id.type), sa.bindparam("ba_consumer", type_=a.consumer_id.type),
                  sa.literal(rc, a.resource_class.type), sa.bindparam(f"ba_used_{i}", type_=a.used.type),
                  sa.bindparam("ba_now", type_=a.created_at.type)).where(when)
        for i, rc in enumerate(classes)
    ]
    return (
        sa.insert(allocations)
        .from_select(["provider_id", "consumer_id", "resource_class", "used", "created_at"],
                     rows[0] if len(rows) == 1 else sa.union_all(*rows))
        .returning(a.id)
        .cte("inserted")
    )


@functools.cache
def bump_and_allocate(expected: int, classes: tuple[str, ...]) -> sa.Select[Any]:
    """PostgreSQL: the compare-and-swap of `expected` generations and the consumer's allocations of
    `classes` as one statement answering how many generations matched; the allocations are
    inserted only when all `expected` did (data-modifying WITHs run once, from one snapshot). Built
    once per shape with bound values, so the compiled form is cached (issue 14: it was compiled
    every call)."""
    _, matched = _bumped(expected)
    return sa.select(matched).add_cte(_allocating(classes, matched == expected))


_ONE_STATEMENT: dict[tuple[int, tuple[str, ...], Hashable], sa.Select[Any]] = {}


def claim_statement(expected: int, classes: tuple[str, ...], rider: Rider) -> sa.Select[Any]:
    """PostgreSQL: a whole first claim as one statement (built once per shape): the compare-and-swap,
    the rider's write when every generation matched, the allocations only when the rider's write
    went in. It answers (generations matched, the rider's write went in). A compare-and-swap that
    matched only some generations bumps those alone, which changes nothing but makes concurrent
    claims read again: placement allows a generation to move without a change."""
    key = (expected, classes, rider.key)
    stmt = _ONE_STATEMENT.get(key)
    if stmt is None:
        _, matched = _bumped(expected)
        ctes, went_in = rider.build(matched == expected)
        stmt = _ONE_STATEMENT[key] = (
            sa.select(matched.label("matched"), went_in.label("went_in"))
            .add_cte(*ctes, _allocating(classes, sa.and_(matched == expected, went_in)))
        )
    return stmt


def bump_and_allocate_params(
    cas: list[tuple[int, int]], pid: int, consumer_id: str, resources: Resources
) -> dict[str, Any]:
    """The values of `bump_and_allocate(len(cas), tuple(resources))`."""
    params: dict[str, Any] = {"ba_pid": pid, "ba_consumer": consumer_id, "ba_now": utcnow()}
    for k, (i, g) in enumerate(cas):
        params[f"ba_id_{k}"], params[f"ba_gen_{k}"] = i, g
    for i, n in enumerate(resources.values()):
        params[f"ba_used_{i}"] = n
    return params


async def claim_in_one_statement(
    db: Database, consumer_id: str, provider_uuid: str, resources: Resources, rider: Rider
) -> Claim | None:
    """PostgreSQL: a first claim and the rider's write without a transaction around them (no
    BEGIN, no COMMIT: two round trips less; issue 14). node_and_pool reads as the first statement
    of a transaction would (READ COMMITTED: every statement has its own snapshot anyway), then
    ONE statement, atomic on its own, makes the compare-and-swap, the rider's write and the
    allocations (`claim_statement`). None: the claim goes the usual way (the consumer holds
    something already, or a generation moved: the retries of service.Placement._with_retries take over)."""
    if not resources:
        return None
    async with db.read() as conn:
        if conn.sync_engine.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            return None  # not a connection whose statements commit on their own
        node = await pools.node_and_pool(conn, provider_uuid, consumer_id, exclude=consumer_id)
        if node is None:
            raise NotFound(f"Resource provider {provider_uuid} not found")
        if node.held:
            return None
        pool = node.pool
        usage = pools.member_usage(pool, node.pool_usage).get(node.provider_id, {}) if pool is not None else node.usage
        short = shortfall(resources, node.inventory, usage)
        if pool is not None:
            short = {**pool.shortfall({rc: n for rc, n in resources.items() if rc not in short}, node.inventory),
                     **short}
        if short:
            return Claim(False, short)
        cas = [(node.provider_id, node.generation)] + (
            [(pool.provider_id, pool.generation)] if pool is not None else [])
        params = {**bump_and_allocate_params(cas, node.provider_id, consumer_id, resources), **rider.params}
        try:
            matched, went_in = (await conn.execute(
                claim_statement(len(cas), tuple(resources), rider), params)).one()
        except sa.exc.DBAPIError as exc:
            if not retryable(exc):
                raise
            LOG.debug("one-statement claim failed: %s", exc)
            return None  # a deadlock or serialisation failure: the statement wrote nothing
    if matched != len(cas):
        return None  # lost the race: nothing written but harmless generation bumps
    return Claim(True, result=rider.done(bool(went_in)))
