"""Compute quotas: per-project limits (defaults from settings, overrides in the DB) and usage.

Checks run inside the same write transaction that creates the resources, so concurrent requests
cannot both pass (SQLite serialises writers; on PostgreSQL the project's quota rows are locked).
-1 means unlimited.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import instance_groups, instances, key_pairs, quotas
from cumulo.compute.states import SOFT_DELETED
from cumulo.conf import Settings
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


def headroom(limits: dict[str, int], used: dict[str, int], vcpus: int, ram: int) -> int:
    """How many more instances of this size the limits allow (-1 limits are unlimited), as Nova computes it."""
    fits: list[int] = []
    for res, per in (("instances", 1), ("cores", vcpus), ("ram", ram)):
        if limits[res] >= 0 and per:
            fits.append(max(0, (limits[res] - used[res]) // per))
    return min(fits) if fits else 1 << 30


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

    async def limits(self, conn: AsyncConnection, project_id: str) -> dict[str, int]:
        # Like Nova: project overrides, else the "default" quota class, else the settings.
        out = await self.class_limits(conn)
        rows = await conn.execute(sa.select(quotas.c.resource, quotas.c.hard_limit).where(quotas.c.project_id == project_id))
        for resource, hard_limit in rows:
            out[resource] = hard_limit
        return out

    @staticmethod
    async def instance_usage(conn: AsyncConnection, project_id: str) -> dict[str, int]:
        """instances, cores and ram in use by the project's live servers (one query). Like Nova's
        count, a SOFT_DELETED server is not counted (its restore checks the quota again)."""
        row = (
            await conn.execute(
                sa.select(
                    sa.func.count(instances.c.id),
                    sa.func.coalesce(sa.func.sum(instances.c.vcpus), 0),
                    sa.func.coalesce(sa.func.sum(instances.c.memory_mb), 0),
                ).where(
                    instances.c.project_id == project_id, instances.c.deleted.is_(False),
                    sa.or_(instances.c.vm_state.is_(None), instances.c.vm_state != SOFT_DELETED),
                )
            )
        ).one()
        return {"instances": int(row[0]), "cores": int(row[1]), "ram": int(row[2])}

    async def usage(self, conn: AsyncConnection, project_id: str, user_id: str | None = None) -> dict[str, int]:
        usage = await self.instance_usage(conn, project_id)
        kp = sa.select(sa.func.count(key_pairs.c.id))
        kp = kp.where(key_pairs.c.user_id == user_id) if user_id else kp.where(key_pairs.c.project_id == project_id)
        usage["key_pairs"] = int((await conn.execute(kp)).scalar_one())
        groups = sa.select(sa.func.count(instance_groups.c.id)).where(instance_groups.c.project_id == project_id)
        usage["server_groups"] = int((await conn.execute(groups)).scalar_one())
        return usage

    async def lock(self, conn: AsyncConnection, project_id: str) -> None:
        """Serialise quota checks for a project on databases with concurrent writers."""
        if conn.dialect.name != "sqlite":
            await conn.execute(sa.select(quotas.c.id).where(quotas.c.project_id == project_id).with_for_update())

    async def check_instances(self, conn: AsyncConnection, project_id: str, count: int, vcpus: int, ram: int) -> None:
        """Raise OverQuota in Nova's words unless `count` instances of this size fit."""
        await self.lock(conn, project_id)
        limits = await self.limits(conn, project_id)
        used = await self.usage(conn, project_id)
        requested = {"instances": count, "cores": vcpus * count, "ram": ram * count}
        overs = [r for r in ("cores", "instances", "ram") if limits[r] >= 0 and used[r] + requested[r] > limits[r]]
        if overs:
            names = ", ".join(overs)
            req = ", ".join(str(requested[r]) for r in overs)
            usd = ", ".join(str(used[r]) for r in overs)
            allowed = ", ".join(str(limits[r]) for r in overs)
            raise OverQuota(f"Quota exceeded for {names}: Requested {req}, but already used {usd} of {allowed} {names}")

    async def check_key_pairs(self, conn: AsyncConnection, project_id: str, user_id: str) -> None:
        limits = await self.limits(conn, project_id)
        used = await self.usage(conn, project_id, user_id)
        if 0 <= limits["key_pairs"] <= used["key_pairs"]:
            raise OverQuota("Quota exceeded, too many key pairs.")

    async def set_limits(self, conn: AsyncConnection, project_id: str, updates: dict[str, Any]) -> None:
        known = set(self.defaults())
        for resource, value in updates.items():
            if resource not in known:
                raise Invalid(f"Bad key(s) {resource} in quota_set")
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise Invalid(f"Quota limit {value!r} for {resource} must be an integer of -1 or more")
            stmt = sa.update(quotas).where(quotas.c.project_id == project_id, quotas.c.resource == resource)
            res = await conn.execute(stmt.values(hard_limit=value))
            if res.rowcount == 0:
                await conn.execute(sa.insert(quotas).values(project_id=project_id, resource=resource, hard_limit=value))

    async def delete_limits(self, conn: AsyncConnection, project_id: str) -> None:
        await conn.execute(sa.delete(quotas).where(quotas.c.project_id == project_id))
