"""What a namespace holds: objects (named groups of property definitions), properties (one
JSON-schema fragment each) and tags. Each lookup starts from the namespace, so a namespace the
caller cannot see hides its contents too; deleting from a protected namespace is refused (403)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database, isotime, utcnow
from cumulo.image.metadefs import schemas
from cumulo.image.metadefs._common import check_body, check_name, load_namespace, validator, writing
from cumulo.image.metadefs.models import metadef_namespace_resource_types as assocs
from cumulo.image.metadefs.models import metadef_objects as objects
from cumulo.image.metadefs.models import metadef_properties as properties
from cumulo.image.metadefs.models import metadef_resource_types as resource_types
from cumulo.image.metadefs.models import metadef_tags as tags

_OBJECT = validator(schemas.object_schema())
_PROPERTY = validator(schemas.property_schema())
_TAG = validator(schemas.tag_schema())
_TAGS = validator({"type": "object",
                   "properties": {"tags": {"type": "array", "items": schemas.request_schema(schemas.tag_schema())}},
                   "required": ["tags"], "additionalProperties": False})
MAX_TAGS = 128  # refuse bulk bodies beyond this many tags per request (Glance's metadef tag quota)


def _href(ns: str, kind: str, name: str) -> str:
    return f"/v2/metadefs/namespaces/{ns}/{kind}/{name}"


def property_body(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row["json_schema"]).items() if v is not None}


def render_property(row: Any) -> dict[str, Any]:
    return {"name": row["name"], **property_body(row)}


def object_summary(row: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"name": row["name"]}
    if row["description"] is not None:
        view["description"] = row["description"]
    view["required"] = list(row["required"])
    view["properties"] = dict(row["json_schema"])
    return view


def render_object(row: Any, ns: str) -> dict[str, Any]:
    return {
        **object_summary(row),
        "created_at": isotime(row["created_at"]),
        "updated_at": isotime(row["updated_at"]),
        "schema": "/v2/schemas/metadefs/object",
        "self": _href(ns, "objects", row["name"]),
    }


def render_tag(row: Any) -> dict[str, Any]:
    return {"name": row["name"], "created_at": isotime(row["created_at"]), "updated_at": isotime(row["updated_at"])}


def _not_found(kind: str, name: str, ns: str) -> errors.NotFound:
    return errors.NotFound(f"The metadata definition {kind} with name={name} was not found in namespace={ns}.")


def _duplicate(kind: str, name: str, ns: str) -> errors.Conflict:
    return errors.Conflict(f"A metadata definition {kind} with name={name} already exists in namespace={ns}.")


def _protected(kind: str, name: str) -> errors.Forbidden:
    return errors.Forbidden(f"Metadata definition {kind} {name} is protected and cannot be deleted.")


async def _row(conn: AsyncConnection, table: sa.Table, ns_id: int, name: str) -> dict[str, Any] | None:
    q = sa.select(table).where(table.c.namespace_id == ns_id, table.c.name == name)
    row = (await conn.execute(q)).mappings().first()
    return dict(row) if row else None


async def _taken(conn: AsyncConnection, table: sa.Table, ns_id: int, name: str, kind: str, ns: str) -> None:
    if await _row(conn, table, ns_id, name) is not None:
        raise _duplicate(kind, name, ns)


# ---- inserts shared with namespace creation --------------------------------------------------


def _property_fields(definition: Any) -> dict[str, Any]:
    fields = dict(definition)
    fields.pop("name", None)
    return fields


async def insert_property(conn: AsyncConnection, ns_id: int, name: str, definition: Any) -> dict[str, Any]:
    check_name(name, "property")
    body = check_body({**dict(definition), "name": name}, _PROPERTY, "property")
    now = utcnow()
    values = {"namespace_id": ns_id, "name": name, "json_schema": _property_fields(body),
              "created_at": now, "updated_at": now}
    await conn.execute(sa.insert(properties).values(**values))
    return values


async def insert_object(conn: AsyncConnection, ns_id: int, body: Any) -> dict[str, Any]:
    body = check_body(body, _OBJECT, "object")
    now = utcnow()
    values = {
        "namespace_id": ns_id, "name": check_name(body["name"], "object"), "description": body.get("description"),
        "required": list(body.get("required") or []), "json_schema": dict(body.get("properties") or {}),
        "created_at": now, "updated_at": now,
    }
    await conn.execute(sa.insert(objects).values(**values))
    return values


async def insert_tag(conn: AsyncConnection, ns_id: int, name: Any) -> dict[str, Any]:
    now = utcnow()
    values = {"namespace_id": ns_id, "name": check_name(name, "tag"), "created_at": now, "updated_at": now}
    await conn.execute(sa.insert(tags).values(**values))
    return values


# ---- objects ----------------------------------------------------------------------------------


async def list_objects(db: Database, ctx: RequestContext, ns: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        row = await load_namespace(conn, ctx, ns)
        q = sa.select(objects).where(objects.c.namespace_id == row["id"]).order_by(objects.c.name)
        return [render_object(o, ns) for o in (await conn.execute(q)).mappings()]


async def create_object(db: Database, ctx: RequestContext, ns: str, body: Any) -> dict[str, Any]:
    body = check_body(body, _OBJECT, "object")
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, ns)
        await _taken(conn, objects, row["id"], check_name(body["name"], "object"), "object", ns)
        return render_object(await insert_object(conn, row["id"], body), ns)


async def show_object(db: Database, ctx: RequestContext, ns: str, name: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await load_namespace(conn, ctx, ns)
        found = await _row(conn, objects, row["id"], name)
        if found is None:
            raise _not_found("object", name, ns)
        return render_object(found, ns)


async def _update(db: Database, ctx: RequestContext, ns: str, table: sa.Table, kind: str, name: str,
                  new_name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Rename and rewrite one object, property or tag of a namespace; the updated row."""
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, ns)
        found = await _row(conn, table, row["id"], name)
        if found is None:
            raise _not_found(kind, name, ns)
        if new_name != name:
            await _taken(conn, table, row["id"], new_name, kind, ns)
        values = {"name": new_name, **fields, "updated_at": utcnow()}
        await conn.execute(sa.update(table).where(table.c.id == found["id"]).values(**values))
        return {**found, **values}


