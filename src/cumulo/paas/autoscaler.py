"""The autoscaler: tier scaling policies acted on, as Heat's scaling policies behind Aodh alarms.

Every `conf.paas.autoscale_interval` seconds, for each INSTALLED environment instance with policies
on a tier, the autoscaler reads the tier's nodes whose server is ACTIVE through
`ComputeService.server_samples` (the agents' driver reading behind diagnostics and /metrics), acting
as the instance's owner (user and project of the instance row, role member), never as an admin:
- a node's CPU % = Δcpu_ns / (Δt · vcpus · 1e9) · 100 between two readings (runc's CFS quota and
  QEMU's vCPU threads both follow the flavor's vCPUs); its memory % = used / limit · 100;
- the tier's value is the mean over its nodes that have one. Readings stay in memory: after a
  restart (or on a new node) the first reading only primes.

Each policy (graph.py's shape, checked by `scaling.validate_policy`) collects the tier's values over
its `period` (a period closes at the first evaluation within half an interval of its end); when a
period closes, its mean either breaches (`comparison` against `threshold`) or not. A policy alarms after `evaluation_periods` consecutive breaching periods (Aodh's threshold rule;
a period without any reading changes nothing), and, as Aodh's repeat_actions, signals again at every
period it stays in alarm. A signal then goes Heat's way (aws/autoscaling_group.py `adjust`,
heat/scaling/cooldown.py; scaling.decide): a task running on the instance -> no action ("a scale is
already running"); the new size equal to the current one -> no action ("already at max/min"), and no
cooldown; before the tier's cooldown end -> no action ("cooldown until T"); else
`engine.scale(..., count=new, kind=TaskKind.AUTOSCALE, reason=...)`. When that task ends with SUCCESS,
the tier's cooldown ends `cooldown` seconds after the task's end (Heat starts it at the END of the
resize, and never moves an end backwards); a failed scale starts none. The cooldown is the tier's:
after a scale out, the scale-in policy waits too (Heat keeps it on the group).

State (`paas_scaling_state`, per instance, tier and policy): the consecutive breaching periods, the
cooldown end and the last decision (with a scale task still to settle), so a restart keeps them.
Every decision is a `paas_events` row with the policy, metric, value, threshold, comparison, from/to
size, task id and the reason; a no-action decision only when the decision or its reason changed
since the policy's last one (a long cooldown is one row; unlike Heat, which logs none).
The API reads them (paas/inventory.py `Inventory.events`), the caller's project only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database, utcnow
from cumulo.paas import scaling
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine.base import PaasEngineAPI, Status, TaskKind, TaskStatus
from cumulo.paas.models import (
    paas_env_instances,
    paas_events,
    paas_scaling_state,
    paas_tasks,
    paas_tier_instances,
)

LOG = logging.getLogger(__name__)

# A node row in one of these states is no member of its tier (plan_scale.py keeps removed rows).
GONE = frozenset({Status.UNDEPLOYED.value, Status.UNDEPLOYING.value, Status.UNINSTALLED.value})
OPEN_TASKS = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)
SCALE_OUT, SCALE_IN, NO_ACTION = "scale_out", "scale_in", "no_action"

Sampler = Callable[[RequestContext, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]
Clock = Callable[[], datetime]


def owner_ctx(instance: Mapping[str, Any]) -> RequestContext:
    """The context the autoscaler acts in: the instance's owner (its user and project) as a member."""
    return RequestContext(user_id=str(instance["user_id"]), project_id=str(instance["project_id"]),
                          roles=expand_roles(["member"]), domain_id=str(instance.get("domain_id") or "default"))


@dataclass
class _Period:
    """A policy's open evaluation period (memory only)."""

    start: datetime
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TierReading:
    cpu: float | None  # mean CPU % of the nodes with a CPU reading
    memory: float | None  # mean memory %
    nodes: int  # nodes read


