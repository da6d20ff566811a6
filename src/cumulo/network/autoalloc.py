"""Neutron's get-me-a-network (the `auto-allocated-topology` extension).

    GET    /v2.0/auto-allocated-topology/{project_id}                  -> {"auto_allocated_topology": {"id", "tenant_id"}}
    GET    /v2.0/auto-allocated-topology/{project_id}?fields=dry-run   validates only ("id": "dry-run=pass")
    DELETE /v2.0/auto-allocated-topology/{project_id}                  tears it down (204)

The first GET builds, for the project, the network `auto_allocated_network` with one subnet per IP
version that has a default subnet pool (`use_default_subnetpool`), and the router
`auto_allocated_router` with its gateway on the default external network (`is_default`) and an
interface on each subnet; later GETs answer the same network. One row per project
(`auto_allocated_topologies`, keyed by project) records it: two concurrent first requests each
build, the second insert fails on the key, and its builder deletes what it made and answers the
winner's network (and a per-project lock in the process makes that rare). Without a default external
network or a default subnet pool the answer is 409 AutoAllocationFailure, as Neutron's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa

from cumulo import errors, policy
from cumulo.context import RequestContext, expand_roles
from cumulo.network import faults
from cumulo.network.models import auto_allocated_topologies, networks, ports, subnetpools
from cumulo.network.quotas_tags import QuotasAndTags
from cumulo.network.routers import Routers

LOG = logging.getLogger(__name__)
NETWORK_NAME = "auto_allocated_network"
ROUTER_NAME = "auto_allocated_router"
DRY_RUN_ID = "dry-run=pass"

policy.register({
    "auto_allocated_topology:get": policy.MEMBER,
    "auto_allocated_topology:delete": policy.MEMBER,
})


def _elevated(project_id: str) -> RequestContext:
    """The project's own admin context: what auto-allocation builds belongs to the project (its
    quotas count it), and the router's gateway on the external network needs admin's rights."""
    return RequestContext(user_id=None, project_id=project_id, roles=expand_roles(["admin"]))


def _answer(network_id: str, project_id: str) -> dict[str, Any]:
    return {"id": network_id, "tenant_id": project_id, "project_id": project_id}


class AutoAllocation(Routers, QuotasAndTags):
    """get-me-a-network over networks, subnet pools and routers."""

    _auto_locks: dict[str, asyncio.Lock] | None = None

    def _lock_for(self, project_id: str) -> asyncio.Lock:
        if self._auto_locks is None:
            self._auto_locks = {}
        return self._auto_locks.setdefault(project_id, asyncio.Lock())

    @staticmethod
    def _scope(ctx: RequestContext, project_id: str, rule: str) -> None:
        if not policy.allowed(ctx, rule) or not (ctx.is_admin or ctx.project_id == project_id):
            raise faults.PolicyNotAuthorized(rule=rule)

    async def _requirements(self) -> tuple[str, list[int]]:
        """(default external network id, IP versions with a default pool), or AutoAllocationFailure."""
        async with self.db.read() as conn:
            ext = await conn.scalar(sa.select(networks.c.id).where(networks.c.external, networks.c.is_default))
            versions = sorted(v for (v,) in await conn.execute(
                sa.select(subnetpools.c.ip_version).where(subnetpools.c.is_default)))
        if ext is None:
            raise faults.AutoAllocationFailure(reason="No default router:external network")
        if not versions:
            raise faults.AutoAllocationFailure(reason="No default subnetpools defined")
        return ext, versions

    async def _recorded(self, project_id: str) -> Any:
        """The project's topology row whose network still exists (a stale row is dropped)."""
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(auto_allocated_topologies)
                                      .where(auto_allocated_topologies.c.project_id == project_id))).first()
            if row is None:
                return None
            if await conn.scalar(sa.select(networks.c.id).where(networks.c.id == row.network_id)) is None:
                await conn.execute(auto_allocated_topologies.delete()
                                   .where(auto_allocated_topologies.c.project_id == project_id))
                return None
            return row

    async def get_auto_allocated_topology(self, ctx: RequestContext, project_id: str,
                                          dry_run: bool = False) -> dict[str, Any]:
        self._scope(ctx, project_id, "auto_allocated_topology:get")
        if dry_run:
            await self._requirements()
            return _answer(DRY_RUN_ID, project_id)
        row = await self._recorded(project_id)
        if row is not None:
            return _answer(row.network_id, project_id)
        async with self._lock_for(project_id):
            row = await self._recorded(project_id)
            if row is not None:
                return _answer(row.network_id, project_id)
            ext, versions = await self._requirements()
            return _answer(await self._build(project_id, ext, versions), project_id)

    async def _build(self, project_id: str, ext: str, versions: list[int]) -> str:
        actx = _elevated(project_id)
        built: dict[str, Any] = {"subnets": []}
        try:
            try:
                net = await self.create_network(actx, {"name": NETWORK_NAME, "tenant_id": project_id})
                built["network"] = net["id"]
                for version in versions:
                    sub = await self.create_subnet(actx, {
                        "network_id": net["id"], "name": f"auto_allocated_subnet_v{version}", "ip_version": version,
                        "use_default_subnetpool": True, "tenant_id": project_id})
                    built["subnets"].append(sub["id"])
            except errors.CumuloError as exc:
                LOG.warning("auto-allocation for %s: no private network: %s", project_id, exc)
                raise faults.AutoAllocationFailure(reason="Unable to provide tenant private network") from exc
            try:
                router = await self.create_router(actx, {
                    "name": ROUTER_NAME, "tenant_id": project_id, "external_gateway_info": {"network_id": ext}})
                built["router"] = router["id"]
                for sid in built["subnets"]:
                    await self.add_router_interface(actx, router["id"], {"subnet_id": sid})
            except errors.CumuloError as exc:
                LOG.warning("auto-allocation for %s: no external connectivity: %s", project_id, exc)
                raise faults.AutoAllocationFailure(reason="Unable to provide external connectivity") from exc
            try:
                async with self.db.write() as conn:
                    await conn.execute(auto_allocated_topologies.insert().values(
                        project_id=project_id, network_id=net["id"], router_id=built.get("router")))
            except sa.exc.IntegrityError:  # another API process built one first: keep theirs
                await self._teardown(actx, built)
                winner = await self._recorded(project_id)
                if winner is None:
                    raise faults.AutoAllocationFailure(reason="a concurrent auto-allocation failed") from None
                return str(winner.network_id)
            return str(net["id"])
        except BaseException:
            if "recorded" not in built:
                await asyncio.shield(self._teardown(actx, built))
            raise

    async def _teardown(self, actx: RequestContext, built: dict[str, Any]) -> None:
        """Delete what an auto-allocation made (best effort, in reverse); `recorded` marks it done."""
        built["recorded"] = True
        router = built.get("router")
        try:
            if router:
                for sid in built["subnets"]:
                    try:
                        await self.remove_router_interface(actx, router, {"subnet_id": sid})
                    except errors.NotFound:
                        pass
                await self.delete_router(actx, router)
            if built.get("network"):
                await self.delete_network(actx, built["network"])
        except errors.CumuloError as exc:
            LOG.warning("auto-allocated topology not fully removed (%s): %s", built, exc)

    async def delete_auto_allocated_topology(self, ctx: RequestContext, project_id: str) -> None:
        """Tear the project's topology down: router interfaces, router, network (its subnets go with
        it). A network that still has ports (servers) stays: 409 NetworkInUse, as Neutron's."""
        self._scope(ctx, project_id, "auto_allocated_topology:delete")
        row = await self._recorded(project_id)
        if row is None:
            return
        actx = _elevated(project_id)
        async with self.db.read() as conn:  # refuse before taking anything apart
            busy = await conn.scalar(sa.select(sa.func.count()).select_from(ports).where(
                ports.c.network_id == row.network_id,
                ports.c.device_owner.not_in(("network:dhcp", "network:router_interface"))))
        if busy:
            raise faults.NetworkInUse(net_id=row.network_id)
        net = await self.get_network(actx, row.network_id)
        if row.router_id:
            for sid in net["subnets"]:
                try:
                    await self.remove_router_interface(actx, row.router_id, {"subnet_id": sid})
                except errors.NotFound:
                    pass
            try:
                await self.delete_router(actx, row.router_id)
            except errors.NotFound:
                pass
        await self.delete_network(actx, row.network_id)
        async with self.db.write() as conn:
            await conn.execute(auto_allocated_topologies.delete().where(auto_allocated_topologies.c.project_id == project_id))
