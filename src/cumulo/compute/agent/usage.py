"""The compute agent's side of the metrics: samples of the servers one node owns.

The node's live instance rows (the DB is the truth: project, host, node) are matched with its
driver's samples (the Metrics capability, read at call time, files in threads), so a series exists
for each server the node owns and runs, and never for a guest no instance owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cumulo.compute.drivers.base import Capability, InstanceSample, capabilities_of, driver_for

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node


@dataclass(frozen=True)
class ServerUsage:
    server_id: str
    project_id: str
    host: str
    node: str
    driver: str
    sample: InstanceSample


def supports_metrics(node: Node) -> bool:
    return Capability.METRICS in capabilities_of(node.driver)


async def node_usage(node: Node) -> list[ServerUsage]:
    """Every server of this node that its driver can sample now."""
    if not supports_metrics(node):
        return []
    rows = {str(r["uuid"]): r for r in await node.host_instances()}
    if not rows:
        return []
    samples = await driver_for(node.driver, Capability.METRICS).sample_instances(sorted(rows))
    return [
        ServerUsage(s.uuid, str(rows[s.uuid].get("project_id") or ""), node.host, node.name, node.driver.info.name, s)
        for s in samples if s.uuid in rows
    ]
