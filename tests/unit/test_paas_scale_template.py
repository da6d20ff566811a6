"""The "template" step (cumulo.paas.template) on the in-process cloud (real services, fake driver):
sync in the node, a snapshot through ComputeService, recorded in the ledger, waited until active, the
paas_templates row; a second attempt adopts or keeps what the first made. The fake driver's snapshot
holds no files: that the image of a configured container carries /opt/paas is checked on runc
(tests/system/test_paas_scale_runc.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cumulo.context import RequestContext, expand_roles
from cumulo.paas import models
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine import plan as deploy
from cumulo.paas.engine.base import ACTIONS, StepFailed
from cumulo.paas.template import template_id

H = {"OpenStack-API-Version": "compute 2.79"}
INST = "feedbeef-0000-4000-8000-000000000001"


def member(project: str = "proj-tpl") -> RequestContext:
    return RequestContext(user_id="user-tpl", project_id=project, roles=expand_roles(["member"]))


class MemLedger:
    """The Ledger protocol over a dict (the engine's is the paas_resources table)."""

    def __init__(self, images: Any, ctx: RequestContext) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.images, self.ctx = images, ctx

    async def intend(self, type_: str, name: str) -> None:
        self.rows.setdefault((type_, name), {"state": "creating", "id": None})

    async def created(self, type_: str, name: str, resource_id: str) -> None:
        self.rows[(type_, name)] = {"state": "created", "id": resource_id}

    async def adopt(self, type_: str, name: str) -> str | None:
        row = self.rows.get((type_, name))
        if row is None:
            return None
        page, _ = await self.images.list_images(self.ctx, [("name", name)])
        return str(page[0]["id"]) if page else None


class Run:
    """A StepRun for one "template" step."""

    def __init__(self, services: PaasServices, ctx: RequestContext, ledger: MemLedger, params: Mapping[str, Any]) -> None:
        self.ctx, self.services, self.ledger = ctx, services, ledger
        self.task = {"id": 1}
        self.step = {"key": f"template:{params['tier']}", "kind": "template", "params": dict(params), "attempt": 1}
        self.instance_id = INST

    def output_of(self, key: str) -> Mapping[str, Any]:
        raise KeyError(key)

    async def instance(self) -> dict[str, Any]:
        async with self.services.db.read() as conn:
            row = (await conn.execute(sa.select(models.paas_env_instances)
                                      .where(models.paas_env_instances.c.id == INST))).mappings().one()
        return dict(row)


def paas_services(cloud: Any) -> PaasServices:
    s = cloud.services
    return PaasServices(conf=s.conf, db=s.db, bus=s.bus, identity=s.identity, images=s.images, compute=s.compute,
                        network=s.network, volume=s.volume)


async def boot_node(cloud: Any, client: httpx.AsyncClient, ctx: RequestContext, **metadata: str) -> str:
    r = await client.post("/image/v2/images", json={"name": "base", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = await client.put(f"/image/v2/images/{image_id}/file", content=b"bytes",
                         headers={"content-type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    body = {"server": {"name": deploy.server_name(INST, "web", 1), "imageRef": image_id, "flavorRef": "1",
                       "networks": "none", "metadata": metadata}}
    r = await client.post("/compute/v2.1/servers", json=body, headers=H)
    assert r.status_code == 202, r.text
    sid = str(r.json()["server"]["id"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (await cloud.services.compute.get(ctx, sid))["vm_state"] != "active":
        assert loop.time() < deadline, "server never ACTIVE"
        await asyncio.sleep(0.02)
    async with cloud.services.db.write() as conn:
        await conn.execute(sa.insert(models.paas_env_instances).values(
            id=INST, project_id=ctx.project_id, user_id=ctx.user_id, name="demo", environment_name="shop",
            environment={"tiers": []}, status="DEPLOYING", app_generation=3))
        await conn.execute(sa.insert(models.paas_applications).values(  # newer than the instance's counter
            id="app-1", env_instance_id=INST, name="shopapp", product="www", generation=5, status="ARTEFACT_DEPLOYED"))
        await conn.execute(sa.insert(models.paas_tier_instances).values(
            id=deploy.tier_instance_id(INST, "web", 1), env_instance_id=INST, tier="web", replica=1, name="demo-web-1",
            server_id=sid, status="INSTALLED"))
    return sid


async def template_rows(cloud: Any) -> list[dict[str, Any]]:
    async with cloud.services.db.read() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(models.paas_templates))).mappings()]


@pytest.fixture
def setup(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> tuple[Any, httpx.AsyncClient, RequestContext]:
    ctx = member()
    return cloud, as_ctx(ctx), ctx


async def first_template(cloud: Any, client: httpx.AsyncClient, ctx: RequestContext
                         ) -> tuple[PaasServices, MemLedger, Mapping[str, Any]]:
    """A booted node and the first run of its tier's template step: (services, ledger, its output)."""
    await boot_node(cloud, client, ctx)
    services = paas_services(cloud)
    ledger = MemLedger(services.images, ctx)
    first = await ACTIONS["template"](Run(services, ctx, ledger, {"tier": "web"}))
    assert first is not None
    return services, ledger, first


async def test_template_snapshots_the_first_node(setup: tuple[Any, httpx.AsyncClient, RequestContext]) -> None:
    cloud, client, ctx = setup
    sid = await boot_node(cloud, client, ctx)
    driver = cloud.managers[0].driver
    services = paas_services(cloud)
    ledger = MemLedger(services.images, ctx)
    name = deploy.template_name(INST, "web")
    out = await ACTIONS["template"](Run(services, ctx, ledger, {"tier": "web", "replica": 1, "image_name": name}))
    assert out is not None
    image_id = out["image_id"]
    assert out["source_node"] == "demo-web-1" and out["app_generation"] == 5
    image = await services.images.get(ctx, image_id)
    assert image["status"] == "active" and image["name"] == name == "paas-feedbeef-web-template"
    assert image["paas_instance"] == INST and image["paas_tier"] == "web" and image["instance_uuid"] == sid
    assert ledger.rows[("image", name)] == {"state": "created", "id": image_id}
    rows = await template_rows(cloud)
    assert [(r["id"], r["tier"], r["status"], r["image_id"], r["source_node"], r["app_generation"]) for r in rows] == [
        (template_id(INST, "web"), "web", "active", image_id, "demo-web-1", 5)]
    # the guest's writes were flushed before the snapshot
    assert any(u == sid and req.argv[0] == "/bin/sh" and "sync" in req.argv[-1] for u, req in driver.exec_requests)
    # a resumed step (new attempt) finds the active template: no second image
    again = await ACTIONS["template"](Run(services, ctx, ledger, {"tier": "web", "replica": 1}))
    assert again is not None and again["image_id"] == image_id
    page, _ = await services.images.list_images(ctx, [("name", name)])
    assert [i["id"] for i in page] == [image_id]


async def test_a_crashed_attempt_is_adopted_not_doubled(setup: tuple[Any, httpx.AsyncClient, RequestContext]) -> None:
    cloud, client, ctx = setup
    services, ledger, first = await first_template(cloud, client, ctx)
    # the crash: the row never went active (the step died while it waited)
    async with cloud.services.db.write() as conn:
        await conn.execute(sa.update(models.paas_templates).values(status="creating"))
    second = await ACTIONS["template"](Run(services, ctx, ledger, {"tier": "web"}))
    assert second is not None and second["image_id"] == first["image_id"]
    page, _ = await services.images.list_images(ctx, [("name", deploy.template_name(INST, "web"))])
    assert len(page) == 1
    assert [r["status"] for r in await template_rows(cloud)] == ["active"]


@pytest.mark.parametrize("why", ["stale", "image_deleted"])
async def test_a_stale_or_lost_template_is_taken_again(why: str, setup: tuple[Any, httpx.AsyncClient, RequestContext]) -> None:
    cloud, client, ctx = setup
    services, ledger, first = await first_template(cloud, client, ctx)
    if why == "stale":  # e.g. an application was taken away since
        async with cloud.services.db.write() as conn:
            await conn.execute(sa.update(models.paas_templates).values(status="stale"))
    else:  # a rollback deleted the image; the row still says active
        await services.images.delete(ctx, first["image_id"])
    second = await ACTIONS["template"](Run(services, ctx, ledger, {"tier": "web"}))
    assert second is not None and second["image_id"] != first["image_id"]
    page, _ = await services.images.list_images(ctx, [("name", deploy.template_name(INST, "web"))])
    assert [i["id"] for i in page] == [second["image_id"]]  # the old one is gone, not doubled
    assert ledger.rows[("image", deploy.template_name(INST, "web"))]["id"] == second["image_id"]
    assert [(r["status"], r["image_id"]) for r in await template_rows(cloud)] == [("active", second["image_id"])]


async def test_a_node_without_a_server_fails_the_step(setup: tuple[Any, httpx.AsyncClient, RequestContext]) -> None:
    cloud, client, ctx = setup
    sid = await boot_node(cloud, client, ctx)
    await cloud.services.compute.delete(ctx, await cloud.services.compute.get(ctx, sid))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        try:
            await cloud.services.compute.get(ctx, sid)
        except Exception:
            break
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    services = paas_services(cloud)
    with pytest.raises(StepFailed, match="is gone"):
        await ACTIONS["template"](Run(services, ctx, MemLedger(services.images, ctx), {"tier": "web"}))
    assert await template_rows(cloud) == []


async def test_a_victim_leaves_then_is_removed_keeping_its_row(cloud: Any) -> None:
    import cumulo.paas.engine.actions_scale  # noqa: F401  # registers node_leaving / node_removed

    services, ctx = paas_services(cloud), member()
    tid = deploy.tier_instance_id(INST, "web", 2)
    async with cloud.services.db.write() as conn:
        await conn.execute(sa.insert(models.paas_env_instances).values(
            id=INST, project_id=ctx.project_id, user_id=ctx.user_id, name="demo", environment_name="shop",
            environment={"tiers": []}, status="INSTALLED"))
        await conn.execute(sa.insert(models.paas_tier_instances).values(
            id=tid, env_instance_id=INST, tier="web", replica=2, name="demo-web-2", server_id="srv-2",
            ip="10.0.0.5", floating_ip="172.30.0.9", status="INSTALLED"))
        await conn.execute(sa.insert(models.paas_product_instances).values(
            id=deploy.product_instance_id(tid, "httpd-web"), tier_instance_id=tid, env_instance_id=INST,
            product="httpd-web", version="1.0", status="INSTALLED"))

    async def node() -> tuple[Any, ...]:
        async with cloud.services.db.read() as conn:
            ti, pi = models.paas_tier_instances, models.paas_product_instances
            row = (await conn.execute(sa.select(ti.c.status, ti.c.server_id, ti.c.ip, ti.c.floating_ip))).one()
            return (*row, (await conn.execute(sa.select(pi.c.status))).scalar_one())

    def run(kind: str, replica: int = 2) -> Any:
        r = Run(services, ctx, MemLedger(services.images, ctx), {"tier": "web"})
        r.step = {"key": f"{kind}:web:{replica}", "kind": kind, "attempt": 1,
                  "params": {"tier": "web", "replica": replica, "node": f"demo-web-{replica}"}}
        return r

    await ACTIONS["node_leaving"](run("node_leaving"))
    assert await node() == ("UNINSTALLING", "srv-2", "10.0.0.5", "172.30.0.9", "INSTALLED")
    for _attempt in range(2):  # a resumed step finds it done
        await ACTIONS["node_removed"](run("node_removed"))
        assert await node() == ("UNDEPLOYED", None, None, None, "UNINSTALLED")
    await ACTIONS["node_leaving"](run("node_leaving"))  # never brings a removed node back
    assert (await node())[0] == "UNDEPLOYED"
    with pytest.raises(StepFailed, match="node 7 of tier web is not in the inventory"):
        await ACTIONS["node_removed"](run("node_removed", 7))


async def test_a_failed_snapshot_leaves_no_template_and_fails_nothing(
    setup: tuple[Any, httpx.AsyncClient, RequestContext]
) -> None:
    cloud, client, ctx = setup
    # the fake driver fails this server's snapshots (its metadata says so): the image is deleted
    sid = await boot_node(cloud, client, ctx, cumulo_fake_fail="snapshot")
    services = paas_services(cloud)
    ledger = MemLedger(services.images, ctx)
    out = await ACTIONS["template"](Run(services, ctx, ledger, {"tier": "web"}))
    assert out is not None and out["image_id"] is None and "its snapshot failed" in out["error"], out
    assert [(r["status"], r["image_id"]) for r in await template_rows(cloud)] == [("error", None)]
    page, _ = await services.images.list_images(ctx, [("name", deploy.template_name(INST, "web"))])
    assert page == []
    assert (await cloud.services.compute.get(ctx, sid))["vm_state"] == "active"  # the node is untouched


async def test_mark_stale_makes_the_next_template_step_take_a_new_image(
    setup: tuple[Any, httpx.AsyncClient, RequestContext]
) -> None:
    from cumulo.paas.template import mark_stale

    cloud, client, ctx = setup
    services, ledger, first = await first_template(cloud, client, ctx)
    async with cloud.services.db.write() as conn:
        assert await mark_stale(conn, INST, ["backend"]) == 0
        assert await mark_stale(conn, INST, ["web"]) == 1
    assert [r["status"] for r in await template_rows(cloud)] == ["stale"]
    second = await ACTIONS["template"](Run(services, ctx, ledger, {"tier": "web"}))
    assert second is not None and second["image_id"] not in (None, first["image_id"])
