"""Crash recovery when an agent starts: the DB and the host are brought back into agreement.

Per compute node (a host with several drivers reconciles each node over its own instances).
For each instance of this node:
- building: running on the host → ACTIVE; otherwise the half-made guest is destroyed and the
  build runs once more (in the background); a second interruption → ERROR with a fault
  ("Build interrupted by a restart of the compute service").
- deleting → the delete is finished.
- any other task_state → finished or rolled back from the driver's real power state, task_state
  cleared (rebuild → ERROR as Nova does; resize → reverted; snapshot → its image marked failed).
- stable states → power_state refreshed.
Then guests that no live instance owns are destroyed (driver.destroy + cleanup_orphans), and the
allocations on this node's provider are made equal to the live instances (Placement.reconcile).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo.compute import migration_records
from cumulo.compute import states as s
from cumulo.compute.agent import build, migrate, power, reclaim, resize, snapshot
from cumulo.compute.drivers.base import Capability, PowerState, driver_for
from cumulo.compute.models import instances
from cumulo.compute.specs import instance_resources
from cumulo.db import utcnow
from cumulo.placement.inventory import Resources
from cumulo.placement.service import migration_consumer, resources_from_flavor

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

BUILD_ATTEMPTS_KEY = "build_attempts"
MAX_BUILD_RETRIES = 1
_REBUILDING = build.REBUILD_TASK_STATES
_RESIZE_UNDO = frozenset({s.RESIZE_MIGRATING, s.RESIZE_MIGRATED, s.RESIZE_FINISH})


async def reconcile_host(node: Node) -> None:
    reported = {st.uuid: st.power_state for st in await node.driver.list_instances()}
    for inst in await node.host_instances():
        try:
            await reconcile_instance(node, inst, reported.get(inst["uuid"]))
        except Exception:
            LOG.exception("reconcile of instance %s failed", inst["uuid"])
    await migrate.destroy_evacuated(node)  # evacuated while this host was down: never restarted here
    await migrate.resume_incoming(node)  # moves to this node its last run had not finished
    await reap_orphans(node)
    await reconcile_allocations(node)


async def reconcile_instance(node: Node, inst: dict[str, Any], reported: PowerState | None) -> None:
    uuid, vm, task = inst["uuid"], inst["vm_state"], inst["task_state"]
    if task == s.DELETING:
        LOG.info("finishing the interrupted delete of %s", uuid)
        await build.terminate(node, uuid, None)
        return
    if vm == s.BUILDING:
        await recover_build(node, inst, reported)
        return
    if task is None:
        actual = reported if reported is not None else PowerState.NOSTATE
        if int(inst["power_state"] or 0) != int(actual):
            await node.set_state(uuid, {"power_state": int(actual)}, expected_task_state=None)
        return
    if task == s.MIGRATING:
        return  # a live migration: its conductor finishes or rolls it back (compute/conductor/live.py)
    LOG.info("instance %s was interrupted in %s/%s", uuid, vm, task)
    if task in (s.RESIZE_CONFIRMING,) and vm == s.RESIZED:
        await resize.confirm(node, uuid, None)
        return
    async with node.locks.hold(uuid):
        fresh = await node.load(uuid)
        if fresh is None or fresh["task_state"] != task:
            return
        await settle_locked(node, fresh, reported)


async def settle_locked(node: Node, inst: dict[str, Any], reported: PowerState | None) -> None:
    uuid, vm, task = inst["uuid"], inst["vm_state"], inst["task_state"]
    actual = reported if reported is not None else PowerState.NOSTATE
    if task == s.RESIZE_REVERTING and vm == s.RESIZED:
        await resize.revert_locked(node, inst, None)
        return
    if task == s.RESIZE_PREP:
        # The conductor may have claimed the new flavor; the agent never started.
        await node.placement.revert_resize(uuid)
        await node.set_state(uuid, {"task_state": None, "new_flavor": None, "power_state": int(actual)},
                            expected_task_state=task)
        await migration_records.set_status(node.db, uuid, migration_records.ERROR)  # it never happened
        return
    if task in _RESIZE_UNDO and await migrate.settle_interrupted(node, inst):
        return  # a move to another host: back on this (source) host as it was
    if task in _RESIZE_UNDO:
        await _undo_resize(node, inst, actual)
        return
    if task in snapshot.SNAPSHOT_TASK_STATES:
        sysmeta = dict(inst["system_metadata"] or {})
        await snapshot.mark_failed(node, sysmeta.pop(snapshot.SNAPSHOT_IMAGE_KEY, None))
        await node.set_state(uuid, {"task_state": None, "system_metadata": sysmeta, "power_state": int(actual)},
                            expected_task_state=task)
        return
    if task in reclaim.TASK_STATES:
        await reclaim.settle_locked(node, inst)
        return
    if task in _REBUILDING:
        await node.set_state(
            uuid, {"vm_state": s.ERROR, "task_state": None, "power_state": int(actual)}, expected_task_state=task,
            fault="Rebuild interrupted by a restart of the compute service",
        )
        return
    # Power-type operations: the driver's real state says how far it got.
    target = power.VM_STATE_FOR_POWER.get(actual)
    if target is None:
        await node.set_state(
            uuid, {"vm_state": s.ERROR, "task_state": None, "power_state": int(actual)}, expected_task_state=task,
            fault=f"Instance disappeared from the hypervisor during {task}",
        )
        return
    await node.set_state(uuid, {"vm_state": target, "task_state": None, "power_state": int(actual)},
                        expected_task_state=task)


async def _undo_resize(node: Node, inst: dict[str, Any], actual: PowerState) -> None:
    """The driver may or may not have resized: put the old flavor back everywhere."""
    uuid = inst["uuid"]
    if actual != PowerState.NOSTATE and node.supports(Capability.RESIZE):
        try:
            await driver_for(node.driver, Capability.RESIZE, node=node.name).revert_resize(await node.spec(inst))
        except Exception:
            LOG.exception("driver revert of interrupted resize of %s failed", uuid)
    await node.placement.revert_resize(uuid)
    sysmeta = dict(inst["system_metadata"] or {})
    previous = sysmeta.pop(migrate.OLD_VM_STATE, s.ACTIVE)
    await node.set_state(
        uuid,
        {
            "vm_state": migrate.settled_vm_state(actual, previous) if actual != PowerState.NOSTATE else s.ERROR,
            "task_state": None,
            "new_flavor": None,
            "power_state": int(actual),
            "system_metadata": sysmeta,
        },
        expected_task_state=inst["task_state"],
        fault=None if actual != PowerState.NOSTATE else "Instance disappeared from the hypervisor during resize",
    )
    await migration_records.set_status(
        node.db, uuid, migration_records.REVERTED if actual != PowerState.NOSTATE else migration_records.ERROR
    )


async def recover_build(node: Node, inst: dict[str, Any], reported: PowerState | None) -> None:
    uuid = inst["uuid"]
    async with node.locks.hold(uuid):
        fresh = await node.load(uuid)
        if fresh is None or fresh["vm_state"] != s.BUILDING or not node.owns(fresh):
            return
        task = fresh["task_state"]
        if reported == PowerState.RUNNING:
            # The driver finished the guest (a QEMU or runc process outlives the agent): the build
            # did happen, only its last CAS did not. Finish it as build_and_run would have.
            LOG.info("adopting %s: it was built before the restart", uuid)
            await node.set_state(
                uuid,
                {"vm_state": s.ACTIVE, "task_state": None, "power_state": int(PowerState.RUNNING),
                 "launched_at": fresh["launched_at"] or utcnow()},
                expected_task_state=task, expected_vm_state=s.BUILDING,
            )
            return
        if reported is not None:
            await node.driver.destroy(uuid)  # a half-made guest: start from nothing
        sysmeta = dict(fresh["system_metadata"] or {})
        attempts = int(sysmeta.get(BUILD_ATTEMPTS_KEY, 0))
        if attempts >= MAX_BUILD_RETRIES:
            await build.fail_build(
                node, uuid, "Build interrupted by a restart of the compute service", expected_task_state=task
            )
            return
        sysmeta[BUILD_ATTEMPTS_KEY] = attempts + 1
        if await node.set_state(uuid, {"task_state": s.SCHEDULING, "system_metadata": sysmeta},
                               expected_task_state=task, expected_vm_state=s.BUILDING):
            LOG.info("retrying the build of %s interrupted by a restart", uuid)
            node.in_background(build.build_and_run(node, uuid, None))


async def reap_orphans(node: Node) -> list[str]:
    """Destroy guests of this node's driver that no live instance of this node owns.

    A guest whose instance lives on another node of the same host is left alone (and logged):
    drivers keep their guests apart, so that would be a naming clash, not an orphan."""
    known = {i["uuid"] for i in await node.host_instances()}
    elsewhere = await node.all_host_uuids() - known
    known |= await migrate.kept_for_revert(node)  # moved away, unconfirmed: the copy here stays
    reaped: list[str] = []
    for st in await node.driver.list_instances():
        if st.uuid in known:
            continue
        if st.uuid in elsewhere:
            LOG.warning("node %s reports guest %s, which belongs to another node of host %s; left alone",
                        node.name, st.uuid, node.host)
            continue
        LOG.warning("destroying orphan guest %s on node %s", st.uuid, node.name)
        await node.driver.destroy(st.uuid)
        reaped.append(st.uuid)
    reaped += [r for r in await node.driver.cleanup_orphans(known | elsewhere) if r not in reaped]
    return reaped


async def reconcile_allocations(node: Node) -> dict[str, int]:
    """Allocations on this node = the live instances of this node (plus pending resizes' old flavors)."""
    assert node.node_uuid is not None
    # Builds the conductor is placing right now (no host yet, or another node) are its business.
    # Read them BEFORE the live set: a build placed here in between is then in one set or the other.
    async with node.db.read() as conn:
        rows = await conn.execute(
            sa.select(instances.c.uuid).where(
                instances.c.deleted.is_(False),
                instances.c.vm_state == s.BUILDING,
                sa.or_(instances.c.host.is_(None), sa.not_(node.owns_clause())),
            )
        )
        in_flight = [r[0] for r in rows]
    live: dict[str, tuple[str, Resources]] = {}
    for inst in await node.host_instances():
        live[inst["uuid"]] = (node.node_uuid, instance_resources(inst))
        if inst["vm_state"] == s.RESIZED and inst["old_flavor"] and await migrate.cross_host(node, inst["uuid"]) is None:
            live[migration_consumer(inst["uuid"])] = (node.node_uuid, resources_from_flavor(inst["old_flavor"]))
    # Moved away and not confirmed yet: the source's allocation, held by the migration, stays here.
    in_flight += [migration_consumer(u) for u in await migrate.kept_for_revert(node)]
    return await node.placement.reconcile(live, providers=[node.node_uuid], ignore=in_flight)
