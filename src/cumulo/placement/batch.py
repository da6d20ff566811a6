"""Claims of a batch in one write transaction (group commit; issue 14, scheduling at 1,000 hosts).

One claim is one write transaction (service.py `Placement.claim`): on PostgreSQL that is about eight
round trips and a commit (a WAL flush) per server, which set the placement rate once the scheduler
answered a batch of builds in one message. Here the claims made at the same moment (the builds of
one select turn: conductor/batching.py) share one transaction:

1. one SELECT: every provider's generation and inventory (and whether it draws from a pool);
2. one SELECT: the providers' usage, with what each of the batch's consumers already holds (a
   re-claim replaces it, as a single claim does);
3. the claims are checked in order against that usage, each one's resources added before the next
   is checked, so a batch never overcommits a provider it claims twice;
4. one compare-and-swap UPDATE of the generations of the providers that got a claim, RETURNING the
   ids that matched: a provider whose generation moved (a claim of another process committed since
   step 1) fails only ITS claims, which go round again on fresh numbers, the others go on;
5. each claim's `then` (the conductor's placement of the instance) in a SAVEPOINT of its own: one
   that raises rolls back alone, its caller gets the exception, the others go on;
6. one DELETE of what the batch's claiming consumers held before, one INSERT of every allocation.

Each claim stays atomic and correct as a single one: the generation compare-and-swap is the same,
and a claim that does not fit answers `Claim(False)` to its caller alone (who tries its alternates,
then reselects). A claim on a node that draws from its host's pool (pools.py: the local nodes of a
`cumulo up` host, never the fake hosts) goes through the single claim, after the batch.

`ClaimBatcher` does the grouping: `claim()` queues the request and the first caller of a moment
starts a flush one loop turn later, so every build that a select turn woke up is in it; claims
queued while a flush runs form the next one (the batch grows with the load). A batch of one is the
plain `Placement.claim`. A caller cancelled once its claim is in a flush does not stop it (the
transaction is shared): the claim commits, as if the cancellation had come just after it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.db import Database, utcnow
from cumulo.errors import NotFound
from cumulo.placement.inventory import Inventory, Resources, inventory_from_row, shortfall
from cumulo.placement.locking import in_id_order, retryable
from cumulo.placement.models import allocations, inventories, resource_provider_aggregates, resource_providers

LOG = logging.getLogger(__name__)

# Claims in one transaction at most (a bigger queue is flushed in several).
MAX_BATCH = 64
Then = Callable[[AsyncConnection], Awaitable[Any]]
Outcome = Any  # a Claim, or the exception its caller gets


@dataclass(frozen=True)
class Claim:
    """Outcome of a claim: falsy when it does not fit; `short` names what was missing and why."""

    ok: bool
    short: dict[str, str] = field(default_factory=dict)
    result: Any = None  # what the claim's `then` returned, in the claim's own transaction

    def __bool__(self) -> bool:
        return self.ok

    @property
    def reason(self) -> str:
        return "; ".join(f"{rc}: {why}" for rc, why in self.short.items())


@dataclass(frozen=True)
class Rider:
    """The caller's write as part of the claim's own statement (PostgreSQL, a first claim: the claim
    in ONE statement, no transaction around it; service.Placement._claim_in_one_statement), instead
    of `then` in the claim's transaction. `build(ok)` gives the caller's data-modifying CTEs, made
    only when `ok` (every compare-and-swap matched), and a boolean expression: the write went in
    (the allocations are inserted only then). Built once per `key` (its shape), executed with
    `params`; `done(went_in)` is the claim's result, or raises (nothing was allocated then)."""

    key: Hashable
    build: Callable[[sa.ColumnElement[bool]], tuple[list[sa.CTE], sa.ColumnElement[bool]]]
    params: Mapping[str, Any]
    done: Callable[[bool], Any]


@dataclass(eq=False)
class ClaimRequest:
    consumer_id: str
    provider_uuid: str
    resources: dict[str, int]
    then: Then | None = None
    rider: Rider | None = None  # `then` in the claim's statement where it can be (a single claim)


Single = Callable[[ClaimRequest], Awaitable[Claim]]  # the plain claim (Placement.claim) of one request


@dataclass
class _Provider:
    pid: int
    generation: int
    pooled: bool
    inventory: dict[str, Inventory]


