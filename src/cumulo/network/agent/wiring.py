"""The network agents of one process, as `cumulo up` runs them: one per compute host on its bus
topic `network.<host>`. The local host's plumbs for real when it runs a real driver (runc, qemu)
and carries the routers and external networks; fake hosts (and a local host on the fake driver)
bind ports and plumb nothing. `notify_agents` is the network service's data-plane listener: a
cast of `sync` to every host with a bound port, and to the L3 host."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from cumulo.bus.base import Bus
from cumulo.db import Database
from cumulo.network.agent.manager import NetworkAgent
from cumulo.network.agent.plumbing import NoPlumbing, Plumbing, RealPlumbing
from cumulo.network.metadata import MetadataService
from cumulo.network.models import ports
from cumulo.network.rpc import NetworkAgentAPI, network_topic
from cumulo.network.service import NetworkService

LOG = logging.getLogger(__name__)


@dataclass
class NetworkAgents:
    agents: list[NetworkAgent]
    l3_host: str | None
    metadata: MetadataService | None = None  # the local host's metadata listeners

    def agent(self, host: str) -> NetworkAgent:
        return next(a for a in self.agents if a.host == host)

    async def start(self) -> None:
        for a in self.agents:
            await a.start()

    async def stop(self) -> None:
        for a in self.agents:
            await a.stop()
        if self.metadata is not None:
            await self.metadata.close()


def assemble_agents(db: Database, bus: Bus, service: NetworkService, hosts: Iterable[str], *, local_host: str,
                    real_local: bool, external_link: bool = True,
                    metadata: MetadataService | None = None, owner: str = "") -> NetworkAgents:
    """Build and serve one agent per host (not started). `real_local`: the local host plumbs (and
    serves `metadata` at 169.254.169.254 in its network namespaces); `owner`: the cloud's state dir,
    under which it registers its data plane on the host (plumbing.register)."""
    agents: list[NetworkAgent] = []
    for h in sorted(set(hosts)):
        local = h == local_host
        plumbing: Plumbing = RealPlumbing(metadata=metadata, owner=owner) if local and real_local else NoPlumbing()
        agent = NetworkAgent(db, service, h, plumbing, l3=local, external_link=external_link)
        bus.serve(network_topic(h), agent)
        agents.append(agent)
    return NetworkAgents(agents, local_host if local_host in {a.host for a in agents} else None,
                         metadata if real_local and local_host in {a.host for a in agents} else None)


async def bound_hosts(db: Database) -> set[str]:
    async with db.read() as conn:
        rows = await conn.execute(sa.select(ports.c.binding_host_id).where(ports.c.binding_host_id != "").distinct())
        return {str(r[0]) for r in rows}


def listener(db: Database, bus: Bus, agents: NetworkAgents) -> Callable[[], Awaitable[None]]:
    """The service's data-plane listener: sync casts to the hosts that carry something."""
    api = NetworkAgentAPI(bus)
    served = {a.host for a in agents.agents}

    async def notify_agents() -> None:
        hosts = await bound_hosts(db) | ({agents.l3_host} if agents.l3_host else set())
        await api.sync_hosts(h for h in hosts if h in served)

    return notify_agents
