"""The conductor: turns a BUILD request into a placed, claimed instance and hands it to an agent.

build_instances: select (scheduler, over the bus) → claim in placement (atomic; a lost claim
tries the alternates, then reselects) and, in the claim's own write transaction, set
host/node/availability_zone with a CAS that still expects vm_state building / task_state
scheduling / no host (a failed CAS or a late server-group check rolls the claim back) → cast build_and_run_instance to
compute.<host> naming the node. The instance keeps task_state "scheduling" until the agent takes it to
"spawning". No host → ERROR with a fault naming each filter's toll and an Error event in the
"create" action.

In one process, selection and claim run under one lock, so concurrent builds see each other's
claims and spread instead of all trying the same host; across processes the placement generation
check is what keeps claims from overcommitting.

On start it recovers builds that a crash left before any host took them (see `recover`); a
periodic sweep drives again builds and deletes whose cast was lost (conductor/sweep.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.bus.base import Bus, BusUnavailable
from cumulo.compute import actions, migration_records, server_groups, worker_events
from cumulo.compute import instances as inst_db
from cumulo.compute import states as s
from cumulo.compute.conductor import live, migrate, sweep
from cumulo.compute.conductor.batching import SelectTurns
from cumulo.compute.models import instance_actions, instances
from cumulo.compute.rpc import ComputeAPI, SchedulerAPI
from cumulo.compute.specs import claimed_flavor, instance_resources
from cumulo.conf import Settings
from cumulo.db import Database, utcnow
from cumulo.errors import CumuloError, NoValidHost
from cumulo.hosts import servicegroup
from cumulo.hosts.models import compute_nodes, services
from cumulo.placement.batch import Rider
from cumulo.placement.inventory import DISK_GB, MEMORY_MB, VCPU
from cumulo.placement.service import Placement, resources_from_flavor
from cumulo.scheduler import groups

LOG = logging.getLogger(__name__)

RESELECT_ATTEMPTS = 3
# Placements a build may lose to its server group's late check before it fails.
GROUP_ATTEMPTS = 5
SCHEDULE_EVENT = "conductor_schedule_and_build_instances"
RECOVERY_WAIT_SECONDS = 10.0
_FILTER_OF = {VCPU: "CoreFilter", MEMORY_MB: "RamFilter", DISK_GB: "DiskFilter"}


def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _is_no_valid_host(exc: BaseException) -> bool:
    # Across a broker the exception arrives as RemoteError carrying the class name.
    return isinstance(exc, NoValidHost) or getattr(exc, "exc_type", None) == "NoValidHost"


@functools.cache
def _build_row_statement() -> sa.Select[Any]:
    """_build_row's statement, built once (the uuid bound as br_uuid)."""
    req = (
        sa.select(instance_actions.c.request_id)
        .where(instance_actions.c.instance_uuid == instances.c.uuid, instance_actions.c.action == actions.CREATE)
        .order_by(instance_actions.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return sa.select(instances, req.label("create_request_id")).where(
        instances.c.uuid == sa.bindparam("br_uuid", type_=instances.c.uuid.type), instances.c.deleted.is_(False))


async def _build_row(conn: AsyncConnection, uuid: str) -> tuple[dict[str, Any] | None, str]:
    """The live instance row and the request id of its newest create action ("" if none), in one
    statement (a round trip less on the boot path than two reads)."""
    row = (await conn.execute(_build_row_statement(), {"br_uuid": uuid})).mappings().first()
    if row is None:
        return None, ""
    found = {c.name: row[c.name] for c in instances.c}
    return found, str(row["create_request_id"] or "")


def _placing_update() -> sa.Update:
    """PostgreSQL: the placement's CAS (still building/scheduling, still no host), its values bound
    (pl_uuid, pl_host, pl_node, pl_az, pl_hypervisor, pl_now: `_placing_values`), RETURNING the id."""
    c = instances.c
    return (
        sa.update(instances)
        .where(c.uuid == sa.bindparam("pl_uuid", type_=c.uuid.type), c.deleted.is_(False),
               c.vm_state == s.BUILDING, c.task_state == s.SCHEDULING, c.host.is_(None))
        .values(host=sa.bindparam("pl_host", type_=c.host.type), node=sa.bindparam("pl_node", type_=c.node.type),
                availability_zone=sa.bindparam("pl_az", type_=c.availability_zone.type),
                hypervisor_type=sa.bindparam("pl_hypervisor", type_=c.hypervisor_type.type),
                updated_at=sa.bindparam("pl_now", type_=c.updated_at.type))
        .returning(c.id)
    )


@functools.cache
def _placing(with_event: bool) -> sa.Select[Any]:
    """PostgreSQL: the placement and (`with_event`) its scheduling event in one statement answering
    how many rows it placed; built once per shape, so neither its building nor its compiling is
    paid per boot (issue 14)."""
    placed = _placing_update().cte("placed")
    count = sa.select(sa.select(sa.func.count()).select_from(placed).scalar_subquery())
    return count.add_cte(*worker_events.bound_record_ctes(only_if=placed)) if with_event else count.add_cte(placed)


def _placing_values(uuid: str, dest: dict[str, Any], az: Any) -> dict[str, Any]:
    return {"pl_uuid": uuid, "pl_host": dest["host"], "pl_node": dest["node"], "pl_az": az,
            "pl_hypervisor": dest.get("hypervisor_type"), "pl_now": utcnow()}


def _placing_ctes(with_event: bool, ok: sa.ColumnElement[bool]) -> tuple[list[sa.CTE], sa.ColumnElement[bool]]:
    placed = _placing_update().where(ok).cte("placed")
    went_in = sa.select(sa.func.count()).select_from(placed).scalar_subquery() > 0
    return [placed, *(worker_events.bound_record_ctes(only_if=placed) if with_event else [])], went_in


def _placed(went_in: bool) -> None:
    if not went_in:
        raise _NotPlaced


def _placing_rider(uuid: str, dest: dict[str, Any], az: Any, req: str, started: dt.datetime) -> Rider:
    """PostgreSQL: `_set_host`'s placement and event as part of the claim's one statement
    (placement/claim_sql.py: no transaction, two round trips less, and one statement less)."""
    params = _placing_values(uuid, dest, az)
    if req:
        params.update(worker_events.record_values(uuid, req, SCHEDULE_EVENT, None, started))
    return Rider(("conductor-placing", bool(req)), functools.partial(_placing_ctes, bool(req)), params, _placed)


class _NotPlaced(Exception):
    """The instance was deleted or changed while it was scheduled; raised to roll its claim back."""


class Conductor:
    def __init__(self, db: Database, bus: Bus, conf: Settings, placement: Placement) -> None:
        self.db = db
        self.bus = bus
        self.conf = conf
        self.placement = placement
        self.scheduler = SchedulerAPI(bus)
        self.compute = ComputeAPI(bus)
        self.service = servicegroup.WorkerService(db, conf, "nova-conductor", "conductor")
        self._select_lock = asyncio.Lock()
        # Builds select in batches, one turn at a time under the lock above (conductor/batching.py).
        self._turns = SelectTurns(lambda: self.scheduler, self._select_lock)
        # Scheduling is serial anyway (the lock above); more builds in flight would only queue
        # for DB connections that the API and the agents need too.
        self._build_slots = asyncio.Semaphore(conf.conductor.build_concurrency)
        self._in_flight: set[str] = set()
        self._recovery: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.started_at = utcnow()

    async def start(self) -> None:
        self.started_at = utcnow()
        await self.service.start()
        self._recovery = asyncio.create_task(self.recover())
        self._sweeper = asyncio.create_task(sweep.run(self))  # lost casts driven again (sweep.py)

    async def stop(self) -> None:
        for task in (self._recovery, self._sweeper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.service.stop()

    # -- builds ---------------------------------------------------------------------------------

    async def build_instances(self, instance_uuids: list[str]) -> None:
        for uuid in instance_uuids:
            if uuid in self._in_flight:
                continue  # the same build arriving twice (recovery and a redelivered cast)
            self._in_flight.add(uuid)
            try:
                async with self._build_slots:
                    await self._build_one(uuid)
            except BusUnavailable as exc:
                # The broker went away mid-build: the row stays "scheduling" (its claim, if made,
                # with its host) for the redelivered cast or the sweep (sweep.py), never ERROR.
                LOG.warning("build of %s left to a retry: %s", uuid, exc)
            except Exception as exc:
                LOG.exception("build of %s failed in the conductor", uuid)
                await self._fail_build(uuid, f"Scheduling failed in the conductor: {type(exc).__name__}: {exc}")
            finally:
                self._in_flight.discard(uuid)

    async def _build_one(self, uuid: str) -> None:
        async with self.db.read() as conn:
            inst, req = await _build_row(conn, uuid)
        if inst is None or inst["vm_state"] != s.BUILDING or inst["task_state"] != s.SCHEDULING or inst["host"]:
            LOG.info("build of %s: nothing to schedule", uuid)
            return
        spec = self.scheduler_spec(inst)
        if server_groups.in_group(inst.get("request_spec")):
            spec["instance_group"] = None  # read afresh before each scheduling attempt
        started = utcnow()
        violated: server_groups.GroupPolicyViolated | None = None
        for _ in range(GROUP_ATTEMPTS):
            try:
                dest = await self._select_and_claim(uuid, spec, inst, req, started)
                break
            except server_groups.GroupPolicyViolated as exc:
                # A member of the same group was placed meanwhile (Nova's late affinity check); the
                # claim rolled back with the placement.
                LOG.info("placing %s on %s: %s; choosing again", uuid, exc.host, exc.message)
                if exc.policy == groups.ANTI_AFFINITY:
                    spec["ignore_hosts"].append(exc.host)
                violated = exc
            except _NotPlaced:
                return  # deleted (or changed) while we scheduled: the claim rolled back with it
            except Exception as exc:
                if not _is_no_valid_host(exc):
                    raise
                message = exc.message if isinstance(exc, CumuloError) else str(exc)
                await self._fail_build(uuid, message, req=req, started=started, exc=exc)
                return
        else:
            message = f"No valid host was found. {violated.message if violated else ''}"
            await self._fail_build(uuid, message, req=req, started=started, exc=NoValidHost(message))
            return
        # The host's agent hands the build to the chosen node (a host may run several drivers).
        await self.compute.build_and_run_instance(dest["host"], uuid, node=dest["node"], request_id=req)

    def scheduler_spec(self, inst: dict[str, Any]) -> dict[str, Any]:
        """The scheduler request (RequestSpec.from_dict) from the row and the API's request_spec."""
        rs = dict(inst.get("request_spec") or {})
        flavor = inst.get("flavor") or rs.get("flavor") or {}
        return {
            "instance_uuid": inst["uuid"],
            "resources": instance_resources(inst),
            "flavor": {"extra_specs": dict(flavor.get("extra_specs") or {})},
            "availability_zone": rs.get("availability_zone") or inst.get("availability_zone"),
            "image": rs.get("image") or {},
            "image_properties": rs.get("image_properties") or {},
            # The API keeps Nova's list forms (force_hosts/force_nodes) and 2.74's requested_host/node.
            "force_host": rs.get("force_host") or _first(rs.get("force_hosts")) or rs.get("requested_host"),
            "force_node": rs.get("force_node") or _first(rs.get("force_nodes")) or rs.get("requested_node"),
            "ignore_hosts": list(rs.get("ignore_hosts") or []),
            "network_metadata": dict(rs.get("network_metadata") or {}),  # physnets: PhysicalNetworkFilter
        }

    async def _select_and_claim(
        self, uuid: str, spec: dict[str, Any], inst: dict[str, Any], req: str, started: dt.datetime
    ) -> dict[str, Any]:
        """Select, then claim on the first candidate that still fits and place the instance there.

        The claim and the placement (`_set_host`) are one write transaction: GroupPolicyViolated or
        _NotPlaced out of it leave no allocation behind.
        """
        async def claim_first(dests: list[dict[str, Any]]) -> dict[str, Any] | None:
            first = dests[0]
            for dest in [first, *first.get("alternates", [])]:
                # The builds of one turn claim in one write transaction (placement/batch.py).
                claim = await self.placement.claim_batched(
                    uuid, dest["provider_uuid"], spec["resources"],
                    then=functools.partial(self._set_host, inst=inst, dest=dest, req=req, started=started),
                    # A server group's member checks its group inside the claim's transaction: no rider
                    # (nor on SQLite, whose claims keep their transaction).
                    rider=None if self.db.is_sqlite or server_groups.in_group(inst.get("request_spec")) else
                    _placing_rider(inst["uuid"], dest, self._zone(inst, dest), req, started),
                )
                if claim:
                    return dict(dest)
                LOG.info("claim of %s on %s failed (%s); trying the next host", uuid, dest["host"], claim.reason)
            return None

        for attempt in range(RESELECT_ATTEMPTS):
            # A reselect after lost claims asks the scheduler to read the hosts afresh (its cache).
            if "instance_group" in spec:  # a turn alone: where the other members of its group are now
                async with self._turns.alone():
                    spec["instance_group"] = await server_groups.scheduler_group(self.db, uuid)
                    placed = await claim_first(
                        await self.scheduler.select_destinations(dict(spec, fresh=True) if attempt else spec, 1))
            else:  # selected in one message with the other builds waiting (conductor/batching.py)
                async with self._turns.select(dict(spec, fresh=True) if attempt else spec) as dests:
                    placed = await claim_first(dests)
            if placed is not None:
                return placed
        raise NoValidHost(
            "No valid host was found. Every host the scheduler chose lost its free capacity to concurrent builds."
        )

    async def _set_host(
        self, conn: AsyncConnection, *, inst: dict[str, Any], dest: dict[str, Any], req: str, started: dt.datetime
    ) -> None:
        """Place the instance (CAS: still building/scheduling, still no host) and record the event.

        Runs inside the claim's transaction; raises _NotPlaced (or GroupPolicyViolated) to roll both back.
        """
        az = self._zone(inst, dest)
        if server_groups.in_group(inst.get("request_spec")):
            # Raises GroupPolicyViolated when a member placed meanwhile makes this host wrong.
            await server_groups.check_late(conn, inst["uuid"], dest["host"])
        if conn.dialect.name == "postgresql":
            # The placement and its event in one statement (a round trip less in the claim's
            # transaction); the event is written only when the CAS placed the instance. Built once
            # per shape, its values bound (_placing).
            params = _placing_values(inst["uuid"], dest, az)
            if req:
                params.update(worker_events.record_values(inst["uuid"], req, SCHEDULE_EVENT, None, started))
            if not await conn.scalar(_placing(bool(req)), params):
                raise _NotPlaced
            return
        place = (
            sa.update(instances)
            .where(
                instances.c.uuid == inst["uuid"],
                instances.c.deleted.is_(False),
                instances.c.vm_state == s.BUILDING,
                instances.c.task_state == s.SCHEDULING,
                instances.c.host.is_(None),
            )
            .values(
                host=dest["host"], node=dest["node"], availability_zone=az,
                hypervisor_type=dest.get("hypervisor_type"), updated_at=utcnow(),
            )
        )
        res = await conn.execute(place)
        if not res.rowcount:
            raise _NotPlaced
        await worker_events.record(conn, inst["uuid"], req, SCHEDULE_EVENT, None, started)

    def _zone(self, inst: dict[str, Any], dest: dict[str, Any]) -> Any:
        """The availability zone the placed instance gets: its own, or its host's."""
        az = inst.get("availability_zone")
        if not az or ":" in str(az):
            az = dest.get("availability_zone") or self.conf.default_availability_zone
        return az

    async def _fail_build(
        self, uuid: str, message: str, *, req: str = "", started: dt.datetime | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """ERROR with a fault (and the scheduling event as Error), in one transaction; no claim left."""
        async with self.db.write() as conn:
            ok = await inst_db.cas_update(
                conn, uuid, {"vm_state": s.ERROR, "task_state": None, "host": None, "node": None},
                expected_vm_state=s.BUILDING, expected_task_state=s.SCHEDULING,
            )
            if ok:
                await inst_db.add_fault(conn, uuid, 500, message, details=message)
                if exc is not None:
                    await worker_events.record(conn, uuid, req, SCHEDULE_EVENT, None, started or utcnow(), exc)
        await self.placement.release(uuid)

    # -- resize ---------------------------------------------------------------------------------

    async def resize_instance(self, instance_uuid: str, new_flavor: dict[str, Any], request_id: str) -> None:
        """Same-host resize: hold old + new in placement, then let the agent do it."""
        uuid = instance_uuid
        async with self.db.read() as conn:
            inst = await inst_db.get(conn, uuid)
            node = None
            if inst is not None and inst["host"]:
                node = (
                    await conn.execute(
                        sa.select(compute_nodes.c.uuid).where(
                            compute_nodes.c.hypervisor_hostname == (inst["node"] or inst["host"])
                        )
                    )
                ).scalar()
        if inst is None or inst["task_state"] != s.RESIZE_PREP:
            LOG.info("resize of %s: nothing to do", uuid)
            return
        try:
            async with actions.event(self.db, uuid, request_id, "conductor_migrate_server", None):
                if node is None:
                    raise NoValidHost(f"No valid host was found. Instance {uuid} is not on a compute host.")
                claim = await self.placement.claim_resize(uuid, node, resources_from_flavor(claimed_flavor(inst, new_flavor)))
                if not claim and await migrate.resize_elsewhere(self, inst, new_flavor, request_id):
                    return  # it does not fit here: it moves to a host where it does
                if not claim:
                    removed = ", ".join(sorted({_FILTER_OF.get(rc, rc) for rc in claim.short}))
                    raise NoValidHost(
                        f"No valid host was found. There are not enough hosts available. Filters: {removed} "
                        f"removed 1 of 1 hosts ({inst['host']}: {claim.reason})"
                    )
        except NoValidHost as exc:
            async with self.db.write() as conn:
                if await inst_db.cas_update(
                    conn, uuid, {"task_state": None, "new_flavor": None}, expected_task_state=s.RESIZE_PREP
                ):
                    await inst_db.add_fault(conn, uuid, 500, exc.message, details=exc.message)
            await migration_records.set_status(self.db, uuid, migration_records.ERROR)
            return
        async with self.db.write() as conn:
            ok = await inst_db.cas_update(conn, uuid, {"new_flavor": new_flavor}, expected_task_state=s.RESIZE_PREP)
        if not ok:
            await self.placement.revert_resize(uuid)
            return
        await self.compute.resize_instance(inst["host"], uuid, new_flavor=new_flavor, request_id=request_id)

    async def migrate_server(
        self, instance_uuid: str, new_flavor: dict[str, Any] | None, host: str | None, request_id: str
    ) -> None:
        await migrate.migrate_server(self, instance_uuid, new_flavor, host, request_id)

    async def evacuate_server(
        self, instance_uuid: str, host: str | None, force: bool, migration_uuid: str, request_id: str
    ) -> None:
        await migrate.evacuate_server(self, instance_uuid, host, force, migration_uuid, request_id)

    async def live_migrate_instance(
        self, instance_uuid: str, migration_uuid: str, host: str | None, force: bool, request_id: str
    ) -> None:
        await live.live_migrate(self, instance_uuid, migration_uuid, host, force, request_id)

    # -- crash recovery -------------------------------------------------------------------------

    async def recover(self) -> None:
        """Builds a crash left without a (living) host are scheduled again; interrupted deletes
        of never-placed instances are finished. Runs once the compute agents have re-registered,
        so the scheduler sees them up."""
        try:
            await self._wait_for_computes()
            if await self._peer_conductors_up():
                # Several conductors (issue 14): a live peer may be building these very rows, and
                # a dead one's unacknowledged build casts go back to the bus, to a peer. Only a
                # conductor alone in the cloud takes over what a crash left.
                LOG.info("conductor recovery: other conductors are up; their builds stay theirs")
                await live.recover(self, self.started_at)
                return
            async with self.db.read() as conn:
                known_hosts = {r[0] for r in await conn.execute(sa.select(compute_nodes.c.host))}
                rows = (
                    await conn.execute(
                        sa.select(instances.c.uuid, instances.c.vm_state, instances.c.task_state, instances.c.host)
                        .where(
                            instances.c.deleted.is_(False),
                            instances.c.created_at <= self.started_at,
                            sa.or_(instances.c.vm_state == s.BUILDING, instances.c.task_state == s.DELETING),
                        )
                        .order_by(instances.c.id)
                    )
                ).all()
            for uuid, vm, task, host in rows:
                if host and host in known_hosts:
                    continue  # that host's agent reconciles it
                try:
                    await self._recover_one(uuid, vm, task, host)
                except Exception:
                    LOG.exception("recovery of %s failed", uuid)
            await live.recover(self, self.started_at)  # live migrations a dead conductor left open
        except asyncio.CancelledError:
            raise
        except Exception:
            LOG.exception("conductor recovery failed")

    async def _recover_one(self, uuid: str, vm: str, task: str | None, host: str | None = None) -> None:
        """`host`: the row's as read; the CAS expects it still, and only a won CAS releases the claim
        (a build placed meanwhile, by a redelivered message or the sweep, keeps its own)."""
        if task == s.DELETING:
            now = utcnow()
            async with self.db.write() as conn:
                ok = await inst_db.cas_update(
                    conn, uuid,
                    {"vm_state": s.DELETED, "task_state": None, "deleted": True, "deleted_at": now, "terminated_at": now},
                    expected_task_state=s.DELETING,
                )
            if ok:
                await self.placement.release(uuid)
            return
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.update(instances).where(
                    instances.c.uuid == uuid, instances.c.deleted.is_(False), instances.c.vm_state == s.BUILDING,
                    instances.c.task_state.is_(None) if task is None else instances.c.task_state == task,
                    instances.c.host.is_(None) if host is None else instances.c.host == host,
                ).values(task_state=s.SCHEDULING, host=None, node=None, updated_at=utcnow())
            )
        if res.rowcount:
            await self.placement.release(uuid)  # a claim on a host that is no more
            LOG.info("re-scheduling %s, whose build a restart interrupted", uuid)
            await self.build_instances([uuid])

    async def _peer_conductors_up(self) -> bool:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(services).where(
                services.c.binary == "nova-conductor", services.c.id != (self.service.service_id or -1)))).mappings().all()
        now = utcnow()
        return any(servicegroup.is_up(dict(r), self.conf, now) for r in rows)

    async def _wait_for_computes(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECOVERY_WAIT_SECONDS
        while loop.time() < deadline:
            async with self.db.read() as conn:
                stale = (
                    await conn.execute(
                        sa.select(sa.func.count(services.c.id)).where(
                            services.c.binary == "nova-compute",
                            services.c.disabled.is_(False),
                            sa.or_(services.c.last_seen_up.is_(None), services.c.last_seen_up < self.started_at),
                        )
                    )
                ).scalar_one()
            if not stale:
                return
            await asyncio.sleep(0.2)
