"""Read models for the admin APIs: services with their zone and liveness, compute nodes with usage.

Usage comes from the instances table (non-deleted instances placed on the node), so it always
matches the servers the API shows. The local nodes of one host share one pool of the machine
(placement/pools.py): each reports the whole machine (vcpus, memory_mb, local_gb), its own servers'
use (*_used, running_vms), and what the pool has left (free_ram_mb, free_disk_gb); statistics count
each pool once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import instances
from cumulo.conf import Settings
from cumulo.errors import NotFound
from cumulo.hosts import servicegroup
from cumulo.hosts.models import compute_nodes, services

COMPUTE_BINARY = "nova-compute"
# Where Nova puts services that do not host instances (conductor, scheduler).
INTERNAL_ZONE = "internal"


def is_compute(binary: str) -> bool:
    return binary == COMPUTE_BINARY or binary.endswith("-compute")


def zone_of(row: Any, conf: Settings) -> str:
    if is_compute(row["binary"]):
        return str(row["availability_zone"] or conf.default_availability_zone)
    return INTERNAL_ZONE


def service_view(row: Any, conf: Settings, now: dt.datetime | None = None) -> dict[str, Any]:
    """A services row plus what the APIs derive from it: zone, up, status."""
    out = dict(row)
    out["zone"] = zone_of(row, conf)
    out["up"] = servicegroup.is_up(row, conf, now)
    out["status"] = "disabled" if row["disabled"] else "enabled"
    return out


async def list_services(
    conn: AsyncConnection, conf: Settings, *, host: str | None = None, binary: str | None = None
) -> list[dict[str, Any]]:
    q = sa.select(services).order_by(services.c.id)
    if host:
        q = q.where(services.c.host == host)
    if binary:
        q = q.where(services.c.binary == binary)
    return [service_view(r, conf) for r in (await conn.execute(q)).mappings()]


async def get_service(conn: AsyncConnection, conf: Settings, *, id: int | None = None, uuid: str | None = None) -> dict[str, Any] | None:
    q = sa.select(services)
    q = q.where(services.c.id == id) if id is not None else q.where(services.c.uuid == uuid)
    row = (await conn.execute(q)).mappings().first()
    return service_view(row, conf) if row else None


async def service_nodes(conn: AsyncConnection, service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(uuid, hypervisor_hostname) of the compute nodes a nova-compute service runs: those naming
    it, or (rows from before a service per node) those of its host naming none."""
    q = sa.select(compute_nodes.c.uuid, compute_nodes.c.hypervisor_hostname).where(
        sa.or_(
            compute_nodes.c.service_id == service["id"],
            sa.and_(compute_nodes.c.service_id.is_(None), compute_nodes.c.host == service["host"]),
        )
    )
    return [(str(u), str(n)) for u, n in await conn.execute(q)]


async def count_instances_on_nodes(conn: AsyncConnection, host: str, nodes: list[str]) -> int:
    """Live instances of a service: on its nodes (rows without a node count as the host-named one's),
    or of its host when it runs no node."""
    on = sa.func.coalesce(instances.c.node, instances.c.host).in_(nodes) if nodes else instances.c.host == host
    q = sa.select(sa.func.count(instances.c.id)).where(instances.c.deleted.is_(False), on)
    return int((await conn.execute(q)).scalar_one())


def _usage_key(host: str | None, node: str | None) -> str:
    return node or host or ""


