"""Server groups (Nova's instance groups): storage, quotas, membership and the placement rules.

A group has one policy: affinity, anti-affinity, soft-affinity or soft-anti-affinity, and for
anti-affinity the rule `max_server_per_host`. Servers join a group when they are created with the
`group` scheduler hint (every server of a multi-create joins). Members are the group's rows whose
server is not deleted: deleting a server ends its membership (its row goes too, lazily), deleting a
group leaves its servers alone.

Affinity is per compute HOST (the nova-compute service's host), never per node: the runc and QEMU
nodes of the local host are one host for (anti-)affinity, as Nova's filters compare `host`.

Races: the scheduler's view of a group may be stale when two builds of one group run at once. The
conductor therefore re-checks the policy in the same write transaction that records the chosen
host (`check_late`, Nova's late affinity check), with the group row locked on databases with
concurrent writers, so two anti-affinity members can never both be placed on one host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.compute.models import instance_group_member, instance_groups, instances
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.scheduler.groups import (
    HARD_POLICIES,
    violation,
)

GROUP_QUOTA_MESSAGE = "Quota exceeded, too many server groups."
MEMBER_QUOTA_MESSAGE = "Quota exceeded, too many servers in group"


class GroupPolicyViolated(errors.Conflict):
    """A build's chosen host breaks its group's hard policy (found by the late check)."""

    def __init__(self, message: str, host: str, policy: str) -> None:
        super().__init__(message)
        self.host = host
        self.policy = policy


def not_found(uuid: str) -> errors.NotFound:
    return errors.NotFound(f"Instance group {uuid} could not be found.")


def _live_member(uuid_col: Any) -> Any:
    """EXISTS: the member's server is not deleted."""
    return (
        sa.select(instances.c.id)
        .where(instances.c.uuid == uuid_col, instances.c.deleted.is_(False))
        .exists()
    )


