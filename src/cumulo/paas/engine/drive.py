"""Running one task's steps: the ready set under a semaphore, each step's action, failure, deadline.

`run_steps(...)` runs the forward steps (or, with `revert=True`, the "revert:*" steps) of a task
until every one is final. Forward: the first FAILED step (or the task deadline) cancels the steps
still running, marks them FAILED ("cancelled: ...") and returns the failure; a rollback goes on past
an undo that failed (`lenient`) and reports the failures at the end. A cancellation from outside (the
engine stops, its lease is lost) leaves RUNNING steps RUNNING: the next engine runs them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cumulo.context import RequestContext
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine import steps as st
from cumulo.paas.engine.base import ACTIONS, Ledger, StepFailed, StepState
from cumulo.paas.engine.ledger import TaskLedger
from cumulo.paas.models import paas_env_instances

LOG = logging.getLogger(__name__)
OUTPUT_TAIL = 4000  # characters of a failed step's output kept in the task error


@dataclass
class Run:
    """The StepRun an action gets (engine/base.py StepRun)."""

    ctx: RequestContext
    services: PaasServices
    task: Mapping[str, Any]
    step: Mapping[str, Any]
    instance_id: str
    ledger: Ledger  # a TaskLedger (also has deleted())
    outputs: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def output_of(self, key: str) -> Mapping[str, Any]:
        return self.outputs[key]

    async def instance(self) -> dict[str, Any]:
        async with self.services.db.read() as conn:
            row = (await conn.execute(
                sa.select(paas_env_instances).where(paas_env_instances.c.id == self.instance_id)
            )).mappings().first()
        if row is None:
            from cumulo import errors

            raise errors.NotFound(f"environment instance {self.instance_id} is gone")
        return dict(row)


def _bounded(message: str, limit: int = 2000) -> str:
    """A step's error message as stored (the output tail has its own bound)."""
    return message if len(message) <= limit else message[:limit] + "..."


def tail(text: str, limit: int = OUTPUT_TAIL) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def step_error(step: Mapping[str, Any]) -> dict[str, Any]:
    """The task error of a FAILED step (OWNERS.md: message = "<key>: <what>\n<output tail>",
    majorErrorCode = the step kind, minorErrorCode = the exit code, step, output)."""
    out = step.get("output") or {}
    output = tail(str(out.get("output") or ""))
    what = step.get("error") or "failed"
    message = f"{step['key']}: {what}" + (f"\n{output}" if output else "")
    return {"message": message, "majorErrorCode": step["kind"], "minorErrorCode": out.get("exit_code"),
            "step": step["key"], "output": output}


def _json_safe(value: Any) -> dict[str, Any]:
    """An action's output as JSON (a Mapping; None -> {})."""
    if value is None:
        return {}
    return dict(json.loads(json.dumps(dict(value), default=str)))


async def run_one(services: PaasServices, ctx: RequestContext, task: Mapping[str, Any], step: Mapping[str, Any],
                  outputs: dict[str, Mapping[str, Any]], sem: asyncio.Semaphore) -> None:
    async with sem:
        row = await st.begin(services.db, step)
        if row is None:
            return  # another engine has it (or it moved on)
        kind = str(row["kind"])
        fn = ACTIONS.get(kind)
        if fn is None:
            await st.finish(services.db, row, StepState.FAILED, error=f"no action for step kind {kind!r}")
            return
        run = Run(ctx, services, task, row, str(task["env_instance_id"] or ""),
                  TaskLedger(services, ctx, str(task["env_instance_id"] or ""), int(task["id"]), str(row["key"])),
                  outputs)
        try:
            result = await fn(run)
        except asyncio.CancelledError:
            raise  # the caller decides: a failure elsewhere marks it, a stop leaves it RUNNING
        except StepFailed as exc:
            await st.finish(services.db, row, StepState.FAILED, error=_bounded(str(exc) or "failed"),
                            output={"exit_code": exc.exit_code, "output": tail(exc.output)})
            return
        except Exception as exc:  # noqa: BLE001 - any failure of an action fails its step, never the engine
            LOG.warning("paas: task %s step %s failed", task["id"], row["key"], exc_info=True)
            await st.finish(services.db, row, StepState.FAILED, error=_bounded(str(exc) or type(exc).__name__))
            return
        output = _json_safe(result)
        if await st.finish(services.db, row, StepState.DONE, output=output):
            outputs[str(row["key"])] = output


