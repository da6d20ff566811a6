"""Claims of a batch in one write transaction (placement/batch.py, issue 14), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sched_rig import Hosts
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.errors import NotFound
from cumulo.placement import batch
from cumulo.placement.inventory import MEMORY_MB, VCPU
from cumulo.placement.models import allocations, resource_providers
from cumulo.placement.service import Placement


@pytest.fixture(params=["sqlite", "postgresql"])
def batch_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'batch.db'}"
        return
    import _pg

    with _pg.fresh_database(request) as url:
        yield url


@pytest.fixture
async def bdb(batch_db_url: str) -> AsyncIterator[Database]:
    database = Database(batch_db_url)
    await database.create_all()
    yield database
    await database.dispose()


@pytest.fixture
def bplacement(bdb: Database, sched_conf: Settings) -> Placement:
    return Placement(bdb, sched_conf)


@pytest.fixture
def bhosts(bdb: Database, sched_conf: Settings, bplacement: Placement) -> Hosts:
    return Hosts(bdb, sched_conf, bplacement)


async def generations(db: Database, uuids: list[str]) -> list[int]:
    async with db.read() as conn:
        rows = dict((await conn.execute(
            sa.select(resource_providers.c.uuid, resource_providers.c.generation)
            .where(resource_providers.c.uuid.in_(uuids)))).all())
    return [int(rows[u]) for u in uuids]


async def held(db: Database) -> dict[str, dict[str, int]]:
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(allocations.c.consumer_id, allocations.c.resource_class,
                                             allocations.c.used))).all()
    out: dict[str, dict[str, int]] = {}
    for consumer, rc, used in rows:
        out.setdefault(consumer, {})[rc] = int(used)
    return out


async def test_claims_made_at_once_commit_in_one_transaction(bhosts: Hosts, bplacement: Placement, bdb: Database) -> None:
    providers = [await bhosts.add(f"h{i}") for i in range(4)]
    gen0 = await generations(bdb, providers)
    seen: list[str] = []

    def then_for(name: str) -> Any:
        async def then(conn: AsyncConnection) -> str:
            seen.append(name)
            return name.upper()
        return then

    claims = await asyncio.gather(*(
        bplacement.claim_batched(f"c{i}", providers[i % 4], {VCPU: 1, MEMORY_MB: 512}, then=then_for(f"c{i}"))
        for i in range(8)))
    assert all(claims) and [c.result for c in claims] == [f"C{i}" for i in range(8)]
    assert bplacement.batcher.flushes == 1 and bplacement.batcher.largest == 8  # one transaction
    assert await held(bdb) == {f"c{i}": {VCPU: 1, MEMORY_MB: 512} for i in range(8)}
    assert await generations(bdb, providers) == [g + 1 for g in gen0]  # one bump per provider
    for p in providers:
        assert await bplacement.usage(p) == {VCPU: 2, MEMORY_MB: 1024}


async def test_a_batch_never_overcommits_and_a_short_claim_fails_alone(bhosts: Hosts, bplacement: Placement) -> None:
    p = await bhosts.add("h1", vcpus=2, memory_mb=100_000, disk_gb=1000)  # 2 vCPUs x ratio 4 = 8
    other = await bhosts.add("h2")
    claims = await asyncio.gather(*(bplacement.claim_batched(f"c{i}", p, {VCPU: 2}) for i in range(5)),
                                  bplacement.claim_batched("elsewhere", other, {VCPU: 1}))
    assert [bool(c) for c in claims] == [True, True, True, True, False, True]
    assert "VCPU" in claims[4].reason and "free 0 of 8" in claims[4].reason
    assert (await bplacement.usage(p))[VCPU] == 8
    assert bplacement.batcher.flushes == 1


async def test_a_then_that_raises_rolls_back_its_own_claim_only(bhosts: Hosts, bplacement: Placement,
                                                               bdb: Database) -> None:
    p = await bhosts.add("h1")
    marks = sa.table("resource_providers", sa.column("uuid"), sa.column("name"))

    async def rename(conn: AsyncConnection) -> None:
        await conn.execute(sa.update(marks).where(marks.c.uuid == p).values(name="renamed"))

    async def half_then_fail(conn: AsyncConnection) -> None:
        await conn.execute(sa.update(marks).where(marks.c.uuid == p).values(name="must-not-stay"))
        raise NotFound("gone meanwhile")

    ok1, bad, ok2 = await asyncio.gather(
        bplacement.claim_batched("a", p, {VCPU: 1}, then=rename),
        bplacement.claim_batched("b", p, {VCPU: 1}, then=half_then_fail),
        bplacement.claim_batched("c", p, {VCPU: 1}),
        return_exceptions=True)
    assert isinstance(bad, NotFound)
    assert ok1 and ok2 and not isinstance(ok1, BaseException) and not isinstance(ok2, BaseException)
    assert set(await held(bdb)) == {"a", "c"}  # b's allocation never written
    async with bdb.read() as conn:
        name = (await conn.execute(sa.select(marks.c.name).where(marks.c.uuid == p))).scalar_one()
    assert name == "renamed"  # a's write kept, b's rolled back with its savepoint


async def test_a_reclaim_in_a_batch_replaces_what_the_consumer_held(bhosts: Hosts, bplacement: Placement,
                                                                   bdb: Database) -> None:
    p1 = await bhosts.add("h1", vcpus=4, memory_mb=100_000)  # 16 VCPU with the ratio
    p2 = await bhosts.add("h2")
    for name in ("f1", "f2", "f3", "mover"):
        assert await bplacement.claim(name, p1, {VCPU: 4})  # full
    # The mover's 4 VCPU on p1 do not count against its own re-claim there; "new" fits beside it
    # only because the mover's old claim is replaced by a smaller one first in the batch.
    again, new, moved = await asyncio.gather(
        bplacement.claim_batched("mover", p1, {VCPU: 2}),
        bplacement.claim_batched("new", p1, {VCPU: 2}),
        bplacement.claim_batched("other", p2, {VCPU: 1}))
    assert again and new and moved
    assert await held(bdb) == {"f1": {VCPU: 4}, "f2": {VCPU: 4}, "f3": {VCPU: 4},
                               "mover": {VCPU: 2}, "new": {VCPU: 2}, "other": {VCPU: 1}}
    assert not await bplacement.claim_batched("late", p1, {VCPU: 1})  # full again


async def test_a_provider_whose_generation_moved_retries_only_its_claims(
    bhosts: Hosts, bplacement: Placement, bdb: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    moving = await bhosts.add("h1")
    steady = await bhosts.add("h2")
    async with bdb.read() as conn:
        pid = (await conn.execute(sa.select(resource_providers.c.id).where(resource_providers.c.uuid == moving))).scalar_one()
    rounds: list[int] = []
    real_round = batch._round

    async def counted(conn: AsyncConnection, requests: Any, **kw: Any) -> Any:
        rounds.append(len(requests))
        return await real_round(conn, requests, **kw)

    monkeypatch.setattr(batch, "_round", counted)
    raced = {"done": False}

    def race(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Another process's claim commits on `moving` between our read and our compare-and-swap.
        if not raced["done"] and statement.lstrip().upper().startswith("UPDATE RESOURCE_PROVIDERS") \
                and "RETURNING" in statement.upper():
            raced["done"] = True
            cursor.execute(f"UPDATE resource_providers SET generation = generation + 1 WHERE id = {int(pid)}")

    engine = bdb.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", race)
    try:
        claims = await asyncio.gather(bplacement.claim_batched("m1", moving, {VCPU: 1}),
                                      bplacement.claim_batched("s1", steady, {VCPU: 1}),
                                      bplacement.claim_batched("m2", moving, {VCPU: 1}))
    finally:
        event.remove(engine, "before_cursor_execute", race)
    assert raced["done"] and all(claims)
    assert rounds == [3, 2]  # the steady provider's claim went through in the first round
    assert await held(bdb) == {"m1": {VCPU: 1}, "s1": {VCPU: 1}, "m2": {VCPU: 1}}
    assert (await bplacement.usage(moving))[VCPU] == 2


async def test_claims_queued_during_a_flush_form_the_next_batch(bhosts: Hosts, bplacement: Placement) -> None:
    providers = [await bhosts.add(f"h{i}") for i in range(3)]
    first = asyncio.gather(*(bplacement.claim_batched(f"a{i}", providers[i], {VCPU: 1}) for i in range(3)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first flush has started
    second = asyncio.gather(*(bplacement.claim_batched(f"b{i}", providers[i], {VCPU: 1}) for i in range(3)))
    assert all(await first) and all(await second)
    assert bplacement.batcher.flushes == 2 and bplacement.batcher.largest == 3
