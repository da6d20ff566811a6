"""PRODUCTS' step kinds on the in-process cloud (real services, fake driver): each action run as the
runner runs it, on two real (fake-driver) servers of the caller's project: the built-in products'
install / configure / start (attributes resolved from the inventory, sent on stdin only, recorded),
a failing recipe (CUMULO_FAKE_EXIT) leaving the product instance in ERROR with the exit code, a
template node's skipped install, best-effort stop on a server that is gone, reconfigure, the
application artifact sent as a tarball, and the built-in catalogue rows upserted idempotently.
The recipes themselves run in a real container in tests/contract/test_paas_recipes_runc.py."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from occi_cloud import image, until

from cumulo.context import RequestContext, expand_roles
from cumulo.paas import models
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine import actions_products  # noqa: F401  (registers the step kinds)
from cumulo.paas.engine.base import ACTIONS, Status, StepFailed
from cumulo.paas.products import builtin

INST = "5eedcafe-0000-4000-8000-0000000000c1"
H = {"OpenStack-API-Version": "compute 2.79"}


class Run:
    """A StepRun of task 9."""

    def __init__(self, services: PaasServices, ctx: RequestContext, key: str, kind: str, params: dict[str, Any],
                 attempt: int = 1) -> None:
        self.services, self.ctx = services, ctx
        self.task = {"id": 9}
        self.step = {"key": key, "kind": kind, "params": params, "attempt": attempt}
        self.instance_id = INST
        self.ledger: Any = None

    def output_of(self, key: str) -> Mapping[str, Any]:
        raise KeyError(key)

    async def instance(self) -> dict[str, Any]:
        async with self.services.db.read() as conn:
            return dict((await conn.execute(sa.select(models.paas_env_instances)
                                            .where(models.paas_env_instances.c.id == INST))).mappings().one())


class World:
    def __init__(self, cloud: Any, ctx: RequestContext, servers: dict[str, str]) -> None:
        s = cloud.services
        self.cloud, self.ctx, self.servers = cloud, ctx, servers
        self.services = PaasServices(conf=s.conf, db=s.db, bus=s.bus, identity=s.identity, images=s.images,
                                     compute=s.compute, network=s.network, volume=s.volume)

    @property
    def requests(self) -> list[Any]:
        return list(self.cloud.managers[0].driver.exec_requests)

    async def run(self, kind: str, tier: str, product: str, key: str = "", **params: Any) -> Mapping[str, Any]:
        key = key or f"{kind}:{tier}:1:{product}"
        p = {"tier": tier, "replica": 1, "node": f"shop-{tier}-1", "product": product, "version": "1.0", **params}
        return dict(await ACTIONS[kind](Run(self.services, self.ctx, key, kind, p)) or {})

    async def product(self, tier: str, product: str) -> dict[str, Any]:
        pi, ti = models.paas_product_instances, models.paas_tier_instances
        async with self.services.db.read() as conn:
            return dict((await conn.execute(sa.select(pi).join(ti, ti.c.id == pi.c.tier_instance_id)
                                            .where(ti.c.tier == tier, pi.c.product == product))).mappings().one())

    async def records(self, tier: str, product: str) -> list[dict[str, Any]]:
        pid = (await self.product(tier, product))["id"]
        er = models.paas_exec_records
        async with self.services.db.read() as conn:
            return [dict(r) for r in (await conn.execute(
                sa.select(er).where(er.c.product_instance_id == pid).order_by(er.c.id))).mappings()]


def environment(web_attrs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rel = {p["name"]: {**p, "builtin": True} for p in builtin.products()}

    def tier(name: str, product: str, attrs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "flavour": "42", "image": "img", "min": 1, "max": 3, "initial": 1, "products": [
            {"name": product, "version": "1.0", "attributes": attrs, "release": rel[product]}]}
    return {"name": "shop", "tiers": [
        tier("backend", "kv-backend", [{"key": "ALLOW_FROM", "value": "MEMBERS(web)", "type": "MEMBERS"}]),
        tier("web", "httpd-web", web_attrs or [{"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"}]),
    ]}


async def make_world(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient],
                     web_attrs: list[dict[str, Any]] | None = None) -> World:
    project = (await cloud.services.identity.directory.list_projects({"name": "demo"}))[0]["id"]
    ctx = RequestContext(user_id="paas-user", project_id=project, roles=expand_roles(["member"]))
    client = as_ctx(ctx)
    image_id = await image(client, "paas-base")
    servers: dict[str, str] = {}
    for tier in ("backend", "web"):
        r = await client.post("/compute/v2.1/servers", headers=H, json={"server": {
            "name": f"paas-5eedcafe-{tier}-1", "imageRef": image_id, "flavorRef": "42", "networks": "none"}})
        assert r.status_code == 202, r.text
        servers[tier] = r.json()["server"]["id"]
    for sid in servers.values():
        async def active(sid: str = sid) -> bool:
            s = (await client.get(f"/compute/v2.1/servers/{sid}", headers=H)).json()["server"]
            return bool(s["status"] == "ACTIVE" and s.get("OS-EXT-STS:task_state") is None)
        await until(active, "server ACTIVE")
    async with cloud.services.db.write() as conn:
        await conn.execute(sa.insert(models.paas_env_instances).values(
            id=INST, project_id=project, user_id=ctx.user_id, name="shop", environment_name="shop",
            environment=environment(web_attrs), status="DEPLOYING"))
        for tier, product, ip in (("backend", "kv-backend", "10.0.0.11"), ("web", "httpd-web", "10.0.0.21")):
            await conn.execute(sa.insert(models.paas_tier_instances).values(
                id=f"ti-{tier}", env_instance_id=INST, tier=tier, replica=1, name=f"shop-{tier}-1",
                server_id=servers[tier], ip=ip, status="DEPLOYED"))
            await conn.execute(sa.insert(models.paas_product_instances).values(
                id=f"pi-{tier}", tier_instance_id=f"ti-{tier}", env_instance_id=INST, product=product,
                version="1.0", status="INIT"))
    return World(cloud, ctx, servers)


@pytest.fixture
async def world(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> World:
    return await make_world(cloud, as_ctx)


async def test_install_configure_start_with_resolved_attributes(world: World) -> None:
    for tier, product in (("backend", "kv-backend"), ("web", "httpd-web")):
        for kind in ("install", "configure", "start"):
            out = await world.run(kind, tier, product)
            assert out["ran"] and out["exit_code"] == 0, out
        row = await world.product(tier, product)
        assert row["status"] == "INSTALLED"
        assert [(r["step"], r["exit_code"], r["attempt"], r["task_id"]) for r in await world.records(tier, product)] == [
            ("install", 0, 1, 9), ("configure", 0, 1, 9), ("start", 0, 1, 9)]
    assert (await world.product("web", "httpd-web"))["attributes"] == {"BACKENDS": "10.0.0.11"}
    assert (await world.product("backend", "kv-backend"))["attributes"] == {"ALLOW_FROM": "10.0.0.21"}
    everything = world.requests
    # each install first sends the product's package: busybox mkdir + tar of the staging dir
    packages = [(u, r) for u, r in everything if r.argv[0] == "/bin/busybox"]
    assert [(u, r.argv[1]) for u, r in packages] == [
        (world.servers["backend"], "mkdir"), (world.servers["backend"], "tar"),
        (world.servers["web"], "mkdir"), (world.servers["web"], "tar")]
    assert packages[3][1].stdin == builtin.payload("httpd-web", "1.0")
    assert len(packages[3][1].stdin) > 3 << 20  # incompressible assets
    reqs = [(u, r) for u, r in everything if r.argv[0] != "/bin/busybox"]
    assert len(reqs) == 6
    web_install = [r for u, r in reqs if u == world.servers["web"]][0].stdin.decode()
    assert f"export PAAS_PAYLOAD={packages[3][1].argv[-1]}\n" in web_install
    for _uuid, req in reqs:
        assert req.argv == ("/bin/sh", "-s") and dict(req.env) == {"PATH": "/bin:/usr/bin:/sbin:/usr/sbin",
                                                                      "HOME": "/root"}
    web_configure = [r for u, r in reqs if u == world.servers["web"]][1].stdin.decode()
    assert "export BACKENDS=10.0.0.11\n" in web_configure and "export PAAS_STEP=configure\n" in web_configure
    assert "export PAAS_NODE=shop-web-1\n" in web_configure and "addresses \"$BACKENDS\"" in web_configure


async def test_a_failing_recipe_fails_the_step_with_its_exit_code(cloud: Any,
                                                                   as_ctx: Callable[[RequestContext], httpx.AsyncClient]
                                                                   ) -> None:
    w = await make_world(cloud, as_ctx, web_attrs=[{"key": "CUMULO_FAKE_EXIT", "value": "3"}])
    with pytest.raises(StepFailed) as got:
        await w.run("install", "web", "httpd-web")
    assert got.value.exit_code == 3
    assert str(got.value) == "the install recipe of httpd-web-1.0 on shop-web-1 exited 3"
    assert (await w.product("web", "httpd-web"))["status"] == Status.ERROR
    recs = await w.records("web", "httpd-web")
    assert [(r["step"], r["exit_code"], r["timed_out"], r["skipped_reason"]) for r in recs] == [
        ("install", 3, False, None)]
    assert recs[0]["ended_at"] is not None


async def test_a_template_node_skips_install_and_records_why(world: World) -> None:
    out = await world.run("install", "web", "httpd-web", skip="template image img-123", template_image="img-123")
    assert out == {"ran": False, "skipped": "template image img-123"}
    recs = await world.records("web", "httpd-web")
    assert [(r["step"], r["exit_code"], r["skipped_reason"]) for r in recs] == [
        ("install", None, "template image img-123")]
    assert world.requests == []  # nothing ran on the node
    assert (await world.product("web", "httpd-web"))["status"] == Status.INSTALLING


async def test_reconfigure_runs_configure_then_start_or_a_reload_recipe(world: World) -> None:
    out = await world.run("reconfigure", "backend", "kv-backend")
    assert out["configure"]["ran"] and out["start"]["ran"] and out["attributes"] == ["ALLOW_FROM"]
    assert [r["step"] for r in await world.records("backend", "kv-backend")] == ["configure", "start"]
    stdin = [r.stdin.decode() for _u, r in world.requests]
    assert "export PAAS_STEP=configure\n" in stdin[0] and "reload_httpd 8080" in stdin[1]  # start-or-reload
    # a product with a reload recipe gets it instead of start
    async with world.services.db.write() as conn:
        env = (await conn.execute(sa.select(models.paas_env_instances.c.environment))).scalar_one()
        env["tiers"][0]["products"][0]["release"]["recipes"]["reload"] = "echo reloaded\n"
        await conn.execute(sa.update(models.paas_env_instances).values(environment=env))
    out = await world.run("reconfigure", "backend", "kv-backend", "reconfigure:backend:1:kv-backend:2")
    assert out["reload"]["ran"] and "start" not in out
    assert [r["step"] for r in await world.records("backend", "kv-backend")][2:] == ["configure", "reload"]


async def test_stop_is_best_effort_on_a_server_that_is_gone(world: World) -> None:
    await world.services.compute.delete(world.ctx, await world.services.compute.get(world.ctx, world.servers["web"]))

    async def gone() -> bool:
        try:
            await world.services.compute.get(world.ctx, world.servers["web"])
        except Exception:  # noqa: BLE001 - NotFound once deleted
            return True
        return False
    await until(gone, "server deleted")
    out = await world.run("stop", "web", "httpd-web", best_effort=True)
    assert out["ran"] and "did not run" in out["failed"] and "is gone" in out["failed"]
    with pytest.raises(StepFailed, match="is gone"):
        await world.run("stop", "web", "httpd-web")
    recs = await world.records("web", "httpd-web")
    assert [(r["step"], r["exit_code"]) for r in recs] == [("stop", None), ("stop", None)]
    assert "not run: " in recs[0]["stderr"] and "is gone" in recs[0]["stderr"]
    assert (await world.product("web", "httpd-web"))["status"] == Status.ERROR  # only the strict stop


async def test_deploy_artifact_sends_the_tarball_and_runs_deploy(world: World) -> None:
    tarball = builtin.demo_app_tarball()
    sha = hashlib.sha256(tarball).hexdigest()
    store = world.services.conf.state_dir / "paas" / "artifacts"
    await asyncio.to_thread(store.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread((store / sha).write_bytes, tarball)
    async with world.services.db.write() as conn:
        await conn.execute(sa.insert(models.paas_applications).values(
            id="app-1", env_instance_id=INST, name="demo", version="1", product="httpd-web",
            artifact={"sha256": sha, "size": len(tarball)}, generation=1, status="DEPLOYING_ARTEFACT"))
    out = await world.run("deploy_artifact", "web", "httpd-web", "artifact:web:1:demo", application="demo")
    assert out["artifact_dir"] == "/opt/paas/httpd-web/www" and out["bytes"] == len(tarball) and out["exit_code"] == 0
    reqs = [r for _u, r in world.requests]
    staging = reqs[0].argv[-1]
    assert reqs[0].argv == ("/bin/busybox", "mkdir", "-p", staging)
    assert reqs[1].argv == ("/bin/busybox", "tar", "-xzf", "-", "-C", staging) and reqs[1].stdin == tarball
    assert reqs[2].argv == ("/bin/sh", "-s") and f"__src={staging}\n" in reqs[2].stdin.decode()
    assert "export PAAS_ARTIFACT_DIR=/opt/paas/httpd-web/www" in reqs[2].stdin.decode()
    async with world.services.db.read() as conn:
        status = (await conn.execute(sa.select(models.paas_applications.c.status))).scalar_one()
    assert status == "ARTEFACT_DEPLOYED"
    assert [r["step"] for r in await world.records("web", "httpd-web")] == ["deploy"]

    out = await world.run("undeploy_artifact", "web", "httpd-web", "unartifact:web:1:demo", application="demo")
    assert out["ran"] and out["exit_code"] == 0
    last = world.requests[-1][1]
    assert last.argv == ("/bin/sh", "-s") and "export PAAS_ARTIFACT_DIR=/opt/paas/httpd-web/www" in last.stdin.decode()
    async with world.services.db.read() as conn:
        status = (await conn.execute(sa.select(models.paas_applications.c.status))).scalar_one()
    assert status == "ARTEFACT_UNDEPLOYED"


async def test_a_missing_artifact_fails_the_step(world: World) -> None:
    async with world.services.db.write() as conn:
        await conn.execute(sa.insert(models.paas_applications).values(
            id="app-2", env_instance_id=INST, name="lost", version="1", product="httpd-web",
            artifact={"sha256": "0" * 64}, generation=1, status="DEPLOYING_ARTEFACT"))
    with pytest.raises(StepFailed, match="artifact of application lost cannot be read"):
        await world.run("deploy_artifact", "web", "httpd-web", "artifact:web:1:lost", application="lost")


def test_the_demo_application_tarball_is_deterministic() -> None:
    data = builtin.demo_app_tarball()
    assert data == builtin.demo_app_tarball()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert sorted(members) == ["cgi-bin", "cgi-bin/app", "cgi-bin/burn", "index.html"]
        assert members["cgi-bin/app"].mode == 0o755 and members["cgi-bin/burn"].mode == 0o755
        app = tf.extractfile("cgi-bin/app")
        assert app is not None and b"/cgi-bin/data" in app.read()


async def test_builtin_products_are_upserted_idempotently(cloud: Any) -> None:
    db = cloud.services.db
    p = models.paas_products
    await builtin.ensure_builtin_products(db)
    async with db.write() as conn:
        await conn.execute(sa.update(p).where(p.c.name == "httpd-web").values(recipes={}))
    await builtin.ensure_builtin_products(db)
    async with db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(sa.select(p).where(p.c.builtin.is_(True)))).mappings()]
    assert sorted((r["name"], r["version"], r["project_id"]) for r in rows) == [
        ("httpd-web", "1.0", ""), ("kv-backend", "1.0", "")]
    web = next(r for r in rows if r["name"] == "httpd-web")
    assert web["id"] == builtin.product_id("httpd-web", "1.0")
    assert set(web["recipes"]) == {"install", "configure", "start", "stop", "uninstall", "deploy"}
    assert {"key": "open_ports", "value": "80", "description": ""} in web["metadata"]
    assert web["attributes"][0]["type"] == "IPALL" and web["attributes"][0]["value"] == "IPALL(backend)"
