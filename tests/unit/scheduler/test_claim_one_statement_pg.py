"""A first claim on PostgreSQL as one statement with the caller's write in it (claim_sql.py, batch.Rider).

Runs on PostgreSQL whatever the test mode (a fresh database per test): the claim, the rider's write
and the allocations go in together; a rider whose write does not go in leaves no allocation; a
consumer that holds something already, or a claim that lost the generation race, goes the usual
way (`then` in a transaction, the retries holding the locks) and is counted once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.errors import Conflict
from cumulo.placement import pools
from cumulo.placement.batch import Rider
from cumulo.placement.models import allocations, resource_provider_traits, resource_providers
from cumulo.placement.pools import pool_uuid
from cumulo.placement.service import Placement

CT = "33333333-0000-4000-8000-000000000001"
TRAIT = "CUSTOM_RIDDEN"


@pytest.fixture
async def pooled(pdb: Database, sched_conf: Settings) -> Placement:
    placement = Placement(pdb, sched_conf)
    pool = await placement.ensure_pool("h", vcpus=8, memory_mb=8192, disk_gb=100)
    await placement.ensure_provider(CT, "h", vcpus=8, memory_mb=8192, disk_gb=100, ratios={"VCPU": 4.0}, pool=pool)
    return placement


def _ctes(ok: sa.ColumnElement[bool]) -> tuple[list[sa.CTE], sa.ColumnElement[bool]]:
    """The rider's write: a trait on the node, only when `ok` and r_go."""
    t = resource_provider_traits
    node = sa.select(resource_providers.c.id).where(resource_providers.c.uuid == sa.bindparam("r_node", type_=sa.String))
    wrote = (
        sa.insert(t)
        .from_select(["provider_id", "trait"], sa.select(node.scalar_subquery(), sa.literal(TRAIT, sa.String))
                     .where(ok, sa.bindparam("r_go", type_=sa.Boolean)))
        .returning(t.c.id)
        .cte("ridden")
    )
    return [wrote], sa.select(sa.func.count()).select_from(wrote).scalar_subquery() > 0


def _done(went_in: bool) -> str:
    if not went_in:
        raise LookupError("the rider's write did not go in")
    return "ridden"


def _rider(go: bool = True) -> Rider:
    return Rider("test-rider", _ctes, {"r_node": CT, "r_go": go}, _done)


async def _state(db: Database) -> tuple[dict[str, int], bool, dict[str, int]]:
    """(VCPU allocated per consumer, the trait written, generations by uuid)."""
    async with db.read() as conn:
        used = {str(c): int(n) for c, n in await conn.execute(
            sa.select(allocations.c.consumer_id, allocations.c.used).where(allocations.c.resource_class == "VCPU"))}
        ridden = (await conn.execute(sa.select(sa.func.count()).select_from(resource_provider_traits)
                                     .where(resource_provider_traits.c.trait == TRAIT))).scalar_one() > 0
        gens = {str(u): int(g) for u, g in await conn.execute(
            sa.select(resource_providers.c.uuid, resource_providers.c.generation))}
    return used, ridden, gens


async def test_a_first_claim_writes_the_rider_and_the_allocations_in_one_statement(
    pooled: Placement, pdb: Database
) -> None:
    called: list[bool] = []

    async def then(conn: AsyncConnection) -> str:
        called.append(True)
        return "then"

    _, _, before = await _state(pdb)
    won = await pooled.claim("c-1", CT, {"VCPU": 2, "MEMORY_MB": 64}, then=then, rider=_rider())
    assert won and won.result == "ridden" and not called
    used, ridden, gens = await _state(pdb)
    assert used == {"c-1": 2} and ridden
    assert gens[CT] == before[CT] + 1 and gens[pool_uuid("h")] == before[pool_uuid("h")] + 1
    assert await pooled.allocations_for("c-1") == {CT: {"VCPU": 2, "MEMORY_MB": 64}}


async def test_a_rider_whose_write_does_not_go_in_leaves_no_allocation(pooled: Placement, pdb: Database) -> None:
    with pytest.raises(LookupError):
        await pooled.claim("c-1", CT, {"VCPU": 2}, rider=_rider(go=False))
    used, ridden, _ = await _state(pdb)
    assert used == {} and not ridden


async def test_a_claim_that_does_not_fit_writes_nothing(pooled: Placement, pdb: Database) -> None:
    refused = await pooled.claim("c-1", CT, {"VCPU": 9999}, rider=_rider())
    assert not refused and "VCPU" in refused.short
    assert (await _state(pdb))[:2] == ({}, False)


