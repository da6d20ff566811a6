"""The PaaS engine's runner on the in-process cloud (real services, fake driver) with test step
kinds (paas_engine_util): dependency order, parallel steps, failure and rollback in reverse order,
keep_on_failure, conflicts."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import paas_engine_util as u
import pytest
import sqlalchemy as sa

from cumulo import errors
from cumulo.paas.engine.base import Plan
from cumulo.paas.models import paas_applications, paas_env_instances, paas_tier_instances


@pytest.fixture
async def svc(cloud: Any) -> AsyncIterator[Any]:
    """The services, with the cloud's own engine stopped (each test runs engines of its own)."""
    async with u.own_engines(cloud) as services:
        yield services


async def test_steps_run_in_dependency_order_and_independent_ones_together(svc: Any) -> None:
    # a and b are independent: a waits for b to have started (it would hang if they ran one by one);
    # c depends on both.
    plan = Plan(steps=[u.step("a", gate="b-started"), u.step("b"), u.step("c", deps=("a", "b"))])
    engine = u.engine_with(svc, lambda _i: plan)
    await engine.start()
    try:
        u.gate("b-started")
        task = await u.deploy(engine, u.ctx())
        assert task["status"] == "RUNNING"  # the 202 shows it running, as Pegasus did
        await u.started("b").wait()
        u.gate("b-started").set()
        final = await engine.wait(task["id"])
    finally:
        await engine.stop()
    assert final["status"] == "SUCCESS", final["error"]
    order = u.EVENTS
    assert order.index(("start", "c")) > order.index(("end", "a"))
    assert order.index(("start", "c")) > order.index(("end", "b"))
    assert order.index(("start", "a")) < order.index(("end", "b")) or order.index(("start", "b")) < order.index(("end", "a"))
    rows = await u.step_rows(svc, task["id"])
    assert {k: (r["state"], r["attempt"]) for k, r in rows.items()} == {
        "a": ("DONE", 1), "b": ("DONE", 1), "c": ("DONE", 1)}
    assert rows["c"]["output"] == {"key": "c", "attempt": 1}


async def test_a_failed_step_rolls_back_what_the_task_made_and_leaves_the_instance_in_error(svc: Any) -> None:
    c = u.ctx()
    plan = Plan(steps=[u.step("sg:one", "t_sg", name="paas-t-one"), u.step("sg:two", "t_sg", ("sg:one",), name="paas-t-two"),
                       u.step("install:web:1:httpd", "t_fail", ("sg:two",)), u.step("after", deps=("install:web:1:httpd",))])
    engine = u.engine_with(svc, lambda _i: plan)
    task, final = await u.deploy_to_end(engine, c)
    assert final["status"] == "ERROR"
    err = final["error"]
    assert err["step"] == "install:web:1:httpd" and err["majorErrorCode"] == "t_fail" and err["minorErrorCode"] == 3
    assert err["message"].startswith("install:web:1:httpd: install recipe exited 3\n")
    assert "boom: no such package" in err["message"] and "boom: no such package" in err["output"]
    assert "Traceback" not in err["message"]
    assert await u.groups_named(svc, c, "paas-t-") == []  # rolled back
    rows = await u.step_rows(svc, task["id"])
    assert rows["after"]["state"] == "PENDING"  # never ran
    reverts = sorted((r for k, r in rows.items() if k.startswith("revert:")), key=lambda r: r["ended_at"])
    assert [r["params"]["name"] for r in reverts] and all(r["state"] == "DONE" for r in reverts)
    assert {r["state"] for r in await u.ledger(svc, final["env_instance_id"])} == {"deleted"}
    async with svc.db.read() as conn:
        inst = (await conn.execute(sa.select(paas_env_instances).where(
            paas_env_instances.c.id == final["env_instance_id"]))).mappings().one()
    assert inst["status"] == "ERROR"
    assert inst["error"]["step"] == "install:web:1:httpd" and "boom" in inst["error"]["output"]


