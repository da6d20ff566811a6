"""Power workflows (stop, start, reboot, pause, unpause, suspend, resume), the power-state sync, and
the two reads of a guest (console output, diagnostics).

Each operation is a row in a table: the task_states the API may have set, the capability and
driver call, and the vm_state on success. On a driver failure the vm_state stays what it was,
task_state is cleared and a fault is recorded (Nova's reverts_task_state behaviour).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo.compute import actions
from cumulo.compute import states as s
from cumulo.compute.drivers.base import Capability, PowerState, driver_for
from cumulo.compute.models import instances
from cumulo.errors import DriverError, InvalidState, NotFound

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

# The vm_state a driver's power state means, when nothing is in flight.
VM_STATE_FOR_POWER = {
    PowerState.RUNNING: s.ACTIVE,
    PowerState.SHUTDOWN: s.STOPPED,
    PowerState.CRASHED: s.STOPPED,
    PowerState.PAUSED: s.PAUSED,
    PowerState.SUSPENDED: s.SUSPENDED,
}


@dataclass(frozen=True)
class PowerOp:
    method: str  # bus method name; the event is "compute_<method>"
    action: str  # the instance action the API recorded
    task_states: frozenset[str]
    success_vm_state: str
    call: Callable[[Node, dict[str, Any]], Awaitable[None]]


async def _stop(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.POWER, node=node.name).power_off(inst["uuid"])


async def _start(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.POWER, node=node.name).power_on(await node.spec(inst))


async def _soft_reboot(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.POWER, node=node.name).reboot(await node.spec(inst), hard=False)


async def _hard_reboot(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.POWER, node=node.name).reboot(await node.spec(inst), hard=True)


async def _pause(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.PAUSE, node=node.name).pause(inst["uuid"])


async def _unpause(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.PAUSE, node=node.name).unpause(inst["uuid"])


async def _suspend(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.SUSPEND, node=node.name).suspend(inst["uuid"])


async def _resume(node: Node, inst: dict[str, Any]) -> None:
    await driver_for(node.driver, Capability.SUSPEND, node=node.name).resume(await node.spec(inst))


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


async def run(node: Node, op: PowerOp, uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None:
            LOG.info("%s: instance %s is gone", op.method, uuid)
            return
        task = inst["task_state"]
        if task not in op.task_states:
            LOG.info("%s: instance %s has task_state %s, not one of %s; ignoring", op.method, uuid, task,
                     sorted(op.task_states))
            return
        req = await node.request_id_for(uuid, request_id, op.action)
        try:
            async with actions.event(node.db, uuid, req, f"compute_{op.method}", node.host):
                await op.call(node, inst)
        except Exception as exc:
            LOG.warning("%s of %s failed: %s", op.method, uuid, exc)
            await node.set_state(
                uuid, {"task_state": None, "power_state": int(await node.power_of(uuid))},
                expected_task_state=task, fault=exc,
            )
            return
        await node.set_state(
            uuid,
            {"vm_state": op.success_vm_state, "task_state": None, "power_state": int(await node.power_of(uuid))},
            expected_task_state=task,
        )


async def console_output(node: Node, uuid: str, length: int | None) -> str:
    if await node.load(uuid) is None:
        raise NotFound(f"Instance {uuid} could not be found.")
    try:
        text = await driver_for(node.driver, Capability.CONSOLE, node=node.name).get_console_output(uuid)
    except DriverError as exc:
        raise InvalidState(f"Instance {uuid} has no console output: {exc.message}") from exc
    if length is None or int(length) < 0:
        return text
    # Nova's tail: the last `length` pieces of the text split on "\n", so a trailing newline
    # counts as one of them (Tempest counts lines that way).
    return "\n".join(text.split("\n")[-int(length):]) if int(length) > 0 else ""


async def diagnostics(node: Node, uuid: str) -> dict[str, Any]:
    if await node.load(uuid) is None:
        raise NotFound(f"Instance {uuid} could not be found.")
    try:
        return await driver_for(node.driver, Capability.DIAGNOSTICS, node=node.name).get_diagnostics(uuid)
    except DriverError as exc:
        raise InvalidState(f"Instance {uuid} has no diagnostics: {exc.message}") from exc


async def sync_power_states(node: Node) -> int:
    """Nova's _sync_power_states: DB power_state follows the driver; a guest that shut itself down
    while ACTIVE becomes STOPPED; a STOPPED instance found running is powered off again.
    Instances with a task in flight are skipped. Returns how many rows changed."""
    reported = {st.uuid: st.power_state for st in await node.driver.list_instances()}
    changed = 0
    # Only the columns the comparison needs: a host may carry thousands of instances.
    q = sa.select(instances.c.uuid, instances.c.vm_state, instances.c.power_state).where(
        node.owns_clause(), instances.c.deleted.is_(False), instances.c.task_state.is_(None),
        instances.c.vm_state.not_in([s.BUILDING, s.DELETED]),
    )
    async with node.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(q)).mappings()]
    for row in rows:
        if node.locks.busy(row["uuid"]):
            continue
        if _wanted(row, reported.get(row["uuid"], PowerState.NOSTATE)) is None:
            continue
        async with node.locks.hold(row["uuid"]):
            inst = await node.load(row["uuid"])
            if inst is None or inst["task_state"] is not None:
                continue
            power = await node.power_of(inst["uuid"])
            values = _wanted(inst, power)
            if values is None:
                continue
            if values.pop("_power_off", False):
                try:
                    await driver_for(node.driver, Capability.POWER, node=node.name).power_off(inst["uuid"])
                    values["power_state"] = int(await node.power_of(inst["uuid"]))
                except Exception:
                    LOG.exception("power sync could not stop %s", inst["uuid"])
                    continue
            if await node.set_state(inst["uuid"], values, expected_task_state=None, expected_vm_state=inst["vm_state"]):
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
