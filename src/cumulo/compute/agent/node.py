"""The one seam the agent's workflows see: a `Node`, what one compute node of a host is made of.

A workflow (build, power, resize, snapshot, reconcile, reclaim, ...) is a free function of a
`Node`: the DB, the node's driver, placement, the image backend as the agent needs it, the host and
node names, and the per-instance locks; with `load` (an instance row), `set_state` (the
compare-and-swap that ends every step, with its fault and event), `spec` (what the driver is told)
and `power_of` (what the driver says). The node knows nothing of the bus or of its lifecycle:
ComputeManager (agent/manager.py) owns that and hands the node to the workflows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa

from cumulo.compute import instances as inst_db
from cumulo.compute import netports, specs, volume_records, volumes, worker_events
from cumulo.compute.agent import disks
from cumulo.compute.agent.migrate_files import FileSender, LocalSender
from cumulo.compute.drivers.base import Capability, Driver, InstanceSpec, PowerState, supports
from cumulo.compute.faults import fault_text
from cumulo.compute.models import instances
from cumulo.compute.rpc import ComputeAPI
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.placement.service import Placement

LOG = logging.getLogger(__name__)


class Locks:
    """Per-instance asyncio locks that disappear when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def busy(self, key: str) -> bool:
        return key in self._locks


