"""The network agents of one process, as `cumulo up` runs them: one per compute host on its bus
topic `network.<host>`. The local host's plumbs for real when it runs a real driver (runc, qemu)
and carries the routers and external networks; fake hosts (and a local host on the fake driver)
bind ports and plumb nothing. `notify_agents` is the network service's data-plane listener: a
cast of `sync` to every host with a bound port, and to the L3 host."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
                    metadata: MetadataService | None = None, owner: str = "", underlay_ip: str = "",
                    l3_host: str | None = None, physnets: Mapping[str, str] | None = None) -> NetworkAgents:
    """Build and serve one agent per host (not started). `real_local`: the local host plumbs (and
    serves `metadata` at 169.254.169.254 in its network namespaces); `owner`: the cloud's state dir,
    under which it registers its data plane on the host (plumbing.register). Scale out (settings
    `underlay_ip`, `l3_host`): the local host's underlay address (VXLAN tunnels; empty: none) and
    the host carrying routers and external networks (None or empty: the local host); `physnets`:
    the local host's interface per physical network (netplane.physnet)."""
    agents: list[NetworkAgent] = []
    l3_name = l3_host or local_host
    for h in sorted(set(hosts)):
        local = h == local_host
        mapped = dict(physnets or {}) if local and real_local else {}
        plumbing: Plumbing = (RealPlumbing(metadata=metadata, owner=owner, uplinks=mapped.values()) if local and real_local
                              else NoPlumbing())
        agent = NetworkAgent(db, service, h, plumbing, l3=h == l3_name, external_link=external_link,
                             underlay_ip=underlay_ip if local else "", l3_host=l3_name, physnets=mapped)
        bus.serve(network_topic(h), agent)
        agents.append(agent)
    return NetworkAgents(agents, l3_name if l3_name in {a.host for a in agents} else None,
                         metadata if real_local and local_host in {a.host for a in agents} else None)


async def bound_hosts(db: Database) -> set[str]:
    async with db.read() as conn:
        rows = await conn.execute(sa.select(ports.c.binding_host_id).where(ports.c.binding_host_id != "").distinct())
        return {str(r[0]) for r in rows}


def listener(db: Database, bus: Bus, agents: NetworkAgents | None, *, l3_host: str | None = None,
             everywhere: bool = False) -> Callable[[], Awaitable[None]]:
    """The service's data-plane listener: sync casts to the hosts that carry something (and the L3
    host). `everywhere` (several processes, a real bus: the agents are elsewhere): to every such
    host, not only those served in this process; `l3_host` names the L3 host then."""
    api = NetworkAgentAPI(bus)
    served = {a.host for a in agents.agents} if agents is not None else set()
    l3 = l3_host or (agents.l3_host if agents is not None else None)

    async def notify_agents() -> None:
        hosts = await bound_hosts(db) | ({l3} if l3 else set())
        await api.sync_hosts(h for h in hosts if everywhere or h in served)

    return notify_agents
