"""Network quotas (Neutron's quotas API, with details) and tags on any network resource.

Quotas: a project reads its own, the admin reads and sets anyone's; a limit is an integer >= -1
(-1: unlimited); absent overrides take Neutron's defaults (base.DEFAULT_QUOTAS). Tags: at most 60
characters, no ',' or '/'; reading needs to see the resource, writing to own it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.context import RequestContext
from cumulo.network import attrs, faults
from cumulo.network.base import DEFAULT_QUOTAS, TAGGABLE, authorize, check_tag, check_tags, owns
from cumulo.network.models import network_quotas
from cumulo.network.ports_sys import PortsForServers

# The collection names the tag API takes, normalised to the resource_type stored with the tag.
TAG_TYPES = {"security_groups": "security-groups"}
# The fault for a taggable L3 resource the caller cannot see (networks, subnets, ports: their own lookups).
NOT_FOUND: dict[str, Callable[[str], faults.NeutronFault]] = {
    "routers": lambda rid: faults.RouterNotFound(router_id=rid),
    "floatingips": lambda rid: faults.FloatingIPNotFound(floatingip_id=rid),
    "security-groups": lambda rid: faults.SecurityGroupNotFound(id=rid),
    "subnetpools": lambda rid: faults.SubnetPoolNotFound(subnetpool_id=rid),
}


class QuotasAndTags(PortsForServers):
    """Quotas and tags, on top of networks, subnets and ports."""

    # ---- quotas -----------------------------------------------------------------------------

    def _quota_scope(self, ctx: RequestContext, project_id: str) -> None:
        authorize(ctx, "quota:get")
        if not ctx.is_admin and project_id != ctx.project_id:
            raise faults.PolicyNotAuthorized(rule="rule:get_quota")

    async def get_quota(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        self._quota_scope(ctx, project_id)
        async with self.db.read() as conn:
            return await self.quota_limits(conn, project_id)

    async def get_quota_details(self, ctx: RequestContext, project_id: str) -> dict[str, dict[str, int]]:
        self._quota_scope(ctx, project_id)
        async with self.db.read() as conn:
            limits = await self.quota_limits(conn, project_id)
            used = await self.quota_usage(conn, project_id)
        return {r: {"limit": limits[r], "used": used.get(r, 0), "reserved": 0} for r in limits}

    async def get_default_quota(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        self._quota_scope(ctx, project_id)
        return dict(DEFAULT_QUOTAS)

    async def list_quotas(self, ctx: RequestContext) -> list[dict[str, Any]]:
        authorize(ctx, "quota:list")
        async with self.db.read() as conn:
            projects = [p for (p,) in await conn.execute(sa.select(network_quotas.c.project_id).distinct())]
            out = []
            for project_id in sorted(projects):
                limits: dict[str, Any] = await self.quota_limits(conn, project_id)
                out.append({**limits, "project_id": project_id, "tenant_id": project_id})
            return out

    async def update_quota(self, ctx: RequestContext, project_id: str, item: dict[str, Any]) -> dict[str, int]:
        authorize(ctx, "quota:update")
        unknown = sorted(set(item) - set(DEFAULT_QUOTAS))
        if unknown:
            raise faults.HTTPBadRequest(msg=f"Unrecognized attribute(s) '{', '.join(unknown)}'")
        wanted = {k: attrs.integer(item, k, lo=-1) for k in item}
        async with self.db.write() as conn:
            for resource, limit in wanted.items():
                updated = await conn.execute(
                    network_quotas.update()
                    .where(network_quotas.c.project_id == project_id, network_quotas.c.resource == resource)
                    .values(limit=limit)
                )
                if not updated.rowcount:
                    await conn.execute(network_quotas.insert().values(project_id=project_id, resource=resource, limit=limit))
            return await self.quota_limits(conn, project_id)

    async def delete_quota(self, ctx: RequestContext, project_id: str) -> None:
        authorize(ctx, "quota:update")
        async with self.db.write() as conn:
            await conn.execute(network_quotas.delete().where(network_quotas.c.project_id == project_id))

    # ---- tags -------------------------------------------------------------------------------

    async def _tag_target(self, conn: AsyncConnection, ctx: RequestContext, collection: str, resource_id: str,
                          write: bool) -> str:
        """The stored resource_type of a taggable resource the caller may see (and own, to write)."""
        kind = TAG_TYPES.get(collection, collection)
        table = TAGGABLE.get(collection)
        if table is None:
            raise faults.HTTPNotFound(msg="The resource could not be found.")
        if kind == "networks":
            row = await self.network_row(conn, ctx, resource_id)
        elif kind == "subnets":
            row = await self.subnet_row(conn, ctx, resource_id)
        elif kind == "ports":
            row = await self.port_row(conn, ctx, resource_id)
        else:
            row = (await conn.execute(sa.select(table).where(table.c.id == resource_id))).first()
            if row is None or not owns(ctx, row):
                raise NOT_FOUND[kind](resource_id)
        if write and not owns(ctx, row):
            raise faults.PolicyNotAuthorized(rule=f"rule:update_{kind}_tags")
        return kind

    async def get_tags(self, ctx: RequestContext, collection: str, resource_id: str) -> list[str]:
        authorize(ctx, "tag:get")
        async with self.db.read() as conn:
            kind = await self._tag_target(conn, ctx, collection, resource_id, write=False)
            return (await self.tags_of(conn, kind, [resource_id]))[resource_id]

    async def has_tag(self, ctx: RequestContext, collection: str, resource_id: str, tag: str) -> None:
        """Nothing when the resource has the tag; TagNotFound otherwise."""
        if tag not in await self.get_tags(ctx, collection, resource_id):
            raise faults.TagNotFound(tag=tag)

    async def _write(self, ctx: RequestContext, collection: str, resource_id: str, change: Any) -> list[str]:
        authorize(ctx, "tag:update")
        async with self.db.write() as conn:
            kind = await self._tag_target(conn, ctx, collection, resource_id, write=True)
            current = (await self.tags_of(conn, kind, [resource_id]))[resource_id]
            new = change(list(current))
            if new != current:
                await self.write_tags(conn, kind, resource_id, new)
                table = TAGGABLE[collection]
                await self.bump(conn, table, resource_id)
            return list(new)

    async def replace_tags(self, ctx: RequestContext, collection: str, resource_id: str, tags: Any) -> list[str]:
        wanted = check_tags(tags)
        return await self._write(ctx, collection, resource_id, lambda _cur: wanted)

    async def add_tag(self, ctx: RequestContext, collection: str, resource_id: str, tag: str) -> None:
        tag = check_tag(tag)
        await self._write(ctx, collection, resource_id, lambda cur: cur if tag in cur else [*cur, tag])

    async def remove_tag(self, ctx: RequestContext, collection: str, resource_id: str, tag: str) -> None:
        def drop(cur: list[str]) -> list[str]:
            if tag not in cur:
                raise faults.TagNotFound(tag=tag)
            return [t for t in cur if t != tag]

        await self._write(ctx, collection, resource_id, drop)

    async def clear_tags(self, ctx: RequestContext, collection: str, resource_id: str) -> None:
        await self._write(ctx, collection, resource_id, lambda _cur: [])

