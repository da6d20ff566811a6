"""Assembles the all-in-one cloud: DB, bus, services, workers and the HTTP front door."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo import errors
from cumulo.bus.base import Bus
from cumulo.bus.transports import make_bus
from cumulo.catalog import CATALOG, CatalogEntry
from cumulo.compute import drivers as registry
from cumulo.compute.drivers import probe
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.metrics.http import RouteMetrics
from cumulo.web.http import PrefixDispatcher, RequestIdMiddleware, answer_lifespan

if TYPE_CHECKING:
    from cumulo.compute.agent.manager import ComputeHost, ComputeManager
    from cumulo.compute.drivers.probe import HostFacts
    from cumulo.compute.service.servers import ComputeService
    from cumulo.compute.workers import Workers
    from cumulo.identity.service import IdentityService
    from cumulo.image.demo.seeder import DemoSeeder
    from cumulo.image.service import ImageService
    from cumulo.network.agent.wiring import NetworkAgents
    from cumulo.network.service import NetworkService
    from cumulo.paas.autoscaler import Autoscaler
    from cumulo.paas.deps import PaasServices
    from cumulo.paas.engine.runner import PaasEngine
    from cumulo.placement.service import Placement
    from cumulo.runtime_volumes import HostBlockStore
    from cumulo.volume.service import VolumeService
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


@dataclass
class Services:
    """The cloud's API-side services, as the assembly holds them (the CLI and tests reach into a
    running cloud through `Cloud.services`). No lower layer sees this type: `asgi_app` hands each
    API family only its own dependencies. Workers are not here on purpose: APIs talk to them by bus."""

    conf: Settings
    db: Database
    bus: Bus
    identity: IdentityService
    images: ImageService
    compute: ComputeService
    placement: Placement
    network: NetworkService
    volume: VolumeService
    catalog: tuple[CatalogEntry, ...] = CATALOG


def private_state_dir(path: Path) -> None:
    """The state dir, 0700 (an existing one is chmod'ed): the database, images, instance dirs and
    container roots below it are the cloud user's alone (docs/operations.md: modes and exceptions)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)


class VolumeImages:
    """The volume API's view of the image service (cumulo.volume.worker_api.ImageSource): the
    images a caller may see, and the queued image an upload fills (private)."""

    CORE = frozenset({"id", "name", "status", "size", "min_disk", "min_ram", "disk_format", "container_format",
                      "owner", "visibility", "protected", "checksum", "created_at", "updated_at", "tags", "file",
                      "schema", "self", "virtual_size", "os_hidden", "os_hash_algo", "os_hash_value", "locations",
                      "direct_url", "stores"})

    def __init__(self, images: ImageService) -> None:
        self.images = images

    async def image_for_volume(self, ctx: Any, image_id: str) -> dict[str, Any] | None:
        try:
            image = await self.images.get(ctx, image_id)
        except errors.NotFound:
            return None
        props = {k: v for k, v in image.items() if k not in self.CORE and isinstance(v, str)}
        return {**{k: image.get(k) for k in ("id", "name", "status", "size", "min_disk", "min_ram", "disk_format",
                                            "container_format", "checksum")}, "properties": props}

    async def create_image_for_upload(self, ctx: Any, *, name: str, disk_format: str, container_format: str,
                                      visibility: str, protected: bool) -> dict[str, Any]:
        """A queued image of the caller's project with the request's visibility and protected flag
        (Cinder 3.1; Glance's publicize rule holds), which the worker fills."""
        return await self.images.create_snapshot_record(ctx, name, {}, disk_format, container_format,
                                                        visibility=visibility, protected=protected)


class Cloud:
    """The whole cloud in one process. `start()` brings it up, `asgi_app()` serves it."""

    def __init__(self, conf: Settings) -> None:
        from cumulo.compute.service.servers import ComputeService
        from cumulo.identity.service import IdentityService
        from cumulo.image.service import ImageService
        from cumulo.network.service import NetworkService
        from cumulo.placement.service import Placement
        from cumulo.volume.rpc import VolumeAPI
        from cumulo.volume.service import VolumeService

        self.conf = conf
        private_state_dir(conf.state_dir)
        self.db = Database(conf.database_url)
        self.bus = make_bus(conf.transport)
        placement = Placement(self.db, conf)
        images = ImageService(self.db, conf)
        network = NetworkService(self.db, conf)
        self.services = Services(
            conf=conf,
            db=self.db,
            bus=self.bus,
            identity=IdentityService(self.db, conf),
            images=images,
            compute=ComputeService(self.db, self.bus, conf, images=images, placement=placement, network=network),
            placement=placement,
            network=network,
            # the volume worker of this host (served in start()) does the slow work; the API casts
            volume=VolumeService(self.db, conf, VolumeAPI(self.bus, conf.host_name)),
        )
        self.services.volume.images = VolumeImages(images)
        # Nova's side of volumes (compute/volumes.py): the volume service as compute calls it.
        from cumulo.runtime_volumes import ServerMappings, VolumeClientAdapter

        self.services.compute.volumes = VolumeClientAdapter(self.services.volume)
        self.services.volume.nova_holds = ServerMappings(self.db).holds  # Cinder asks Nova (OSSA-2023-003)
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
        from cumulo.compute.drivers import load_driver
        from cumulo.compute.workers import NodeSetup, assemble

        conf, s = self.conf, self.services
        await self.db.create_all()
        self.credentials = await s.identity.bootstrap()
        await s.compute.bootstrap()
        admin = await s.identity.directory.list_projects({"name": "admin", "domain_id": "default"})
        await s.images.bootstrap()
        if admin:  # the demo images, after the image service is up
            from cumulo.image.demo.seeder import DemoSeeder

            self.demo = DemoSeeder(s.images)
            await self.demo.start(admin[0]["id"])
        self.write_clouds_yaml()

        setups: list[NodeSetup] = []
        for plan in self.nodes:
            if plan.local:
                LOG.info("local compute host %s: node %s runs the %s driver (shared pool, ratios %s)",
                         plan.host, plan.node, plan.driver, plan.ratios or "from the settings")
            # The driver is named for its node: per-node state (e.g. the fake driver's dir) stays apart.
            driver = load_driver(plan.driver, conf, plan.node, local=plan.local)
            setups.append(NodeSetup(plan.host, plan.node, driver, plan.ratios, plan.pooled))
        # One agent (one nova-compute service, one bus topic) per host, dispatching to its nodes.
        from cumulo.network.rpc import NetworkAgentAPI

        self.volume_worker = self.assemble_volume_worker()
        self.workers = assemble(self.db, self.bus, conf, s.placement, s.images, setups, network=s.network,
                                nics=NetworkAgentAPI(self.bus), volumes=s.compute.volumes,
                                host_volumes=self.host_volumes(self.volume_worker))
        self.managers, self.hosts = self.workers.managers, self.workers.hosts
        self.network_agents = self.assemble_network_agents()
        await self.bus.start()
        await self.first_start_networks(admin[0]["id"] if admin else None)
        await self.network_agents.start()  # the host made to match the DB, orphans reaped
        await self.volume_worker.start()  # store dirs made, rows left mid-work settled
        await self.workers.start()
        await self.start_paas()

    async def start_paas(self) -> None:
        """The PaaS engine after the conductor (its recovery and reaping run in the background),
        the built-in products, and the autoscaler."""
        from cumulo.paas.autoscaler import Autoscaler
        from cumulo.paas.engine.runner import TOPIC, PaasEngine
        from cumulo.paas.products.builtin import ensure_builtin_products

        services = self.paas_services()
        self.paas_engine = PaasEngine(services)
        self.bus.serve(TOPIC, self.paas_engine.endpoint())  # `run_task` casts
        await self.paas_engine.start()
        await ensure_builtin_products(self.db)
        self.paas_autoscaler = Autoscaler(services, self.paas_engine)
        await self.paas_autoscaler.start()

    def paas_services(self) -> PaasServices:
        """The services as the PaaS engine and its API call them."""
        from cumulo.paas.deps import PaasServices

        s = self.services
        return PaasServices(conf=s.conf, db=s.db, bus=s.bus, identity=s.identity, images=s.images,
                            compute=s.compute, network=s.network, volume=s.volume)

    def assemble_network_agents(self) -> NetworkAgents:
        """One network agent per compute host; the local one plumbs when it runs a real driver."""
        from cumulo.compute.metadata_docs import documents
        from cumulo.network.agent.wiring import assemble_agents, listener
        from cumulo.network.metadata import MetadataService

        conf, s = self.conf, self.services
        real = any(p.local and p.driver != "fake" for p in self.nodes)
        metadata = MetadataService(self.db, documents(self.db)) if real else None  # 169.254.169.254
        agents = assemble_agents(self.db, self.bus, s.network, [p.host for p in self.nodes], local_host=conf.host_name,
                                 real_local=real, external_link=conf.external_link, metadata=metadata,
                                 owner=str(conf.state_dir.resolve()))
        s.network.dataplane_listener = listener(self.db, self.bus, agents)
        return agents

    def assemble_volume_worker(self) -> VolumeManager:
        """The local host's volume worker on file-backed storage under the state dir, served on the bus."""
        from cumulo.blockstore import open_store
        from cumulo.blockstore.base import StoreConfig
        from cumulo.volume.rpc import volume_topic
        from cumulo.volume.worker.manager import VolumeManager

        images = self.services.images

        async def image_file(image_id: str) -> tuple[Path, str]:
            path, disk_format = await images.local_file(image_id)  # NotFound when gone
            return Path(path), str(disk_format)

        async def image_fill(image_id: str, path: Path | None) -> None:
            if path is None:
                await images.mark_failed(image_id)
            else:
                await images.upload_from_path(image_id, str(path))

        config = StoreConfig.under(self.conf.state_dir)
        store = open_store("file", config)
        worker = VolumeManager(self.db, store, self.conf.host_name, image_files=image_file, image_fill=image_fill,
                               scratch=config.run_dir)
        self.bus.serve(volume_topic(self.conf.host_name), worker)
        # Cinder's "volume-extended" event to Nova: the servers holding an extended volume are told.
        from cumulo.compute.service.volume_attachments import VolumeAttachmentService
        from cumulo.runtime_volumes import VolumeEventsAdapter

        worker.compute_events = VolumeEventsAdapter(VolumeAttachmentService(self.services.compute).volume_extended)
        return worker

    def host_volumes(self, worker: VolumeManager) -> HostBlockStore:
        """The agents' view of this host's block store: volume files by id, and the loop-device table
        the runc driver records in (the same dir: StoreConfig.under(state_dir).run_dir / "loops")."""
        from cumulo.blockstore.base import StoreConfig
        from cumulo.blockstore.loop import LoopTable
        from cumulo.runtime_volumes import HostBlockStore

        return HostBlockStore(worker.store, LoopTable(StoreConfig.under(self.conf.state_dir).run_dir / "loops"))

    async def first_start_networks(self, admin_project: str | None) -> None:
        """public, and the demo project's private network and router (network.topology)."""
        from cumulo.network.topology import ensure_default_topology

        if admin_project is None:
            return
        demo = await self.services.identity.directory.list_projects({"name": "demo", "domain_id": "default"})
        await ensure_default_topology(self.services.network, self.conf, admin_project=admin_project,
                                      demo_project=demo[0]["id"] if demo else None)

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
        return self.conf.state_dir / "clouds.yaml"

    def write_clouds_yaml(self) -> None:
        """Write DIR/clouds.yaml (0600). Keeps existing passwords; refreshes the auth URL."""
        path = self.clouds_yaml_path()
        existing: dict[str, Any] = {}
        if path.exists():
            existing = yaml.safe_load(path.read_text()) or {}
        clouds: dict[str, Any] = existing.get("clouds", {})
        auth_url = f"{self.conf.public_url}/identity"
        for cloud, user in (("cumulo", "admin"), ("cumulo-demo", "demo")):
            entry = clouds.get(cloud, {})
            auth = entry.get("auth", {})
            password = self.credentials.get(user, {}).get("password") or auth.get("password")
            if not password:
                continue
            project = self.credentials.get(user, {}).get("project") or auth.get("project_name", user)
            clouds[cloud] = {
                "auth": {
                    "auth_url": auth_url,
                    "username": user,
                    "password": password,
                    "project_name": project,
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": self.conf.region,
                "identity_api_version": 3,
                "interface": "public",
            }
        data = yaml.safe_dump({"clouds": clouds}, sort_keys=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.chmod(path, 0o600)

    def asgi_app(self) -> ASGIApp:
        from cumulo.compute.api import openapi_ops as compute_openapi
        from cumulo.compute.api.app import make_app as compute_app
        from cumulo.compute.api.deps import ComputeDeps
        from cumulo.identity.api.app import make_app as identity_app
        from cumulo.image.api import make_app as image_app
        from cumulo.network.api import make_app as network_app
        from cumulo.occi.api import make_app as occi_app
        from cumulo.occi.deps import OcciServices
        from cumulo.paas.api.app import make_app as paas_app
        from cumulo.volume.api.app import make_app as volume_app

        s = self.services
        axis = compute_openapi.MICROVERSIONS  # the image API's OpenAPI document states the compute microversion too
        compute_deps = ComputeDeps(
            conf=s.conf, db=s.db, compute=s.compute, images=s.images, identity=s.identity, placement=s.placement
        )

        async def root(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                await answer_lifespan(receive, send)
                return
            request = Request(scope, receive)
            base = str(request.base_url).rstrip("/")
            body = {"services": [{"type": e.type, "name": e.name, "url": base + e.path.replace("/$(project_id)s", "")}
                                 for e in s.catalog]}
            status = 200 if scope.get("path") in ("/", "") else 404
            await JSONResponse(body if status == 200 else {"error": "not found"}, status_code=status)(
                scope, receive, send
            )

        apps: dict[str, ASGIApp] = {  # each family's requests timed by route template
            "/identity": RouteMetrics(identity_app(s.identity, s.conf, s.catalog), "identity"),
            "/compute": RouteMetrics(compute_app(compute_deps, authenticator=s.identity), "compute"),
            "/image": RouteMetrics(image_app(s.images, axis=axis, authenticator=s.identity), "image"),
            "/networking": RouteMetrics(network_app(s.network, axis=axis, authenticator=s.identity), "network"),
            "/volume": RouteMetrics(volume_app(s.volume, authenticator=s.identity), "volume"),
            # OCCI 1.2 over the same services (never the OpenStack HTTP APIs)
            "/occi": RouteMetrics(occi_app(OcciServices(
                conf=s.conf, db=s.db, identity=s.identity, images=s.images, compute=s.compute, network=s.network,
                volume=s.volume, placement=s.placement)), "occi"),
            # the PaaS manager (issue 13); the engine comes with start(): until then its writes answer 503
            "/paas": RouteMetrics(paas_app(self.paas_services(), lambda: self.paas_engine, s.identity), "paas"),
        }
        return RequestIdMiddleware(
            PrefixDispatcher(apps, root), header_names=("x-openstack-request-id", "x-compute-request-id")
        )
