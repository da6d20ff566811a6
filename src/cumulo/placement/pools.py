"""One host, one pool: the local nodes of a host draw from one sharing provider.

The host's CPUs, memory and disk are the inventory of ONE resource provider, the host's pool
(named "<host>:pool"), which carries placement's trait MISC_SHARES_VIA_AGGREGATE and sits in an
aggregate (uuid = the pool's uuid) with every node provider of the host. A node provider keeps its
own inventory (the whole machine, at the node's own allocation ratios) and the allocations of its
servers, in the node's units (vCPUs, MB, GB), so `hypervisor show` and the filters read them as
Nova does. A claim on a member node must also fit the pool:

    sum over the pool's members m of  used_m(rc) / ratio_m(rc)  +  amount / ratio_node(rc)
        <=  (pool.total(rc) - pool.reserved(rc)) * pool.ratio(rc)

i.e. every allocation is weighed by the allocation ratio of the node that holds it, which turns
it into physical CPUs (or MB, GB) of the host: a VM vCPU at ratio 2 takes half a core of the pool,
a container vCPU at ratio 50 takes a fiftieth. Nothing is counted twice and a VM's claim shrinks
what the containers can take, and the other way round. Every claim on a member bumps the pool's
generation with the same compare-and-swap as the node's (placement.py), so two nodes' claims can
never both pass on stale pool usage.

Why not Nova's plain sharing-provider allocation (the resources allocated against the sharing
provider itself)? Placement has one allocation ratio per inventory, so a pool could not overcommit
container vCPUs 50:1 and VM vCPUs 2:1; keeping the allocation on the node keeps its ratio.
"""

from __future__ import annotations

import functools
import uuid as uuidlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.placement.inventory import Inventory, inventory_from_row
from cumulo.placement.models import (
    allocations,
    inventories,
    resource_provider_aggregates,
    resource_provider_traits,
    resource_providers,
)

SHARING_TRAIT = "MISC_SHARES_VIA_AGGREGATE"
_POOL_NS = uuidlib.UUID("6f1d3c52-8f0e-4c1b-9a7e-1c2f5b0d9e41")


def pool_uuid(host: str) -> str:
    """The pool provider's uuid: stable per host, so restarts find it."""
    return str(uuidlib.uuid5(_POOL_NS, host))


def pool_name(host: str) -> str:
    return f"{host}:pool"


def _ratio(value: float) -> Fraction:
    return Fraction(value).limit_denominator(10**6) if value > 0 else Fraction(1)


@dataclass
class PoolState:
    """A pool's inventory and its members' usage weighed into physical units; what claims and the
    scheduler check a node's request against."""

    uuid: str
    name: str
    provider_id: int
    generation: int
    inventory: dict[str, Inventory]
    weighted: dict[str, Fraction] = field(default_factory=dict)

    def capacity(self, rc: str) -> Fraction | None:
        inv = self.inventory.get(rc)
        if inv is None:
            return None
        return (inv.total - inv.reserved) * _ratio(inv.allocation_ratio)

    def free_for(self, rc: str, node_ratio: float) -> int | None:
        """How much a node at `node_ratio` may still take of `rc`; None: the pool does not bound rc."""
        cap = self.capacity(rc)
        if cap is None:
            return None
        left = (cap - self.weighted.get(rc, Fraction(0))) * _ratio(node_ratio)
        return max(0, int(left))  # floor of a non-negative Fraction

    def consume(self, rc: str, amount: int, node_ratio: float) -> None:
        self.weighted[rc] = self.weighted.get(rc, Fraction(0)) + Fraction(amount) / _ratio(node_ratio)

    def shortfall(self, resources: Mapping[str, int], node_inventory: Mapping[str, Inventory]) -> dict[str, str]:
        """What of `resources` (claimed by a node with `node_inventory`) the pool cannot give."""
        short: dict[str, str] = {}
        for rc, amount in resources.items():
            inv = node_inventory.get(rc)
            ratio = inv.allocation_ratio if inv is not None else 1.0
            free = self.free_for(rc, ratio)
            if free is not None and amount > free:
                short[rc] = f"requested {amount}, free {free} in the host's shared pool {self.name}"
        return short


