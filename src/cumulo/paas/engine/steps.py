"""Step rows (`paas_steps`): a task's persisted plan and its state machine.

Each step goes PENDING -> RUNNING (attempt + 1) -> DONE | FAILED by compare-and-swap on (state,
attempt), so a step that another engine took over can never be finished twice. A step found
RUNNING when an engine takes a task over goes back to PENDING (`requeue_running`) and runs again
as a new attempt; actions adopt through the ledger what the crashed attempt made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.db import Database, utcnow
from cumulo.paas.engine.base import StepSpec, StepState
from cumulo.paas.models import paas_steps

S = paas_steps.c
TERMINAL = (StepState.DONE.value, StepState.FAILED.value, StepState.SKIPPED.value)
REVERT_PREFIX = "revert:"


def is_revert(step: Mapping[str, Any]) -> bool:
    return str(step["key"]).startswith(REVERT_PREFIX)


async def insert(conn: AsyncConnection, task_id: int, specs: Sequence[StepSpec]) -> None:
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a plan with duplicate step keys: {sorted(k for k in keys if keys.count(k) > 1)}")
    known = set(keys)
    for s in specs:
        missing = [d for d in s.depends_on if d not in known]
        if missing:
            raise ValueError(f"step {s.key} depends on steps not in the plan: {missing}")
    if specs:
        await conn.execute(sa.insert(paas_steps), [
            {"task_id": task_id, "key": s.key, "kind": s.kind, "depends_on": list(s.depends_on),
             "state": StepState.PENDING.value, "attempt": 0, "params": dict(s.params)} for s in specs
        ])


async def append(db: Database, task_id: int, specs: Sequence[StepSpec]) -> None:
    """Add steps to a running task (its rollback); keys already there are skipped, so a resumed
    rollback plan is not inserted twice. Dependencies may name existing steps."""
    async with db.write() as conn:
        have = set((await conn.execute(sa.select(S.key).where(S.task_id == task_id))).scalars())
        new = [s for s in specs if s.key not in have]
        if new:
            await conn.execute(sa.insert(paas_steps), [
                {"task_id": task_id, "key": s.key, "kind": s.kind, "depends_on": list(s.depends_on),
                 "state": StepState.PENDING.value, "attempt": 0, "params": dict(s.params)} for s in new
            ])


async def load(db: Database, task_id: int) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(paas_steps).where(S.task_id == task_id).order_by(S.id))).mappings().all()
    return [dict(r) for r in rows]


def ready(steps: Iterable[Mapping[str, Any]], *, lenient: bool = False) -> list[Mapping[str, Any]]:
    """PENDING steps whose dependencies are all DONE (or SKIPPED); `lenient`: any final state (a
    rollback goes on past an undo that failed)."""
    steps = list(steps)
    state = {s["key"]: s["state"] for s in steps}
    ok = TERMINAL if lenient else (StepState.DONE.value, StepState.SKIPPED.value)
    return [s for s in steps if s["state"] == StepState.PENDING.value and all(state.get(d) in ok for d in s["depends_on"])]


async def requeue_running(db: Database, task_id: int) -> int:
    """RUNNING steps of a task being taken over go back to PENDING (they run again)."""
    async with db.write() as conn:
        done = await conn.execute(
            sa.update(paas_steps).where(S.task_id == task_id, S.state == StepState.RUNNING.value)
            .values(state=StepState.PENDING.value)
        )
    return int(done.rowcount or 0)


async def begin(db: Database, step: Mapping[str, Any]) -> dict[str, Any] | None:
    """PENDING -> RUNNING with attempt + 1; the fresh row, or None if the CAS lost."""
    async with db.write() as conn:
        done = await conn.execute(
            sa.update(paas_steps)
            .where(S.id == step["id"], S.state == StepState.PENDING.value, S.attempt == step["attempt"])
            .values(state=StepState.RUNNING.value, attempt=step["attempt"] + 1, started_at=utcnow(), ended_at=None,
                    error=None)
        )
        if not done.rowcount:
            return None
        row = (await conn.execute(sa.select(paas_steps).where(S.id == step["id"]))).mappings().one()
    return dict(row)


async def finish(db: Database, step: Mapping[str, Any], state: StepState, *, output: Mapping[str, Any] | None = None,
                 error: str | None = None) -> bool:
    """RUNNING -> DONE | FAILED for the attempt that ran (False: another engine took it over)."""
    async with db.write() as conn:
        done = await conn.execute(
            sa.update(paas_steps)
            .where(S.id == step["id"], S.state == StepState.RUNNING.value, S.attempt == step["attempt"])
            .values(state=state.value, output=dict(output) if output is not None else None, error=error,
                    ended_at=utcnow())
        )
    return bool(done.rowcount)