def _row(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = dict(row)
    out["rules"] = dict(out.get("rules") or {})
    out["members"] = []
    return out


# --- the group resource ---------------------------------------------------------------------------

async def count_groups(conn: AsyncConnection, project_id: str, user_id: str | None = None) -> int:
    q = sa.select(sa.func.count(instance_groups.c.id)).where(instance_groups.c.project_id == project_id)
    if user_id is not None:
        q = q.where(instance_groups.c.user_id == user_id)
    return int((await conn.execute(q)).scalar_one())


async def get_group(conn: AsyncConnection, ctx: RequestContext, uuid: str) -> dict[str, Any]:
    """The group with its live members; another project's group is not found (admins see all)."""
    row = (await conn.execute(sa.select(instance_groups).where(instance_groups.c.uuid == uuid))).mappings().first()
    if row is None or (not ctx.is_admin and row["project_id"] != ctx.project_id):
        raise not_found(uuid)
    group = _row(row)
    group["members"] = (await members_by_group(conn, [group["id"]])).get(group["id"], [])
    return group


async def list_groups(
    conn: AsyncConnection, project_id: str | None, *, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """Groups of a project (every project when None), oldest first, each with its live members."""
    q = sa.select(instance_groups).order_by(instance_groups.c.id)
    if project_id is not None:
        q = q.where(instance_groups.c.project_id == project_id)
    if offset:
        q = q.offset(offset)
    if limit is not None:
        q = q.limit(limit)
    groups = [_row(r) for r in (await conn.execute(q)).mappings()]
    members = await members_by_group(conn, [g["id"] for g in groups])
    for g in groups:
        g["members"] = members.get(g["id"], [])
    return groups


async def members_by_group(conn: AsyncConnection, group_ids: Iterable[int]) -> dict[int, list[str]]:
    """Live members (servers not deleted) per group id, in the order they joined."""
    ids = list(group_ids)
    if not ids:
        return {}
    m = instance_group_member
    rows = await conn.execute(
        sa.select(m.c.group_id, m.c.instance_uuid)
        .where(m.c.group_id.in_(ids), _live_member(m.c.instance_uuid))
        .order_by(m.c.id)
    )
    out: dict[int, list[str]] = {}
    for gid, inst in rows:
        out.setdefault(int(gid), []).append(str(inst))
    return out


async def groups_of_server(conn: AsyncConnection, instance_uuid: str) -> list[str]:
    """The uuids of the groups a server belongs to (`server_groups` in a server, 2.71)."""
    m, g = instance_group_member, instance_groups
    rows = await conn.execute(
        sa.select(g.c.uuid).select_from(m.join(g, g.c.id == m.c.group_id))
        .where(m.c.instance_uuid == instance_uuid).order_by(m.c.id)
    )
    return [str(r[0]) for r in rows]


async def count_members_by_user(conn: AsyncConnection, group_id: int, user_id: str) -> int:
    """Nova's count for the server_group_members quota: the user's live servers in the group."""
    m = instance_group_member
    q = (
        sa.select(sa.func.count(m.c.id))
        .select_from(m.join(instances, instances.c.uuid == m.c.instance_uuid))
        .where(m.c.group_id == group_id, instances.c.deleted.is_(False), instances.c.user_id == user_id)
    )
    return int((await conn.execute(q)).scalar_one())


# --- membership at server create ----------------------------------------------------------------

def group_hint(hints: Mapping[str, Any]) -> str | None:
    """The group named by the `group` scheduler hint (a uuid, or a list holding one)."""
    raw = hints.get("group") if isinstance(hints, Mapping) else None
    if raw is None or raw == []:
        return None
    if isinstance(raw, list):
        if len(raw) != 1:
            raise errors.Invalid("Only one server group may be given in the group scheduler hint.")
        raw = raw[0]
    return str(raw)


def in_group(request_spec: Mapping[str, Any] | None) -> bool:
    """Whether a server was created into a group (only the hint makes members), so the
    conductor can skip the group queries for every other build."""
    hints = (request_spec or {}).get("scheduler_hints") or {}
    return isinstance(hints, Mapping) and bool(hints.get("group"))


async def group_for_create(conn: AsyncConnection, ctx: RequestContext, hints: Mapping[str, Any]) -> dict[str, Any] | None:
    """The group a create joins, or None. An unknown (or another project's) group is a 400, as in Nova."""
    uuid = group_hint(hints)
    if uuid is None:
        return None
    try:
        return await get_group(conn, ctx, uuid)
    except errors.NotFound as exc:
        raise errors.Invalid(exc.message) from None


async def add_members(
    conn: AsyncConnection, group: Mapping[str, Any], instance_uuids: list[str], user_id: str, limit: int
) -> None:
    """Join servers to a group inside the create's write transaction, within server_group_members."""
    exists = sa.select(instance_groups.c.id).where(instance_groups.c.id == group["id"])
    if (await conn.execute(exists)).first() is None:
        raise errors.Invalid(not_found(group["uuid"]).message)  # deleted while the create ran
    if 0 <= limit < await count_members_by_user(conn, group["id"], user_id) + len(instance_uuids):
        raise errors.OverQuota(MEMBER_QUOTA_MESSAGE)
    await forget_deleted_members(conn, group["id"])
    now = utcnow()
    await conn.execute(
        sa.insert(instance_group_member),
        [{"group_id": group["id"], "instance_uuid": u, "created_at": now} for u in instance_uuids],
    )


async def forget_deleted_members(conn: AsyncConnection, group_id: int | None = None) -> int:
    """Drop membership rows of deleted (or vanished) servers, of one group or of all; reads
    already ignore them, so this only keeps the table small."""
    m = instance_group_member
    stmt = sa.delete(m).where(~_live_member(m.c.instance_uuid))
    if group_id is not None:
        stmt = stmt.where(m.c.group_id == group_id)
    res = await conn.execute(stmt)
    return int(res.rowcount or 0)


# --- what the scheduler and the conductor need -------------------------------------------------

async def _group_of_instance(conn: AsyncConnection, instance_uuid: str, *, lock: bool = False) -> dict[str, Any] | None:
    m, g = instance_group_member, instance_groups
    q = (
        sa.select(g).select_from(g.join(m, m.c.group_id == g.c.id))
        .where(m.c.instance_uuid == instance_uuid).order_by(m.c.id).limit(1)
    )
    if lock and conn.dialect.name != "sqlite":
        q = q.with_for_update(of=g)
    row = (await conn.execute(q)).mappings().first()
    return None if row is None else _row(row)


async def _member_hosts(conn: AsyncConnection, group_id: int, exclude: str) -> list[str]:
    """The host of every placed live member but `exclude` (a host appears once per member)."""
    m = instance_group_member
    rows = await conn.execute(
        sa.select(instances.c.host)
        .select_from(m.join(instances, instances.c.uuid == m.c.instance_uuid))
        .where(
            m.c.group_id == group_id, m.c.instance_uuid != exclude,
            instances.c.deleted.is_(False), instances.c.host.is_not(None),
        )
    )
    return [str(r[0]) for r in rows]


async def scheduler_group(db: Database, instance_uuid: str) -> dict[str, Any] | None:
    """The request spec's instance_group: uuid, policy, rules and the hosts of the other members."""
    async with db.read() as conn:
        group = await _group_of_instance(conn, instance_uuid)
        if group is None:
            return None
        hosts = await _member_hosts(conn, group["id"], instance_uuid)
    return {"uuid": group["uuid"], "policy": group["policy"], "rules": group["rules"], "hosts": hosts}


async def check_late(conn: AsyncConnection, instance_uuid: str, host: str) -> None:
    """Inside the transaction that places the server: raise GroupPolicyViolated if `host` breaks
    its group's hard policy given the members placed so far (the group row is locked first)."""
    group = await _group_of_instance(conn, instance_uuid, lock=True)
    if group is None or group["policy"] not in HARD_POLICIES:
        return
    reason = violation(group["policy"], group["rules"], await _member_hosts(conn, group["id"], instance_uuid), host)
    if reason:
        raise GroupPolicyViolated(reason, host, group["policy"])