def _pool_rows(node_id: int | sa.ScalarSelect[Any], *extra: Any) -> sa.Select[Any]:
    """The rows (`extra` columns first, then rp_id, rp_uuid, rp_name, rp_gen, its inventories) of
    the sharing provider of a node's aggregates; `node_id` an id or a scalar subquery."""
    agg = resource_provider_aggregates
    mine = sa.select(agg.c.aggregate_uuid).where(agg.c.provider_id == node_id)
    rp = resource_providers
    return (
        sa.select(*extra, rp.c.id.label("rp_id"), rp.c.uuid.label("rp_uuid"), rp.c.name.label("rp_name"),
                  rp.c.generation.label("rp_gen"), *inventories.c)
        .select_from(rp.outerjoin(inventories, inventories.c.provider_id == rp.c.id))
        .where(
            rp.c.id != node_id,
            rp.c.id.in_(sa.select(agg.c.provider_id).where(agg.c.aggregate_uuid.in_(mine.scalar_subquery()))),
            rp.c.id.in_(
                sa.select(resource_provider_traits.c.provider_id).where(
                    resource_provider_traits.c.trait == SHARING_TRAIT
                )
            ),
        )
    )


def _pool_from(rows: Sequence[Any]) -> PoolState | None:
    if not rows:
        return None
    first = rows[0]
    pid = int(first["rp_id"])
    inventory = {r["resource_class"]: inventory_from_row(r) for r in rows if r["rp_id"] == pid and r["resource_class"] is not None}
    return PoolState(str(first["rp_uuid"]), str(first["rp_name"]), pid, int(first["rp_gen"]), inventory)


async def pool_of(conn: AsyncConnection, provider_id: int) -> PoolState | None:
    """The sharing provider of a provider's aggregates (generation and inventory read here, before
    any usage), or None when it draws from no pool."""
    rows = (await conn.execute(_pool_rows(provider_id).order_by(resource_providers.c.id))).mappings().all()
    return _pool_from(rows)


@dataclass
class NodeRead:
    """A node as a claim reads it first: its id, generation and inventory, whether the consumer
    already holds allocations anywhere, and its pool (with the pool's generation and inventory)."""

    provider_id: int
    generation: int
    inventory: dict[str, Inventory]
    held: bool
    pool: PoolState | None
    # The node's usage per resource class of its inventory, without the excluded consumer's (read
    # by the same statement as the generation, so from the same snapshot); {} when it has a pool
    # (the claim reads the pool's members' usage together then).
    usage: dict[str, int] = field(default_factory=dict)
    # The pool's members' allocations (provider id, resource class, the member's ratio, used), read
    # by the same statement: what load_usage reads, for `member_usage`.
    pool_usage: list[tuple[int, str, float | None, int]] = field(default_factory=list)


@functools.cache
def _node_and_pool_statement(excluding: bool) -> sa.Select[Any]:
    """node_and_pool's statement, built once per shape (with or without an excluded consumer):
    its values are bound parameters (nap_provider, nap_consumer, nap_exclude), so building it (1.6 ms
    of Python) is paid once and its compiled form comes from the cache (issue 14)."""
    rp = resource_providers
    provider_uuid = sa.bindparam("nap_provider", type_=rp.c.uuid.type)
    consumer_id = sa.bindparam("nap_consumer", type_=allocations.c.consumer_id.type)
    exclude = sa.bindparam("nap_exclude", type_=allocations.c.consumer_id.type) if excluding else None
    held = sa.exists().where(allocations.c.consumer_id == consumer_id).label("held")
    node_id = sa.select(rp.c.id).where(rp.c.uuid == provider_uuid).scalar_subquery()
    counted = [allocations.c.provider_id == rp.c.id, allocations.c.resource_class == inventories.c.resource_class]
    if exclude is not None:
        counted.append(allocations.c.consumer_id != exclude)
    used = sa.select(sa.func.coalesce(sa.func.sum(allocations.c.used), 0)).where(*counted).scalar_subquery()
    node = (
        sa.select(sa.literal(0).label("is_pool"), held, used.label("used"), rp.c.id.label("rp_id"),
                  rp.c.uuid.label("rp_uuid"), rp.c.name.label("rp_name"), rp.c.generation.label("rp_gen"),
                  *inventories.c)
        .select_from(rp.outerjoin(inventories, inventories.c.provider_id == rp.c.id))
        .where(rp.c.uuid == provider_uuid)
    )
    pool = _pool_rows(node_id, sa.literal(1).label("is_pool"), held, sa.literal(0).label("used"))
    q = sa.union_all(node, pool, _pool_usage_rows(node_id, exclude)).subquery()
    return sa.select(q).order_by(q.c.is_pool, q.c.rp_id)