async def test_rollback_undoes_servers_before_security_groups(svc: Any) -> None:
    from cumulo.paas.engine.reverter import revert_steps

    rows = [{"id": 1, "type": "security_group", "name": "g", "state": "created"},
            {"id": 2, "type": "server", "name": "s1", "state": "creating"},
            {"id": 3, "type": "server", "name": "s2", "state": "created"},
            {"id": 4, "type": "floating_ip", "name": "f", "state": "created"},
            {"id": 5, "type": "network", "name": "n", "state": "created"},
            {"id": 6, "type": "image", "name": "old", "state": "deleted"}]
    specs = {s.key: s for s in revert_steps(rows)}
    assert set(specs) == {"revert:1", "revert:2", "revert:3", "revert:4", "revert:5"}
    assert specs["revert:4"].depends_on == ()
    assert set(specs["revert:3"].depends_on) == {"revert:4"} == set(specs["revert:2"].depends_on)
    assert set(specs["revert:1"].depends_on) == {"revert:2", "revert:3"}
    assert specs["revert:5"].depends_on == ("revert:1",)


async def test_keep_on_failure_leaves_what_was_made(svc: Any) -> None:
    c = u.ctx()
    plan = Plan(steps=[u.step("sg:one", "t_sg", name="paas-k-one"), u.step("boom", "t_crash", ("sg:one",))])
    engine = u.engine_with(svc, lambda _i: plan)
    task, final = await u.deploy_to_end(engine, c, keep_on_failure=True)
    assert final["status"] == "ERROR"
    assert final["error"]["message"] == "boom: unexpected trouble"
    assert final["error"]["resources"] == [{"type": "security_group", "name": "paas-k-one",
                                            "id": final["error"]["resources"][0]["id"]}]
    assert await u.groups_named(svc, c, "paas-k-") == ["paas-k-one"]
    assert not [k for k in await u.step_rows(svc, task["id"]) if k.startswith("revert:")]


async def test_a_second_deploy_of_the_name_and_a_task_on_a_busy_instance_are_conflicts(svc: Any) -> None:
    c = u.ctx()
    plan = Plan(steps=[u.step("hold", gate="hold")])
    engine = u.engine_with(svc, lambda _i: plan)
    engine.destroy_plan = lambda inv: Plan(steps=[u.step("bye")])  # type: ignore[method-assign]
    await engine.start()
    try:
        task = await u.deploy(engine, c)
        with pytest.raises(errors.Conflict, match="env1 already exists"):
            await u.deploy(engine, c)
        inst = {"id": task["env_instance_id"]}
        with pytest.raises(errors.Conflict, match=f"task {task['id']} \\(deploy\\)"):
            await engine.destroy(c, inst)
        with pytest.raises(errors.NotFound):
            await engine.destroy(u.ctx(), inst)  # another project's instance
        u.gate("hold").set()
        assert (await engine.wait(task["id"]))["status"] == "SUCCESS"
        gone = await engine.destroy(c, inst)
        assert (await engine.wait(gone["id"]))["status"] == "SUCCESS"
    finally:
        await engine.stop()
    async with svc.db.read() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(paas_env_instances).where(
            paas_env_instances.c.id == task["env_instance_id"]))).scalar()
    assert left == 0


async def test_the_task_deadline_fails_the_running_steps_and_rolls_back(svc: Any) -> None:
    c = u.ctx()
    plan = Plan(steps=[u.step("sg:one", "t_sg", name="paas-d-one"), u.step("slow", deps=("sg:one",), gate="never")])
    conf = dataclasses.replace(svc.conf, extra={**svc.conf.extra, "paas_task_timeout": 1})
    engine = u.engine_with(dataclasses.replace(svc, conf=conf), lambda _i: plan)
    task, final = await u.deploy_to_end(engine, c)
    assert final["status"] == "ERROR"
    assert final["error"]["majorErrorCode"] == "timeout" and "slow" in final["error"]["message"]
    rows = await u.step_rows(svc, task["id"])
    assert rows["slow"]["state"] == "FAILED" and rows["slow"]["error"].startswith("cancelled: ")
    assert await u.groups_named(svc, c, "paas-d-") == []


def _node_row(instance_id: str, tier: str, replica: int) -> dict[str, Any]:
    return {"id": f"{instance_id[:8]}-{tier}-{replica}", "env_instance_id": instance_id, "tier": tier,
            "replica": replica, "name": f"env1-{tier}-{replica}", "status": "INIT"}


