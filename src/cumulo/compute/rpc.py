"""The compute message API: every cast and call between the API, conductor, scheduler and agents.

Callers use these functions; endpoints implement async methods with the same names and keyword
arguments (see compute.conductor.manager.Conductor, compute.agent.manager.ComputeManager,
scheduler.manager.SchedulerManager). Arguments are JSON primitives only, so any transport works.
"""

from __future__ import annotations

from typing import Any

from cumulo.bus.base import Bus, compute_topic

CONDUCTOR = "conductor"
SCHEDULER = "scheduler"


class ConductorAPI:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def build_instances(self, instance_uuids: list[str]) -> None:
        """Schedule, claim and cast to the chosen host; on failure set ERROR with a fault."""
        await self.bus.cast(CONDUCTOR, "build_instances", instance_uuids=instance_uuids)

    async def resize_instance(self, instance_uuid: str, new_flavor: dict[str, Any], request_id: str) -> None:
        """Claim the new flavor (same host allowed), then cast resize_instance to the agent."""
        await self.bus.cast(
            CONDUCTOR, "resize_instance", instance_uuid=instance_uuid, new_flavor=new_flavor, request_id=request_id
        )


class SchedulerAPI:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def select_destinations(self, request_spec: dict[str, Any], num_instances: int) -> list[dict[str, Any]]:
        """Return one host per instance: [{"host":…, "node":…, "provider_uuid":…}], or raise NoValidHost."""
        result = await self.bus.call(
            SCHEDULER, "select_destinations", request_spec=request_spec, num_instances=num_instances
        )
        return result  # type: ignore[no-any-return]


class ComputeAPI:
    """Casts to the agent on a host. `request_id` ties the agent's events to the instance action."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def cast(self, host: str, method: str, **args: Any) -> None:
        await self.bus.cast(compute_topic(host), method, **args)

    async def call(self, host: str, method: str, *, timeout: float = 60.0, **args: Any) -> Any:
        return await self.bus.call(compute_topic(host), method, timeout=timeout, **args)


# Agent methods (all take instance_uuid and request_id, plus what is listed). The topic is the
# host's; the host hands each message to one of its nodes (one per driver): a build to the node
# the scheduler chose, anything else to the node on the instance row.
#   cast build_and_run_instance(node)    node: the compute node (hypervisor_hostname) chosen
#   cast stop_instance()                 cast start_instance()
#   cast reboot_instance(reboot_type)    "SOFT" | "HARD"
#   cast pause_instance()                cast unpause_instance()
#   cast suspend_instance()              cast resume_instance()
#   cast rebuild_instance(image_ref)
#   cast resize_instance(new_flavor)     cast confirm_resize()      cast revert_resize()
#   cast snapshot_instance(image_id)
#   cast backup_instance(image_id, backup_type, rotation)   snapshot, then rotation of older backups
#   cast soft_delete_instance()          cast restore_instance()   (deferred delete)
#   cast terminate_instance()
#   call get_console_output(length)  -> str
#   call get_diagnostics()           -> dict (Nova 2.48 shape)
AGENT_METHODS = (
    "build_and_run_instance", "stop_instance", "start_instance", "reboot_instance", "pause_instance",
    "unpause_instance", "suspend_instance", "resume_instance", "rebuild_instance", "resize_instance",
    "confirm_resize", "revert_resize", "snapshot_instance", "terminate_instance", "get_console_output",
    "get_diagnostics", "backup_instance", "soft_delete_instance", "restore_instance",
)
