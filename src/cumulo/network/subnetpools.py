"""Subnet pools (Neutron's `subnet_allocation` and `default-subnetpools` extensions).

A pool is an address space (`prefixes`, one IP version, collapsed) from which subnets take a CIDR:
a subnet created with `subnetpool_id` (or `use_default_subnetpool`) and a `prefixlen` (default the
pool's `default_prefixlen`) gets the lowest free prefix of that length; with a `cidr` it must lie in
the pool and overlap no other subnet of the pool, whatever its network. `min_prefixlen` /
`max_prefixlen` bound the lengths; `default_quota` caps a project's share of the pool (in /32 units
for IPv4, /64 for IPv6). Prefix updates may only grow the pool; a pool with subnets cannot be deleted
(409 SubnetPoolInUse). `shared` and `is_default` are admin-only; there is at most one default pool
per IP version. Address scopes are not offered: `address_scope_id` is always null.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import policy
from cumulo.context import RequestContext
from cumulo.db import new_uuid
from cumulo.network import attrs, faults, ipam
from cumulo.network.base import NetworkBase, authorize, check_tags, owns, stamps
from cumulo.network.models import subnetpools, subnets

TAG_TYPE = "subnetpools"
POOL_CREATE = (
    "name", "description", "prefixes", "default_prefixlen", "min_prefixlen", "max_prefixlen", "default_quota",
    "shared", "is_default", "address_scope_id", "tenant_id", "project_id", "tags",
)
POOL_UPDATE = (
    "name", "description", "prefixes", "default_prefixlen", "min_prefixlen", "max_prefixlen", "default_quota",
    "is_default", "address_scope_id",
)
POOL_READ_ONLY = ("id", "tenant_id", "project_id", "ip_version", "shared")
BITS = {4: 32, 6: 128}
MIN_PREFIXLEN = {4: 8, 6: 64}  # Neutron's defaults when min_prefixlen is not given
QUOTA_UNIT = {4: 32, 6: 64}  # default_quota counts /32s (IPv4) or /64s (IPv6)

policy.register({
    "subnetpool:get": policy.READER,
    "subnetpool:create": policy.MEMBER,
    "subnetpool:update": policy.MEMBER,
    "subnetpool:delete": policy.MEMBER,
    "subnetpool:create:shared": policy.ADMIN,
    "subnetpool:create:is_default": policy.ADMIN,
})


# ---- the address arithmetic (pure) -------------------------------------------------------------


def parse_prefixes(value: Any) -> list[ipam.IPNetwork]:
    """A non-empty list of CIDRs of one IP version, collapsed (Neutron compacts them too)."""
    if not isinstance(value, list) or not value:
        raise faults.HTTPBadRequest(msg="Invalid input for prefixes. Reason: a non-empty list of CIDRs is required.")
    nets: list[ipam.IPNetwork] = []
    for item in value:
        try:
            if not isinstance(item, str) or "/" not in item:
                raise ValueError(item)
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise faults.InvalidCIDR(input=item) from None
    if len({n.version for n in nets}) > 1:
        raise faults.PrefixVersionMismatch()
    return collapse(nets)


def collapse(nets: Iterable[ipam.IPNetwork]) -> list[ipam.IPNetwork]:
    items = list(nets)
    v4 = [n for n in items if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in items if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def covers(outer: Sequence[ipam.IPNetwork], inner: ipam.IPNetwork) -> bool:
    return any(inner.version == o.version and inner.subnet_of(o) for o in outer)  # type: ignore[arg-type]


def free_space(prefixes: Sequence[ipam.IPNetwork], used: Iterable[ipam.IPNetwork]) -> list[ipam.IPNetwork]:
    """What of `prefixes` no network of `used` covers, as the fewest CIDRs, lowest first."""
    free = list(prefixes)
    for u in used:
        left: list[ipam.IPNetwork] = []
        for f in free:
            if not f.overlaps(u):
                left.append(f)
            elif u.subnet_of(f):  # type: ignore[arg-type]
                left.extend(f.address_exclude(u))  # type: ignore[arg-type]
            # else f lies inside u: all of it is used
        free = left
    return sorted(collapse(free), key=lambda n: (int(n.network_address), n.prefixlen))


def allocate(prefixes: Sequence[ipam.IPNetwork], used: Iterable[ipam.IPNetwork], prefixlen: int) -> ipam.IPNetwork | None:
    """The lowest free prefix of length `prefixlen` in the pool, or None when none is left."""
    for block in free_space(prefixes, used):
        if block.prefixlen <= prefixlen:
            return ipaddress.ip_network(f"{block.network_address}/{prefixlen}")
    return None


def _bounds(version: int, mn: int, mx: int, dflt: int) -> None:
    if not mn <= mx:
        raise faults.IllegalSubnetPoolPrefixBounds(prefix_type="min_prefixlen", prefixlen=mn,
                                                   base_prefix_type="max_prefixlen", base_prefixlen=mx)
    if dflt < mn:
        raise faults.IllegalSubnetPoolPrefixBounds(prefix_type="default_prefixlen", prefixlen=dflt,
                                                   base_prefix_type="min_prefixlen", base_prefixlen=mn)
    if dflt > mx:
        raise faults.IllegalSubnetPoolPrefixBounds(prefix_type="default_prefixlen", prefixlen=dflt,
                                                   base_prefix_type="max_prefixlen", base_prefixlen=mx)


def _prefixlen(item: dict[str, Any], key: str, version: int, default: int) -> int:
    value = attrs.integer(item, key, default, lo=0, hi=BITS[version])
    return default if value is None else value


def _no_address_scope(item: dict[str, Any]) -> None:
    if item.get("address_scope_id") is not None:
        raise faults.HTTPBadRequest(msg="Invalid input for address_scope_id. Reason: address scopes are not supported.")


class SubnetPools(NetworkBase):
    """Subnet pools, and the pool side of creating a subnet."""

    async def render_subnetpools(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
        tags = await self.tags_of(conn, TAG_TYPE, [r.id for r in rows])
        return [
            {
                "id": r.id,
                "name": r.name,
                "description": r.description,
                "tenant_id": r.project_id,
                "project_id": r.project_id,
                "prefixes": list(r.prefixes),
                "default_prefixlen": r.default_prefixlen,
                "min_prefixlen": r.min_prefixlen,
                "max_prefixlen": r.max_prefixlen,
                "default_quota": r.default_quota,
                "ip_version": r.ip_version,
                "shared": r.shared,
                "is_default": r.is_default,
                "address_scope_id": None,
                "tags": tags[r.id],
                **stamps(r),
            }
            for r in rows
        ]

    async def _render_pool(self, conn: AsyncConnection, pool_id: str) -> dict[str, Any]:
        row = (await conn.execute(sa.select(subnetpools).where(subnetpools.c.id == pool_id))).one()
        return (await self.render_subnetpools(conn, [row]))[0]

    async def subnetpool_row(self, conn: AsyncConnection, ctx: RequestContext, pool_id: str) -> Any:
        """The pool the caller may see (its own or a shared one), or SubnetPoolNotFound."""
        row = (await conn.execute(sa.select(subnetpools).where(subnetpools.c.id == pool_id))).first()
        if row is None or not (owns(ctx, row) or row.shared):
            raise faults.SubnetPoolNotFound(subnetpool_id=pool_id)
        return row

    async def _check_default(self, conn: AsyncConnection, version: int, pool_id: str) -> None:
        other = await conn.scalar(sa.select(subnetpools.c.id).where(
            subnetpools.c.is_default, subnetpools.c.ip_version == version, subnetpools.c.id != pool_id))
        if other is not None:
            raise faults.InvalidInput(error_message="A default subnetpool for this IP family has already been set. "
                                                    "Only one default may exist per IP family")

    # ---- the API -----------------------------------------------------------------------------------

    async def create_subnetpool(self, ctx: RequestContext, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "subnetpool:create")
        attrs.check_attrs(item, POOL_CREATE)
        if "prefixes" not in item:
            raise faults.HTTPBadRequest(msg="Failed to parse request. Required attribute 'prefixes' not specified")
        if "shared" in item:
            authorize(ctx, "subnetpool:create:shared")
        if "is_default" in item:
            authorize(ctx, "subnetpool:create:is_default")
        _no_address_scope(item)
        prefixes = parse_prefixes(item["prefixes"])
        version = prefixes[0].version
        mn = _prefixlen(item, "min_prefixlen", version, MIN_PREFIXLEN[version])
        mx = _prefixlen(item, "max_prefixlen", version, BITS[version])
        dflt = _prefixlen(item, "default_prefixlen", version, mn)
        _bounds(version, mn, mx, dflt)
        quota = item.get("default_quota")
        if quota is not None:
            quota = attrs.integer(item, "default_quota", lo=0, hi=2**31 - 1)
        project_id = attrs.project_of(ctx.project_id, ctx.is_admin, item)
        tags = check_tags(item["tags"]) if "tags" in item else []
        pool_id = new_uuid()
        is_default = attrs.boolean(item, "is_default", False)
        async with self.db.write() as conn:
            if is_default:
                await self._check_default(conn, version, pool_id)
            await conn.execute(subnetpools.insert().values(
                id=pool_id, project_id=project_id, name=attrs.string(item, "name", ""),
                description=attrs.string(item, "description", "", attrs.DESCRIPTION_MAX),
                ip_version=version, prefixes=[str(p) for p in prefixes], default_prefixlen=dflt,
                min_prefixlen=mn, max_prefixlen=mx, default_quota=quota,
                shared=attrs.boolean(item, "shared", False), is_default=is_default,
            ))
            if tags:
                await self.write_tags(conn, TAG_TYPE, pool_id, tags)
            return await self._render_pool(conn, pool_id)

    async def list_subnetpools(self, ctx: RequestContext) -> list[dict[str, Any]]:
        authorize(ctx, "subnetpool:get")
        async with self.db.read() as conn:
            query = sa.select(subnetpools).order_by(subnetpools.c.created_at, subnetpools.c.id)
            if not ctx.is_admin:
                query = query.where(sa.or_(subnetpools.c.project_id == ctx.project_id, subnetpools.c.shared))
            return await self.render_subnetpools(conn, list(await conn.execute(query)))

    async def get_subnetpool(self, ctx: RequestContext, pool_id: str) -> dict[str, Any]:
        authorize(ctx, "subnetpool:get")
        async with self.db.read() as conn:
            return (await self.render_subnetpools(conn, [await self.subnetpool_row(conn, ctx, pool_id)]))[0]

    async def update_subnetpool(self, ctx: RequestContext, pool_id: str, item: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "subnetpool:update")
        attrs.check_attrs(item, POOL_UPDATE, read_only=POOL_READ_ONLY)
        _no_address_scope(item)
        async with self.db.write() as conn:
            row = await self.subnetpool_row(conn, ctx, pool_id)
            if not owns(ctx, row):
                raise faults.PolicyNotAuthorized(rule="rule:update_subnetpool")
            if "is_default" in item:
                authorize(ctx, "subnetpool:create:is_default")
            version = row.ip_version
            values: dict[str, Any] = {}
            for key in ("name", "description"):
                if key in item:
                    values[key] = attrs.string(item, key, "", attrs.DESCRIPTION_MAX)
            if "prefixes" in item:
                new = parse_prefixes(item["prefixes"])
                if new[0].version != version:
                    raise faults.PrefixVersionMismatch()
                old = [ipaddress.ip_network(p) for p in row.prefixes]
                if not all(covers(new, p) for p in old):
                    raise faults.IllegalSubnetPoolPrefixUpdate(msg="Existing prefixes must be a subset of the new prefixes")
                values["prefixes"] = [str(p) for p in new]
            mn = _prefixlen(item, "min_prefixlen", version, row.min_prefixlen)
            mx = _prefixlen(item, "max_prefixlen", version, row.max_prefixlen)
            dflt = _prefixlen(item, "default_prefixlen", version, row.default_prefixlen)
            _bounds(version, mn, mx, dflt)
            values.update(min_prefixlen=mn, max_prefixlen=mx, default_prefixlen=dflt)
            if "default_quota" in item:
                values["default_quota"] = (None if item["default_quota"] is None
                                           else attrs.integer(item, "default_quota", lo=0, hi=2**31 - 1))
            if "is_default" in item:
                values["is_default"] = attrs.boolean(item, "is_default")
                if values["is_default"]:
                    await self._check_default(conn, version, pool_id)
            await self.bump(conn, subnetpools, pool_id, **values)
            return await self._render_pool(conn, pool_id)

    async def delete_subnetpool(self, ctx: RequestContext, pool_id: str) -> None:
        authorize(ctx, "subnetpool:delete")
        async with self.db.write() as conn:
            row = await self.subnetpool_row(conn, ctx, pool_id)
            if not owns(ctx, row):
                raise faults.PolicyNotAuthorized(rule="rule:delete_subnetpool")
            used = await conn.scalar(sa.select(sa.func.count()).select_from(subnets).where(subnets.c.subnetpool_id == pool_id))
            if used:
                raise faults.SubnetPoolInUse(subnet_pool_id=pool_id, reason="Subnets are still allocated from it")
            await self.drop_tags(conn, TAG_TYPE, pool_id)
            await conn.execute(subnetpools.delete().where(subnetpools.c.id == pool_id))

    # ---- subnets from a pool -----------------------------------------------------------------------

    @staticmethod
    def wants_pool(item: dict[str, Any]) -> bool:
        """Whether a subnet request names a pool (subnetpool_id, or use_default_subnetpool true)."""
        return item.get("subnetpool_id") is not None or bool(attrs.boolean(item, "use_default_subnetpool", False))

    async def default_subnetpool(self, conn: AsyncConnection, version: int) -> Any:
        return (await conn.execute(sa.select(subnetpools).where(
            subnetpools.c.is_default, subnetpools.c.ip_version == version))).first()

    async def cidr_from_pool(self, conn: AsyncConnection, ctx: RequestContext, item: dict[str, Any],
                             project_id: str) -> tuple[str, ipam.IPNetwork]:
        """(pool id, CIDR) for a subnet request that names a pool: the requested cidr checked against
        the pool, or the lowest free prefix of the requested (or default) length. Runs in the write
        transaction that inserts the subnet, so two requests never take the same prefix."""
        if item.get("subnetpool_id") is not None:
            pool = await self.subnetpool_row(conn, ctx, attrs.uuid_value(item["subnetpool_id"], "subnetpool_id"))
        else:
            version = item.get("ip_version")
            if version not in (4, 6):
                raise faults.HTTPBadRequest(msg="Invalid input for ip_version. Reason: it is required with "
                                                "use_default_subnetpool.")
            pool = await self.default_subnetpool(conn, version)
            if pool is None:
                raise faults.BadRequest(resource="subnets", msg=f"No default subnetpool found for IPv{version}")
        if "ip_version" in item and item["ip_version"] != pool.ip_version:
            raise faults.InvalidInput(error_message=f"Cannot allocate IPv{item['ip_version']} subnet from "
                                                    f"IPv{pool.ip_version} subnet pool")
        prefixes = [ipaddress.ip_network(p) for p in pool.prefixes]
        rows = await conn.execute(sa.select(subnets.c.cidr, subnets.c.project_id).where(subnets.c.subnetpool_id == pool.id))
        taken = [(ipaddress.ip_network(c), p) for c, p in rows]
        if item.get("cidr") is not None:
            net = ipam.parse_cidr(item["cidr"], pool.ip_version)
            if not covers(prefixes, net):
                raise faults.SubnetAllocationError(reason=f"Cidr {net} not in subnet pool {pool.id}")
            if any(net.overlaps(t) for t, _ in taken):
                raise faults.SubnetAllocationError(reason=f"Cidr {net} overlaps another subnet of subnet pool {pool.id}")
            length = net.prefixlen
        else:
            length = _prefixlen(item, "prefixlen", pool.ip_version, pool.default_prefixlen) if item.get(
                "prefixlen") is not None else pool.default_prefixlen
        if length < pool.min_prefixlen:
            raise faults.MinPrefixSubnetAllocationError(prefixlen=length, min_prefixlen=pool.min_prefixlen)
        if length > pool.max_prefixlen:
            raise faults.MaxPrefixSubnetAllocationError(prefixlen=length, max_prefixlen=pool.max_prefixlen)
        if pool.default_quota is not None:
            unit = QUOTA_UNIT[pool.ip_version]
            mine = sum(2 ** max(unit - t.prefixlen, 0) for t, p in taken if p == project_id)
            if mine + 2 ** max(unit - length, 0) > pool.default_quota:
                raise faults.SubnetPoolQuotaExceeded()
        if item.get("cidr") is None:
            got = allocate(prefixes, [t for t, _ in taken], length)
            if got is None:
                raise faults.SubnetAllocationError(reason=f"Insufficient prefix space to allocate subnet size /{length}")
            net = ipam.parse_cidr(str(got))  # a /31 or /32 holds no host: InvalidInput
        return pool.id, net
