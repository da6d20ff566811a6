"""The agents' steps of a live migration (the conductor drives them: compute/conductor/live.py).

source      live_migration_source          what the destination needs (the driver's record, disk sizes)
destination pre_live_migration             files and a waiting hypervisor; the target (address, ports)
source      live_migration                 the move itself (cancellable: live_migration_abort);
                                           QEMU's figures (downtime) back, or {"cancelled": true}
source      live_migration_abort           cancel the running move (DELETE .../migrations/{id})
source      live_migration_force_complete  pause the guest so the move converges (Nova without post-copy)
destination post_live_migration_at_destination   the guest runs here
destination rollback_live_migration_at_destination  nothing of the server stays here
source      post_live_migration_at_source  the stopped source guest and its files go
source      rollback_live_migration_at_source  a move cut short: cancelled, the guest runs on here

The destination listens on its underlay address (setting underlay_ip; 127.0.0.1 for a single
machine) on ports of the range `live_migration_ports`. Each step checks that the instance is still
being live-migrated (task_state migrating) and that this is the host it should be on.
LiveMigrationEndpoints is mixed into ComputeManager: one bus endpoint per step.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cumulo.compute import live_records, netports
from cumulo.compute import states as st
from cumulo.compute.agent import nics, volumes
from cumulo.compute.agent.node import Node
from cumulo.compute.drivers.base import Capability, LiveMigration, supports
from cumulo.errors import InvalidState, NotFound

LOG = logging.getLogger(__name__)
DEFAULT_PORTS = "49152-49215"

# (host, instance uuid) -> the task of a move under way; aborts that came before the move started.
_RUNNING: dict[tuple[str, str], asyncio.Task[dict[str, Any]]] = {}
_ABORTED: set[tuple[str, str]] = set()


def _driver(node: Node) -> LiveMigration:
    drv = node.driver
    if not supports(drv, Capability.LIVE_MIGRATION) or not isinstance(drv, LiveMigration):
        raise InvalidState(f"The {drv.info.name} driver of node {node.name} cannot live-migrate servers")
    return drv


async def _migrating(node: Node, uuid: str) -> dict[str, Any]:
    inst = await node.load(uuid)
    if inst is None or inst.get("deleted"):
        raise NotFound(f"Instance {uuid} could not be found.")
    if inst["task_state"] != st.MIGRATING:
        raise InvalidState(f"Instance {uuid} is not being live-migrated (task_state {inst['task_state']})")
    return inst


def listen_address(node: Node) -> str:
    return node.conf.underlay_ip or "127.0.0.1"


def port_range(node: Node) -> tuple[int, int]:
    text = node.conf.live_migration_ports or DEFAULT_PORTS
    lo, _, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidState(f"setting live_migration_ports {text!r} is not a port range such as 49152-49215") from None
    return first, last


async def source_info(node: Node, uuid: str) -> dict[str, Any]:
    inst = await _migrating(node, uuid)
    if not node.owns(inst):
        raise InvalidState(f"Instance {uuid} is not on node {node.name}")
    return await _driver(node).live_migration_source(uuid)


async def prepare(node: Node, uuid: str, source: dict[str, Any]) -> dict[str, Any]:
    """The ports bound and plugged here first (the network agent: bridge, tap, security groups on
    this host), then the driver's incoming server with this host's NICs in the source's slots."""
    inst = await _migrating(node, uuid)
    spec = await nics.with_nics(node, inst, await node.spec(inst))
    try:
        target = await _driver(node).prepare_incoming(spec, source, listen_address(node), port_range(node))
    except BaseException:
        await asyncio.shield(_ports_back(node, inst))
        raise
    LOG.info("live migration of %s: %s waits on %s", uuid, node.name, target.get("host"))
    return target


async def _ports_back(node: Node, inst: dict[str, Any]) -> None:
    """The ports unplugged here and bound and plugged on the source again (logged on failure: the
    network agents' sync converges from the DB)."""
    ids = netports.port_ids_of(inst)
    if not ids or node.nics is None:
        return
    try:
        await nics.unplug(node, ids)
        if inst.get("host") and inst["host"] != node.host:
            await node.nics.plug_ports(str(inst["host"]), ids, str(inst["uuid"]))
    except Exception as exc:  # noqa: BLE001 - the rollback goes on
        LOG.warning("live migration of %s: giving its ports back to %s failed: %s", inst["uuid"], inst.get("host"), exc)


