"""Volume records as the service hands them to the API: the row plus its metadata, admin metadata,
image metadata, attachments and type name, loaded for many volumes at once; and the checks of
the fields requests write (names, metadata, booleans, sizes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.volume.models import (
    volume_admin_metadata,
    volume_attachments,
    volume_image_metadata,
    volume_metadata,
    volume_types,
    volumes,
)

MAX_META_ITEMS = 128  # per request; Cinder bounds the body instead, we bound the work


async def kv_of(conn: AsyncConnection, table: sa.Table, owner: str, ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {i: {} for i in ids}
    if not ids:
        return out
    col = table.c[owner]
    rows = await conn.execute(sa.select(col, table.c.key, table.c.value).where(col.in_(list(ids))).order_by(table.c.id))
    for oid, key, value in rows:
        out.setdefault(oid, {})[key] = value
    return out


async def write_kv(conn: AsyncConnection, table: sa.Table, owner: str, owner_id: str, items: dict[str, str],
                   *, replace: bool) -> None:
    """Set `items` on the owner; with `replace`, the owner's other keys go."""
    col = table.c[owner]
    if replace:
        await conn.execute(table.delete().where(col == owner_id))
    else:
        if items:
            await conn.execute(table.delete().where(col == owner_id, table.c.key.in_(list(items))))
    for key, value in items.items():
        await conn.execute(table.insert().values({owner: owner_id, "key": key, "value": value}))


async def load(conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Records of volume rows, in the same order."""
    ids = [r.id for r in rows]
    meta = await kv_of(conn, volume_metadata, "volume_id", ids)
    admin = await kv_of(conn, volume_admin_metadata, "volume_id", ids)
    image = await kv_of(conn, volume_image_metadata, "volume_id", ids)
    attached: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        att = await conn.execute(
            sa.select(volume_attachments)
            .where(volume_attachments.c.volume_id.in_(ids), volume_attachments.c.attach_status == "attached")
            .order_by(volume_attachments.c.created_at)
        )
        for a in att.mappings():
            attached[a["volume_id"]].append(dict(a))
    type_ids = {r.volume_type_id for r in rows if r.volume_type_id}
    names: dict[str, str] = {}
    if type_ids:
        names = dict((await conn.execute(
            sa.select(volume_types.c.id, volume_types.c.name).where(volume_types.c.id.in_(type_ids)))).all())
    out = []
    for r in rows:
        rec = dict(r._mapping)
        rec["metadata"] = meta[r.id]
        rec["admin_metadata"] = admin[r.id]
        rec["image_metadata"] = image[r.id]
        rec["attachments"] = attached[r.id]
        rec["volume_type"] = names.get(r.volume_type_id) if r.volume_type_id else None
        out.append(rec)
    return out


async def load_one(conn: AsyncConnection, volume_id: str) -> dict[str, Any]:
    row = (await conn.execute(sa.select(volumes).where(volumes.c.id == volume_id))).first()
    if row is None:
        raise errors.NotFound(f"Volume {volume_id} could not be found.")
    return (await load(conn, [row]))[0]


# ---- field checks ------------------------------------------------------------------------------


def text(value: Any, field: str, *, max_len: int = 255, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value!r}. {value!r} is not of type 'string'")
    if len(value) > max_len:
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value[:32]}... is too long (maximum {max_len}).")
    if "\x00" in value:
        raise errors.Invalid(f"Invalid input for field/attribute {field}: a NUL character is not allowed.")
    return value


def metadata(value: Any, field: str = "metadata") -> dict[str, str]:
    """Cinder's metadata: an object of string keys (1-255) to string values (0-255)."""
    if not isinstance(value, dict):
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value!r}. {value!r} is not of type 'object'")
    if len(value) > MAX_META_ITEMS:
        raise errors.Invalid(f"Invalid input for field/attribute {field}: more than {MAX_META_ITEMS} items.")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not k or len(k) > 255:
            raise errors.Invalid(f"Invalid input for field/attribute {field}: metadata keys must be 1 to 255 characters.")
        checked = text(v, f"{field}/{k}", nullable=False)
        assert checked is not None
        text(k, f"{field} key")
        out[k] = checked
    return out


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def boolean(value: Any, field: str) -> bool:
    """Cinder's strict boolean (bool, or the strings oslo's bool_from_string strict accepts)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise errors.Invalid(f"Invalid input received: {field} must be a boolean, not {str(value)[:32]!r}.")


def size(value: Any, field: str = "size") -> int:
    """A positive whole number of GiB (an int, or a string of digits as Cinder accepts)."""
    if isinstance(value, bool):
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value}. {value} is not of type 'integer'")
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
        value = int(value.strip())
    if not isinstance(value, int):
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {str(value)[:32]}. It must be an integer.")
    if value < 1:
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value}. {value} is less than the minimum of 1")
    if value > 1 << 31:
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value}. {value} is greater than the maximum of {1 << 31}")
    return value


def unwrap(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise errors.Invalid(f"Missing required element '{key}' in request body.")
    item: dict[str, Any] = body[key]
    return item
