"""The PaaS engine's own cost per step (issue 13), no cloud: a task of no-op steps run by
`PaasEngine` on a fresh SQLite database, so what is measured is the step machinery (the task and
plan written in one transaction, the lease, each step's PENDING -> RUNNING -> DONE by
compare-and-swap, the ready set reloaded after each completion, the final write).

- chain: N steps, each depending on the one before (one at a time);
- fan-out: N independent steps (conf.paas.step_concurrency at once), then one that waits for all;
- resume: the fan-out task cut after half its steps, taken over by a second engine.

    .venv/bin/python benchmarks/paas_engine.py [-n 200] [--json out.json]

Figures only, never asserted. A real deploy's steps are boots and recipes (seconds each): see
benchmarks/paas.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine import steps as st
from cumulo.paas.engine import tasks
from cumulo.paas.engine.base import Plan, StepRun, StepSpec, action
from cumulo.paas.engine.runner import PaasEngine

GATE: dict[str, asyncio.Event] = {}


@action("bench_noop")
async def noop(run: StepRun) -> Mapping[str, Any]:
    gate = GATE.get(str(run.step["params"].get("gate") or ""))
    if gate is not None:
        await gate.wait()
    return {"key": run.step["key"]}


def chain(n: int) -> Plan:
    return Plan(steps=[StepSpec(f"s{i}", "bench_noop", (f"s{i - 1}",) if i else ()) for i in range(n)])


def fan_out(n: int, gate: str | None = None) -> Plan:
    steps = [StepSpec(f"s{i}", "bench_noop", (), {"gate": gate} if gate and i >= n // 2 else {}) for i in range(n)]
    return Plan(steps=[*steps, StepSpec("end", "bench_noop", tuple(s.key for s in steps))])


async def _no_reap() -> int:
    return 0  # no compute service here: nothing to reap


def engine(services: PaasServices, plan: Plan) -> PaasEngine:
    e = PaasEngine(services)
    e.deploy_plan = lambda *a, **k: plan  # type: ignore[method-assign]
    e._reap = _no_reap  # type: ignore[method-assign]
    return e


async def deploy(e: PaasEngine, ctx: RequestContext) -> float:
    t0 = time.perf_counter()
    task = await e.deploy(ctx, name=f"b{uuid.uuid4().hex[:8]}", description="", environment={"name": "bench"})
    final = await e.wait(task["id"], timeout=600)
    assert final["status"] == "SUCCESS", final["error"]
    return time.perf_counter() - t0


async def main(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = conf_mod.load(env={}, state_dir=Path(tmp), local_driver="fake")
        db = Database(f"sqlite+aiosqlite:///{tmp}/bench.sqlite")
        await db.create_all()
        services = PaasServices(conf=settings, db=db, bus=None, identity=None, images=None,  # type: ignore[arg-type]
                                compute=None, network=None, volume=None)  # type: ignore[arg-type]
        ctx = RequestContext(user_id="u", project_id="p", roles=expand_roles(["member"]))
        out: dict[str, Any] = {"steps": n}
        t = await deploy(engine(services, chain(n)), ctx)
        out["chain_s"], out["chain_ms_per_step"] = round(t, 3), round(1000 * t / n, 2)
        t = await deploy(engine(services, fan_out(n)), ctx)
        out["fan_out_s"], out["fan_out_ms_per_step"] = round(t, 3), round(1000 * t / (n + 1), 2)

        GATE["cut"] = asyncio.Event()
        first = engine(services, fan_out(n, "cut"))
        task = await first.deploy(ctx, name="cut", description="", environment={"name": "bench"})
        while True:  # half the steps done, the other half waiting on the gate
            done = [s for s in await st.load(db, task["id"]) if s["state"] == "DONE"]
            if len(done) >= n // 2:
                break
            await asyncio.sleep(0.01)
        await first.stop()  # its lease given up: the next engine takes the task at once
        GATE["cut"].set()
        second = engine(services, fan_out(n, "cut"))
        t0 = time.perf_counter()
        await second.start()
        final = await second.wait(task["id"], timeout=600)
        out["resume_rest_s"] = round(time.perf_counter() - t0, 3)
        assert final["status"] == "SUCCESS" and final["owner"] == second.owner
        await second.stop()
        assert not tasks.LIVE_OWNERS - {second.owner}
        await db.dispose()
    return out


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=200, help="steps per task")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    out = asyncio.run(main(args.n))
    for k, v in out.items():
        print(f"{k:24} {v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    cli()