async def _usage(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """Per node (or host when the node is unknown): vcpus, memory, disk, running and busy servers."""
    q = (
        sa.select(
            instances.c.host,
            instances.c.node,
            sa.func.count(instances.c.id),
            sa.func.coalesce(sa.func.sum(instances.c.vcpus), 0),
            sa.func.coalesce(sa.func.sum(instances.c.memory_mb), 0),
            sa.func.coalesce(sa.func.sum(instances.c.root_gb + instances.c.ephemeral_gb), 0),
            sa.func.coalesce(sa.func.sum(sa.case((instances.c.task_state.is_not(None), 1), else_=0)), 0),
        )
        .where(instances.c.deleted.is_(False), instances.c.host.is_not(None))
        .group_by(instances.c.host, instances.c.node)
    )
    out: dict[str, dict[str, int]] = {}
    for host, node, count, vcpus, ram, disk, busy in await conn.execute(q):
        acc = out.setdefault(_usage_key(host, node), {"running_vms": 0, "vcpus": 0, "memory_mb": 0, "local_gb": 0, "busy": 0})
        acc["running_vms"] += int(count)
        acc["vcpus"] += int(vcpus)
        acc["memory_mb"] += int(ram)
        acc["local_gb"] += int(disk)
        acc["busy"] += int(busy)
    return out


async def list_nodes(
    conn: AsyncConnection,
    conf: Settings,
    *,
    pattern: str | None = None,
    node_id: int | None = None,
    node_uuid: str | None = None,
    after: Any = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Compute nodes with their service and usage, by id; nodes whose service is gone are skipped."""
    q = sa.select(compute_nodes).order_by(compute_nodes.c.id)
    if pattern is not None:
        # ILIKE: case-insensitive on PostgreSQL as LIKE is on SQLite (and on Nova's MySQL)
        q = q.where(compute_nodes.c.hypervisor_hostname.ilike(f"%{pattern}%"))
    if node_id is not None:
        q = q.where(compute_nodes.c.id == node_id)
    if node_uuid is not None:
        q = q.where(compute_nodes.c.uuid == node_uuid)
    if after is not None:
        q = q.where(compute_nodes.c.id > after)
    rows = [dict(r) for r in (await conn.execute(q)).mappings()]
    svc_rows = (await conn.execute(sa.select(services))).mappings().all()
    by_id = {s["id"]: s for s in svc_rows}
    by_host = {s["host"]: s for s in svc_rows if is_compute(s["binary"])}
    usage = await _usage(conn) if rows else {}
    pools = await _pool_usage(conn, usage) if rows else {}
    out: list[dict[str, Any]] = []
    for node in rows:
        svc = by_id.get(node["service_id"]) or by_host.get(node["host"])
        if svc is None:
            continue
        node["service"] = service_view(svc, conf)
        # By node only: a host's other nodes have usage of their own (rows without a node are
        # keyed by their host, which is the name of the host's first node).
        used = usage.get(node["hypervisor_hostname"]) or {}
        node["vcpus_used"] = used.get("vcpus", 0)
        node["memory_mb_used"] = used.get("memory_mb", 0)
        node["local_gb_used"] = used.get("local_gb", 0)
        node["running_vms"] = used.get("running_vms", 0)
        node["current_workload"] = used.get("busy", 0)
        pool = pool_of(node)
        # A pooled node's free memory and disk are what its host's pool has left, whoever took it.
        taken = pools.get(pool, {}) if pool else used
        node["free_ram_mb"] = node["memory_mb"] - taken.get("memory_mb", 0)
        node["free_disk_gb"] = node["local_gb"] - taken.get("local_gb", 0)
        node["disk_available_least"] = node["free_disk_gb"]
        out.append(node)
        if limit is not None and len(out) >= limit:
            break
    return out


def pool_of(node: Mapping[str, Any]) -> str | None:
    """The shared pool a node draws from (its details name it), or None."""
    pool = (node.get("details") or {}).get("pool")
    return str(pool) if pool else None


async def _pool_usage(conn: AsyncConnection, usage: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """{pool: summed use of every node drawing from it}, over all nodes (not just those listed)."""
    out: dict[str, dict[str, int]] = {}
    for name, details in await conn.execute(sa.select(compute_nodes.c.hypervisor_hostname, compute_nodes.c.details)):
        pool = pool_of({"details": details})
        if pool is None:
            continue
        acc = out.setdefault(pool, {})
        for key, n in (usage.get(name) or {}).items():
            acc[key] = acc.get(key, 0) + int(n)
    return out


STAT_KEYS = (
    "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used", "free_ram_mb",
    "free_disk_gb", "current_workload", "running_vms", "disk_available_least",
)
_MACHINE_KEYS = ("vcpus", "memory_mb", "local_gb", "free_ram_mb", "free_disk_gb", "disk_available_least")


def statistics(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """os-hypervisors/statistics over list_nodes: the enabled nodes, with each shared pool's machine
    (vcpus, memory, disk and what is free of them) counted once, and every server of a counted pool
    counted (a disabled node's servers still run on the machine)."""
    enabled = [n for n in nodes if not n["service"]["disabled"]]
    counted_pools = {pool_of(n) for n in enabled} - {None}
    stats = {"count": len(enabled), **{k: 0 for k in STAT_KEYS}}
    seen: set[str] = set()
    for n in nodes:
        pool = pool_of(n)
        if pool is None and n["service"]["disabled"]:
            continue
        if pool is not None and pool not in counted_pools:
            continue
        first = pool is None or pool not in seen
        if pool is not None:
            seen.add(pool)
        for k in STAT_KEYS:
            if k in _MACHINE_KEYS and not first:
                continue
            stats[k] += int(n[k])
    return stats


async def servers_on(conn: AsyncConnection, host: str, node: str | None = None) -> list[dict[str, str]]:
    """Live servers of a host, or of one of its nodes (rows without a node count as the host's)."""
    q = (
        sa.select(instances.c.uuid, instances.c.display_name)
        .where(instances.c.host == host, instances.c.deleted.is_(False))
        .order_by(instances.c.id)
    )
    if node is not None:
        q = q.where(sa.func.coalesce(instances.c.node, instances.c.host) == node)
    return [{"name": name, "uuid": uuid} for uuid, name in await conn.execute(q)]


def _uptime_text() -> str:
    with open("/proc/uptime") as fh:
        seconds = int(float(fh.read().split()[0]))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now().strftime("%H:%M:%S")
    span = f"{days} days, {hours:2d}:{minutes:02d}" if days else f"{hours:2d}:{minutes:02d}"
    # The `uptime` command's format, which clients parse.
    return f" {now} up {span},  0 users,  load average: {load}"


async def host_uptime() -> str | None:
    """This machine's uptime line (every simulated host shares the machine); None if unknown."""
    try:
        return await asyncio.to_thread(_uptime_text)
    except (OSError, ValueError, IndexError):
        return None


async def compute_service(conn: AsyncConnection, host: str) -> dict[str, Any]:
    """The nova-compute service row of `host`, or NotFound in Nova's words."""
    q = sa.select(services).where(services.c.host == host, services.c.binary.like("%-compute"))
    row = (await conn.execute(q)).mappings().first()
    if row is None:
        raise NotFound(f"Compute host {host} could not be found.")
    return dict(row)
