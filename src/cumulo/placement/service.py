"""Placement: resource providers (one per compute node), their inventories, and allocations.

A claim is atomic without table locks: inside one transaction it reads the provider's generation
FIRST, then inventory and usage, checks capacity, and bumps the generation with
`UPDATE resource_providers SET generation = g + 1 WHERE id = :id AND generation = g`. Any claim that
committed in between changed the generation, so the UPDATE matches no row and the claim retries on
fresh numbers. On SQLite writers are serialised anyway; on PostgreSQL (READ COMMITTED) the UPDATE
waits for the competing transaction and re-checks the generation, so two claims can never both
pass on stale usage. Reading the generation before the usage matters: a usage read that is newer
than the generation read is only ever conservative. On PostgreSQL an UPDATE of several providers
locks them in id order, and a retry takes the locks first, so it cannot lose again (locking.py).

Consumers are instance uuids. While a resize waits for confirmation the old flavor's allocation is
held by `migration_consumer(uuid)` on the same provider, so old + new both count.

The local nodes of one host also draw from the host's pool, a sharing provider (pools.py): a claim
on such a node checks the pool too, weighing each allocation by its node's allocation ratio, and
bumps the pool's generation with the same compare-and-swap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.conf import Settings
from cumulo.db import Database, utcnow
from cumulo.errors import Conflict, NotFound
from cumulo.placement import claim_sql, pools
from cumulo.placement.batch import Claim, ClaimBatcher, ClaimRequest, Rider
from cumulo.placement.inventory import (
    DISK_GB,
    MEMORY_MB,
    RESOURCE_CLASSES,
    VCPU,
    Inventory,
    Resources,
    inventory_from_row,
    shortfall,
)
from cumulo.placement.locking import in_id_order, retryable
from cumulo.placement.models import (
    allocations,
    inventories,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)
from cumulo.placement.pools import PoolState

LOG = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 8

def migration_consumer(instance_uuid: str) -> str:
    """The consumer holding an instance's old flavor during a resize."""
    return f"{instance_uuid}:resize"


@dataclass(frozen=True)
class ProviderSummary:
    uuid: str
    name: str
    generation: int
    inventory: dict[str, Inventory]
    usage: Resources

    def free(self, rc: str) -> int:
        inv = self.inventory.get(rc)
        return 0 if inv is None else inv.capacity - self.usage.get(rc, 0)


def resources_from_flavor(flavor: Mapping[str, Any]) -> Resources:
    """VCPU/MEMORY_MB/DISK_GB a flavor asks for (disk = root + ephemeral + swap rounded up to GB)."""
    vcpus = int(flavor.get("vcpus", 0) or 0)
    ram = int(flavor.get("memory_mb", flavor.get("ram", 0)) or 0)
    root = int(flavor.get("root_gb", flavor.get("disk", 0)) or 0)
    eph = int(flavor.get("ephemeral_gb", flavor.get("OS-FLV-EXT-DATA:ephemeral", flavor.get("ephemeral", 0))) or 0)
    swap_mb = flavor.get("swap", 0)
    swap = int(swap_mb) if isinstance(swap_mb, int | float) or str(swap_mb).isdigit() else 0
    disk = root + eph + (swap + 1023) // 1024
    out = {VCPU: vcpus, MEMORY_MB: ram, DISK_GB: disk}
    return {rc: n for rc, n in out.items() if n > 0}