async def update_object(db: Database, ctx: RequestContext, ns: str, name: str, body: Any) -> dict[str, Any]:
    body = check_body(body, _OBJECT, "object")
    new_name = check_name(body["name"], "object")
    fields = {"description": body.get("description"), "required": list(body.get("required") or []),
              "json_schema": dict(body.get("properties") or {})}
    return render_object(await _update(db, ctx, ns, objects, "object", name, new_name, fields), ns)


async def delete_object(db: Database, ctx: RequestContext, ns: str, name: str) -> None:
    await _delete_one(db, ctx, ns, objects, "object", name)


# ---- properties -------------------------------------------------------------------------------


async def list_properties(db: Database, ctx: RequestContext, ns: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await load_namespace(conn, ctx, ns)
        q = sa.select(properties).where(properties.c.namespace_id == row["id"]).order_by(properties.c.name)
        return {p["name"]: property_body(p) for p in (await conn.execute(q)).mappings()}


async def create_property(db: Database, ctx: RequestContext, ns: str, body: Any) -> dict[str, Any]:
    body = check_body(body, _PROPERTY, "property")
    name = check_name(body["name"], "property")
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, ns)
        await _taken(conn, properties, row["id"], name, "property", ns)
        return render_property(await insert_property(conn, row["id"], name, body))


async def _unprefixed(conn: AsyncConnection, ns_id: int, name: str, resource_type: str | None) -> str:
    """With ?resource_type=, a property is addressed by its prefixed name (Glance strips the prefix)."""
    if not resource_type:
        return name
    q = (
        sa.select(assocs.c.prefix)
        .join(resource_types, resource_types.c.id == assocs.c.resource_type_id)
        .where(assocs.c.namespace_id == ns_id, resource_types.c.name == resource_type)
    )
    prefix = (await conn.execute(q)).scalar()
    if prefix and name.startswith(prefix):
        return name[len(prefix):]
    return name