async def claim_many(db: Database, requests: list[ClaimRequest], attempts: int, single: Single) -> list[Outcome]:
    """Each request's outcome (a Claim, or the exception it raised), in the order given."""
    results: dict[int, Outcome] = {}
    pending = list(range(len(requests)))
    singles: list[int] = []
    for n in range(attempts):
        if not pending:
            break
        try:
            async with db.write() as conn:
                settled, again, alone = await _round(conn, [(i, requests[i]) for i in pending], lock=n > 0)
        except sa.exc.DBAPIError as exc:  # deadlock or serialisation failure: all again
            if not retryable(exc):
                raise
            LOG.debug("batched claim round failed: %s", exc)
            settled, again, alone = {}, pending, []
        results.update(settled)
        singles += alone
        pending = again
        if pending:
            await asyncio.sleep(random.uniform(0.001, 0.01) * (n + 1))
    for i in pending:  # lost the generation race every time: as a single claim, which raises Conflict
        singles.append(i)
    for i in singles:
        try:
            results[i] = await single(requests[i])
        except Exception as exc:
            results[i] = exc
    return [results.get(i, Claim(False, {"claim": "not settled"})) for i in range(len(requests))]


async def _round(
    conn: AsyncConnection, batch: list[tuple[int, ClaimRequest]], *, lock: bool = False
) -> tuple[dict[int, Outcome], list[int], list[int]]:
    """One transaction: (outcomes settled, requests to go round again, requests for the single claim).
    `lock` (a round after a lost race, PostgreSQL): the providers' rows locked first, in id order, so
    this round's compare-and-swap cannot lose (locking.py)."""
    rp, agg = resource_providers, resource_provider_aggregates
    uuids = sorted({r.provider_uuid for _, r in batch})
    consumers = sorted({r.consumer_id for _, r in batch})
    if lock and conn.dialect.name == "postgresql":
        await conn.execute(sa.select(rp.c.id).where(rp.c.uuid.in_(uuids)).order_by(rp.c.id)
                           .with_for_update(key_share=True))
    # 1. Generations and inventories first (before any usage: see service.py's docstring).
    pooled = sa.exists().where(agg.c.provider_id == rp.c.id).label("pooled")
    rows = (await conn.execute(
        sa.select(rp.c.id.label("rp_id"), rp.c.uuid.label("rp_uuid"), rp.c.generation.label("rp_gen"), pooled,
                  inventories)
        .select_from(rp.outerjoin(inventories, inventories.c.provider_id == rp.c.id))
        .where(rp.c.uuid.in_(uuids))
    )).mappings().all()
    providers: dict[str, _Provider] = {}
    for row in rows:
        p = providers.setdefault(
            str(row["rp_uuid"]), _Provider(int(row["rp_id"]), int(row["rp_gen"]), bool(row["pooled"]), {}))
        if row["resource_class"] is not None:
            p.inventory[row["resource_class"]] = inventory_from_row(row)
    pids = [p.pid for p in providers.values() if not p.pooled]
    # 2. Usage, with the batch's consumers' own allocations apart (a re-claim replaces them).
    mine = sa.case((allocations.c.consumer_id.in_(consumers), allocations.c.consumer_id), else_=None).label("mine")
    used: dict[int, dict[str, int]] = {}
    held: dict[str, dict[int, dict[str, int]]] = {}
    for pid, rc, who, amount in await conn.execute(
        sa.select(allocations.c.provider_id, allocations.c.resource_class, mine, sa.func.sum(allocations.c.used))
        .where(sa.or_(allocations.c.provider_id.in_(pids), allocations.c.consumer_id.in_(consumers)))
        .group_by(allocations.c.provider_id, allocations.c.resource_class, mine)
    ):
        use = used.setdefault(int(pid), {})
        use[rc] = use.get(rc, 0) + int(amount)
        if who is not None:
            held.setdefault(str(who), {}).setdefault(int(pid), {})[rc] = int(amount)
    # 3. Each claim against the usage so far.
    settled: dict[int, Outcome] = {}
    again: list[int] = []
    single: list[int] = []
    fits: list[tuple[int, ClaimRequest, _Provider]] = []
    seen: set[str] = set()
    for i, r in batch:
        found = providers.get(r.provider_uuid)
        if found is None:
            settled[i] = NotFound(f"Resource provider {r.provider_uuid} not found")
            continue
        p = found
        if p.pooled:
            single.append(i)
            continue
        if r.consumer_id in seen:  # the same consumer twice: the later claim goes next round
            again.append(i)
            continue
        seen.add(r.consumer_id)
        old = held.get(r.consumer_id, {})
        use = dict(used.get(p.pid, {}))
        for rc, n in old.get(p.pid, {}).items():
            use[rc] = use.get(rc, 0) - n
        short = shortfall(r.resources, p.inventory, use)
        if short:
            settled[i] = Claim(False, short)
            continue
        for pid, res in old.items():  # what it held elsewhere is freed by its claim
            for rc, n in res.items():
                used.setdefault(pid, {})[rc] = used.get(pid, {}).get(rc, 0) - n
        for rc, n in r.resources.items():
            used.setdefault(p.pid, {})[rc] = used.get(p.pid, {}).get(rc, 0) + n
        fits.append((i, r, p))
    if not fits:
        return settled, again, single
    # 4. One compare-and-swap over the claimed providers; a moved one fails only its own claims.
    cas = {p.pid: p.generation for _, _, p in fits}
    matched = {int(x) for x in (await conn.execute(
        sa.update(rp)
        .where(sa.or_(*(sa.and_(rp.c.id == pid, rp.c.generation == g) for pid, g in sorted(cas.items()))),
               *in_id_order(conn, cas))
        .values(generation=rp.c.generation + 1, updated_at=utcnow())
        .returning(rp.c.id)
    )).scalars()}
    done: list[tuple[int, ClaimRequest, _Provider, Any]] = []
    for i, r, p in fits:
        if p.pid not in matched:
            again.append(i)
            continue
        # 5. The caller's own write, alone in a savepoint.
        result: Any = None
        if r.then is not None:
            try:
                async with conn.begin_nested():
                    result = await r.then(conn)
            except Exception as exc:
                settled[i] = exc
                continue
        done.append((i, r, p, result))
    # 6. What the claiming consumers held goes, their allocations come, one statement each.
    replaced = [r.consumer_id for _, r, _, _ in done if r.consumer_id in held]
    if replaced:
        await conn.execute(sa.delete(allocations).where(allocations.c.consumer_id.in_(replaced)))
    now = utcnow()
    rows_in = [
        {"provider_id": p.pid, "consumer_id": r.consumer_id, "resource_class": rc, "used": n, "created_at": now}
        for _, r, p, _ in done for rc, n in r.resources.items()
    ]
    if rows_in:
        await conn.execute(sa.insert(allocations), rows_in)
    for i, _, _, result in done:
        settled[i] = Claim(True, result=result)
    return settled, again, single


