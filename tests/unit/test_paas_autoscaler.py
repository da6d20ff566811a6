"""The autoscaler on a real DB with a fake clock, fake readings and a fake engine: breach counting,
Heat's order (running task, at max/min, cooldown from the END of a scale), events recorded once per
change, the owner's context, and the state a restart keeps."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.errors import Conflict, Invalid
from cumulo.paas import scaling
from cumulo.paas.autoscaler import Autoscaler
from cumulo.paas.engine.base import TaskKind
from cumulo.paas.inventory import Inventory
from cumulo.paas.models import (
    paas_env_instances,
    paas_events,
    paas_scaling_state,
    paas_tasks,
    paas_tier_instances,
)

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)
UP = {"name": "up", "metric": "cpu", "statistic": "avg", "comparison": "gt", "threshold": 60, "period": 5,
      "evaluation_periods": 2, "adjustment_type": "change_in_capacity", "scaling_adjustment": 1,
      "min_adjustment_step": None, "cooldown": 30}
DOWN = {**UP, "name": "down", "comparison": "lt", "threshold": 20, "scaling_adjustment": -1}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = T0 + dt.timedelta(seconds=seconds)


class Load:
    """Readings of each server: CPU time grows at its set percent of its vCPUs on the fake clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.cpu: dict[str, float] = {}
        self.memory: dict[str, float] = {}
        self.acc: dict[str, tuple[dt.datetime, float]] = {}
        self.calls: list[RequestContext] = []

    async def __call__(self, ctx: RequestContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls.append(ctx)
        out = []
        for row in rows:
            uuid = row["uuid"]
            last, ns = self.acc.get(uuid, (self.clock.now, 0.0))
            ns += (self.clock.now - last).total_seconds() * self.cpu.get(uuid, 0.0) / 100 * 2 * 1e9
            self.acc[uuid] = (self.clock.now, ns)
            out.append({"uuid": uuid, "cpu_ns": int(ns), "vcpus": 2, "memory_used": int(self.memory.get(uuid, 10) * 10),
                        "memory_limit": 1000, "uptime": 1, "time": (self.clock.now - T0).total_seconds()})
        return out


class Compute:
    async def get(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        return {"uuid": uuid, "vm_state": "active", "project_id": ctx.project_id, "host": "h"}


class Engine:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock
        self.calls: list[dict[str, Any]] = []
        self.refuse: Exception | None = None

    async def scale(self, ctx: RequestContext, instance: Mapping[str, Any], tier: str, *, count: int | None = None,
                    kind: TaskKind = TaskKind.SCALE, reason: str = "", **kw: Any) -> dict[str, Any]:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append({"ctx": ctx, "tier": tier, "count": count, "kind": kind, "reason": reason})
        async with self.db.write() as conn:
            res = await conn.execute(sa.insert(paas_tasks).values(
                project_id=ctx.project_id, user_id=ctx.user_id, roles=sorted(ctx.roles), kind=kind.value,
                status="RUNNING", env_instance_id=instance["id"], tier=tier, start_time=self.clock.now))
            task_id = int(res.inserted_primary_key[0])  # type: ignore[index]
        return {"id": task_id}

    async def finish(self, status: str, at: float, *, add: int = 0, remove: int = 0) -> None:
        async with self.db.write() as conn:
            await conn.execute(sa.update(paas_tasks).where(paas_tasks.c.status == "RUNNING").values(
                status=status, end_time=T0 + dt.timedelta(seconds=at)))
            if add:
                await conn.execute(sa.insert(paas_tier_instances).values(
                    id=f"n{add}", env_instance_id="i1", tier="web", replica=add, name=f"b-web-{add}",
                    server_id=f"s{add}", status="INSTALLED"))
            if remove:
                await conn.execute(sa.update(paas_tier_instances).where(paas_tier_instances.c.replica == remove)
                                   .values(status="UNDEPLOYED", server_id=None))


Rig = tuple[Autoscaler, Database, Clock, Load, Engine]


def make(db: Database, clock: Clock, load: Load, engine: Engine) -> Autoscaler:
    services = SimpleNamespace(db=db, conf=Settings(), compute=Compute())
    return Autoscaler(services, engine, clock=clock, sampler=load, interval=5.0)  # type: ignore[arg-type]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'paas.db'}")
    await db.create_all()
    env = {"name": "e", "tiers": [{"name": "web", "min": 1, "max": 2, "initial": 1, "products": [],
                                   "policies": [UP, DOWN]},
                                  {"name": "db", "min": 1, "max": 1, "initial": 1, "products": [], "policies": []}]}
    async with db.write() as conn:
        await conn.execute(sa.insert(paas_env_instances).values(
            id="i1", project_id="p1", user_id="owner", domain_id="default", name="b", environment_name="e",
            environment=env, status="INSTALLED"))
        await conn.execute(sa.insert(paas_tier_instances).values(
            id="n1", env_instance_id="i1", tier="web", replica=1, name="b-web-1", server_id="s1", status="INSTALLED"))
    clock = Clock()
    load = Load(clock)
    engine = Engine(db, clock)
    try:
        yield make(db, clock, load, engine), db, clock, load, engine
    finally:
        await db.dispose()


async def run_at(scaler: Autoscaler, clock: Clock, *seconds: float) -> None:
    for s in seconds:
        clock.at(s)
        await scaler.run_once()


async def events(db: Database) -> list[dict[str, Any]]:
    return await Inventory(db).events(RequestContext(user_id="x", project_id="p1"), {"id": "i1"})


async def state(db: Database, policy: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(paas_scaling_state).where(paas_scaling_state.c.policy == policy))).first()
    assert row is not None
    return dict(row._mapping)


async def test_cpu_percent_is_the_cpu_time_over_the_elapsed_time_of_every_vcpu(rig: Rig) -> None:
    scaler, _, clock, load, _ = rig
    load.cpu["s1"], load.memory["s1"] = 45.0, 30.0
    ctx = RequestContext(user_id="owner", project_id="p1")
    first = await scaler.read_tier(ctx, [{"server_id": "s1"}])
    assert (first.cpu, first.memory, first.nodes) == (None, 30.0, 1)  # the first reading only primes
    clock.at(5)
    second = await scaler.read_tier(ctx, [{"server_id": "s1"}])
    assert second.cpu == pytest.approx(45.0)


async def test_an_alarm_after_two_breaching_periods_scales_out_as_the_owner(rig: Rig) -> None:
    scaler, db, clock, load, engine = rig
    load.cpu["s1"] = 90.0
    await run_at(scaler, clock, 0, 5)  # prime, then one breaching period
    assert engine.calls == [] and (await state(db, "up"))["breaches"] == 1
    await run_at(scaler, clock, 10)
    [call] = engine.calls
    assert (call["tier"], call["count"], call["kind"]) == ("web", 2, TaskKind.AUTOSCALE)
    ctx = call["ctx"]
    assert (ctx.user_id, ctx.project_id, ctx.is_admin, "member" in ctx.roles) == ("owner", "p1", False, True)
    assert all(c.user_id == "owner" and not c.is_admin for c in load.calls)
    [ev] = await events(db)
    assert (ev["decision"], ev["policy"], ev["metric"], ev["from_size"], ev["to_size"]) == ("scale_out", "up", "cpu", 1, 2)
    assert ev["value"] == pytest.approx(90.0) and ev["threshold"] == 60 and ev["comparison"] == "gt"
    assert ev["task_id"] is not None and "cpu 90.0% > 60% for 2 period(s) of 5 s" in ev["reason"]
    assert "scaling from 1 to 2" in call["reason"]


async def test_heats_order_in_progress_then_at_max_then_cooldown_from_the_end_of_the_scale(rig: Rig) -> None:
    scaler, db, clock, load, engine = rig
    load.cpu["s1"] = 90.0
    await run_at(scaler, clock, 0, 5, 10)  # scale out to 2, task RUNNING
    await run_at(scaler, clock, 15, 20)  # alarm again while the task runs: one row
    assert [e["reason"].split(": ", 1)[1] for e in (await events(db))[1:]] == ["no action: task 1 (autoscale) is running on the instance"]
    await engine.finish("SUCCESS", at=22, add=2)
    load.cpu["s2"] = 90.0
    await run_at(scaler, clock, 25, 30, 35)  # at max: recorded once, no cooldown check
    assert (await state(db, "up"))["cooldown_end"] == T0 + dt.timedelta(seconds=52)  # the END (22 s) + 30 s
    decisions = [(e["decision"], e["reason"].split(": ", 1)[1]) for e in await events(db)]
    assert decisions[-1] == ("no_action", "no action: already at max size 2")
    assert len(engine.calls) == 1

    load.cpu["s1"] = load.cpu["s2"] = 5.0
    await run_at(scaler, clock, 40, 45, 50)  # the scale-in alarm waits for the tier's cooldown: one row
    cooling = [e for e in await events(db) if e["policy"] == "down"]
    assert [(e["decision"], e["value"] < 20) for e in cooling] == [("no_action", True)]
    assert "cooldown until 2026-01-01T12:00:52" in cooling[0]["reason"]
    await run_at(scaler, clock, 55)  # the cooldown is over: scale in
    assert [c["count"] for c in engine.calls] == [2, 1]
    last = (await events(db))[-1]
    assert (last["decision"], last["from_size"], last["to_size"]) == ("scale_in", 2, 1)


async def test_a_failed_scale_starts_no_cooldown_and_a_refused_one_is_recorded(rig: Rig) -> None:
    scaler, db, clock, load, engine = rig
    load.cpu["s1"] = 90.0
    await run_at(scaler, clock, 0, 5, 10)
    await engine.finish("ERROR", at=12)
    await run_at(scaler, clock, 15)  # still alarming: scales again at once
    assert (await state(db, "up"))["cooldown_end"] is None
    assert [c["count"] for c in engine.calls] == [2, 2]
    await engine.finish("ERROR", at=16)
    engine.refuse = Conflict("environment instance b has a running task")
    await run_at(scaler, clock, 20, 25)
    refused = [e for e in await events(db) if e["decision"] == "no_action"]
    assert len(refused) == 1 and "has a running task" in refused[0]["reason"]


async def test_a_cleared_alarm_resets_the_count_and_the_next_alarm_is_recorded_again(rig: Rig) -> None:
    scaler, db, clock, load, engine = rig
    async with db.write() as conn:  # already at max: every alarm ends in "at max"
        await conn.execute(sa.insert(paas_tier_instances).values(
            id="n2", env_instance_id="i1", tier="web", replica=2, name="b-web-2", server_id="s2", status="INSTALLED"))
    load.cpu["s1"] = load.cpu["s2"] = 90.0
    await run_at(scaler, clock, 0, 5, 10, 15, 20)
    load.cpu["s1"] = load.cpu["s2"] = 40.0  # neither policy breaches
    await run_at(scaler, clock, 25)
    assert (await state(db, "up"))["breaches"] == 0
    load.cpu["s1"] = load.cpu["s2"] = 90.0
    await run_at(scaler, clock, 30)
    assert len(await events(db)) == 1  # one breaching period: no alarm yet
    await run_at(scaler, clock, 35)
    assert [e["reason"].endswith("already at max size 2") for e in await events(db)] == [True, True]
    assert engine.calls == []


async def test_the_breach_count_and_the_pending_scale_survive_a_restart(rig: Rig) -> None:
    scaler, db, clock, load, engine = rig
    three = [{**UP, "evaluation_periods": 3}, DOWN]
    async with db.write() as conn:
        env = (await conn.execute(sa.select(paas_env_instances.c.environment))).scalar_one()
        env["tiers"][0]["policies"] = three
        await conn.execute(sa.update(paas_env_instances).values(environment=env))
    load.cpu["s1"] = 90.0
    await run_at(scaler, clock, 0, 5, 10)
    assert (await state(db, "up"))["breaches"] == 2
    again = make(db, clock, load, engine)  # a restart: readings and periods are gone
    await run_at(again, clock, 15)  # primes only
    assert engine.calls == [] and (await state(db, "up"))["breaches"] == 2
    await run_at(again, clock, 20)  # the third breaching period
    assert [c["count"] for c in engine.calls] == [2]
    await engine.finish("SUCCESS", at=21, add=2)
    restarted = make(db, clock, load, engine)
    await run_at(restarted, clock, 22)  # the scale a previous process started is settled here
    assert (await state(db, "up"))["cooldown_end"] == T0 + dt.timedelta(seconds=51)


async def test_memory_policies_and_tiers_without_active_nodes(rig: Rig) -> None:
    scaler, db, clock, load, engine = rig
    mem = {**UP, "name": "mem", "metric": "memory", "threshold": 50}
    async with db.write() as conn:
        env = (await conn.execute(sa.select(paas_env_instances.c.environment))).scalar_one()
        env["tiers"][0]["policies"] = [mem]
        await conn.execute(sa.update(paas_env_instances).values(environment=env))
    load.memory["s1"] = 70.0
    await run_at(scaler, clock, 0, 5)  # memory needs no priming: the first period has two readings
    assert (await state(db, "mem"))["breaches"] == 1
    await run_at(scaler, clock, 10)
    assert [c["count"] for c in engine.calls] == [2]
    [ev] = await events(db)
    assert (ev["metric"], ev["value"]) == ("memory", 70.0)

    class Building(Compute):
        async def get(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
            return {**await super().get(ctx, uuid), "vm_state": "building"}

    scaler.services = SimpleNamespace(db=db, conf=Settings(), compute=Building())  # type: ignore[assignment]
    reading = await scaler.read_tier(RequestContext(user_id="owner", project_id="p1"), [{"server_id": "s1"}])
    assert (reading.cpu, reading.memory, reading.nodes) == (None, None, 0)  # only ACTIVE servers are read


async def test_events_are_the_callers_projects_oldest_first(rig: Rig) -> None:
    scaler, db, clock, load, _ = rig
    load.cpu["s1"] = 90.0
    await run_at(scaler, clock, 0, 5, 10, 15)
    async with db.write() as conn:
        await conn.execute(sa.insert(paas_events).values(env_instance_id="i1", project_id="p1", tier="db",
                                                         decision="no_action", reason="x", time=T0))
    inv, inst = Inventory(db), {"id": "i1"}
    mine = await inv.events(RequestContext(user_id="u", project_id="p1"), inst)
    assert [e["id"] for e in mine] == sorted(e["id"] for e in mine) and len(mine) == 3
    assert mine[0]["time"] == T0 + dt.timedelta(seconds=10)
    assert [e["tier"] for e in await inv.events(RequestContext(user_id="u", project_id="p1"), inst, "db")] == ["db"]
    assert await inv.events(RequestContext(user_id="u", project_id="p2"), inst) == []


async def test_the_loop_runs_until_stopped(rig: Rig) -> None:
    scaler, *_ = rig
    ran = asyncio.Event()
    real = scaler.run_once

    async def once() -> None:
        await real()
        ran.set()

    scaler.run_once = once  # type: ignore[method-assign]
    await scaler.start()
    await asyncio.wait_for(ran.wait(), 10)
    await scaler.stop()
    assert scaler._task is None


@pytest.mark.parametrize(("change", "match"), [
    ({"metric": "disk"}, "metric must be one of cpu, memory"),
    ({"comparison": "eq"}, "comparison must be one of"),
    ({"threshold": 120}, "threshold is a percentage"),
    ({"period": 0}, "period must be more than 0"),
    ({"evaluation_periods": 0}, "evaluation_periods must be between 1"),
    ({"evaluation_periods": 1.5}, "evaluation_periods must be a whole number"),
    ({"cooldown": -1}, "cooldown must be between 0"),
    ({"min_adjustment_step": 1}, "min_adjustment_step is allowed only with"),
    ({"adjustment_type": "double"}, "adjustment_type must be one of"),
    ({"scaling_adjustment": True}, "scaling_adjustment must be a number"),
    ({"name": ""}, "needs a name"),
])
def test_validate_policy_names_the_field(change: dict[str, Any], match: str) -> None:
    scaling.validate_policy(UP)
    scaling.validate_policy({**UP, "adjustment_type": "percent_change_in_capacity", "scaling_adjustment": 50,
                             "min_adjustment_step": 1})
    with pytest.raises(Invalid, match=match):
        scaling.validate_policy({**UP, **change})


def test_validate_policies_refuses_two_policies_of_one_name() -> None:
    scaling.validate_policies([UP, DOWN])
    with pytest.raises(Invalid, match="two scaling policies are named 'up'"):
        scaling.validate_policies([UP, {**DOWN, "name": "up"}], where="tier web")
