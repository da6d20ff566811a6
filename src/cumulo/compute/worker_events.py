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
from typing import Any

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
    """Start an event in the caller's transaction (None when the request recorded no action).
    One statement: the action's id is looked up inside the INSERT (a round trip less on PostgreSQL)."""
    if not request_id:
        return None
    action = actions.action_query(instance_uuid, request_id)
    row = (await conn.execute(
        sa.insert(instance_action_events)
        .from_select(
            ["action_id", "event", "start_time", "host"],
            sa.select(action.c.id, sa.literal(name, sa.String), sa.literal(utcnow(), sa.DateTime),
                      sa.literal(host, sa.String)),
        )
        .returning(instance_action_events.c.id, instance_action_events.c.action_id)
    )).first()
    return None if row is None else EventHandle(int(row.action_id), int(row.id))


def _one_statement(conn: AsyncConnection) -> bool:
    """PostgreSQL runs two writes as one statement (a data-modifying WITH): a round trip less.
    SQLite takes no UPDATE inside WITH, and its statements are library calls anyway."""
    return conn.dialect.name == "postgresql"


def begin_cte(instance_uuid: str, request_id: str, name: str, host: str | None, *, only_if: sa.CTE) -> sa.CTE | None:
    """PostgreSQL: `begin` as a data-modifying CTE (RETURNING id, action_id) that inserts only when
    the CTE `only_if` returns a row (the state change the event times), to join to the caller's
    statement; None when the request recorded no action."""
    if not request_id:
        return None
    action = actions.action_query(instance_uuid, request_id)
    return (
        sa.insert(instance_action_events)
        .from_select(
            ["action_id", "event", "start_time", "host"],
            sa.select(action.c.id, sa.literal(name, sa.String), sa.literal(utcnow(), sa.DateTime),
                      sa.literal(host, sa.String))
            .where(sa.exists(sa.select(sa.literal(1)).select_from(only_if))),
        )
        .returning(instance_action_events.c.id, instance_action_events.c.action_id)
        .cte("started_event")
    )


def _record_ctes(
    instance_uuid: str, request_id: str, name: str, host: str | None, started: dt.datetime,
    exc: BaseException | None, only_if: sa.CTE | None,
) -> list[sa.CTE]:
    result, trace = _outcome(exc)
    now = utcnow()
    action = actions.action_query(instance_uuid, request_id)
    touch = (
        sa.update(instance_actions)
        .where(instance_actions.c.id == sa.select(action.c.id).scalar_subquery())
        .values(updated_at=now)
        .returning(instance_actions.c.id)
    )
    if only_if is not None:
        touch = touch.where(sa.exists(sa.select(sa.literal(1)).select_from(only_if)))
    touched = touch.cte("touched_action")
    inserted = (
        sa.insert(instance_action_events)
        .from_select(
            ["action_id", "event", "start_time", "finish_time", "host", "result", "traceback"],
            sa.select(touched.c.id, *(sa.literal(v, instance_action_events.c[k].type) for k, v in (
                ("event", name), ("start_time", started), ("finish_time", now), ("host", host),
                ("result", result), ("traceback", trace)))),
        )
        .returning(instance_action_events.c.id)
        .cte("recorded_event")
    )
    return [touched, inserted]


def _bound_action(prefix: str) -> sa.Select[Any]:
    """The newest action of an instance and request, both bound (`<prefix>_uuid`,
    `<prefix>_request`): `actions.action_query` for statements built once."""
    a = instance_actions.c
    return (
        sa.select(a.id)
        .where(a.instance_uuid == sa.bindparam(f"{prefix}_uuid", type_=a.instance_uuid.type),
               a.request_id == sa.bindparam(f"{prefix}_request", type_=a.request_id.type))
        .order_by(a.id.desc())
        .limit(1)
    )


def bound_record_ctes(*, only_if: sa.CTE) -> list[sa.CTE]:
    """PostgreSQL: `record` as data-modifying CTEs to add to the caller's statement, written only
    when the CTE `only_if` returns a row (the state change the event times), with every value a
    bound parameter (ev_uuid, ev_request, ev_event, ev_host, ev_start_time, ev_now, ev_result,
    ev_traceback: `record_values`), for a statement built and compiled once (issue 14: building
    the CTEs took 0.4 ms per boot). The caller adds them only when the request recorded an action."""
    t = instance_action_events
    action = _bound_action("ev").scalar_subquery()
    now = sa.bindparam("ev_now", type_=instance_actions.c.updated_at.type)
    touched = (
        sa.update(instance_actions)
        .where(instance_actions.c.id == action, sa.exists(sa.select(sa.literal(1)).select_from(only_if)))
        .values(updated_at=now)
        .returning(instance_actions.c.id)
        .cte("touched_action")
    )
    values = [sa.bindparam(f"ev_{k}", type_=t.c[k].type) for k in ("event", "start_time")] + [now] + [
        sa.bindparam(f"ev_{k}", type_=t.c[k].type) for k in ("host", "result", "traceback")]
    inserted = (
        sa.insert(t)
        .from_select(["action_id", "event", "start_time", "finish_time", "host", "result", "traceback"],
                     sa.select(touched.c.id, *values))
        .returning(t.c.id)
        .cte("recorded_event")
    )
    return [touched, inserted]


