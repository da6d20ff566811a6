"""The parts every process of a cloud is assembled from (issue 14, OWNERS D1).

`cumulo up` (runtime.Cloud) runs all of them in one process; `cumulo api`, `cumulo conductor`,
`cumulo scheduler` and `cumulo compute` (runtime_procs) each run their share. Each function here
is the one place its part is wired, so the all-in-one cloud and the separate processes never drift:

- `make_services`: the API-side services over the DB and the bus (every process builds them: the
  conductor's PaaS engine and the compute agents call them too);
- `bootstrap`, `first_start_networks`, `write_clouds_yaml`: the first start (API side);
- `node_setups`, `network_agents`, `volume_worker`, `host_volumes`: a compute host's agents;
- `paas_services`, `start_paas_engine`, `start_autoscaler`: the PaaS manager's workers;
- `asgi_app`: the HTTP front door.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo import errors
from cumulo.bus.base import Bus
from cumulo.catalog import CATALOG, CatalogEntry
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.metrics.http import RouteMetrics
from cumulo.web.http import PrefixDispatcher, RequestIdMiddleware, answer_lifespan

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.compute.workers import NodeSetup
    from cumulo.identity.service import IdentityService
    from cumulo.image.demo.seeder import DemoSeeder
    from cumulo.image.remote import RemoteImages
    from cumulo.image.service import ImageService
    from cumulo.network.agent.wiring import NetworkAgents
    from cumulo.network.service import NetworkService
    from cumulo.paas.autoscaler import Autoscaler
    from cumulo.paas.deps import PaasServices
    from cumulo.paas.engine.base import PaasEngineAPI
    from cumulo.paas.engine.runner import PaasEngine
    from cumulo.placement.service import Placement
    from cumulo.runtime_volumes import HostBlockStore
    from cumulo.volume.service import VolumeService
    from cumulo.volume.worker.manager import VolumeManager

LOG = logging.getLogger(__name__)


class NodePlan(Protocol):
    """A planned compute node (runtime.NodePlan) as the assembly reads it."""

    @property
    def host(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def driver(self) -> str: ...
    @property
    def local(self) -> bool: ...
    @property
    def ratios(self) -> dict[str, float]: ...
    @property
    def pooled(self) -> bool: ...


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


def make_services(conf: Settings, db: Database, bus: Bus) -> Services:
    """The API-side services over `db` and `bus`. New volumes go to the volume worker of
    `conf.volume_host` (empty: `conf.host_name`, the local host in `cumulo up`)."""
    from cumulo.compute.service.servers import ComputeService
    from cumulo.identity.service import IdentityService
    from cumulo.image.service import ImageService
    from cumulo.network.service import NetworkService
    from cumulo.placement.service import Placement
    from cumulo.runtime_volumes import ServerMappings, VolumeClientAdapter
    from cumulo.volume.rpc import VolumeAPI
    from cumulo.volume.service import VolumeService

    placement = Placement(db, conf)
    images = ImageService(db, conf)
    network = NetworkService(db, conf)
    services = Services(
        conf=conf,
        db=db,
        bus=bus,
        identity=IdentityService(db, conf),
        images=images,
        compute=ComputeService(db, bus, conf, images=images, placement=placement, network=network),
        placement=placement,
        network=network,
        # the volume worker of this host does the slow work; the API casts
        volume=VolumeService(db, conf, VolumeAPI(bus, conf.volume_host or conf.host_name)),
    )
    services.volume.images = VolumeImages(images)
    # Nova's side of volumes (compute/volumes.py): the volume service as compute calls it.
    services.compute.volumes = VolumeClientAdapter(services.volume)
    services.volume.nova_holds = ServerMappings(db).holds  # Cinder asks Nova (OSSA-2023-003)
    return services


@dataclass
class Bootstrap:
    """What the first-start bootstrap made: the users' credentials (clouds.yaml), the admin
    project (None on a cloud without one) and the demo-image seeder (its tiny-vm build runs on)."""

    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    admin_project: str | None = None
    demo: DemoSeeder | None = None


async def bootstrap(s: Services, *, reconcile_images: bool = True) -> Bootstrap:
    """The schema at head, then identity (domain, roles, admin/demo), the default flavors, the
    image service and the demo images. Idempotent: every start runs it (the API processes of a
    split cloud under one advisory lock). `reconcile_images` False (an API process of a split
    cloud that is not the image store's first): neither the store's crash reconcile nor the demo
    images (the first process seeds them and runs the tiny-vm build, once)."""
    await s.db.create_all()
    out = Bootstrap(credentials=await s.identity.bootstrap())
    await s.compute.bootstrap()
    admin = await s.identity.directory.list_projects({"name": "admin", "domain_id": "default"})
    out.admin_project = admin[0]["id"] if admin else None
    await s.images.bootstrap(reconcile=reconcile_images)
    if admin and reconcile_images:  # the demo images, after the image service is up
        from cumulo.image.demo.seeder import DemoSeeder

        out.demo = DemoSeeder(s.images)
        await out.demo.start(admin[0]["id"])
    return out


async def first_start_networks(s: Services, admin_project: str | None) -> None:
    """public, and the demo project's private network and router (network.topology)."""
    from cumulo.network.topology import ensure_default_topology

    if admin_project is None:
        return
    demo = await s.identity.directory.list_projects({"name": "demo", "domain_id": "default"})
    await ensure_default_topology(s.network, s.conf, admin_project=admin_project,
                                  demo_project=demo[0]["id"] if demo else None)


def clouds_yaml_path(conf: Settings) -> Path:
    return conf.state_dir / "clouds.yaml"


def write_clouds_yaml(conf: Settings, credentials: dict[str, dict[str, str]]) -> None:
    """Write DIR/clouds.yaml (0600). Keeps existing passwords; refreshes the auth URL."""
    path = clouds_yaml_path(conf)
    existing: dict[str, Any] = {}
    if path.exists():
        existing = yaml.safe_load(path.read_text()) or {}
    clouds: dict[str, Any] = existing.get("clouds", {})
    auth_url = f"{conf.public_url}/identity"
    for cloud, user in (("cumulo", "admin"), ("cumulo-demo", "demo")):
        entry = clouds.get(cloud, {})
        auth = entry.get("auth", {})
        password = credentials.get(user, {}).get("password") or auth.get("password")
        if not password:
            continue
        project = credentials.get(user, {}).get("project") or auth.get("project_name", user)
        clouds[cloud] = {
            "auth": {
                "auth_url": auth_url,
                "username": user,
                "password": password,
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": conf.region,
            "identity_api_version": 3,
            "interface": "public",
        }
    data = yaml.safe_dump({"clouds": clouds}, sort_keys=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


# ---- a compute host's agents ----------------------------------------------------------------


def node_setups(conf: Settings, nodes: Sequence[NodePlan]) -> list[NodeSetup]:
    """Each planned node with its driver loaded (named for its node: per-node state, e.g. the fake
    driver's dir, stays apart)."""
    from cumulo.compute.drivers import load_driver
    from cumulo.compute.workers import NodeSetup

    setups: list[NodeSetup] = []
    for plan in nodes:
        if plan.local:
            LOG.info("local compute host %s: node %s runs the %s driver (shared pool, ratios %s)",
                     plan.host, plan.node, plan.driver, plan.ratios or "from the settings")
        driver = load_driver(plan.driver, conf, plan.node, local=plan.local)
        setups.append(NodeSetup(plan.host, plan.node, driver, plan.ratios, plan.pooled))
    return setups


def network_agents(s: Services, nodes: Sequence[NodePlan], *, everywhere: bool = False) -> NetworkAgents:
    """One network agent per compute host of `nodes`; the local one plumbs when it runs a real
    driver. The network service's data-plane listener casts to them (`everywhere`: a split cloud's
    `cumulo compute`, to every host that carries something, whichever process serves it)."""
    from cumulo.compute.metadata_docs import documents
    from cumulo.netplane import physnet
    from cumulo.network.agent.wiring import assemble_agents, listener
    from cumulo.network.metadata import MetadataService

    conf = s.conf
    real = any(p.local and p.driver != "fake" for p in nodes)
    metadata = MetadataService(s.db, documents(s.db)) if real else None  # 169.254.169.254
    agents = assemble_agents(s.db, s.bus, s.network, [p.host for p in nodes], local_host=conf.host_name,
                             real_local=real, external_link=conf.external_link, metadata=metadata,
                             owner=str(conf.state_dir.resolve()),
                             underlay_ip=conf.underlay_ip, l3_host=conf.l3_host or None,  # VXLAN; routers' host
                             physnets=physnet.mappings(conf.physical_interface_mappings))
    s.network.dataplane_listener = listener(s.db, s.bus, agents, l3_host=conf.l3_host or None, everywhere=everywhere)
    return agents


def volume_worker(s: Services, images: RemoteImages | None = None) -> VolumeManager:
    """The local host's volume worker on file-backed storage under the state dir, served on the bus.
    `images`: the host's image backend when it is not the image service itself (a `cumulo compute`
    host's image.remote.RemoteImages: bytes downloaded into its cache)."""
    from cumulo.blockstore import open_store
    from cumulo.blockstore.base import StoreConfig
    from cumulo.compute.service.volume_attachments import VolumeAttachmentService
    from cumulo.runtime_volumes import VolumeEventsAdapter
    from cumulo.volume.rpc import volume_topic
    from cumulo.volume.worker.manager import VolumeManager

    backend: ImageService | RemoteImages = images or s.images

    async def image_file(image_id: str) -> tuple[Path, str]:
        path, disk_format = await backend.local_file(image_id)  # NotFound when gone
        return Path(path), str(disk_format)

    async def image_fill(image_id: str, path: Path | None) -> None:
        if path is None:
            await backend.mark_failed(image_id)
        else:
            await backend.upload_from_path(image_id, str(path))

    config = StoreConfig.under(s.conf.state_dir)
    store = open_store("file", config)
    worker = VolumeManager(s.db, store, s.conf.host_name, image_files=image_file, image_fill=image_fill,
                           scratch=config.run_dir)
    if s.conf.underlay_ip:  # servers on other hosts reach this host's volumes over NBD
        from cumulo.volume.worker.exports import NbdExports

        worker.exports = NbdExports(s.db, store, config.run_dir, s.conf.underlay_ip, s.conf.volume_export_ports)
    s.bus.serve(volume_topic(s.conf.host_name), worker)
    # Cinder's "volume-extended" event to Nova: the servers holding an extended volume are told.
    worker.compute_events = VolumeEventsAdapter(VolumeAttachmentService(s.compute).volume_extended)
    return worker


def host_volumes(conf: Settings, worker: VolumeManager) -> HostBlockStore:
    """The agents' view of this host's block store: volume files by id, and the loop-device table
    the runc driver records in (the same dir: StoreConfig.under(state_dir).run_dir / "loops")."""
    from cumulo.blockstore.base import StoreConfig
    from cumulo.blockstore.loop import LoopTable
    from cumulo.runtime_volumes import HostBlockStore

    run_dir = StoreConfig.under(conf.state_dir).run_dir
    return HostBlockStore(worker.store, LoopTable(run_dir / "loops"), worker.db, run_dir / "nbd-keys")


# ---- the PaaS manager's workers -------------------------------------------------------------


def paas_services(s: Services) -> PaasServices:
    """The services as the PaaS engine and its API call them."""
    from cumulo.paas.deps import PaasServices

    return PaasServices(conf=s.conf, db=s.db, bus=s.bus, identity=s.identity, images=s.images,
                        compute=s.compute, network=s.network, volume=s.volume)


async def start_paas_engine(s: Services) -> PaasEngine:
    """A PaaS engine served on its bus topic and started (its recovery and reaping run in the
    background). Several engines may run (leases on tasks); each API process runs one for its
    own requests."""
    from cumulo.paas.engine.runner import TOPIC, PaasEngine

    engine = PaasEngine(paas_services(s))
    s.bus.serve(TOPIC, engine.endpoint())  # `run_task` casts
    await engine.start()
    return engine


async def start_autoscaler(s: Services, engine: PaasEngine) -> Autoscaler:
    from cumulo.paas.autoscaler import Autoscaler

    autoscaler = Autoscaler(paas_services(s), engine)
    await autoscaler.start()
    return autoscaler


# ---- the HTTP front door --------------------------------------------------------------------


def asgi_app(s: Services, paas_engine: Callable[[], PaasEngineAPI | None]) -> ASGIApp:
    """Every API family under its path prefix, the catalog at /, request ids and route metrics.
    `paas_engine` answers the PaaS engine once started (the /paas writes answer 503 until then)."""
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
        "/paas": RouteMetrics(paas_app(paas_services(s), paas_engine, s.identity), "paas"),
    }
    return RequestIdMiddleware(
        PrefixDispatcher(apps, root), header_names=("x-openstack-request-id", "x-compute-request-id")
    )
