"""The conductor's part of a live migration (Nova's conductor LiveMigrationTask + the compute
manager's _do_live_migration, driven from here with calls to both agents).

1. The destination: the admin's host (checked, not scheduled, when forced) or the scheduler's
   choice among the other hosts; its node of the source node's hypervisor type. A claim there
   under the migration's uuid as consumer (Nova's migration-based allocations, inverted: the
   instance keeps its source allocation until the switchover; at completion the migration's
   allocation becomes the instance's and the source one goes, in the transaction that moves
   instance.host/node). Record: queued.
2. source `live_migration_source` → destination `pre_live_migration` (record: preparing) → source
   `live_migration` (record: running; the move, QEMU's figures back) → destination
   `post_live_migration_at_destination` (the guest runs there) → the DB switch (host, node,
   allocations, task_state cleared, record completed with the downtime) → source
   `post_live_migration_at_source` (the stopped guest and its files go; a failure there is only
   logged: the server runs on the destination).
3. A failure before the DB switch: the destination's copy rolled back, the claim released, the
   record error (cancelled after an abort), the server ACTIVE/PAUSED on its source with a fault
   (none for an abort) and no task_state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa

from cumulo.compute import actions, live_records
from cumulo.compute import instances as inst_db
from cumulo.compute import states as s
from cumulo.compute.conductor.migrate import Conductor, select_and_claim
from cumulo.compute.models import migrations
from cumulo.compute.specs import instance_resources
from cumulo.db import utcnow
from cumulo.errors import CumuloError, Invalid, NoValidHost
from cumulo.hosts.models import compute_nodes
from cumulo.placement.models import allocations, resource_providers

LOG = logging.getLogger(__name__)
EVENT = "conductor_live_migrate_instance"


class _Cancelled(Exception):
    """An admin aborted the migration (the record says cancelled)."""


async def _node_row(conductor: Conductor, name: str | None) -> dict[str, Any] | None:
    if not name:
        return None
    async with conductor.db.read() as conn:
        row = (await conn.execute(
            sa.select(compute_nodes).where(compute_nodes.c.hypervisor_hostname == name))).mappings().first()
    return dict(row) if row is not None else None


async def dest_node_on(conductor: Conductor, host: str, hypervisor_type: str) -> dict[str, Any] | None:
    """The node of `host` that runs the same hypervisor type as the source."""
    async with conductor.db.read() as conn:
        row = (await conn.execute(
            sa.select(compute_nodes).where(compute_nodes.c.host == host,
                                           compute_nodes.c.hypervisor_type == hypervisor_type)
            .order_by(compute_nodes.c.id).limit(1))).mappings().first()
    return dict(row) if row is not None else None


async def _choose_and_claim(conductor: Conductor, inst: dict[str, Any], migration_uuid: str, host: str | None,
                            force: bool, source_type: str) -> dict[str, Any]:
    """The destination node row, claimed for the migration; NoValidHost / Invalid when none."""
    resources = instance_resources(inst)
    if host and force:
        node = await dest_node_on(conductor, host, source_type)
        if node is None:
            raise Invalid(f"Compute host {host} has no {source_type} node to take instance {inst['uuid']}.")
        claim = await conductor.placement.claim(migration_uuid, node["uuid"], resources)
        if not claim:
            raise NoValidHost(f"No valid host was found. Host {host} cannot take the instance: {claim.reason}")
        return node
    spec = conductor.scheduler_spec(inst)
    spec["ignore_hosts"] = sorted({*spec.get("ignore_hosts", []), inst["host"]})
    spec["force_host"] = host
    spec["force_node"] = None

    async def claim_on(dest: dict[str, Any]) -> dict[str, Any] | None:
        node = await _node_row(conductor, dest.get("node"))
        if node is None or node["hypervisor_type"] != source_type:
            return None
        return node if await conductor.placement.claim(migration_uuid, node["uuid"], resources) else None

    chosen = await select_and_claim(conductor, spec, claim_on)
    if chosen is not None:
        return chosen
    raise NoValidHost(f"No valid host was found. No other host has a {source_type} node with room for the instance.")


async def _switch(conductor: Conductor, uuid: str, migration_uuid: str, node: dict[str, Any],
                  figures: dict[str, Any]) -> bool:
    """The server is on the destination now: host/node, allocations and the record, in one transaction."""
    now = utcnow()
    async with conductor.db.write() as conn:
        ok = await inst_db.cas_update(
            conn, uuid, {"host": node["host"], "node": node["hypervisor_hostname"],
                         "hypervisor_type": node["hypervisor_type"], "task_state": None},
            expected_task_state=s.MIGRATING,
        )
        if not ok:
            return False
        held = sa.select(allocations.c.provider_id).where(allocations.c.consumer_id.in_([uuid, migration_uuid]))
        await conn.execute(
            sa.update(resource_providers).where(resource_providers.c.id.in_(held.scalar_subquery()))
            .values(generation=resource_providers.c.generation + 1, updated_at=now)
        )
        await conn.execute(sa.delete(allocations).where(allocations.c.consumer_id == uuid))
        await conn.execute(sa.update(allocations).where(allocations.c.consumer_id == migration_uuid)
                           .values(consumer_id=uuid))
    done: dict[str, Any] = {k: int(figures[k]) for k in ("memory_total", "memory_processed", "memory_remaining",
                                                         "disk_total", "disk_processed", "disk_remaining")
                            if figures.get(k) is not None}
    done["downtime_ms"] = int(figures.get("downtime_ms") or 0)
    await live_records.update(conductor.db, migration_uuid, status=live_records.COMPLETED, **done)
    return True


async def _fail(conductor: Conductor, uuid: str, migration_uuid: str, exc: BaseException | None) -> None:
    """Back on the source: no task_state, a fault (unless aborted), the record error/cancelled, no claim."""
    await conductor.placement.release(migration_uuid, include_migration=False)
    # Only an open record: a recovery (or a peer) that settled it first keeps its word.
    status = live_records.CANCELLED if exc is None else live_records.ERROR
    await live_records.update(conductor.db, migration_uuid, expect=live_records.OPEN, status=status)
    async with conductor.db.write() as conn:
        ok = await inst_db.cas_update(conn, uuid, {"task_state": None}, expected_task_state=s.MIGRATING)
        if ok and exc is not None:
            message = exc.message if isinstance(exc, CumuloError) else f"{type(exc).__name__}: {exc}"
            await inst_db.add_fault(conn, uuid, 500, message, details=message)


async def live_migrate(conductor: Conductor, instance_uuid: str, migration_uuid: str, host: str | None,
                       force: bool, request_id: str) -> None:
    uuid = instance_uuid
    inst = await _load(conductor, uuid)
    mig = await live_records.get(conductor.db, migration_uuid)
    if inst is None or inst["task_state"] != s.MIGRATING or mig is None or mig["status"] != live_records.ACCEPTED:
        LOG.info("live migration %s of %s: nothing to do", migration_uuid, uuid)
        return
    source = await _node_row(conductor, inst.get("node") or inst.get("host"))
    src_host, src_node = str(inst["host"]), str(inst.get("node") or inst["host"])
    source_type = str(source["hypervisor_type"]) if source else ""
    compute = conductor.compute
    try:
        async with actions.event(conductor.db, uuid, request_id, EVENT, None):
            node = await _choose_and_claim(conductor, inst, migration_uuid, host, force, source_type)
    except Exception as exc:
        LOG.info("live migration of %s: no destination: %s", uuid, exc)
        await _fail(conductor, uuid, migration_uuid, exc)
        return
    dest_host, dest_node = str(node["host"]), str(node["hypervisor_hostname"])
    if not await live_records.update(conductor.db, migration_uuid, expect=(live_records.ACCEPTED,),
                                     status=live_records.QUEUED, dest_compute=dest_host, dest_node=dest_node,
                                     dest_host=node.get("host_ip")):
        # Settled meanwhile (the sweep timed it out, conductor/stuck.py): the claim goes, nothing moves.
        await conductor.placement.release(migration_uuid, include_migration=False)
        return
    prepared = moving = False
    try:
        async with actions.event(conductor.db, uuid, request_id, "compute_live_migration", src_host):
            info = await compute.live_migration_source(src_host, uuid, request_id=request_id)
            await _step(conductor, migration_uuid, live_records.PREPARING, (live_records.QUEUED,))
            prepared = True
            target = await compute.pre_live_migration(dest_host, uuid, node=dest_node, source=info,
                                                      request_id=request_id)
            await _step(conductor, migration_uuid, live_records.RUNNING, (live_records.PREPARING,))
            moving = True
            figures = await compute.live_migration(src_host, uuid, migration_uuid=migration_uuid, target=target,
                                                   request_id=request_id)
            if figures.get("cancelled"):
                raise _Cancelled
            await compute.post_live_migration_at_destination(dest_host, uuid, node=dest_node, request_id=request_id)
    except Exception as exc:
        LOG.warning("live migration of %s from %s to %s failed: %s", uuid, src_host, dest_host, exc)
        if prepared:
            with contextlib.suppress(Exception):
                await compute.rollback_live_migration_at_destination(dest_host, uuid, node=dest_node,
                                                                     request_id=request_id)
        if moving:  # the move may have ended on the source (stopped there): it runs on there
            with contextlib.suppress(Exception):
                await compute.rollback_live_migration_at_source(src_host, uuid, node=src_node,
                                                                resume=inst["vm_state"] == s.ACTIVE,
                                                                request_id=request_id)
        await _fail(conductor, uuid, migration_uuid, None if isinstance(exc, _Cancelled) else exc)
        return
    if not await _switch(conductor, uuid, migration_uuid, node, figures):
        # Deleted or reset while it moved: the destination's copy and claim go, the record says error.
        await conductor.placement.release(migration_uuid, include_migration=False)
        await live_records.update(conductor.db, migration_uuid, expect=live_records.OPEN, status=live_records.ERROR)
        with contextlib.suppress(Exception):
            await compute.rollback_live_migration_at_destination(dest_host, uuid, node=dest_node, request_id=request_id)
        current = await _load(conductor, uuid)
        if current is not None and current["host"] == src_host:
            # Reset: the row still names the source, so the guest runs on there (not dropped).
            LOG.warning("live migration of %s: the instance was reset meanwhile; it runs on at %s", uuid, src_host)
            with contextlib.suppress(Exception):
                await compute.rollback_live_migration_at_source(src_host, uuid, node=src_node,
                                                                resume=inst["vm_state"] == s.ACTIVE,
                                                                request_id=request_id)
            return
        LOG.warning("live migration of %s: the instance was deleted meanwhile; removing its copies", uuid)
    LOG.info("live migration of %s from %s to %s completed: downtime %s ms, %s ms in all", uuid, src_host,
             dest_host, figures.get("downtime_ms"), figures.get("total_time_ms"))
    try:
        await compute.post_live_migration_at_source(src_host, uuid, node=src_node, request_id=request_id)
    except Exception:
        LOG.exception("live migration of %s: cleaning up the source %s failed", uuid, src_host)


async def _step(conductor: Conductor, migration_uuid: str, status: str, expect: tuple[str, ...]) -> None:
    if not await live_records.update(conductor.db, migration_uuid, expect=expect, status=status):
        raise _Cancelled


async def _load(conductor: Conductor, uuid: str) -> dict[str, Any] | None:
    async with conductor.db.read() as conn:
        return await inst_db.get(conn, uuid)


# -- a conductor that died mid-migration ------------------------------------------------------------

STALE_WAIT = 15.0  # s a record must stay untouched (a live peer's steps and progress touch it)
INTERRUPTED = "The live migration was interrupted (its conductor stopped); the server stays on its source."


async def recover(conductor: Conductor, started_at: Any, *, wait: float = STALE_WAIT) -> None:
    """Live migrations a dead conductor left open (from before `started_at`, untouched for `wait`
    seconds): rolled back (both hosts asked, the claim released, the record error, the server on
    its source with a fault); one whose server already moved is completed."""
    m = migrations.c
    q = sa.select(m.uuid, m.updated_at).where(m.migration_type == live_records.LIVE_MIGRATION,
                                              m.status.in_(list(live_records.OPEN)), m.updated_at < started_at)
    async with conductor.db.read() as conn:
        seen = {r[0]: r[1] for r in await conn.execute(q)}
    if not seen:
        return
    await asyncio.sleep(wait)
    for uuid, updated in seen.items():
        rec = await live_records.get(conductor.db, uuid)
        if rec is None or rec["status"] not in live_records.OPEN or rec["updated_at"] != updated:
            continue  # settled or alive meanwhile
        try:
            await recover_one(conductor, rec)
        except Exception:
            LOG.exception("recovery of live migration %s failed", uuid)


async def recover_one(conductor: Conductor, rec: dict[str, Any]) -> None:
    uuid, mig_uuid, compute = rec["instance_uuid"], rec["uuid"], conductor.compute
    inst = await _load(conductor, uuid)
    src_host, src_node = rec["source_compute"], rec["source_node"] or rec["source_compute"]
    dest_host, dest_node = rec["dest_compute"], rec["dest_node"]
    req = f"req-recover-{mig_uuid}"
    if inst is not None and dest_host and inst["host"] == dest_host:
        # The switch happened: only the record and the source's copy are left.
        await live_records.update(conductor.db, mig_uuid, expect=live_records.OPEN, status=live_records.COMPLETED)
        with contextlib.suppress(Exception):
            await compute.post_live_migration_at_source(src_host, uuid, node=src_node, request_id=req)
        return
    LOG.warning("live migration %s of %s (%s) was interrupted; rolling it back", mig_uuid, uuid, rec["status"])
    if dest_host and dest_node and rec["status"] in (live_records.PREPARING, live_records.RUNNING):
        with contextlib.suppress(Exception):
            await compute.rollback_live_migration_at_destination(dest_host, uuid, node=dest_node, request_id=req)
    if rec["status"] == live_records.RUNNING and inst is not None:
        with contextlib.suppress(Exception):
            await compute.rollback_live_migration_at_source(src_host, uuid, node=src_node,
                                                            resume=inst["vm_state"] == s.ACTIVE, request_id=req)
    await _fail(conductor, uuid, mig_uuid, CumuloError(INTERRUPTED))
