"""The compute agent's side of the metrics: samples of the servers one node owns.

The node's live instance rows (the DB is the truth: project, host, node) are matched with its
driver's samples (the Metrics capability, read at call time, files in threads), so a series exists
for each server the node owns and runs, and never for a guest no instance owns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


async def sample_servers(node: Node, uuids: list[str]) -> list[dict[str, Any]]:
    """The agent's `sample_instances`: a reading of each of `uuids` that this node owns and its
    driver can sample now (others are left out), as JSON primitives for the PaaS autoscaler.

    {uuid, cpu_ns (all vCPUs together; None when unknown), vcpus (the flavor's, from the instance
    row: runc's CFS quota and QEMU's vCPU threads both follow it), memory_used, memory_limit (bytes
    or None), uptime (s), time (this host's wall clock when read, epoch seconds)}. The caller
    derives CPU % = Δcpu_ns / (Δtime · vcpus · 1e9) · 100 between two readings."""
    if not supports_metrics(node) or not uuids:
        return []
    wanted = set(uuids)
    rows = {str(r["uuid"]): r for r in await node.host_instances() if str(r["uuid"]) in wanted}
    if not rows:
        return []
    samples = await driver_for(node.driver, Capability.METRICS).sample_instances(sorted(rows))
    now = time.time()
    return [
        {"uuid": s.uuid, "cpu_ns": _cpu_ns(s), "vcpus": int(rows[s.uuid].get("vcpus") or 1),
         "memory_used": s.memory_used, "memory_limit": s.memory_limit, "uptime": s.uptime,
         "power_state": int(s.power_state), "time": now}
        for s in samples if s.uuid in rows
    ]


def _cpu_ns(s: InstanceSample) -> int | None:
    known = [t for t in s.cpu_ns if t is not None]
    return sum(known) if known else None
