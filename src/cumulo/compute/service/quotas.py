"""Compute quotas: per-project and per-user limits (defaults from settings, overrides in the DB) and usage.

Checks run inside the same write transaction that creates the resources, so concurrent requests
cannot both pass (SQLite serialises writers; on PostgreSQL the project's quota rows are locked).
-1 means unlimited.

Per-user limits work as Nova's project_user_quotas: a user's unset limits are the project's; a
user with their own instances/cores/ram limit is checked against it (counting only their servers)
as well as the project against its own; key_pairs and server_group_members are counted per user
and bound by the user's limit. Without `force`, the users' limits of a project add up to at most
the project's limit.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import instance_groups, instances, key_pairs, project_user_quotas, quotas
from cumulo.compute.states import SOFT_DELETED
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.db.locks import xact_lock
from cumulo.errors import Invalid, OverQuota

# Resources Nova's os-quota-sets shows at 2.57+ (older versions add legacy ones, rendered as defaults).
RESOURCES = (
    "instances",
    "cores",
    "ram",
    "key_pairs",
    "metadata_items",
    "server_groups",
    "server_group_members",
)
# Shown before 2.57 (injected_*) and before 2.36 (network ones); not enforced by Cumulo.
LEGACY_DEFAULTS = {
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
    "fixed_ips": -1,
    "floating_ips": -1,
    "security_groups": -1,
    "security_group_rules": -1,
    "networks": -1,
}

# Quota classes keep their rows in the quotas table under this pseudo project id prefix; only the
# "default" class affects limits, as in Nova.
CLASS_PREFIX = "quota-class:"
DEFAULT_CLASS = "default"

# Nova keeps these per project only: a per-user update of them sets the project's limit.
PER_PROJECT = frozenset({"fixed_ips", "floating_ips", "networks"})
INSTANCE_RESOURCES = ("cores", "instances", "ram")


def over_quota(limits: dict[str, int], used: dict[str, int], wanted: dict[str, int]) -> OverQuota | None:
    """Nova's TooManyInstances wording for the resources `wanted` more of would exceed, or None."""
    overs = [r for r in INSTANCE_RESOURCES if wanted.get(r, 0) > 0 and 0 <= limits[r] < used[r] + wanted[r]]
    if not overs:
        return None
    names = ", ".join(overs)
    req = ", ".join(str(wanted[r]) for r in overs)
    usd = ", ".join(str(used[r]) for r in overs)
    allowed = ", ".join(str(limits[r]) for r in overs)
    return OverQuota(f"Quota exceeded for {names}: Requested {req}, but already used {usd} of {allowed} {names}")