async def node_and_pool(
    conn: AsyncConnection, provider_uuid: str, consumer_id: str, *, exclude: str | None = None
) -> NodeRead | None:
    """One statement for what a single claim reads (None: no such provider): the node's generation,
    inventory and usage (without `exclude`'s allocations), its pool's generation and inventory
    (both generations read before any usage of the pool's members), and whether the consumer holds
    anything (so a first claim skips the DELETE of what it held). The node's usage comes in the
    same statement, a snapshot with its generation (a round trip less per claim: issue 14)."""
    params = {"nap_provider": provider_uuid, "nap_consumer": consumer_id}
    if exclude is not None:
        params["nap_exclude"] = exclude
    rows = (await conn.execute(_node_and_pool_statement(exclude is not None), params)).mappings().all()
    mine = [r for r in rows if r["is_pool"] == 0]
    if not mine:
        return None
    return NodeRead(
        int(mine[0]["rp_id"]), int(mine[0]["rp_gen"]),
        {r["resource_class"]: inventory_from_row(r) for r in mine if r["resource_class"] is not None},
        bool(mine[0]["held"]), _pool_from([r for r in rows if r["is_pool"] == 1]),
        {r["resource_class"]: int(r["used"]) for r in mine if r["resource_class"] is not None and r["used"]},
        [(int(r["rp_id"]), str(r["resource_class"]), r["allocation_ratio"], int(r["used"] or 0))
         for r in rows if r["is_pool"] == 2],
    )


async def lock_node_and_pool(conn: AsyncConnection, provider_uuid: str) -> None:
    """PostgreSQL: lock the rows of a node's provider and of its pool, in id order (as every
    multi-provider UPDATE does: locking.in_id_order), before a claim reads them. Until the commit no
    other claim can move either generation, so what the claim reads next (a statement of its own: a
    fresh snapshot under READ COMMITTED) stays current and its compare-and-swap cannot lose. A claim
    takes these locks when it goes again after losing the race (service.Placement._with_retries)."""
    rp = resource_providers
    node_id = sa.select(rp.c.id).where(rp.c.uuid == provider_uuid).scalar_subquery()
    sharing = _pool_rows(node_id).subquery()
    await conn.execute(
        sa.select(rp.c.id)
        .where(sa.or_(rp.c.uuid == provider_uuid, rp.c.id.in_(sa.select(sharing.c.rp_id))))
        .order_by(rp.c.id)
        .with_for_update(key_share=True)
    )


