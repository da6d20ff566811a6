"""Namespaces and resource types: create, list (filtered by visibility and resource type, paged
by namespace name), show (with their associations, properties, objects and tags), replace and
delete; resource-type associations of a namespace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database, isotime, utcnow
from cumulo.image.metadefs import children, schemas
from cumulo.image.metadefs._common import (
    can_see,
    check_body,
    check_name,
    load_namespace,
    namespace_not_found,
    parse_limit,
    parse_sort_dir,
    validator,
    writing,
)
from cumulo.image.metadefs.models import (
    metadef_namespace_resource_types as assocs,
)
from cumulo.image.metadefs.models import (
    metadef_namespaces as namespaces,
)
from cumulo.image.metadefs.models import (
    metadef_objects,
    metadef_properties,
    metadef_tags,
)
from cumulo.image.metadefs.models import (
    metadef_resource_types as resource_types,
)

_NAMESPACE = validator(schemas.namespace_schema())
_ASSOCIATION = validator(schemas.resource_type_association_schema())
SORT_KEYS = ("created_at", "updated_at", "namespace", "display_name")


def namespace_href(name: str) -> str:
    return f"/v2/metadefs/namespaces/{name}"


def render(row: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "namespace": row["namespace"],
        "visibility": row["visibility"],
        "protected": bool(row["protected"]),
        "owner": row["owner"],
        "created_at": isotime(row["created_at"]),
        "updated_at": isotime(row["updated_at"]),
        "schema": "/v2/schemas/metadefs/namespace",
        "self": namespace_href(row["namespace"]),
    }
    for key in ("display_name", "description"):
        if row[key] is not None:
            view[key] = row[key]
    return view


def render_association(row: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"name": row["name"]}
    for key in ("prefix", "properties_target"):
        if row[key] is not None:
            view[key] = row[key]
    view["created_at"] = isotime(row["created_at"])
    view["updated_at"] = isotime(row["updated_at"])
    return view


def _association_query() -> sa.Select[Any]:
    return sa.select(
        assocs.c.namespace_id, resource_types.c.name, assocs.c.prefix, assocs.c.properties_target,
        assocs.c.created_at, assocs.c.updated_at,
    ).join(resource_types, resource_types.c.id == assocs.c.resource_type_id)


async def _associations(conn: AsyncConnection, ns_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    if ns_ids:
        q = _association_query().where(assocs.c.namespace_id.in_(ns_ids)).order_by(resource_types.c.name)
        for row in (await conn.execute(q)).mappings():
            found.setdefault(row["namespace_id"], []).append(render_association(row))
    return found


# ---- namespaces -----------------------------------------------------------------------------


async def list_namespaces(
    db: Database, ctx: RequestContext, params: dict[str, str]
) -> tuple[list[dict[str, Any]], str | None]:
    limit = parse_limit(params.get("limit"))
    sort_key = params.get("sort_key", "created_at")
    if sort_key not in SORT_KEYS:
        raise errors.Invalid(f"Invalid sort key: {sort_key}. It must be one of the following: {', '.join(SORT_KEYS)}.")
    sort_dir = parse_sort_dir(params.get("sort_dir"))
    q = sa.select(namespaces)
    if not ctx.is_admin:
        q = q.where(sa.or_(namespaces.c.visibility == "public", namespaces.c.owner == ctx.project_id))
    if "visibility" in params:
        if params["visibility"] not in schemas.VISIBILITIES:
            raise errors.Invalid(f"Invalid visibility value: {params['visibility']}")
        q = q.where(namespaces.c.visibility == params["visibility"])
    if params.get("resource_types"):
        wanted = [n.strip() for n in params["resource_types"].split(",") if n.strip()]
        linked = (
            sa.select(assocs.c.namespace_id)
            .join(resource_types, resource_types.c.id == assocs.c.resource_type_id)
            .where(resource_types.c.name.in_(wanted))
        )
        q = q.where(namespaces.c.id.in_(linked))
    column = namespaces.c[sort_key]
    order = (column.asc(), namespaces.c.id.asc()) if sort_dir == "asc" else (column.desc(), namespaces.c.id.desc())
    async with db.read() as conn:
        if "marker" in params:
            marker = (
                await conn.execute(sa.select(namespaces).where(namespaces.c.namespace == params["marker"]))
            ).mappings().first()
            if marker is None or not can_see(ctx, marker):
                raise namespace_not_found(params["marker"])
            mval, mid = marker[sort_key], marker["id"]
            if sort_dir == "asc":
                q = q.where(sa.or_(column > mval, sa.and_(column == mval, namespaces.c.id > mid)))
            else:
                q = q.where(sa.or_(column < mval, sa.and_(column == mval, namespaces.c.id < mid)))
        rows = list((await conn.execute(q.order_by(*order).limit(limit + 1))).mappings())
        more = len(rows) > limit
        rows = rows[:limit]
        links = await _associations(conn, [r["id"] for r in rows])
    views = []
    for row in rows:
        view = render(row)
        if links.get(row["id"]):
            view["resource_type_associations"] = links[row["id"]]
        views.append(view)
    return views, (rows[-1]["namespace"] if more and rows else None)


async def create_namespace(db: Database, ctx: RequestContext, body: Any) -> dict[str, Any]:
    body = check_body(body, _NAMESPACE, "namespace")
    name = check_name(body["namespace"], "namespace")
    for kind in ("objects", "tags", "resource_type_associations"):
        names = [item.get("name") for item in body.get(kind, [])]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise errors.Conflict(f"Duplicate name {dup!r} in the namespace's {kind}.")
    now = utcnow()
    async with writing(db) as conn:
        taken = (await conn.execute(sa.select(namespaces.c.id).where(namespaces.c.namespace == name))).first()
        if taken is not None:
            raise errors.Conflict(f"The metadata definition namespace={name} already exists.")
        result = await conn.execute(
            sa.insert(namespaces).values(
                namespace=name,
                display_name=body.get("display_name"),
                description=body.get("description"),
                visibility=body.get("visibility", "private"),
                protected=bool(body.get("protected", False)),
                owner=body.get("owner") or ctx.project_id,
                created_at=now,
                updated_at=now,
            )
        )
        ns_id = int(result.inserted_primary_key[0])  # type: ignore[index]  # set on every INSERT of this table
        for assoc in body.get("resource_type_associations", []):
            await _associate(conn, ns_id, name, check_body(assoc, _ASSOCIATION, "resource_type_association"))
        for prop_name, definition in (body.get("properties") or {}).items():
            await children.insert_property(conn, ns_id, prop_name, definition)
        for obj in body.get("objects", []):
            await children.insert_object(conn, ns_id, obj)
        for tag in body.get("tags", []):
            await children.insert_tag(conn, ns_id, tag.get("name"))
        return await _detail(conn, ctx, name, None)


async def show_namespace(db: Database, ctx: RequestContext, name: str, resource_type: str | None) -> dict[str, Any]:
    async with db.read() as conn:
        return await _detail(conn, ctx, name, resource_type)


async def _detail(conn: AsyncConnection, ctx: RequestContext, name: str, resource_type: str | None) -> dict[str, Any]:
    """The namespace with what it holds. With `resource_type`, property names carry that type's prefix."""
    row = await load_namespace(conn, ctx, name)
    view = render(row)
    links = (await _associations(conn, [row["id"]])).get(row["id"], [])
    if links:
        view["resource_type_associations"] = links
    prefix = ""
    if resource_type:
        prefix = next((a.get("prefix", "") for a in links if a["name"] == resource_type), "")
    props = (
        await conn.execute(
            sa.select(metadef_properties).where(metadef_properties.c.namespace_id == row["id"])
            .order_by(metadef_properties.c.name)
        )
    ).mappings()
    found = {prefix + p["name"]: children.property_body(p) for p in props}
    if found:
        view["properties"] = found
    objs = (
        await conn.execute(
            sa.select(metadef_objects).where(metadef_objects.c.namespace_id == row["id"]).order_by(metadef_objects.c.name)
        )
    ).mappings()
    objects = [children.object_summary(o) for o in objs]
    if objects:
        view["objects"] = objects
    tags = (
        await conn.execute(
            sa.select(metadef_tags.c.name).where(metadef_tags.c.namespace_id == row["id"]).order_by(metadef_tags.c.id)
        )
    ).scalars()
    tag_list = [{"name": t} for t in tags]
    if tag_list:
        view["tags"] = tag_list
    return view