async def migrate(node: Node, uuid: str, migration_uuid: str, target: dict[str, Any]) -> dict[str, Any]:
    """The move; {"cancelled": True} when an abort came (the source runs on either way)."""
    await _migrating(node, uuid)
    key = (node.host, uuid)
    if key in _ABORTED:
        _ABORTED.discard(key)
        return {"cancelled": True}
    drv = _driver(node)

    async def progress(figures: dict[str, Any]) -> None:
        await live_records.update(node.db, migration_uuid, expect=(live_records.RUNNING,), **figures)

    task = asyncio.create_task(drv.live_migrate(uuid, target, progress=progress))
    _RUNNING[key] = task
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled() and not _current_cancelling():
            return {"cancelled": True}
        raise
    finally:
        _RUNNING.pop(key, None)
        _ABORTED.discard(key)


def _current_cancelling() -> bool:
    current = asyncio.current_task()
    return bool(current is not None and current.cancelling())


async def abort(node: Node, uuid: str) -> None:
    task = _RUNNING.get((node.host, uuid))
    if task is None:
        _ABORTED.add((node.host, uuid))  # the move has not begun: it will not
        return
    task.cancel()


async def rollback_at_source(node: Node, uuid: str, resume: bool) -> None:
    """The move is off: a running one here is cancelled, and the guest runs on here."""
    task = _RUNNING.get((node.host, uuid))
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await _driver(node).recover_source(uuid, resume)


async def force_complete(node: Node, uuid: str) -> None:
    await _migrating(node, uuid)
    await _driver(node).force_complete(uuid)


async def finish_at_destination(node: Node, uuid: str) -> None:
    inst = await _migrating(node, uuid)
    await _driver(node).finish_incoming(uuid, resume=inst["vm_state"] == st.ACTIVE)


async def rollback_at_destination(node: Node, uuid: str) -> None:
    await _driver(node).abort_incoming(uuid)
    inst = await node.load(uuid)
    if inst is not None and inst.get("host") != node.host:
        await _ports_back(node, inst)


async def cleanup_source(node: Node, uuid: str) -> None:
    """The source's copy goes; its ports' plumbing here too (their binding is the destination's now,
    which unplug_ports leaves alone)."""
    await _driver(node).drop_migrated(uuid)
    inst = await node.load(uuid)
    if inst is not None and inst.get("host") != node.host:
        await volumes.forget_keys_of(node, uuid)  # the key files of volumes of another host, here
        try:
            await nics.unplug(node, netports.port_ids_of(inst))
        except Exception as exc:  # noqa: BLE001 - the server runs on the destination
            LOG.warning("live migration of %s: unplugging its ports on %s failed: %s", uuid, node.host, exc)


class LiveMigrationEndpoints:
    """ComputeManager's bus endpoints of the live migration steps (compute.rpc_live)."""

    node: Node

    async def live_migration_source(self, instance_uuid: str, request_id: str | None = None) -> dict[str, Any]:
        return await source_info(self.node, instance_uuid)

    async def pre_live_migration(
        self, instance_uuid: str, source: dict[str, Any], node: str | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        return await prepare(self.node, instance_uuid, source)

    async def live_migration(
        self, instance_uuid: str, migration_uuid: str, target: dict[str, Any], request_id: str | None = None
    ) -> dict[str, Any]:
        return await migrate(self.node, instance_uuid, migration_uuid, target)

    async def live_migration_abort(self, instance_uuid: str, request_id: str | None = None) -> None:
        await abort(self.node, instance_uuid)

    async def live_migration_force_complete(self, instance_uuid: str, request_id: str | None = None) -> None:
        await force_complete(self.node, instance_uuid)

    async def post_live_migration_at_destination(
        self, instance_uuid: str, node: str | None = None, request_id: str | None = None
    ) -> None:
        await finish_at_destination(self.node, instance_uuid)

    async def rollback_live_migration_at_destination(
        self, instance_uuid: str, node: str | None = None, request_id: str | None = None
    ) -> None:
        await rollback_at_destination(self.node, instance_uuid)

    async def rollback_live_migration_at_source(
        self, instance_uuid: str, resume: bool = True, node: str | None = None, request_id: str | None = None
    ) -> None:
        await rollback_at_source(self.node, instance_uuid, bool(resume))

    async def post_live_migration_at_source(
        self, instance_uuid: str, node: str | None = None, request_id: str | None = None
    ) -> None:
        await cleanup_source(self.node, instance_uuid)
