"""The separate processes of a cloud (issue 14, OWNERS D1): `cumulo api`, `cumulo conductor`,
`cumulo scheduler` and `cumulo compute --host NAME`, each assembled from runtime_roles as `cumulo
up` (runtime.Cloud) is, over one database and one bus (PostgreSQL and RabbitMQ: the processes
share nothing else).

| process   | runs                                                                                   |
|-----------|----------------------------------------------------------------------------------------|
| api       | the HTTP front door; the migrations and the first-start bootstrap (identity, flavors,  |
|           | demo images, first-start networks, built-in PaaS products) once, under the advisory    |
|           | lock "cumulo-bootstrap"; a PaaS engine for the tasks its requests start                |
| conductor | the conductor (builds, recovery scans), a PaaS engine (takes over tasks whose lease    |
|           | ran out), the PaaS autoscaler while it leads (`try_leader("paas-autoscaler")`)         |
| scheduler | the scheduler                                                                          |
| compute   | the host's compute agent (its nodes, plus `--fake-hosts N` fake hosts), its network    |
|           | agent (and metadata service), its volume worker, the metrics of its servers            |

Every process but the API waits until the schema is at the newest revision (`wait_for_schema`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo import runtime_roles as roles
from cumulo.bus.transports import make_bus
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.network.agent.wiring import listener
from cumulo.runtime import local_driver_names, plan_nodes, private_state_dir

if TYPE_CHECKING:
    from cumulo.compute.agent.manager import ComputeHost, ComputeManager
    from cumulo.compute.conductor.manager import Conductor
    from cumulo.compute.specs import ImageBackend
    from cumulo.compute.transfer.server import TransferServer
    from cumulo.db.locks import Leadership
    from cumulo.image.demo.seeder import DemoSeeder
    from cumulo.image.remote import RemoteImages
    from cumulo.network.agent.wiring import NetworkAgents
    from cumulo.paas.autoscaler import Autoscaler
    from cumulo.paas.engine.runner import PaasEngine
    from cumulo.scheduler.manager import SchedulerManager
    from cumulo.volume.worker.manager import VolumeManager

LOG = logging.getLogger(__name__)

BOOTSTRAP_LOCK = "cumulo-bootstrap"
AUTOSCALER_LEADER = "paas-autoscaler"
IMAGE_RECONCILE_LEADER = "image-store-reconcile"


async def schema_at_head(db: Database) -> bool:
    """Whether the database's Alembic revisions are the newest of every branch."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from cumulo.db import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())

    def current(sync_conn: Any) -> set[str]:
        return set(MigrationContext.configure(sync_conn).get_current_heads())

    async with db.read() as conn:
        return await conn.run_sync(current) == heads


async def wait_for_schema(db: Database, *, timeout: float = 600.0) -> None:
    """Wait (polling) until an API process has brought the schema to head; TimeoutError after
    `timeout` seconds, naming what to start."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    logged = False
    while True:
        try:
            if await schema_at_head(db):
                return
        except Exception as exc:  # noqa: BLE001 - the database may not be reachable yet
            LOG.debug("schema check failed: %s", exc)
        if loop.time() > deadline:
            raise TimeoutError(f"the database schema is not at the newest revision after {timeout:g} s: "
                               "start `cumulo api` (it runs the migrations) against the same --database")
        if not logged:
            LOG.warning("waiting for `cumulo api` to bring the database schema to the newest revision")
            logged = True
        await asyncio.sleep(1.0)


async def bootstrap_once(s: roles.Services, *, reconcile_images: bool) -> roles.Bootstrap:
    """The API side's bootstrap under the advisory lock `cumulo-bootstrap` (the first API process
    runs it; the others, started at the same time, wait and find everything made), and this
    process's clouds.yaml."""
    async with s.db.advisory_lock(BOOTSTRAP_LOCK):
        first = await roles.bootstrap(s, reconcile_images=reconcile_images)
        roles.write_clouds_yaml(s.conf, first.credentials)
    return first


async def first_start_once(s: roles.Services, admin_project: str | None) -> None:
    """The first-start networks and the built-in PaaS products, under the same lock (once the bus
    runs: the networks tell the agents)."""
    from cumulo.paas.products.builtin import ensure_builtin_products

    async with s.db.advisory_lock(BOOTSTRAP_LOCK):
        await roles.first_start_networks(s, admin_project)
        await ensure_builtin_products(s.db)


