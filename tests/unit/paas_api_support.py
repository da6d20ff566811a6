"""What the /paas API unit tests share: the app over a fresh SQLite database with a fake engine
(it writes the task and instance rows a real engine would, and refuses a second operation while a
task of the instance is RUNNING), clients acting as a chosen project and role, and DTO builders."""

from __future__ import annotations

import base64
import io
import tarfile
from collections.abc import Mapping
from typing import Any

import httpx
import sqlalchemy as sa
from _asgi_ctx import AsCtx, ctx_for

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow
from cumulo.paas import shapes
from cumulo.paas.api.app import make_app
from cumulo.paas.engine.base import TaskKind
from cumulo.paas.models import paas_env_instances, paas_product_instances, paas_tasks, paas_tier_instances

BASE = "http://cumulo.test"
CAT = "/paas/rest/catalog"


class FakeEngine:
    """PaasEngineAPI over the tables, without running anything: each call records itself, writes a
    RUNNING task (and for deploy the instance and its first nodes) and returns the task row."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def _busy(self, instance_id: str) -> None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(paas_tasks.c.id).where(
                paas_tasks.c.env_instance_id == instance_id, paas_tasks.c.status == "RUNNING"))).first()
        if row is not None:
            raise errors.Conflict(f"environment instance has a running task {row[0]}")

    async def _task(self, ctx: RequestContext, kind: TaskKind, instance: Mapping[str, Any], *, tier: str | None = None,
                    callback: str | None = None) -> dict[str, Any]:
        row = {"project_id": ctx.project_id, "user_id": ctx.user_id or "", "roles": sorted(ctx.roles),
               "kind": kind.value, "status": "RUNNING", "description": f"{kind.value} {instance['name']}",
               "env_instance_id": instance["id"], "env_instance_name": instance["name"], "tier": tier,
               "params": {}, "callback": callback, "start_time": utcnow(),
               "result_href": shapes.instance_path(ctx.project_id or "", instance["name"])}
        async with self.db.write() as conn:
            res = await conn.execute(paas_tasks.insert().values(**row))
            row["id"] = res.inserted_primary_key[0]
        return row

    async def deploy(self, ctx: RequestContext, *, name: str, description: str, environment: Mapping[str, Any],
                     keep_on_failure: bool = False, callback: str | None = None) -> dict[str, Any]:
        self.calls.append(("deploy", {"name": name, "environment": environment, "keep_on_failure": keep_on_failure,
                                      "callback": callback}))
        inst = {"id": new_uuid(), "project_id": ctx.project_id, "user_id": ctx.user_id or "", "name": name,
                "description": description, "environment_name": environment["name"], "environment": environment,
                "status": "DEPLOYING", "keep_on_failure": keep_on_failure, "created_at": utcnow()}
        async with self.db.write() as conn:
            await conn.execute(paas_env_instances.insert().values(**inst))
            for tier in environment["tiers"]:
                for replica in range(1, tier["initial"] + 1):
                    node_id = new_uuid()
                    await conn.execute(paas_tier_instances.insert().values(
                        id=node_id, env_instance_id=inst["id"], tier=tier["name"], replica=replica,
                        name=f"{name}-{tier['name']}-{replica}", status="DEPLOYING", ip=f"10.0.0.{replica}"))
                    for p in tier["products"]:
                        await conn.execute(paas_product_instances.insert().values(
                            id=new_uuid(), tier_instance_id=node_id, env_instance_id=inst["id"], product=p["name"],
                            version=p["version"], status="INSTALLING", attributes={"PORT": "80"}))
        task = await self._task(ctx, TaskKind.DEPLOY, inst, callback=callback)
        async with self.db.write() as conn:
            await conn.execute(paas_env_instances.update().where(paas_env_instances.c.id == inst["id"]).values(
                task_id=task["id"]))
        return task

    async def destroy(self, ctx: RequestContext, instance: Mapping[str, Any], *, callback: str | None = None
                      ) -> dict[str, Any]:
        await self._busy(instance["id"])
        self.calls.append(("destroy", {"name": instance["name"], "callback": callback}))
        return await self._task(ctx, TaskKind.DESTROY, instance, callback=callback)

    async def scale(self, ctx: RequestContext, instance: Mapping[str, Any], tier: str, *, count: int | None = None,
                    remove: str | None = None, use_template: bool = True, callback: str | None = None,
                    kind: TaskKind = TaskKind.SCALE, reason: str = "") -> dict[str, Any]:
        await self._busy(instance["id"])
        self.calls.append(("scale", {"name": instance["name"], "tier": tier, "count": count, "remove": remove,
                                     "use_template": use_template, "callback": callback}))
        return await self._task(ctx, kind, instance, tier=tier, callback=callback)

    async def deploy_application(self, ctx: RequestContext, instance: Mapping[str, Any],
                                 application: Mapping[str, Any], *, callback: str | None = None) -> dict[str, Any]:
        await self._busy(instance["id"])
        self.calls.append(("deploy_application", {"name": instance["name"], "application": dict(application)}))
        return await self._task(ctx, TaskKind.APPLICATION, instance, callback=callback)

    async def undeploy_application(self, ctx: RequestContext, instance: Mapping[str, Any], name: str, *,
                                   callback: str | None = None) -> dict[str, Any]:
        await self._busy(instance["id"])
        self.calls.append(("undeploy_application", {"name": instance["name"], "application": name}))
        return await self._task(ctx, TaskKind.UNDEPLOY_APPLICATION, instance, callback=callback)

    async def reconfigure_tier(self, ctx: RequestContext, instance: Mapping[str, Any], tier: str,
                               values: Mapping[str, Any], *, callback: str | None = None) -> dict[str, Any]:
        await self._busy(instance["id"])
        self.calls.append(("reconfigure_tier", {"name": instance["name"], "tier": tier, "values": dict(values)}))
        return await self._task(ctx, TaskKind.RECONFIGURE, instance, tier=tier, callback=callback)

    async def install_product(self, ctx: RequestContext, instance: Mapping[str, Any], node: str,
                              entry: Mapping[str, Any], *, callback: str | None = None) -> dict[str, Any]:
        await self._busy(instance["id"])
        self.calls.append(("install_product", {"name": instance["name"], "node": node, "entry": dict(entry)}))
        return await self._task(ctx, TaskKind.INSTALL_PRODUCT, instance, callback=callback)

    async def uninstall_product(self, ctx: RequestContext, instance: Mapping[str, Any], node: str, product: str, *,
                                callback: str | None = None) -> dict[str, Any]:
        await self._busy(instance["id"])
        self.calls.append(("uninstall_product", {"name": instance["name"], "node": node, "product": product}))
        return await self._task(ctx, TaskKind.UNINSTALL_PRODUCT, instance, callback=callback)

    async def finish_all(self, status: str = "SUCCESS") -> None:
        async with self.db.write() as conn:
            await conn.execute(paas_tasks.update().where(paas_tasks.c.status == "RUNNING").values(
                status=status, end_time=utcnow()))


def client(app: Any, project: str, *roles: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx_for(project, *roles))), base_url=BASE)


def mount(db: Database, conf: Any, engine: Any) -> Any:
    """The app as the runtime mounts it: under /paas."""
    from _asgi_ctx import outside

    from cumulo.web.http import PrefixDispatcher

    return PrefixDispatcher({"/paas": make_app(None, engine, db=db, conf=conf)}, outside("/paas"))


def product(name: str, version: str = "1.0", *attrs: tuple[str, str, str], **extra: Any) -> dict[str, Any]:
    return {"productName": name, "version": version, "productDescription": f"{name} product",
            "attributes": [{"key": k, "value": v, "type": t} for k, v, t in attrs],
            "recipes": {"install": "echo install", "start": "echo start"}, **extra}


def tier(name: str, *products: dict[str, Any], lo: int = 1, hi: int = 3, initial: int = 1, **extra: Any
         ) -> dict[str, Any]:
    return {"name": name, "flavour": "m1.tiny", "image": "busybox", "minimumNumberInstances": lo,
            "maximumNumberInstances": hi, "initialNumberInstances": initial, "floatingip": "true",
            "productReleaseDtos": list(products), **extra}


def two_tier(name: str = "shop") -> dict[str, Any]:
    """web (IPALL(backend)) depends on backend."""
    return {"name": name, "description": "two tiers",
            "tierDtos": [tier("web", {"productName": "web-app", "version": "1.0",
                                      "attributes": [{"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"}]}),
                         tier("backend", {"productName": "kv", "version": "1.0"})]}


def tarball(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def data_url(raw: bytes) -> str:
    return "data:application/gzip;base64," + base64.b64encode(raw).decode()