async def test_a_consumer_holding_something_goes_the_transaction_way(pooled: Placement, pdb: Database) -> None:
    assert await pooled.claim("c-1", CT, {"VCPU": 1})
    called: list[bool] = []

    async def then(conn: AsyncConnection) -> str:
        called.append(True)
        return "then"

    won = await pooled.claim("c-1", CT, {"VCPU": 3}, then=then, rider=_rider())
    assert won and won.result == "then" and called
    used, ridden, _ = await _state(pdb)
    assert used == {"c-1": 3} and not ridden


async def test_a_claim_that_lost_the_race_goes_again_in_a_transaction_and_counts_once(
    pooled: Placement, pdb: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A competitor moves the pool's generation after the one-statement claim's read: its
    compare-and-swap fails (nothing allocated, nothing ridden) and the claim goes the usual way."""
    real = pools.node_and_pool
    reads: list[bool] = []

    async def read_then_compete(conn: AsyncConnection, *args: Any, **kw: Any) -> Any:
        node = await real(conn, *args, **kw)
        if not reads:
            async with pdb.write() as rival:
                await rival.execute(sa.update(resource_providers).where(resource_providers.c.uuid == pool_uuid("h"))
                                    .values(generation=resource_providers.c.generation + 1))
        reads.append(True)
        return node

    called: list[bool] = []

    async def then(conn: AsyncConnection) -> str:
        called.append(True)
        return "then"

    monkeypatch.setattr(pools, "node_and_pool", read_then_compete)
    won = await pooled.claim("c-1", CT, {"VCPU": 2}, then=then, rider=_rider())
    assert won and won.result == "then" and called and len(reads) == 2
    used, ridden, _ = await _state(pdb)
    assert used == {"c-1": 2} and not ridden


def _trait_ctes(ok: sa.ColumnElement[bool]) -> tuple[list[sa.CTE], sa.ColumnElement[bool]]:
    """The rider's write: the consumer's own trait on the node (r_trait), only when `ok`."""
    t = resource_provider_traits
    node = sa.select(resource_providers.c.id).where(resource_providers.c.uuid == sa.bindparam("r_node", type_=sa.String))
    wrote = (
        sa.insert(t)
        .from_select(["provider_id", "trait"],
                     sa.select(node.scalar_subquery(), sa.bindparam("r_trait", type_=sa.String)).where(ok))
        .returning(t.c.id)
        .cte("ridden")
    )
    return [wrote], sa.select(sa.func.count()).select_from(wrote).scalar_subquery() > 0


async def test_concurrent_one_statement_claims_on_two_connections_pools_never_overcommit(
    pdb: Database, sched_conf: Settings
) -> None:
    """Claims from two Database objects (two pools of connections, as two processes have) race on a
    3-VCPU node: every one ends, won or refused, the usage equals the wins and stays within the
    capacity, and each win's write went in (by the rider, or by `then` for a claim that lost its
    one-statement race and went the transaction's way), no loser's did (all or nothing)."""
    small = "33333333-0000-4000-8000-000000000009"
    first = Placement(pdb, sched_conf)
    await first.ensure_provider(small, "small", vcpus=3, memory_mb=1024, disk_gb=10, ratios={"VCPU": 1.0})
    other = Database(pdb.url)
    second = Placement(other, sched_conf)

    async def one(i: int) -> str:
        placement = first if i % 2 else second
        rider = Rider("test-rider-trait", _trait_ctes, {"r_node": small, "r_trait": f"CUSTOM_R{i}"}, _done)

        async def then(conn: AsyncConnection) -> str:  # the same write where the claim is a transaction
            node = (await conn.execute(sa.select(resource_providers.c.id)
                                       .where(resource_providers.c.uuid == small))).scalar_one()
            await conn.execute(sa.insert(resource_provider_traits).values(provider_id=node, trait=f"CUSTOM_R{i}"))
            return "then"

        try:
            got = await placement.claim(f"r-{i}", small, {"VCPU": 1}, then=then, rider=rider)
        except Conflict:
            return "conflict"
        return "ok" if got else "full"

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(16)))
    finally:
        await other.dispose()
    assert set(outcomes) <= {"ok", "full", "conflict"}
    wins = {f"r-{i}" for i, o in enumerate(outcomes) if o == "ok"}
    async with pdb.read() as conn:
        used = {str(c) for c, in await conn.execute(sa.select(allocations.c.consumer_id))}
        traits = {str(t) for t, in await conn.execute(sa.select(resource_provider_traits.c.trait)
                                                      .where(resource_provider_traits.c.trait.like("CUSTOM_R%")))}
    assert used == wins and len(wins) <= 3
    assert traits == {f"CUSTOM_R{c.split('-')[1]}" for c in wins}
    if "conflict" not in outcomes:
        assert len(wins) == 3
