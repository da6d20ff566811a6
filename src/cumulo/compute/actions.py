"""Instance actions and events (os-instance-actions): the API records an action, workers add events."""

from __future__ import annotations

import traceback as tb
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import instance_action_events, instance_actions
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow

# Nova's action names.
CREATE = "create"
DELETE = "delete"
STOP = "stop"
START = "start"
REBOOT = "reboot"
PAUSE = "pause"
UNPAUSE = "unpause"
SUSPEND = "suspend"
RESUME = "resume"
LOCK = "lock"
UNLOCK = "unlock"
REBUILD = "rebuild"
RESIZE = "resize"
CONFIRM_RESIZE = "confirmResize"
REVERT_RESIZE = "revertResize"
CREATE_IMAGE = "createImage"
BACKUP = "createBackup"
RESTORE = "restore"
LIVE_MIGRATION = "live-migration"  # os-migrateLive (Nova's instance action name)


async def record_action(conn: AsyncConnection, ctx: RequestContext, instance_uuid: str, action: str) -> int:
    res = await conn.execute(
        sa.insert(instance_actions).values(
            action=action,
            instance_uuid=instance_uuid,
            request_id=ctx.request_id,
            user_id=ctx.user_id,
            project_id=ctx.project_id,
            start_time=utcnow(),
            updated_at=utcnow(),
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def action_query(instance_uuid: str, request_id: str) -> sa.Subquery:
    """The instance's action recorded for this request (its newest), as a subquery of one row at most."""
    return (
        sa.select(instance_actions.c.id)
        .where(instance_actions.c.instance_uuid == instance_uuid, instance_actions.c.request_id == request_id)
        .order_by(instance_actions.c.id.desc())
        .limit(1)
        .subquery()
    )


async def action_id(conn: AsyncConnection, instance_uuid: str, request_id: str) -> int | None:
    """The id of the instance's action recorded for this request (None when there is none)."""
    if not request_id:
        return None
    row = (await conn.execute(sa.select(action_query(instance_uuid, request_id).c.id))).first()
    return int(row[0]) if row else None


@asynccontextmanager
async def event(db: Database, instance_uuid: str, request_id: str, name: str, host: str | None) -> AsyncIterator[None]:
    """Record an event (e.g. compute_stop_instance) around a worker step: Success, or Error with traceback."""
    async with db.write() as conn:
        found = await action_id(conn, instance_uuid, request_id)
        event_id: int | None = None
        if found is not None:
            res = await conn.execute(
                sa.insert(instance_action_events).values(action_id=found, event=name, start_time=utcnow(), host=host)
            )
            event_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    result, trace = "Success", None
    try:
        yield
    except BaseException as exc:
        result, trace = "Error", "".join(tb.format_exception(exc))[-4000:]
        raise
    finally:
        if event_id is not None:
            async with db.write() as conn:
                await conn.execute(
                    sa.update(instance_action_events)
                    .where(instance_action_events.c.id == event_id)
                    .values(finish_time=utcnow(), result=result, traceback=trace)
                )
                await conn.execute(
                    sa.update(instance_actions).where(instance_actions.c.id == found).values(updated_at=utcnow())
                )


async def list_actions(conn: AsyncConnection, instance_uuid: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(instance_actions)
        .where(instance_actions.c.instance_uuid == instance_uuid)
        .order_by(instance_actions.c.start_time.desc(), instance_actions.c.id.desc())
    )
    return [dict(r) for r in rows.mappings()]


async def get_action(conn: AsyncConnection, instance_uuid: str, request_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    row = (
        await conn.execute(
            sa.select(instance_actions).where(
                instance_actions.c.instance_uuid == instance_uuid, instance_actions.c.request_id == request_id
            )
        )
    ).mappings().first()
    if row is None:
        return None
    events = await conn.execute(
        sa.select(instance_action_events)
        .where(instance_action_events.c.action_id == row["id"])
        .order_by(instance_action_events.c.id)
    )
    return dict(row), [dict(e) for e in events.mappings()]
