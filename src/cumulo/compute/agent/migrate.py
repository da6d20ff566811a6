"""Cold migration, resize to another host and evacuation on the agents (Nova's flow).

The conductor (compute/conductor/migrate.py) has chosen the destination and claimed there: the
server's old allocation is held by its migration consumer on the source, the new one by the
server on the destination (placement.claim_resize; Nova's migration-based allocations).

- source `migrate_instance`: task resize_migrating, record migrating; the server is powered
  off, the driver names its disks (ColdMigration.migration_files), its ports are unplugged here and
  the files go to the destination (node.transfer); record post-migrating, task resize_migrated,
  cast finish_migration to the destination. A failure here restarts the server on the source as it
  was (a fault tells why), the claim goes back, the record says error.
- destination `finish_migration`: task resize_finish; the ports bound and plugged here, the driver
  makes the server from the received files (ColdMigration.finish_migration), running unless it was
  stopped; host/node := destination, VERIFY_RESIZE, record finished. A failure destroys what was
  made here and hands the server back to the source (finish_revert_migration with the fault).
- confirm (on the destination, resize.confirm delegates): the source's copy goes
  (cleanup_migration_source, a call; a source that is down reaps it when it comes back, the server
  being no longer its own), the source allocation is dropped, record confirmed.
- revert (on the destination, resize.revert_locked delegates): the destination copy is destroyed,
  host/node := source, then the source's finish_revert_migration powers the server on from the
  files it kept, gives it its old allocation back, record reverted.
- evacuate_instance (destination): the server rebuilt from its image (ephemeral disks are lost, as
  in Nova without shared storage; volumes come back through the spec), record done. When the dead
  host's agent starts again, `destroy_evacuated` removes its copies (Nova's
  _destroy_evacuated_instances) and marks the records completed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo.compute import actions, migration_records, netports
from cumulo.compute import states as s
from cumulo.compute.agent import nics
from cumulo.compute.agent.migrate_files import drop_incoming, incoming_dir
from cumulo.compute.drivers.base import Capability, PowerState, driver_for
from cumulo.compute.models import migrations
from cumulo.compute.specs import flavor_columns, volume_backed
from cumulo.db import utcnow

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

# The vm_state before the move or resize, in system_metadata (agent/resize.py's too).
OLD_VM_STATE = "old_vm_state"
EVACUATE_ACTION = "evacuate"
MIGRATE_ACTION = "migrate"


def settled_vm_state(power: PowerState, fallback: str = s.ACTIVE) -> str:
    """After a move or resize settles, running means ACTIVE and shut down means STOPPED (as in
    Nova); resize.py and reconcile.py use it too."""
    if power == PowerState.RUNNING:
        return s.ACTIVE
    if power in (PowerState.SHUTDOWN, PowerState.CRASHED):
        return s.STOPPED
    return fallback


def _peers(node: Node) -> Any:
    if node.peers is None:
        raise RuntimeError("this node has no bus to reach other hosts")
    return node.peers


async def cross_host(node: Node, uuid: str) -> dict[str, Any] | None:
    """The server's open migration record when it moves between hosts (None: an in-place resize)."""
    rec = await migration_records.latest_open(node.db, uuid)
    if rec is None or rec["migration_type"] not in (migration_records.MIGRATION, migration_records.RESIZE):
        return None
    return rec if rec["source_compute"] != rec["dest_compute"] else None


async def _back_on_source(node: Node, inst: dict[str, Any], previous: str, migration_uuid: str, fault: BaseException | str,
                          expected_task: str) -> None:
    """A migration that failed before the destination had the server: it runs here again as it was."""
    uuid = inst["uuid"]
    power = await node.power_of(uuid)
    if previous == s.ACTIVE and power != PowerState.RUNNING and power != PowerState.NOSTATE:
        try:
            await nics.plug(node, uuid, netports.port_ids_of(inst))
            await driver_for(node.driver, Capability.POWER, node=node.name).power_on(await node.spec(inst))
            power = await node.power_of(uuid)
        except Exception:
            LOG.exception("restarting %s on %s after its failed migration failed", uuid, node.host)
    await node.placement.revert_resize(uuid)
    vm = settled_vm_state(power, previous) if power != PowerState.NOSTATE else s.ERROR
    sysmeta = {k: v for k, v in (inst["system_metadata"] or {}).items() if k != OLD_VM_STATE}
    await node.set_state(
        uuid, {"vm_state": vm, "task_state": None, "new_flavor": None, "power_state": int(power),
               "system_metadata": sysmeta},
        expected_task_state=expected_task, fault=fault,
    )
    await migration_records.set_status_of(node.db, migration_uuid, migration_records.ERROR)


