"""The compute message API: every cast and call between the API, conductor, scheduler and agents.

Callers use these typed methods (one per message); endpoints implement async methods with the
same names and keyword arguments (see compute.conductor.manager.Conductor,
compute.agent.manager.ComputeManager, scheduler.manager.SchedulerManager). Arguments are JSON primitives only, so any transport works.
"""

from __future__ import annotations

from typing import Any

from cumulo.bus.base import Bus, compute_topic
from cumulo.compute.rpc_live import LIVE_AGENT_METHODS, LiveMigrationAPI

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


    async def migrate_server(
        self, instance_uuid: str, *, new_flavor: dict[str, Any] | None, host: str | None, request_id: str
    ) -> None:
        """Cold migration (new_flavor None): choose a destination (`host`: the admin's), claim there,
        cast migrate_instance to the source (compute/conductor/migrate.py). A call, as Nova's: it
        returns once the move is under way, or raises NoValidHost (the server left as it was)."""
        await self.bus.call(CONDUCTOR, "migrate_server", timeout=120.0, instance_uuid=instance_uuid,
                            new_flavor=new_flavor, host=host, request_id=request_id)

    async def evacuate_server(
        self, instance_uuid: str, *, host: str | None, force: bool, migration_uuid: str, request_id: str
    ) -> None:
        """Rebuild a server of a down host elsewhere (compute/conductor/migrate.py)."""
        await self.bus.cast(CONDUCTOR, "evacuate_server", instance_uuid=instance_uuid, host=host, force=force,
                            migration_uuid=migration_uuid, request_id=request_id)


    async def live_migrate_instance(self, instance_uuid: str, *, migration_uuid: str, host: str | None, force: bool,
                                    request_id: str) -> None:
        """Choose and claim a destination, then drive the agents' live migration steps
        (compute/conductor/live.py)."""
        await self.bus.cast(CONDUCTOR, "live_migrate_instance", instance_uuid=instance_uuid,
                            migration_uuid=migration_uuid, host=host, force=force, request_id=request_id)