class ClaimBatcher:
    """Claims made at the same moment go to the database in one transaction (`claim_many`)."""

    def __init__(self, db: Database, single: Single, attempts: int, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._single = single
        self._attempts = attempts
        self._max = max_batch
        self._queue: list[tuple[ClaimRequest, asyncio.Future[Claim]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.flushes = 0  # transactions run (benchmarks, tests)
        self.largest = 0

    async def claim(self, consumer_id: str, provider_uuid: str, resources: Resources, *,
                    then: Then | None = None, rider: Rider | None = None) -> Claim:
        fut: asyncio.Future[Claim] = asyncio.get_running_loop().create_future()
        self._queue.append((ClaimRequest(consumer_id, provider_uuid, dict(resources), then, rider), fut))
        # A runner of a loop that is gone (a test's, a stopped process's) never flushes again.
        if self._runner is None or self._runner.done() or self._runner.get_loop() is not fut.get_loop():
            self._queue = [q for q in self._queue if q[1].get_loop() is fut.get_loop()]
            self._runner = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # the other builds woken with this one queue their claims first
            while self._queue:
                batch = [(r, f) for r, f in self._queue[:self._max] if not f.done()]
                del self._queue[:self._max]
                if batch:
                    await self._flush(batch)
        finally:
            self._runner = None
            for _, f in self._queue:  # only when cancelled (the loop above empties the queue)
                f.cancel()
            self._queue.clear()

    async def _flush(self, batch: list[tuple[ClaimRequest, asyncio.Future[Claim]]]) -> None:
        self.flushes += 1
        self.largest = max(self.largest, len(batch))
        try:
            if len(batch) == 1:
                outcomes: list[Outcome] = [await self._single(batch[0][0])]
            else:
                outcomes = await claim_many(self._db, [r for r, _ in batch], self._attempts, self._single)
        except asyncio.CancelledError:
            for _, f in batch:
                f.cancel()
            raise
        except Exception as exc:
            outcomes = [exc] * len(batch)
        for (_, f), outcome in zip(batch, outcomes, strict=True):
            if f.done():
                continue
            if isinstance(outcome, BaseException):
                f.set_exception(outcome)
            else:
                f.set_result(outcome)