# -- source ---------------------------------------------------------------------------------------


async def migrate_instance(
    node: Node, uuid: str, dest_host: str, dest_node: str, dest_address: str | None, migration_uuid: str,
    request_id: str | None,
) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] != s.RESIZE_PREP or not node.owns(inst):
            LOG.info("migration of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            return
        req = await node.request_id_for(uuid, request_id, MIGRATE_ACTION)
        previous = inst["vm_state"]
        sysmeta = dict(inst["system_metadata"] or {}, **{OLD_VM_STATE: previous})
        if not await node.set_state(uuid, {"task_state": s.RESIZE_MIGRATING, "system_metadata": sysmeta},
                                    expected_task_state=s.RESIZE_PREP):
            return
        inst["system_metadata"] = sysmeta
        await migration_records.set_status_of(node.db, migration_uuid, migration_records.MIGRATING)
        try:
            async with actions.event(node.db, uuid, req, "compute_resize_instance", node.host):
                mover = driver_for(node.driver, Capability.COLD_MIGRATION, node=node.name)
                if await node.power_of(uuid) != PowerState.SHUTDOWN:
                    await driver_for(node.driver, Capability.POWER, node=node.name).power_off(uuid)
                files = await mover.migration_files(uuid)
                await node.transfer.send(migration_uuid=migration_uuid, dest_host=dest_host, address=dest_address,
                                         files=files)
        except Exception as exc:
            LOG.warning("migration of %s from %s failed: %s", uuid, node.host, exc)
            await _back_on_source(node, inst, previous, migration_uuid, exc, s.RESIZE_MIGRATING)
            return
        # The ports leave this host (the destination binds and plugs them); failures are the network
        # agent's to reap.
        with contextlib.suppress(Exception):
            await nics.unplug(node, netports.port_ids_of(inst))
        if not await node.set_state(uuid, {"task_state": s.RESIZE_MIGRATED, "power_state": int(PowerState.SHUTDOWN)},
                                    expected_task_state=s.RESIZE_MIGRATING):
            return
        await migration_records.set_status_of(node.db, migration_uuid, migration_records.POST_MIGRATING)
    await _peers(node).finish_migration(dest_host, uuid, node=dest_node, migration_uuid=migration_uuid,
                                        request_id=req)


async def finish_revert_migration(
    node: Node, uuid: str, migration_uuid: str, fault: str | None, request_id: str | None
) -> None:
    """The server back on this (source) node: powered on if it ran, old flavor and allocation."""
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] not in (s.RESIZE_REVERTING, s.RESIZE_FINISH, s.RESIZE_MIGRATED):
            LOG.info("finish_revert_migration of %s skipped", uuid)
            return
        task = inst["task_state"]
        req = await node.request_id_for(uuid, request_id, actions.REVERT_RESIZE if fault is None else MIGRATE_ACTION)
        sysmeta = dict(inst["system_metadata"] or {})
        previous = sysmeta.pop(OLD_VM_STATE, s.ACTIVE)
        old_flavor = inst["old_flavor"] if inst["vm_state"] == s.RESIZED and inst["old_flavor"] else inst["flavor"]
        error: BaseException | None = None
        try:
            async with actions.event(node.db, uuid, req, "compute_finish_revert_resize", node.host):
                if previous != s.STOPPED:
                    spec = await nics.with_nics(node, inst, await node.spec(inst, flavor=old_flavor))
                    await driver_for(node.driver, Capability.POWER, node=node.name).power_on(spec)
                else:
                    await nics.plug(node, uuid, netports.port_ids_of(inst))
        except Exception as exc:
            LOG.warning("restarting %s on %s after the revert failed: %s", uuid, node.host, exc)
            error = exc
        await node.placement.revert_resize(uuid)
        power = await node.power_of(uuid)
        vm = s.ERROR if error is not None else settled_vm_state(power, previous)
        await node.set_state(
            uuid,
            {"vm_state": vm, "task_state": None, "host": node.host, "node": node.name, "flavor": old_flavor,
             "old_flavor": None, "new_flavor": None, "power_state": int(power), "system_metadata": sysmeta,
             **flavor_columns(old_flavor, volume_backed=volume_backed(inst))},
            expected_task_state=task, fault=error if error is not None else fault,
        )
        status = migration_records.REVERTED if fault is None and error is None else migration_records.ERROR
        await migration_records.set_status_of(node.db, migration_uuid, status)


