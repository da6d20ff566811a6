"""The PaaS engine: `PaasEngine(services)` implements `PaasEngineAPI` (engine/base.py).

Public names: `PaasEngine` with `deploy`, `destroy`, `scale`, `deploy_application`,
`undeploy_application` (each validates, writes the task + inventory rows + plan in ONE transaction,
starts it in the background and returns the paas_tasks row), `run_task(task_id)` (take the lease,
run the task to its end; `endpoint()` serves it on bus topic `TOPIC` "paas" for casts), `start()`
(loads the action modules, then in the background reaps leftovers and takes over QUEUED/RUNNING
tasks no live engine holds, and keeps looking for such tasks, and for final tasks whose callback was
never tried, every lease period), `stop()`, and `wait(task_id)` (tests, benchmarks).

A task runs its forward steps (engine/drive.py). On a failure, unless the instance has
keep_on_failure, one write records the task error and plans "revert:<ledger row id>" steps over the
ledger rows of THIS task (engine/reverter.py); they run as steps too, so a crash during a rollback
resumes the rollback. The final write sets the task and the instance (engine/finish.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine import finish as fin
from cumulo.paas.engine import steps as st
from cumulo.paas.engine import tasks
from cumulo.paas.engine.base import Plan, Status, StepSpec, TaskKind, TaskStatus
from cumulo.paas.engine.callbacks import check_async
from cumulo.paas.engine.drive import run_steps
from cumulo.paas.engine.reverter import ledger_rows, revert_steps
from cumulo.paas.models import (
    paas_applications,
    paas_env_instances,
    paas_events,
    paas_resources,
    paas_tasks,
    paas_templates,
    paas_tier_instances,
)

LOG = logging.getLogger(__name__)
I = paas_env_instances.c  # noqa: E741 - the instance table's columns
# Modules whose import registers step actions (@action); a missing one is skipped.
ACTION_MODULES = (
    "cumulo.paas.engine.reverter",
    "cumulo.paas.engine.actions",
    "cumulo.paas.engine.actions_net",
    "cumulo.paas.engine.actions_destroy",
    "cumulo.paas.engine.actions_products",
    "cumulo.paas.engine.actions_scale",
    "cumulo.paas.engine.actions_group",
    "cumulo.paas.engine.actions_vm",
    "cumulo.paas.template",
)


def load_actions() -> list[str]:
    """Import the action modules (each registers its step kinds); the names loaded."""
    for name in ACTION_MODULES:
        importlib.import_module(name)
    return list(ACTION_MODULES)


def _row_ids(plan: Plan) -> dict[str, list[Any]]:
    return {table: [r["id"] for r in rows if "id" in r] for table, rows in plan.rows.items()}


def manual_event(ctx: RequestContext, nodes: Sequence[Mapping[str, Any]], tier: str, *, count: int | None,
                 remove: str | None, reason: str = "") -> dict[str, Any]:
    """The paas_events row of a manual scale (policy None): its decision, sizes and who asked."""
    from cumulo.paas.engine.plan_scale import live_nodes

    live = live_nodes(nodes, tier)
    before = len(live)
    after = count if count is not None else before - sum(1 for n in live if n["name"] == remove)
    decision = "scale_out" if after > before else "scale_in" if after < before else "no_action"
    who = f"user {ctx.user_name} ({ctx.user_id})" if ctx.user_name else f"user {ctx.user_id or 'unknown'}"
    what = f"removal of node {remove}" if remove else f"{before} -> {after} nodes"
    return {"tier": tier, "policy": None, "decision": decision, "from_size": before, "to_size": after,
            "reason": f"manual: {who} asked {what}" + (f" ({reason})" if reason else "")}


TOPIC = "paas"  # the bus topic an engine serves (`run_task` casts from another process)


class BusEndpoint:
    """What an engine answers on the bus: `run_task(task_id)` starts the task in the background
    (a cast; the lease decides which engine runs it)."""

    def __init__(self, engine: PaasEngine) -> None:
        self._engine = engine

    async def run_task(self, task_id: int) -> None:
        self._engine.launch(int(task_id))


class PaasEngine:
    """PaasEngineAPI over the cloud's services (see the module docstring)."""

    def __init__(self, services: PaasServices) -> None:
        self.services = services
        self.db = services.db
        self.owner = tasks.make_owner()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._background: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def settings(self) -> Any:
        return self.services.conf.paas

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        load_actions()
        tasks.LIVE_OWNERS.add(self.owner)
        self._stopping = False
        self._background = asyncio.create_task(self._recover_loop(), name="paas-engine-recovery")

    async def stop(self) -> None:
        """Stop running tasks where they are (their steps stay RUNNING; the next engine resumes
        them) and give their leases up at once."""
        self._stopping = True
        running = [t for t in (self._background, *self._tasks.values()) if t is not None]
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        tasks.LIVE_OWNERS.discard(self.owner)
        with contextlib.suppress(Exception):
            async with self.db.write() as conn:
                await conn.execute(sa.update(paas_tasks).where(tasks.T.owner == self.owner,
                                                                     tasks.T.status.in_(tasks.ACTIVE))
                                   .values(lease_until=None))

    async def _recover_loop(self) -> None:
        try:
            n = await self._reap()
            if n:
                LOG.info("paas: reaped %d leftover resources", n)
        except Exception:  # noqa: BLE001 - the reap is best effort; recovery goes on
            LOG.warning("paas: reaping leftovers failed", exc_info=True)
        await fin.collect_artifacts(self.services)  # files of uploads whose deploy was refused
        while not self._stopping:
            try:
                for row in await tasks.recoverable(self.db):
                    self.launch(int(row["id"]))
                for row in await tasks.undelivered_callbacks(self.db):
                    await fin.notify(self.services, row)
            except Exception:  # noqa: BLE001 - try again next period
                LOG.warning("paas: task recovery failed", exc_info=True)
            await asyncio.sleep(max(float(self.settings.lease), 0.5))

    async def _reap(self) -> int:
        from cumulo.paas.engine.reverter import reap

        return await reap(self.services)

    def endpoint(self) -> BusEndpoint:
        return BusEndpoint(self)

    def launch(self, task_id: int) -> None:
        """Run the task in the background (no-op if this engine already runs it)."""
        if self._stopping:
            return
        current = self._tasks.get(task_id)
        if current is not None and not current.done():
            return
        t = asyncio.create_task(self.run_task(task_id), name=f"paas-task-{task_id}")
        self._tasks[task_id] = t
        t.add_done_callback(lambda _t: self._tasks.pop(task_id, None) if self._tasks.get(task_id) is _t else None)

    async def wait(self, task_id: int, timeout: float = 60.0) -> dict[str, Any]:
        """The task row once final (polls the DB: any engine may run it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            row = await tasks.get(self.db, task_id)
            if row is None:
                raise errors.NotFound(f"task {task_id}")
            if row["status"] not in tasks.ACTIVE:
                return row
            if loop.time() > deadline:
                raise TimeoutError(f"task {task_id} still {row['status']} after {timeout} s")
            await asyncio.sleep(0.05)

    # ---- running one task -------------------------------------------------------------------

    async def run_task(self, task_id: int) -> None:
        """Take the task's lease and run it to its end (None if another live engine holds it)."""
        task = await tasks.take_lease(self.db, task_id, self.owner, self.settings.lease)
        if task is None:
            # Lost the CAS to THIS engine: the recovery scan launched the task while the API call
            # that made it took the lease for its answer; that call's launch was then a no-op (this
            # run was in flight), so this run must go on, or the task waits a whole lease.
            task = await tasks.get(self.db, task_id)
            if task is None or task["status"] not in tasks.ACTIVE or task["owner"] != self.owner:
                return
        await st.requeue_running(self.db, task_id)
        me = asyncio.current_task()
        beat = asyncio.create_task(self._heartbeat(task_id, me))
        final: dict[str, Any] | None = None
        try:
            final = await self._execute(task)
        except tasks.LeaseLost:
            LOG.warning("paas: task %s: lease lost to another engine; it goes on there", task_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            LOG.exception("paas: task %s: engine failure", task_id)
            raise
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        if final is not None and final.get("callback"):  # after the heartbeat: nothing cuts the POST
            await fin.notify(self.services, final)

    async def _heartbeat(self, task_id: int, runner: asyncio.Task[Any] | None) -> None:
        period = max(float(self.settings.lease) / 3.0, 0.05)
        while True:
            await asyncio.sleep(period)
            try:
                held = await tasks.heartbeat(self.db, task_id, self.owner, self.settings.lease)
            except Exception:  # noqa: BLE001 - a DB hiccup: the lease has time left; try again
                LOG.warning("paas: task %s heartbeat failed", task_id, exc_info=True)
                continue
            if not held:
                row = await tasks.get(self.db, task_id)
                if row is not None and row["status"] not in tasks.ACTIVE and row["owner"] == self.owner:
                    return  # this engine's own final write came first
                LOG.warning("paas: task %s: lease lost to another engine; stopping here", task_id)
                if runner is not None:
                    runner.cancel()
                return

    async def _execute(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run the task to its final write; the final row."""
        ctx = tasks.task_ctx(task)
        error: dict[str, Any] | None = task["error"]
        if error is None:
            elapsed = (utcnow() - task["start_time"]).total_seconds()
            error = await run_steps(self.services, ctx, task, revert=False,
                                    remaining=float(self.settings.task_timeout) - elapsed)
            if error is not None:
                error = await self._plan_rollback(task, error)
        rollback_error = None
        if error is not None and not error.get("kept"):
            rollback_error = await run_steps(self.services, ctx, task, revert=True, remaining=None)
        return await fin.finish(self.services, task, self.owner, error, rollback_error)

    async def _plan_rollback(self, task: Mapping[str, Any], error: dict[str, Any]) -> dict[str, Any]:
        """Record the error; plan the undo of what this task made (unless keep_on_failure, or a
        destroy, which has nothing to give back), in one write."""
        rows = await ledger_rows(self.services, task_id=int(task["id"]))
        keep = task["kind"] == TaskKind.DESTROY.value or await self._keep_on_failure(task)
        specs: list[StepSpec] = []
        if keep:
            error = {**error, "kept": True,
                     "resources": [{"type": r["type"], "name": r["name"], "id": r["resource_id"]} for r in rows]}
        else:
            specs = revert_steps(rows)
        async with self.db.write() as conn:
            done = await conn.execute(sa.update(paas_tasks)
                                      .where(tasks.T.id == task["id"], tasks.T.owner == self.owner)
                                      .values(error=error))
            if not done.rowcount:
                raise tasks.LeaseLost(task["id"])
            have = set((await conn.execute(sa.select(st.S.key).where(st.S.task_id == task["id"]))).scalars())
            await st.insert(conn, int(task["id"]), [s for s in specs if s.key not in have])
        return error

    async def _keep_on_failure(self, task: Mapping[str, Any]) -> bool:
        async with self.db.read() as conn:
            keep = (await conn.execute(sa.select(I.keep_on_failure).where(I.id == task["env_instance_id"]))).scalar()
        return bool(keep)

    # ---- the API ----------------------------------------------------------------------------

    async def _check_callback(self, callback: str | None) -> None:
        if callback:
            await check_async(callback, self.settings.callback_hosts)

    async def _insert_plan(self, conn: Any, task_id: int, plan: Plan) -> None:
        from cumulo.paas import models

        for table_name, rows in plan.rows.items():
            table = getattr(models, table_name, None)
            if not isinstance(table, sa.Table) or not table_name.startswith("paas_"):
                raise ValueError(f"a plan inserts rows into {table_name!r}, which is no PaaS table")
            if rows:
                await conn.execute(sa.insert(table), [dict(r) for r in rows])
        await st.insert(conn, task_id, plan.steps)

    def _result_href(self, ctx: RequestContext, name: str) -> str:
        from cumulo.paas.shapes import instance_path

        return instance_path(ctx.project_id or "", name, ctx.domain_id or "default")

    async def deploy(
        self, ctx: RequestContext, *, name: str, description: str, environment: Mapping[str, Any],
        keep_on_failure: bool = False, callback: str | None = None,
    ) -> dict[str, Any]:
        await self._check_callback(callback)
        instance_id = new_uuid()
        environment = await self._mark_vm_tiers(ctx, environment)
        plan = self.deploy_plan(instance_id, name, environment, project_id=ctx.project_id or "")
        now = utcnow()
        try:
            async with self.db.write() as conn:
                taken = (await conn.execute(sa.select(I.id).where(I.project_id == ctx.project_id, I.name == name))).first()
                if taken is not None:
                    raise errors.Conflict(f"environment instance {name} already exists")
                await conn.execute(sa.insert(paas_env_instances).values(
                    id=instance_id, project_id=ctx.project_id or "", user_id=ctx.user_id or "",
                    domain_id=ctx.domain_id or "default", name=name, description=description or "",
                    environment_name=str(environment.get("name") or ""), environment=dict(environment),
                    status=plan.instance_status or Status.DEPLOYING.value, keep_on_failure=bool(keep_on_failure),
                    created_at=now, updated_at=now))
                task_id = await tasks.insert_task(
                    conn, ctx, kind=TaskKind.DEPLOY.value, description=f"Deploy environment instance {name}",
                    instance_id=instance_id, instance_name=name, callback=callback,
                    params={"rows": _row_ids(plan), "keep_on_failure": bool(keep_on_failure)},
                    result_href=self._result_href(ctx, name))
                await conn.execute(sa.update(paas_env_instances).where(I.id == instance_id).values(task_id=task_id))
                await self._insert_plan(conn, task_id, plan)
        except sa.exc.IntegrityError:
            raise errors.Conflict(f"environment instance {name} already exists") from None
        return await self._started(task_id)

    async def _mark_vm_tiers(self, ctx: RequestContext, environment: Mapping[str, Any]) -> dict[str, Any]:
        """The environment snapshot with `"guest": "vm"` on the tiers whose image (an id, else a name
        the project sees) is a VM image with the guest agent (paas/guest.py): their nodes get the
        "prepare" step (and the scale plans read it from the snapshot). An image not found marks
        nothing: the server step names it."""
        from cumulo.paas import guest

        images: dict[str, Mapping[str, Any]] = {}
        for tier in environment.get("tiers") or []:
            ref = str(tier.get("image") or "")
            if not ref or ref in images:
                continue
            try:
                images[ref] = await self.services.images.get(ctx, ref)
            except errors.CumuloError:  # a name, or no image the project sees: the server step says which
                try:
                    page, _marker = await self.services.images.list_images(ctx, [("name", ref)])
                except errors.CumuloError:
                    continue
                named = [i for i in page if i.get("name") == ref]
                if len(named) == 1:
                    images[ref] = named[0]
        return {**environment, "tiers": guest.vm_tiers(environment.get("tiers") or [], images)}

    # The planners (pure; DEPLOY's plan.py, ELASTICITY's plan_scale.py, plan_app.py), imported when
    # first used; tests replace these methods to run plans of their own.

    def deploy_plan(self, instance_id: str, name: str, environment: Mapping[str, Any], *, project_id: str) -> Plan:
        from cumulo.paas.engine.plan import deploy_plan

        return deploy_plan(instance_id, name, environment, project_id=project_id,
                           templates=str(self.settings.templates) == "on")

    def destroy_plan(self, inventory: Mapping[str, Any]) -> Plan:
        from cumulo.paas.engine.plan import destroy_plan

        return destroy_plan(inventory["instance"], inventory["nodes"], inventory["resources"])

    def scale_plan(self, inventory: Mapping[str, Any], tier: str, *, count: int | None, remove: str | None,
                   use_template: bool) -> Plan:
        from cumulo.paas.engine.plan_scale import scale_plan

        template = next((t for t in inventory["templates"] if t["tier"] == tier), None)
        return scale_plan(inventory["instance"], inventory["nodes"], tier, count=count, remove=remove,
                          template=template, use_template=use_template, templates=str(self.settings.templates),
                          applications=inventory["applications"], resources=inventory["resources"])

    async def _started(self, task_id: int) -> dict[str, Any]:
        """Take the new task's lease (so the answer shows it RUNNING, as Pegasus's did) and run it
        in the background; a stopped engine leaves it QUEUED for the next one."""
        row = None if self._stopping else await tasks.take_lease(self.db, task_id, self.owner, self.settings.lease)
        self.launch(task_id)
        if row is None:
            row = await tasks.get(self.db, task_id)
        assert row is not None
        return row

    async def _inventory(self, instance_id: str, project_id: str | None) -> dict[str, Any]:
        """The instance row and what the plans read of it (nodes, templates, applications, ledger);
        NotFound for another project's, Conflict naming the task already running on it."""
        async with self.db.read() as conn:
            inst = (await conn.execute(sa.select(paas_env_instances).where(I.id == instance_id))).mappings().first()
            if inst is None or inst["project_id"] != project_id:
                raise errors.NotFound(f"environment instance {instance_id} not found")

            async def rows(table: sa.Table, col: Any) -> list[dict[str, Any]]:
                return [dict(r) for r in (await conn.execute(sa.select(table).where(col == instance_id))).mappings()]

            busy = await tasks.active_on_instance(conn, instance_id)
            if busy is not None:
                raise errors.Conflict(f"environment instance {inst['name']} has task {busy['id']} ({busy['kind']}) "
                                      f"{busy['status']}; wait for it to end")
            return {
                "instance": dict(inst),
                "nodes": await rows(paas_tier_instances, paas_tier_instances.c.env_instance_id),
                "templates": await rows(paas_templates, paas_templates.c.env_instance_id),
                "applications": await rows(paas_applications, paas_applications.c.env_instance_id),
                "resources": await rows(paas_resources, paas_resources.c.env_instance_id),
            }

    async def _submit(self, ctx: RequestContext, inst: Mapping[str, Any], kind: TaskKind, plan: Plan, *,
                      description: str, callback: str | None, tier: str | None = None,
                      params: Mapping[str, Any] | None = None,
                      event: Mapping[str, Any] | None = None,
                      environment: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One write: no task running on the instance (else Conflict naming it), the task, the
        instance's task_id by compare-and-swap, the plan's rows and steps (and `event`, a
        paas_events row of a manual scale, with the task's id; `environment`, the instance's new
        snapshot)."""
        async with self.db.write() as conn:
            busy = await tasks.active_on_instance(conn, inst["id"])
            if busy is not None:
                raise errors.Conflict(f"environment instance {inst['name']} has task {busy['id']} ({busy['kind']}) "
                                      f"{busy['status']}; wait for it to end")
            task_id = await tasks.insert_task(
                conn, ctx, kind=kind.value, description=description, instance_id=inst["id"],
                instance_name=inst["name"], tier=tier, callback=callback,
                params={**(params or {}), "rows": _row_ids(plan)},
                result_href=self._result_href(ctx, inst["name"]))
            same = I.task_id.is_(None) if inst["task_id"] is None else I.task_id == inst["task_id"]
            values: dict[str, Any] = {"task_id": task_id, "updated_at": utcnow()}
            if plan.instance_status:
                values["status"] = plan.instance_status
            if environment is not None:  # a new snapshot (plan_products)
                values["environment"] = dict(environment)
            moved = await conn.execute(sa.update(paas_env_instances).where(I.id == inst["id"], same).values(**values))
            if not moved.rowcount:
                raise errors.Conflict(f"environment instance {inst['name']} changed meanwhile; try again")
            await self._insert_plan(conn, task_id, plan)
            if event is not None:
                await conn.execute(sa.insert(paas_events).values(
                    **event, env_instance_id=inst["id"], project_id=inst["project_id"], task_id=task_id,
                    time=utcnow()))
        return await self._started(task_id)

    async def destroy(self, ctx: RequestContext, instance: Mapping[str, Any], *, callback: str | None = None
                      ) -> dict[str, Any]:
        await self._check_callback(callback)
        inv = await self._inventory(str(instance["id"]), ctx.project_id)
        inst = inv["instance"]
        plan = self.destroy_plan(inv)
        return await self._submit(ctx, inst, TaskKind.DESTROY, plan, callback=callback,
                                  description=f"Destroy environment instance {inst['name']}")

    async def scale(
        self, ctx: RequestContext, instance: Mapping[str, Any], tier: str, *, count: int | None = None,
        remove: str | None = None, use_template: bool = True, callback: str | None = None,
        kind: TaskKind = TaskKind.SCALE, reason: str = "",
    ) -> dict[str, Any]:
        await self._check_callback(callback)
        inv = await self._inventory(str(instance["id"]), ctx.project_id)
        inst = inv["instance"]
        if inst["status"] not in (Status.INSTALLED.value,):
            raise errors.Conflict(f"environment instance {inst['name']} is {inst['status']}; only an INSTALLED "
                                  "instance scales")
        plan = self.scale_plan(inv, tier, count=count, remove=remove, use_template=use_template)
        what = f"remove node {remove}" if remove else f"to {count} nodes"
        event = manual_event(ctx, inv["nodes"], tier, count=count, remove=remove, reason=reason) \
            if kind == TaskKind.SCALE else None  # the autoscaler records its own decisions
        return await self._submit(ctx, inst, kind, plan, callback=callback, tier=tier,
                                  description=f"Scale tier {tier} of {inst['name']} {what}" + (f": {reason}" if reason else ""),
                                  params={"count": count, "remove": remove, "use_template": use_template,
                                          "reason": reason}, event=event)

    async def deploy_application(
        self, ctx: RequestContext, instance: Mapping[str, Any], application: Mapping[str, Any], *,
        callback: str | None = None,
    ) -> dict[str, Any]:
        from cumulo.paas.engine.plan_app import application_plan

        await self._check_callback(callback)
        inv = await self._inventory(str(instance["id"]), ctx.project_id)
        inst = inv["instance"]
        if inst["status"] != Status.INSTALLED.value:
            raise errors.Conflict(f"environment instance {inst['name']} is {inst['status']}; applications go on an "
                                  "INSTALLED instance")
        plan = application_plan(inst, inv["nodes"], inv["applications"], application)
        return await self._submit(ctx, inst, TaskKind.APPLICATION, plan, callback=callback,
                                  description=f"Deploy application {application['name']} on {inst['name']}",
                                  params={"application": str(application["name"])})

    async def undeploy_application(
        self, ctx: RequestContext, instance: Mapping[str, Any], name: str, *, callback: str | None = None,
    ) -> dict[str, Any]:
        from cumulo.paas.engine.plan_app import undeploy_plan

        await self._check_callback(callback)
        inv = await self._inventory(str(instance["id"]), ctx.project_id)
        inst = inv["instance"]
        plan = undeploy_plan(inst, inv["nodes"], inv["applications"], name)
        return await self._submit(ctx, inst, TaskKind.UNDEPLOY_APPLICATION, plan, callback=callback,
                                  description=f"Undeploy application {name} from {inst['name']}",
                                  params={"application": name})

    # Pegasus's product-level writes (engine/products_tasks.py)

    async def reconfigure_tier(self, ctx: RequestContext, instance: Mapping[str, Any], tier: str,
                               values: Mapping[str, Sequence[Mapping[str, Any]]], *, callback: str | None = None,
                               ) -> dict[str, Any]:
        from cumulo.paas.engine import products_tasks

        return await products_tasks.reconfigure_tier(self, ctx, instance, tier, values, callback=callback)

    async def install_product(self, ctx: RequestContext, instance: Mapping[str, Any], node: str,
                              entry: Mapping[str, Any], *, callback: str | None = None) -> dict[str, Any]:
        from cumulo.paas.engine import products_tasks

        return await products_tasks.install_product(self, ctx, instance, node, entry, callback=callback)

    async def uninstall_product(self, ctx: RequestContext, instance: Mapping[str, Any], node: str, product: str, *,
                                callback: str | None = None) -> dict[str, Any]:
        from cumulo.paas.engine import products_tasks

        return await products_tasks.uninstall_product(self, ctx, instance, node, product, callback=callback)


__all__ = ["ACTION_MODULES", "TOPIC", "BusEndpoint", "PaasEngine", "TaskStatus", "load_actions"]