class SchedulerAPI:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def select_destinations(self, request_spec: dict[str, Any], num_instances: int) -> list[dict[str, Any]]:
        """Return one host per instance: [{"host":…, "node":…, "provider_uuid":…}], or raise NoValidHost."""
        result = await self.bus.call(
            SCHEDULER, "select_destinations", request_spec=request_spec, num_instances=num_instances
        )
        return result  # type: ignore[no-any-return]

    async def select_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several builds' selections in one message: [{request_spec, num_instances}] ->
        [{"destinations": [...]} or {"error": NoValidHost's message}] (scheduler/manager.py)."""
        result = await self.bus.call(SCHEDULER, "select_batch", requests=requests)
        return result  # type: ignore[no-any-return]

    async def services_changed(self) -> None:
        """To every scheduler: a service was enabled, disabled, forced down or up, or deleted (their
        cached view reads services afresh until read again; scheduler/cache.py)."""
        await self.bus.fanout(SCHEDULER, "services_changed")


class ComputeAPI(LiveMigrationAPI):
    """Casts and calls to the agent on a host: one typed method per agent message (as Nova's
    compute/rpcapi.py), each naming the message and its arguments once. `request_id` ties the
    agent's events to the instance action the API recorded."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def _cast(self, host: str, method: str, **args: Any) -> None:
        await self.bus.cast(compute_topic(host), method, **args)

    async def _call(self, host: str, method: str, *, timeout: float, **args: Any) -> Any:
        return await self.bus.call(compute_topic(host), method, timeout=timeout, **args)

    async def build_and_run_instance(self, host: str, instance_uuid: str, *, node: str, request_id: str) -> None:
        """Spawn on `node`, the compute node of `host` the scheduler chose."""
        await self._cast(host, "build_and_run_instance", instance_uuid=instance_uuid, request_id=request_id, node=node)

    async def terminate_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "terminate_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def stop_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "stop_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def start_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "start_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def reboot_instance(
        self, host: str, instance_uuid: str, *, request_id: str, reboot_type: str = "SOFT"
    ) -> None:
        """`reboot_type`: "SOFT" or "HARD"."""
        await self._cast(
            host, "reboot_instance", instance_uuid=instance_uuid, request_id=request_id, reboot_type=reboot_type
        )

    async def pause_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "pause_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def unpause_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "unpause_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def suspend_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "suspend_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def resume_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "resume_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def rebuild_instance(self, host: str, instance_uuid: str, *, image_ref: str, request_id: str) -> None:
        await self._cast(host, "rebuild_instance", instance_uuid=instance_uuid, request_id=request_id,
                         image_ref=image_ref)

    async def resize_instance(
        self, host: str, instance_uuid: str, *, new_flavor: dict[str, Any], request_id: str
    ) -> None:
        """In place: the conductor has claimed the new flavor on the instance's own node."""
        await self._cast(host, "resize_instance", instance_uuid=instance_uuid, request_id=request_id,
                         new_flavor=new_flavor)

    async def confirm_resize(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "confirm_resize", instance_uuid=instance_uuid, request_id=request_id)

    async def revert_resize(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "revert_resize", instance_uuid=instance_uuid, request_id=request_id)

    async def snapshot_instance(self, host: str, instance_uuid: str, *, image_id: str, request_id: str) -> None:
        await self._cast(host, "snapshot_instance", instance_uuid=instance_uuid, request_id=request_id,
                         image_id=image_id)

    async def backup_instance(
        self, host: str, instance_uuid: str, *, image_id: str, backup_type: str, rotation: int, request_id: str
    ) -> None:
        """The snapshot, then the rotation of older backups of that type."""
        await self._cast(host, "backup_instance", instance_uuid=instance_uuid, request_id=request_id,
                         image_id=image_id, backup_type=backup_type, rotation=rotation)

    async def soft_delete_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "soft_delete_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def restore_instance(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self._cast(host, "restore_instance", instance_uuid=instance_uuid, request_id=request_id)

    async def get_console_output(
        self, host: str, instance_uuid: str, *, length: int | None, request_id: str, timeout: float = 60.0
    ) -> str:
        """The console log, its last `length` lines (None: all of it)."""
        out = await self._call(host, "get_console_output", timeout=timeout, instance_uuid=instance_uuid,
                               request_id=request_id, length=length)
        return str(out)

    async def get_diagnostics(
        self, host: str, instance_uuid: str, *, request_id: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Nova's standard diagnostics (microversion 2.48 shape)."""
        out = await self._call(host, "get_diagnostics", timeout=timeout, instance_uuid=instance_uuid,
                               request_id=request_id)
        return dict(out)

    async def exec_in_instance(
        self, host: str, instance_uuid: str, *, argv: list[str], env: dict[str, str], stdin_b64: str,
        exec_timeout: float, output_limit: int, request_id: str,
    ) -> dict[str, Any]:
        """Run argv inside the server (its driver's exec) and wait: ExecResult.to_dict of the
        driver. The bus waits 30 s longer than exec_timeout, which the agent enforces (named so
        because `timeout` is the bus call's own)."""
        out = await self._call(host, "exec_in_instance", timeout=float(exec_timeout) + 30.0,
                               instance_uuid=instance_uuid, request_id=request_id, argv=list(argv), env=dict(env),
                               stdin_b64=stdin_b64, exec_timeout=float(exec_timeout), output_limit=int(output_limit))
        return dict(out)

    async def sample_instances(
        self, host: str, instance_uuids: list[str], *, request_id: str, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """A reading of each of the servers the host runs among `instance_uuids` (those it does not
        are left out): [{uuid, cpu_ns, vcpus, memory_used, memory_limit, uptime, power_state,
        time}] (compute.agent.usage.sample_servers). The one message about many servers."""
        out = await self._call(host, "sample_instances", timeout=timeout, instance_uuids=list(instance_uuids),
                               request_id=request_id)
        return [dict(r) for r in out]

    async def attach_interface(
        self, host: str, instance_uuid: str, *, port_id: str, request_id: str, timeout: float = 120.0
    ) -> None:
        """Plug the port (made or taken by the API) into the server, hot when it runs."""
        await self._call(host, "attach_interface", timeout=timeout, instance_uuid=instance_uuid,
                         request_id=request_id, port_id=port_id)

    async def detach_interface(
        self, host: str, instance_uuid: str, *, port_id: str, request_id: str, timeout: float = 120.0
    ) -> None:
        """Unplug the port from the server and from the host."""
        await self._call(host, "detach_interface", timeout=timeout, instance_uuid=instance_uuid,
                         request_id=request_id, port_id=port_id)

    async def attach_volume(self, host: str, instance_uuid: str, *, bdm_uuid: str, request_id: str) -> None:
        """Attach the volume the block device mapping names (the API reserved it): the connector to
        the volume service, the driver's attach, the attachment completed (volume in-use)."""
        await self._cast(host, "attach_volume", instance_uuid=instance_uuid, request_id=request_id, bdm_uuid=bdm_uuid)

    async def detach_volume(self, host: str, instance_uuid: str, *, volume_id: str, request_id: str) -> None:
        """Detach the volume (the API marked it detaching): the driver's detach, the attachment
        deleted (volume available), the mapping removed."""
        await self._cast(host, "detach_volume", instance_uuid=instance_uuid, request_id=request_id,
                         volume_id=volume_id)

    async def extend_volume(self, host: str, instance_uuid: str, *, volume_id: str, new_size_bytes: int,
                            request_id: str) -> None:
        """The volume's file grew (Cinder's "volume-extended" event): tell the guest."""
        await self._cast(host, "extend_volume", instance_uuid=instance_uuid, request_id=request_id,
                         volume_id=volume_id, new_size_bytes=new_size_bytes)

    # -- cold migration and evacuation (compute/agent/migrate.py) --------------------------------

    async def migrate_instance(
        self, host: str, instance_uuid: str, *, dest_host: str, dest_node: str, dest_address: str | None,
        migration_uuid: str, request_id: str,
    ) -> None:
        """On the source: power off, send the disks to dest_host, cast finish_migration there."""
        await self._cast(host, "migrate_instance", instance_uuid=instance_uuid, request_id=request_id,
                         dest_host=dest_host, dest_node=dest_node, dest_address=dest_address,
                         migration_uuid=migration_uuid)

    async def finish_migration(self, host: str, instance_uuid: str, *, node: str, migration_uuid: str,
                               request_id: str) -> None:
        """On the destination `node`: the server made from the received files (VERIFY_RESIZE)."""
        await self._cast(host, "finish_migration", instance_uuid=instance_uuid, request_id=request_id, node=node,
                         migration_uuid=migration_uuid)

    async def finish_revert_migration(self, host: str, instance_uuid: str, *, node: str, migration_uuid: str,
                                      fault: str | None, request_id: str) -> None:
        """On the source `node`: the server back as it was (after a revert, or a failed finish)."""
        await self._cast(host, "finish_revert_migration", instance_uuid=instance_uuid, request_id=request_id,
                         node=node, migration_uuid=migration_uuid, fault=fault)

    async def cleanup_migration_source(self, host: str, instance_uuid: str, *, node: str, request_id: str,
                                       timeout: float = 300.0) -> None:
        """On the source `node`, at confirm: what is left of the server there goes."""
        await self._call(host, "cleanup_migration_source", timeout=timeout, instance_uuid=instance_uuid,
                         request_id=request_id, node=node)

    async def evacuate_instance(self, host: str, instance_uuid: str, *, node: str, migration_uuid: str,
                                request_id: str) -> None:
        """On the destination `node`: rebuild the server of a down host from its image."""
        await self._cast(host, "evacuate_instance", instance_uuid=instance_uuid, request_id=request_id, node=node,
                         migration_uuid=migration_uuid)

    async def settle_instance(self, host: str, instance_uuid: str, *, node: str, task_state: str, since: str,
                              request_id: str) -> None:
        """On the instance's `node`: a task that made no progress since `since` (the row's updated_at,
        ISO) is settled from the driver's truth (compute/agent/settle.py; the conductor's sweep)."""
        await self._cast(host, "settle_instance", instance_uuid=instance_uuid, request_id=request_id, node=node,
                         task_state=task_state, since=since)


# The agent's messages, one ComputeAPI method each (all take instance_uuid and request_id but
# sample_instances, which takes instance_uuids: the host answers it, every node for its own). The
# topic is the host's; the host hands each message to one of its nodes (one per driver): a build
# to the node the scheduler chose, anything else to the node on the instance row.
AGENT_METHODS = (
    "build_and_run_instance", "stop_instance", "start_instance", "reboot_instance", "pause_instance",
    "unpause_instance", "suspend_instance", "resume_instance", "rebuild_instance", "resize_instance",
    "confirm_resize", "revert_resize", "snapshot_instance", "terminate_instance", "get_console_output",
    "get_diagnostics", "backup_instance", "soft_delete_instance", "restore_instance", "attach_interface",
    "detach_interface", "attach_volume", "detach_volume", "extend_volume", "exec_in_instance",
    "sample_instances", "migrate_instance", "finish_migration", "finish_revert_migration",
    "cleanup_migration_source", "evacuate_instance", "settle_instance", *LIVE_AGENT_METHODS,
)