async def update_namespace(db: Database, ctx: RequestContext, name: str, body: Any) -> dict[str, Any]:
    """PUT replaces the namespace's own attributes (what it holds is managed through its sub-resources)."""
    body = check_body(body, _NAMESPACE, "namespace")
    new_name = check_name(body["namespace"], "namespace")
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, name)
        if new_name != name:
            taken = (await conn.execute(sa.select(namespaces.c.id).where(namespaces.c.namespace == new_name))).first()
            if taken is not None:
                raise errors.Conflict(f"The metadata definition namespace={new_name} already exists.")
        await conn.execute(
            sa.update(namespaces)
            .where(namespaces.c.id == row["id"])
            .values(
                namespace=new_name,
                display_name=body.get("display_name"),
                description=body.get("description"),
                visibility=body.get("visibility", "private"),
                protected=bool(body.get("protected", False)),
                owner=body.get("owner") or row["owner"],
                updated_at=utcnow(),
            )
        )
        fresh = (await conn.execute(sa.select(namespaces).where(namespaces.c.id == row["id"]))).mappings().one()
        return render(fresh)


async def delete_namespace(db: Database, ctx: RequestContext, name: str) -> None:
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, name)
        if row["protected"]:
            raise errors.Forbidden(f"Metadata definition namespace {name} is protected and cannot be deleted.")
        await delete_contents(conn, row["id"])
        await conn.execute(sa.delete(namespaces).where(namespaces.c.id == row["id"]))