def headroom(limits: dict[str, int], used: dict[str, int], vcpus: int, ram: int) -> int:
    """How many more instances of this size the limits allow (-1 limits are unlimited), as Nova computes it."""
    fits: list[int] = []
    for res, per in (("instances", 1), ("cores", vcpus), ("ram", ram)):
        if limits[res] >= 0 and per:
            fits.append(max(0, (limits[res] - used[res]) // per))
    return min(fits) if fits else 1 << 30


@functools.cache
def _levels_query(*, with_user: bool) -> sa.Select[Any]:
    """The default class's, the project's and (with_user) the user's limit rows, as (level, resource,
    hard_limit) in level order: built once per shape (building the UNION ALL cost more than its
    round trip), the ids bound as "project_id" and "user_id"."""
    project_id = sa.bindparam("project_id", type_=quotas.c.project_id.type)
    levels: list[sa.Select[Any]] = [
        sa.select(sa.literal(0).label("level"), quotas.c.resource, quotas.c.hard_limit)
        .where(quotas.c.project_id == CLASS_PREFIX + DEFAULT_CLASS),
        sa.select(sa.literal(1).label("level"), quotas.c.resource, quotas.c.hard_limit)
        .where(quotas.c.project_id == project_id),
    ]
    if with_user:
        t = project_user_quotas
        levels.append(sa.select(sa.literal(2).label("level"), t.c.resource, t.c.hard_limit)
                      .where(t.c.project_id == project_id,
                             t.c.user_id == sa.bindparam("user_id", type_=t.c.user_id.type)))
    q = sa.union_all(*levels).subquery()
    return sa.select(q).order_by(q.c.level)


class QuotaEngine:
    def __init__(self, conf: Settings) -> None:
        self.conf = conf

    def defaults(self) -> dict[str, int]:
        c = self.conf
        return {
            "instances": c.quota_instances,
            "cores": c.quota_cores,
            "ram": c.quota_ram,
            "key_pairs": c.quota_key_pairs,
            "metadata_items": c.quota_metadata_items,
            "server_groups": c.quota_server_groups,
            "server_group_members": c.quota_server_group_members,
            **LEGACY_DEFAULTS,
        }

    async def class_limits(self, conn: AsyncConnection, quota_class: str = DEFAULT_CLASS) -> dict[str, int]:
        """A quota class's limits: its rows over the "default" class's rows over the settings."""
        out = self.defaults() if quota_class == DEFAULT_CLASS else await self.class_limits(conn)
        rows = await conn.execute(
            sa.select(quotas.c.resource, quotas.c.hard_limit).where(quotas.c.project_id == CLASS_PREFIX + quota_class)
        )
        for resource, hard_limit in rows:
            out[resource] = hard_limit
        return out

    async def limits(self, conn: AsyncConnection, project_id: str, user_id: str | None = None) -> dict[str, int]:
        """Like Nova: the user's own limits (with user_id), else the project's overrides, else the
        "default" quota class, else the settings. One statement for the three levels (a create
        reads them: a round trip each on PostgreSQL), applied in that order."""
        limits, own = await self.limits_and_overrides(conn, project_id, user_id)
        return {**limits, **own}

    async def limits_and_overrides(self, conn: AsyncConnection, project_id: str,
                                   user_id: str | None) -> tuple[dict[str, int], dict[str, int]]:
        """(the project's limits, the user's own overrides: only those set) in one statement, so a
        create learns both in one round trip."""
        out = self.defaults()
        own: dict[str, int] = {}
        params = {"project_id": project_id, **({"user_id": user_id} if user_id else {})}
        for level, resource, hard_limit in await conn.execute(_levels_query(with_user=bool(user_id)), params):
            if level == 2:
                own[resource] = int(hard_limit)
            else:
                out[resource] = hard_limit
        return out, own

    @staticmethod
    async def user_overrides(conn: AsyncConnection, project_id: str, user_id: str) -> dict[str, int]:
        """The limits set for this user in this project (only those set)."""
        t = project_user_quotas
        rows = await conn.execute(
            sa.select(t.c.resource, t.c.hard_limit).where(t.c.project_id == project_id, t.c.user_id == user_id)
        )
        return {resource: int(hard_limit) for resource, hard_limit in rows}

    async def user_instance_limits(self, conn: AsyncConnection, project_id: str, user_id: str | None) -> dict[str, int] | None:
        """The user's limits when they have their own instances/cores/ram limit, else None: as in Nova,
        a user without one is bound by the project's quota alone (and nothing is counted per user)."""
        if not user_id:
            return None
        own = await self.user_overrides(conn, project_id, user_id)
        if not any(r in own for r in INSTANCE_RESOURCES):
            return None
        return {**await self.limits(conn, project_id), **own}

    @staticmethod
    async def instance_usage(conn: AsyncConnection, project_id: str, user_id: str | None = None) -> dict[str, int]:
        """instances, cores and ram in use by the project's (or one user's) live servers, in one query.
        Like Nova's count, a SOFT_DELETED server is not counted (its restore checks the quota again)."""
        where = [
            instances.c.project_id == project_id, instances.c.deleted.is_(False),
            sa.or_(instances.c.vm_state.is_(None), instances.c.vm_state != SOFT_DELETED),
        ]
        if user_id:
            where.append(instances.c.user_id == user_id)
        row = (
            await conn.execute(
                sa.select(
                    sa.func.count(instances.c.id),
                    sa.func.coalesce(sa.func.sum(instances.c.vcpus), 0),
                    sa.func.coalesce(sa.func.sum(instances.c.memory_mb), 0),
                ).where(*where)
            )
        ).one()
        return {"instances": int(row[0]), "cores": int(row[1]), "ram": int(row[2])}

    async def usage(self, conn: AsyncConnection, project_id: str, user_id: str | None = None) -> dict[str, int]:
        """What the project uses, or (with user_id) what that user uses inside it."""
        usage = await self.instance_usage(conn, project_id, user_id)
        kp = sa.select(sa.func.count(key_pairs.c.id))
        kp = kp.where(key_pairs.c.user_id == user_id) if user_id else kp.where(key_pairs.c.project_id == project_id)
        usage["key_pairs"] = int((await conn.execute(kp)).scalar_one())
        groups = sa.select(sa.func.count(instance_groups.c.id)).where(instance_groups.c.project_id == project_id)
        if user_id:
            groups = groups.where(instance_groups.c.user_id == user_id)
        usage["server_groups"] = int((await conn.execute(groups)).scalar_one())
        return usage

    async def lock(self, conn: AsyncConnection, project_id: str) -> None:
        """Serialise quota checks for a project on databases with concurrent writers (a transaction
        advisory lock: a project on the default quotas has no quota row to lock)."""
        await xact_lock(conn, f"compute-quota:{project_id}")

    async def check_instance_delta(
        self, conn: AsyncConnection, project_id: str, user_id: str | None, wanted: dict[str, int]
    ) -> None:
        """Raise OverQuota in Nova's words unless `wanted` more instances/cores/ram fit the project's
        quota and, when the user has their own limits, the user's. Call under the project's lock."""
        exc = over_quota(await self.limits(conn, project_id), await self.instance_usage(conn, project_id), wanted)
        if exc is None:
            user_limits = await self.user_instance_limits(conn, project_id, user_id)
            if user_limits is not None:
                exc = over_quota(user_limits, await self.instance_usage(conn, project_id, user_id), wanted)
        if exc is not None:
            raise exc

    async def check_instances(
        self, conn: AsyncConnection, project_id: str, count: int, vcpus: int, ram: int, user_id: str | None = None
    ) -> None:
        """Raise OverQuota in Nova's words unless `count` instances of this size fit."""
        await self.lock(conn, project_id)
        await self.check_instance_delta(conn, project_id, user_id, {"instances": count, "cores": vcpus * count, "ram": ram * count})

    async def check_key_pairs(self, conn: AsyncConnection, project_id: str, user_id: str) -> None:
        limits = await self.limits(conn, project_id, user_id)
        used = await self.usage(conn, project_id, user_id)
        if 0 <= limits["key_pairs"] <= used["key_pairs"]:
            raise OverQuota("Quota exceeded, too many key pairs.")

    async def set_limits(
        self, conn: AsyncConnection, project_id: str, updates: dict[str, Any], user_id: str | None = None
    ) -> None:
        """Store limits for the project, or for one user in it (Nova's per-project-only resources
        always go to the project)."""
        known = set(self.defaults())
        for resource, value in updates.items():
            if resource not in known:
                raise Invalid(f"Bad key(s) {resource} in quota_set")
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise Invalid(f"Quota limit {value!r} for {resource} must be an integer of -1 or more")
            if user_id and resource not in PER_PROJECT:
                t = project_user_quotas
                where = (t.c.project_id == project_id, t.c.user_id == user_id, t.c.resource == resource)
                res = await conn.execute(sa.update(t).where(*where).values(hard_limit=value))
                if res.rowcount == 0:
                    await conn.execute(
                        sa.insert(t).values(project_id=project_id, user_id=user_id, resource=resource, hard_limit=value)
                    )
                continue
            stmt = sa.update(quotas).where(quotas.c.project_id == project_id, quotas.c.resource == resource)
            res = await conn.execute(stmt.values(hard_limit=value))
            if res.rowcount == 0:
                await conn.execute(sa.insert(quotas).values(project_id=project_id, resource=resource, hard_limit=value))

    async def delete_limits(self, conn: AsyncConnection, project_id: str, user_id: str | None = None) -> None:
        """Back to defaults: a user's limits revert to the project's; a project's delete also drops
        every per-user limit in it, as Nova's does."""
        t = project_user_quotas
        if user_id:
            await conn.execute(sa.delete(t).where(t.c.project_id == project_id, t.c.user_id == user_id))
            return
        await conn.execute(sa.delete(quotas).where(quotas.c.project_id == project_id))
        await conn.execute(sa.delete(t).where(t.c.project_id == project_id))

    async def settable(self, conn: AsyncConnection, project_id: str, user_id: str | None) -> dict[str, tuple[int, int]]:
        """Nova's settable range (minimum, maximum; -1 is unbounded) per resource for an unforced update.

        A project's limit may not go below what it uses nor below the sum of its users' limits. A
        user's may not go below what the user uses, nor above the project's limit less the other
        users' limits in it. Unlimited (-1) user limits add nothing to the sums.
        """
        t = project_user_quotas
        rows = (await conn.execute(sa.select(t.c.user_id, t.c.resource, t.c.hard_limit).where(t.c.project_id == project_id))).all()
        project = await self.limits(conn, project_id)
        used = await self.usage(conn, project_id, user_id)
        if not user_id:
            used["key_pairs"] = 0  # keypairs are per user: nothing binds a project's limit to them
        out: dict[str, tuple[int, int]] = {}
        for resource, limit in project.items():
            others = sum(int(h) for u, r, h in rows if r == resource and int(h) > 0 and u != user_id)
            if not user_id:
                out[resource] = (max(others, used.get(resource, 0)), -1)
            elif limit < 0 or resource in PER_PROJECT:
                out[resource] = (used.get(resource, 0), -1 if limit < 0 else limit)
            else:
                out[resource] = (used.get(resource, 0), max(0, limit - others))
        return out


def _check_settable(resource: str, limit: int, minimum: int, maximum: int) -> None:
    def inf(n: int) -> float:
        return float("inf") if n == -1 else n

    if inf(limit) < inf(minimum):
        raise Invalid(
            f"Quota limit {limit} for {resource} must be greater than or equal to already used and reserved {minimum}."
        )
    if inf(limit) > inf(maximum):
        raise Invalid(f"Quota limit {limit} for {resource} must be less than or equal to {maximum}.")


class QuotaService:
    """What the limits, os-quota-sets and os-quota-class-sets APIs ask for, one transaction per call."""

    def __init__(self, db: Database, conf: Settings) -> None:
        self.db = db
        self.engine = QuotaEngine(conf)

    async def _usage(self, conn: AsyncConnection, project_id: str, user_id: str | None) -> dict[str, int]:
        used = await self.engine.usage(conn, project_id, user_id)
        # Keypairs are per user: the project-level view always shows 0 in use, as Nova documents.
        if user_id is None:
            used["key_pairs"] = 0
        return used

    async def limits(self, project_id: str, user_id: str | None = None) -> dict[str, int]:
        async with self.db.read() as conn:
            return await self.engine.limits(conn, project_id, user_id)

    async def limits_and_usage(self, project_id: str, user_id: str | None = None) -> tuple[dict[str, int], dict[str, int]]:
        """(limits, usage) read together; at project level keypairs show 0 in use."""
        async with self.db.read() as conn:
            return await self.engine.limits(conn, project_id, user_id), await self._usage(conn, project_id, user_id)

    async def class_limits(self, quota_class: str = DEFAULT_CLASS) -> dict[str, int]:
        async with self.db.read() as conn:
            return await self.engine.class_limits(conn, quota_class)

    async def update(self, project_id: str, user_id: str | None, requested: dict[str, Any], *, force: bool) -> dict[str, int]:
        """Set limits (values are ints or int strings) and return the new ones. Unless forced, each
        stays within Nova's settable range (-1 is unlimited), checked under the project's lock."""
        async with self.db.write() as conn:
            await self.engine.lock(conn, project_id)
            settable = None if force else await self.engine.settable(conn, project_id, user_id)
            updates: dict[str, int] = {}
            for key, raw in requested.items():
                value = int(raw)
                if settable is not None:
                    _check_settable(key, value, *settable[key])
                updates[key] = value
            await self.engine.set_limits(conn, project_id, updates, user_id)
            return await self.engine.limits(conn, project_id, user_id)

    async def delete(self, project_id: str, user_id: str | None = None) -> None:
        async with self.db.write() as conn:
            await self.engine.delete_limits(conn, project_id, user_id)

    async def update_class(self, quota_class: str, values: dict[str, Any]) -> dict[str, int]:
        async with self.db.write() as conn:
            await self.engine.set_limits(conn, CLASS_PREFIX + quota_class, {k: int(val) for k, val in values.items()})
            return await self.engine.class_limits(conn, quota_class)
