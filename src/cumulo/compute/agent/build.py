"""Build, rebuild and terminate on the agent.

Build: BUILD/scheduling (host set by the conductor) → spawning → ACTIVE/running with launched_at.
A failed spawn leaves nothing: the driver cleans up, the allocation is released, host/node are
cleared (as Nova does) and the instance goes to ERROR with a fault quoting the driver error.
Terminate: destroy, release the allocation, soft-delete the row.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo.compute import actions, migration_records, worker_events
from cumulo.compute import instances as inst_db
from cumulo.compute import states as s
from cumulo.compute.agent import block_devices, migrate, nics, volumes
from cumulo.compute.drivers.base import Capability, PowerState, driver_for
from cumulo.compute.faults import fault_text
from cumulo.compute.models import block_device_mapping, instances, migrations
from cumulo.db import utcnow
from cumulo.image.models import images as image_rows

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

# The task_states a build message starts from: only "scheduling". A build past it was taken by
# this host's agent already, and a message handled again (RabbitMQ redelivers what a killed agent held, to
# the agent restarted) would spawn over the half-made guest and fail the build; the restarted
# agent's reconcile owns such a row (adopts the guest or makes it again).
TAKE_TASK_STATES = frozenset({s.SCHEDULING})
BUILD_EVENT = "compute_build_and_run_instance"
REBUILD_TASK_STATES = frozenset({s.REBUILDING, s.REBUILD_SPAWNING, "rebuild_block_device_mapping"})


async def build_and_run(node: Node, uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        req = await node.request_id_for(uuid, request_id, actions.CREATE)
        inst, event = await _take(node, uuid, req)
        if inst is None:
            await _not_taken(node, uuid)
            return
        try:
            # the server's volumes made and connected (False: it has none); its mappings read once,
            # not at all when the take saw it has none
            mappings = await block_devices.every_mapping(node, uuid) if inst.pop(_HAS_MAPPINGS, True) else []
            with_volumes = await block_devices.prepare(node, inst, req, mappings=mappings)
            spec = await node.spec(inst, strict=True, spec_image=True, mappings=None if with_volumes else mappings)
            await node.driver.spawn(await nics.with_nics(node, inst, spec))
        except Exception as exc:
            LOG.warning("build of %s failed: %s", uuid, exc)
            await fail_build(node, uuid, exc, expected_task_state=s.SPAWNING, event=event)
            await volumes.release(node, inst)  # as Nova's _cleanup_volumes: attachments and made volumes go
            return
        if with_volumes:
            await block_devices.complete(node, inst, req)
        power = await node.power_of(uuid)
        done = await node.set_state(
            uuid,
            {
                "vm_state": s.ACTIVE,
                "task_state": None,
                "power_state": int(power),
                "launched_at": utcnow(),
            },
            expected_task_state=s.SPAWNING,
            expected_vm_state=s.BUILDING,
            event=event,
        )
        if not done:
            await _after_lost_race(node, uuid)


# The take's extra column (PostgreSQL): whether the server has any block device mapping.
_HAS_MAPPINGS = "_has_mappings"


# The take's image columns (PostgreSQL, a backend that keeps rows: RemoteImages.remember_row).
_IMAGE_PREFIX = "_image_"


@functools.cache
def _take_statement(host: str, node_name: str, with_event: bool, with_image: bool = False) -> sa.Select[Any]:
    """PostgreSQL: the take, the event's start and whether the server has block device mappings,
    as one statement, built once per node and shape with the values bound (take_uuid, take_now and
    worker_events.begin_values'): building it per boot cost Python before the first round trip.
    `with_image`: the image's row too (live rows only; none when the image is gone), which the
    image backend then uses for the bytes instead of reading it again."""
    uuid = sa.bindparam("take_uuid", type_=instances.c.uuid.type)
    owns = sa.and_(instances.c.host == host, sa.func.coalesce(instances.c.node, instances.c.host) == node_name)
    taken = (
        sa.update(instances)
        .where(instances.c.uuid == uuid, instances.c.deleted.is_(False), instances.c.vm_state == s.BUILDING,
               instances.c.task_state.in_(sorted(TAKE_TASK_STATES)), owns)
        .values(task_state=s.SPAWNING, updated_at=sa.bindparam("take_now", type_=instances.c.updated_at.type))
        .returning(*instances.c)
        .cte("taken")
    )
    has_mappings = sa.exists(sa.select(sa.literal(1)).where(block_device_mapping.c.instance_uuid == uuid))
    columns: list[Any] = [taken, has_mappings.label(_HAS_MAPPINGS)]
    joined: Any = taken
    if with_event:
        started = worker_events.bound_begin_cte(only_if=taken)
        columns += [started.c.id.label("event_id"), started.c.action_id.label("event_action_id")]
        joined = joined.outerjoin(started, sa.true())
    if with_image:
        columns += [c.label(_IMAGE_PREFIX + c.name) for c in image_rows.c]
        joined = joined.outerjoin(image_rows, sa.and_(image_rows.c.id == taken.c.image_ref,
                                                      image_rows.c.deleted.is_(False)))
    return sa.select(*columns).select_from(joined)


async def _take(node: Node, uuid: str, req: str) -> tuple[dict[str, Any] | None, worker_events.EventHandle | None]:
    """scheduling -> spawning on this node and the build event begun, in one write transaction;
    the UPDATE returns the row as it is then (no read before it: a round trip less on the boot
    path). (None, None) when the row is not this node's build to take. On PostgreSQL the row also
    says (`_HAS_MAPPINGS`) whether the server has block device mappings to read."""
    if not node.db.is_sqlite:
        # PostgreSQL: the take and the event's start in one statement, alone in autocommit
        # (`read()`'s connection; one statement is one transaction): one round trip, not four.
        params: dict[str, Any] = {"take_uuid": uuid, "take_now": utcnow()}
        if req:
            params.update(worker_events.begin_values(uuid, req, BUILD_EVENT, node.host))
        remember = getattr(node.images, "remember_row", None)
        q = _take_statement(node.host, node.name, bool(req), remember is not None)
        async with node.db.read() as conn:
            got = (await conn.execute(q, params)).mappings().first()
        if got is None:
            return None, None
        row = {c.name: got[c.name] for c in instances.c}
        row[_HAS_MAPPINGS] = bool(got[_HAS_MAPPINGS])
        if remember is not None and got[_IMAGE_PREFIX + "id"] is not None:
            remember({c.name: got[_IMAGE_PREFIX + c.name] for c in image_rows.c})
        event = (worker_events.EventHandle(int(got["event_action_id"]), int(got["event_id"]))
                 if req and got["event_id"] is not None else None)
        return row, event
    take = (
        sa.update(instances)
        .where(instances.c.uuid == uuid, instances.c.deleted.is_(False), instances.c.vm_state == s.BUILDING,
               instances.c.task_state.in_(sorted(TAKE_TASK_STATES)), node.owns_clause())
        .values(task_state=s.SPAWNING, updated_at=utcnow())
        .returning(*instances.c)
    )
    async with node.db.write() as conn:
        found = (await conn.execute(take)).mappings().first()
        if found is None:
            return None, None
        return dict(found), await worker_events.begin(conn, uuid, req, BUILD_EVENT, node.host)


async def _not_taken(node: Node, uuid: str) -> None:
    """The build message met a row that is not (or no longer) this node's to build."""
    inst = await node.load(uuid)
    if inst is None:
        # Deleted before we got here: make sure nothing of it lingers on this host.
        await _forget(node, uuid)
        return
    LOG.info("build of %s skipped on node %s: vm_state=%s task_state=%s host=%s node=%s", uuid, node.name,
             inst["vm_state"], inst["task_state"], inst["host"], inst["node"])


async def fail_build(
    node: Node,
    uuid: str,
    error: BaseException | str,
    *,
    expected_task_state: Any = ...,
    event: worker_events.EventHandle | None = None,
) -> None:
    """ERROR with a fault, nothing left on the host, no allocation, no host (Nova's build abort)."""
    with contextlib.suppress(Exception):
        await node.driver.destroy(uuid)
    await node.placement.release(uuid)
    if isinstance(error, str):
        reason, details = error, error
    else:
        reason, details = fault_text(error)
    await node.set_state(
        uuid,
        {"vm_state": s.ERROR, "task_state": None, "power_state": int(PowerState.NOSTATE), "host": None, "node": None},
        expected_task_state=expected_task_state,
        expected_vm_state=s.BUILDING,
        fault=f"Build of instance {uuid} aborted: {reason}",
        fault_details=details,
        event=event,
        event_error=error if isinstance(error, BaseException) else None,
    )


async def _forget(node: Node, uuid: str) -> None:
    with contextlib.suppress(Exception):
        await node.driver.destroy(uuid)
    async with node.db.read() as conn:
        row = await inst_db.get(conn, uuid, include_deleted=True)
    if row is None or row["deleted"]:
        await node.placement.release(uuid)


async def _after_lost_race(node: Node, uuid: str) -> None:
    """The row changed during spawn: a delete won. Terminate (queued behind our lock) cleans up;
    if the row is already gone, clean up here."""
    async with node.db.read() as conn:
        row = await inst_db.get(conn, uuid, include_deleted=True)
    if row is None or row["deleted"]:
        await _forget(node, uuid)


async def rebuild(node: Node, uuid: str, image_ref: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] not in REBUILD_TASK_STATES:
            LOG.info("rebuild of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            return
        task = inst["task_state"]
        req = await node.request_id_for(uuid, request_id, actions.REBUILD)
        was_stopped = inst["vm_state"] == s.STOPPED
        try:
            async with actions.event(node.db, uuid, req, "compute_rebuild_instance", node.host):
                driver = driver_for(node.driver, Capability.REBUILD, node=node.name)
                await driver.rebuild(await node.spec(inst, image_ref=image_ref, strict=True))
                if was_stopped and node.supports(Capability.POWER):
                    # Nova keeps a stopped server stopped across a rebuild.
                    await driver_for(node.driver, Capability.POWER, node=node.name).power_off(uuid)
        except Exception as exc:
            LOG.warning("rebuild of %s failed: %s", uuid, exc)
            await node.set_state(
                uuid,
                {"vm_state": s.ERROR, "task_state": None, "power_state": int(await node.power_of(uuid))},
                expected_task_state=task,
                fault=exc,
            )
            return
        power = await node.power_of(uuid)
        await node.set_state(
            uuid,
            {
                "vm_state": s.STOPPED if was_stopped else s.ACTIVE,
                "task_state": None,
                "power_state": int(power),
                "image_ref": image_ref,
                "launched_at": utcnow(),
            },
            expected_task_state=task,
        )


async def terminate(node: Node, uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        event: worker_events.EventHandle | None = None
        timed: contextlib.AbstractAsyncContextManager[Any]
        if node.db.is_sqlite:
            inst = await node.load(uuid)
            if inst is None:
                await _forget(node, uuid)
                return
            req = await node.request_id_for(uuid, request_id, actions.DELETE)
            timed = actions.event(node.db, uuid, req, TERMINATE_EVENT, node.host)
        else:
            # PostgreSQL: the row, its event begun and what the delete has to release, one statement;
            # the event ends in the last write (as Nova's, it times the whole terminate)
            req = await node.request_id_for(uuid, request_id, actions.DELETE)
            inst, event = await _load_for_delete(node, uuid, req)
            if inst is None:
                await _forget(node, uuid)
                return
            timed = contextlib.nullcontext()
        try:
            async with timed:
                await node.driver.destroy(uuid)
        except Exception as exc:
            LOG.warning("terminate of %s failed: %s", uuid, exc)
            await node.set_state(
                uuid, {"vm_state": s.ERROR, "task_state": None, "power_state": int(await node.power_of(uuid))},
                fault=exc, event=event, event_error=exc,
            )
            return
        if inst.pop(_HAS_MIGRATION, True):
            await migrate.close_on_delete(node, uuid, req)  # a moved server's copy kept for a revert
        await nics.release(node, inst)
        if inst.pop(_HAS_MAPPINGS, True):
            await volumes.release(node, inst)  # attachments gone, delete_on_termination volumes deleted
        await node.placement.release(uuid)
        now = utcnow()
        await node.set_state(
            uuid,
            {
                "vm_state": s.DELETED,
                "task_state": None,
                "power_state": int(PowerState.NOSTATE),
                "deleted": True,
                "deleted_at": now,
                "terminated_at": now,
            },
            event=event,
        )


TERMINATE_EVENT = "compute_terminate_instance"
# The delete's extra column (PostgreSQL): whether the server has an open migration record.
_HAS_MIGRATION = "_has_migration"


@functools.cache
def _delete_statement(with_event: bool) -> sa.Select[Any]:
    """PostgreSQL: the live row, the terminate event begun (only for a live row), and whether the
    server has block device mappings or an open migration record, in one statement built once."""
    uuid = sa.bindparam("del_uuid", type_=instances.c.uuid.type)
    loaded = sa.select(instances).where(instances.c.uuid == uuid, instances.c.deleted.is_(False)).cte("loaded")
    columns: list[Any] = [
        loaded,
        sa.exists(sa.select(sa.literal(1)).where(block_device_mapping.c.instance_uuid == uuid)).label(_HAS_MAPPINGS),
        sa.exists(sa.select(sa.literal(1)).where(migrations.c.instance_uuid == uuid,
                                                 migrations.c.status.in_(sorted(migration_records.OPEN))))
        .label(_HAS_MIGRATION),
    ]
    if not with_event:
        return sa.select(*columns)
    started = worker_events.bound_begin_cte(only_if=loaded)
    return (sa.select(*columns, started.c.id.label("event_id"), started.c.action_id.label("event_action_id"))
            .select_from(loaded.outerjoin(started, sa.true())))


async def _load_for_delete(
    node: Node, uuid: str, req: str,
) -> tuple[dict[str, Any] | None, worker_events.EventHandle | None]:
    params: dict[str, Any] = {"del_uuid": uuid}
    if req:
        params.update(worker_events.begin_values(uuid, req, TERMINATE_EVENT, node.host))
    async with node.db.read() as conn:
        got = (await conn.execute(_delete_statement(bool(req)), params)).mappings().first()
    if got is None:
        return None, None
    row = {c.name: got[c.name] for c in instances.c}
    row[_HAS_MAPPINGS], row[_HAS_MIGRATION] = bool(got[_HAS_MAPPINGS]), bool(got[_HAS_MIGRATION])
    event = (worker_events.EventHandle(int(got["event_action_id"]), int(got["event_id"]))
             if req and got["event_id"] is not None else None)
    return row, event
