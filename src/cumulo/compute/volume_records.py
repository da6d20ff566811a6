"""Block device mapping rows (Nova's block_device_mapping): reads, writes and device names.

Reads and writes run inside the caller's transaction (`models.block_device_mapping`).

A record is a dict of the row's columns with `connection_info` parsed from JSON. Rows of a server
are ordered as Nova lists them: the boot disk first (boot_index 0, 1, ...), then the others in the
order they were made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import block_device_mapping as bdm
from cumulo.db import new_uuid, utcnow

# Nova's libvirt device names: a virtio disk prefix and a letter suffix ("/dev/vdb"); "/dev/vda" is
# an image-backed server's root.
DEVICE_RE = re.compile(r"^(/dev/)?(vd|sd|xvd|hd)([a-z]{1,2})$")
ROOT_DEVICE = "/dev/vda"


def record(row: Any) -> dict[str, Any]:
    return from_columns(row._mapping)


def from_columns(columns: Mapping[str, Any]) -> dict[str, Any]:
    """A record from a mapping row's column values (a row of this table, or taken from a join)."""
    rec = dict(columns)
    rec["connection_info"] = json.loads(rec["connection_info"]) if rec.get("connection_info") else None
    return rec


def _ordered(q: sa.Select[Any]) -> sa.Select[Any]:
    # Boot disks first (boot_index 0, 1, ...; NULL and -1 after), then creation order.
    not_boot = sa.or_(bdm.c.boot_index.is_(None), bdm.c.boot_index < 0)
    return q.order_by(sa.case((not_boot, 1), else_=0), bdm.c.boot_index, bdm.c.id)


async def of_instance(conn: AsyncConnection, instance_uuid: str) -> list[dict[str, Any]]:
    rows = (await conn.execute(_ordered(sa.select(bdm).where(bdm.c.instance_uuid == instance_uuid)))).all()
    return [record(r) for r in rows]


async def of_instances(conn: AsyncConnection, instance_uuids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {u: [] for u in instance_uuids}
    if not instance_uuids:
        return out
    for start in range(0, len(instance_uuids), 500):
        chunk = list(instance_uuids[start:start + 500])
        for r in (await conn.execute(_ordered(sa.select(bdm).where(bdm.c.instance_uuid.in_(chunk))))).all():
            out[r.instance_uuid].append(record(r))
    return out


async def of_volume(conn: AsyncConnection, volume_id: str) -> list[dict[str, Any]]:
    rows = (await conn.execute(_ordered(sa.select(bdm).where(bdm.c.volume_id == volume_id)))).all()
    return [record(r) for r in rows]


async def volume_of_instance(conn: AsyncConnection, instance_uuid: str, volume_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(bdm).where(
        bdm.c.instance_uuid == instance_uuid, bdm.c.volume_id == volume_id,
        bdm.c.destination_type == "volume"))).first()
    return record(row) if row is not None else None


async def get(conn: AsyncConnection, bdm_uuid: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(bdm).where(bdm.c.uuid == bdm_uuid))).first()
    return record(row) if row is not None else None


async def insert(conn: AsyncConnection, *, instance_uuid: str, source_type: str, destination_type: str,
                 **values: Any) -> dict[str, Any]:
    """A new row; `values` are other columns (connection_info as a dict). Returns the record."""
    values = dict(values)
    if isinstance(values.get("connection_info"), Mapping):
        values["connection_info"] = json.dumps(values["connection_info"])
    values.setdefault("delete_on_termination", False)
    values.setdefault("no_device", False)
    uuid = values.pop("uuid", None) or new_uuid()
    now = utcnow()
    await conn.execute(bdm.insert().values(uuid=uuid, instance_uuid=instance_uuid, source_type=source_type,
                                           destination_type=destination_type, created_at=now, updated_at=now,
                                           **values))
    rec = await get(conn, uuid)
    assert rec is not None
    return rec


async def update(conn: AsyncConnection, bdm_uuid: str, **values: Any) -> None:
    if "connection_info" in values and values["connection_info"] is not None \
            and not isinstance(values["connection_info"], str):
        values["connection_info"] = json.dumps(values["connection_info"])
    await conn.execute(bdm.update().where(bdm.c.uuid == bdm_uuid).values(updated_at=utcnow(), **values))


async def delete(conn: AsyncConnection, bdm_uuid: str) -> None:
    await conn.execute(bdm.delete().where(bdm.c.uuid == bdm_uuid))


async def delete_of_instance(conn: AsyncConnection, instance_uuid: str) -> None:
    await conn.execute(bdm.delete().where(bdm.c.instance_uuid == instance_uuid))


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa (Nova's block_device.generate_device_letter)."""
    out = ""
    n += 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def _index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n - 1


def normalize_device(name: str) -> str | None:
    """"/dev/vdc" or "vdc" -> "/dev/vdc"; None when it is no disk device name Nova accepts."""
    m = DEVICE_RE.match(name)
    return None if m is None else f"/dev/{m.group(2)}{m.group(3)}"


def next_device_name(used: Iterable[str | None], *, prefix: str = "vd") -> str:
    """The first free /dev/<prefix><letter> after the root (vda), as Nova's get_next_device_name."""
    taken = {0}
    for name in used:
        m = DEVICE_RE.match(name or "")
        if m is not None:
            taken.add(_index(m.group(3)))
    i = 0
    while i in taken:
        i += 1
    return f"/dev/{prefix}{_letters(i)}"
