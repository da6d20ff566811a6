"""Undoing what a request changed when its cast finds the broker away (bus.base.BusUnavailable).

The API answers 503 (each family's own fault) and a client's retry must start clean, so nothing
the request wrote stays behind: a create's rows (and with them the quota usage they count), its
ports, mappings, group memberships and actions go; an action's task_state CAS is put back (by a
CAS on the state the request set, so a worker that moved it meanwhile wins) with the columns the
request wrote and the instance action it recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.bus.base import BusUnavailable
from cumulo.compute import instances as inst_db
from cumulo.compute import netports
from cumulo.compute.models import (
    block_device_mapping,
    instance_action_events,
    instance_actions,
    instance_group_member,
    instances,
    migrations,
)
from cumulo.context import RequestContext
from cumulo.db import Database

LOG = logging.getLogger(__name__)

# Columns a request's CAS never owns: put back by nobody.
_KEEP = frozenset({"updated_at", "created_at", "id", "uuid"})


async def cast_or_undo(send: Awaitable[None], undo: Callable[[], Awaitable[None]]) -> None:
    """Await the cast `send`; when the broker is unreachable, run `undo`, then raise the 503."""
    try:
        await send
    except BusUnavailable:
        try:
            await undo()
        except Exception:  # the answer stays the 503; what was left is logged for the operator
            LOG.exception("undoing a request after the broker was unreachable failed")
        raise


async def remove_created(db: Database, net: netports.NetworkPorts | None, rows: Iterable[Mapping[str, Any]]) -> None:
    """A create whose build cast was not sent: its servers never existed (ports released, rows,
    mappings, memberships and actions deleted; the quota counts rows, so it is free again)."""
    rows = list(rows)
    uuids = [str(r["uuid"]) for r in rows]
    if net is not None:
        for row in rows:
            if netports.port_ids_of(row):
                await net.release_ports_of_device(str(row["uuid"]), keep=netports.user_ports_of(row))
    async with db.write() as conn:
        await _drop_actions(conn, instance_actions.c.instance_uuid.in_(uuids))
        await conn.execute(sa.delete(instance_group_member).where(instance_group_member.c.instance_uuid.in_(uuids)))
        await conn.execute(sa.delete(block_device_mapping).where(block_device_mapping.c.instance_uuid.in_(uuids)))
        await conn.execute(sa.delete(instances).where(instances.c.uuid.in_(uuids)))


async def revert_begin(db: Database, ctx: RequestContext, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Put back what a request's CAS (`ComputeService.begin`, delete's DELETING) changed: the row
    from `after` to `before` unless a worker moved it on, and the action the request recorded."""
    uuid = str(after["uuid"])
    values = {k: before[k] for k in after if k in before and k not in _KEEP and before[k] != after[k]}
    async with db.write() as conn:
        if values:
            await inst_db.cas_update(conn, uuid, values, expected_task_state=after.get("task_state"),
                                     expected_vm_state=after.get("vm_state"))
        await _drop_actions(conn, sa.and_(instance_actions.c.instance_uuid == uuid,
                                          instance_actions.c.request_id == ctx.request_id))


async def forget_migration(db: Database, migration_uuid: str) -> None:
    """The migration record a resize (or migrate) request wrote before its cast."""
    async with db.write() as conn:
        await conn.execute(sa.delete(migrations).where(migrations.c.uuid == migration_uuid))


async def _drop_actions(conn: AsyncConnection, where: Any) -> None:
    ids = sa.select(instance_actions.c.id).where(where)
    await conn.execute(sa.delete(instance_action_events).where(instance_action_events.c.action_id.in_(ids)))
    await conn.execute(sa.delete(instance_actions).where(where))
