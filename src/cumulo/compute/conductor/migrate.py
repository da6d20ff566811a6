"""The conductor's part of cold migration, resize to another host and evacuation (Nova's
conductor migrate_server / rebuild_instance with a new host).

migrate_server: the scheduler chooses a destination for the server's flavor (the new one for a
resize) and its server group, never the source (Nova's cold migrate; an admin's `host` from 2.56 is
forced through the scheduler's force_host); placement.claim_resize claims there while the source's
allocation moves to the migration consumer (Nova's migration-based allocations), so both stay
held until confirm or revert. The record gets its destination, the row its new_flavor, and the
source agent gets migrate_instance (compute/agent/migrate.py). Nothing fits: the server stays as it
was (task_state cleared) with a fault naming the scheduler's reason, the record says error.

A resize whose new flavor no longer fits the server's own host moves through the same path
(`resize_elsewhere`): Nova's allow_resize_to_same_host, with the same host tried first.

evacuate_server: the server's host is down (the API checked); the scheduler chooses another host
(`host` forced when given), the claim there replaces the dead host's allocation (the dead host's
capacity is of no use meanwhile) and, in the same transaction, the row's host/node move, then the
destination rebuilds it (evacuate_instance).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute import actions, migration_records, server_groups
from cumulo.compute import instances as inst_db
from cumulo.compute import states as s
from cumulo.compute.models import instances, migrations
from cumulo.compute.rpc import ComputeAPI, SchedulerAPI
from cumulo.compute.specs import claimed_flavor
from cumulo.db import Database, utcnow
from cumulo.errors import CumuloError, NoValidHost
from cumulo.hosts.models import compute_nodes
from cumulo.placement.service import Placement, migration_consumer, resources_from_flavor


class Conductor(Protocol):
    """What these workflows (and live.py's) use of conductor.manager.Conductor (which delegates to
    them; no import: no circle)."""

    db: Database
    placement: Placement
    scheduler: SchedulerAPI
    compute: ComputeAPI
    _select_lock: asyncio.Lock

    def scheduler_spec(self, inst: dict[str, Any]) -> dict[str, Any]: ...


LOG = logging.getLogger(__name__)
T = TypeVar("T")


def _is_no_valid_host(exc: BaseException) -> bool:
    return isinstance(exc, NoValidHost) or getattr(exc, "exc_type", None) == "NoValidHost"


def _message(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, CumuloError) else str(getattr(exc, "message", None) or exc)
    return text if text.startswith("No valid host") else f"No valid host was found. {text}"


async def _host_ip(cond: Conductor, provider_uuid: str) -> str | None:
    async with cond.db.read() as conn:
        found = await conn.execute(sa.select(compute_nodes.c.host_ip).where(compute_nodes.c.uuid == provider_uuid))
        value = found.scalar()
    return str(value) if value else None


async def _spec(cond: Conductor, inst: dict[str, Any], flavor: dict[str, Any], host: str | None) -> dict[str, Any]:
    spec = cond.scheduler_spec(inst)
    spec["resources"] = resources_from_flavor(claimed_flavor(inst, flavor))
    spec["flavor"] = {"extra_specs": dict(flavor.get("extra_specs") or {})}
    spec["ignore_hosts"] = [*spec["ignore_hosts"], inst["host"]]
    spec["force_host"], spec["force_node"] = host, None
    if inst.get("hypervisor_type"):  # hosts of the server's kind first (ImagePropertiesFilter; _same_kind)
        spec["image_properties"] = {**spec["image_properties"], "hypervisor_type": str(inst["hypervisor_type"]).lower()}
    if server_groups.in_group(inst.get("request_spec")):
        spec["instance_group"] = await server_groups.scheduler_group(cond.db, inst["uuid"])
    return spec


def _same_kind(inst: dict[str, Any], candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Candidates of the server's own hypervisor type: a container's disk is no VM's, and a host
    running several drivers offers a node of each (the image's properties may admit both)."""
    kind = inst.get("hypervisor_type")
    return [d for d in candidates if not kind or not d.get("hypervisor_type") or d["hypervisor_type"] == kind]


