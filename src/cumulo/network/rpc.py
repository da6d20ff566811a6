"""The network agent's message API: one typed method per message (as compute.rpc.ComputeAPI).

The agent of a host serves the topic `network.<host>` (see network.agent.manager.NetworkAgent,
whose async methods take the same names and keyword arguments). Arguments and results are JSON
primitives, so any transport works.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cumulo.bus.base import Bus

PLUG_TIMEOUT = 120.0


def network_topic(host: str) -> str:
    return f"network.{host}"


class NetworkAgentAPI:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def plug_ports(self, host: str, port_ids: list[str], instance_uuid: str, *,
                         timeout: float = PLUG_TIMEOUT) -> list[dict[str, Any]]:
        """Bind the ports to `host`, make their networks (namespace, bridge, DHCP, security groups)
        exist there; one NicSpec (its fields as a dict) per port, in order."""
        out = await self.bus.call(network_topic(host), "plug_ports", timeout=timeout, port_ids=list(port_ids),
                                  instance_uuid=instance_uuid)
        return [dict(n) for n in out]

    async def unplug_ports(self, host: str, port_ids: list[str], *, timeout: float = PLUG_TIMEOUT) -> None:
        """Drop the ports' security-group state and unbind them; a network with no port left here goes."""
        await self.bus.call(network_topic(host), "unplug_ports", timeout=timeout, port_ids=list(port_ids))

    async def sync(self, host: str) -> None:
        """Make the host match the DB (a cast: the agent coalesces bursts)."""
        await self.bus.cast(network_topic(host), "sync")

    async def sync_now(self, host: str, *, timeout: float = PLUG_TIMEOUT) -> None:
        """sync, waiting until it is done (tests, the CLI)."""
        await self.bus.call(network_topic(host), "sync", timeout=timeout)

    async def sync_hosts(self, hosts: Iterable[str]) -> None:
        for h in sorted(set(hosts)):
            await self.sync(h)
