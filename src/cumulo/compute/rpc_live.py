"""The live migration messages to the agents (mixed into compute.rpc.ComputeAPI; the endpoints are
compute.agent.live.LiveMigrationEndpoints). The conductor drives the steps with calls; the API
casts the abort and force_complete to the source host, as Nova's compute_rpcapi does."""

from __future__ import annotations

from typing import Any

from cumulo.bus.base import Bus, compute_topic

LIVE_AGENT_METHODS = (
    "live_migration_source", "pre_live_migration", "live_migration", "live_migration_abort",
    "live_migration_force_complete", "post_live_migration_at_destination",
    "rollback_live_migration_at_destination", "post_live_migration_at_source", "rollback_live_migration_at_source",
)
STEP_TIMEOUT = 300.0  # a step that prepares files or a waiting QEMU
MOVE_TIMEOUT = 6 * 3600.0  # the move itself: the driver bounds it by the memory and disk sizes


class LiveMigrationAPI:
    bus: Bus

    async def _lm_call(self, host: str, method: str, timeout: float, **args: Any) -> Any:
        return await self.bus.call(compute_topic(host), method, timeout=timeout, **args)

    async def live_migration_source(self, host: str, instance_uuid: str, *, request_id: str,
                                    timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        """On the source: what the destination needs (the driver's record, the local disks' sizes)."""
        return dict(await self._lm_call(host, "live_migration_source", timeout, instance_uuid=instance_uuid,
                                        request_id=request_id))

    async def pre_live_migration(self, host: str, instance_uuid: str, *, node: str, source: dict[str, Any],
                                 request_id: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        """On the destination `node`: files and a waiting hypervisor; the target of the move."""
        return dict(await self._lm_call(host, "pre_live_migration", timeout, instance_uuid=instance_uuid,
                                        request_id=request_id, node=node, source=source))

    async def live_migration(self, host: str, instance_uuid: str, *, migration_uuid: str, target: dict[str, Any],
                             request_id: str, timeout: float = MOVE_TIMEOUT) -> dict[str, Any]:
        """On the source: the move; QEMU's figures, or {"cancelled": true} after an abort."""
        return dict(await self._lm_call(host, "live_migration", timeout, instance_uuid=instance_uuid,
                                        request_id=request_id, migration_uuid=migration_uuid, target=target))

    async def live_migration_abort(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self.bus.cast(compute_topic(host), "live_migration_abort", instance_uuid=instance_uuid,
                            request_id=request_id)

    async def live_migration_force_complete(self, host: str, instance_uuid: str, *, request_id: str) -> None:
        await self.bus.cast(compute_topic(host), "live_migration_force_complete", instance_uuid=instance_uuid,
                            request_id=request_id)

    async def post_live_migration_at_destination(self, host: str, instance_uuid: str, *, node: str, request_id: str,
                                                 timeout: float = STEP_TIMEOUT) -> None:
        await self._lm_call(host, "post_live_migration_at_destination", timeout, instance_uuid=instance_uuid,
                            request_id=request_id, node=node)

    async def rollback_live_migration_at_destination(self, host: str, instance_uuid: str, *, node: str,
                                                     request_id: str, timeout: float = STEP_TIMEOUT) -> None:
        await self._lm_call(host, "rollback_live_migration_at_destination", timeout, instance_uuid=instance_uuid,
                            request_id=request_id, node=node)

    async def post_live_migration_at_source(self, host: str, instance_uuid: str, *, node: str, request_id: str,
                                            timeout: float = STEP_TIMEOUT) -> None:
        await self._lm_call(host, "post_live_migration_at_source", timeout, instance_uuid=instance_uuid,
                            request_id=request_id, node=node)

    async def rollback_live_migration_at_source(self, host: str, instance_uuid: str, *, node: str, resume: bool,
                                                request_id: str, timeout: float = STEP_TIMEOUT) -> None:
        """On the source `node`: the move cut short is cancelled there, the guest runs on (`resume`)."""
        await self._lm_call(host, "rollback_live_migration_at_source", timeout, instance_uuid=instance_uuid,
                            request_id=request_id, node=node, resume=resume)
