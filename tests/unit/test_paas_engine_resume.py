"""Resume: an engine stopped mid-plan (its run cancelled, its lease dead), a new engine on the same
DB takes the task over and finishes it: every create made exactly once, nothing orphaned; a crash
during a rollback resumes the rollback; leftovers of instances the DB does not have are reaped."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import paas_engine_util as u
import pytest
import sqlalchemy as sa
from occi_cloud import until

from cumulo.db import utcnow
from cumulo.paas.engine import reverter, tasks
from cumulo.paas.engine.base import Plan
from cumulo.paas.engine.runner import PaasEngine
from cumulo.paas.models import paas_env_instances, paas_tasks


@pytest.fixture
async def svc(cloud: Any) -> AsyncIterator[Any]:
    async with u.own_engines(cloud) as services:
        yield services


async def _crash(engine: PaasEngine, task_id: int) -> None:
    """The engine dies where it is: its run is cancelled (steps stay RUNNING, nothing is
    released), and its lease is made to look expired (as after a kill -9 and `lease` seconds)."""
    run = engine._tasks[task_id]
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    if engine._background is not None:
        engine._background.cancel()
    async with engine.db.write() as conn:
        await conn.execute(sa.update(paas_tasks).where(paas_tasks.c.id == task_id)
                           .values(lease_until=utcnow() - dt.timedelta(seconds=1)))


async def test_a_new_engine_finishes_a_task_cut_mid_plan_with_every_create_made_once(svc: Any) -> None:
    c = u.ctx()
    # sg:one done before the crash; sg:two crashes between its create and its record (adopted on
    # resume); "wait" was RUNNING (runs again); sg:three comes after.
    plan = Plan(steps=[
        u.step("sg:one", "t_sg", name="paas-r-one"),
        u.step("sg:two", "t_sg", ("sg:one",), name="paas-r-two", gate_after_create="crash"),
        u.step("wait", deps=("sg:one",), gate="crash"),
        u.step("sg:three", "t_sg", ("sg:two", "wait"), name="paas-r-three"),
    ])
    first = u.engine_with(svc, lambda _i: plan)
    await first.start()
    task = await u.deploy(first, c)
    await until(lambda: _running(svc, task["id"], {"sg:two", "wait"}), "sg:two and wait running")
    await until(lambda: _async_value(u.CREATES["paas-r-two"] > 0), "sg:two's create (the step row goes RUNNING first)")
    assert u.CREATES["paas-r-two"] == 1
    await _crash(first, task["id"])
    rows = await u.step_rows(svc, task["id"])
    assert rows["sg:one"]["state"] == "DONE" and rows["sg:two"]["state"] == "RUNNING"
    u.gate("crash").set()  # the new attempt goes through (the cancelled one is gone)

    second = u.engine_with(svc, lambda _i: plan)
    await second.start()  # recovery finds the task (its lease expired) and takes it
    try:
        final = await second.wait(task["id"])
    finally:
        await second.stop()
        await first.stop()
    assert final["status"] == "SUCCESS", final["error"]
    assert final["owner"] == second.owner
    assert dict(u.CREATES) == {"paas-r-one": 1, "paas-r-two": 1, "paas-r-three": 1}
    assert await u.groups_named(svc, c, "paas-r-") == ["paas-r-one", "paas-r-three", "paas-r-two"]
    rows = await u.step_rows(svc, task["id"])
    assert {k: (r["state"], r["attempt"]) for k, r in rows.items()} == {
        "sg:one": ("DONE", 1), "sg:two": ("DONE", 2), "wait": ("DONE", 2), "sg:three": ("DONE", 1)}
    assert rows["sg:two"]["output"]["id"] == rows["sg:two"]["output"]["id"]
    led = await u.ledger(svc, final["env_instance_id"])
    assert sorted((r["name"], r["state"]) for r in led) == [
        ("paas-r-one", "created"), ("paas-r-three", "created"), ("paas-r-two", "created")]
    async with svc.db.read() as conn:
        status = (await conn.execute(sa.select(paas_env_instances.c.status).where(
            paas_env_instances.c.id == final["env_instance_id"]))).scalar()
    assert status == "INSTALLED"


async def _holding(svc: Any) -> tuple[Plan, PaasEngine, dict[str, Any]]:
    """An engine that runs a one-step plan, its step held RUNNING at gate "hold": (plan, engine, task)."""
    plan = Plan(steps=[u.step("hold", gate="hold")])
    engine = u.engine_with(svc, lambda _i: plan)
    await engine.start()
    task = await u.deploy(engine, u.ctx())
    await u.started("hold").wait()
    return plan, engine, task


async def test_a_live_engine_keeps_its_task(svc: Any) -> None:
    """Another engine cannot take a task whose holder heartbeats (lease not expired, owner alive)."""
    plan, first, task = await _holding(svc)
    second = u.engine_with(svc, lambda _i: plan)
    try:
        assert await tasks.take_lease(svc.db, task["id"], second.owner, 30.0) is None
        assert [r["id"] for r in await tasks.recoverable(svc.db)] == []
        u.gate("hold").set()
        final = await first.wait(task["id"])
    finally:
        await first.stop()
    assert final["status"] == "SUCCESS" and final["owner"] == first.owner


async def test_a_stopped_engine_of_this_process_counts_as_dead(svc: Any) -> None:
    plan, first, task = await _holding(svc)
    await first.stop()  # a clean stop gives the lease up; the step stays RUNNING
    assert (await u.step_rows(svc, task["id"]))["hold"]["state"] == "RUNNING"
    u.gate("hold").set()
    second = u.engine_with(svc, lambda _i: plan)
    await second.start()
    try:
        final = await second.wait(task["id"])
    finally:
        await second.stop()
    assert final["status"] == "SUCCESS"
    assert (await u.step_rows(svc, task["id"]))["hold"]["attempt"] == 2


async def test_a_crash_during_the_rollback_resumes_the_rollback(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c = u.ctx()
    plan = Plan(steps=[u.step("sg:one", "t_sg", name="paas-b-one"), u.step("sg:two", "t_sg", name="paas-b-two"),
                       u.step("fail", "t_fail", ("sg:one", "sg:two"))])
    hold = u.gate("undo")
    real = reverter.delete_resource
    calls: list[str] = []

    async def slow_delete(services: Any, ctx: Any, type_: str, rid: str) -> None:
        calls.append(rid)
        if not hold.is_set():
            await asyncio.sleep(3600)  # the first engine's undo never finishes: it is cut here
        await real(services, ctx, type_, rid)

    monkeypatch.setattr(reverter, "delete_resource", slow_delete)
    first = u.engine_with(svc, lambda _i: plan)
    await first.start()
    task = await u.deploy(first, c)
    await until(lambda: _running_prefix(svc, task["id"], "revert:"), "a revert step running")
    await _crash(first, task["id"])
    hold.set()
    second = u.engine_with(svc, lambda _i: plan)
    await second.start()
    try:
        final = await second.wait(task["id"])
    finally:
        await second.stop()
        await first.stop()
    assert final["status"] == "ERROR" and final["error"]["step"] == "fail"
    assert "rollback incomplete" not in final["error"]["message"]
    assert await u.groups_named(svc, c, "paas-b-") == []
    rows = await u.step_rows(svc, task["id"])
    reverts = {k: r for k, r in rows.items() if k.startswith("revert:")}
    assert len(reverts) == 2 and all(r["state"] == "DONE" for r in reverts.values())
    assert max(r["attempt"] for r in reverts.values()) == 2  # one was cut and ran again
    assert {r["state"] for r in await u.ledger(svc, final["env_instance_id"])} == {"deleted"}


async def test_start_reaps_servers_and_ledger_rows_of_instances_the_db_does_not_have(cloud: Any, svc: Any,
                                                                                    as_ctx: Any) -> None:
    from occi_cloud import image

    from cumulo.compute.service import server_create
    from cumulo.compute.service.boot import CreateRequest

    c = u.ctx()
    async with as_ctx(c) as client:
        image_id = await image(client)
    ghost, live = "0d5d7a1e-0000-4000-8000-00000000dead", None
    rows, _ = await server_create.create_servers(svc.compute, c, CreateRequest(
        name="paas-0d5d7a1e-web-1", flavor_ref="42", image_ref=image_id, requested_networks="none",
        metadata={"paas_instance": ghost, "paas_node": "x-web-1"}))
    kept, _ = await server_create.create_servers(svc.compute, c, CreateRequest(
        name="not-paas", flavor_ref="42", image_ref=image_id, requested_networks="none"))
    # server metadata is the tenant's: a key naming no instance the engine made in this project
    # (a made-up one, or another project's) never gets a server deleted by the system
    other = u.ctx()
    async with as_ctx(other) as client:
        other_image = await image(client)
    async with svc.db.write() as conn:  # the ghost's deploy task (as the engine writes it with the instance row)
        await conn.execute(sa.insert(paas_tasks).values(
            project_id=c.project_id, user_id="u", kind="deploy", status="ERROR", description="d", params={},
            start_time=utcnow(), env_instance_id=ghost, env_instance_name="x"))
    forged, _ = await server_create.create_servers(svc.compute, c, CreateRequest(
        name="paas-0d5d7a1e-web-2", flavor_ref="42", image_ref=image_id, requested_networks="none",
        metadata={"paas_instance": "0d5d7a1e-0000-4000-8000-00000000beef", "paas_node": "x-web-2"}))
    elsewhere, _ = await server_create.create_servers(svc.compute, other, CreateRequest(
        name="mine", flavor_ref="42", image_ref=other_image, requested_networks="none",
        metadata={"paas_instance": ghost}))
    group = await svc.network.create_group(c, {"name": "paas-0d5d7a1e-web"})
    from cumulo.paas.engine.ledger import TaskLedger

    led = TaskLedger(svc, c, ghost, 0, "sg:web")
    await led.intend("security_group", "paas-0d5d7a1e-web")
    await led.created("security_group", "paas-0d5d7a1e-web", group["id"])
    assert live is None
    engine = PaasEngine(svc)
    count = await engine._reap()
    assert count == 2
    await until(lambda: _server_gone(svc, c, rows[0]["uuid"]), "the ghost's server gone")
    assert not await _server_gone(svc, c, kept[0]["uuid"])
    assert not await _server_gone(svc, c, forged[0]["uuid"])
    assert not await _server_gone(svc, other, elsewhere[0]["uuid"])
    assert await u.groups_named(svc, c, "paas-0d5d7a1e") == []
    assert [r["state"] for r in await u.ledger(svc, ghost)] == ["deleted"]


async def _server_gone(svc: Any, c: Any, uuid: str) -> bool:
    from cumulo.paas.engine.ledger import server_gone

    return await server_gone(svc, c, uuid)


async def _async_value(value: bool) -> bool:
    return value


async def _running(svc: Any, task_id: int, keys: set[str]) -> bool:
    rows = await u.step_rows(svc, task_id)
    return all(rows.get(k, {}).get("state") == "RUNNING" for k in keys)


async def _running_prefix(svc: Any, task_id: int, prefix: str) -> bool:
    rows = await u.step_rows(svc, task_id)
    return any(k.startswith(prefix) and r["state"] == "RUNNING" for k, r in rows.items())


async def test_adopt_keeps_the_oldest_of_a_create_made_twice_and_deletes_the_rest(svc: Any) -> None:
    from cumulo.paas.engine.ledger import TaskLedger

    c = u.ctx()
    led = TaskLedger(svc, c, "0d5d7a1e-0000-4000-8000-0000000000aa", 0, "sg:web")
    assert await led.adopt("security_group", "paas-dup") is None  # no intent: nothing to adopt
    await led.intend("security_group", "paas-dup")
    await led.intend("security_group", "paas-dup")  # a second attempt's intent: still one row
    first = await svc.network.create_group(c, {"name": "paas-dup"})
    await svc.network.create_group(c, {"name": "paas-dup"})  # the crash came between create and record
    assert await led.adopt("security_group", "paas-dup") == first["id"]
    assert [g["id"] for g in await svc.network.list_groups(c) if g["name"] == "paas-dup"] == [first["id"]]
    rows = await u.ledger(svc, "0d5d7a1e-0000-4000-8000-0000000000aa")
    assert [(r["state"], r["resource_id"]) for r in rows] == [("created", first["id"])]
    await svc.network.delete_group(c, first["id"])  # gone behind the engine's back: create again
    assert await led.adopt("security_group", "paas-dup") is None


def test_an_owner_is_dead_when_its_pid_of_this_host_is_gone() -> None:
    import socket
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],  # noqa: S603
                          capture_output=True, text=True, check=True)
    host = socket.gethostname()
    assert tasks.owner_is_dead(f"{host}:{proc.stdout.strip()}:abcd")
    assert not tasks.owner_is_dead(f"{host}:1:abcd")  # init is alive
    assert not tasks.owner_is_dead(f"other-host:{proc.stdout.strip()}:abcd")  # only its lease tells
    live = tasks.make_owner()
    tasks.LIVE_OWNERS.add(live)
    try:
        assert not tasks.owner_is_dead(live)
    finally:
        tasks.LIVE_OWNERS.discard(live)
    assert tasks.owner_is_dead(live)  # an engine of this process that stopped


async def test_a_task_queued_elsewhere_runs_on_a_bus_cast(svc: Any) -> None:
    """Another process wrote the task (QUEUED) and cast `run_task` on topic paas."""
    from cumulo.paas.engine import steps

    engine = u.engine_with(svc, lambda _i: Plan())
    svc.bus.serve("paas-test-cast", engine.endpoint())
    async with svc.db.write() as conn:
        task_id = await tasks.insert_task(conn, u.ctx(), kind="deploy", description="", instance_id=None,
                                          instance_name=None)
        await steps.insert(conn, task_id, [u.step("a"), u.step("b", deps=("a",))])
    await svc.bus.cast("paas-test-cast", "run_task", task_id=task_id)
    final = await engine.wait(task_id)
    assert final["status"] == "SUCCESS" and final["owner"] == engine.owner
    assert [e for e in u.EVENTS if e[0] == "end"] == [("end", "a"), ("end", "b")]


async def test_an_engine_whose_lease_was_taken_stops_and_the_holder_finishes(svc: Any) -> None:
    import dataclasses

    conf = dataclasses.replace(svc.conf, extra={**svc.conf.extra, "paas_lease": 0.3})
    quick = dataclasses.replace(svc, conf=conf)
    plan = Plan(steps=[u.step("hold", gate="hold"), u.step("after", deps=("hold",))])
    first = u.engine_with(quick, lambda _i: plan)
    await first.start()
    task = await u.deploy(first, u.ctx())
    await u.started("hold").wait()
    second = u.engine_with(quick, lambda _i: plan)
    async with svc.db.write() as conn:  # the second engine takes it over (as after a long stall of the first)
        await conn.execute(sa.update(paas_tasks).where(paas_tasks.c.id == task["id"])
                           .values(owner=second.owner, lease_until=utcnow() + dt.timedelta(seconds=60)))
    await until(lambda: _async(task["id"] not in first._tasks), "the first engine to stop running it")
    assert (await u.step_rows(svc, task["id"]))["hold"]["state"] == "RUNNING"
    u.gate("hold").set()
    try:
        await second.run_task(task["id"])
        final = await second.wait(task["id"])
    finally:
        await first.stop()
    assert final["status"] == "SUCCESS" and final["owner"] == second.owner
    rows = await u.step_rows(svc, task["id"])
    assert (rows["hold"]["attempt"], rows["after"]["attempt"]) == (2, 1)


async def _async(value: Any) -> Any:
    return value


async def test_a_heartbeat_between_the_read_and_the_take_keeps_the_task(svc: Any, monkeypatch: pytest.MonkeyPatch
                                                                         ) -> None:
    """take_lease's compare-and-swap is on the lease it read as well as the owner: a holder that
    renewed its lease meanwhile keeps the task (no second engine runs the same step)."""
    holder = "otherhost:1:feed"
    async with svc.db.write() as conn:
        res = await conn.execute(sa.insert(paas_tasks).values(
            project_id="p", user_id="u", kind="deploy", status="RUNNING", description="d", params={},
            start_time=utcnow(), owner=holder, lease_until=utcnow() - dt.timedelta(seconds=1)))
        task_id = int(res.inserted_primary_key[0])
    stale = await tasks.get(svc.db, task_id)
    assert await tasks.heartbeat(svc.db, task_id, holder, 30.0)  # the holder renews after the read
    real_get = tasks.get
    reads = iter([stale])

    async def get_once_stale(db: Any, tid: int) -> dict[str, Any] | None:
        return next(reads, None) or await real_get(db, tid)

    monkeypatch.setattr(tasks, "get", get_once_stale)
    assert await tasks.take_lease(svc.db, task_id, "thishost:2:beef", 30.0) is None
    assert (await real_get(svc.db, task_id))["owner"] == holder
