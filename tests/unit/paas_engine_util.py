"""What the engine's unit tests share: PaasServices over the in-process cloud (fake driver), the
test step kinds (registered once), an engine whose deploy plan is the test's own, and the tests'
own deploy."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import sqlalchemy as sa

from cumulo.context import RequestContext, expand_roles
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine.base import Plan, StepFailed, StepRun, StepSpec, action
from cumulo.paas.engine.runner import PaasEngine
from cumulo.paas.models import paas_resources, paas_steps

CREATES: Counter[str] = Counter()  # security group name -> creates made by the t_sg action
EVENTS: list[tuple[str, str]] = []  # ("start"|"end", step key)
GATES: dict[str, asyncio.Event] = {}  # a t_gate step waits for GATES[params gate]
STARTED: dict[str, asyncio.Event] = {}  # set when a step of that key starts


@contextlib.asynccontextmanager
async def own_engines(cloud: Any) -> AsyncIterator[PaasServices]:
    """The services, with the cloud's own engine stopped (each test runs engines of its own); every
    gate opened on the way out."""
    if cloud.paas_engine is not None:
        await cloud.paas_engine.stop()
    reset()
    yield services(cloud)
    for g in GATES.values():
        g.set()


async def deploy(engine: PaasEngine, c: RequestContext, name: str = "env1", **kw: Any) -> dict[str, Any]:
    """A deploy of an empty environment (the engine's plan is the test's own: engine_with)."""
    return await engine.deploy(c, name=name, description="", environment={"name": "e", "tiers": []}, **kw)


async def deploy_to_end(engine: PaasEngine, c: RequestContext, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the engine, deploy, wait for the task's end, stop the engine: (the task as answered, as ended)."""
    await engine.start()
    try:
        task = await deploy(engine, c, **kw)
        return task, await engine.wait(task["id"])
    finally:
        await engine.stop()


def services(cloud: Any) -> PaasServices:
    s = cloud.services
    return PaasServices(conf=s.conf, db=s.db, bus=s.bus, identity=s.identity, images=s.images, compute=s.compute,
                        network=s.network, volume=s.volume)


def ctx(project: str | None = None) -> RequestContext:
    return RequestContext(user_id=uuid.uuid4().hex, project_id=project or uuid.uuid4().hex,
                          roles=expand_roles(["member"]))


def reset() -> None:
    CREATES.clear()
    EVENTS.clear()
    GATES.clear()
    STARTED.clear()


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


def started(key: str) -> asyncio.Event:
    return STARTED.setdefault(key, asyncio.Event())


def _mark(run: StepRun, what: str) -> None:
    EVENTS.append((what, str(run.step["key"])))
    if what == "start":
        started(str(run.step["key"])).set()


@action("t_note")
async def t_note(run: StepRun) -> Mapping[str, Any]:
    """Records its start and end; waits for a gate when params name one."""
    _mark(run, "start")
    if run.step["params"].get("gate"):
        await gate(run.step["params"]["gate"]).wait()
    _mark(run, "end")
    return {"key": run.step["key"], "attempt": run.step["attempt"]}


@action("t_sg")
async def t_sg(run: StepRun) -> Mapping[str, Any]:
    """A security group of the caller's project through the ledger (intend / adopt / created);
    params gate_after_create: wait for that gate AFTER the create and BEFORE recording it."""
    _mark(run, "start")
    name = str(run.step["params"]["name"])
    found = await run.ledger.adopt("security_group", name)
    if found is None:
        await run.ledger.intend("security_group", name)
        group = await run.services.network.create_group(run.ctx, {"name": name, "description": "paas test"})
        CREATES[name] += 1
        if run.step["params"].get("gate_after_create"):
            await gate(run.step["params"]["gate_after_create"]).wait()
        await run.ledger.created("security_group", name, group["id"])
        found = group["id"]
    _mark(run, "end")
    return {"id": found}


@action("t_fail")
async def t_fail(run: StepRun) -> Mapping[str, Any]:
    _mark(run, "start")
    raise StepFailed("install recipe exited 3", exit_code=3, output="installing\nboom: no such package")


@action("t_crash")
async def t_crash(run: StepRun) -> Mapping[str, Any]:
    raise RuntimeError("unexpected trouble")


def engine_with(svc: PaasServices, plan: Callable[[str], Plan]) -> PaasEngine:
    """An engine whose deploy plan is `plan(instance_id)`."""
    engine = PaasEngine(svc)

    def deploy_plan(instance_id: str, name: str, environment: Mapping[str, Any], *, project_id: str) -> Plan:
        return plan(instance_id)

    engine.deploy_plan = deploy_plan  # type: ignore[method-assign]
    return engine


def step(key: str, kind: str = "t_note", deps: tuple[str, ...] = (), **params: Any) -> StepSpec:
    return StepSpec(key, kind, deps, params)


async def step_rows(svc: PaasServices, task_id: int) -> dict[str, dict[str, Any]]:
    async with svc.db.read() as conn:
        rows = (await conn.execute(sa.select(paas_steps).where(paas_steps.c.task_id == task_id))).mappings().all()
    return {r["key"]: dict(r) for r in rows}


async def ledger(svc: PaasServices, instance_id: str) -> list[dict[str, Any]]:
    async with svc.db.read() as conn:
        rows = (await conn.execute(sa.select(paas_resources).where(paas_resources.c.env_instance_id == instance_id)
                                   .order_by(paas_resources.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def groups_named(svc: PaasServices, c: RequestContext, prefix: str) -> list[str]:
    return sorted(g["name"] for g in await svc.network.list_groups(c) if g["name"].startswith(prefix))
