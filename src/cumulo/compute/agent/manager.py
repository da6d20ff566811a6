"""The compute agent of one host: registers the host, reconciles after a restart, runs the driver.

ComputeHost serves the host's bus topic and hands each message to one of its nodes; a
ComputeManager runs one node: its lifecycle and its bus endpoints (see compute.rpc.AGENT_METHODS),
each one call of a workflow on the node's `Node` (node.py). The workflows live in build.py (build,
rebuild, terminate), power.py (power/pause/suspend, the power-state sync, console and
diagnostics), exec.py (a command in a server, for PaaS recipes), resize.py, snapshot.py, backup_rotation.py, reclaim.py and reconcile.py; they never
see the manager. Every workflow serialises on a per-instance lock, checks
the task_state the API set, records an instance-action event around the driver call, and ends
with a compare-and-swap that clears task_state — on success and on failure alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo.bus.base import Bus, compute_topic
from cumulo.compute import instances as inst_db
from cumulo.compute import specs
from cumulo.compute.agent import (
    backup_rotation,
    build,
    imagecache,
    migrate,
    nics,
    power,
    reclaim,
    reconcile,
    resize,
    settle,
    snapshot,
    usage,
    volumes,
)
from cumulo.compute.agent import exec as agent_exec
from cumulo.compute.agent.live import LiveMigrationEndpoints
from cumulo.compute.agent.node import Node
from cumulo.compute.drivers.base import Driver, HostResources, capabilities_of
from cumulo.compute.rpc import AGENT_METHODS, ComputeAPI
from cumulo.conf import Settings
from cumulo.db import Database, new_uuid, utcnow
from cumulo.errors import NotFound
from cumulo.hosts import servicegroup
from cumulo.hosts.models import compute_nodes, services
from cumulo.netplane import physnet
from cumulo.placement.pools import pool_name, pool_uuid
from cumulo.placement.service import Placement

LOG = logging.getLogger(__name__)


class ComputeManager(LiveMigrationEndpoints):
    """One compute node of a host: its lifecycle (driver, node row, provider, reconcile, periodic
    jobs) and its bus endpoints. The work itself is in the workflows, which see only `self.node`."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        conf: Settings,
        host_name: str,
        driver: Driver,
        placement: Placement,
        images: specs.ImageBackend | None,
        *,
        node_name: str | None = None,
        ratios: Mapping[str, float] | None = None,
        pooled: bool = False,
    ) -> None:
        self.db = db
        self.bus = bus
        self.conf = conf
        self.host = host_name
        # The compute node this manager runs (hypervisor_hostname): the host itself unless the
        # host has several drivers (see ComputeHost).
        self.name = node_name or host_name
        self.node = Node(db, conf, host_name, self.name, driver, placement, images)
        self.node.peers = ComputeAPI(bus)  # cold migration talks to the other host (agent/migrate.py)
        # This node's allocation ratios ({"VCPU": 50.0}; the settings' for what it does not name),
        # and whether it draws from its host's shared pool (the local host's nodes do).
        self.ratios = dict(ratios or {})
        self.pooled = pooled
        self.driver = driver
        self.placement = placement
        self.service_id: int | None = None
        self.whole = HostResources(vcpus=0, memory_mb=0, local_gb=0)
        self.periodic = servicegroup.Periodic()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start_node(self, service_id: int) -> None:
        """Bring the node up under the host's service: driver, node row, provider, reconcile, power sync."""
        self.service_id = service_id
        node = self.node
        await self.driver.init_host()
        # The whole machine: a pooled node may take all of it, as long as its host's pool has it
        # left (placement/pools.py); nothing is split statically.
        self.whole = resources = await self.driver.get_host_resources()
        node.node_uuid = await self._register_node(resources)
        await self.placement.ensure_provider(
            node.node_uuid, self.name,
            vcpus=resources.vcpus, memory_mb=resources.memory_mb, disk_gb=resources.local_gb,
            ratios=self.ratios, pool=pool_uuid(self.host) if self.pooled else None,
        )
        await reconcile.reconcile_host(node)
        await volumes.reconcile(node)  # attachments in the DB == volumes on the host
        self.periodic.start("power_sync", self.conf.power_sync_interval, lambda: power.sync_power_states(node))
        if self.conf.reclaim_instance_interval > 0:
            self.periodic.start("reclaim", reclaim.reclaim_spacing(self.conf.reclaim_instance_interval),
                                lambda: reclaim.reclaim(node))
        if self.conf.image_cache_interval > 0:  # unused image copies (compute/agent/imagecache.py)
            self.periodic.start("image_cache", self.conf.image_cache_interval, lambda: imagecache.collect(node))
        LOG.info("compute node %s of host %s ready (%s driver, %s)", self.name, self.host, self.driver.info.name,
                 node.node_uuid)

    async def stop(self) -> None:
        await self.periodic.stop()
        await self.node.cancel_background()

    async def _register_node(self, res: HostResources) -> str:
        info = self.driver.info
        values: dict[str, Any] = {
            "service_id": self.service_id,
            "host": self.host,
            "hypervisor_type": info.hypervisor_type,
            "hypervisor_version": info.version,
            "instance_types": list(info.instance_types),
            "vcpus": res.vcpus,
            "memory_mb": res.memory_mb,
            "local_gb": res.local_gb,
            "host_ip": self.conf.underlay_ip or res.host_ip,  # VXLAN peers and transfers reach the host here
            "cpu_info": dict(res.cpu_info),
            # Capabilities ride along so the API can refuse what a host's driver cannot do: what it
            # declares and implements (drivers/base.py: capabilities fail closed).
            "details": {
                **info.details, "driver": info.name,
                "capabilities": sorted(c.value for c in capabilities_of(self.driver)),
                "allocation_ratios": self.allocation_ratios(),
                **({"pool": pool_name(self.host)} if self.pooled else {}),
                # the physical networks whose flat networks reach this host (scheduler: PhysicalNetworkFilter)
                "physnets": physnet.reported(physnet.mappings(self.conf.physical_interface_mappings),
                                             single_host=not self.conf.underlay_ip, plumbs=info.name != "fake"),
            },
            "updated_at": utcnow(),
        }
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    sa.select(compute_nodes.c.uuid).where(compute_nodes.c.hypervisor_hostname == self.name)
                )
            ).first()
            if row is not None:
                await conn.execute(
                    sa.update(compute_nodes).where(compute_nodes.c.hypervisor_hostname == self.name).values(**values)
                )
                return str(row[0])
            uuid = new_uuid()
            await conn.execute(
                sa.insert(compute_nodes).values(uuid=uuid, hypervisor_hostname=self.name, created_at=utcnow(), **values)
            )
            return uuid

    def allocation_ratios(self) -> dict[str, float]:
        """The ratios this node's inventory carries (what `hypervisor show` reports)."""
        conf = self.conf
        base = {"VCPU": conf.cpu_allocation_ratio, "MEMORY_MB": conf.ram_allocation_ratio,
                "DISK_GB": conf.disk_allocation_ratio}
        return {**base, **self.ratios}

    # -- bus endpoints (compute.rpc.AGENT_METHODS) ------------------------------------------

    async def build_and_run_instance(
        self, instance_uuid: str, request_id: str | None = None, node: str | None = None
    ) -> None:
        """`node`: the one the scheduler chose (a host with one node ignores it)."""
        await build.build_and_run(self.node, instance_uuid, request_id)

    async def rebuild_instance(self, instance_uuid: str, image_ref: str, request_id: str | None = None) -> None:
        await build.rebuild(self.node, instance_uuid, image_ref, request_id)

    async def terminate_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await build.terminate(self.node, instance_uuid, request_id)

    async def stop_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await power.run(self.node, power.STOP, instance_uuid, request_id)

    async def start_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await power.run(self.node, power.START, instance_uuid, request_id)

    async def reboot_instance(self, instance_uuid: str, reboot_type: str = "SOFT", request_id: str | None = None) -> None:
        op = power.HARD_REBOOT if str(reboot_type).upper() == "HARD" else power.SOFT_REBOOT
        await power.run(self.node, op, instance_uuid, request_id)

    async def pause_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await power.run(self.node, power.PAUSE, instance_uuid, request_id)

    async def unpause_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await power.run(self.node, power.UNPAUSE, instance_uuid, request_id)

    async def suspend_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await power.run(self.node, power.SUSPEND, instance_uuid, request_id)

    async def resume_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await power.run(self.node, power.RESUME, instance_uuid, request_id)

    async def resize_instance(
        self, instance_uuid: str, new_flavor: dict[str, Any], request_id: str | None = None
    ) -> None:
        await resize.resize(self.node, instance_uuid, new_flavor, request_id)

    async def confirm_resize(self, instance_uuid: str, request_id: str | None = None) -> None:
        await resize.confirm(self.node, instance_uuid, request_id)

    async def revert_resize(self, instance_uuid: str, request_id: str | None = None) -> None:
        await resize.revert(self.node, instance_uuid, request_id)

    async def migrate_instance(
        self, instance_uuid: str, dest_host: str, dest_node: str, dest_address: str | None, migration_uuid: str,
        request_id: str | None = None,
    ) -> None:
        await migrate.migrate_instance(self.node, instance_uuid, dest_host, dest_node, dest_address, migration_uuid,
                                       request_id)

    async def finish_migration(
        self, instance_uuid: str, migration_uuid: str, request_id: str | None = None, node: str | None = None
    ) -> None:
        await migrate.finish_migration(self.node, instance_uuid, migration_uuid, request_id)

    async def finish_revert_migration(
        self, instance_uuid: str, migration_uuid: str, fault: str | None = None, request_id: str | None = None,
        node: str | None = None,
    ) -> None:
        await migrate.finish_revert_migration(self.node, instance_uuid, migration_uuid, fault, request_id)

    async def cleanup_migration_source(
        self, instance_uuid: str, request_id: str | None = None, node: str | None = None
    ) -> None:
        await migrate.cleanup_migration_source(self.node, instance_uuid, request_id)

    async def evacuate_instance(
        self, instance_uuid: str, migration_uuid: str, request_id: str | None = None, node: str | None = None
    ) -> None:
        await migrate.evacuate_instance(self.node, instance_uuid, migration_uuid, request_id)

    async def settle_instance(
        self, instance_uuid: str, task_state: str, since: str, request_id: str | None = None, node: str | None = None
    ) -> None:
        await settle.settle(self.node, instance_uuid, task_state, since)

    async def snapshot_instance(self, instance_uuid: str, image_id: str, request_id: str | None = None) -> None:
        await snapshot.snapshot(self.node, instance_uuid, image_id, request_id)

    async def backup_instance(
        self, instance_uuid: str, image_id: str, backup_type: str, rotation: int, request_id: str | None = None
    ) -> None:
        await backup_rotation.backup(self.node, instance_uuid, image_id, backup_type, int(rotation), request_id)

    async def soft_delete_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await reclaim.soft_delete(self.node, instance_uuid, request_id)

    async def restore_instance(self, instance_uuid: str, request_id: str | None = None) -> None:
        await reclaim.restore(self.node, instance_uuid, request_id)

    async def get_console_output(
        self, instance_uuid: str, length: int | None = None, request_id: str | None = None
    ) -> str:
        return await power.console_output(self.node, instance_uuid, length)

    async def get_diagnostics(self, instance_uuid: str, request_id: str | None = None) -> dict[str, Any]:
        return await power.diagnostics(self.node, instance_uuid)

    async def exec_in_instance(
        self, instance_uuid: str, argv: list[str], env: dict[str, str], stdin_b64: str, exec_timeout: float,
        output_limit: int, request_id: str | None = None,
    ) -> dict[str, Any]:
        return await agent_exec.exec_in(self.node, instance_uuid, argv, env, stdin_b64, exec_timeout, output_limit)

    async def sample_instances(self, instance_uuids: list[str], request_id: str | None = None) -> list[dict[str, Any]]:
        """Readings of those of `instance_uuids` this node owns (usage.sample_servers)."""
        return await usage.sample_servers(self.node, [str(u) for u in instance_uuids])

    async def attach_interface(self, instance_uuid: str, port_id: str, request_id: str | None = None) -> None:
        await nics.attach(self.node, instance_uuid, port_id)

    async def detach_interface(self, instance_uuid: str, port_id: str, request_id: str | None = None) -> None:
        await nics.detach(self.node, instance_uuid, port_id)

    async def attach_volume(self, instance_uuid: str, bdm_uuid: str, request_id: str | None = None) -> None:
        await volumes.attach(self.node, instance_uuid, bdm_uuid, request_id)

    async def detach_volume(self, instance_uuid: str, volume_id: str, request_id: str | None = None) -> None:
        await volumes.detach(self.node, instance_uuid, volume_id, request_id)

    async def extend_volume(
        self, instance_uuid: str, volume_id: str, new_size_bytes: int, request_id: str | None = None
    ) -> None:
        await volumes.extend(self.node, instance_uuid, volume_id, new_size_bytes, request_id)