class Placement:
    def __init__(self, db: Database, conf: Settings) -> None:
        self.db = db
        self.conf = conf
        # Claims made at the same moment share one write transaction (batch.py; claim_batched).
        self.batcher = ClaimBatcher(db, self._claim_request, CLAIM_ATTEMPTS)

    # -- providers and inventory ---------------------------------------------------------------

    def reserved(self) -> Resources:
        """What the host keeps for itself (Nova's reserved_host_*, conf.reserved_host)."""
        reserved = self.conf.reserved_host
        return {VCPU: reserved.cpus, MEMORY_MB: reserved.memory_mb, DISK_GB: reserved.disk_gb}

    def default_inventory(
        self, vcpus: int, memory_mb: int, disk_gb: int, max_units: Mapping[str, int] | None = None,
        *, ratios: Mapping[str, float] | None = None, pooled: bool = False,
    ) -> dict[str, Inventory]:
        """`max_units`: the most one allocation may take per class (default: the total).
        `ratios`: this node's allocation ratio per class (default: the cpu_/ram_/disk_allocation_ratio
        settings). A `pooled` node reserves nothing itself: its host's pool holds the reservation."""
        reserved = {rc: 0 for rc in RESOURCE_CLASSES} if pooled else self.reserved()
        ratios = {
            VCPU: self.conf.cpu_allocation_ratio,
            MEMORY_MB: self.conf.ram_allocation_ratio,
            DISK_GB: self.conf.disk_allocation_ratio,
            **(ratios or {}),
        }
        totals = {VCPU: vcpus, MEMORY_MB: memory_mb, DISK_GB: disk_gb}
        caps = {rc: max(totals[rc], int((max_units or {}).get(rc, 0) or 0)) for rc in totals}
        return {
            rc: Inventory(total=totals[rc], reserved=reserved[rc], max_unit=caps[rc], allocation_ratio=ratios[rc])
            for rc in RESOURCE_CLASSES
            if totals[rc] > 0
        }

    async def ensure_provider(
        self, uuid: str, name: str, *, vcpus: int, memory_mb: int, disk_gb: int,
        max_units: Mapping[str, int] | None = None, ratios: Mapping[str, float] | None = None,
        pool: str | None = None,
    ) -> None:
        """Create or update a compute node's provider with VCPU/MEMORY_MB/DISK_GB inventory, at the
        node's own allocation `ratios`; `pool`: the uuid of the host pool it draws from."""
        inventory = self.default_inventory(vcpus, memory_mb, disk_gb, max_units, ratios=ratios, pooled=pool is not None)
        await self.set_inventory(uuid, name, inventory)
        if pool is not None:
            async with self.db.write() as conn:
                await pools.join(conn, await self._provider_id(conn, uuid), pool)

    async def ensure_pool(self, host: str, *, vcpus: int, memory_mb: int, disk_gb: int) -> str:
        """Create or update a host's pool: a sharing provider holding the whole machine (physical
        units, ratio 1, minus the host's reservation). Returns its uuid, which is also its aggregate."""
        uuid = pools.pool_uuid(host)
        reserved = self.reserved()
        totals = {VCPU: vcpus, MEMORY_MB: memory_mb, DISK_GB: disk_gb}
        inventory = {rc: Inventory(total=n, reserved=reserved[rc], max_unit=n) for rc, n in totals.items() if n > 0}
        await self.set_inventory(uuid, pools.pool_name(host), inventory)
        async with self.db.write() as conn:
            await pools.make_sharing(conn, await self._provider_id(conn, uuid), uuid)
        return uuid

    async def pools_of(self, provider_uuids: Iterable[str]) -> dict[str, PoolState]:
        """{provider uuid: the pool it draws from, with the pool's weighed usage} (scheduler, APIs)."""
        async with self.db.read() as conn:
            return await pools.pools_for(conn, provider_uuids)

    async def set_inventory(self, uuid: str, name: str, inventory: Mapping[str, Inventory]) -> None:
        # Unchanged (a host's restart: 1,000 fake hosts at once): read only, no write transaction.
        want = {rc: dataclasses.replace(inv, max_unit=inv.max_unit or inv.total) for rc, inv in inventory.items()}
        async with self.db.read() as conn:
            rows = (await conn.execute(
                sa.select(resource_providers.c.name.label("rp_name"), inventories)
                .select_from(resource_providers.outerjoin(inventories, inventories.c.provider_id == resource_providers.c.id))
                .where(resource_providers.c.uuid == uuid))).mappings().all()
        if rows and rows[0]["rp_name"] == name and want == {
                r["resource_class"]: inventory_from_row(r) for r in rows if r["resource_class"] is not None}:
            return
        async with self.db.write() as conn:
            row = (
                await conn.execute(sa.select(resource_providers.c.id).where(resource_providers.c.uuid == uuid))
            ).first()
            if row is None:
                # A node re-registered under a new uuid keeps its name: drop the stale provider.
                await conn.execute(sa.delete(resource_providers).where(resource_providers.c.name == name))
                res = await conn.execute(
                    sa.insert(resource_providers).values(uuid=uuid, name=name, generation=0, created_at=utcnow())
                )
                pid = int(res.inserted_primary_key[0])  # type: ignore[index]
            else:
                pid = int(row[0])
                await conn.execute(sa.update(resource_providers).where(resource_providers.c.id == pid).values(name=name))
            await conn.execute(sa.delete(inventories).where(inventories.c.provider_id == pid))
            if inventory:  # one statement for all classes
                await conn.execute(sa.insert(inventories), [
                    {"provider_id": pid, "resource_class": rc, "total": inv.total, "reserved": inv.reserved,
                     "min_unit": inv.min_unit, "max_unit": inv.max_unit or inv.total, "step_size": inv.step_size,
                     "allocation_ratio": inv.allocation_ratio}
                    for rc, inv in inventory.items()
                ])
            await self._bump(conn, [pid])

    async def delete_provider(self, uuid: str) -> None:
        async with self.db.write() as conn:
            pid = await self._provider_id(conn, uuid)
            for table in (allocations, inventories, resource_provider_aggregates, resource_provider_traits):
                await conn.execute(sa.delete(table).where(table.c.provider_id == pid))
            await conn.execute(sa.delete(resource_providers).where(resource_providers.c.id == pid))

    async def get_inventory(self, uuid: str) -> dict[str, Inventory]:
        async with self.db.read() as conn:
            pid = await self._provider_id(conn, uuid)
            return await self._inventory(conn, pid)

    async def usage(self, uuid: str) -> Resources:
        async with self.db.read() as conn:
            pid = await self._provider_id(conn, uuid)
            return await self._usage(conn, pid)

    async def summaries(self, uuids: Iterable[str] | None = None) -> dict[str, ProviderSummary]:
        """Inventory and usage of many providers in two queries."""
        return (await self.summaries_and_pools(uuids, with_pools=False))[0]

    async def summaries_and_pools(
        self, uuids: Iterable[str] | None = None, *, with_pools: bool = True, conn: AsyncConnection | None = None
    ) -> tuple[dict[str, ProviderSummary], dict[str, PoolState]]:
        """What the scheduler reads, in one read transaction (`conn`, or one of its own): summaries
        (inventory and usage) of the providers, and {provider uuid: its pool} for those in one."""
        if conn is None:
            async with self.db.read() as own:
                return await self.summaries_and_pools(uuids, with_pools=with_pools, conn=own)
        wanted = list(uuids) if uuids is not None else None
        rp = resource_providers
        q = sa.select(rp.c.uuid, rp.c.name, rp.c.generation, inventories).select_from(
            rp.outerjoin(inventories, inventories.c.provider_id == rp.c.id)
        )
        u = (
            sa.select(rp.c.uuid, allocations.c.resource_class, sa.func.sum(allocations.c.used))
            .select_from(allocations.join(rp, rp.c.id == allocations.c.provider_id))
            .group_by(rp.c.uuid, allocations.c.resource_class)
        )
        if wanted is not None:
            q = q.where(rp.c.uuid.in_(wanted))
            u = u.where(rp.c.uuid.in_(wanted))
        shared: dict[str, PoolState] = {}
        inv_rows = (await conn.execute(q)).mappings().all()
        use_rows = (await conn.execute(u)).all()
        if with_pools:
            shared = await pools.pools_for(conn, wanted if wanted is not None else [r["uuid"] for r in inv_rows])
        heads: dict[str, tuple[str, int]] = {}
        invs: dict[str, dict[str, Inventory]] = {}
        for r in inv_rows:
            heads[r["uuid"]] = (r["name"], int(r["generation"]))
            if r["resource_class"] is not None:
                invs.setdefault(r["uuid"], {})[r["resource_class"]] = inventory_from_row(r)
        uses: dict[str, Resources] = {}
        for puuid, rc, used in use_rows:
            uses.setdefault(puuid, {})[rc] = int(used)
        return {
            puuid: ProviderSummary(puuid, name, gen, invs.get(puuid, {}), uses.get(puuid, {}))
            for puuid, (name, gen) in heads.items()
        }, shared

    async def allocations_for(self, consumer_id: str) -> dict[str, Resources]:
        """{provider_uuid: {rc: used}} of one consumer."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(resource_providers.c.uuid, allocations.c.resource_class, allocations.c.used)
                .join(resource_providers, resource_providers.c.id == allocations.c.provider_id)
                .where(allocations.c.consumer_id == consumer_id)
            )
            out: dict[str, Resources] = {}
            for puuid, rc, used in rows:
                out.setdefault(puuid, {})[rc] = int(used)
            return out

    # -- claims ---------------------------------------------------------------------------------

    async def claim(
        self, consumer_id: str, provider_uuid: str, resources: Mapping[str, int],
        *, then: Callable[[AsyncConnection], Awaitable[Any]] | None = None, rider: Rider | None = None,
    ) -> Claim:
        """Allocate `resources` on the provider for the consumer (replacing what it held), if they fit.

        `then(conn)` runs after a successful claim inside the same write transaction (its result is
        `Claim.result`): the caller's own write commits with the allocation or not at all, and an
        exception it raises rolls the claim back and propagates. `rider` (batch.Rider): the same
        write as part of the claim's one statement, where the claim can be one (PostgreSQL, a first
        claim: claim_sql.claim_in_one_statement); `then` everywhere else.
        """
        if rider is not None and not self.db.is_sqlite:
            done = await claim_sql.claim_in_one_statement(self.db, consumer_id, provider_uuid, dict(resources), rider)
            if done is not None:
                return done
        return await self._with_retries(
            lambda conn, lock: self._claim_once(conn, consumer_id, provider_uuid, dict(resources), hold_old=False,
                                              then=then, lock=lock)
        )

    async def claim_batched(
        self, consumer_id: str, provider_uuid: str, resources: Mapping[str, int],
        *, then: Callable[[AsyncConnection], Awaitable[Any]] | None = None, rider: Rider | None = None,
    ) -> Claim:
        """As `claim`, but committed in one write transaction with the other claims made at the same
        moment (the builds of one select turn; batch.py). `then` runs in a savepoint of its own: an
        exception it raises rolls back its claim alone and propagates to this caller. A claim alone
        in its moment is a plain `claim` (with its `rider`)."""
        return await self.batcher.claim(consumer_id, provider_uuid, dict(resources), then=then, rider=rider)

    async def _claim_request(self, r: ClaimRequest) -> Claim:
        return await self.claim(r.consumer_id, r.provider_uuid, r.resources, then=r.then, rider=r.rider)

    async def claim_resize(self, consumer_id: str, provider_uuid: str, new_resources: Mapping[str, int]) -> Claim:
        """Same-host resize: keep the old allocation under migration_consumer(), claim the new one too."""
        return await self._with_retries(
            lambda conn, lock: self._claim_once(conn, consumer_id, provider_uuid, dict(new_resources), hold_old=True,
                                              lock=lock)
        )

    async def release(self, consumer_id: str, *, include_migration: bool = True) -> None:
        """Drop every allocation of the consumer (and of its pending resize)."""
        consumers = [consumer_id, migration_consumer(consumer_id)] if include_migration else [consumer_id]
        held = sa.select(allocations.c.provider_id).where(allocations.c.consumer_id.in_(consumers))
        async with self.db.write() as conn:
            # Bump the providers that held something (placement's rule: allocations change generations).
            await conn.execute(
                sa.update(resource_providers)
                .where(resource_providers.c.id.in_(held.scalar_subquery()),
                       *in_id_order(conn, held.scalar_subquery()))
                .values(generation=resource_providers.c.generation + 1, updated_at=utcnow())
            )
            await conn.execute(sa.delete(allocations).where(allocations.c.consumer_id.in_(consumers)))

    async def confirm_resize(self, consumer_id: str) -> None:
        """The new flavor stays: drop the old allocation."""
        await self.release(migration_consumer(consumer_id), include_migration=False)

    async def revert_resize(self, consumer_id: str) -> None:
        """The old flavor comes back: drop the new allocation and give the old one back to the consumer."""
        mig = migration_consumer(consumer_id)
        async with self.db.write() as conn:
            if not await self._consumer_providers(conn, [mig]):
                return  # nothing held: the resize never claimed, or was already reverted
            pids = await self._consumer_providers(conn, [consumer_id, mig])
            await conn.execute(sa.delete(allocations).where(allocations.c.consumer_id == consumer_id))
            await conn.execute(
                sa.update(allocations).where(allocations.c.consumer_id == mig).values(consumer_id=consumer_id)
            )
            await self._bump(conn, pids)

    async def reconcile(
        self,
        live: Mapping[str, tuple[str, Mapping[str, int]]],
        *,
        providers: Iterable[str] | None = None,
        ignore: Iterable[str] = (),
    ) -> dict[str, int]:
        """Make allocations equal the live consumers: {consumer_id: (provider_uuid, resources)}.

        `providers` limits the work to those providers (an agent reconciles its own node): stale
        allocations elsewhere are left alone. Consumers in `ignore` (e.g. builds the conductor is
        scheduling right now) are never touched. Live reality wins over capacity.
        """
        skip = set(ignore)
        providers = list(providers) if providers is not None else None
        # Nothing to change (a host's start with nothing on it: every fake host of 1,000): read only,
        # no write transaction (issue 14, start-up at scale). Otherwise again, in the write.
        async with self.db.read() as conn:
            plan = await self._reconcile_in(conn, live, providers, skip, apply=False)
        if not any(plan.values()):
            return plan
        async with self.db.write() as conn:
            return await self._reconcile_in(conn, live, providers, skip, apply=True)

    async def _reconcile_in(
        self, conn: AsyncConnection, live: Mapping[str, tuple[str, Mapping[str, int]]],
        providers: list[str] | None, skip: set[str], *, apply: bool,
    ) -> dict[str, int]:
        """What reconcile changes ({"removed": n, "fixed": n}), changed only when `apply` (a write)."""
        # Only the providers in scope (an agent's own node): reading every provider here made
        # each of 1,000 hosts' start-up read 1,000 rows (issue 14, start-up at scale).
        q_prov = sa.select(resource_providers.c.id, resource_providers.c.uuid)
        if providers is not None:
            q_prov = q_prov.where(resource_providers.c.uuid.in_(providers))
        prov_rows = (await conn.execute(q_prov)).all()
        pid_of = {u: i for i, u in prov_rows}
        scope = set(pid_of.values()) if providers is None else {pid_of[u] for u in providers if u in pid_of}
        live_ids = [c for c in live if c not in skip]
        q = sa.select(allocations.c.consumer_id, allocations.c.provider_id, allocations.c.resource_class,
                      allocations.c.used)
        q = q.where(sa.or_(allocations.c.provider_id.in_(scope), allocations.c.consumer_id.in_(live_ids)))
        current: dict[str, dict[int, Resources]] = {}
        for consumer, pid, rc, used in await conn.execute(q):
            current.setdefault(consumer, {}).setdefault(pid, {})[rc] = int(used)
        touched: set[int] = set()
        removed = fixed = 0
        for consumer, held in current.items():
            if consumer in skip or consumer in live:
                continue
            stale = [pid for pid in held if pid in scope]
            if stale and apply:
                await conn.execute(
                    sa.delete(allocations).where(
                        allocations.c.consumer_id == consumer, allocations.c.provider_id.in_(stale)
                    )
                )
            if stale:
                touched.update(stale)
                removed += 1
        for consumer in live_ids:
            puuid, res = live[consumer]
            pid = pid_of.get(puuid)
            if pid is None or pid not in scope:
                continue
            want = {pid: {rc: int(n) for rc, n in res.items() if n > 0}} if any(n > 0 for n in res.values()) else {}
            if current.get(consumer, {}) == want:
                continue
            touched.update(current.get(consumer, {}))
            touched.add(pid)
            fixed += 1
            if not apply:
                continue
            await conn.execute(sa.delete(allocations).where(allocations.c.consumer_id == consumer))
            for rc, n in want.get(pid, {}).items():
                await conn.execute(
                    sa.insert(allocations).values(
                        provider_id=pid, consumer_id=consumer, resource_class=rc, used=n, created_at=utcnow()
                    )
                )
        if not apply:
            return {"removed": removed, "fixed": fixed}
        await self._bump(conn, touched)
        if removed or fixed:
            LOG.info("placement reconcile: removed %d stale consumers, fixed %d", removed, fixed)
        return {"removed": removed, "fixed": fixed}

    # -- internals ------------------------------------------------------------------------------

    async def _with_retries(self, attempt: Callable[[AsyncConnection, bool], Awaitable[Claim | None]]) -> Claim:
        """The first attempt is optimistic (the compare-and-swap); one that lost the race goes again
        holding the providers' row locks from its first statement (`lock`), so it cannot lose again:
        under many concurrent writers on one pool every claim ends, won or refused for capacity."""
        for n in range(CLAIM_ATTEMPTS):
            try:
                async with self.db.write() as conn:
                    result: Claim | None = await attempt(conn, n > 0)
            except _GenerationMoved:
                result = None  # the write transaction rolled back: try again on fresh numbers
            except sa.exc.DBAPIError as exc:
                if not retryable(exc):
                    raise
                LOG.debug("claim attempt failed: %s", exc)
                result = None
            if result is not None:
                return result
            await asyncio.sleep(random.uniform(0.001, 0.01) * (n + 1))
        raise Conflict("Placement: the claim lost the generation race too many times; try again")

    async def _claim_once(
        self, conn: AsyncConnection, consumer_id: str, provider_uuid: str, resources: Resources, *, hold_old: bool,
        then: Callable[[AsyncConnection], Awaitable[Any]] | None = None, lock: bool = False,
    ) -> Claim | None:
        """One attempt. None means the generation moved under us (retry). `lock`: take the row locks
        of the node and its pool first (PostgreSQL; a retry), so the reads that follow stay current."""
        if lock and conn.dialect.name == "postgresql":
            await pools.lock_node_and_pool(conn, provider_uuid)
        # The node's and its pool's generations and inventories in one statement, before the usage
        # (see the module docstring); with whether the consumer holds anything yet.
        # A re-claim replaces what the consumer already holds (on this provider, or in its pool).
        exclude = None if hold_old else consumer_id
        node = await pools.node_and_pool(conn, provider_uuid, consumer_id, exclude=exclude)
        if node is None:
            raise NotFound(f"Resource provider {provider_uuid} not found")
        pid, gen, inventory, pool = node.provider_id, node.generation, node.inventory, node.pool
        mig = migration_consumer(consumer_id)
        if hold_old:
            held = await self._consumer_providers(conn, [mig])
            if held:
                return Claim(False, {"resize": "a resize of this instance is already in progress"})
        if pool is not None:  # the node's usage comes with its pool's, read by node_and_pool too
            usage = pools.member_usage(pool, node.pool_usage).get(pid, {})
        else:
            usage = node.usage  # read with the generation, in node_and_pool
        short = shortfall(resources, inventory, usage)
        if pool is not None:
            short = {**pool.shortfall({rc: n for rc, n in resources.items() if rc not in short}, inventory), **short}
        if short:
            return Claim(False, short)
        # One compare-and-swap over the node's generation and its pool's: both or nothing.
        cas = [(pid, gen)] + ([(pool.provider_id, pool.generation)] if pool is not None else [])
        if resources and not hold_old and not node.held and conn.dialect.name == "postgresql":
            # A first claim on PostgreSQL: the bump and the allocations in one statement (a round
            # trip less), the INSERT made only when every compare-and-swap matched.
            bumped = await conn.scalar(claim_sql.bump_and_allocate(len(cas), tuple(resources)),
                                       claim_sql.bump_and_allocate_params(cas, pid, consumer_id, resources))
            if bumped != len(cas):
                raise _GenerationMoved  # lost the race: nothing inserted, the rollback undoes a matched bump
            return Claim(True, result=None if then is None else await then(conn))
        bump = (
            sa.update(resource_providers)
            .where(sa.or_(*(sa.and_(resource_providers.c.id == i, resource_providers.c.generation == g)
                            for i, g in cas)),
                   *in_id_order(conn, [i for i, _ in cas]))
            .values(generation=resource_providers.c.generation + 1, updated_at=utcnow())
        )
        res = await conn.execute(bump)
        if res.rowcount != len(cas):
            # Lost the race; the rollback undoes a bump that did match.
            raise _GenerationMoved
        if hold_old:
            await conn.execute(sa.update(allocations).where(allocations.c.consumer_id == consumer_id).values(consumer_id=mig))
        elif node.held:
            # Dropping what the consumer held elsewhere only frees capacity there: no generation bump needed.
            await conn.execute(sa.delete(allocations).where(allocations.c.consumer_id == consumer_id))
        now = utcnow()
        if resources:
            await conn.execute(
                sa.insert(allocations),
                [
                    {"provider_id": pid, "consumer_id": consumer_id, "resource_class": rc, "used": n, "created_at": now}
                    for rc, n in resources.items()
                ],
            )
        return Claim(True, result=None if then is None else await then(conn))

    @staticmethod
    async def _provider_id(conn: AsyncConnection, uuid: str) -> int:
        row = (await conn.execute(sa.select(resource_providers.c.id).where(resource_providers.c.uuid == uuid))).first()
        if row is None:
            raise NotFound(f"Resource provider {uuid} not found")
        return int(row[0])

    @staticmethod
    async def _inventory(conn: AsyncConnection, pid: int) -> dict[str, Inventory]:
        rows = (await conn.execute(sa.select(inventories).where(inventories.c.provider_id == pid))).mappings()
        return {r["resource_class"]: inventory_from_row(r) for r in rows}

    @staticmethod
    async def _usage(conn: AsyncConnection, pid: int, exclude: str | None = None) -> Resources:
        q = (
            sa.select(allocations.c.resource_class, sa.func.sum(allocations.c.used))
            .where(allocations.c.provider_id == pid)
            .group_by(allocations.c.resource_class)
        )
        if exclude is not None:
            q = q.where(allocations.c.consumer_id != exclude)
        return {rc: int(n) for rc, n in await conn.execute(q)}

    @staticmethod
    async def _consumer_providers(conn: AsyncConnection, consumers: list[str]) -> list[int]:
        rows = await conn.execute(
            sa.select(allocations.c.provider_id).where(allocations.c.consumer_id.in_(consumers)).distinct()
        )
        return [int(r[0]) for r in rows]

    @staticmethod
    async def _bump(conn: AsyncConnection, pids: Iterable[int]) -> None:
        """Bump the providers' generations, and their pools' (a member's usage is the pool's)."""
        ids = sorted(set(pids))
        ids = sorted(set(ids) | set(await pools.sharing_peers(conn, ids)))
        if ids:
            await conn.execute(
                sa.update(resource_providers)
                .where(resource_providers.c.id.in_(ids), *in_id_order(conn, ids))
                .values(generation=resource_providers.c.generation + 1, updated_at=utcnow())
            )


class _GenerationMoved(Exception):
    """A provider's (or its pool's) generation changed under a claim; raised to roll it back."""