class Process:
    """One process of a split cloud: the DB, the bus and the API-side services it calls."""

    role = "process"

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        private_state_dir(conf.state_dir)
        self.db = Database(conf.database_url)
        self.bus = make_bus(conf.transport)
        self.services = roles.make_services(conf, self.db, self.bus)
        # the data-plane listener: a `sync` cast to every host with a bound port and to the L3
        # host, whichever process serves them (the compute process's agents add theirs)
        self.services.network.dataplane_listener = listener(self.db, self.bus, None, l3_host=conf.l3_host or None,
                                                            everywhere=True)

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        await self.bus.stop()
        await self.db.dispose()


class ApiProcess(Process):
    """`cumulo api`: the front door, the bootstrap once, a PaaS engine."""

    role = "api"

    def __init__(self, conf: Settings) -> None:
        super().__init__(conf)
        self.credentials: dict[str, dict[str, str]] = {}
        self.demo: DemoSeeder | None = None
        self.paas_engine: PaasEngine | None = None
        self._image_lead: Leadership | None = None

    async def start(self) -> None:
        s = self.services
        # The image store's crash reconcile (uploads cut short, temp files, unreferenced bytes) only
        # in the first API process up: a later one would cut the running ones' uploads short.
        self._image_lead = await self.db.try_leader(IMAGE_RECONCILE_LEADER)
        first = await bootstrap_once(s, reconcile_images=self._image_lead is not None)
        self.credentials, self.demo = first.credentials, first.demo
        await self.bus.start()
        await first_start_once(s, first.admin_project)
        self.paas_engine = await roles.start_paas_engine(s)

    async def stop(self) -> None:
        if self.paas_engine is not None:
            await self.paas_engine.stop()
        if self.demo is not None:
            await self.demo.stop()
        if self._image_lead is not None:
            with contextlib.suppress(Exception):
                await self._image_lead.release()
        await super().stop()

    def asgi_app(self) -> ASGIApp:
        return roles.asgi_app(self.services, lambda: self.paas_engine)


class ConductorProcess(Process):
    """`cumulo conductor`: the conductor, a PaaS engine, the autoscaler on the leader."""

    role = "conductor"

    def __init__(self, conf: Settings) -> None:
        from cumulo.compute.conductor.manager import Conductor
        from cumulo.compute.rpc import CONDUCTOR

        super().__init__(conf)
        self.conductor: Conductor = Conductor(self.db, self.bus, conf, self.services.placement)
        self.bus.serve(CONDUCTOR, self.conductor)
        self.paas_engine: PaasEngine | None = None
        self.autoscaler: Autoscaler | None = None
        self._leading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await wait_for_schema(self.db)
        await self.bus.start()
        await self.conductor.start()  # its service row, heartbeat and recovery scans
        self.paas_engine = await roles.start_paas_engine(self.services)
        self._leading = asyncio.create_task(self._lead_autoscaler(), name="paas-autoscaler-leader")

    async def _lead_autoscaler(self) -> None:
        """Run the autoscaler while this process holds the cluster-wide leadership; try again
        every autoscale interval (a leader that died released it with its DB session)."""
        period = max(float(self.conf.paas.autoscale_interval), 1.0)
        lead: Leadership | None = None
        try:
            while True:
                try:
                    if lead is None:
                        lead = await self.db.try_leader(AUTOSCALER_LEADER)
                        if lead is not None and self.paas_engine is not None:
                            LOG.info("this conductor runs the PaaS autoscaler")
                            self.autoscaler = await roles.start_autoscaler(self.services, self.paas_engine)
                    elif not await lead.still_held():
                        LOG.warning("PaaS autoscaler leadership lost; stopping it here")
                        lead = None
                        await self._stop_autoscaler()
                except Exception:  # noqa: BLE001 - a DB hiccup: try again next period
                    LOG.warning("PaaS autoscaler leadership check failed", exc_info=True)
                await asyncio.sleep(period)
        finally:
            await self._stop_autoscaler()
            if lead is not None:
                with contextlib.suppress(Exception):
                    await lead.release()

    async def _stop_autoscaler(self) -> None:
        scaler, self.autoscaler = self.autoscaler, None
        if scaler is not None:
            await scaler.stop()

    async def stop(self) -> None:
        if self._leading is not None:
            self._leading.cancel()
            await asyncio.gather(self._leading, return_exceptions=True)
        if self.paas_engine is not None:
            await self.paas_engine.stop()
        await self.conductor.stop()
        await super().stop()