class ComputeHost:
    """The agent of one host, served on its bus topic compute.<host>: one nova-compute service and
    one or more compute nodes (a ComputeManager per driver, as Nova runs one service per host with a
    node per hypervisor). Each message goes to the node of its instance: a build to the node the
    scheduler chose (the conductor passes it), everything else to the node the instance row names."""

    def __init__(self, db: Database, bus: Bus, conf: Settings, host_name: str, nodes: list[ComputeManager]) -> None:
        if not nodes or any(n.host != host_name for n in nodes):
            raise ValueError(f"host {host_name} needs nodes of its own")
        self.db, self.bus, self.conf, self.host = db, bus, conf, host_name
        self.nodes = {n.name: n for n in nodes}
        self.placement = nodes[0].placement
        self.service_id: int | None = None
        # One nova-compute service per node, named like the node (the host-named node's is the
        # host's), all on the host's topic: an admin disables one node with `openstack compute
        # service set --disable <node> nova-compute` and the host's other nodes keep taking work.
        self.service_ids: dict[str, int] = {}
        self.periodic = servicegroup.Periodic()
        # Shared by the hosts of one process (workers.assemble_hosts): their beats grouped in few writes.
        self.heartbeats = servicegroup.Heartbeats(db)

    async def start(self) -> None:
        for name, service_host in self.service_hosts().items():
            self.service_ids[name] = await servicegroup.register_service(
                self.db, service_host, "nova-compute", compute_topic(self.host), self.conf.default_availability_zone,
                mark_up=False,
            )
        first = next(iter(self.nodes))
        self.service_id = self.service_ids.get(self.host) or self.service_ids[first]
        await asyncio.gather(*(n.start_node(self.service_ids[n.name]) for n in self.nodes.values()))
        if self.host == self.conf.host_name:  # the loop devices of this machine's block store
            await volumes.reap_loops(n.node for n in self.nodes.values())
        pooled = [n for n in self.nodes.values() if n.pooled]
        if pooled:
            # The host's one pool: the machine as its drivers report it (they all see the same one).
            await self.placement.ensure_pool(
                self.host, vcpus=max(n.whole.vcpus for n in pooled),
                memory_mb=max(n.whole.memory_mb for n in pooled), disk_gb=max(n.whole.local_gb for n in pooled),
            )
        await self.retire_stale_nodes()
        await self.heartbeat()  # up only once every node is reconciled
        self.periodic.start("heartbeat", servicegroup.report_interval(self.conf), self.heartbeat)

    def service_hosts(self) -> dict[str, str]:
        """{node: the `host` of its nova-compute service}: the node's own name, except that a host
        without a node named like it gives its first node the host's name (so a one-node host has
        one service named like the host, as before nodes per host existed)."""
        out = {name: name for name in self.nodes}
        if self.host not in out:
            out[next(iter(self.nodes))] = self.host
        return out

    async def heartbeat(self) -> None:
        await self.heartbeats.beat(list(self.service_ids.values()))

    async def stop(self) -> None:
        await self.periodic.stop()
        for n in self.nodes.values():
            await n.stop()

    async def retire_stale_nodes(self) -> list[str]:
        """Nodes of this host whose driver no longer runs here (the driver list changed): without
        servers the node and its provider go; with servers it stays, but with no inventory, so the
        scheduler never sends a build to a node nobody would take it on."""
        from cumulo.compute.models import instances

        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(compute_nodes.c.uuid, compute_nodes.c.hypervisor_hostname).where(
                        compute_nodes.c.host == self.host, compute_nodes.c.hypervisor_hostname.not_in(list(self.nodes))
                    )
                )
            ).all()
            busy = {
                r[0] for r in await conn.execute(
                    sa.select(sa.func.coalesce(instances.c.node, instances.c.host)).where(
                        instances.c.host == self.host, instances.c.deleted.is_(False)
                    )
                )
            }
        for node_uuid, name in rows:
            if name in busy:
                LOG.warning("host %s no longer runs node %s, which still has servers: it takes no new ones",
                            self.host, name)
                # Its servers still hold their allocations, and still count in the host's pool.
                await self.placement.set_inventory(node_uuid, name, {})
                async with self.db.read() as conn:
                    sid = (await conn.execute(sa.select(services.c.id).where(
                        services.c.host == name, services.c.binary == "nova-compute"))).scalar()
                if sid is not None:
                    self.service_ids.setdefault(name, int(sid))  # the host still answers for its servers
                continue
            LOG.info("host %s no longer runs node %s: removed", self.host, name)
            async with self.db.write() as conn:
                await conn.execute(sa.delete(compute_nodes).where(compute_nodes.c.uuid == node_uuid))
                if name != self.host:  # the node's own service goes with it
                    await conn.execute(
                        sa.delete(services).where(services.c.host == name, services.c.binary == "nova-compute")
                    )
            with contextlib.suppress(NotFound):
                await self.placement.delete_provider(node_uuid)
        await self._drop_stale_services()
        return [str(r[1]) for r in rows]

    async def _drop_stale_services(self) -> None:
        """nova-compute services on this host's topic that run no node any more (their node went, or
        got the host's name): gone, or they would show down forever."""
        used = sa.select(compute_nodes.c.service_id).where(compute_nodes.c.service_id.is_not(None))
        stale = sa.and_(
            services.c.topic == compute_topic(self.host),
            services.c.binary == "nova-compute",
            services.c.id.not_in(list(self.service_ids.values())),
            services.c.id.not_in(used.scalar_subquery()),
        )
        async with self.db.read() as conn:  # usually none: no write transaction then (1,000 hosts' start)
            if (await conn.execute(sa.select(services.c.id).where(stale).limit(1))).first() is None:
                return
        async with self.db.write() as conn:
            await conn.execute(sa.delete(services).where(stale))

    async def nodes_for(self, instance_uuid: str, node: str | None = None) -> list[ComputeManager]:
        """Where a message about the instance goes; every node when no row says (a build or a delete
        of a row that is gone: each node makes sure nothing of it is left)."""
        if len(self.nodes) == 1:
            return list(self.nodes.values())
        if node and node in self.nodes:
            return [self.nodes[node]]
        async with self.db.read() as conn:
            row = await inst_db.get(conn, instance_uuid, include_deleted=True)
        if row is not None and row["host"] == self.host:
            named = row["node"] or row["host"]
            if named in self.nodes:
                return [self.nodes[named]]
        if row is not None and row["host"] == self.host:
            LOG.warning("instance %s names node %s, which host %s does not run", instance_uuid, row["node"], self.host)
        return list(self.nodes.values())

    async def sample_instances(self, instance_uuids: list[str], request_id: str | None = None) -> list[dict[str, Any]]:
        """compute.rpc sample_instances: the one message about many servers; each node answers for
        those it owns, so the host's answer is every node's, together."""
        uuids = [str(u) for u in instance_uuids]
        parts = await asyncio.gather(*(n.sample_instances(uuids) for n in self.nodes.values()))
        return [reading for part in parts for reading in part]

    async def dispatch(self, method: str, instance_uuid: str, args: dict[str, Any]) -> Any:
        targets = await self.nodes_for(instance_uuid, args.get("node"))
        if len(targets) > 1 and method not in ("build_and_run_instance", "terminate_instance"):
            targets = targets[:1]  # the first node answers "not found" as a single node would
        result: Any = None
        for target in targets:
            result = await getattr(target, method)(instance_uuid=instance_uuid, **args)
        return result


def _dispatcher(method: str) -> Any:
    async def endpoint(self: ComputeHost, instance_uuid: str, **args: Any) -> Any:
        return await self.dispatch(method, instance_uuid, args)

    endpoint.__name__ = endpoint.__qualname__ = method
    endpoint.__doc__ = f"compute.rpc {method}, on the instance's node."
    return endpoint


for _method in AGENT_METHODS:
    if _method not in ComputeHost.__dict__:  # sample_instances names no one instance: its own endpoint
        setattr(ComputeHost, _method, _dispatcher(_method))
