"""What every network service facet shares: the DB, visibility rules, quotas, tags and revisions.

Visibility (Neutron's default policy): a project sees its own resources; networks that are shared
or external are seen by every project, and the subnets of shared ones (an external network's
subnets stay hidden unless it is shared too, as Tempest checks); the admin sees all. A resource
the caller cannot see is NotFound (NetworkNotFound, ...), so ids of other projects do not leak; one
it can see but not change is Forbidden. The facets (`networks`, `ports`, and L3API's routers,
floating IPs and security groups) subclass `NetworkBase`; `service.NetworkService` combines them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import policy
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.db.locks import xact_lock
from cumulo.network import faults
from cumulo.network.models import (
    floating_ips,
    network_quotas,
    network_tags,
    networks,
    ports,
    routers,
    security_group_rules,
    security_groups,
    subnetpools,
    subnets,
)

T = TypeVar("T")
LOG = logging.getLogger(__name__)

# Neutron's default policies, by least role; ownership is checked on the row.
POLICY_RULES = {
    "network:get": policy.READER,
    "network:create": policy.MEMBER,
    "network:update": policy.MEMBER,
    "network:delete": policy.MEMBER,
    "network:create:shared": policy.ADMIN,
    "network:create:router:external": policy.ADMIN,
    "network:create:provider": policy.ADMIN,
    "network:create:is_default": policy.ADMIN,
    "subnet:get": policy.READER,
    "subnet:create": policy.MEMBER,
    "subnet:update": policy.MEMBER,
    "subnet:delete": policy.MEMBER,
    "port:get": policy.READER,
    "port:create": policy.MEMBER,
    "port:update": policy.MEMBER,
    "port:delete": policy.MEMBER,
    "port:binding": policy.ADMIN,
    "quota:get": policy.READER,
    "quota:update": policy.ADMIN,
    "quota:list": policy.ADMIN,
    "tag:get": policy.READER,
    "tag:update": policy.MEMBER,
    "extension:get": policy.READER,
}
policy.register(POLICY_RULES)

# Neutron's default quotas (neutron.conf [quotas]); -1 is unlimited.
DEFAULT_QUOTAS: dict[str, int] = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
}
# The table each quota counts, by project_id.
QUOTA_TABLES: dict[str, sa.Table] = {
    "network": networks,
    "subnet": subnets,
    "port": ports,
    "router": routers,
    "floatingip": floating_ips,
    "security_group": security_groups,
    "security_group_rule": security_group_rules,
}

# Resources that take tags (the URL collection name -> table); L3API's collections are listed too.
TAGGABLE: dict[str, sa.Table] = {
    "networks": networks,
    "subnets": subnets,
    "ports": ports,
    "routers": routers,
    "floatingips": floating_ips,
    "security-groups": security_groups,
    "security_groups": security_groups,
    "subnetpools": subnetpools,
}
TAG_MAX = 60


def authorize(ctx: RequestContext, rule: str) -> None:
    if not policy.allowed(ctx, rule):
        raise faults.PolicyNotAuthorized(rule=rule)


async def lock_network_addresses(conn: AsyncConnection, network_id: str) -> None:
    """Take the network's row lock before picking a free address (PostgreSQL: SELECT ... FOR
    UPDATE, held to the end of the write transaction), so writers in other requests or processes
    pick one after the other instead of all taking the same first free address and failing on the
    unique constraint. SQLite serialises writers already. FOR NO KEY UPDATE: it does not conflict
    with the KEY SHARE lock a port insert's foreign key already took on the row (FOR UPDATE would,
    and two such writers deadlock)."""
    if conn.dialect.name != "sqlite":
        await conn.execute(
            sa.select(networks.c.id).where(networks.c.id == network_id).with_for_update(key_share=True))


def owns(ctx: RequestContext, row: Any) -> bool:
    project = row["project_id"] if isinstance(row, dict) else row.project_id
    return ctx.is_admin or (ctx.project_id is not None and project == ctx.project_id)


R = TypeVar("R")


def notifies(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """A write the hosts' data plane follows: once it succeeded (committed), the agents are told."""

    @functools.wraps(fn)
    async def wrapper(self: NetworkBase, *args: Any, **kwargs: Any) -> R:
        out = await fn(self, *args, **kwargs)
        await self.dataplane_changed()
        return out

    return wrapper