async def select_and_claim(
    cond: Conductor, spec: dict[str, Any], claim_on: Callable[[dict[str, Any]], Awaitable[T | None]]
) -> T | None:
    """Every move's destination (cold, resize elsewhere, evacuation, live): the scheduler's choice
    then its alternates, in order, under the conductor's select lock, until `claim_on(dest)` made a
    claim there and returned what the caller needs (None: no room there, try the next); None when
    no candidate took it."""
    async with cond._select_lock:
        dests = await cond.scheduler.select_destinations(spec, 1)
        for dest in [dests[0], *dests[0].get("alternates", [])]:
            got = await claim_on(dest)
            if got is not None:
                return got
    return None


async def _choose_and_claim(cond: Conductor, inst: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The first candidate where the new flavor fits; the server's old allocation is then held by
    its migration consumer. NoValidHost when none."""

    async def claim_on(dest: dict[str, Any]) -> dict[str, Any] | None:
        if not _same_kind(inst, [dest]):
            return None
        claim = await cond.placement.claim_resize(inst["uuid"], dest["provider_uuid"], spec["resources"])
        if not claim:
            LOG.info("migration claim of %s on %s failed: %s", inst["uuid"], dest["host"], claim.reason)
            return None
        return dict(dest)

    chosen = await select_and_claim(cond, spec, claim_on)
    if chosen is None:
        raise NoValidHost("No valid host was found. Every host the scheduler chose lost its free capacity.")
    return chosen


async def _start_move(cond: Conductor, inst: dict[str, Any], dest: dict[str, Any], flavor: dict[str, Any],
                      migration_uuid: str, request_id: str) -> None:
    uuid = inst["uuid"]
    address = await _host_ip(cond, dest["provider_uuid"])
    await migration_records.set_destination(cond.db, migration_uuid, dest["host"], dest["node"], address)
    async with cond.db.write() as conn:
        ok = await inst_db.cas_update(conn, uuid, {"new_flavor": flavor}, expected_task_state=s.RESIZE_PREP)
    if not ok:  # deleted or reset meanwhile
        await cond.placement.revert_resize(uuid)
        await migration_records.set_status_of(cond.db, migration_uuid, migration_records.ERROR)
        return
    await cond.compute.migrate_instance(inst["host"], uuid, dest_host=dest["host"], dest_node=dest["node"],
                                        dest_address=address, migration_uuid=migration_uuid, request_id=request_id)


async def migrate_server(
    cond: Conductor, instance_uuid: str, new_flavor: dict[str, Any] | None, host: str | None, request_id: str
) -> None:
    uuid = instance_uuid
    async with cond.db.read() as conn:
        inst = await inst_db.get(conn, uuid)
    if inst is None or inst["task_state"] != s.RESIZE_PREP or not inst["host"]:
        LOG.info("migration of %s: nothing to do", uuid)
        return
    rec = await migration_records.latest_open(cond.db, uuid)
    if rec is None:
        LOG.warning("migration of %s has no record; not started", uuid)
        return
    flavor = dict(new_flavor or inst["flavor"] or {})
    if rec["dest_compute"] and rec["dest_compute"] != rec["source_compute"]:
        # This message again (redelivered after a conductor died): the destination was chosen and
        # claimed; the cast may not have gone. The source agent acts on resize_prep only once.
        LOG.info("migration of %s: destination %s already chosen; casting again", uuid, rec["dest_compute"])
        await cond.compute.migrate_instance(inst["host"], uuid, dest_host=rec["dest_compute"],
                                            dest_node=rec["dest_node"] or rec["dest_compute"],
                                            dest_address=rec["dest_host"], migration_uuid=rec["uuid"],
                                            request_id=request_id)
        return
    if await cond.placement.allocations_for(migration_consumer(uuid)):
        await cond.placement.revert_resize(uuid)  # a claim an interrupted attempt made, not recorded
    try:
        async with actions.event(cond.db, uuid, request_id, "conductor_migrate_server", None):
            dest = await _choose_and_claim(cond, inst, await _spec(cond, inst, flavor, host))
    except Exception as exc:
        if not _is_no_valid_host(exc):
            LOG.exception("migration of %s failed in the conductor", uuid)
        message = _message(exc) if _is_no_valid_host(exc) else f"Migration failed in the conductor: {exc}"
        async with cond.db.write() as conn:
            if await inst_db.cas_update(conn, uuid, {"task_state": None, "new_flavor": None},
                                        expected_task_state=s.RESIZE_PREP):
                await inst_db.add_fault(conn, uuid, 500, message, details=message)
        await migration_records.set_status_of(cond.db, rec["uuid"], migration_records.ERROR)
        if _is_no_valid_host(exc):
            raise NoValidHost(message) from None  # the API's 400 (the caller waits: a bus call)
        return
    await _start_move(cond, inst, dest, flavor, rec["uuid"], request_id)


async def resize_elsewhere(cond: Conductor, inst: dict[str, Any], new_flavor: dict[str, Any], request_id: str) -> bool:
    """The new flavor does not fit the server's host: move it to one where it does. False (nothing
    claimed) when no other host fits either."""
    rec = await migration_records.latest_open(cond.db, inst["uuid"])
    if rec is None:
        return False
    try:
        dest = await _choose_and_claim(cond, inst, await _spec(cond, inst, new_flavor, None))
    except Exception as exc:
        if not _is_no_valid_host(exc):
            raise
        return False
    await _start_move(cond, inst, dest, new_flavor, rec["uuid"], request_id)
    return True


# -- evacuation -----------------------------------------------------------------------------------


async def _move_row(conn: AsyncConnection, *, uuid: str, source: str, dest: dict[str, Any]) -> None:
    res = await conn.execute(
        sa.update(instances)
        .where(instances.c.uuid == uuid, instances.c.deleted.is_(False), instances.c.task_state == s.REBUILDING,
               instances.c.host == source)
        .values(host=dest["host"], node=dest["node"], updated_at=utcnow())
    )
    if not res.rowcount:
        raise _Gone


class _Gone(Exception):
    """The server was deleted or reset while it was scheduled: the claim rolls back."""


async def evacuate_server(
    cond: Conductor, instance_uuid: str, host: str | None, force: bool, migration_uuid: str, request_id: str
) -> None:
    uuid = instance_uuid
    async with cond.db.read() as conn:
        inst = await inst_db.get(conn, uuid)
    if inst is None or inst["task_state"] != s.REBUILDING or not inst["host"]:
        LOG.info("evacuation of %s: nothing to do", uuid)
        return
    async with cond.db.read() as conn:
        rec = (await conn.execute(sa.select(migrations).where(migrations.c.uuid == migration_uuid))).mappings().first()
    if rec is None:
        LOG.warning("evacuation of %s has no record %s; not started", uuid, migration_uuid)
        return
    source = rec["source_compute"]
    if inst["host"] != source:
        # This message again (redelivered after a conductor died): the row already moved with its
        # claim; the destination rebuilds only from task rebuilding, once.
        await cond.compute.evacuate_instance(inst["host"], uuid, node=inst["node"] or inst["host"],
                                             migration_uuid=migration_uuid, request_id=request_id)
        return
    await migration_records.set_status_of(cond.db, migration_uuid, migration_records.PRE_MIGRATING)
    spec = await _spec(cond, inst, dict(inst["flavor"] or {}), host)
    spec["resources"] = cond.scheduler_spec(inst)["resources"]  # what the row holds now

    async def claim_on(dest: dict[str, Any]) -> dict[str, Any] | None:
        if not _same_kind(inst, [dest]):
            return None
        claim = await cond.placement.claim(uuid, dest["provider_uuid"], spec["resources"],
                                           then=functools.partial(_move_row, uuid=uuid, source=source, dest=dest))
        return dict(dest) if claim else None

    try:
        async with actions.event(cond.db, uuid, request_id, "conductor_rebuild_server", None):
            chosen = await select_and_claim(cond, spec, claim_on)
            if chosen is None:
                raise NoValidHost("No valid host was found. Every host the scheduler chose lost its free capacity.")
    except _Gone:
        await migration_records.set_status_of(cond.db, migration_uuid, migration_records.FAILED)
        return
    except Exception as exc:
        message = _message(exc) if _is_no_valid_host(exc) else f"Evacuation failed in the conductor: {exc}"
        async with cond.db.write() as conn:
            if await inst_db.cas_update(conn, uuid, {"task_state": None}, expected_task_state=s.REBUILDING):
                await inst_db.add_fault(conn, uuid, 500, message, details=message)
        await migration_records.set_status_of(cond.db, migration_uuid, migration_records.ERROR)
        return
    await migration_records.set_destination(cond.db, migration_uuid, chosen["host"], chosen["node"],
                                            await _host_ip(cond, chosen["provider_uuid"]))
    await cond.compute.evacuate_instance(chosen["host"], uuid, node=chosen["node"], migration_uuid=migration_uuid,
                                         request_id=request_id)
