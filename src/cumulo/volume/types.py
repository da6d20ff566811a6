"""Volume types, their extra specs and access lists (Cinder's /types; changes are admin-only).

Cinder's `__DEFAULT__` type exists from the start (made on first use here) and is what a volume
created without a type gets. A private type is seen by the admin and the projects on its access
list. Extra specs are string pairs; `multiattach="<is> True"` makes volumes of the type
multi-attachable, as in Cinder.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.volume import records
from cumulo.volume.base import DEFAULT_TYPE, VolumeBase, authorize, not_found
from cumulo.volume.models import volume_type_access, volume_type_extra_specs, volume_types, volumes


def is_true_spec(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("<is> true", "true")


class VolumeTypes(VolumeBase):
    """Types, extra specs and access."""

    async def default_type_id(self, conn: AsyncConnection) -> str:
        found = await conn.scalar(sa.select(volume_types.c.id).where(volume_types.c.name == DEFAULT_TYPE))
        if found:
            return str(found)
        type_id = new_uuid()
        await conn.execute(volume_types.insert().values(
            id=type_id, name=DEFAULT_TYPE, description="Default Volume Type", is_public=True, created_at=utcnow()))
        return type_id

    async def ensure_default_type(self) -> str:
        async with self.db.write() as conn:
            return await self.default_type_id(conn)

    async def type_record(self, conn: AsyncConnection, row: Any) -> dict[str, Any]:
        specs = await records.kv_of(conn, volume_type_extra_specs, "volume_type_id", [row.id])
        return {**dict(row._mapping), "extra_specs": specs[row.id]}

    @staticmethod
    def _visible(ctx: RequestContext) -> Any:
        if ctx.is_admin:
            return sa.true()
        shared = sa.select(volume_type_access.c.volume_type_id).where(volume_type_access.c.project_id == ctx.project_id)
        return sa.or_(volume_types.c.is_public, volume_types.c.id.in_(shared))

    async def type_row(self, conn: AsyncConnection, ctx: RequestContext, name_or_id: Any) -> Any:
        """The type named or identified by `name_or_id` that the caller may use, or NotFound."""
        if not isinstance(name_or_id, str) or not name_or_id or len(name_or_id) > 255:
            raise not_found("type", str(name_or_id)[:64])
        if name_or_id == DEFAULT_TYPE or name_or_id == "default":
            await self.default_type_id(conn)
            name_or_id = DEFAULT_TYPE
        q = sa.select(volume_types).where(
            sa.or_(volume_types.c.id == name_or_id, volume_types.c.name == name_or_id), self._visible(ctx))
        row = (await conn.execute(q)).first()
        if row is None:
            raise not_found("type", name_or_id)
        return row

    async def list_types(self, ctx: RequestContext, *, is_public: bool | None = None) -> list[dict[str, Any]]:
        authorize(ctx, "volume_type:get")
        async with self.db.write() as conn:
            await self.default_type_id(conn)
            q = sa.select(volume_types).where(self._visible(ctx)).order_by(volume_types.c.created_at, volume_types.c.id)
            if is_public is not None:
                q = q.where(volume_types.c.is_public.is_(is_public))
            rows = (await conn.execute(q)).all()
            return [await self.type_record(conn, r) for r in rows]

    async def get_type(self, ctx: RequestContext, type_id: str) -> dict[str, Any]:
        authorize(ctx, "volume_type:get")
        async with self.db.write() as conn:
            if type_id == "default":
                return await self.type_record(conn, await self.type_row(conn, ctx, DEFAULT_TYPE))
            row = (await conn.execute(sa.select(volume_types).where(volume_types.c.id == type_id, self._visible(ctx)))).first()
            if row is None:
                raise not_found("type", type_id)
            return await self.type_record(conn, row)

    async def create_type(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "volume_type:manage")
        name = records.text(body.get("name"), "name", nullable=False)
        assert name is not None
        if not name.strip():
            raise errors.Invalid("Invalid input for field/attribute name: the name must not be empty.")
        description = records.text(body.get("description"), "description")
        is_public = records.boolean(body.get("os-volume-type-access:is_public", True), "is_public")
        specs = records.metadata(body.get("extra_specs", {}), "extra_specs")
        async with self.db.write() as conn:
            clash = await conn.scalar(sa.select(volume_types.c.id).where(volume_types.c.name == name))
            if clash:
                raise errors.Conflict(f"Volume Type {name} already exists.")
            type_id = new_uuid()
            await conn.execute(volume_types.insert().values(
                id=type_id, name=name, description=description, is_public=is_public, created_at=utcnow()))
            await records.write_kv(conn, volume_type_extra_specs, "volume_type_id", type_id, specs, replace=True)
            return await self.type_record(conn, await self.type_row(conn, ctx, type_id))

    async def update_type(self, ctx: RequestContext, type_id: str, body: dict[str, Any]) -> dict[str, Any]:
        authorize(ctx, "volume_type:manage")
        values: dict[str, Any] = {}
        if "name" in body:
            name = records.text(body["name"], "name", nullable=False)
            if not name or not name.strip():
                raise errors.Invalid("Invalid input for field/attribute name: the name must not be empty.")
            values["name"] = name
        if "description" in body:
            values["description"] = records.text(body["description"], "description")
        if "is_public" in body:
            values["is_public"] = records.boolean(body["is_public"], "is_public")
        if not values:
            raise errors.Invalid("Invalid input received: Specify volume type name, description, is_public or a combination thereof.")
        async with self.db.write() as conn:
            row = await self.type_row(conn, ctx, type_id)
            if row.name == DEFAULT_TYPE and "name" in values:
                raise errors.Invalid("Invalid input received: The default volume type cannot be renamed.")
            if "name" in values and values["name"] != row.name:
                clash = await conn.scalar(sa.select(volume_types.c.id).where(volume_types.c.name == values["name"]))
                if clash:
                    raise errors.Conflict(f"Volume Type {values['name']} already exists.")
            await conn.execute(volume_types.update().where(volume_types.c.id == row.id).values(updated_at=utcnow(), **values))
            return await self.type_record(conn, await self.type_row(conn, ctx, row.id))

    async def delete_type(self, ctx: RequestContext, type_id: str) -> None:
        authorize(ctx, "volume_type:manage")
        async with self.db.write() as conn:
            row = await self.type_row(conn, ctx, type_id)
            if row.name == DEFAULT_TYPE:
                raise errors.Invalid("Invalid input received: The default volume type cannot be deleted.")
            used = await conn.scalar(sa.select(sa.func.count()).select_from(volumes).where(volumes.c.volume_type_id == row.id))
            if used:
                raise errors.Invalid(f"Target volume type is still in use. Volume Type {row.id} deletion is not allowed with volumes present with the type.")
            await conn.execute(volume_type_extra_specs.delete().where(volume_type_extra_specs.c.volume_type_id == row.id))
            await conn.execute(volume_type_access.delete().where(volume_type_access.c.volume_type_id == row.id))
            await conn.execute(volume_types.delete().where(volume_types.c.id == row.id))

    # ---- extra specs ------------------------------------------------------------------------

    async def get_extra_specs(self, ctx: RequestContext, type_id: str) -> dict[str, str]:
        authorize(ctx, "volume_type:get")
        async with self.db.write() as conn:
            row = await self.type_row(conn, ctx, type_id)
            return (await records.kv_of(conn, volume_type_extra_specs, "volume_type_id", [row.id]))[row.id]

    async def set_extra_specs(self, ctx: RequestContext, type_id: str, specs: Any) -> dict[str, str]:
        authorize(ctx, "volume_type:manage")
        items = records.metadata(specs, "extra_specs")
        async with self.db.write() as conn:
            row = await self.type_row(conn, ctx, type_id)
            await records.write_kv(conn, volume_type_extra_specs, "volume_type_id", row.id, items, replace=False)
            return items

    async def delete_extra_spec(self, ctx: RequestContext, type_id: str, key: str) -> None:
        authorize(ctx, "volume_type:manage")
        async with self.db.write() as conn:
            row = await self.type_row(conn, ctx, type_id)
            res = await conn.execute(volume_type_extra_specs.delete().where(
                volume_type_extra_specs.c.volume_type_id == row.id, volume_type_extra_specs.c.key == key))
            if not res.rowcount:
                raise errors.NotFound(f"Volume Type {row.id} has no extra specs with key {key}.")

    # ---- access -----------------------------------------------------------------------------

    async def type_access(self, ctx: RequestContext, type_id: str) -> list[dict[str, str]]:
        authorize(ctx, "volume_type:manage")
        async with self.db.write() as conn:
            row = await self.type_row(conn, ctx, type_id)
            if row.is_public:
                raise errors.NotFound("Access list not available for public volume types.")
            rows = await conn.execute(sa.select(volume_type_access.c.project_id)
                                      .where(volume_type_access.c.volume_type_id == row.id))
            return [{"volume_type_id": row.id, "project_id": p} for (p,) in rows]

    async def change_type_access(self, ctx: RequestContext, type_id: str, project_id: Any, *, add: bool) -> None:
        authorize(ctx, "volume_type:manage")
        project = records.text(project_id, "project", nullable=False)
        assert project is not None
        async with self.db.write() as conn:
            row = await self.type_row(conn, ctx, type_id)
            if row.is_public:
                raise errors.Invalid("Invalid volume type: Type access modification is not applicable to public volume type.")
            q = sa.select(volume_type_access.c.id).where(
                volume_type_access.c.volume_type_id == row.id, volume_type_access.c.project_id == project)
            present = await conn.scalar(q)
            if add:
                if present:
                    raise errors.Conflict(f"Volume type access for {row.id} / {project} combination already exists.")
                await conn.execute(volume_type_access.insert().values(volume_type_id=row.id, project_id=project))
            else:
                if not present:
                    raise errors.NotFound(f"Volume type access not found for {row.id} / {project} combination.")
                await conn.execute(volume_type_access.delete().where(volume_type_access.c.id == present))
