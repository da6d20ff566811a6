"""Placement: inventories with allocation ratios, atomic claims, resize holds and reconcile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sched_rig import Hosts

from cumulo.db import Database
from cumulo.placement import pools
from cumulo.placement.inventory import DISK_GB, MEMORY_MB, VCPU
from cumulo.placement.models import allocations, resource_providers
from cumulo.placement.service import Placement, migration_consumer, resources_from_flavor


async def generation(db: Database, uuid: str) -> int:
    async with db.read() as conn:
        return int(
            (await conn.execute(sa.select(resource_providers.c.generation).where(resource_providers.c.uuid == uuid))).scalar_one()
        )


async def test_inventory_carries_allocation_ratios(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", vcpus=16, memory_mb=32768, disk_gb=500)
    inv = await placement.get_inventory(p)
    assert inv[VCPU].total == 16 and inv[VCPU].allocation_ratio == 4.0 and inv[VCPU].capacity == 64
    assert inv[MEMORY_MB].capacity == 32768 and inv[DISK_GB].capacity == 500
    assert inv[VCPU].max_unit == 16


async def test_claims_respect_cpu_overcommit(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", vcpus=2, memory_mb=100_000, disk_gb=1000)
    results = [await placement.claim(f"c{i}", p, {VCPU: 2}) for i in range(5)]
    # 2 vCPUs x ratio 4 = 8: four 2-vCPU claims fit, the fifth does not.
    assert [bool(r) for r in results] == [True, True, True, True, False]
    assert "VCPU" in results[-1].reason
    assert (await placement.usage(p))[VCPU] == 8


async def test_max_unit_is_enforced(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", vcpus=4)
    claim = await placement.claim("big", p, {VCPU: 5})  # fits 16 with overcommit, but one guest can't exceed 4
    assert not claim and "VCPU" in claim.short


async def test_twenty_concurrent_claims_never_overcommit(hosts: Hosts, placement: Placement, db: Database) -> None:
    p = await hosts.add("h1", vcpus=100, memory_mb=10 * 1024, disk_gb=1000)
    gen0 = await generation(db, p)
    results = await asyncio.gather(*(placement.claim(f"c{i}", p, {MEMORY_MB: 1024, VCPU: 1}) for i in range(20)))
    assert sum(bool(r) for r in results) == 10
    usage = await placement.usage(p)
    assert usage[MEMORY_MB] == 10 * 1024 and usage[VCPU] == 10
    assert await generation(db, p) == gen0 + 10  # one bump per successful claim


async def test_lost_generation_race_is_retried(hosts: Hosts, placement: Placement, db: Database,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    p = await hosts.add("h1", memory_mb=2048)
    original = pools.node_and_pool
    calls = {"n": 0}

    async def racing_read(conn: Any, provider_uuid: str, consumer_id: str, **kw: Any) -> Any:
        # Another claim commits between our generation (and usage) read and our CAS, the first time only.
        calls["n"] += 1
        node = await original(conn, provider_uuid, consumer_id, **kw)
        if calls["n"] == 1:
            await conn.execute(sa.update(resource_providers).where(resource_providers.c.uuid == provider_uuid)
                               .values(generation=resource_providers.c.generation + 1))
        return node

    monkeypatch.setattr(pools, "node_and_pool", racing_read)
    assert await placement.claim("c1", p, {MEMORY_MB: 1024})
    assert calls["n"] == 2  # the first attempt lost the CAS and was retried on fresh numbers
    assert (await placement.usage(p))[MEMORY_MB] == 1024


async def test_claim_replaces_and_release_frees(hosts: Hosts, placement: Placement) -> None:
    p1 = await hosts.add("h1")
    p2 = await hosts.add("h2")
    assert await placement.claim("c", p1, {MEMORY_MB: 1000})
    assert await placement.claim("c", p2, {MEMORY_MB: 500})  # a re-claim moves the consumer
    assert await placement.allocations_for("c") == {p2: {MEMORY_MB: 500}}
    assert (await placement.usage(p1)).get(MEMORY_MB, 0) == 0
    await placement.release("c")
    assert await placement.allocations_for("c") == {}
    await placement.release("c")  # releasing nothing is fine


async def test_then_commits_with_the_claim_or_rolls_it_back(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", memory_mb=4096)
    gen = await generation(placement.db, p)
    seen: list[int] = []

    async def record(conn: Any) -> str:
        seen.append(len((await conn.execute(sa.select(allocations).where(allocations.c.consumer_id == "a"))).all()))
        return "placed"

    claim = await placement.claim("a", p, {MEMORY_MB: 1024}, then=record)
    assert claim and claim.result == "placed" and seen == [1]  # it sees the claim's own rows

    class Refused(Exception):
        pass

    async def refuse(conn: Any) -> None:
        raise Refused

    with pytest.raises(Refused):
        await placement.claim("b", p, {MEMORY_MB: 1024}, then=refuse)
    assert await placement.allocations_for("b") == {}  # rolled back with the caller's refusal
    assert await generation(placement.db, p) == gen + 1  # only the first claim moved it
    assert not await placement.claim("c", p, {MEMORY_MB: 4096}, then=refuse)  # no fit: `then` never runs


async def test_resize_holds_old_and_new_then_confirm(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", memory_mb=4096)
    assert await placement.claim("i", p, {MEMORY_MB: 1024})
    assert await placement.claim_resize("i", p, {MEMORY_MB: 2048})
    assert (await placement.usage(p))[MEMORY_MB] == 3072
    assert await placement.allocations_for(migration_consumer("i")) == {p: {MEMORY_MB: 1024}}
    second = await placement.claim_resize("i", p, {MEMORY_MB: 512})
    assert not second and "resize" in second.short
    await placement.confirm_resize("i")
    assert await placement.allocations_for("i") == {p: {MEMORY_MB: 2048}}
    assert (await placement.usage(p))[MEMORY_MB] == 2048


async def test_resize_revert_gives_old_back(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", memory_mb=4096)
    assert await placement.claim("i", p, {MEMORY_MB: 1024, VCPU: 1})
    assert await placement.claim_resize("i", p, {MEMORY_MB: 2048, VCPU: 2})
    await placement.revert_resize("i")
    assert await placement.allocations_for("i") == {p: {MEMORY_MB: 1024, VCPU: 1}}
    assert await placement.allocations_for(migration_consumer("i")) == {}
    await placement.revert_resize("i")  # a second revert changes nothing
    assert await placement.allocations_for("i") == {p: {MEMORY_MB: 1024, VCPU: 1}}


async def test_resize_that_does_not_fit_changes_nothing(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", memory_mb=3000)
    assert await placement.claim("i", p, {MEMORY_MB: 2000})
    claim = await placement.claim_resize("i", p, {MEMORY_MB: 1500})  # old 2000 + new 1500 > 3000
    assert not claim and MEMORY_MB in claim.short
    assert await placement.allocations_for("i") == {p: {MEMORY_MB: 2000}}


async def test_reconcile_makes_allocations_equal_live(hosts: Hosts, placement: Placement) -> None:
    p1 = await hosts.add("h1")
    p2 = await hosts.add("h2")
    await placement.claim("stale", p1, {MEMORY_MB: 100})
    await placement.claim("wrong", p1, {MEMORY_MB: 100})
    await placement.claim("elsewhere", p2, {MEMORY_MB: 100})
    await placement.claim("scheduling", p1, {MEMORY_MB: 100})
    live = {"wrong": (p1, {MEMORY_MB: 300, VCPU: 1}), "missing": (p1, {MEMORY_MB: 50})}
    result = await placement.reconcile(live, providers=[p1], ignore=["scheduling"])
    assert result == {"removed": 1, "fixed": 2}
    assert await placement.allocations_for("stale") == {}
    assert await placement.allocations_for("wrong") == {p1: {MEMORY_MB: 300, VCPU: 1}}
    assert await placement.allocations_for("missing") == {p1: {MEMORY_MB: 50}}
    assert await placement.allocations_for("elsewhere") == {p2: {MEMORY_MB: 100}}  # out of scope
    assert await placement.allocations_for("scheduling") == {p1: {MEMORY_MB: 100}}  # ignored
    assert await placement.reconcile(live, providers=[p1], ignore=["scheduling"]) == {"removed": 0, "fixed": 0}


async def test_global_reconcile_clears_every_provider(hosts: Hosts, placement: Placement, db: Database) -> None:
    p1 = await hosts.add("h1")
    p2 = await hosts.add("h2")
    await placement.claim("a", p1, {MEMORY_MB: 1})
    await placement.claim("b", p2, {MEMORY_MB: 1})
    await placement.reconcile({})
    async with db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(allocations))).scalar_one() == 0


async def test_reensuring_a_provider_keeps_allocations(hosts: Hosts, placement: Placement) -> None:
    p = await hosts.add("h1", memory_mb=1000)
    await placement.claim("a", p, {MEMORY_MB: 600})
    await placement.ensure_provider(p, "h1", vcpus=8, memory_mb=2000, disk_gb=10)
    assert (await placement.get_inventory(p))[MEMORY_MB].total == 2000
    assert (await placement.usage(p))[MEMORY_MB] == 600
    sums = await placement.summaries()
    assert sums[p].free(MEMORY_MB) == 1400


def test_resources_from_flavor() -> None:
    assert resources_from_flavor({"vcpus": 2, "memory_mb": 512, "root_gb": 10, "ephemeral_gb": 5, "swap": 1500}) == {
        VCPU: 2, MEMORY_MB: 512, DISK_GB: 17,
    }
    assert resources_from_flavor({"vcpus": 1, "ram": 64, "disk": 0}) == {VCPU: 1, MEMORY_MB: 64}