async def _mark_cancelled(services: PaasServices, task_id: int, ids: set[int], why: str) -> None:
    for row in await st.load(services.db, task_id):
        if row["id"] in ids and row["state"] == StepState.RUNNING.value:
            await st.finish(services.db, row, StepState.FAILED, error=f"cancelled: {why}")


async def run_steps(services: PaasServices, ctx: RequestContext, task: Mapping[str, Any], *, revert: bool,
                    remaining: float | None) -> dict[str, Any] | None:
    """Run the task's forward (or revert) steps to the end; None when all are DONE, else the error
    (forward: the first failure's task error; revert: a summary of the undos that failed)."""
    task_id = int(task["id"])
    sem = asyncio.Semaphore(max(1, int(services.conf.paas.step_concurrency)))
    outputs: dict[str, Mapping[str, Any]] = {}
    running: dict[int, asyncio.Task[None]] = {}
    loop = asyncio.get_running_loop()
    deadline = None if remaining is None else loop.time() + max(remaining, 0.0)
    try:
        while True:
            rows = [r for r in await st.load(services.db, task_id) if st.is_revert(r) == revert]
            for r in rows:
                if r["state"] == StepState.DONE.value and r["key"] not in outputs:
                    outputs[str(r["key"])] = r["output"] or {}
            failed = [r for r in rows if r["state"] == StepState.FAILED.value]
            if failed and not revert:
                first = min(failed, key=lambda r: (r["ended_at"] is None, r["ended_at"] or 0, r["id"]))
                await _abort(services, task_id, running, f"step {first['key']} failed")
                return step_error(dict(first))
            for ready in st.ready(rows, lenient=revert):
                if ready["id"] not in running:
                    running[ready["id"]] = asyncio.create_task(run_one(services, ctx, task, ready, outputs, sem))
            if not running:
                pending = [r for r in rows if r["state"] not in st.TERMINAL]
                if not pending:
                    if revert and failed:
                        return {"message": "; ".join(f"{r['key']} ({r['params'].get('type')} {r['params'].get('name')}):"
                                                     f" {r['error']}" for r in failed), "steps": [r["key"] for r in failed]}
                    return None
                stuck = ", ".join(r["key"] for r in pending)
                return {"message": f"the plan cannot go on: steps {stuck} wait for steps that will never run",
                        "majorErrorCode": "plan", "minorErrorCode": None, "step": pending[0]["key"], "output": ""}
            timeout = None if deadline is None else max(deadline - loop.time(), 0.0)
            done, _ = await asyncio.wait(running.values(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                keys = [str(r["key"]) for r in rows if r["id"] in running]
                what = f"the task deadline of {services.conf.paas.task_timeout:.0f} s passed"
                await _abort(services, task_id, running, what)
                return {"message": f"{what} (running: {', '.join(keys)})", "majorErrorCode": "timeout",
                        "minorErrorCode": None, "step": keys[0] if keys else None, "output": ""}
            for t in done:
                t.result()  # an engine bug (a DB error) propagates
            running = {i: t for i, t in running.items() if not t.done()}
    except BaseException:
        for t in running.values():
            t.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        raise


async def _abort(services: PaasServices, task_id: int, running: dict[int, asyncio.Task[None]], why: str) -> None:
    for t in running.values():
        t.cancel()
    await asyncio.gather(*running.values(), return_exceptions=True)
    await _mark_cancelled(services, task_id, set(running), why)
    running.clear()
