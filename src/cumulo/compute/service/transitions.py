"""Which server actions are allowed in which states, and what each one sets: Nova's
@check_instance_lock / @check_instance_host / @check_instance_state as one declarative table.

The API checks a Transition against the row it read, then performs a compare-and-swap on
task_state (and vm_state) so that two racing requests cannot both start an action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cumulo.compute import actions as act
from cumulo.compute import states as st
from cumulo.compute.rpc import ComputeAPI
from cumulo.context import RequestContext
from cumulo.errors import Conflict, InvalidState

# task_states from which a HARD reboot may start (Nova's ALLOW_REBOOT).
ALLOW_HARD_REBOOT_TASKS = frozenset(
    {None, st.REBOOTING, st.REBOOT_PENDING, st.REBOOT_STARTED, st.RESUMING, st.REBOOTING_HARD,
     st.UNPAUSING, st.PAUSING, st.SUSPENDING}
)
_ONLY_IDLE: frozenset[str | None] = frozenset({None})

# An rpc.ComputeAPI method that tells the agent: (api, host, instance_uuid, *, request_id, ...).
AgentCast = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Transition:
    api_name: str  # as quoted in 409 messages: "Cannot 'stop' instance ..."
    action: str  # instance action record name (os-instance-actions)
    vm_states: frozenset[str] | None  # None: any vm_state
    new_task_state: str | None
    agent: AgentCast | None = None  # cast to compute.<host> (None: the caller casts elsewhere)
    task_states: frozenset[str | None] | None = _ONLY_IDLE  # None: any task_state
    must_have_launched: bool = True
    needs_host: bool = False
    check_lock: bool = True


def _t(
    api_name: str, action: str, vm: tuple[str, ...], new_task: str, agent: AgentCast | None, **kw: Any
) -> Transition:
    return Transition(api_name, action, frozenset(vm), new_task, agent, **kw)


TRANSITIONS: dict[str, Transition] = {
    "stop": _t("stop", act.STOP, (st.ACTIVE, st.ERROR), st.POWERING_OFF, ComputeAPI.stop_instance, needs_host=True),
    "start": _t("start", act.START, (st.STOPPED,), st.POWERING_ON, ComputeAPI.start_instance, needs_host=True),
    "reboot_soft": _t("reboot", act.REBOOT, (st.ACTIVE,), st.REBOOTING, ComputeAPI.reboot_instance),
    "reboot_hard": _t(
        "reboot", act.REBOOT, (st.ACTIVE, st.STOPPED, st.PAUSED, st.SUSPENDED, st.ERROR), st.REBOOTING_HARD,
        ComputeAPI.reboot_instance, task_states=ALLOW_HARD_REBOOT_TASKS,
    ),
    "pause": _t("pause", act.PAUSE, (st.ACTIVE,), st.PAUSING, ComputeAPI.pause_instance),
    "unpause": _t("unpause", act.UNPAUSE, (st.PAUSED,), st.UNPAUSING, ComputeAPI.unpause_instance),
    "suspend": _t("suspend", act.SUSPEND, (st.ACTIVE,), st.SUSPENDING, ComputeAPI.suspend_instance),
    "resume": _t("resume", act.RESUME, (st.SUSPENDED,), st.RESUMING, ComputeAPI.resume_instance),
    "rebuild": _t("rebuild", act.REBUILD, (st.ACTIVE, st.STOPPED, st.ERROR), st.REBUILDING, ComputeAPI.rebuild_instance),
    # Resize goes through the conductor (claim on the new flavor first).
    "resize": _t("resize", act.RESIZE, (st.ACTIVE, st.STOPPED), st.RESIZE_PREP, None, needs_host=True),
    "confirmResize": _t("confirmResize", act.CONFIRM_RESIZE, (st.RESIZED,), st.RESIZE_CONFIRMING, ComputeAPI.confirm_resize),
    "revertResize": _t("revertResize", act.REVERT_RESIZE, (st.RESIZED,), st.RESIZE_REVERTING, ComputeAPI.revert_resize),
    # Nova does not check the lock for snapshots: a lock guards against change, a snapshot changes nothing.
    "createImage": _t(
        "createImage", act.CREATE_IMAGE, (st.ACTIVE, st.STOPPED, st.PAUSED, st.SUSPENDED), st.IMAGE_SNAPSHOT_PENDING,
        ComputeAPI.snapshot_instance, check_lock=False,
    ),
    # A backup is a snapshot plus rotation (compute.service.backup); no lock check either, as in Nova.
    "createBackup": _t(
        "createBackup", act.BACKUP, (st.ACTIVE, st.STOPPED, st.PAUSED, st.SUSPENDED), st.IMAGE_BACKUP,
        ComputeAPI.backup_instance, check_lock=False,
    ),
}

# Metadata changes: lock and vm_state are checked, task_state is not (Nova passes task_state=None).
METADATA_VM_STATES = frozenset({st.ACTIVE, st.PAUSED, st.SUSPENDED, st.STOPPED})


def check_lock(ctx: RequestContext, inst: dict[str, Any]) -> None:
    if inst["locked"] and not ctx.is_admin:
        raise Conflict(f"Instance {inst['uuid']} is locked")


def invalid_state(api_name: str, uuid: str, attr: str, state: Any) -> InvalidState:
    return InvalidState(f"Cannot '{api_name}' instance {uuid} while it is in {attr} {state}")


def check_state(
    inst: dict[str, Any],
    api_name: str,
    vm_states: frozenset[str] | None,
    task_states: frozenset[str | None] | None,
    must_have_launched: bool,
) -> None:
    if vm_states is not None and inst["vm_state"] not in vm_states:
        raise invalid_state(api_name, inst["uuid"], "vm_state", inst["vm_state"])
    if task_states is not None and inst["task_state"] not in task_states:
        raise invalid_state(api_name, inst["uuid"], "task_state", inst["task_state"])
    if must_have_launched and not inst.get("launched_at"):
        raise invalid_state(api_name, inst["uuid"], "launched_at", None)


def device_host(ctx: RequestContext, inst: dict[str, Any], api_name: str, vm_states: frozenset[str]) -> str:
    """Nova's checks before a volume or interface is attached or detached (not locked, a vm_state
    that takes it, no task); the host whose agent does it (409 while the server has none)."""
    check_lock(ctx, inst)
    check_state(inst, api_name, vm_states, frozenset({None}), False)
    if not inst.get("host"):
        raise Conflict(f"Instance {inst['uuid']} is not ready")
    return str(inst["host"])


def check(ctx: RequestContext, inst: dict[str, Any], t: Transition) -> None:
    """All of Nova's pre-checks for `t`, in Nova's order; raises Conflict (409)."""
    if t.check_lock:
        check_lock(ctx, inst)
    if t.needs_host and not inst.get("host"):
        raise Conflict(f"Instance {inst['uuid']} is not ready")
    check_state(inst, t.api_name, t.vm_states, t.task_states, t.must_have_launched)
    if t.agent and not inst.get("host"):
        # Nothing to cast to: the action could never finish.
        raise Conflict(f"Instance {inst['uuid']} is not ready")