def record_values(
    instance_uuid: str, request_id: str, name: str, host: str | None, started: dt.datetime,
    exc: BaseException | None = None,
) -> dict[str, object]:
    """The parameters of `bound_record_ctes` (the same row `record` writes)."""
    result, trace = _outcome(exc)
    return {"ev_uuid": instance_uuid, "ev_request": request_id, "ev_event": name, "ev_host": host,
            "ev_start_time": started, "ev_now": utcnow(), "ev_result": result, "ev_traceback": trace}


def _finishing(handle: EventHandle, exc: BaseException | None) -> tuple[sa.Update, sa.Update]:
    result, trace = _outcome(exc)
    now = utcnow()
    event = (
        sa.update(instance_action_events)
        .where(instance_action_events.c.id == handle.event_id)
        .values(finish_time=now, result=result, traceback=trace)
    )
    action = sa.update(instance_actions).where(instance_actions.c.id == handle.action_id).values(updated_at=now)
    return event, action


def finish_ctes(handle: EventHandle | None, exc: BaseException | None = None) -> list[sa.CTE]:
    """PostgreSQL: `finish` as data-modifying CTEs to add to the caller's own statement (the state
    change it times), so the change and the event's end are one statement: one round trip."""
    if handle is None:
        return []
    event, action = _finishing(handle, exc)
    return [event.returning(instance_action_events.c.id).cte("finished_event"),
            action.returning(instance_actions.c.id).cte("finished_action")]


async def finish(conn: AsyncConnection, handle: EventHandle | None, exc: BaseException | None = None) -> None:
    if handle is None:
        return
    event, action = _finishing(handle, exc)
    if _one_statement(conn):
        await conn.execute(action.add_cte(event.returning(instance_action_events.c.id).cte("finished_event")))
        return
    await conn.execute(event)
    await conn.execute(action)


async def record(
    conn: AsyncConnection,
    instance_uuid: str,
    request_id: str,
    name: str,
    host: str | None,
    started: dt.datetime,
    exc: BaseException | None = None,
) -> None:
    """A whole event at once, for a step that ran before its outcome was written. Two statements:
    the action's `updated_at` (its id returned), then the event; one on PostgreSQL (the UPDATE in
    a WITH the INSERT selects from; no action, no event, as before)."""
    if not request_id:
        return
    result, trace = _outcome(exc)
    now = utcnow()
    action = actions.action_query(instance_uuid, request_id)
    if _one_statement(conn):
        await conn.execute(sa.select(sa.literal(1)).add_cte(
            *_record_ctes(instance_uuid, request_id, name, host, started, exc, None)))
        return
    row = (await conn.execute(
        sa.update(instance_actions)
        .where(instance_actions.c.id == sa.select(action.c.id).scalar_subquery())
        .values(updated_at=now)
        .returning(instance_actions.c.id)
    )).first()
    if row is None:
        return
    await conn.execute(
        sa.insert(instance_action_events).values(
            action_id=int(row[0]), event=name, start_time=started, finish_time=now, host=host, result=result,
            traceback=trace,
        )
    )


def bound_begin_cte(*, only_if: sa.CTE) -> sa.CTE:
    """PostgreSQL: `begin_cte` with every value a bound parameter (bev_uuid, bev_request, bev_event,
    bev_start, bev_host: `begin_values`), for a statement built once per shape and compiled once
    (the agent's take: building it per boot was Python before the build's first round trip)."""
    t = instance_action_events
    action = _bound_action("bev").subquery()
    return (
        sa.insert(t)
        .from_select(
            ["action_id", "event", "start_time", "host"],
            sa.select(action.c.id, sa.bindparam("bev_event", type_=t.c.event.type),
                      sa.bindparam("bev_start", type_=t.c.start_time.type), sa.bindparam("bev_host", type_=t.c.host.type))
            .where(sa.exists(sa.select(sa.literal(1)).select_from(only_if))),
        )
        .returning(t.c.id, t.c.action_id)
        .cte("started_event")
    )


def begin_values(instance_uuid: str, request_id: str, name: str, host: str | None) -> dict[str, object]:
    """The parameters of `bound_begin_cte` (the row `begin` writes)."""
    return {"bev_uuid": instance_uuid, "bev_request": request_id, "bev_event": name, "bev_start": utcnow(),
            "bev_host": host}


def bound_finish_ctes() -> list[sa.CTE]:
    """PostgreSQL: `finish_ctes` with every value a bound parameter (fev_event_id, fev_action_id,
    fev_now, fev_result, fev_traceback: `finish_values`), for a statement built once."""
    now = sa.bindparam("fev_now", type_=instance_action_events.c.finish_time.type)
    event = (
        sa.update(instance_action_events)
        .where(instance_action_events.c.id == sa.bindparam("fev_event_id", type_=instance_action_events.c.id.type))
        .values(finish_time=now, result=sa.bindparam("fev_result", type_=instance_action_events.c.result.type),
                traceback=sa.bindparam("fev_traceback", type_=instance_action_events.c.traceback.type))
        .returning(instance_action_events.c.id)
        .cte("finished_event")
    )
    action = (
        sa.update(instance_actions)
        .where(instance_actions.c.id == sa.bindparam("fev_action_id", type_=instance_actions.c.id.type))
        .values(updated_at=now)
        .returning(instance_actions.c.id)
        .cte("finished_action")
    )
    return [event, action]


def finish_values(handle: EventHandle, exc: BaseException | None = None) -> dict[str, object]:
    """The parameters of `bound_finish_ctes` (what `finish` writes)."""
    result, trace = _outcome(exc)
    return {"fev_event_id": handle.event_id, "fev_action_id": handle.action_id, "fev_now": utcnow(),
            "fev_result": result, "fev_traceback": trace}
