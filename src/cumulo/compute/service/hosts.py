"""The admin side of compute's hosts: services (list, enable/disable, force down, delete with their
compute nodes) and hypervisors (nodes with usage, paging, servers on a node), for os-services,
os-availability-zone, os-hypervisors and os-hosts. One transaction per call; the read models are hostinfo's.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import sqlalchemy as sa

from cumulo.bus.base import BusUnavailable
from cumulo.compute.models import instances
from cumulo.compute.service import hostinfo
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.hosts.models import compute_nodes, services

LOG = logging.getLogger(__name__)


class ProviderRegistry(Protocol):
    """The placement call a service delete makes: drop a deleted compute node's provider."""

    async def delete_provider(self, uuid: str) -> None: ...


class SchedulerNotice(Protocol):
    """The fanout telling every scheduler a service changed (compute.rpc.SchedulerAPI)."""

    async def services_changed(self) -> None: ...


class HostService:
    def __init__(self, db: Database, conf: Settings, placement: ProviderRegistry,
                 scheduler: SchedulerNotice | None = None) -> None:
        self.db, self.conf, self.placement, self.scheduler = db, conf, placement, scheduler

    async def _tell_schedulers(self) -> None:
        """Before the API answers: the schedulers' cached services are stale (scheduler/cache.py).
        The broker away: the change stands, and the schedulers see it within host_cache_seconds."""
        if self.scheduler is None:
            return
        try:
            await self.scheduler.services_changed()
        except BusUnavailable:
            LOG.warning("the schedulers were not told of a service change (broker unreachable): they "
                        "see it within host_cache_seconds (%g s)", self.conf.scheduler.host_cache_seconds)

    # --- services and zones ---

    async def list_services(self, *, host: str | None = None, binary: str | None = None) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await hostinfo.list_services(conn, self.conf, host=host, binary=binary)

    async def zones(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """(available zones, unavailable zones, enabled services): a zone is available when one of
        its enabled services is up."""
        svcs = await self.list_services()
        enabled = [x for x in svcs if not x["disabled"]]
        available = sorted({x["zone"] for x in enabled if x["up"]})
        unavailable = sorted({x["zone"] for x in svcs} - set(available))
        return available, unavailable, enabled

    async def compute_hosts(self) -> list[str]:
        """The hosts running a compute service, sorted; disabled ones count (they may hold servers)."""
        svcs = await self.list_services()
        return sorted({x["host"] for x in svcs if hostinfo.is_compute(x["binary"])})

    async def get_service(self, *, id: int | None = None, uuid: str | None = None) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            return await hostinfo.get_service(conn, self.conf, id=id, uuid=uuid)

    async def find_service_id(self, host: str, binary: str) -> int | None:
        """The id of the service running `binary` on `host`, if there is one."""
        async with self.db.read() as conn:
            found = (
                await conn.execute(sa.select(services.c.id).where(services.c.host == host, services.c.binary == binary))
            ).first()
        return None if found is None else int(found[0])

    async def update_service(self, service_id: int, values: dict[str, Any]) -> dict[str, Any]:
        """Set columns of a services row (disabled, disabled_reason, forced_down); the new view."""
        async with self.db.write() as conn:
            await conn.execute(sa.update(services).where(services.c.id == service_id).values(**values))
            row = await hostinfo.get_service(conn, self.conf, id=service_id)
        assert row is not None
        await self._tell_schedulers()
        return row

    async def delete_service(self, ident: str, *, id: int | None = None, uuid: str | None = None) -> None:
        """Delete a service (by id or uuid; `ident` names it in errors) and, for a compute service
        hosting no instance, its compute nodes and their resource providers."""
        async with self.db.write() as conn:
            svc = await hostinfo.get_service(conn, self.conf, id=id, uuid=uuid)
            if svc is None:
                raise NotFound(f"Service {ident} not found.")
            node_uuids: list[str] = []
            if hostinfo.is_compute(svc["binary"]):
                # A service runs its own nodes (one per local node; see the agent's ComputeHost).
                nodes = await hostinfo.service_nodes(conn, svc)
                if await hostinfo.count_instances_on_nodes(conn, svc["host"], [name for _, name in nodes]):
                    raise Conflict(
                        "Unable to delete compute service that is hosting instances. Migrate or delete the instances first."
                    )
                node_uuids = [u for u, _ in nodes]
                await conn.execute(sa.delete(compute_nodes).where(compute_nodes.c.uuid.in_(node_uuids)))
            await conn.execute(sa.delete(services).where(services.c.id == svc["id"]))
        await self._tell_schedulers()
        # The nodes' resource providers go too, or placement would keep offering them.
        for node_uuid in node_uuids:
            try:
                await self.placement.delete_provider(node_uuid)
            except NotFound:
                pass

    async def compute_host(self, host: str) -> dict[str, Any]:
        """The compute service row of a host (os-hosts' host), else NotFound."""
        async with self.db.read() as conn:
            return await hostinfo.compute_service(conn, host)

    async def host_usage(self, host: str) -> tuple[dict[str, Any], dict[str, list[int]], list[int]]:
        """os-hosts' page of a compute host: (its first node, [cpu, memory_mb, disk_gb] per project
        of its live servers, the same summed over them all)."""
        async with self.db.read() as conn:
            svc = await hostinfo.compute_service(conn, host)
            node_names = [name for _, name in await hostinfo.service_nodes(conn, svc)]
            nodes = [n for n in await hostinfo.list_nodes(conn, self.conf) if n["hypervisor_hostname"] in node_names]
            if not nodes:
                raise NotFound(f"Compute host {host} could not be found.")
            on = sa.func.coalesce(instances.c.node, instances.c.host).in_(node_names)
            q = sa.select(instances.c.project_id, instances.c.vcpus, instances.c.memory_mb, instances.c.root_gb,
                          instances.c.ephemeral_gb).where(instances.c.deleted.is_(False), on).order_by(instances.c.id)
            rows = (await conn.execute(q)).all()
        per_project: dict[str, list[int]] = {}
        total = [0, 0, 0]
        for project, vcpus, ram, root, eph in rows:
            acc = per_project.setdefault(project, [0, 0, 0])
            for i, n in enumerate((vcpus, ram, root + eph)):
                acc[i] += int(n)
                total[i] += int(n)
        return nodes[0], per_project, total  # Nova's "first node of the host" (a service here runs one)

    # --- hypervisors (compute nodes) ---

    async def list_nodes(self, **lookup: Any) -> list[dict[str, Any]]:
        """hostinfo.list_nodes' lookups: pattern, node_id or node_uuid."""
        async with self.db.read() as conn:
            return await hostinfo.list_nodes(conn, self.conf, **lookup)

    async def page_nodes(self, marker: str | None, *, by_uuid: bool, limit: int | None) -> list[dict[str, Any]]:
        """Nodes after `marker` (a node's uuid, or its integer id when not by_uuid)."""
        async with self.db.read() as conn:
            after = None
            if marker is not None:
                col = compute_nodes.c.uuid if by_uuid else compute_nodes.c.id
                key: Any = marker if by_uuid else (int(marker) if marker.isdigit() else None)
                found = None if key is None else (await conn.execute(sa.select(compute_nodes.c.id).where(col == key))).first()
                if found is None:
                    raise Invalid(f"marker [{marker}] not found")
                after = found[0]
            return await hostinfo.list_nodes(conn, self.conf, after=after, limit=limit)

    async def servers_on(self, host: str, node: str | None = None) -> list[dict[str, str]]:
        async with self.db.read() as conn:
            return await hostinfo.servers_on(conn, host, node)

    async def statistics(self) -> dict[str, int]:
        """Totals over every node; a host's shared pool counts once, however many nodes draw from it."""
        return hostinfo.statistics(await self.list_nodes())
