"""The local host's shared pool in placement (placement/pools.py): a sharing provider whose
inventory bounds the weighed usage of its member nodes; claims, reconcile and the scheduler's view."""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import Database
from cumulo.placement.models import resource_providers
from cumulo.placement.pools import pool_name, pool_uuid
from cumulo.placement.service import Placement

CT, VM = "11111111-0000-4000-8000-000000000001", "11111111-0000-4000-8000-000000000002"


async def _pooled(placement: Placement) -> str:
    """A 2-core, 4 GiB, 10 GB host: a container node at 50:1 and a VM node at 2:1 on its pool."""
    pool = await placement.ensure_pool("h", vcpus=2, memory_mb=4096, disk_gb=10)
    for node, name, ratio in ((CT, "h", 50.0), (VM, "h-qemu", 2.0)):
        await placement.ensure_provider(node, name, vcpus=2, memory_mb=4096, disk_gb=10,
                                        ratios={"VCPU": ratio}, pool=pool)
    return pool


async def _generation(db: Database, uuid: str) -> int:
    async with db.read() as conn:
        q = sa.select(resource_providers.c.generation).where(resource_providers.c.uuid == uuid)
        return int((await conn.execute(q)).scalar_one())


async def test_a_pool_holds_exactly_its_weighed_members(placement: Placement) -> None:
    pool = await _pooled(placement)
    assert pool == pool_uuid("h")
    assert [bool(await placement.claim(f"vm-{i}", VM, {"VCPU": 1})) for i in range(2)] == [True, True]  # 1 core
    won = [bool(await placement.claim(f"ct-{i}", CT, {"VCPU": 1, "MEMORY_MB": 64})) for i in range(51)]
    assert won == [True] * 50 + [False]  # the other core: 50 containers
    late = await placement.claim("ct-late", CT, {"VCPU": 1})
    assert late.short == {"VCPU": f"requested 1, free 0 in the host's shared pool {pool_name('h')}"}
    # Memory is the machine's too, at 1:1, whichever node asks.
    assert not await placement.claim("big", VM, {"MEMORY_MB": 4096 - 50 * 64 + 1})
    assert await placement.claim("fits", VM, {"MEMORY_MB": 4096 - 50 * 64})
    # The scheduler sees the same: both nodes share one pool object with nothing left.
    shared = await placement.pools_of([CT, VM])
    assert shared[CT] is shared[VM] and shared[CT].free_for("VCPU", 50.0) == 0
    # A VM going gives back half a core: 25 containers, or the VM again.
    await placement.release("vm-0")
    assert (await placement.pools_of([CT]))[CT].free_for("VCPU", 50.0) == 25


async def test_reconcile_on_one_member_moves_the_pool_generation(placement: Placement, db: Database) -> None:
    pool = await _pooled(placement)
    before = await _generation(db, pool)
    await placement.reconcile({"adopted": (VM, {"VCPU": 1})}, providers=[VM])
    assert await _generation(db, pool) > before  # a claim that read the pool before must retry


async def test_a_node_outside_any_pool_claims_alone(placement: Placement) -> None:
    await placement.ensure_provider(CT, "solo", vcpus=2, memory_mb=1024, disk_gb=10)
    assert await placement.pools_of([CT]) == {}
    assert [bool(await placement.claim(f"c{i}", CT, {"VCPU": 1})) for i in range(9)] == [True] * 8 + [False]
