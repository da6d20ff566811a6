"""Security groups and their rules (Neutron's securitygroups_db), scoped to the caller's project.

Each project gets Neutron's "default" group on first use (listing or creating groups, or through
`ensure_default` when a port or network is made): egress to anywhere for IPv4 and IPv6, and
ingress from members of the same group for both. Every other new group starts with the two egress
rules. A rule is validated by `sg_rules.normalize_rule`; a rule equal to one the group has is 409
SecurityGroupRuleExists. The default group cannot be renamed, nor deleted by a non-admin; a group a
port uses is 409 SecurityGroupInUse. Another project's group is 404, as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import policy
from cumulo.context import RequestContext
from cumulo.db import isotime, new_uuid, utcnow
from cumulo.network import attrs, faults, l3_ports, sg_rules
from cumulo.network.base import NetworkBase, authorize, check_tags, notifies
from cumulo.network.models import (
    default_security_groups,
    port_security_groups,
    security_group_rules,
    security_groups,
)

DEFAULT_NAME = "default"
DEFAULT_DESCRIPTION = "Default security group"
TAG_TYPE = "security-groups"  # the tags URL collection (network.base.TAGGABLE)
GROUP_ATTRIBUTES = {"name", "description", "stateful", "tenant_id", "project_id", "tags"}


def rule_view(row: Any, default_group_id: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "security_group_id": row.security_group_id,
        "ethertype": row.ethertype,
        "direction": row.direction,
        "protocol": row.protocol,
        "port_range_min": row.port_range_min,
        "port_range_max": row.port_range_max,
        "remote_ip_prefix": row.remote_ip_prefix,
        "normalized_cidr": sg_rules.normalized_cidr(row.remote_ip_prefix),
        "remote_group_id": row.remote_group_id,
        "belongs_to_default_sg": row.security_group_id == default_group_id if default_group_id else False,
        "description": row.description,
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
        "revision_number": row.revision_number,
    }


def group_view(row: Any, rules: Sequence[dict[str, Any]], tags: Sequence[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "stateful": row.stateful,
        "shared": False,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "security_group_rules": list(rules),
        "tags": sorted(tags),
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
        "revision_number": row.revision_number,
    }


POLICY_RULES = {
    "security_group:get": policy.READER,
    "security_group:create": policy.MEMBER,
    "security_group:update": policy.MEMBER,
    "security_group:delete": policy.MEMBER,
    "security_group_rule:get": policy.READER,
    "security_group_rule:create": policy.MEMBER,
    "security_group_rule:update": policy.MEMBER,
    "security_group_rule:delete": policy.MEMBER,
}
policy.register(POLICY_RULES)


class SecurityGroups(NetworkBase):
    """The security group facet of the network service."""

    # ---- the default group ------------------------------------------------------------------

    async def ensure_default(self, ctx: RequestContext, project_id: str | None = None) -> str | None:
        """The project's default group id, created on first use. A non-admin cannot create one for
        another project (None then), as Neutron refuses since bug 1987410."""
        project = project_id or ctx.project_id
        if not project or (project != ctx.project_id and not ctx.is_admin):
            return None
        async with self.db.read() as conn:
            found = await _default_id(conn, project)
        if found:
            return found
        try:
            async with self.db.write() as conn:
                found = await _default_id(conn, project)
                if found:
                    return found
                return await self._create_default(conn, project)
        except IntegrityError:  # a concurrent first request made it
            async with self.db.read() as conn:
                return await _default_id(conn, project)

    async def _create_default(self, conn: AsyncConnection, project: str) -> str:
        gid = new_uuid()
        now = utcnow()
        await conn.execute(sa.insert(security_groups).values(
            id=gid, project_id=project, name=DEFAULT_NAME, description=DEFAULT_DESCRIPTION, stateful=True,
            created_at=now, updated_at=now, revision_number=0,
        ))
        await conn.execute(sa.insert(default_security_groups).values(project_id=project, security_group_id=gid))
        for ethertype in sg_rules.ETHERTYPES:
            await _insert_rule(conn, project, gid, "ingress", ethertype, remote_group_id=gid, now=now)
            await _insert_rule(conn, project, gid, "egress", ethertype, now=now)
        return gid

    # ---- groups -----------------------------------------------------------------------------

    async def list_groups(self, ctx: RequestContext, project_id: str | None = None) -> list[dict[str, Any]]:
        """The groups the caller sees (an admin: every project's; `project_id` narrows)."""
        authorize(ctx, "security_group:get")
        await self.ensure_default(ctx, project_id)
        async with self.db.read() as conn:
            query = sa.select(security_groups).order_by(security_groups.c.created_at, security_groups.c.id)
            if not ctx.is_admin:
                query = query.where(security_groups.c.project_id == ctx.project_id)
            elif project_id:
                query = query.where(security_groups.c.project_id == project_id)
            rows = list(await conn.execute(query))
            return await self._render_groups(conn, rows)

    async def get_group(self, ctx: RequestContext, group_id: str) -> dict[str, Any]:
        authorize(ctx, "security_group:get")
        async with self.db.read() as conn:
            row = await self._visible_group(conn, ctx, group_id)
            return (await self._render_groups(conn, [row]))[0]

    async def create_group(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "security_group:create")
        attrs.check_attrs(body, GROUP_ATTRIBUTES)
        project = l3_ports.owner_project(ctx, body)
        name = attrs.string(body, "name", "") or ""
        if name.lower() == DEFAULT_NAME:
            raise faults.SecurityGroupDefaultAlreadyExists()
        description = attrs.string(body, "description", "", attrs.DESCRIPTION_MAX) or ""
        stateful = bool(attrs.boolean(body, "stateful", True))
        tags = check_tags(body["tags"]) if "tags" in body else []
        await self.ensure_default(ctx, project)
        gid = new_uuid()
        async with self.db.write() as conn:
            await self.check_quota(conn, project, "security_group", 1)
            await self.check_quota(conn, project, "security_group_rule", len(sg_rules.ETHERTYPES))
            now = utcnow()
            await conn.execute(sa.insert(security_groups).values(
                id=gid, project_id=project, name=name, description=description, stateful=stateful,
                created_at=now, updated_at=now, revision_number=0,
            ))
            for ethertype in sg_rules.ETHERTYPES:
                await _insert_rule(conn, project, gid, "egress", ethertype, now=now)
            if tags:
                await self.write_tags(conn, TAG_TYPE, gid, tags)
            row = (await conn.execute(sa.select(security_groups).where(security_groups.c.id == gid))).one()
            return (await self._render_groups(conn, [row]))[0]

    async def update_group(self, ctx: RequestContext, group_id: str, body: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "security_group:update")
        attrs.check_attrs(body, {"name", "description", "stateful"}, read_only={"id", "tenant_id", "project_id"})
        async with self.db.write() as conn:
            row = await self._visible_group(conn, ctx, group_id)
            values: dict[str, Any] = {}
            if "name" in body:
                if row.name == DEFAULT_NAME:
                    raise faults.SecurityGroupCannotUpdateDefault()
                name = attrs.string(body, "name", "") or ""
                if name.lower() == DEFAULT_NAME:
                    raise faults.SecurityGroupDefaultAlreadyExists()
                values["name"] = name
            if "description" in body:
                values["description"] = attrs.string(body, "description", "", attrs.DESCRIPTION_MAX) or ""
            if "stateful" in body:
                stateful = bool(attrs.boolean(body, "stateful"))
                if stateful != row.stateful and await _group_ports(conn, group_id):
                    raise faults.SecurityGroupInUse(id=group_id, reason="in use, its statefulness cannot change")
                values["stateful"] = stateful
            if values:
                await conn.execute(sa.update(security_groups).where(security_groups.c.id == group_id).values(
                    **values, updated_at=utcnow(), revision_number=row.revision_number + 1))
            fresh = (await conn.execute(sa.select(security_groups).where(security_groups.c.id == group_id))).one()
            return (await self._render_groups(conn, [fresh]))[0]

    async def delete_group(self, ctx: RequestContext, group_id: str) -> None:
        authorize(ctx, "security_group:delete")
        async with self.db.write() as conn:
            row = await self._visible_group(conn, ctx, group_id)
            if await _group_ports(conn, group_id):
                raise faults.SecurityGroupInUse(id=group_id)
            if row.name == DEFAULT_NAME and not ctx.is_admin:
                raise faults.SecurityGroupCannotRemoveDefault()
            # Rules of other groups that name this one as remote go with it (Neutron's cascade).
            await conn.execute(sa.delete(security_group_rules).where(sa.or_(
                security_group_rules.c.security_group_id == group_id,
                security_group_rules.c.remote_group_id == group_id,
            )))
            await conn.execute(sa.delete(default_security_groups).where(
                default_security_groups.c.security_group_id == group_id))
            await self.drop_tags(conn, TAG_TYPE, group_id)
            await conn.execute(sa.delete(security_groups).where(security_groups.c.id == group_id))

    # ---- rules ------------------------------------------------------------------------------

    async def list_rules(self, ctx: RequestContext, project_id: str | None = None) -> list[dict[str, Any]]:
        authorize(ctx, "security_group_rule:get")
        await self.ensure_default(ctx, project_id)
        async with self.db.read() as conn:
            query = sa.select(security_group_rules).order_by(security_group_rules.c.created_at, security_group_rules.c.id)
            if not ctx.is_admin:
                query = query.where(security_group_rules.c.project_id == ctx.project_id)
            elif project_id:
                query = query.where(security_group_rules.c.project_id == project_id)
            rows = list(await conn.execute(query))
            defaults = await _default_ids(conn, {r.project_id for r in rows})
            return [rule_view(r, defaults.get(r.project_id)) for r in rows]

    async def get_rule(self, ctx: RequestContext, rule_id: str) -> dict[str, Any]:
        authorize(ctx, "security_group_rule:get")
        async with self.db.read() as conn:
            row = await self._visible_rule(conn, ctx, rule_id)
            return rule_view(row, await _default_id(conn, row.project_id))

    @notifies
    async def create_rule(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "security_group_rule:create")
        rule = sg_rules.normalize_rule(body)
        l3_ports.owner_project(ctx, body)  # naming another project needs admin
        async with self.db.write() as conn:
            if rule["remote_group_id"]:
                await self._visible_group(conn, ctx, rule["remote_group_id"])
            group = await self._visible_group(conn, ctx, rule["security_group_id"])
            project = group.project_id
            await self.check_quota(conn, project, "security_group_rule", 1)
            existing = await conn.execute(sa.select(security_group_rules).where(
                security_group_rules.c.security_group_id == group.id))
            key = sg_rules.rule_key(rule)
            for other in existing:
                if sg_rules.rule_key(other._asdict()) == key:
                    raise faults.SecurityGroupRuleExists(rule_id=other.id)
            now = utcnow()
            rid = await _insert_rule(
                conn, project, group.id, rule["direction"], rule["ethertype"], protocol=rule["protocol"],
                port_range_min=rule["port_range_min"], port_range_max=rule["port_range_max"],
                remote_ip_prefix=rule["remote_ip_prefix"], remote_group_id=rule["remote_group_id"],
                description=rule["description"], now=now,
            )
            await _touch_group(conn, group.id, group.revision_number, now)
            row = (await conn.execute(sa.select(security_group_rules).where(security_group_rules.c.id == rid))).one()
            return rule_view(row, await _default_id(conn, project))

    async def update_rule(self, ctx: RequestContext, rule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Only a rule's description changes (Neutron's standard-attr-description)."""
        authorize(ctx, "security_group_rule:update")
        attrs.check_attrs(body, {"description"}, read_only=sg_rules.RULE_ATTRIBUTES - {"description"})
        async with self.db.write() as conn:
            row = await self._visible_rule(conn, ctx, rule_id)
            if "description" in body:
                description = attrs.string(body, "description", "", attrs.DESCRIPTION_MAX) or ""
                await self.bump(conn, security_group_rules, rule_id, description=description)
            fresh = (await conn.execute(sa.select(security_group_rules).where(security_group_rules.c.id == rule_id))).one()
            return rule_view(fresh, await _default_id(conn, row.project_id))

    @notifies
    async def delete_rule(self, ctx: RequestContext, rule_id: str) -> None:
        authorize(ctx, "security_group_rule:delete")
        async with self.db.write() as conn:
            row = await self._visible_rule(conn, ctx, rule_id)
            await conn.execute(sa.delete(security_group_rules).where(security_group_rules.c.id == rule_id))
            group = (await conn.execute(sa.select(security_groups).where(
                security_groups.c.id == row.security_group_id))).one()
            await _touch_group(conn, group.id, group.revision_number, utcnow())

    # ---- for ports (NETAPI) -----------------------------------------------------------------

    async def check_usable(self, conn: AsyncConnection, project_id: str, group_ids: Sequence[str]) -> None:
        """Every group a port of `project_id` is given must be that project's, else 404."""
        if not group_ids:
            return
        rows = await conn.execute(sa.select(security_groups.c.id).where(
            security_groups.c.id.in_(list(group_ids)), security_groups.c.project_id == project_id))
        found = {r.id for r in rows}
        for gid in group_ids:
            if gid not in found:
                raise faults.SecurityGroupNotFound(id=gid)

    # ---- helpers ----------------------------------------------------------------------------

    async def _visible_group(self, conn: AsyncConnection, ctx: RequestContext, group_id: Any) -> Any:
        query = sa.select(security_groups).where(security_groups.c.id == str(group_id))
        if not ctx.is_admin:
            query = query.where(security_groups.c.project_id == ctx.project_id)
        row = (await conn.execute(query)).first()
        if row is None:
            raise faults.SecurityGroupNotFound(id=group_id)
        return row

    async def _visible_rule(self, conn: AsyncConnection, ctx: RequestContext, rule_id: str) -> Any:
        query = sa.select(security_group_rules).where(security_group_rules.c.id == rule_id)
        if not ctx.is_admin:
            query = query.where(security_group_rules.c.project_id == ctx.project_id)
        row = (await conn.execute(query)).first()
        if row is None:
            raise faults.SecurityGroupRuleNotFound(id=rule_id)
        return row

    async def _render_groups(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        rules: dict[str, list[Any]] = {i: [] for i in ids}
        for rule in await conn.execute(
            sa.select(security_group_rules).where(security_group_rules.c.security_group_id.in_(ids))
            .order_by(security_group_rules.c.created_at, security_group_rules.c.id)
        ):
            rules[rule.security_group_id].append(rule)
        tags = await self.tags_of(conn, TAG_TYPE, ids)
        defaults = await _default_ids(conn, {r.project_id for r in rows})
        return [
            group_view(r, [rule_view(x, defaults.get(r.project_id)) for x in rules[r.id]], tags[r.id])
            for r in rows
        ]


async def _default_id(conn: AsyncConnection, project: str) -> str | None:
    row = (await conn.execute(sa.select(default_security_groups.c.security_group_id).where(
        default_security_groups.c.project_id == project))).first()
    return None if row is None else str(row.security_group_id)


async def _default_ids(conn: AsyncConnection, projects: set[str]) -> dict[str, str]:
    if not projects:
        return {}
    rows = await conn.execute(sa.select(default_security_groups).where(
        default_security_groups.c.project_id.in_(sorted(projects))))
    return {r.project_id: r.security_group_id for r in rows}


async def _group_ports(conn: AsyncConnection, group_id: str) -> list[str]:
    rows = await conn.execute(sa.select(port_security_groups.c.port_id).where(
        port_security_groups.c.security_group_id == group_id))
    return [r.port_id for r in rows]


async def _touch_group(conn: AsyncConnection, group_id: str, revision: int, now: Any) -> None:
    await conn.execute(sa.update(security_groups).where(security_groups.c.id == group_id).values(
        updated_at=now, revision_number=revision + 1))


async def _insert_rule(
    conn: AsyncConnection, project: str, group_id: str, direction: str, ethertype: str, *, now: Any,
    protocol: str | None = None, port_range_min: int | None = None, port_range_max: int | None = None,
    remote_ip_prefix: str | None = None, remote_group_id: str | None = None, description: str = "",
) -> str:
    rid = new_uuid()
    await conn.execute(sa.insert(security_group_rules).values(
        id=rid, project_id=project, security_group_id=group_id, direction=direction, ethertype=ethertype,
        protocol=protocol, port_range_min=port_range_min, port_range_max=port_range_max,
        remote_ip_prefix=remote_ip_prefix, remote_group_id=remote_group_id, description=description,
        created_at=now, updated_at=now, revision_number=0,
    ))
    return rid
