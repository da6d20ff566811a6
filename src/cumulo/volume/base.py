"""What every volume service facet shares: the DB, the worker seam, policy, visibility and quotas.

Visibility (Cinder's default policy): a project sees its own volumes, snapshots, backups and
attachments; the admin sees all (lists only with `all_tenants`). A row the caller may not see is
NotFound ("Volume <id> could not be found."), so ids of other projects do not leak. Quotas are
Cinder's (volumes, gigabytes — volumes and snapshots together —, snapshots, backups,
backup_gigabytes, per_volume_gigabytes, groups), counted from the rows inside the write
transaction that inserts; passing one is Cinder's 413 overLimit.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors, policy
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.db.locks import xact_lock
from cumulo.volume.models import (
    backups,
    snapshots,
    volume_admin_metadata,
    volume_quotas,
    volume_types,
    volumes,
)
from cumulo.volume.worker_api import NullWorker, VolumeWorker

POLICY_RULES = {
    "volume:get": policy.READER,
    "volume:create": policy.MEMBER,
    "volume:update": policy.MEMBER,
    "volume:delete": policy.MEMBER,
    "volume:force_delete": policy.ADMIN,
    "volume:get_all_tenants": policy.ADMIN,
    "volume:reset_status": policy.ADMIN,
    "volume:attach": policy.MEMBER,
    "volume:extend": policy.MEMBER,
    "volume:retype": policy.MEMBER,
    "volume:update_readonly_flag": policy.MEMBER,
    "volume:set_bootable": policy.MEMBER,
    "volume:upload_image": policy.MEMBER,
    "volume:upload_public": policy.ADMIN,  # Cinder's volume_extension:volume_actions:upload_public
    "volume:admin_attrs": policy.ADMIN,
    "volume_type:manage": policy.ADMIN,
    "volume_type:get": policy.READER,
    "snapshot:get": policy.READER,
    "snapshot:create": policy.MEMBER,
    "snapshot:delete": policy.MEMBER,
    "backup:get": policy.READER,
    "backup:create": policy.MEMBER,
    "backup:delete": policy.MEMBER,
    "backup:restore": policy.MEMBER,
    "attachment:manage": policy.MEMBER,
    "volume_quota:get": policy.READER,
    "volume_quota:update": policy.ADMIN,
    "volume:services": policy.ADMIN,  # os-services, os-hosts, scheduler-stats, capabilities
    "volume:offline": policy.MEMBER,  # take a volume offline / bring it online (OCCI's storage actions)
}
policy.register(POLICY_RULES)

# Cinder's default quotas (cinder.conf [DEFAULT] quota_*); -1 is unlimited.
DEFAULT_QUOTAS: dict[str, int] = {
    "volumes": 10,
    "snapshots": 10,
    "gigabytes": 1000,
    "backups": 10,
    "backup_gigabytes": 1000,
    "per_volume_gigabytes": -1,
    "groups": 10,
}

# The `default` quota class (os-quota-class-sets/default) is kept in volume_quotas under this
# owner key, which no project id can be (Keystone's ids are 32 hex digits).
DEFAULT_CLASS_KEY = "class:default"

# Admin metadata of a volume being extended: its new size, counted by the quota until the worker
# has grown the volume, set `size` and dropped the key.
EXTENDING_TO = "extending_to"
# Admin metadata of a volume taken offline (status `maintenance`): "entering" from the API's mark until
# the worker has sealed its file on the host, "True" once sealed (offline on the host, not only in the
# DB), "leaving" while the worker unseals it to bring it back `available`.
OFFLINE = "offline"
OFFLINE_ENTERING = "entering"
OFFLINE_LEAVING = "leaving"
DEFAULT_TYPE = "__DEFAULT__"  # Cinder's default volume type, made on first use
PER_TYPE = ("volumes", "gigabytes", "snapshots")  # quota prefixes Cinder keeps per volume type
MAX_SIZE_GB = 1 << 20  # a sanity bound far above any quota a cloud of this size grants


class OverLimit(errors.CumuloError):
    """Cinder's VolumeLimitExceeded / VolumeSizeExceedsAvailableQuota ...: 413 overLimit."""

    code = 413


class NotImplementedFault(errors.CumuloError):
    code = 501


def authorize(ctx: RequestContext, rule: str) -> None:
    if not policy.allowed(ctx, rule):
        raise errors.Forbidden(f"Policy doesn't allow {rule} to be performed.")


def owns(ctx: RequestContext, project_id: str) -> bool:
    return ctx.is_admin or (ctx.project_id is not None and project_id == ctx.project_id)


def wants_all_tenants(ctx: RequestContext, params: dict[str, str]) -> bool:
    """Whether a list covers every project: an admin's `all_tenants` (a false-looking value is no)."""
    return ctx.is_admin and params.get("all_tenants", "0").lower() not in ("0", "false", "f", "no", "")


def check_uuid(value: Any, what: str) -> str:
    """A UUID a request names; anything else is a 400 naming the field (never a 500 further down)."""
    if not isinstance(value, str):
        raise errors.Invalid(f"Invalid input for field/attribute {what}. Value: {value!r}. It must be a string UUID.")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.Invalid(f"Invalid input for field/attribute {what}. Value: {value}. It is not a valid UUID.") from None


