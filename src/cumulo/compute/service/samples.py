"""Readings of servers for the PaaS autoscaler: ComputeService.server_samples asks each host's agent
once for its servers (compute.rpc sample_instances), the same driver reading as diagnostics and
/metrics (compute/agent/usage.py). No Nova route exposes it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cumulo import errors, policy
from cumulo.compute.rpc import ComputeAPI
from cumulo.context import RequestContext

LOG = logging.getLogger(__name__)

HOST_TIMEOUT = 15.0  # seconds one host may take to answer (a slow host leaves its servers out)

# The owner's members read their servers' usage (the PaaS autoscaler acts as the instance's owner), or an admin.
policy.register({"compute:servers:samples": policy.MEMBER})


async def server_samples(
    agents: ComputeAPI, ctx: RequestContext, rows: Iterable[Mapping[str, Any]], *, timeout: float = HOST_TIMEOUT
) -> list[dict[str, Any]]:
    """A reading of each server of `rows` (instance rows) that its host runs now, one agent call
    per host: [{uuid, cpu_ns, vcpus, memory_used, memory_limit, uptime, power_state, time}]. A
    server with no host yet, or whose host fails or is slow, is left out (logged), never the rest.
    Rule compute:servers:samples; another project's server is NotFound (admins see all)."""
    policy.authorize(ctx, "compute:servers:samples")
    by_host: dict[str, list[str]] = {}
    for row in rows:
        if row["project_id"] != ctx.project_id and not ctx.is_admin:
            raise errors.NotFound(f"Instance {row['uuid']} could not be found.")
        if row.get("host"):
            by_host.setdefault(str(row["host"]), []).append(str(row["uuid"]))

    async def ask(host: str, uuids: list[str]) -> list[dict[str, Any]]:
        try:
            return await agents.sample_instances(host, uuids, request_id=ctx.request_id, timeout=timeout)
        except Exception:  # one host's failure must not hide the others' servers
            LOG.warning("sampling %d servers on host %s failed", len(uuids), host, exc_info=True)
            return []

    parts = await asyncio.gather(*(ask(h, u) for h, u in sorted(by_host.items())))
    return [reading for part in parts for reading in part]