async def show_property(
    db: Database, ctx: RequestContext, ns: str, name: str, resource_type: str | None = None
) -> dict[str, Any]:
    async with db.read() as conn:
        row = await load_namespace(conn, ctx, ns)
        found = await _row(conn, properties, row["id"], await _unprefixed(conn, row["id"], name, resource_type))
        if found is None:
            raise _not_found("property", name, ns)
        return render_property(found)


async def update_property(db: Database, ctx: RequestContext, ns: str, name: str, body: Any) -> dict[str, Any]:
    body = check_body(body, _PROPERTY, "property")
    new_name = check_name(body["name"], "property")
    fields = {"json_schema": _property_fields(body)}
    return render_property(await _update(db, ctx, ns, properties, "property", name, new_name, fields))


async def delete_property(db: Database, ctx: RequestContext, ns: str, name: str) -> None:
    await _delete_one(db, ctx, ns, properties, "property", name)


# ---- tags -------------------------------------------------------------------------------------


async def list_tags(db: Database, ctx: RequestContext, ns: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        row = await load_namespace(conn, ctx, ns)
        q = sa.select(tags).where(tags.c.namespace_id == row["id"]).order_by(tags.c.id)
        return [render_tag(t) for t in (await conn.execute(q)).mappings()]


async def create_tag(db: Database, ctx: RequestContext, ns: str, name: str) -> dict[str, Any]:
    check_name(name, "tag")
    if len(name) > 255:
        raise errors.Invalid("The tag name may be at most 255 characters long.")
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, ns)
        await _taken(conn, tags, row["id"], name, "tag", ns)
        return render_tag(await insert_tag(conn, row["id"], name))


async def create_tags(db: Database, ctx: RequestContext, ns: str, body: Any, append: bool) -> list[dict[str, Any]]:
    """POST .../tags: replace the namespace's tags with these (or add them, with X-Openstack-Append)."""
    body = check_body(body, _TAGS, "tags")
    names = [check_name(t["name"], "tag") for t in body["tags"]]
    if len(names) > MAX_TAGS:
        raise errors.PayloadTooLarge(f"Maximum number of tags per request exceeded: {MAX_TAGS}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise errors.Conflict(f"A metadata tag with name={dup} already exists in namespace={ns}.")
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, ns)
        if append:
            for name in names:
                await _taken(conn, tags, row["id"], name, "tag", ns)
        else:
            await conn.execute(sa.delete(tags).where(tags.c.namespace_id == row["id"]))
        for name in names:
            await insert_tag(conn, row["id"], name)
    return [{"name": n} for n in names]


async def show_tag(db: Database, ctx: RequestContext, ns: str, name: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await load_namespace(conn, ctx, ns)
        found = await _row(conn, tags, row["id"], name)
        if found is None:
            raise _not_found("tag", name, ns)
        return render_tag(found)


async def update_tag(db: Database, ctx: RequestContext, ns: str, name: str, body: Any) -> dict[str, Any]:
    body = check_body(body, _TAG, "tag")
    new_name = check_name(body["name"], "tag")
    return render_tag(await _update(db, ctx, ns, tags, "tag", name, new_name, {}))


async def delete_tag(db: Database, ctx: RequestContext, ns: str, name: str) -> None:
    await _delete_one(db, ctx, ns, tags, "tag", name)


# ---- deletes ----------------------------------------------------------------------------------


async def _delete_one(db: Database, ctx: RequestContext, ns: str, table: sa.Table, kind: str, name: str) -> None:
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, ns)
        found = await _row(conn, table, row["id"], name)
        if found is None:
            raise _not_found(kind, name, ns)
        if row["protected"]:
            raise _protected(kind, name)
        await conn.execute(sa.delete(table).where(table.c.id == found["id"]))


KINDS = {"objects": objects, "properties": properties, "tags": tags}


async def delete_all(db: Database, ctx: RequestContext, ns: str, kind: str) -> None:
    """DELETE .../objects, .../properties or .../tags: everything of that kind in the namespace."""
    table = KINDS[kind]
    async with writing(db) as conn:
        row = await load_namespace(conn, ctx, ns)
        if row["protected"]:
            raise errors.Forbidden(f"Metadata definition namespace {ns} is protected: its {kind} cannot be deleted.")
        await conn.execute(sa.delete(table).where(table.c.namespace_id == row["id"]))
