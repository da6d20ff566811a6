"""Assembles the all-in-one cloud: DB, bus, services, workers and the HTTP front door."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.bus import Bus, compute_topic, make_bus
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.web.http import PrefixDispatcher, RequestIdMiddleware

if TYPE_CHECKING:
    from cumulo.compute.manager import ComputeManager
    from cumulo.compute.service import ComputeService
    from cumulo.identity.service import IdentityService
    from cumulo.image.service import ImageService
    from cumulo.scheduler.placement import Placement

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    name: str
    path: str  # appended to the public URL, e.g. "/compute/v2.1"


# The services this build offers; the Keystone catalog lists exactly these.
CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("identity", "keystone", "/identity"),
    CatalogEntry("compute", "nova", "/compute/v2.1"),
    CatalogEntry("image", "glance", "/image"),
)


LOCAL_DRIVERS = ("fake", "runc")


def local_driver_name(conf: Settings) -> str:
    """The driver of the local host: conf.local_driver, with "auto" = runc when we are root and
    `runc` is on PATH (real containers), else fake. Falling back is loud: it is rarely wanted."""
    wanted = conf.local_driver.strip().lower()
    if wanted not in (*LOCAL_DRIVERS, "auto"):
        raise ValueError(f"unknown local_driver {conf.local_driver!r}: use auto, runc or fake")
    if wanted == "fake":
        return wanted
    missing = []
    if os.geteuid() != 0:
        missing.append("not running as root")
    if shutil.which("runc") is None:
        missing.append("`runc` is not on PATH (apt-get install runc)")
    if missing and wanted == "runc":
        raise ValueError(f"the runc driver cannot run here: {'; '.join(missing)}")
    if missing:
        LOG.warning(
            "local compute host %s uses the FAKE driver (simulated servers, no containers): %s. "
            "Set CUMULO_LOCAL_DRIVER=fake to silence this, or fix the above for real containers.",
            conf.host_name, "; ".join(missing),
        )
        return "fake"
    return "runc"


@dataclass
class Services:
    """What the API layer may reach. Workers are not here on purpose: APIs talk to them by bus."""

    conf: Settings
    db: Database
    bus: Bus
    identity: IdentityService
    images: ImageService
    compute: ComputeService
    placement: Placement
    catalog: tuple[CatalogEntry, ...] = CATALOG
    extra: dict[str, Any] = field(default_factory=dict)


class Cloud:
    """The whole cloud in one process. `start()` brings it up, `asgi_app()` serves it."""

    def __init__(self, conf: Settings) -> None:
        from cumulo.compute.service import ComputeService
        from cumulo.identity.service import IdentityService
        from cumulo.image.service import ImageService
        from cumulo.scheduler.placement import Placement

        self.conf = conf
        conf.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(conf.database_url)
        self.bus = make_bus(conf.transport)
        placement = Placement(self.db, conf)
        images = ImageService(self.db, conf)
        self.services = Services(
            conf=conf,
            db=self.db,
            bus=self.bus,
            identity=IdentityService(self.db, conf),
            images=images,
            compute=ComputeService(self.db, self.bus, conf, images=images, placement=placement),
            placement=placement,
        )
        self.local_driver = local_driver_name(conf)  # fails early on a bad name
        self.managers: list[ComputeManager] = []
        self.credentials: dict[str, dict[str, str]] = {}

    async def start(self) -> None:
        from cumulo.compute.conductor import Conductor
        from cumulo.compute.drivers import load_driver
        from cumulo.compute.manager import ComputeManager
        from cumulo.scheduler.manager import SchedulerManager

        conf, s = self.conf, self.services
        await self.db.create_all()
        self.credentials = await s.identity.bootstrap()
        await s.compute.bootstrap()
        admin = await s.identity.directory.list_projects({"name": "admin", "domain_id": "default"})
        await s.images.bootstrap(admin_project_id=admin[0]["id"] if admin else None)  # + the demo image
        self.write_clouds_yaml()

        scheduler = SchedulerManager(self.db, conf, s.placement)
        conductor = Conductor(self.db, self.bus, conf, s.placement)
        self.bus.serve("scheduler", scheduler)
        self.bus.serve("conductor", conductor)
        self.workers: list[Any] = [scheduler, conductor]
        LOG.info("local compute host %s runs the %s driver", conf.host_name, self.local_driver)
        hosts = [(conf.host_name, self.local_driver, True)]
        hosts += [(f"fake-host-{i}", "fake", False) for i in range(1, conf.fake_hosts + 1)]
        for host_name, driver_name, is_local in hosts:
            driver = load_driver(driver_name, conf, host_name, local=is_local)
            mgr = ComputeManager(self.db, self.bus, conf, host_name, driver, s.placement, s.images)
            self.bus.serve(compute_topic(host_name), mgr)
            self.managers.append(mgr)
        await self.bus.start()
        # Register hosts and reconcile what was in flight before a crash, then start periodic work.
        await asyncio.gather(*(w.start() for w in self.workers))
        await asyncio.gather(*(m.start() for m in self.managers))

    async def stop(self) -> None:
        for m in self.managers:
            await m.stop()
        for w in getattr(self, "workers", []):
            await w.stop()
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
        from cumulo.compute.api import make_app as compute_app
        from cumulo.identity.api import make_app as identity_app
        from cumulo.image.api import make_app as image_app

        s = self.services

        async def root(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                # The CLI starts and stops the cloud around the server; nothing to do here.
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            request = Request(scope, receive)
            base = str(request.base_url).rstrip("/")
            body = {"services": [{"type": e.type, "name": e.name, "url": base + e.path} for e in s.catalog]}
            status = 200 if scope.get("path") in ("/", "") else 404
            await JSONResponse(body if status == 200 else {"error": "not found"}, status_code=status)(
                scope, receive, send
            )

        apps: dict[str, ASGIApp] = {
            "/identity": identity_app(s),
            "/compute": compute_app(s),
            "/image": image_app(s),
        }
        return RequestIdMiddleware(
            PrefixDispatcher(apps, root), header_names=("x-openstack-request-id", "x-compute-request-id")
        )