async def delete_contents(conn: AsyncConnection, ns_id: int) -> None:
    """Children first, explicitly (the foreign keys cascade too, but this does not rely on it)."""
    for table in (metadef_objects, metadef_properties, metadef_tags, assocs):
        await conn.execute(sa.delete(table).where(table.c.namespace_id == ns_id))


# ---- resource types -------------------------------------------------------------------------


async def list_resource_types(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(resource_types).order_by(resource_types.c.id))).mappings()
        return [
            {"name": r["name"], "created_at": isotime(r["created_at"]), "updated_at": isotime(r["updated_at"])}
            for r in rows
        ]


async def list_associations(db: Database, ctx: RequestContext, name: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        row = await load_namespace(conn, ctx, name)
        return (await _associations(conn, [row["id"]])).get(row["id"], [])


async def create_association(db: Database, ctx: RequestContext, name: str, body: Any) -> dict[str, Any]:
    body = check_body(body, _ASSOCIATION, "resource_type_association")
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, name)
        return await _associate(conn, row["id"], name, body)


async def _associate(conn: AsyncConnection, ns_id: int, ns_name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Link a resource type to the namespace; an unknown type name is created, as Glance does."""
    rt_name = check_name(body["name"], "resource type")
    now = utcnow()
    rt_id = (await conn.execute(sa.select(resource_types.c.id).where(resource_types.c.name == rt_name))).scalar()
    if rt_id is None:
        result = await conn.execute(
            sa.insert(resource_types).values(name=rt_name, protected=False, created_at=now, updated_at=now)
        )
        rt_id = int(result.inserted_primary_key[0])  # type: ignore[index]  # set on every INSERT of this table
    linked = await conn.execute(
        sa.select(assocs.c.namespace_id).where(assocs.c.namespace_id == ns_id, assocs.c.resource_type_id == rt_id)
    )
    if linked.first() is not None:
        raise errors.Conflict(
            f"The metadata definition resource-type association of resource-type={rt_name} to "
            f"namespace={ns_name}, already exists."
        )
    await conn.execute(
        sa.insert(assocs).values(
            namespace_id=ns_id, resource_type_id=rt_id, prefix=body.get("prefix"),
            properties_target=body.get("properties_target"), created_at=now, updated_at=now,
        )
    )
    return render_association({"name": rt_name, "prefix": body.get("prefix"),
                               "properties_target": body.get("properties_target"), "created_at": now, "updated_at": now})


async def delete_association(db: Database, ctx: RequestContext, name: str, rt_name: str) -> None:
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, name)
        rt_id = (await conn.execute(sa.select(resource_types.c.id).where(resource_types.c.name == rt_name))).scalar()
        missing = errors.NotFound(
            f"The metadata definition resource-type association of resource-type={rt_name} to "
            f"namespace={name}, was not found."
        )
        where = (assocs.c.namespace_id == row["id"], assocs.c.resource_type_id == rt_id)
        if rt_id is None or (await conn.execute(sa.select(assocs.c.namespace_id).where(*where))).first() is None:
            raise missing
        if row["protected"]:
            raise errors.Forbidden(
                f"Metadata definition resource-type-association {rt_name} is protected and cannot be deleted."
            )
        await conn.execute(sa.delete(assocs).where(*where))
