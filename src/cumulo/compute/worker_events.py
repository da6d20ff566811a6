"""Instance-action events written inside the workers' own state-change transactions.

`actions.event()` opens two transactions of its own per event; on the build path (the hot one:
every create goes through it) the conductor and the agent instead record the same rows in the
transaction that changes the instance, halving the writes on SQLite's single writer. The rows are
identical to what actions.event() writes: Success, or Error with the traceback.
"""

from __future__ import annotations

import datetime as dt
import traceback as tb
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute import actions
from cumulo.compute.models import instance_action_events, instance_actions
from cumulo.db import utcnow


@dataclass(frozen=True)
class EventHandle:
    action_id: int
    event_id: int


def _outcome(exc: BaseException | None) -> tuple[str, str | None]:
    if exc is None:
        return "Success", None
    return "Error", "".join(tb.format_exception(exc))[-4000:]


async def begin(conn: AsyncConnection, instance_uuid: str, request_id: str, name: str, host: str | None) -> EventHandle | None:
    """Start an event in the caller's transaction (None when the request recorded no action)."""
    action_id = await actions.action_id(conn, instance_uuid, request_id)
    if action_id is None:
        return None
    res = await conn.execute(
        sa.insert(instance_action_events).values(action_id=action_id, event=name, start_time=utcnow(), host=host)
    )
    return EventHandle(action_id, int(res.inserted_primary_key[0]))  # type: ignore[index]


async def finish(conn: AsyncConnection, handle: EventHandle | None, exc: BaseException | None = None) -> None:
    if handle is None:
        return
    result, trace = _outcome(exc)
    now = utcnow()
    await conn.execute(
        sa.update(instance_action_events)
        .where(instance_action_events.c.id == handle.event_id)
        .values(finish_time=now, result=result, traceback=trace)
    )
    await conn.execute(sa.update(instance_actions).where(instance_actions.c.id == handle.action_id).values(updated_at=now))


async def record(
    conn: AsyncConnection,
    instance_uuid: str,
    request_id: str,
    name: str,
    host: str | None,
    started: dt.datetime,
    exc: BaseException | None = None,
) -> None:
    """A whole event at once, for a step that ran before its outcome was written."""
    action_id = await actions.action_id(conn, instance_uuid, request_id)
    if action_id is None:
        return
    result, trace = _outcome(exc)
    now = utcnow()
    await conn.execute(
        sa.insert(instance_action_events).values(
            action_id=action_id, event=name, start_time=started, finish_time=now, host=host, result=result,
            traceback=trace,
        )
    )
    await conn.execute(sa.update(instance_actions).where(instance_actions.c.id == action_id).values(updated_at=now))
