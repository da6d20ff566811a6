"""Flavors: default set, visibility (public or granted to the project), CRUD, extra specs, access.

Instances keep a snapshot of their flavor (`snapshot`), keyed by the flavors table's column names:
flavorid, name, memory_mb, vcpus, root_gb, ephemeral_gb, swap, rxtx_factor, is_public, description,
extra_specs.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import flavor_projects, flavors
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.errors import Conflict, Invalid, NotFound

# name, flavorid, memory_mb, vcpus, root_gb (DevStack's defaults).
DEFAULT_FLAVORS: tuple[tuple[str, str, int, int, int], ...] = (
    ("m1.nano", "42", 64, 1, 1),
    ("m1.micro", "84", 128, 1, 1),
    ("m1.tiny", "1", 512, 1, 1),
    ("m1.small", "2", 2048, 1, 20),
    ("m1.medium", "3", 4096, 2, 40),
    ("m1.large", "4", 8192, 4, 80),
    ("m1.xlarge", "5", 16384, 8, 160),
)

SNAPSHOT_KEYS = (
    "flavorid",
    "name",
    "memory_mb",
    "vcpus",
    "root_gb",
    "ephemeral_gb",
    "swap",
    "rxtx_factor",
    "is_public",
    "description",
    "extra_specs",
)

# Nova's allowed sort keys mapped to our columns (vcpu_weight is not kept: sorts by id).
SORT_KEYS: dict[str, Any] = {
    "created_at": flavors.c.created_at,
    # NULL never compares, so page over descriptions as text.
    "description": sa.func.coalesce(flavors.c.description, ""),
    "disabled": flavors.c.disabled,
    "ephemeral_gb": flavors.c.ephemeral_gb,
    "flavorid": flavors.c.flavorid,
    "id": flavors.c.id,
    "is_public": flavors.c.is_public,
    "memory_mb": flavors.c.memory_mb,
    "name": flavors.c.name,
    "root_gb": flavors.c.root_gb,
    "rxtx_factor": flavors.c.rxtx_factor,
    "swap": flavors.c.swap,
    "updated_at": flavors.c.updated_at,
    "vcpu_weight": flavors.c.id,
    "vcpus": flavors.c.vcpus,
}


def not_found(flavorid: str) -> NotFound:
    return NotFound(f"Flavor {flavorid} could not be found.")


async def ensure_default_flavors(db: Database) -> None:
    """Create the default public flavors that are missing (by id or name); safe to call on every start."""
    async with db.write() as conn:
        rows = await conn.execute(sa.select(flavors.c.flavorid, flavors.c.name))
        ids, names = set(), set()
        for fid, fname in rows:
            ids.add(fid)
            names.add(fname)
        now = utcnow()
        for fname, fid, ram, vcpus, disk in DEFAULT_FLAVORS:
            if fid in ids or fname in names:
                continue
            await conn.execute(
                sa.insert(flavors).values(
                    flavorid=fid, name=fname, memory_mb=ram, vcpus=vcpus, root_gb=disk, ephemeral_gb=0, swap=0,
                    rxtx_factor=1.0, is_public=True, disabled=False, description=None, extra_specs={},
                    created_at=now, updated_at=now,
                )
            )


def snapshot(row: Any) -> dict[str, Any]:
    """What an instance stores about its flavor (also what get_flavor_for returns)."""
    out = {k: row[k] for k in SNAPSHOT_KEYS}
    out["extra_specs"] = dict(out["extra_specs"] or {})
    return out


def _visible(ctx: RequestContext) -> Any:
    """Non-admins see public flavors and private ones granted to their project."""
    granted = sa.select(flavor_projects.c.flavor_id).where(flavor_projects.c.project_id == (ctx.project_id or ""))
    return sa.or_(flavors.c.is_public.is_(True), flavors.c.id.in_(granted))


@functools.cache
def _row_query(*, visible_only: bool) -> sa.Select[Any]:
    """get_row's statement, built once per shape (a server create reads it): the flavorid bound as
    "flavorid"; visible_only: public ones or those granted to the bound "project_id"."""
    q = sa.select(flavors).where(flavors.c.flavorid == sa.bindparam("flavorid", type_=flavors.c.flavorid.type))
    if visible_only:
        granted = sa.select(flavor_projects.c.flavor_id).where(
            flavor_projects.c.project_id == sa.bindparam("project_id", type_=flavor_projects.c.project_id.type))
        q = q.where(sa.or_(flavors.c.is_public.is_(True), flavors.c.id.in_(granted)))
    return q


async def get_row(conn: AsyncConnection, ctx: RequestContext | None, flavorid: str) -> dict[str, Any]:
    """The flavor with this flavorid if ctx may see it (ctx None or admin: any flavor); NotFound otherwise."""
    if ctx is None or ctx.is_admin:
        params = {"flavorid": flavorid}
        row = (await conn.execute(_row_query(visible_only=False), params)).mappings().first()
    else:
        params = {"flavorid": flavorid, "project_id": ctx.project_id or ""}
        row = (await conn.execute(_row_query(visible_only=True), params)).mappings().first()
    if row is None:
        raise not_found(flavorid)
    return dict(row)


def ref_to_id(flavor_ref: Any) -> str:
    """A flavorRef is an id or a URL ending in the id."""
    if isinstance(flavor_ref, int) and not isinstance(flavor_ref, bool):
        flavor_ref = str(flavor_ref)
    if not isinstance(flavor_ref, str) or not flavor_ref.strip():
        raise Invalid("Invalid flavorRef provided.")
    ref = flavor_ref.strip()
    if "/" in ref:
        ref = ref.rstrip("/").rsplit("/", 1)[-1]
    if not ref:
        raise Invalid("Invalid flavorRef provided.")
    return ref


async def get_flavor_for(conn: AsyncConnection, ctx: RequestContext, flavor_ref: Any) -> dict[str, Any]:
    """Resolve a flavorRef for ctx into a snapshot; NotFound if missing or not visible, Invalid if malformed."""
    row = await get_row(conn, ctx, ref_to_id(flavor_ref))
    return snapshot(row)


async def list_rows(
    conn: AsyncConnection,
    ctx: RequestContext,
    *,
    is_public: bool | None,
    min_ram: int | None,
    min_disk: int | None,
    sort_key: str,
    sort_dir: str,
    limit: int,
    marker: str | None,
) -> list[dict[str, Any]]:
    """Flavors as Nova's FlavorList.get_all filters and pages them (sort key then id as tie-break)."""
    q = sa.select(flavors)
    if not ctx.is_admin:
        q = q.where(_visible(ctx), flavors.c.disabled.is_(False))
    elif is_public is True:
        q = q.where(_visible(ctx))
    elif is_public is False:
        q = q.where(flavors.c.is_public.is_(False))
    if min_ram is not None:
        q = q.where(flavors.c.memory_mb >= min_ram)
    if min_disk is not None:
        q = q.where(flavors.c.root_gb >= min_disk)
    col = SORT_KEYS[sort_key]
    desc = sort_dir == "desc"
    if marker is not None:
        mq = sa.select(col, flavors.c.id).where(flavors.c.flavorid == marker)
        if not ctx.is_admin:
            mq = mq.where(_visible(ctx))
        mrow = (await conn.execute(mq)).first()
        if mrow is None:
            raise Invalid(f"marker [{marker}] not found")
        mval, mid = mrow[0], mrow[1]
        after = col < mval if desc else col > mval
        tie = flavors.c.id < mid if desc else flavors.c.id > mid
        q = q.where(sa.or_(after, sa.and_(col == mval, tie)))
    order = [col.desc(), flavors.c.id.desc()] if desc else [col.asc(), flavors.c.id.asc()]
    q = q.order_by(*order).limit(limit)
    return [dict(r) for r in (await conn.execute(q)).mappings()]