class SchedulerProcess(Process):
    """`cumulo scheduler`."""

    role = "scheduler"

    def __init__(self, conf: Settings) -> None:
        from cumulo.compute.rpc import SCHEDULER
        from cumulo.scheduler.manager import SchedulerManager

        super().__init__(conf)
        self.scheduler: SchedulerManager = SchedulerManager(self.db, conf, self.services.placement)
        self.bus.serve(SCHEDULER, self.scheduler)

    async def start(self) -> None:
        await wait_for_schema(self.db)
        await self.bus.start()
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        await super().stop()


class ComputeProcess(Process):
    """`cumulo compute --host NAME [--fake-hosts N]`: the host's agents (conf.host_name)."""

    role = "compute"

    def __init__(self, conf: Settings) -> None:
        super().__init__(conf)
        self.local_drivers = local_driver_names(conf)
        self.nodes = plan_nodes(conf, self.local_drivers)
        self.hosts: list[ComputeHost] = []
        self.managers: list[ComputeManager] = []
        self.network_agents: NetworkAgents | None = None
        self.volume_worker: VolumeManager | None = None
        self.remote_images: RemoteImages | None = None
        self.transfer: TransferServer | None = None  # the migration transfer endpoint (with underlay_ip)

    async def start(self) -> None:
        from cumulo.compute.transfer.wiring import start_host_transfers
        from cumulo.compute.workers import assemble_hosts, start_hosts
        from cumulo.network.rpc import NetworkAgentAPI

        conf, s = self.conf, self.services
        await wait_for_schema(self.db)
        setups = roles.node_setups(conf, self.nodes)
        images: ImageBackend = s.images  # without api_url: the image store of this state dir, as in `cumulo up`
        if conf.api_url:  # image bytes downloaded from an API process into <state_dir>/image-cache
            from cumulo.image.remote import RemoteImages

            self.remote_images = RemoteImages(self.db, conf, conf.host_name)
            images = self.remote_images
        self.volume_worker = roles.volume_worker(s, self.remote_images)
        self.hosts, self.managers = assemble_hosts(
            self.db, self.bus, conf, s.placement, images, setups, network=s.network,
            nics=NetworkAgentAPI(self.bus), volumes=s.compute.volumes,
            host_volumes=roles.host_volumes(conf, self.volume_worker))
        self.network_agents = roles.network_agents(s, self.nodes, everywhere=True)
        await self.bus.start()
        await self.network_agents.start()
        await self.volume_worker.start()
        # 16 at a time: `--fake-hosts 1000` all at once only queued for the database's connections.
        await start_hosts(self.hosts)
        self.transfer = await start_host_transfers(self.db, conf, conf.host_name, self.managers)

    async def stop(self) -> None:
        if self.transfer is not None:
            await self.transfer.stop()
        if self.network_agents is not None:
            await self.network_agents.stop()
        for h in self.hosts:
            await h.stop()
        if self.remote_images is not None:
            await self.remote_images.close()
        await super().stop()


ROLES: dict[str, type[Process]] = {
    "api": ApiProcess,
    "conductor": ConductorProcess,
    "scheduler": SchedulerProcess,
    "compute": ComputeProcess,
}


class Lifespan:
    """An API process as one ASGI app: the process starts at the server's lifespan startup and
    stops at its shutdown (what each uvicorn worker of `cumulo api --workers N` runs)."""

    def __init__(self, process: ApiProcess) -> None:
        self.process = process
        self.app = process.asgi_app()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.process.start()
                except Exception as exc:
                    LOG.exception("the API process failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.process.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def api_worker_app() -> Lifespan:
    """The uvicorn factory of `cumulo api --workers N` (each worker process calls it): the
    settings from the environment the command line set (CUMULO_CONFIG and CUMULO_* values)."""
    from cumulo import conf as conf_mod

    return Lifespan(ApiProcess(conf_mod.load()))