async def test_a_failed_scale_gives_back_only_what_it_made_and_the_instance_stays_installed(svc: Any) -> None:
    c = u.ctx()
    deploy = lambda i: Plan(steps=[u.step("sg:web", "t_sg", name="paas-s-web")],  # noqa: E731
                            rows={"paas_tier_instances": [_node_row(i, "web", 1)]})
    engine = u.engine_with(svc, deploy)

    def scale_plan(inv: Any, tier: str, **kw: Any) -> Plan:
        i = inv["instance"]["id"]
        return Plan(steps=[u.step("sg:web", "t_sg", name="paas-s-web"),  # adopts the deploy's group
                           u.step("sg:extra", "t_sg", name="paas-s-extra"),
                           u.step("install:web:2:p", "t_fail", ("sg:web", "sg:extra"))],
                    rows={"paas_tier_instances": [_node_row(i, "web", 2)]})

    engine.scale_plan = scale_plan  # type: ignore[method-assign]
    await engine.start()
    try:
        first = await engine.wait((await u.deploy(engine, c))["id"])
        assert first["status"] == "SUCCESS"
        inst = {"id": first["env_instance_id"]}
        task = await engine.scale(c, inst, "web", count=2)
        final = await engine.wait(task["id"])
    finally:
        await engine.stop()
    assert final["status"] == "ERROR" and final["error"]["step"] == "install:web:2:p"
    assert final["kind"] == "scale" and final["tier"] == "web"
    assert dict(u.CREATES) == {"paas-s-web": 1, "paas-s-extra": 1}
    assert await u.groups_named(svc, c, "paas-s-") == ["paas-s-web"]  # the deploy's stays
    async with svc.db.read() as conn:
        row = (await conn.execute(sa.select(paas_env_instances).where(
            paas_env_instances.c.id == first["env_instance_id"]))).mappings().one()
        nodes = {r["replica"]: r["status"] for r in (await conn.execute(sa.select(paas_tier_instances).where(
            paas_tier_instances.c.env_instance_id == first["env_instance_id"]))).mappings()}
    assert row["status"] == "INSTALLED" and row["task_id"] == final["id"]
    assert nodes == {1: "INIT", 2: "UNDEPLOYED"}


async def test_a_failed_deploy_deletes_the_rows_of_its_nodes(svc: Any) -> None:
    c = u.ctx()
    plan = lambda i: Plan(steps=[u.step("boom", "t_crash")],  # noqa: E731
                          rows={"paas_tier_instances": [_node_row(i, "web", 1), _node_row(i, "db", 1)]})
    engine = u.engine_with(svc, plan)
    _task, final = await u.deploy_to_end(engine, c)
    assert final["status"] == "ERROR" and final["error"]["majorErrorCode"] == "t_crash"
    async with svc.db.read() as conn:
        left = (await conn.execute(sa.select(paas_tier_instances).where(
            paas_tier_instances.c.env_instance_id == final["env_instance_id"]))).all()
    assert left == []


async def test_an_application_deploy_and_undeploy_run_on_the_nodes_of_the_product_tier(svc: Any) -> None:
    from cumulo.paas.engine.plan_app import application_plan, undeploy_plan

    env = {"name": "e", "tiers": [{"name": "web", "products": [{"name": "httpd-web"}]},
                                  {"name": "db", "products": [{"name": "kv-backend"}]}]}
    inst = {"id": "i1", "name": "env1", "environment": env, "app_generation": 0}
    nodes = [{**_node_row("i1", "web", 1), "status": "INSTALLED", "server_id": "s1"},
             {**_node_row("i1", "web", 2), "status": "UNDEPLOYED", "server_id": None},
             {**_node_row("i1", "web", 3), "status": "INSTALLED", "server_id": "s3"},
             {**_node_row("i1", "db", 1), "status": "INSTALLED", "server_id": "s4"}]
    plan = application_plan(inst, nodes, [], {"name": "shop", "version": "1", "product": "httpd-web",
                                               "artifact": {"sha256": "0" * 64}})
    assert [s.key for s in plan.steps] == ["artifact:web:1:shop", "artifact:web:3:shop"]
    assert {s.kind for s in plan.steps} == {"deploy_artifact"}
    assert plan.steps[0].params == {"tier": "web", "replica": 1, "node": "env1-web-1", "application": "shop",
                                    "product": "httpd-web", "version": "1"}
    assert plan.rows["paas_applications"][0]["status"] == "DEPLOYING_ARTEFACT"
    with pytest.raises(errors.Conflict, match="shop is already deployed"):
        application_plan(inst, nodes, [{"name": "shop"}], {"name": "shop", "product": "httpd-web"})
    with pytest.raises(errors.Invalid, match="no tier of env1 has product nope"):
        application_plan(inst, nodes, [], {"name": "x", "product": "nope"})
    gone = undeploy_plan(inst, nodes, [{"name": "shop", "product": "httpd-web", "version": "1"}], "shop")
    assert [(s.key, s.kind) for s in gone.steps] == [("unartifact:web:1:shop", "undeploy_artifact"),
                                                     ("unartifact:web:3:shop", "undeploy_artifact")]
    with pytest.raises(errors.NotFound):
        undeploy_plan(inst, nodes, [], "shop")


