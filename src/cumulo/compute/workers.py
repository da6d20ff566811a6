"""The one assembly of compute's workers on a bus: scheduler, conductor and one agent per host.

`cumulo up` (runtime.Cloud) and the unit-test rigs both call `assemble`, so tests run the workers
wired exactly as production runs them: the scheduler and the conductor on their topics, and per
host one ComputeHost (one nova-compute service per node, one bus topic) dispatching to a
ComputeManager per node. Drivers arrive built: the caller chooses them (runtime from the settings,
tests a fake one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cumulo.bus.base import Bus, compute_topic
from cumulo.compute import specs
from cumulo.compute.agent.manager import ComputeHost, ComputeManager
from cumulo.compute.conductor.manager import Conductor
from cumulo.compute.drivers.base import Driver
from cumulo.compute.netports import NetworkPorts, NicPlugger
from cumulo.compute.rpc import CONDUCTOR, SCHEDULER
from cumulo.compute.volumes import HostVolumes, VolumeClient
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.hosts import servicegroup
from cumulo.placement.service import Placement
from cumulo.scheduler.manager import SchedulerManager


@dataclass(frozen=True)
class NodeSetup:
    """One compute node to run: its host, its name (hypervisor_hostname), its driver, its allocation
    ratios (empty: the settings'), and whether it draws from its host's shared pool."""

    host: str
    node: str
    driver: Driver
    ratios: Mapping[str, float] = field(default_factory=dict)
    pooled: bool = False


@dataclass
class Workers:
    scheduler: SchedulerManager
    conductor: Conductor
    hosts: list[ComputeHost]
    managers: list[ComputeManager]

    async def start(self) -> None:
        """Once the bus runs: the scheduler and conductor, then every host (register, reconcile what
        was in flight before a crash, then the periodic work)."""
        await asyncio.gather(self.scheduler.start(), self.conductor.start())
        await start_hosts(self.hosts)

    async def stop(self) -> None:
        for h in self.hosts:
            await h.stop()
        await self.conductor.stop()
        await self.scheduler.stop()


# Hosts starting at once. Each start is a few short transactions; a thousand at once (`--fake-hosts
# 1000`) would only queue for the database's connections (PostgreSQL's pool times out after 10 s),
# and measured no faster on SQLite than this many.
HOST_START_CONCURRENCY = 16


async def start_hosts(hosts: Iterable[ComputeHost]) -> None:
    """Start the hosts, HOST_START_CONCURRENCY at a time."""
    gate = asyncio.Semaphore(HOST_START_CONCURRENCY)

    async def one(host: ComputeHost) -> None:
        async with gate:
            await host.start()

    await asyncio.gather(*(one(h) for h in hosts))


def assemble(
    db: Database,
    bus: Bus,
    conf: Settings,
    placement: Placement,
    images: specs.ImageBackend | None,
    nodes: Iterable[NodeSetup],
    *,
    network: NetworkPorts | None = None,
    nics: NicPlugger | None = None,
    volumes: VolumeClient | None = None,
    host_volumes: HostVolumes | None = None,
) -> Workers:
    """Build the workers and serve them on the bus (not started: start the bus, then `start()`)."""
    scheduler = SchedulerManager(db, conf, placement)
    conductor = Conductor(db, bus, conf, placement)
    bus.serve(SCHEDULER, scheduler)
    bus.serve(CONDUCTOR, conductor)
    hosts, managers = assemble_hosts(db, bus, conf, placement, images, nodes, network=network, nics=nics,
                                     volumes=volumes, host_volumes=host_volumes)
    return Workers(scheduler, conductor, hosts, managers)


def assemble_hosts(
    db: Database,
    bus: Bus,
    conf: Settings,
    placement: Placement,
    images: specs.ImageBackend | None,
    nodes: Iterable[NodeSetup],
    *,
    network: NetworkPorts | None = None,
    nics: NicPlugger | None = None,
    volumes: VolumeClient | None = None,
    host_volumes: HostVolumes | None = None,
) -> tuple[list[ComputeHost], list[ComputeManager]]:
    """The compute agents alone (`cumulo compute`): one ComputeHost per host served on its topic,
    a ComputeManager per node (not started)."""
    managers: list[ComputeManager] = []
    by_host: dict[str, list[ComputeManager]] = {}
    for n in nodes:
        mgr = ComputeManager(db, bus, conf, n.host, n.driver, placement, images,
                             node_name=n.node, ratios=n.ratios, pooled=n.pooled)
        mgr.node.network, mgr.node.nics = network, nics
        mgr.node.volumes, mgr.node.host_volumes = volumes, host_volumes
        by_host.setdefault(n.host, []).append(mgr)
        managers.append(mgr)
    hosts: list[ComputeHost] = []
    heartbeats = servicegroup.Heartbeats(db)  # one for the process's hosts: few writes for many hosts
    for host_name, host_nodes in by_host.items():
        agent = ComputeHost(db, bus, conf, host_name, host_nodes)
        agent.heartbeats = heartbeats
        bus.serve(compute_topic(host_name), agent)
        hosts.append(agent)
    return hosts, managers