async def create(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any]:
    """Insert a flavor; values use column names. A missing flavorid becomes a UUID. 409 on duplicates."""
    flavorid = values.get("flavorid") or str(uuid.uuid4())
    dup = await conn.execute(
        sa.select(flavors.c.flavorid, flavors.c.name).where(
            sa.or_(flavors.c.flavorid == flavorid, flavors.c.name == values["name"])
        )
    )
    for fid, fname in dup:
        if fname == values["name"]:
            raise Conflict(f"Flavor with name {values['name']} already exists.")
        if fid == flavorid:
            raise Conflict(f"Flavor with ID {flavorid} already exists.")
    now = utcnow()
    row = {
        "flavorid": flavorid,
        "name": values["name"],
        "memory_mb": values["memory_mb"],
        "vcpus": values["vcpus"],
        "root_gb": values["root_gb"],
        "ephemeral_gb": values.get("ephemeral_gb", 0),
        "swap": values.get("swap", 0),
        "rxtx_factor": values.get("rxtx_factor", 1.0),
        "is_public": values.get("is_public", True),
        "disabled": False,
        "description": values.get("description"),
        "extra_specs": {},
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(sa.insert(flavors).values(**row))
    return await get_row(conn, None, flavorid)


async def delete(conn: AsyncConnection, flavorid: str) -> None:
    row = await get_row(conn, None, flavorid)
    await conn.execute(sa.delete(flavor_projects).where(flavor_projects.c.flavor_id == row["id"]))
    await conn.execute(sa.delete(flavors).where(flavors.c.id == row["id"]))


async def update_description(conn: AsyncConnection, flavorid: str, description: str | None) -> dict[str, Any]:
    row = await get_row(conn, None, flavorid)
    await conn.execute(
        sa.update(flavors).where(flavors.c.id == row["id"]).values(description=description, updated_at=utcnow())
    )
    return await get_row(conn, None, flavorid)


async def merge_extra_specs(conn: AsyncConnection, ctx: RequestContext, flavorid: str, specs: dict[str, Any]) -> None:
    """Add or replace extra specs; values are stored as strings, as Nova stores them."""
    row = await get_row(conn, ctx, flavorid)
    merged = dict(row["extra_specs"] or {})
    merged.update({k: _spec_text(v) for k, v in specs.items()})
    await conn.execute(
        sa.update(flavors).where(flavors.c.id == row["id"]).values(extra_specs=merged, updated_at=utcnow())
    )


def _spec_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else str(value)


async def delete_extra_spec(conn: AsyncConnection, ctx: RequestContext, flavorid: str, key: str) -> None:
    row = await get_row(conn, ctx, flavorid)
    specs = dict(row["extra_specs"] or {})
    if key not in specs:
        raise NotFound(f"Flavor {flavorid} has no extra specs with key {key}.")
    del specs[key]
    await conn.execute(
        sa.update(flavors).where(flavors.c.id == row["id"]).values(extra_specs=specs, updated_at=utcnow())
    )


async def access_projects(conn: AsyncConnection, internal_id: int) -> list[str]:
    rows = await conn.execute(
        sa.select(flavor_projects.c.project_id)
        .where(flavor_projects.c.flavor_id == internal_id)
        .order_by(flavor_projects.c.project_id)
    )
    return [r[0] for r in rows]


async def add_access(conn: AsyncConnection, flavorid: str, project_id: str, *, reject_public: bool) -> list[str]:
    """Grant a project access (Nova refuses public flavors from 2.7 on: reject_public)."""
    row = await get_row(conn, None, flavorid)
    if reject_public and row["is_public"]:
        raise Conflict("Can not add access to a public flavor.")
    if project_id in await access_projects(conn, row["id"]):
        raise Conflict(
            f"Flavor access already exists for flavor {flavorid} and project {project_id} combination."
        )
    await conn.execute(sa.insert(flavor_projects).values(flavor_id=row["id"], project_id=project_id))
    return await access_projects(conn, row["id"])


async def remove_access(conn: AsyncConnection, flavorid: str, project_id: str) -> list[str]:
    row = await get_row(conn, None, flavorid)
    res = await conn.execute(
        sa.delete(flavor_projects).where(
            flavor_projects.c.flavor_id == row["id"], flavor_projects.c.project_id == project_id
        )
    )
    if not res.rowcount:
        raise NotFound(f"Flavor access not found for {flavorid} / {project_id} combination.")
    return await access_projects(conn, row["id"])


class FlavorService:
    """What the flavor API asks for, one transaction per call (the functions above take a connection
    so that server create can read a flavor inside its own transaction)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_flavors(self, ctx: RequestContext, **query: Any) -> list[dict[str, Any]]:
        """`list_rows`' filters and paging (is_public, min_ram, min_disk, sort_key, sort_dir, limit, marker)."""
        async with self.db.read() as conn:
            return await list_rows(conn, ctx, **query)

    async def get(self, ctx: RequestContext, flavorid: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await get_row(conn, ctx, flavorid)

    async def create(self, values: dict[str, Any]) -> dict[str, Any]:
        async with self.db.write() as conn:
            return await create(conn, values)

    async def update_description(self, flavorid: str, description: str | None) -> dict[str, Any]:
        async with self.db.write() as conn:
            return await update_description(conn, flavorid, description)

    async def delete(self, flavorid: str) -> None:
        async with self.db.write() as conn:
            await delete(conn, flavorid)

    async def merge_extra_specs(self, ctx: RequestContext, flavorid: str, specs: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await merge_extra_specs(conn, ctx, flavorid, specs)

    async def delete_extra_spec(self, ctx: RequestContext, flavorid: str, key: str) -> None:
        async with self.db.write() as conn:
            await delete_extra_spec(conn, ctx, flavorid, key)

    async def access_list(self, ctx: RequestContext, flavorid: str) -> list[str]:
        """The projects granted a private flavor; a public flavor has no access list (NotFound)."""
        async with self.db.read() as conn:
            row = await get_row(conn, ctx, flavorid)
            if row["is_public"]:
                raise NotFound("Access list not available for public flavors.")
            return await access_projects(conn, row["id"])

    async def add_access(self, flavorid: str, project_id: str, *, reject_public: bool) -> list[str]:
        async with self.db.write() as conn:
            return await add_access(conn, flavorid, project_id, reject_public=reject_public)

    async def remove_access(self, flavorid: str, project_id: str) -> list[str]:
        async with self.db.write() as conn:
            return await remove_access(conn, flavorid, project_id)