async def test_application_tasks_bump_the_generation_and_undeploy_deletes_the_row(
        svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from cumulo.paas.engine import plan_app

    c = u.ctx()
    engine = u.engine_with(svc, lambda i: Plan(steps=[u.step("a")], rows={"paas_tier_instances": [_node_row(i, "web", 1)]}))

    def app_plan(inst: Any, nodes: Any, apps: Any, app: Any) -> Plan:
        plan = Plan(steps=[u.step(f"artifact:web:1:{app['name']}")])
        plan.rows["paas_applications"] = [{"id": f"app-{app['name']}", "env_instance_id": inst["id"],
                                           "name": app["name"], "product": "p", "artifact": {}, "generation": 1,
                                           "status": "DEPLOYING_ARTEFACT"}]
        return plan

    monkeypatch.setattr(plan_app, "application_plan", app_plan)
    monkeypatch.setattr(plan_app, "undeploy_plan", lambda *a: Plan(steps=[u.step("unartifact:web:1:shop")]))
    await engine.start()
    try:
        first = await engine.wait((await u.deploy(engine, c))["id"])
        inst = {"id": first["env_instance_id"]}
        t1 = await engine.wait((await engine.deploy_application(c, inst, {"name": "shop", "product": "p"}))["id"])
        assert t1["status"] == "SUCCESS" and t1["kind"] == "application"
        async with svc.db.read() as conn:
            gen = (await conn.execute(sa.select(paas_env_instances.c.app_generation).where(
                paas_env_instances.c.id == inst["id"]))).scalar()
        assert gen == 1
        t2 = await engine.wait((await engine.undeploy_application(c, inst, "shop"))["id"])
        assert t2["status"] == "SUCCESS"
    finally:
        await engine.stop()
    async with svc.db.read() as conn:
        apps = (await conn.execute(sa.select(paas_applications).where(
            paas_applications.c.env_instance_id == inst["id"]))).all()
    assert apps == []


async def test_a_run_that_loses_the_lease_to_its_own_engine_still_runs_the_task(svc: Any,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The recovery scan launched a new task just as the API call that made it took the lease for
    its answer: the scan's run loses the CAS to its own engine, and the call's launch is a no-op
    (that run is in flight). The run must go on, not leave the task to the next lease period."""
    from cumulo.paas.engine import runner, tasks

    engine = u.engine_with(svc, lambda _i: Plan(steps=[u.step("a")]))
    real_take = tasks.take_lease
    calls: list[int] = []

    async def take_after_the_api(db: Any, task_id: int, owner: str, lease: float) -> Any:
        calls.append(task_id)
        if len(calls) == 2:  # the run's take: the API call's take (the first) won the row
            return None
        return await real_take(db, task_id, owner, lease)

    monkeypatch.setattr(runner.tasks, "take_lease", take_after_the_api)
    # No start(): no recovery loop, so only the run launched by the call itself can run the task.
    task = await u.deploy(engine, u.ctx())
    final = await engine.wait(task["id"], timeout=float(svc.conf.paas.lease) / 2)
    assert final["status"] == "SUCCESS" and len(calls) == 2, (final["status"], calls)
    await engine.stop()