class NetworkBase:
    """The DB and the rules every facet of the network service shares."""

    def __init__(self, db: Database, conf: Settings) -> None:
        self.db = db
        self.conf = conf
        # Told after a committed change the hosts' data plane follows (security groups, routers,
        # floating IPs, ports): the runtime casts `sync` to the network agents (network.agent.wiring).
        self.dataplane_listener: Callable[[], Awaitable[None]] | None = None

    async def dataplane_changed(self) -> None:
        """Tell the agents (best effort: their next sync catches up anyway)."""
        if self.dataplane_listener is None:
            return
        try:
            await self.dataplane_listener()
        except Exception as exc:  # noqa: BLE001 - an API write succeeded; the agents resync later
            LOG.warning("network agents not told of a change: %s", exc)

    # ---- visibility -------------------------------------------------------------------------

    @staticmethod
    def visible_networks_clause(ctx: RequestContext) -> Any:
        if ctx.is_admin:
            return sa.true()
        return sa.or_(networks.c.project_id == ctx.project_id, networks.c.shared, networks.c.external)

    async def network_row(self, conn: AsyncConnection, ctx: RequestContext, network_id: str) -> Any:
        """The network row the caller may see, or NetworkNotFound."""
        row = (await conn.execute(sa.select(networks).where(networks.c.id == network_id))).first()
        if row is None or not (owns(ctx, row) or row.shared or row.external):
            raise faults.NetworkNotFound(net_id=network_id)
        return row

    # ---- concurrent writers -----------------------------------------------------------------

    @staticmethod
    async def retry_unique(write: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
        """Run a write transaction again when a unique constraint stopped it: two writers picked
        the same free address or MAC at once (possible on PostgreSQL, where writers run side by
        side; SQLite serialises them). The last failure is a 409, never a 500."""
        for attempt in range(attempts):
            try:
                return await write()
            except sa.exc.IntegrityError:
                if attempt == attempts - 1:
                    raise faults.HTTPConflict(
                        msg="A concurrent request took the same address or MAC address; try again"
                    ) from None
        raise AssertionError("unreachable")

    # ---- revisions --------------------------------------------------------------------------

    @staticmethod
    async def bump(conn: AsyncConnection, table: sa.Table, resource_id: str, **values: Any) -> None:
        """Update a row, its updated_at and its revision_number (Neutron bumps it on every change)."""
        await conn.execute(
            table.update()
            .where(table.c.id == resource_id)
            .values(updated_at=utcnow(), revision_number=table.c.revision_number + 1, **values)
        )

    # ---- quotas -----------------------------------------------------------------------------

    async def quota_limits(self, conn: AsyncConnection, project_id: str) -> dict[str, int]:
        limits = dict(DEFAULT_QUOTAS)
        rows = await conn.execute(
            sa.select(network_quotas.c.resource, network_quotas.c.limit).where(network_quotas.c.project_id == project_id)
        )
        for resource, limit in rows:
            if resource in limits:
                limits[resource] = limit
        return limits

    async def quota_usage(self, conn: AsyncConnection, project_id: str) -> dict[str, int]:
        used: dict[str, int] = {}
        for resource, table in QUOTA_TABLES.items():
            count = await conn.scalar(sa.select(sa.func.count()).select_from(table).where(table.c.project_id == project_id))
            used[resource] = int(count or 0)
        return used

    async def check_quota(self, conn: AsyncConnection, project_id: str, resource: str, adding: int = 1) -> None:
        """OverQuota (409) when `adding` more of `resource` would pass the project's limit. Runs inside
        the write transaction that inserts, so two creates cannot both take the last unit (on SQLite
        writers are serialised; on PostgreSQL the project's quota lock serialises the checks)."""
        limit = (await self.quota_limits(conn, project_id))[resource]
        if limit < 0:
            return
        await xact_lock(conn, f"network-quota:{project_id}")
        table = QUOTA_TABLES[resource]
        count = await conn.scalar(sa.select(sa.func.count()).select_from(table).where(table.c.project_id == project_id))
        if int(count or 0) + adding > limit:
            raise faults.OverQuota(overs=[resource])

    # ---- tags -------------------------------------------------------------------------------

    @staticmethod
    async def tags_of(conn: AsyncConnection, resource_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in ids}
        if not ids:
            return out
        rows = await conn.execute(
            sa.select(network_tags.c.resource_id, network_tags.c.tag)
            .where(network_tags.c.resource_type == resource_type, network_tags.c.resource_id.in_(list(ids)))
            .order_by(network_tags.c.id)
        )
        for rid, tag in rows:
            out.setdefault(rid, []).append(tag)
        return out

    @staticmethod
    async def drop_tags(conn: AsyncConnection, resource_type: str, resource_id: str) -> None:
        await conn.execute(
            network_tags.delete().where(
                network_tags.c.resource_type == resource_type, network_tags.c.resource_id == resource_id
            )
        )

    @staticmethod
    async def write_tags(conn: AsyncConnection, resource_type: str, resource_id: str, tags: Sequence[str]) -> None:
        await NetworkBase.drop_tags(conn, resource_type, resource_id)
        for tag in tags:
            await conn.execute(network_tags.insert().values(resource_type=resource_type, resource_id=resource_id, tag=tag))


def check_tag(tag: Any) -> str:
    """A tag as Neutron takes it: a non-empty string of at most 60 characters without ',' or '/'."""
    if not isinstance(tag, str) or not tag or len(tag) > TAG_MAX or "," in tag or "/" in tag:
        raise faults.InvalidInput(error_message=f"'{tag}' is not a valid tag")
    return tag


def check_tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise faults.HTTPBadRequest(msg="Invalid input for tags. Reason: tags must be a list of strings.")
    out: list[str] = []
    for tag in value:
        tag = check_tag(tag)
        if tag not in out:
            out.append(tag)
    return out


def stamps(row: Any) -> dict[str, Any]:
    """created_at / updated_at / revision_number, rendered as Neutron renders them."""
    from cumulo.db import isotime

    return {
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
        "revision_number": row.revision_number,
    }
