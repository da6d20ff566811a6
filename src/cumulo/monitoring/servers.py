"""Per-server series, gathered at scrape time (no polling): a prometheus_client Collector.

prometheus_client calls `collect()` synchronously; the endpoint renders in a worker thread
(endpoint.py), so `collect()` never runs on the event loop. It hands the gathering to the loop
(`run_coroutine_threadsafe`): each compute agent samples its own servers through its driver
(compute/agent/usage.py; drivers read files in threads, QEMU answers QMP on the loop), and the builds in
flight come from the DB. A node that fails or is too slow is reported by
`cumulo_node_scrape_success 0` and leaves its servers out of that scrape, never the whole answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cumulo.compute.agent.usage import ServerUsage, node_usage, supports_metrics

if TYPE_CHECKING:
    from cumulo.compute.agent.manager import ComputeManager
    from cumulo.db import Database

LOG = logging.getLogger(__name__)

SERVER_LABELS = ["server_id", "project_id", "node"]
NODE_TIMEOUT = 15.0  # seconds one node may take to sample its servers


class NodeResult:
    def __init__(self, node: str, host: str, usage: list[ServerUsage], ok: bool, seconds: float) -> None:
        self.node, self.host, self.usage, self.ok, self.seconds = node, host, usage, ok, seconds


async def _sample_node(mgr: ComputeManager) -> NodeResult:
    started = time.monotonic()
    try:
        usage = await asyncio.wait_for(node_usage(mgr.node), NODE_TIMEOUT)
        ok = True
    except Exception:  # one broken node must not hide the others
        LOG.warning("metrics: sampling the servers of node %s failed", mgr.name, exc_info=True)
        usage, ok = [], False
    return NodeResult(mgr.name, mgr.host, usage, ok, time.monotonic() - started)


async def builds_in_flight(db: Database) -> dict[str, int]:
    """Instances being built (vm_state building), by task_state, from the DB (the truth)."""
    from cumulo.compute.models import instances

    q = (sa.select(sa.func.coalesce(instances.c.task_state, "none"), sa.func.count())
         .where(instances.c.vm_state == "building", instances.c.deleted.is_(False))
         .group_by(instances.c.task_state))
    async with db.read() as conn:
        return {str(state): int(n) for state, n in await conn.execute(q)}


async def gather(managers: Sequence[ComputeManager], db: Database) -> tuple[list[NodeResult], dict[str, int]]:
    nodes = await asyncio.gather(*(_sample_node(m) for m in managers if supports_metrics(m.node)))
    return list(nodes), await builds_in_flight(db)


def families(nodes: list[NodeResult], builds: dict[str, int]) -> list[Metric]:
    """The metric families of one scrape."""
    def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=SERVER_LABELS if labels is None else labels)

    def counter(name: str, doc: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=SERVER_LABELS)

    cpu = counter("cumulo_server_cpu_seconds",
                  "CPU time the server used (containers: cgroup cpuacct.usage; VMs: the vCPU threads)")
    mem = gauge("cumulo_server_memory_used_bytes",
                "Memory the host holds for the server (containers: the cgroup's usage; VMs: RSS of guest RAM)")
    mem_limit = gauge("cumulo_server_memory_limit_bytes", "Memory the server may use (cgroup limit, VM RAM)")
    pids = gauge("cumulo_server_pids", "Processes in the server (containers)")
    pids_limit = gauge("cumulo_server_pids_limit", "Process limit of the server (containers)")
    uptime = gauge("cumulo_server_uptime_seconds", "Seconds the server's guest has run (0 when it does not run)")
    power = gauge("cumulo_server_power_state", "Nova power_state of the server (1 running, 3 paused, 4 shutdown, ...)")
    disk = {k: counter(f"cumulo_server_disk_{k}", f"Block I/O of the server's disks: {k.replace('_', ' ')}")
            for k in ("read_bytes", "write_bytes", "read_requests", "write_requests")}
    net = {k: counter(f"cumulo_server_network_{k}", f"Traffic of the server's NICs: {k.replace('_', ' ')}")
           for k in ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets")}
    scrape_ok = gauge("cumulo_node_scrape_success", "1 when the node's servers were sampled in this scrape",
                      ["host", "node"])
    scrape_time = gauge("cumulo_node_scrape_duration_seconds", "Time the node took to sample its servers",
                        ["host", "node"])
    servers = gauge("cumulo_node_servers_sampled", "Servers the node sampled in this scrape", ["host", "node"])
    building = gauge("cumulo_builds_in_flight", "Instances being built (vm_state building), by task_state",
                     ["task_state"])

    for n in nodes:
        scrape_ok.add_metric([n.host, n.node], 1.0 if n.ok else 0.0)
        scrape_time.add_metric([n.host, n.node], n.seconds)
        servers.add_metric([n.host, n.node], float(len(n.usage)))
        for u in n.usage:
            s = u.sample
            lv = [u.server_id, u.project_id, u.node]
            power.add_metric(lv, float(int(s.power_state)))
            uptime.add_metric(lv, float(s.uptime))
            if s.cpu_seconds is not None:
                cpu.add_metric(lv, s.cpu_seconds)
            for fam, value in ((mem, s.memory_used), (mem_limit, s.memory_limit), (pids, s.pids),
                               (pids_limit, s.pids_limit)):
                if value is not None:
                    fam.add_metric(lv, float(value))
            if s.disks:
                disk["read_bytes"].add_metric(lv, float(sum(d.read_bytes for d in s.disks)))
                disk["write_bytes"].add_metric(lv, float(sum(d.write_bytes for d in s.disks)))
                disk["read_requests"].add_metric(lv, float(sum(d.read_requests for d in s.disks)))
                disk["write_requests"].add_metric(lv, float(sum(d.write_requests for d in s.disks)))
            if s.nics:
                net["receive_bytes"].add_metric(lv, float(sum(x.rx_octets for x in s.nics)))
                net["transmit_bytes"].add_metric(lv, float(sum(x.tx_octets for x in s.nics)))
                net["receive_packets"].add_metric(lv, float(sum(x.rx_packets for x in s.nics)))
                net["transmit_packets"].add_metric(lv, float(sum(x.tx_packets for x in s.nics)))
    for state, count in sorted(builds.items()):
        building.add_metric([state], float(count))
    return [cpu, mem, mem_limit, pids, pids_limit, uptime, power, *disk.values(), *net.values(),
            scrape_ok, scrape_time, servers, building]


class ServerCollector:
    """Registered in a cloud's registry; `collect()` must be called off the event loop's thread."""

    def __init__(self, managers: Sequence[ComputeManager], db: Database, loop: asyncio.AbstractEventLoop,
                 timeout: float = NODE_TIMEOUT + 10.0) -> None:
        self.managers = list(managers)
        self.db = db
        self.loop = loop
        self.timeout = timeout

    def describe(self) -> Iterable[Any]:
        return []  # nothing at registration: collect() needs the running loop

    def collect(self) -> Iterable[Metric]:
        loop_thread = getattr(self.loop, "_thread_id", None)
        if loop_thread == threading.get_ident():
            raise RuntimeError("ServerCollector.collect() runs in a worker thread, never on the event loop")
        future = None
        try:
            future = asyncio.run_coroutine_threadsafe(gather(self.managers, self.db), self.loop)
            nodes, builds = future.result(self.timeout)
        except Exception:  # the loop is gone (shutting down) or too slow: no server series this time
            if future is not None:
                future.cancel()
            LOG.warning("metrics: gathering server series failed", exc_info=True)
            return []
        return families(nodes, builds)