class Node:
    """One compute node (hypervisor_hostname) of a host, as its workflows use it."""

    def __init__(
        self,
        db: Database,
        conf: Settings,
        host: str,
        name: str,
        driver: Driver,
        placement: Placement,
        images: specs.ImageBackend | None,
    ) -> None:
        self.db = db
        self.conf = conf
        self.host = host
        self.name = name  # the node's hypervisor_hostname: the host's name unless it has several
        self.driver = driver
        self.placement = placement
        self.images = images
        self.node_uuid: str | None = None  # its compute_nodes row and resource provider, once registered
        self.locks = Locks()
        self._background: set[asyncio.Task[Any]] = set()
        # The network service and the network agents' client, when the cloud has networking
        # (runtime hands them over through workers.assemble); None: servers get no NICs.
        self.network: netports.NetworkPorts | None = None
        self.nics: netports.NicPlugger | None = None
        # The volume service and the host's block store, when the cloud has volumes (runtime hands
        # them over through workers.assemble); None: servers get no volumes.
        self.volumes: volumes.VolumeClient | None = None
        self.host_volumes: volumes.HostVolumes | None = None
        # Cold migration (agent/migrate.py): the other hosts' agents (set by ComputeManager) and how
        # this node sends a server's files to another host (agent/migrate_files.py).
        self.peers: ComputeAPI | None = None
        self.transfer: FileSender = LocalSender(conf.state_dir)

    def supports(self, cap: Capability) -> bool:
        return supports(self.driver, cap)

    async def load(self, uuid: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            return await inst_db.get(conn, uuid)

    async def request_id_for(self, uuid: str, request_id: str | None, action: str) -> str:
        if request_id:
            return request_id
        async with self.db.read() as conn:
            return await specs.action_request_id(conn, uuid, action)

    async def set_state(
        self,
        uuid: str,
        values: dict[str, Any],
        *,
        expected_task_state: Any = ...,
        expected_vm_state: Any = ...,
        fault: BaseException | str | None = None,
        fault_details: str | None = None,
        fault_code: int = 500,
        event: worker_events.EventHandle | None = None,
        event_error: BaseException | None = None,
    ) -> bool:
        """CAS the row (Ellipsis = no expectation) and, when it wins, record a fault, in one transaction.

        `event` (from worker_events.begin) is finished in the same transaction whether or not the
        CAS wins: the step it timed did happen."""
        kwargs: dict[str, Any] = {}
        if expected_task_state is not ...:
            kwargs["expected_task_state"] = expected_task_state
        if expected_vm_state is not ...:
            kwargs["expected_vm_state"] = expected_vm_state
        if fault is None and not self.db.is_sqlite:
            # PostgreSQL: the CAS and the event's end in one statement (data-modifying WITH), alone
            # in autocommit (`read()`'s connection: a single statement is its own transaction,
            # all of it or nothing): one round trip where BEGIN, three statements, COMMIT were five.
            # Built once per shape with the values bound (inst_db.bound_cas), unless a value is an
            # SQL expression.
            stmt, params = inst_db.bound_cas(uuid, values, **kwargs, event=event, event_error=event_error) or (
                inst_db.cas_statement(uuid, values, **kwargs).add_cte(*worker_events.finish_ctes(event, event_error)),
                None)
            async with self.db.read() as conn:
                ok = bool((await conn.execute(stmt, params)).rowcount)
            if not ok:
                LOG.info("instance %s changed under us; not applying %s", uuid, sorted(values))
            return ok
        async with self.db.write() as conn:
            ok = await inst_db.cas_update(conn, uuid, values, **kwargs)
            if ok and fault is not None:
                if isinstance(fault, BaseException):
                    message, details = fault_text(fault)
                else:
                    message, details = fault, fault_details or fault
                await inst_db.add_fault(conn, uuid, fault_code, message, details, host=self.host)
            await worker_events.finish(conn, event, event_error)
        if not ok:
            LOG.info("instance %s changed under us; not applying %s", uuid, sorted(values))
        return ok

    async def power_of(self, uuid: str) -> PowerState:
        try:
            return await self.driver.get_power_state(uuid)
        except Exception:
            LOG.exception("get_power_state(%s) failed", uuid)
            return PowerState.NOSTATE

    async def spec(
        self, inst: dict[str, Any], *, mappings: list[dict[str, Any]] | None = None, **overrides: Any
    ) -> InstanceSpec:
        """What the driver is told, with the server's volumes (InstanceSpec.disks) at every start.
        `mappings`: the server's block device mappings when the caller has just read them (a
        build of a server without any passes []: one read less on the boot path)."""
        spec = await specs.instance_spec(inst, self.images, **overrides)
        if mappings is None:
            async with self.db.read() as conn:
                rows = await volume_records.of_instance(conn, inst["uuid"])
        else:
            rows = mappings
        if any(r.get("destination_type") == volumes.DEST_LOCAL for r in rows):  # ephemeral/swap mappings
            eph, swap = volumes.local_disk_sizes(rows, spec.flavor.ephemeral_gb, spec.flavor.swap)
            spec = dataclasses.replace(spec, flavor=dataclasses.replace(spec.flavor, ephemeral_gb=eph, swap=swap))
        if self.host_volumes is None:
            return spec
        # a server that moved here (migration, evacuation): its volumes connected from this host
        rows = await disks.connect_here(list(rows), inst, host=self.host, underlay_ip=self.conf.underlay_ip,
                                        store=self.host_volumes, client=self.volumes, db=self.db)
        found = await disks.disk_specs(rows, self.host_volumes)
        return dataclasses.replace(spec, disks=found) if found else spec

    def in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def cancel_background(self) -> None:
        tasks = list(self._background)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the node's instances -------------------------------------------------------------------

    def owns_clause(self) -> Any:
        """SQL: an instance row of this node. Rows without a node (older ones) belong to the node
        named like the host."""
        return sa.and_(instances.c.host == self.host, sa.func.coalesce(instances.c.node, instances.c.host) == self.name)

    def owns(self, inst: Mapping[str, Any]) -> bool:
        return inst.get("host") == self.host and (inst.get("node") or inst.get("host")) == self.name

    async def host_instances(self, *, vm_states: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The live instances of this node (not of the host's other nodes)."""
        q = sa.select(instances).where(self.owns_clause(), instances.c.deleted.is_(False))
        if vm_states is not None:
            q = q.where(instances.c.vm_state.in_(list(vm_states)))
        async with self.db.read() as conn:
            return [dict(r) for r in (await conn.execute(q.order_by(instances.c.id))).mappings()]

    async def all_host_uuids(self) -> set[str]:
        """Live instances of the whole host, every node (what orphan cleanup must never touch)."""
        q = sa.select(instances.c.uuid).where(instances.c.host == self.host, instances.c.deleted.is_(False))
        async with self.db.read() as conn:
            return {r[0] for r in await conn.execute(q)}