def _pool_usage_rows(node_id: sa.ScalarSelect[Any], exclude: sa.BindParameter[str] | None) -> sa.Select[Any]:
    """node_and_pool's third part (is_pool 2): load_usage's sums for the node's pool (the sharing
    provider `_pool_from` takes: the lowest id), in the union's columns; none without a pool."""
    agg = resource_provider_aggregates
    sharing = _pool_rows(node_id).subquery()
    pool_id = sa.select(sa.func.min(sharing.c.rp_id)).scalar_subquery()
    members = sa.select(agg.c.provider_id).where(agg.c.aggregate_uuid.in_(
        sa.select(agg.c.aggregate_uuid).where(agg.c.provider_id == pool_id).scalar_subquery()))
    columns: dict[str, Any] = {
        "id": sa.null(), "provider_id": sa.null(), "resource_class": allocations.c.resource_class,
        "total": sa.null(), "reserved": sa.null(), "min_unit": sa.null(), "max_unit": sa.null(),
        "step_size": sa.null(), "allocation_ratio": inventories.c.allocation_ratio,
    }
    q = (
        sa.select(sa.literal(2).label("is_pool"), sa.false().label("held"), sa.func.sum(allocations.c.used).label("used"),
                  allocations.c.provider_id.label("rp_id"), sa.null().label("rp_uuid"), sa.null().label("rp_name"),
                  sa.null().label("rp_gen"), *(columns[c.name].label(c.name) for c in inventories.c))
        .select_from(allocations.outerjoin(
            inventories,
            sa.and_(inventories.c.provider_id == allocations.c.provider_id,
                    inventories.c.resource_class == allocations.c.resource_class)))
        .where(allocations.c.provider_id.in_(members.scalar_subquery()), allocations.c.provider_id != pool_id)
        .group_by(allocations.c.provider_id, allocations.c.resource_class, inventories.c.allocation_ratio)
    )
    return q.where(allocations.c.consumer_id != exclude) if exclude is not None else q


def member_usage(pool: PoolState, rows: Iterable[tuple[int, str, float | None, int]]) -> dict[int, dict[str, int]]:
    """Fill pool.weighted from the members' allocation sums and return each member's own usage
    (load_usage's arithmetic, on rows read elsewhere)."""
    weighted: dict[str, Fraction] = {}
    by_member: dict[int, dict[str, int]] = {}
    for pid, rc, ratio, used in rows:
        # A node without inventory (its driver is gone, its servers stay) weighs 1:1: conservative.
        weighted[rc] = weighted.get(rc, Fraction(0)) + Fraction(int(used)) / _ratio(float(ratio or 1.0))
        mine = by_member.setdefault(int(pid), {})
        mine[rc] = mine.get(rc, 0) + int(used)
    pool.weighted = weighted
    return by_member


async def load_usage(conn: AsyncConnection, pool: PoolState, *, exclude: str | None = None) -> dict[int, dict[str, int]]:
    """Fill pool.weighted (every member's allocations, each divided by its node's ratio) and return
    each member's own usage {provider id: {rc: used}}: one query for both."""
    agg = resource_provider_aggregates
    members = sa.select(agg.c.provider_id).where(agg.c.aggregate_uuid.in_(
        sa.select(agg.c.aggregate_uuid).where(agg.c.provider_id == pool.provider_id).scalar_subquery()
    ))
    q = (
        sa.select(allocations.c.provider_id, allocations.c.resource_class, inventories.c.allocation_ratio,
                  sa.func.sum(allocations.c.used))
        .select_from(
            allocations.outerjoin(
                inventories,
                sa.and_(inventories.c.provider_id == allocations.c.provider_id,
                        inventories.c.resource_class == allocations.c.resource_class),
            )
        )
        .where(allocations.c.provider_id.in_(members.scalar_subquery()), allocations.c.provider_id != pool.provider_id)
        .group_by(allocations.c.provider_id, allocations.c.resource_class, inventories.c.allocation_ratio)
    )
    if exclude is not None:
        q = q.where(allocations.c.consumer_id != exclude)
    return member_usage(pool, [(int(p), str(rc), r, int(u)) for p, rc, r, u in await conn.execute(q)])


