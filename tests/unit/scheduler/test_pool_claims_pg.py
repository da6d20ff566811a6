"""Claims on the nodes of one pool under real concurrency, on PostgreSQL (placement/locking.py).

SQLite serialises writers, so these run on PostgreSQL whatever the test mode (a fresh database per
test on the run's server): concurrent claims on the two nodes of a pool end, each won or refused
for capacity, never overcommitting the pool; a multi-provider UPDATE locks its rows in id order
(two claims' UPDATEs locking the node's and the pool's rows in opposite orders deadlocked); a claim
that lost the race goes again holding the locks, so it cannot lose again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.placement import pools
from cumulo.placement.models import resource_providers
from cumulo.placement.pools import pool_uuid
from cumulo.placement.service import Placement

CT, VM = "22222222-0000-4000-8000-000000000001", "22222222-0000-4000-8000-000000000002"


@pytest.fixture
async def pooled(pdb: Database, sched_conf: Settings) -> Placement:
    """An 8-core host: a container node at 4:1 and a VM node at 2:1 on its pool."""
    placement = Placement(pdb, sched_conf)
    pool = await placement.ensure_pool("h", vcpus=8, memory_mb=8192, disk_gb=100)
    for node, name, ratio in ((CT, "h", 4.0), (VM, "h-qemu", 2.0)):
        await placement.ensure_provider(node, name, vcpus=8, memory_mb=8192, disk_gb=100,
                                        ratios={"VCPU": ratio}, pool=pool)
    return placement


async def _ids(db: Database, *uuids: str) -> list[int]:
    async with db.read() as conn:
        rows = dict((await conn.execute(sa.select(resource_providers.c.uuid, resource_providers.c.id)
                                        .where(resource_providers.c.uuid.in_(uuids)))).all())
    return [int(rows[u]) for u in uuids]


async def _ctid(conn: AsyncConnection, pid: int) -> tuple[int, int]:
    raw = str((await conn.execute(sa.text("SELECT ctid::text FROM resource_providers WHERE id = :i"), {"i": pid}))
              .scalar_one())
    block, offset = raw.strip("()").split(",")
    return int(block), int(offset)


async def _used(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        rows = await conn.execute(sa.text(
            "SELECT rp.uuid, sum(a.used) FROM allocations a JOIN resource_providers rp ON rp.id = a.provider_id"
            " WHERE a.resource_class = 'VCPU' GROUP BY rp.uuid"))
        return {str(u): int(n) for u, n in rows}


async def test_concurrent_claims_on_two_nodes_of_a_pool_all_end_and_never_overcommit(pooled: Placement,
                                                                                    pdb: Database) -> None:
    # 8 cores = 32 container vCPUs or 16 VM vCPUs; a core's worth on each node first (so neither
    # fills the pool alone, whichever node the race favours), then 50 racing 1-vCPU claims on each
    # node, more than the engine's connections: every one ends won or refused for capacity (no
    # Conflict, no deadlock).
    for kind, node, n in (("c", CT, 4), ("v", VM, 2)):
        assert all([bool(await pooled.claim(f"{kind}-first-{i}", node, {"VCPU": 1})) for i in range(n)])
    claims = [pooled.claim(f"{kind}-{i}", node, {"VCPU": 1}) for i in range(50) for kind, node in (("c", CT), ("v", VM))]
    outcomes = await asyncio.gather(*claims, return_exceptions=True)
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    used = await _used(pdb)
    n_ct, n_vm = used.get(CT, 0), used.get(VM, 0)
    assert n_ct + n_vm == sum(bool(o) for o in outcomes) + 6 and n_ct >= 4 and n_vm >= 2
    assert n_ct / 4 + n_vm / 2 <= 8 and n_ct / 4 + n_vm / 2 > 8 - 0.5  # full, never over
    refused = [o for o in outcomes if not o]
    assert refused and all("in the host's shared pool" in o.reason for o in refused)  # type: ignore[union-attr]


async def test_a_claim_locks_the_node_and_the_pool_in_id_order(pooled: Placement, pdb: Database) -> None:
    lo, hi = sorted(await _ids(pdb, CT, pool_uuid("h")))
    other = Database(pdb.url)
    try:
        async with other.write() as conn:
            # Physically, the higher id first: a scan meets it first (an UPDATE locks in that order).
            for _ in range(50):
                if await _ctid(conn, lo) > await _ctid(conn, hi):
                    break
                await conn.execute(sa.update(resource_providers).where(resource_providers.c.id == lo)
                                   .values(name=resource_providers.c.name))
            assert await _ctid(conn, lo) > await _ctid(conn, hi)
        async with other.write() as conn:
            # Another writer holds the lower row, as a claim on the other node holds the pool's.
            await conn.execute(sa.select(resource_providers.c.id).where(resource_providers.c.id == lo)
                               .with_for_update(key_share=True))
            claim = asyncio.create_task(pooled.claim("c-0", CT, {"VCPU": 1}))
            deadline = time.monotonic() + 60
            while not await _waiting(pdb):
                assert time.monotonic() < deadline and not claim.done(), "the claim never waited on the lock"
                await asyncio.sleep(0.02)
            # The claim waits for the lower row holding nothing else: the higher one is free. (Locking
            # in scan order it held the higher row and this UPDATE deadlocked with it.)
            await conn.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
            await conn.execute(sa.update(resource_providers).where(resource_providers.c.id == hi)
                               .values(generation=resource_providers.c.generation + 1))
        won = await asyncio.wait_for(claim, 60)
        assert won, won.reason
        assert await _used(pdb) == {CT: 1}
    finally:
        await other.dispose()


async def _waiting(db: Database) -> bool:
    """Whether a session of this database waits for a row lock."""
    async with db.read() as conn:
        n = await conn.scalar(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"))
    return bool(n)


async def test_a_claim_that_lost_the_race_goes_again_holding_the_locks(
    pooled: Placement, pdb: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A competitor moves the pool's generation after every read of a claim: the first attempt loses,
    the second holds the node's and the pool's rows, the competitor waits, and the claim wins (with
    optimistic retries alone every attempt lost and the claim raised Conflict)."""
    other = Database(pdb.url)
    real = pools.node_and_pool
    bumps: list[bool] = []

    async def read_then_compete(conn: AsyncConnection, *args: Any, **kw: Any) -> Any:
        node = await real(conn, *args, **kw)
        try:
            async with other.write() as rival:
                await rival.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
                await rival.execute(sa.update(resource_providers)
                                    .where(resource_providers.c.uuid == pool_uuid("h"))
                                    .values(generation=resource_providers.c.generation + 1))
            bumps.append(True)
        except sa.exc.DBAPIError:
            bumps.append(False)  # the claim holds the pool's row
        return node

    monkeypatch.setattr(pools, "node_and_pool", read_then_compete)
    try:
        won = await pooled.claim("v-0", VM, {"VCPU": 2})
    finally:
        await other.dispose()
    assert won and bumps == [True, False]
    assert await _used(pdb) == {VM: 2}