async def cleanup_migration_source(node: Node, uuid: str, request_id: str | None) -> None:
    """At confirm: the copy this (source) node kept for a revert goes."""
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is not None and node.owns(inst):
            LOG.warning("cleanup of %s on %s refused: the server is this node's", uuid, node.name)
            return
        await driver_for(node.driver, Capability.COLD_MIGRATION, node=node.name).cleanup_migration_source(uuid)


# -- destination ----------------------------------------------------------------------------------


async def finish_migration(node: Node, uuid: str, migration_uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] not in (s.RESIZE_MIGRATED, s.RESIZE_FINISH):
            LOG.info("finish_migration of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            return
        req = await node.request_id_for(uuid, request_id, MIGRATE_ACTION)
        source_host, source_node = inst["host"], inst["node"] or inst["host"]
        if inst["task_state"] == s.RESIZE_FINISH:
            # Again, after this agent died finishing it: what it made goes; the source still has
            # its copy, so files that are no longer here hand the server back there.
            LOG.info("finishing the interrupted migration of %s again", uuid)
            with contextlib.suppress(Exception):
                await node.driver.destroy(uuid)
        elif not await node.set_state(uuid, {"task_state": s.RESIZE_FINISH}, expected_task_state=s.RESIZE_MIGRATED):
            return
        old_flavor = inst["flavor"]
        new_flavor = inst["new_flavor"] or old_flavor
        previous = (inst["system_metadata"] or {}).get(OLD_VM_STATE, s.ACTIVE)
        received = incoming_dir(node.conf.state_dir, node.host, migration_uuid)
        try:
            async with actions.event(node.db, uuid, req, "compute_finish_resize", node.host):
                mover = driver_for(node.driver, Capability.COLD_MIGRATION, node=node.name)
                spec = await nics.with_nics(node, inst, await node.spec(inst, flavor=new_flavor))
                await mover.finish_migration(spec, str(received), previous != s.STOPPED)
        except Exception as exc:
            LOG.warning("finish_migration of %s on %s failed: %s", uuid, node.host, exc)
            with contextlib.suppress(Exception):
                await node.driver.destroy(uuid)
            with contextlib.suppress(Exception):
                await nics.unplug(node, netports.port_ids_of(inst))
            await drop_incoming(node.conf.state_dir, node.host, migration_uuid)
            await _peers(node).finish_revert_migration(
                source_host, uuid, node=source_node, migration_uuid=migration_uuid,
                fault=f"Migration to {node.host} failed: {exc}", request_id=req,
            )
            return
        await drop_incoming(node.conf.state_dir, node.host, migration_uuid)
        power = await node.power_of(uuid)
        await node.set_state(
            uuid,
            {"vm_state": s.RESIZED, "task_state": None, "host": node.host, "node": node.name, "flavor": new_flavor,
             "old_flavor": old_flavor, "new_flavor": new_flavor, "power_state": int(power),
             **flavor_columns(new_flavor, volume_backed=volume_backed(inst))},
            expected_task_state=s.RESIZE_FINISH,
        )
        await migration_records.set_status_of(node.db, migration_uuid, migration_records.FINISHED)


async def confirm_locked(node: Node, inst: dict[str, Any], rec: dict[str, Any], request_id: str | None) -> None:
    """confirmResize of a server that moved here (the caller holds the lock and checked the state)."""
    uuid, task = inst["uuid"], inst["task_state"]
    req = await node.request_id_for(uuid, request_id, actions.CONFIRM_RESIZE)
    async with actions.event(node.db, uuid, req, "compute_confirm_resize", node.host):
        try:
            await _peers(node).cleanup_migration_source(
                rec["source_compute"], uuid, node=rec["source_node"] or rec["source_compute"], request_id=req
            )
        except Exception as exc:  # noqa: BLE001 - a source that is down reaps its copy when it is back
            LOG.warning("the source %s of %s did not clean up (%s); it reaps the copy at its next start",
                        rec["source_compute"], uuid, exc)
    await node.placement.confirm_resize(uuid)
    await migration_records.set_status_of(node.db, rec["uuid"], migration_records.CONFIRMED)
    power = await node.power_of(uuid)
    sysmeta = {k: v for k, v in (inst["system_metadata"] or {}).items() if k != OLD_VM_STATE}
    await node.set_state(
        uuid,
        {"vm_state": settled_vm_state(power), "task_state": None, "old_flavor": None, "new_flavor": None,
         "power_state": int(power), "system_metadata": sysmeta},
        expected_task_state=task, expected_vm_state=s.RESIZED,
    )


async def close_on_delete(node: Node, uuid: str, request_id: str | None) -> None:
    """The server was deleted here while a move to this host waited for confirm (VERIFY_RESIZE):
    its copy kept on the source goes and the record is confirmed, as Nova confirms the resize of a
    server it deletes; otherwise the source kept that copy (kept_for_revert) for good."""
    rec = await cross_host(node, uuid)
    if rec is None or rec["dest_compute"] != node.host:
        return
    try:
        await _peers(node).cleanup_migration_source(
            rec["source_compute"], uuid, node=rec["source_node"] or rec["source_compute"], request_id=request_id
        )
    except Exception as exc:  # noqa: BLE001 - the record closes anyway: the source reaps the orphan at its start
        LOG.warning("the source %s of deleted %s did not clean up (%s); it reaps the copy at its next start",
                    rec["source_compute"], uuid, exc)
    await migration_records.set_status_of(node.db, rec["uuid"], migration_records.CONFIRMED)


async def revert_locked(node: Node, inst: dict[str, Any], rec: dict[str, Any], request_id: str | None) -> bool:
    """revertResize of a server that moved here: destroyed here, handed back to the source."""
    uuid, task = inst["uuid"], inst["task_state"]
    req = await node.request_id_for(uuid, request_id, actions.REVERT_RESIZE)
    try:
        async with actions.event(node.db, uuid, req, "compute_revert_resize", node.host):
            await node.driver.destroy(uuid)
            with contextlib.suppress(Exception):
                await nics.unplug(node, netports.port_ids_of(inst))
    except Exception as exc:
        await node.set_state(uuid, {"vm_state": s.ERROR, "task_state": None}, expected_task_state=task, fault=exc)
        await migration_records.set_status_of(node.db, rec["uuid"], migration_records.ERROR)
        return False
    source_node = rec["source_node"] or rec["source_compute"]
    if not await node.set_state(uuid, {"host": rec["source_compute"], "node": source_node},
                                expected_task_state=task):
        return False
    await _peers(node).finish_revert_migration(rec["source_compute"], uuid, node=source_node,
                                               migration_uuid=rec["uuid"], fault=None, request_id=req)
    return True


async def settle_interrupted(node: Node, inst: dict[str, Any]) -> bool:
    """At start, the source's row in a move's task state. Interrupted while the source worked
    (resize_migrating): the move ends here, the server back as it was. Later steps are the
    destination's. False when the row's move is an in-place resize (reconcile undoes that)."""
    rec = await cross_host(node, inst["uuid"])
    if rec is None:
        return False
    if inst["task_state"] != s.RESIZE_MIGRATING:
        # The files were sent: the destination finishes (or hands it back) at its own start
        # (resume_incoming); a destination gone for good is an admin's resetState, as in Nova.
        return True
    previous = (inst["system_metadata"] or {}).get(OLD_VM_STATE, s.ACTIVE)
    await _back_on_source(node, inst, previous, rec["uuid"], "Migration interrupted by a restart of the compute service",
                          inst["task_state"])
    return True


# -- evacuation -----------------------------------------------------------------------------------


async def evacuate_instance(node: Node, uuid: str, migration_uuid: str, request_id: str | None) -> None:
    """Rebuild here, from its image, a server whose host is down (the conductor placed it here)."""
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] != s.REBUILDING or not node.owns(inst):
            LOG.info("evacuation of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            return
        req = await node.request_id_for(uuid, request_id, EVACUATE_ACTION)
        previous = inst["vm_state"]
        if not await node.set_state(uuid, {"task_state": s.REBUILD_SPAWNING}, expected_task_state=s.REBUILDING):
            return
        try:
            async with actions.event(node.db, uuid, req, "compute_rebuild_instance", node.host):
                with contextlib.suppress(Exception):
                    await node.driver.destroy(uuid)  # a half-made copy of an earlier try
                spec = await nics.with_nics(node, inst, await node.spec(inst, strict=True))
                await node.driver.spawn(spec)
                if previous == s.STOPPED:
                    await driver_for(node.driver, Capability.POWER, node=node.name).power_off(uuid)
        except Exception as exc:
            LOG.warning("evacuation of %s to %s failed: %s", uuid, node.host, exc)
            with contextlib.suppress(Exception):
                await node.driver.destroy(uuid)
            await node.set_state(uuid, {"vm_state": s.ERROR, "task_state": None, "power_state": 0},
                                 expected_task_state=s.REBUILD_SPAWNING, fault=exc)
            await migration_records.set_status_of(node.db, migration_uuid, migration_records.FAILED)
            return
        power = await node.power_of(uuid)
        await node.set_state(
            uuid, {"vm_state": settled_vm_state(power), "task_state": None, "power_state": int(power),
                   "launched_at": utcnow()},
            expected_task_state=s.REBUILD_SPAWNING,
        )
        await migration_records.set_status_of(node.db, migration_uuid, migration_records.DONE)


async def destroy_evacuated(node: Node) -> list[str]:
    """At start: servers evacuated away from this host while it was down are destroyed here (never
    restarted), and their records completed (Nova's _destroy_evacuated_instances)."""
    gone: list[str] = []
    for rec in await migration_records.evacuations_from(node.db, node.host):
        if (rec["source_node"] or rec["source_compute"]) != node.name:
            continue
        uuid = rec["instance_uuid"]
        inst = await node.load(uuid)
        if inst is not None and node.owns(inst):
            continue  # the evacuation never placed it elsewhere: still ours
        if rec["status"] != migration_records.DONE and inst is not None:
            continue  # still under way: the next start finishes the job
        LOG.info("destroying %s on %s: it was evacuated to %s", uuid, node.host, rec["dest_compute"])
        with contextlib.suppress(Exception):
            await node.driver.destroy(uuid)
        await migration_records.set_status_of(node.db, rec["uuid"], migration_records.COMPLETED)
        gone.append(uuid)
    return gone


async def resume_incoming(node: Node) -> list[str]:
    """At start: moves to this node that its previous run had not finished (the row is still the
    source's, so no reconcile of this node sees it) are finished now, or handed back."""
    async with node.db.read() as conn:
        rows = (await conn.execute(
            sa.select(migrations.c.uuid, migrations.c.instance_uuid).where(
                migrations.c.dest_compute == node.host,
                sa.func.coalesce(migrations.c.dest_node, migrations.c.dest_compute) == node.name,
                migrations.c.source_compute != node.host,
                migrations.c.status == migration_records.POST_MIGRATING,
            )
        )).all()
    resumed = []
    for migration_uuid, uuid in rows:
        inst = await node.load(uuid)
        if inst is not None and inst["task_state"] in (s.RESIZE_MIGRATED, s.RESIZE_FINISH):
            await finish_migration(node, uuid, migration_uuid, None)
            resumed.append(uuid)
    return resumed


async def kept_for_revert(node: Node) -> set[str]:
    """Servers that moved away from this node and are not confirmed yet: their copy here stays."""
    async with node.db.read() as conn:
        rows = await conn.execute(
            sa.select(migrations.c.instance_uuid).where(
                migrations.c.source_compute == node.host,
                sa.func.coalesce(migrations.c.source_node, migrations.c.source_compute) == node.name,
                migrations.c.dest_compute != node.host,
                migrations.c.migration_type.in_([migration_records.MIGRATION, migration_records.RESIZE]),
                migrations.c.status.in_(list(migration_records.OPEN)),
            )
        )
        return {r[0] for r in rows}
