"""Assembles the all-in-one cloud: DB, bus, services, workers and the HTTP front door."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from cumulo import runtime_roles as roles
from cumulo.bus.transports import make_bus
from cumulo.compute import drivers as registry
from cumulo.compute.drivers import probe
from cumulo.conf import Settings
from cumulo.db import Database

if TYPE_CHECKING:
    from cumulo.compute.agent.manager import ComputeHost, ComputeManager
    from cumulo.compute.drivers.probe import HostFacts
    from cumulo.compute.workers import Workers
    from cumulo.image.demo.seeder import DemoSeeder
    from cumulo.network.agent.wiring import NetworkAgents
    from cumulo.paas.autoscaler import Autoscaler
    from cumulo.paas.engine.runner import PaasEngine
    from cumulo.volume.worker.manager import VolumeManager

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodePlan:
    """One compute node of a host: its name (hypervisor_hostname), its driver, whether it draws
    from the local host's shared pool, and its allocation ratios ({"VCPU": 50.0, ...}; empty = the
    cpu_/ram_/disk_allocation_ratio settings)."""

    host: str
    node: str
    driver: str
    local: bool
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def pooled(self) -> bool:
        return self.local


def why_not(name: str, host: HostFacts) -> list[str]:
    """Why driver `name` cannot run on `host` (its class's probe); none when it can."""
    try:
        cls = registry.driver_class(name)
    except Exception as exc:  # ImportError: an install without that driver's dependencies
        label = registry.REGISTRY[name].label
        return [f"the {label} driver cannot be loaded ({type(exc).__name__}: {exc})"]
    return cls.probe(host)


def local_driver_names(conf: Settings, host: HostFacts | None = None) -> list[str]:
    """The drivers of the local host, in order: conf.local_driver, a comma list of the registered
    drivers (runc, qemu, fake), or "auto" = each of registry.AUTO whose probe passes on this host
    (runc when we are root and `runc` is on PATH: real containers; qemu when QEMU is installed: real
    VMs); fake when none can run. Falling back is loud: it is rarely wanted."""
    host = host or probe.LOCAL_HOST
    wanted = [w.strip().lower() for w in conf.local_driver.split(",") if w.strip()] or ["auto"]
    for w in wanted:
        if w not in (*registry.REGISTRY, "auto"):
            raise ValueError(f"unknown local_driver {w!r}: use auto, or a comma list of runc, qemu and fake")
    if "auto" in wanted:
        if len(wanted) > 1:
            raise ValueError("local_driver auto cannot be combined with other drivers")
        missing = {name: why_not(name, host) for name in registry.AUTO}
        chosen = [name for name, miss in missing.items() if not miss]
        for name, miss in missing.items():
            if miss and chosen:
                LOG.info("local compute host %s: no %s node (%s)", conf.host_name, name, "; ".join(miss))
        if chosen:
            return chosen
        LOG.warning(
            "local compute host %s uses the FAKE driver (simulated servers, no containers or VMs): %s. "
            "Set CUMULO_LOCAL_DRIVER=fake to silence this, or fix the above for real containers or VMs.",
            conf.host_name, "; ".join(r for miss in missing.values() for r in miss),
        )
        return ["fake"]
    out: list[str] = []
    for w in wanted:
        if w in out:
            continue
        miss = why_not(w, host)
        if miss:
            raise ValueError(f"the {w} driver cannot run here: {'; '.join(miss)}")
        out.append(w)
    return out


def local_driver_name(conf: Settings, host: HostFacts | None = None) -> str:
    """local_driver_names as the comma list conf.local_driver takes ("runc,qemu")."""
    return ",".join(local_driver_names(conf, host))


def node_name(host: str, driver: str, drivers: list[str]) -> str:
    """The node a driver is on a host. Stable whatever else the host runs, so instance rows keep
    pointing at their node across restarts with other drivers: containers (runc, or fake) use the
    host name itself (as before nodes per host existed); QEMU is "<host>-qemu"; fake next to runc
    is "<host>-fake"."""
    if driver == "runc" or (driver == "fake" and "runc" not in drivers):
        return host
    return f"{host}-{driver}"


# Allocation ratios of the local nodes by driver, unless local_node_ratios says otherwise. A
# container's vCPU is a CPU-time limit (cpu.max), not a reserved core, so containers overcommit CPU
# as LXD and Docker do; a VM's vCPU is a host thread its guest keeps scheduled. On a 2-core host
# 50 m1.nano containers take one core of the pool and 2 m1.tiny VMs the other: see
# docs/architecture.md ("One host, one pool"). Memory and disk stay 1.0 (hard limits).
DEFAULT_NODE_RATIOS: dict[str, dict[str, float]] = {"runc": {"cpu": 50.0}, "qemu": {"cpu": 2.0}}
_RATIO_CLASSES = {"cpu": "VCPU", "vcpu": "VCPU", "ram": "MEMORY_MB", "memory_mb": "MEMORY_MB",
                  "disk": "DISK_GB", "disk_gb": "DISK_GB"}


def node_ratios(conf: Settings, drivers: list[str]) -> dict[str, dict[str, float]]:
    """Each local node's allocation ratios by placement class ({"runc": {"VCPU": 50.0}}): the
    built-in DEFAULT_NODE_RATIOS, then conf.local_node_ratios ("runc:cpu=64,qemu:cpu=4,qemu:ram=1.0")
    entry by entry. A class a node does not name falls back to the cpu_/ram_/disk_allocation_ratio
    settings."""
    wanted: dict[str, dict[str, float]] = {d: dict(r) for d, r in DEFAULT_NODE_RATIOS.items()}
    for item in conf.local_node_ratios.split(","):
        if not item.strip():
            continue
        key, _, raw = item.partition("=")
        driver, _, kind = key.strip().lower().partition(":")
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not driver or kind not in _RATIO_CLASSES or not value > 0:
            raise ValueError(
                f"bad local_node_ratios entry {item.strip()!r}: use driver:cpu|ram|disk=ratio (a positive "
                "number), e.g. runc:cpu=50,qemu:cpu=2"
            )
        wanted.setdefault(driver, {})[kind] = value
    return {d: {_RATIO_CLASSES[k]: v for k, v in wanted.get(d, {}).items()} for d in drivers}


def plan_nodes(conf: Settings, local_drivers: list[str]) -> list[NodePlan]:
    """Every compute node this process runs: the local host's (one per driver, all drawing from the
    host's one pool) and the fake hosts' (one node each, no pool)."""
    ratios = node_ratios(conf, local_drivers)
    host = conf.host_name
    plans = [NodePlan(host, node_name(host, d, local_drivers), d, True, ratios[d]) for d in local_drivers]
    names = [p.node for p in plans]
    if len(set(names)) != len(names):
        raise ValueError(f"local drivers {','.join(local_drivers)} give two nodes the same name")
    plans += [NodePlan(f"fake-host-{i}", f"fake-host-{i}", "fake", False) for i in range(1, conf.fake_hosts + 1)]
    return plans


def private_state_dir(path: Path) -> None:
    """The state dir, 0700 (an existing one is chmod'ed): the database, images, instance dirs and
    container roots below it are the cloud user's alone (docs/operations.md: modes and exceptions)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)


class Cloud:
    """The whole cloud in one process. `start()` brings it up, `asgi_app()` serves it. Each part is
    wired by runtime_roles, as in the separate processes of `cumulo api|conductor|scheduler|compute`."""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        private_state_dir(conf.state_dir)
        self.db = Database(conf.database_url, pool_size=conf.database_pool_size, max_overflow=conf.database_max_overflow)
        self.bus = make_bus(conf.transport)
        self.services = roles.make_services(conf, self.db, self.bus)
        self.local_drivers = local_driver_names(conf)  # fails early on a bad name
        self.local_driver = ",".join(self.local_drivers)
        self.nodes = plan_nodes(conf, self.local_drivers)
        self.workers: Workers | None = None  # scheduler, conductor and the compute hosts, once started
        self.managers: list[ComputeManager] = []
        self.hosts: list[ComputeHost] = []
        self.credentials: dict[str, dict[str, str]] = {}
        self.demo: DemoSeeder | None = None  # seeds the demo images; owns the tiny-vm build
        self.network_agents: NetworkAgents | None = None  # one network agent per compute host
        self.volume_worker: VolumeManager | None = None  # the local host's, on topic volume.<host>
        self.paas_engine: PaasEngine | None = None  # once started (the /paas API reads it: 503 until then)
        self.paas_autoscaler: Autoscaler | None = None

    async def start(self) -> None:
        from cumulo.compute.workers import assemble
        from cumulo.network.rpc import NetworkAgentAPI

        conf, s = self.conf, self.services
        first = await roles.bootstrap(s)
        self.credentials, self.demo = first.credentials, first.demo
        self.write_clouds_yaml()
        setups = roles.node_setups(conf, self.nodes)
        # One agent (one nova-compute service, one bus topic) per host, dispatching to its nodes.
        self.volume_worker = roles.volume_worker(s)
        self.workers = assemble(self.db, self.bus, conf, s.placement, s.images, setups, network=s.network,
                                nics=NetworkAgentAPI(self.bus), volumes=s.compute.volumes,
                                host_volumes=roles.host_volumes(conf, self.volume_worker))
        self.managers, self.hosts = self.workers.managers, self.workers.hosts
        self.network_agents = roles.network_agents(s, self.nodes)
        await self.bus.start()
        await roles.first_start_networks(s, first.admin_project)
        await self.network_agents.start()  # the host made to match the DB, orphans reaped
        await self.volume_worker.start()  # store dirs made, rows left mid-work settled
        await self.workers.start()
        await self.start_paas()

    async def start_paas(self) -> None:
        """The PaaS engine after the conductor (its recovery and reaping run in the background),
        the built-in products, and the autoscaler."""
        from cumulo.paas.products.builtin import ensure_builtin_products

        self.paas_engine = await roles.start_paas_engine(self.services)
        await ensure_builtin_products(self.db)
        self.paas_autoscaler = await roles.start_autoscaler(self.services, self.paas_engine)

    async def stop(self) -> None:
        if self.paas_autoscaler is not None:
            await self.paas_autoscaler.stop()
        if self.paas_engine is not None:
            await self.paas_engine.stop()  # its tasks resume at the next start
        if self.network_agents is not None:
            await self.network_agents.stop()
        if self.workers is not None:
            await self.workers.stop()
        if self.demo is not None:
            await self.demo.stop()  # a background tiny-vm build
        await self.bus.stop()
        await self.db.dispose()

    def clouds_yaml_path(self) -> Path:
        return roles.clouds_yaml_path(self.conf)

    def write_clouds_yaml(self) -> None:
        """Write DIR/clouds.yaml (0600). Keeps existing passwords; refreshes the auth URL."""
        roles.write_clouds_yaml(self.conf, self.credentials)

    def asgi_app(self) -> ASGIApp:
        return roles.asgi_app(self.services, lambda: self.paas_engine)
