"""Cinder's quota sets (/os-quota-sets/{project_id}) and absolute limits (/limits).

A project reads its own quota set (the admin any); only the admin changes or resets one. Values
are whole numbers, -1 unlimited; a limit below what the project already uses is refused (400), as
Cinder does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.volume import records
from cumulo.volume.base import DEFAULT_CLASS_KEY, authorize
from cumulo.volume.models import volume_quotas
from cumulo.volume.snapshots import SnapshotsAndBackups

QUOTA_MAX = 1 << 31


class VolumeQuotas(SnapshotsAndBackups):
    """Quota sets and limits."""

    def _quota_project(self, ctx: RequestContext, project_id: str) -> str:
        authorize(ctx, "volume_quota:get")
        if not ctx.is_admin and project_id != ctx.project_id:
            raise errors.Forbidden(f"Policy doesn't allow volume_extension:quotas:show to be performed (project {project_id[:64]}).")
        if len(project_id) > 255:
            raise errors.Invalid("Invalid input received: project id too long.")
        return project_id

    async def get_quota_set(self, ctx: RequestContext, project_id: str, *, usage: bool = False) -> dict[str, Any]:
        project_id = self._quota_project(ctx, project_id)
        async with self.db.read() as conn:
            limits = await self.quota_limits(conn, project_id)
            if not usage:
                return dict(limits)
            used = await self.quota_usage(conn, project_id)
        return {k: {"limit": v, "in_use": used.get(k, 0), "reserved": 0} for k, v in limits.items()}

    async def default_quota_set(self, ctx: RequestContext) -> dict[str, int]:
        """A project's defaults: Cinder's, with the `default` quota class's values over them."""
        authorize(ctx, "volume_quota:get")
        async with self.db.read() as conn:
            return await self.quota_limits(conn, DEFAULT_CLASS_KEY)

    async def get_quota_class(self, ctx: RequestContext, name: str) -> dict[str, int]:
        """os-quota-class-sets/{name} (admin): Cinder keeps one class that counts, `default`; any
        other name shows the same values (Cinder falls back to the defaults for an unknown class)."""
        authorize(ctx, "volume_quota:update")
        records.text(name, "quota class", nullable=False)
        async with self.db.read() as conn:
            return await self.quota_limits(conn, DEFAULT_CLASS_KEY)

    async def update_quota_class(self, ctx: RequestContext, name: str, body: Any) -> dict[str, int]:
        """PUT os-quota-class-sets/default: new defaults for every project without its own value."""
        authorize(ctx, "volume_quota:update")
        if name != "default":
            raise errors.Invalid(f"Invalid input received: only the 'default' quota class is kept, not {name[:64]!r}.")
        return await self._write_limits(DEFAULT_CLASS_KEY, body, "quota_class_set", check_usage=False)

    async def update_quota_set(self, ctx: RequestContext, project_id: str, body: Any) -> dict[str, int]:
        authorize(ctx, "volume_quota:update")
        if len(project_id) > 255 or project_id.startswith("class:"):
            raise errors.Invalid("Invalid input received: invalid project id.")
        return await self._write_limits(project_id, body, "quota_set", check_usage=True)

    async def _write_limits(self, owner: str, body: Any, key_name: str, *, check_usage: bool) -> dict[str, int]:
        if not isinstance(body, dict) or not isinstance(body.get(key_name), dict):
            raise errors.Invalid(f"Missing required element '{key_name}' in request body.")
        project_id = owner
        wanted: dict[str, int] = {}
        async with self.db.read() as conn:
            known = set(await self.quota_limits(conn, project_id))
        for key, value in body[key_name].items():
            if key in ("id", "tenant_id"):
                continue
            if key not in known:
                raise errors.Invalid(f"Invalid input received: Bad key(s) in quota set: {str(key)[:64]}")
            if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 12:
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < -1 or value > QUOTA_MAX:
                raise errors.Invalid(f"Invalid input received: Quota limit {str(value)[:32]} for {key} must be an integer from -1 to {QUOTA_MAX}.")
            wanted[key] = value
        async with self.db.write() as conn:
            used = await self.quota_usage(conn, project_id) if check_usage else {}
            for key, value in wanted.items():
                if key != "per_volume_gigabytes" and 0 <= value < used.get(key, 0):
                    raise errors.Invalid(
                        f"Invalid input received: Quota {key} limit must be equal or greater than existing resources. "
                        f"Current usage is {used[key]} and the requested limit is {value}.")
            for key, value in wanted.items():
                res = await conn.execute(volume_quotas.update().where(
                    volume_quotas.c.project_id == project_id, volume_quotas.c.resource == key).values(limit=value))
                if not res.rowcount:
                    await conn.execute(volume_quotas.insert().values(project_id=project_id, resource=key, limit=value))
            return await self.quota_limits(conn, project_id)

    async def delete_quota_set(self, ctx: RequestContext, project_id: str) -> None:
        authorize(ctx, "volume_quota:update")
        async with self.db.write() as conn:
            await conn.execute(sa.delete(volume_quotas).where(volume_quotas.c.project_id == project_id))

    async def absolute_limits(self, ctx: RequestContext) -> dict[str, int]:
        """Cinder's /limits "absolute" block for the caller's project."""
        authorize(ctx, "volume_quota:get")
        async with self.db.read() as conn:
            limits = await self.quota_limits(conn, ctx.project_id or "")
            used = await self.quota_usage(conn, ctx.project_id or "")
        return {
            "totalSnapshotsUsed": used["snapshots"],
            "maxTotalBackups": limits["backups"],
            "maxTotalVolumeGigabytes": limits["gigabytes"],
            "maxTotalSnapshots": limits["snapshots"],
            "maxTotalBackupGigabytes": limits["backup_gigabytes"],
            "totalBackupGigabytesUsed": used["backup_gigabytes"],
            "maxTotalVolumes": limits["volumes"],
            "totalVolumesUsed": used["volumes"],
            "totalBackupsUsed": used["backups"],
            "totalGigabytesUsed": used["gigabytes"],
        }