def not_found(kind: str, item_id: str) -> errors.NotFound:
    names = {"volume": "Volume", "snapshot": "Snapshot", "backup": "Backup", "attachment": "Volume attachment",
             "type": "Volume type"}
    if kind == "attachment":
        return errors.NotFound(f"Volume attachment could not be found with filter: attachment_id = {item_id}.")
    if kind == "type":
        return errors.NotFound(f"Volume type with name or id {item_id} could not be found.")
    return errors.NotFound(f"{names[kind]} {item_id} could not be found.")


class VolumeBase:
    """The DB, the worker and the rules every facet of the volume service shares."""

    def __init__(self, db: Database, conf: Settings, worker: VolumeWorker | None = None) -> None:
        self.db = db
        self.conf = conf
        self.worker: VolumeWorker = worker if worker is not None else NullWorker()

    # ---- visibility -------------------------------------------------------------------------

    @staticmethod
    async def owned_row(conn: AsyncConnection, ctx: RequestContext, table: sa.Table, kind: str, item_id: str) -> Any:
        """The row of `table` the caller may see, or NotFound."""
        if not isinstance(item_id, str) or len(item_id) > 255:
            raise not_found(kind, str(item_id)[:64])
        row = (await conn.execute(sa.select(table).where(table.c.id == item_id))).first()
        if row is None or not owns(ctx, row.project_id):
            raise not_found(kind, item_id)
        return row

    async def volume_row(self, conn: AsyncConnection, ctx: RequestContext, volume_id: str) -> Any:
        return await self.owned_row(conn, ctx, volumes, "volume", volume_id)

    # ---- quotas -----------------------------------------------------------------------------

    @staticmethod
    async def quota_limits(conn: AsyncConnection, project_id: str) -> dict[str, int]:
        limits = dict(DEFAULT_QUOTAS)
        names = {DEFAULT_TYPE, *(await conn.scalars(sa.select(volume_types.c.name)))}
        for name in sorted(names):
            for prefix in PER_TYPE:  # Cinder's per-type quotas, unlimited unless set
                limits[f"{prefix}_{name}"] = -1
        # the `default` quota class's values (os-quota-class-sets), then the project's own
        for owner in (DEFAULT_CLASS_KEY, project_id):
            rows = await conn.execute(
                sa.select(volume_quotas.c.resource, volume_quotas.c.limit).where(volume_quotas.c.project_id == owner)
            )
            for resource, limit in rows:
                if resource in limits:
                    limits[resource] = limit
        return limits

    @staticmethod
    async def quota_usage(conn: AsyncConnection, project_id: str) -> dict[str, int]:
        async def count(table: sa.Table) -> int:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)
                                         .where(table.c.project_id == project_id)) or 0)

        async def total(table: sa.Table) -> int:
            return int(await conn.scalar(sa.select(sa.func.coalesce(sa.func.sum(table.c.size), 0))
                                         .where(table.c.project_id == project_id)) or 0)

        async def pending_extends() -> int:
            rows = await conn.execute(
                sa.select(volumes.c.size, volume_admin_metadata.c.value)
                .join(volume_admin_metadata, volume_admin_metadata.c.volume_id == volumes.c.id)
                .where(volumes.c.project_id == project_id, volumes.c.status == "extending",
                       volume_admin_metadata.c.key == EXTENDING_TO))
            return sum(max(0, int(v) - size) for size, v in rows if v.isdigit())

        per_type: dict[str, int] = {}
        typed = await conn.execute(
            sa.select(volume_types.c.name, sa.func.count(volumes.c.id), sa.func.coalesce(sa.func.sum(volumes.c.size), 0))
            .select_from(volume_types.outerjoin(volumes, sa.and_(volumes.c.volume_type_id == volume_types.c.id,
                                                                 volumes.c.project_id == project_id)))
            .group_by(volume_types.c.name))
        for name, n, gb in typed:
            per_type[f"volumes_{name}"] = int(n or 0)
            per_type[f"gigabytes_{name}"] = int(gb or 0)
            per_type[f"snapshots_{name}"] = 0
        return {
            **per_type,
            "volumes": await count(volumes),
            "snapshots": await count(snapshots),
            "gigabytes": await total(volumes) + await total(snapshots) + await pending_extends(),
            "backups": await count(backups),
            "backup_gigabytes": await total(backups),
            "per_volume_gigabytes": 0,
            "groups": 0,
        }

    async def check_quota(self, conn: AsyncConnection, project_id: str, **adding: int) -> None:
        """Cinder's 413 when adding `adding` (volumes=1, gigabytes=size ...) passes a limit. Runs in the
        write transaction that inserts, under the project's quota lock (concurrent writers on PostgreSQL
        check one after the other; SQLite serialises writers anyway)."""
        await xact_lock(conn, f"volume-quota:{project_id}")
        limits = await self.quota_limits(conn, project_id)
        per_volume = limits["per_volume_gigabytes"]
        size = adding.get("gigabytes", 0)
        if per_volume >= 0 and "volumes" in adding and size > per_volume:
            raise OverLimit(f"Requested volume size {size}G is larger than maximum allowed limit {per_volume}G.")
        used = await self.quota_usage(conn, project_id)
        for resource, amount in adding.items():
            limit = limits.get(resource, -1)
            if limit < 0 or used.get(resource, 0) + amount <= limit:
                continue
            if resource in ("gigabytes", "backup_gigabytes"):
                what = "volume or snapshot" if resource == "gigabytes" else "backup"
                raise OverLimit(
                    f"Requested {what} exceeds allowed {resource} quota. Requested {amount}G, quota is "
                    f"{limit}G and {used[resource]}G has been consumed."
                )
            raise OverLimit(f"Maximum number of {resource} allowed ({limit}) exceeded for quota '{resource}'.")