class Autoscaler:
    """`Autoscaler(services, engine)`; `await start()` runs the loop, `await stop()` ends it.
    `run_once()` is one evaluation (tests drive it with their own `clock` and `sampler`)."""

    def __init__(self, services: PaasServices, engine: PaasEngineAPI, *, clock: Clock = utcnow,
                 sampler: Sampler | None = None, interval: float | None = None) -> None:
        self.services, self.engine, self.clock = services, engine, clock
        self.sampler: Sampler = sampler or services.compute.server_samples
        self.interval = float(interval if interval is not None else services.conf.paas.autoscale_interval)
        self._readings: dict[str, tuple[float, int]] = {}  # server uuid -> (time, cpu_ns) of the last reading
        self._periods: dict[tuple[str, str, str], _Period] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def db(self) -> Database:
        return self.services.db

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="paas-autoscaler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad pass must not end autoscaling
                LOG.exception("autoscaler: an evaluation failed")
            await asyncio.sleep(self.interval)

    # -- one pass ---------------------------------------------------------------------------

    async def run_once(self) -> None:
        """Settle finished scale tasks, then evaluate every policy of every INSTALLED instance."""
        now = self.clock()
        await self._settle(now)
        async with self.db.read() as conn:
            rows = [dict(r) for r in (await conn.execute(
                sa.select(paas_env_instances).where(paas_env_instances.c.status == Status.INSTALLED.value)
                .order_by(paas_env_instances.c.created_at))).mappings()]
        seen: set[str] = set()
        live: set[tuple[str, str, str]] = set()
        for inst in rows:
            tiers = [t for t in (inst.get("environment") or {}).get("tiers") or [] if t.get("policies")]
            if not tiers:
                continue
            try:
                await self._instance(inst, tiers, now, seen, live)
            except Exception:  # one instance's trouble must not stop the others'
                LOG.warning("autoscaler: instance %s could not be evaluated", inst["id"], exc_info=True)
        for uuid in set(self._readings) - seen:
            del self._readings[uuid]
        for key in set(self._periods) - live:
            del self._periods[key]

    async def _instance(self, inst: dict[str, Any], tiers: list[Mapping[str, Any]], now: datetime,
                        seen: set[str], live: set[tuple[str, str, str]]) -> None:
        ctx = owner_ctx(inst)
        async with self.db.read() as conn:
            nodes = [dict(r) for r in (await conn.execute(sa.select(paas_tier_instances).where(
                paas_tier_instances.c.env_instance_id == inst["id"]))).mappings()]
            states = {(str(r["tier"]), str(r["policy"])): dict(r) for r in (await conn.execute(
                sa.select(paas_scaling_state).where(paas_scaling_state.c.env_instance_id == inst["id"]))).mappings()}
            running = (await conn.execute(sa.select(paas_tasks.c.id, paas_tasks.c.kind).where(
                paas_tasks.c.env_instance_id == inst["id"], paas_tasks.c.status.in_(OPEN_TASKS))
                .order_by(paas_tasks.c.id).limit(1))).mappings().first()
        for tier in tiers:
            name = str(tier["name"])
            members = sorted((n for n in nodes if str(n["tier"]) == name and str(n["status"]) not in GONE),
                             key=lambda n: int(n["replica"]))
            reading = await self.read_tier(ctx, members, seen)
            tier_states = {p: s for (t, p), s in states.items() if t == name}
            for policy in tier.get("policies") or []:
                live.add((str(inst["id"]), name, str(policy["name"])))
                await self._policy(ctx, inst, tier, policy, len(members), reading, tier_states,
                                   None if running is None else dict(running), now)

    async def read_tier(self, ctx: RequestContext, members: Sequence[Mapping[str, Any]],
                        seen: set[str] | None = None) -> TierReading:
        """The tier's mean CPU and memory % over its nodes whose server is ACTIVE."""
        servers: list[dict[str, Any]] = []
        for node in members:
            if not node.get("server_id"):
                continue
            try:
                row = await self.services.compute.get(ctx, str(node["server_id"]))
            except errors.NotFound:
                continue
            if row.get("vm_state") == "active":
                servers.append(row)
        if not servers:
            return TierReading(None, None, 0)
        cpu: list[float] = []
        memory: list[float] = []
        for sample in await self.sampler(ctx, servers):
            uuid = str(sample["uuid"])
            if seen is not None:
                seen.add(uuid)
            pct = self._cpu_percent(uuid, sample)
            if pct is not None:
                cpu.append(pct)
            used, limit = sample.get("memory_used"), sample.get("memory_limit")
            if used is not None and limit:
                memory.append(min(100.0, 100.0 * float(used) / float(limit)))
        return TierReading(statistics.fmean(cpu) if cpu else None,
                           statistics.fmean(memory) if memory else None, len(servers))

    def _cpu_percent(self, uuid: str, sample: Mapping[str, Any]) -> float | None:
        """CPU % since this server's previous reading; None for a first (priming) one."""
        cpu_ns, at = sample.get("cpu_ns"), sample.get("time")
        if cpu_ns is None or at is None:
            self._readings.pop(uuid, None)
            return None
        previous = self._readings.get(uuid)
        self._readings[uuid] = (float(at), int(cpu_ns))
        if previous is None:
            return None
        elapsed, used = float(at) - previous[0], int(cpu_ns) - previous[1]
        if elapsed <= 0 or used < 0:  # a clock step or a restarted guest: this reading primes again
            return None
        vcpus = max(1, int(sample.get("vcpus") or 1))
        return min(100.0, 100.0 * used / (elapsed * vcpus * 1e9))

    # -- one policy -------------------------------------------------------------------------

    async def _policy(self, ctx: RequestContext, inst: Mapping[str, Any], tier: Mapping[str, Any],
                      policy: Mapping[str, Any], current: int, reading: TierReading,
                      tier_states: Mapping[str, dict[str, Any]], running: Mapping[str, Any] | None,
                      now: datetime) -> None:
        tier_name, name = str(tier["name"]), str(policy["name"])
        try:
            rule, adj = scaling.policy_rule(policy), scaling.policy_adjustment(policy)
            bounds = scaling.Bounds(int(tier.get("min") or 0), int(tier.get("max") or 0))
        except (errors.Invalid, ValueError, KeyError, TypeError):
            LOG.warning("autoscaler: instance %s tier %s policy %s is not valid", inst["id"], tier_name, name)
            return
        value = reading.cpu if policy.get("metric") == "cpu" else reading.memory
        key = (str(inst["id"]), tier_name, name)
        period = self._periods.get(key)
        if period is None:
            period = self._periods[key] = _Period(now)
        if value is not None:
            period.values.append(value)
        if (now - period.start).total_seconds() + self.interval / 2 < rule.period:
            return  # the period is still open
        self._periods[key] = _Period(now)
        if not period.values:
            return  # no reading in the whole period (priming, or nothing ACTIVE): nothing changes
        mean = statistics.fmean(period.values)
        state = dict(tier_states.get(name) or {"env_instance_id": inst["id"], "tier": tier_name, "policy": name,
                                               "breaches": 0, "cooldown_end": None, "last_decision": None})
        last = dict(state.get("last_decision") or {})
        breaching = rule.comparison.holds(mean, rule.threshold)
        before = (state.get("breaches"), state.get("last_decision"))
        state["breaches"] = int(state.get("breaches") or 0) + 1 if breaching else 0
        if state["breaches"] < rule.evaluation_periods:
            if not breaching and last.get("key"):
                last.pop("key")  # the alarm cleared: the next one is a new decision, recorded
            state["last_decision"] = last or None
            if (state["breaches"], state["last_decision"]) != before:  # a quiet tier writes nothing
                await self._save_state(state, now)
            return
        alarm = (f"{policy.get('metric')} {mean:.1f}% {_OPS[rule.comparison]} {rule.threshold:g}% for "
                 f"{state['breaches']} period(s) of {rule.period:g} s")
        event = {"env_instance_id": inst["id"], "project_id": inst["project_id"], "tier": tier_name,
                 "policy": name, "metric": policy.get("metric"), "value": round(mean, 2),
                 "threshold": rule.threshold, "comparison": rule.comparison.value, "from_size": current}
        if running is not None:
            decision = scaling.Decision(scaling.Action.NO_ACTION, scaling.Reason.SCALING_IN_PROGRESS,
                                        current, current)
        else:
            ends = [s["cooldown_end"] for s in tier_states.values() if s.get("cooldown_end") is not None]
            cooling = scaling.CooldownState(False, max(ends) if ends else None)
            decision = scaling.decide(current, adj, bounds, cooling, now)
        if not decision.acts:
            said = decision.describe()
            if running is not None:  # Heat: "due to scaling activity"; here any task of the instance
                said = f"no action: task {running['id']} ({running['kind']}) is running on the instance"
            if last.get("key") != f"{NO_ACTION}:{said}":
                last["key"] = f"{NO_ACTION}:{said}"
                await self._event({**event, "decision": NO_ACTION, "reason": f"{alarm}: {said}",
                                   "to_size": current, "task_id": None if running is None else int(running["id"])},
                                  now)
            state["last_decision"] = last
            await self._save_state(state, now)
            return
        direction = SCALE_OUT if decision.target > current else SCALE_IN
        reason = f"{alarm}: {decision.describe()} (policy {name})"
        try:
            task = await self.engine.scale(ctx, inst, tier_name, count=decision.target, kind=TaskKind.AUTOSCALE,
                                           reason=reason)
        except errors.CumuloError as exc:  # a task started meanwhile, or the tier changed: no action
            said = f"no action: {exc}"
            if last.get("key") != f"{NO_ACTION}:{said}":
                last["key"] = f"{NO_ACTION}:{said}"
                await self._event({**event, "decision": NO_ACTION, "reason": f"{alarm}: {said}",
                                   "to_size": current, "task_id": None}, now)
            state["last_decision"] = last
            await self._save_state(state, now)
            return
        task_id = int(task["id"])
        await self._event({**event, "decision": direction, "reason": reason, "to_size": decision.target,
                           "task_id": task_id}, now)
        state["last_decision"] = {"key": f"{direction}:{task_id}", "decision": direction, "task_id": task_id,
                                  "pending_task": task_id, "from": current, "to": decision.target,
                                  "cooldown": scaling.effective_cooldown(_num(policy.get("cooldown")), None)}
        await self._save_state(state, now)

    # -- scale tasks that ended: Heat's _finished_scaling ----------------------------------

    async def _settle(self, now: datetime) -> None:
        async with self.db.read() as conn:
            rows = [dict(r) for r in (await conn.execute(sa.select(paas_scaling_state))).mappings()]
        for row in rows:
            last = dict(row.get("last_decision") or {})
            task_id = last.get("pending_task")
            if task_id is None:
                continue
            async with self.db.read() as conn:
                task = (await conn.execute(sa.select(paas_tasks.c.status, paas_tasks.c.end_time).where(
                    paas_tasks.c.id == int(task_id)))).mappings().first()
            if task is not None and task["status"] in OPEN_TASKS:
                continue
            ok = task is not None and task["status"] == TaskStatus.SUCCESS.value
            ended = (task["end_time"] if task is not None else None) or now
            cooled = scaling.finish_scaling(scaling.CooldownState(True, row["cooldown_end"]), ended,
                                            _num(last.get("cooldown")), size_changed=ok)
            last.pop("pending_task", None)
            last["outcome"] = task["status"] if task is not None else "gone"
            row["cooldown_end"], row["last_decision"] = cooled.cooldown_end, last
            await self._save_state(row, now)

    # -- rows ---------------------------------------------------------------------------------

    async def _save_state(self, state: Mapping[str, Any], now: datetime) -> None:
        keys = {"env_instance_id": state["env_instance_id"], "tier": state["tier"], "policy": state["policy"]}
        values = {"breaches": int(state.get("breaches") or 0), "cooldown_end": state.get("cooldown_end"),
                  "last_decision": state.get("last_decision"), "updated_at": now}
        t = paas_scaling_state.c
        async with self.db.write() as conn:
            exists = (await conn.execute(sa.select(sa.func.count()).select_from(paas_scaling_state).where(
                t.env_instance_id == keys["env_instance_id"], t.tier == keys["tier"],
                t.policy == keys["policy"]))).scalar()
            if exists:
                await conn.execute(sa.update(paas_scaling_state).where(
                    t.env_instance_id == keys["env_instance_id"], t.tier == keys["tier"],
                    t.policy == keys["policy"]).values(**values))
            else:
                still = (await conn.execute(sa.select(paas_env_instances.c.id).where(
                    paas_env_instances.c.id == keys["env_instance_id"]))).scalar()
                if still is not None:  # the instance may have gone meanwhile
                    await conn.execute(sa.insert(paas_scaling_state).values(**keys, **values))

    async def _event(self, row: Mapping[str, Any], now: datetime) -> None:
        LOG.info("autoscaler: instance %s tier %s: %s", row["env_instance_id"], row["tier"], row["reason"])
        async with self.db.write() as conn:
            await conn.execute(sa.insert(paas_events).values(**row, time=now))


_OPS = {scaling.Comparison.GT: ">", scaling.Comparison.GE: ">=", scaling.Comparison.LT: "<",
        scaling.Comparison.LE: "<=", scaling.Comparison.EQ: "==", scaling.Comparison.NE: "!="}


def _num(value: Any) -> float | None:
    return None if value is None else float(value)

