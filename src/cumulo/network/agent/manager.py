"""The network agent of one host, served on `network.<host>` (messages: network.rpc.NetworkAgentAPI).

- `plug_ports(port_ids, instance_uuid)`: binds the ports here, makes their networks exist (and
  their DHCP and security group state), returns one NicSpec dict per port, in order;
- `unplug_ports(port_ids)`: unbinds them; a network with nothing of this host left on it goes;
- `sync()`: the whole host made to match the DB; run at start too (there in full: every step
  checked on the host, orphans reaped). A cast after an API change trusts what this process made
  (in-place nftables deltas, steps cached per namespace identity) and reaps only when a network or
  router left the plan. Bursts of casts coalesce: one sync runs, one more follows if asked meanwhile.

The L3 host (the local one) also carries routers and external networks (and the host link).
All changes are serialised by one lock, so a sync never sees a half-plugged port. On a fake host
the plumbing is `NoPlumbing`: bindings are real, nothing is made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.errors import Conflict, NotFound
from cumulo.network.agent.plumbing import Plumbing
from cumulo.network.agent.state import DHCP_OWNER, HostPlan, dhcp_device_id, read_plan
from cumulo.network.models import networks, ports, subnets
from cumulo.network.service import NetworkService

LOG = logging.getLogger(__name__)


class NetworkAgent:
    def __init__(self, db: Database, service: NetworkService, host: str, plumbing: Plumbing, *,
                 l3: bool = False, external_link: bool = True, underlay_ip: str = "", l3_host: str | None = None,
                 physnets: Mapping[str, str] | None = None) -> None:
        self.db, self.service, self.host, self.plumbing = db, service, host, plumbing
        self.l3, self.external_link = l3, external_link
        self.physnets = dict(physnets or {})  # physical network -> this host's interface on it (netplane.physnet)
        # Scale out: this host's underlay address (VXLAN tunnels to the other hosts carrying a
        # network; empty: one host, no tunnels) and the L3 host's name (a peer of its networks).
        self.underlay_ip, self.l3_host = underlay_ip, (host if l3 else l3_host)
        self.lock = asyncio.Lock()
        self._pending = False
        self._running: asyncio.Task[None] | None = None
        self.syncs = 0  # completed full syncs (tests)
        self._last: tuple[frozenset[str], frozenset[str]] | None = None  # networks, routers of the last sync

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._sync(full=True)
        except Exception:
            LOG.exception("network agent %s: the start-up sync failed", self.host)

    async def stop(self) -> None:
        task = self._running
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # cancelled or failed: we are stopping
                pass
        close = getattr(self.plumbing, "close", None)
        if close is not None:
            await close()

    # ---- bus endpoints ----------------------------------------------------------------------

    async def plug_ports(self, port_ids: list[str], instance_uuid: str) -> list[dict[str, Any]]:
        ids = [str(p) for p in port_ids]
        moved = False  # a port bound elsewhere before (migration, evacuation): the peers repoint its MAC
        async with self.db.write() as conn:
            for pid in ids:
                row = (await conn.execute(sa.select(ports).where(ports.c.id == pid))).first()
                if row is None:
                    raise NotFound(f"port {pid} not found")
                if row.device_id and instance_uuid and row.device_id != instance_uuid:
                    raise Conflict(f"port {pid} is attached to {row.device_id}")
                if row.binding_host_id != self.host:
                    moved = moved or bool(row.binding_host_id)
                    await conn.execute(ports.update().where(ports.c.id == pid).values(
                        binding_host_id=self.host, updated_at=utcnow(), revision_number=row.revision_number + 1))
        async with self.lock:
            plan = await self._plan()
            if self.plumbing.real:
                plan = await self._ensure_dhcp_ports(plan, {plan.nics[p]["network_id_"] for p in ids if p in plan.nics})
            made = sorted({n for p in ids if p in plan.nics for n in [plan.nics[p]["network_id_"]]})
            for net_id in made:
                await self.plumbing.ensure_network(plan.networks[net_id])
            joined = self._last is not None and not set(made) <= self._last[0]
            if self._last is not None:  # a later sync that no longer wants them reaps them
                self._last = (self._last[0] | frozenset(made), self._last[1])
        await self._set_status(ids, "ACTIVE")
        if (joined or moved) and self.underlay_ip:  # the network's other hosts add this one to their FDB
            await self.service.dataplane_changed()
        return [_public(plan.nics[p]) for p in ids]

    async def unplug_ports(self, port_ids: list[str]) -> None:
        ids = [str(p) for p in port_ids]
        nets: set[str] = set()
        async with self.db.write() as conn:
            for pid in ids:
                row = (await conn.execute(sa.select(ports).where(ports.c.id == pid))).first()
                if row is None:
                    continue
                nets.add(row.network_id)
                if row.binding_host_id == self.host:
                    await conn.execute(ports.update().where(ports.c.id == pid).values(
                        binding_host_id="", status="DOWN", updated_at=utcnow(),
                        revision_number=row.revision_number + 1))
        async with self.lock:
            plan = await self._plan()
            left = False
            for net_id in sorted(nets):
                if net_id in plan.networks:
                    await self.plumbing.ensure_network(plan.networks[net_id])
                else:
                    await self._leave_network(net_id)
                    left = True
                    if self._last is not None:  # so that plugging a port here again is a join, told to the peers
                        self._last = (self._last[0] - {net_id}, self._last[1])
        if left and self.underlay_ip:  # the network's other hosts drop this one from their FDB
            await self.service.dataplane_changed()

    async def sync(self) -> None:
        """Coalescing: while one runs, later requests make exactly one more run after it."""
        if self._running is not None and not self._running.done():
            self._pending = True
            await asyncio.shield(self._running)
            if self._running is not None and not self._running.done():
                await asyncio.shield(self._running)
            return
        self._running = asyncio.ensure_future(self._sync_loop())
        await asyncio.shield(self._running)

    async def _sync_loop(self) -> None:
        while True:
            self._pending = False
            await self._sync()
            if not self._pending:
                return

    # ---- work -------------------------------------------------------------------------------

    async def _plan(self) -> HostPlan:
        async with self.db.read() as conn:
            return await read_plan(conn, self.host, l3=self.l3, external_link=self.external_link,
                                   underlay_ip=self.underlay_ip, l3_host=self.l3_host, physnets=self.physnets)

    async def _sync(self, *, full: bool = False) -> None:
        """Make the host match the DB. `full` (the agent's start): everything checked on the host
        and orphans reaped. Otherwise (a cast after an API change) what this process knows it made
        is trusted (netplane deltas, plumbing's caches per namespace identity), and orphans are
        reaped only when a network or router left the plan (a deletion to carry out)."""
        async with self.lock:
            forget = getattr(self.plumbing, "forget", None)
            if full and forget is not None:  # a full sync checks what plug_ports trusts to be there
                forget()
            plan = await self._plan()
            have = (frozenset(plan.networks), frozenset(r.id for r in plan.routers))
            shrank = self._last is None or not (self._last[0] <= have[0] and self._last[1] <= have[1])
            if self.plumbing.real and (full or shrank):
                try:
                    await self.plumbing.reap(plan)
                except Exception:  # what is wanted is still ensured below
                    LOG.exception("network agent %s: reaping orphans failed", self.host)
            if self.plumbing.real:
                plan = await self._ensure_dhcp_ports(plan, set(plan.networks))
                await self._drop_stale_dhcp_ports(plan)
            for net in plan.networks.values():
                try:
                    await self.plumbing.ensure_network(net)
                except Exception:
                    LOG.exception("network agent %s: network %s", self.host, net.id)
            for r in plan.routers:
                try:
                    await self.plumbing.ensure_router(r)
                except Exception:
                    LOG.exception("network agent %s: router %s", self.host, r.id)
            self._last = have
            self.syncs += 1

    async def _leave_network(self, network_id: str) -> None:
        await self.plumbing.drop_network(network_id)
        async with self.db.write() as conn:
            for row in list(await conn.execute(sa.select(ports.c.id).where(
                    ports.c.network_id == network_id, ports.c.device_owner == DHCP_OWNER,
                    ports.c.device_id == dhcp_device_id(self.host)))):
                await self.service.remove_port(conn, row.id)

    async def _drop_stale_dhcp_ports(self, plan: HostPlan) -> None:
        """This host's DHCP ports on networks it no longer carries."""
        async with self.db.write() as conn:
            for row in list(await conn.execute(sa.select(ports.c.id, ports.c.network_id).where(
                    ports.c.device_owner == DHCP_OWNER, ports.c.device_id == dhcp_device_id(self.host)))):
                if row.network_id not in plan.networks:
                    await self.service.remove_port(conn, row.id)

    async def _ensure_dhcp_ports(self, plan: HostPlan, network_ids: set[str]) -> HostPlan:
        """A network:dhcp port of this host on each of `network_ids` that serves DHCP (it takes an
        address of each DHCP-enabled IPv4 subnet, as Neutron's DHCP port does); the plan re-read
        when one was made."""
        missing = [n for n in sorted(network_ids) if n in plan.networks and plan.networks[n].wants_dhcp
                   and plan.networks[n].dhcp_port is None and not plan.networks[n].external]
        if not missing:
            return plan
        for net_id in missing:
            try:
                await self._make_dhcp_port(net_id)
            except Exception:
                LOG.exception("network agent %s: no DHCP port on network %s", self.host, net_id)
        return await self._plan()

    async def _make_dhcp_port(self, network_id: str) -> None:
        async with self.db.write() as conn:
            sub_ids = [r.id for r in await conn.execute(sa.select(subnets.c.id, subnets.c.ip_version).where(
                subnets.c.network_id == network_id, subnets.c.enable_dhcp.is_(True))) if r.ip_version == 4]
            net_project = (await conn.execute(sa.select(networks.c.project_id)
                                              .where(networks.c.id == network_id))).scalar_one()
            ctx = RequestContext(user_id=None, project_id=net_project, roles=frozenset({"admin", "member", "reader"}))
            item = {"network_id": network_id, "device_owner": DHCP_OWNER, "device_id": dhcp_device_id(self.host),
                    "port_security_enabled": False, "binding:host_id": self.host,
                    "fixed_ips": [{"subnet_id": s} for s in sub_ids]}
            await self.service.insert_port(conn, ctx, net_project, item, None)

    async def _set_status(self, port_ids: list[str], status: str) -> None:
        for pid in port_ids:
            try:
                await self.service.set_port_status(pid, status)
            except Exception:
                LOG.debug("port %s status not set", pid, exc_info=True)


def _public(nic: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in nic.items() if not k.endswith("_")}
