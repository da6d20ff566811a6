"""A small stand-alone compute app for the resource API tests (flavors, keypairs, quotas, admin):
a temp SQLite DB, the real routes and fault renderer behind the microversion middleware, the real
compute and image services (unstarted: nothing here casts to a worker), a real (in-memory) project
directory and a recording placement. Requests act as a chosen RequestContext.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _asgi_ctx import AsCtx

from cumulo import conf as conf_mod
from cumulo.bus.transports import make_bus
from cumulo.compute.api.deps import ComputeDeps
from cumulo.compute.models import instances
from cumulo.compute.service import flavors as flavor_service
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database, new_uuid, utcnow
from cumulo.hosts.models import compute_nodes, services
from cumulo.image.service import ImageService
from cumulo.placement.service import Placement

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for `reference`
from reference import check, nova  # noqa: E402

__all__ = ["Harness", "check", "ctx", "make_harness", "nova"]


def ctx(project: str, *roles: str, user: str | None = None) -> RequestContext:
    return RequestContext(
        user_id=user or f"user-{project}", project_id=project, roles=expand_roles(list(roles or ("member",)))
    )


class Directory:
    """The identity interface the APIs use (get_project), over a fixed set of projects."""

    def __init__(self, projects: set[str]) -> None:
        self.projects = projects

    async def get_project(self, project_id: str) -> dict[str, Any] | None:
        return {"id": project_id, "name": project_id} if project_id in self.projects else None


class RecordingPlacement:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_provider(self, uuid: str) -> None:
        self.deleted.append(uuid)


@dataclass
class Harness:
    deps: ComputeDeps
    placement: RecordingPlacement  # the same object as deps.placement, with what it recorded
    app: Any

    @property
    def db(self) -> Database:
        return self.deps.db

    def client(self, context: RequestContext, version: str | None = None) -> httpx.AsyncClient:
        headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=AsCtx(self.app, context)),
            base_url="http://cumulo.test/v2.1",
            headers=headers,
        )

    async def call(self, context: RequestContext, method: str, path: str, version: str | None = None, **kw: Any) -> httpx.Response:
        async with self.client(context, version) as c:
            return await c.request(method, path, **kw)

    async def add_instance(self, project: str, host: str = "host1", *, vcpus: int = 1, ram: int = 512, disk: int = 1, **extra: Any) -> str:
        """An instance row as the servers API and workers would leave it (placed on `host`)."""
        iid = new_uuid()
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(instances).values(
                    uuid=iid, project_id=project, user_id=f"user-{project}", display_name=extra.pop("name", "vm"),
                    image_ref="", flavor={}, vcpus=vcpus, memory_mb=ram, root_gb=disk, ephemeral_gb=0,
                    vm_state="active", task_state=extra.pop("task_state", None), power_state=1, host=host, node=host,
                    reservation_id="r-1", request_spec={}, metadata={}, system_metadata={}, tags=[],
                    security_groups=[], addresses={}, created_at=utcnow(), updated_at=utcnow(), **extra,
                )
            )
        return iid

    async def add_service(self, host: str, binary: str = "nova-compute", *, zone: str | None = "nova", up: bool = True, disabled: bool = False) -> dict[str, Any]:
        seen = utcnow() if up else utcnow().replace(year=2000)
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.insert(services).values(
                    uuid=new_uuid(), host=host, binary=binary, topic=binary, availability_zone=zone,
                    disabled=disabled, forced_down=False, last_seen_up=seen, report_count=1,
                    created_at=seen, updated_at=seen,
                )
            )
            sid = int(res.inserted_primary_key[0])
            row = (await conn.execute(sa.select(services).where(services.c.id == sid))).mappings().one()
        return dict(row)

    async def add_node(self, host: str, service_id: int, *, vcpus: int = 16, ram: int = 32768, disk: int = 500) -> dict[str, Any]:
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.insert(compute_nodes).values(
                    uuid=new_uuid(), service_id=service_id, host=host, hypervisor_hostname=host,
                    hypervisor_type="fake", hypervisor_version=1000, instance_types=["fake"], vcpus=vcpus,
                    memory_mb=ram, local_gb=disk, host_ip="127.0.0.1",
                    cpu_info={"arch": "x86_64", "topology": {"cores": 1}}, details={},
                    created_at=utcnow(), updated_at=utcnow(),
                )
            )
            nid = int(res.inserted_primary_key[0])
            row = (await conn.execute(sa.select(compute_nodes).where(compute_nodes.c.id == nid))).mappings().one()
        return dict(row)


PROJECTS = {"proj-a", "proj-b", "admin-proj"}


@asynccontextmanager
async def make_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """Use from a fixture: `async with make_harness(tmp_path) as h: yield h`."""
    from cumulo.compute.api import admin, flavors, keypairs, quotas
    from cumulo.compute.api.app import render_fault
    from cumulo.compute.api.microversion import MicroversionMiddleware
    from cumulo.web.http import family_app

    settings = conf_mod.load(env={}, state_dir=tmp_path / "state")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/res.db")
    await db.create_all()
    await flavor_service.ensure_default_flavors(db)
    images = ImageService(db, settings)
    compute = ComputeService(db, make_bus(settings.transport), settings, images=images, placement=Placement(db, settings))
    placement = RecordingPlacement()
    deps = ComputeDeps(conf=settings, db=db, compute=compute, images=images, identity=Directory(set(PROJECTS)),
                       placement=placement)
    routes = [*flavors.ROUTES, *keypairs.ROUTES, *quotas.ROUTES, *admin.ROUTES]
    app = MicroversionMiddleware(family_app(deps, routes, render_fault))
    try:
        yield Harness(deps, placement, app)
    finally:
        await db.dispose()


def rand() -> str:
    return uuid.uuid4().hex[:8]
