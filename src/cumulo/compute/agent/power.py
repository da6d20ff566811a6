"""Power workflows (stop, start, reboot, pause, unpause, suspend, resume) and the power-state sync.

Each operation is a row in a table: the task_states the API may have set, the capability and
driver call, and the vm_state on success. On a driver failure the vm_state stays what it was,
task_state is cleared and a fault is recorded (Nova's reverts_task_state behaviour).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from cumulo.compute import actions
from cumulo.compute import states as s
from cumulo.compute.drivers.base import (
    Capability,
    Console,
    Diagnostics,
    Pause,
    Power,
    PowerState,
    Rebuild,
    Resize,
    Snapshot,
    Suspend,
)
from cumulo.compute.models import instances
from cumulo.errors import InvalidState

if TYPE_CHECKING:
    from cumulo.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)

# The vm_state a driver's power state means, when nothing is in flight.
VM_STATE_FOR_POWER = {
    PowerState.RUNNING: s.ACTIVE,
    PowerState.SHUTDOWN: s.STOPPED,
    PowerState.CRASHED: s.STOPPED,
    PowerState.PAUSED: s.PAUSED,
    PowerState.SUSPENDED: s.SUSPENDED,
}


def _driver_as(mgr: ComputeManager, proto: Any, cap: Capability) -> Any:
    """The driver seen through one of its Protocols, if it declares the capability."""
    mgr.require(cap)
    if not isinstance(mgr.driver, proto):
        raise InvalidState(f"The {mgr.driver.info.name} driver of node {mgr.node} does not implement {proto.__name__}")
    return mgr.driver


def power_driver(mgr: ComputeManager) -> Power:
    return cast(Power, _driver_as(mgr, Power, Capability.POWER))


def pause_driver(mgr: ComputeManager) -> Pause:
    return cast(Pause, _driver_as(mgr, Pause, Capability.PAUSE))


def suspend_driver(mgr: ComputeManager) -> Suspend:
    return cast(Suspend, _driver_as(mgr, Suspend, Capability.SUSPEND))


def rebuild_driver(mgr: ComputeManager) -> Rebuild:
    return cast(Rebuild, _driver_as(mgr, Rebuild, Capability.REBUILD))


def resize_driver(mgr: ComputeManager) -> Resize:
    return cast(Resize, _driver_as(mgr, Resize, Capability.RESIZE))


def snapshot_driver(mgr: ComputeManager) -> Snapshot:
    return cast(Snapshot, _driver_as(mgr, Snapshot, Capability.SNAPSHOT))


def console_driver(mgr: ComputeManager) -> Console:
    return cast(Console, _driver_as(mgr, Console, Capability.CONSOLE))


def diagnostics_driver(mgr: ComputeManager) -> Diagnostics:
    return cast(Diagnostics, _driver_as(mgr, Diagnostics, Capability.DIAGNOSTICS))


@dataclass(frozen=True)
class PowerOp:
    method: str  # bus method name; the event is "compute_<method>"
    action: str  # the instance action the API recorded
    task_states: frozenset[str]
    success_vm_state: str
    call: Callable[[ComputeManager, dict[str, Any]], Awaitable[None]]


async def _stop(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await power_driver(mgr).power_off(inst["uuid"])


async def _start(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await power_driver(mgr).power_on(await mgr.spec(inst))


async def _soft_reboot(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await power_driver(mgr).reboot(await mgr.spec(inst), hard=False)


async def _hard_reboot(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await power_driver(mgr).reboot(await mgr.spec(inst), hard=True)


async def _pause(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await pause_driver(mgr).pause(inst["uuid"])


async def _unpause(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await pause_driver(mgr).unpause(inst["uuid"])


async def _suspend(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await suspend_driver(mgr).suspend(inst["uuid"])


async def _resume(mgr: ComputeManager, inst: dict[str, Any]) -> None:
    await suspend_driver(mgr).resume(await mgr.spec(inst))


_REBOOT_TASKS = frozenset(
    {s.REBOOTING, s.REBOOT_PENDING, s.REBOOT_STARTED, s.REBOOTING_HARD, s.REBOOT_PENDING_HARD, s.REBOOT_STARTED_HARD}
)
STOP = PowerOp("stop_instance", actions.STOP, frozenset({s.POWERING_OFF}), s.STOPPED, _stop)
START = PowerOp("start_instance", actions.START, frozenset({s.POWERING_ON}), s.ACTIVE, _start)
SOFT_REBOOT = PowerOp("reboot_instance", actions.REBOOT, _REBOOT_TASKS, s.ACTIVE, _soft_reboot)
HARD_REBOOT = PowerOp("reboot_instance", actions.REBOOT, _REBOOT_TASKS, s.ACTIVE, _hard_reboot)
PAUSE = PowerOp("pause_instance", actions.PAUSE, frozenset({s.PAUSING}), s.PAUSED, _pause)
UNPAUSE = PowerOp("unpause_instance", actions.UNPAUSE, frozenset({s.UNPAUSING}), s.ACTIVE, _unpause)
SUSPEND = PowerOp("suspend_instance", actions.SUSPEND, frozenset({s.SUSPENDING}), s.SUSPENDED, _suspend)
RESUME = PowerOp("resume_instance", actions.RESUME, frozenset({s.RESUMING}), s.ACTIVE, _resume)


async def run(mgr: ComputeManager, op: PowerOp, uuid: str, request_id: str | None) -> None:
    async with mgr.locks.hold(uuid):
        inst = await mgr.load(uuid)
        if inst is None:
            LOG.info("%s: instance %s is gone", op.method, uuid)
            return
        task = inst["task_state"]
        if task not in op.task_states:
            LOG.info("%s: instance %s has task_state %s, not one of %s; ignoring", op.method, uuid, task,
                     sorted(op.task_states))
            return
        req = await mgr.request_id_for(uuid, request_id, op.action)
        try:
            async with actions.event(mgr.db, uuid, req, f"compute_{op.method}", mgr.host):
                await op.call(mgr, inst)
        except Exception as exc:
            LOG.warning("%s of %s failed: %s", op.method, uuid, exc)
            await mgr.set_state(
                uuid, {"task_state": None, "power_state": int(await mgr.power_of(uuid))},
                expected_task_state=task, fault=exc,
            )
            return
        await mgr.set_state(
            uuid,
            {"vm_state": op.success_vm_state, "task_state": None, "power_state": int(await mgr.power_of(uuid))},
            expected_task_state=task,
        )


async def sync_power_states(mgr: ComputeManager) -> int:
    """Nova's _sync_power_states: DB power_state follows the driver; a guest that shut itself down
    while ACTIVE becomes STOPPED; a STOPPED instance found running is powered off again.
    Instances with a task in flight are skipped. Returns how many rows changed."""
    reported = {st.uuid: st.power_state for st in await mgr.driver.list_instances()}
    changed = 0
    # Only the columns the comparison needs: a host may carry thousands of instances.
    q = sa.select(instances.c.uuid, instances.c.vm_state, instances.c.power_state).where(
        mgr.owns_clause(), instances.c.deleted.is_(False), instances.c.task_state.is_(None),
        instances.c.vm_state.not_in([s.BUILDING, s.DELETED]),
    )
    async with mgr.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(q)).mappings()]
    for row in rows:
        if mgr.locks.busy(row["uuid"]):
            continue
        if _wanted(row, reported.get(row["uuid"], PowerState.NOSTATE)) is None:
            continue
        async with mgr.locks.hold(row["uuid"]):
            inst = await mgr.load(row["uuid"])
            if inst is None or inst["task_state"] is not None:
                continue
            power = await mgr.power_of(inst["uuid"])
            values = _wanted(inst, power)
            if values is None:
                continue
            if values.pop("_power_off", False):
                try:
                    await power_driver(mgr).power_off(inst["uuid"])
                    values["power_state"] = int(await mgr.power_of(inst["uuid"]))
                except Exception:
                    LOG.exception("power sync could not stop %s", inst["uuid"])
                    continue
            if await mgr.set_state(inst["uuid"], values, expected_task_state=None, expected_vm_state=inst["vm_state"]):
                changed += 1
    return changed


def _wanted(inst: dict[str, Any], power: PowerState) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    if int(inst["power_state"] or 0) != int(power):
        values["power_state"] = int(power)
    vm = inst["vm_state"]
    if vm == s.ACTIVE and power in (PowerState.SHUTDOWN, PowerState.CRASHED):
        values["vm_state"] = s.STOPPED
    elif vm == s.STOPPED and power == PowerState.RUNNING:
        values["_power_off"] = True
    return values or None