async def pools_for(conn: AsyncConnection, provider_uuids: Iterable[str] | None) -> dict[str, PoolState]:
    """{member provider uuid: its pool with usage}; members of one pool share one PoolState. Two
    queries whatever the number of nodes (the scheduler runs this for every request). None: every
    pool's members."""
    wanted = list(provider_uuids) if provider_uuids is not None else None
    if wanted is not None and not wanted:
        return {}
    agg, rp = resource_provider_aggregates, resource_providers
    member_agg, pool_agg, member = agg.alias("member_agg"), agg.alias("pool_agg"), rp.alias("member")
    traits = resource_provider_traits
    rows = (
        await conn.execute(
            sa.select(member.c.uuid.label("member_uuid"), rp.c.id.label("rp_id"), rp.c.uuid.label("rp_uuid"),
                      rp.c.name.label("rp_name"), rp.c.generation.label("rp_gen"), inventories)
            .select_from(
                member.join(member_agg, member_agg.c.provider_id == member.c.id)
                .join(pool_agg, sa.and_(pool_agg.c.aggregate_uuid == member_agg.c.aggregate_uuid,
                                        pool_agg.c.provider_id != member.c.id))
                .join(traits, sa.and_(traits.c.provider_id == pool_agg.c.provider_id, traits.c.trait == SHARING_TRAIT))
                .join(rp, rp.c.id == pool_agg.c.provider_id)
                .outerjoin(inventories, inventories.c.provider_id == rp.c.id)
            )
            .where(member.c.uuid.in_(wanted) if wanted is not None else sa.true())
            .order_by(rp.c.id)
        )
    ).mappings().all()
    by_pool: dict[int, PoolState] = {}
    out: dict[str, PoolState] = {}
    for r in rows:
        pid = int(r["rp_id"])
        pool = by_pool.get(pid)
        if pool is None:
            pool = by_pool[pid] = PoolState(str(r["rp_uuid"]), str(r["rp_name"]), pid, int(r["rp_gen"]), {})
        if r["resource_class"] is not None:
            pool.inventory[r["resource_class"]] = inventory_from_row(r)
        out.setdefault(str(r["member_uuid"]), pool)
    if by_pool:
        usage = (
            sa.select(pool_agg.c.provider_id, allocations.c.resource_class, inventories.c.allocation_ratio,
                      sa.func.sum(allocations.c.used))
            .select_from(
                allocations.join(member_agg, member_agg.c.provider_id == allocations.c.provider_id)
                .join(pool_agg, sa.and_(pool_agg.c.aggregate_uuid == member_agg.c.aggregate_uuid,
                                        pool_agg.c.provider_id != allocations.c.provider_id))
                .outerjoin(inventories, sa.and_(inventories.c.provider_id == allocations.c.provider_id,
                                                inventories.c.resource_class == allocations.c.resource_class))
            )
            .where(pool_agg.c.provider_id.in_(list(by_pool)))
            .group_by(pool_agg.c.provider_id, allocations.c.resource_class, inventories.c.allocation_ratio)
        )
        for pid, rc, ratio, used in await conn.execute(usage):
            pool = by_pool[int(pid)]
            pool.weighted[rc] = pool.weighted.get(rc, Fraction(0)) + Fraction(int(used)) / _ratio(float(ratio or 1.0))
    return out


async def sharing_peers(conn: AsyncConnection, provider_ids: Iterable[int]) -> list[int]:
    """The pools (sharing providers) the given providers draw from."""
    ids = list(provider_ids)
    if not ids:
        return []
    agg = resource_provider_aggregates
    q = sa.select(agg.c.provider_id).distinct().where(
        agg.c.aggregate_uuid.in_(sa.select(agg.c.aggregate_uuid).where(agg.c.provider_id.in_(ids)).scalar_subquery()),
        agg.c.provider_id.in_(
            sa.select(resource_provider_traits.c.provider_id).where(resource_provider_traits.c.trait == SHARING_TRAIT)
        ),
    )
    return [int(r[0]) for r in await conn.execute(q)]


async def make_sharing(conn: AsyncConnection, provider_id: int, aggregate: str) -> None:
    """Give the provider the sharing trait and put it in the aggregate (idempotent)."""
    await join(conn, provider_id, aggregate)
    t = resource_provider_traits
    found = (await conn.execute(
        sa.select(t.c.id).where(t.c.provider_id == provider_id, t.c.trait == SHARING_TRAIT)
    )).first()
    if found is None:
        await conn.execute(sa.insert(t).values(provider_id=provider_id, trait=SHARING_TRAIT))


async def join(conn: AsyncConnection, provider_id: int, aggregate: str) -> None:
    agg = resource_provider_aggregates
    found = (await conn.execute(
        sa.select(agg.c.id).where(agg.c.provider_id == provider_id, agg.c.aggregate_uuid == aggregate)
    )).first()
    if found is None:
        await conn.execute(sa.insert(agg).values(provider_id=provider_id, aggregate_uuid=aggregate))


