"""The compute agent's side of the metrics: samples of the servers one node owns.

The node's live instance rows (the DB is the truth: project, host, node) are matched with its
driver's samples (the Metrics capability, read at call time, files in threads), so a series exists
for each server the node owns and runs, and never for a guest no instance owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from cumulo.compute.drivers.base import Capability, InstanceSample, Metrics

if TYPE_CHECKING:
    from cumulo.compute.agent.manager import ComputeManager


@dataclass(frozen=True)
class ServerUsage:
    server_id: str
    project_id: str
    host: str
    node: str
    driver: str
    sample: InstanceSample


def supports_metrics(mgr: ComputeManager) -> bool:
    return Capability.METRICS in mgr.driver.info.capabilities and isinstance(mgr.driver, Metrics)


async def node_usage(mgr: ComputeManager) -> list[ServerUsage]:
    """Every server of this node that its driver can sample now."""
    if not supports_metrics(mgr):
        return []
    rows = {str(r["uuid"]): r for r in await mgr.host_instances()}
    if not rows:
        return []
    samples = await cast(Metrics, mgr.driver).sample_instances(sorted(rows))
    return [
        ServerUsage(s.uuid, str(rows[s.uuid].get("project_id") or ""), mgr.host, mgr.node, mgr.driver.info.name, s)
        for s in samples if s.uuid in rows
    ]
