"""The PaaS gaps closed in wave 2, through the cloud's own engine on the in-process cloud (fake
driver): a node goes INSTALLED once its products started (ERROR with a failed product); a manual
scale is a paas_events row (policy null, "manual: ..." naming who asked); an application's undeploy
makes its tier's template stale and its artifact file goes once no row references it; the
catalogue refuses the attribute keys the recipe runner refuses."""

from __future__ import annotations

import base64
import io
import os
import tarfile
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from occi_cloud import image, until
from test_paas_deploy_infra import demo_ctx
from test_paas_scale_engine import environment, table

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.paas import artifacts, models, shapes
from cumulo.paas import catalogue as cat
from cumulo.paas.engine import finish

TI, PI = models.paas_tier_instances, models.paas_product_instances


@pytest.mark.parametrize("key", ["PATH", "HOME", "IFS", "PAAS_ROOT", "PAAS_OUTPUT"])
def test_the_catalogue_refuses_the_keys_the_recipe_runner_refuses(key: str) -> None:
    dto = {"productName": "p", "version": "1.0", "attributes": [{"key": key, "value": "v"}]}
    with pytest.raises(errors.Invalid, match=f"product release p-1.0: attribute key '{key}'.*not PAAS_"):
        cat.check_product(shapes.parse_product_release(dto))
    cat.check_product(shapes.parse_product_release({**dto, "attributes": [{"key": "PORT", "value": "80"}]}))


def _gone(path: Any) -> Callable[[], Any]:
    async def check() -> bool:
        return not path.exists()
    return check


def _tarball() -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"<h1>gaps</h1>"
        info = tarfile.TarInfo("index.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return "data:application/gzip;base64," + base64.b64encode(buf.getvalue()).decode()


async def test_node_status_events_template_stale_and_artifact_sweep(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    ctx = await demo_ctx(cloud)
    ctx = RequestContext(user_id=ctx.user_id, project_id=ctx.project_id, roles=ctx.roles, user_name="alice")
    engine = cloud.paas_engine
    task = await engine.deploy(ctx, name="gap1", description="", environment=environment(await image(as_ctx(ctx), "g")))
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    # 1. every node INSTALLED once its products started
    assert {(n["tier"], n["status"]) for n in await table(cloud, TI)} == {("backend", "INSTALLED"), ("web", "INSTALLED")}
    [inst] = await table(cloud, models.paas_env_instances)

    # 2. manual scales are events: out by count, in by a named node
    task = await engine.scale(ctx, inst, "web", count=2)
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    web2 = next(n for n in await table(cloud, TI) if n["name"] == "gap1-web-2")
    assert web2["status"] == "INSTALLED"  # a template node too: install skipped, configure + start ran
    [inst] = await table(cloud, models.paas_env_instances)
    removal = await engine.scale(ctx, inst, "web", remove="gap1-web-2")
    assert (await engine.wait(removal["id"], timeout=120))["status"] == "SUCCESS"
    events = await table(cloud, models.paas_events, models.paas_events.c.id)
    assert [(e["tier"], e["policy"], e["decision"], e["from_size"], e["to_size"], e["task_id"]) for e in events] == [
        ("web", None, "scale_out", 1, 2, task["id"]), ("web", None, "scale_in", 2, 1, removal["id"])]
    assert events[0]["reason"] == f"manual: user alice ({ctx.user_id}) asked 1 -> 2 nodes"
    assert events[1]["reason"].startswith("manual: user alice") and "removal of node gap1-web-2" in events[1]["reason"]
    listed = await as_ctx(ctx).get(f"/paas/rest/envInst/org/default/vdc/{ctx.project_id}/environmentInstance/gap1/event")
    assert [(e["decision"], "policy" in e, e["reason"][:7]) for e in listed.json()] == [
        ("scale_out", False, "manual:"), ("scale_in", False, "manual:")]

    # 4 + 6. an application undeployed: the web template is stale; its artifact file goes
    upload = _tarball()
    art = await artifacts.store_inline(cloud.services.conf, upload)
    path = artifacts.artifact_path(cloud.services.conf, art["sha256"])
    [inst] = await table(cloud, models.paas_env_instances)
    task = await engine.deploy_application(ctx, inst, {"name": "site", "version": "1", "product": "www", "artifact": art})
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    assert await artifacts.collect(cloud.services.conf, cloud.services.db, grace=0) == []  # a row holds it
    assert path.exists()
    [inst] = await table(cloud, models.paas_env_instances)
    os.utime(path, (0, 0))  # the upload is long past
    task = await engine.undeploy_application(ctx, inst, "site")
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    # the sweep runs just after the task's final write: wait for it, not for the row
    await until(_gone(path), "the undeployed artifact's file to go", timeout=60)
    assert {t["tier"]: t["status"] for t in await table(cloud, models.paas_templates)} == {"web": "stale"}
    # a fresh upload no row references yet stays for the grace period
    art = await artifacts.store_inline(cloud.services.conf, upload)
    assert await finish.collect_artifacts(cloud.services) == [] and path.exists()
    assert await artifacts.collect(cloud.services.conf, cloud.services.db, grace=0) == [art["sha256"]]
    # deployed again, then the instance destroyed: the file goes with the application row
    art = await artifacts.store_inline(cloud.services.conf, upload)
    [inst] = await table(cloud, models.paas_env_instances)
    task = await engine.deploy_application(ctx, inst, {"name": "site", "version": "2", "product": "www", "artifact": art})
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    os.utime(path, (0, 0))
    [inst] = await table(cloud, models.paas_env_instances)
    task = await engine.destroy(ctx, inst)
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    await until(_gone(path), "the destroyed instance's artifact file to go", timeout=60)


async def test_a_failed_product_makes_its_node_error(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    ctx = await demo_ctx(cloud)
    env = environment(await image(as_ctx(ctx), "g2"))
    env["tiers"][0]["products"][0]["attributes"].append({"key": "CUMULO_FAKE_EXIT", "value": "7"})  # the fake exec exits 7
    task = await cloud.paas_engine.deploy(ctx, name="gap2", description="", environment=env, keep_on_failure=True)
    final = await cloud.paas_engine.wait(task["id"], timeout=120)
    assert final["status"] == "ERROR" and final["error"]["step"] == "install:backend:1:kv", final["error"]
    nodes = {n["tier"]: n["status"] for n in await table(cloud, TI)}
    assert nodes["backend"] == "ERROR", nodes
    async with cloud.services.db.read() as conn:
        kv = (await conn.execute(sa.select(PI.c.status).where(PI.c.product == "kv"))).scalar()
    assert kv == "ERROR"
    [inst] = await table(cloud, models.paas_env_instances)
    task = await cloud.paas_engine.destroy(ctx, inst)
    assert (await cloud.paas_engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"


async def _done(cloud: Any, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    task_id = int(r.json()["href"].rsplit("/", 1)[1])
    final = await cloud.paas_engine.wait(task_id, timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    return dict(final)


async def test_reconfigure_a_tier_and_products_on_one_node(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    ctx = await demo_ctx(cloud)
    api = as_ctx(ctx)
    engine = cloud.paas_engine
    task = await engine.deploy(ctx, name="gap3", description="", environment=environment(await image(api, "g3")))
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    inst_url = f"/paas/rest/envInst/org/default/vdc/{ctx.project_id}/environmentInstance/gap3"
    r = await api.post("/paas/rest/catalog/productRelease", json={
        "productName": "probe", "version": "2.0", "attributes": [{"key": "LEVEL", "value": "1"}],
        "recipes": {"install": "echo i\n", "configure": "echo c\n", "start": "echo s\n", "stop": "echo t\n",
                    "uninstall": "echo u\n"}})
    assert r.status_code == 204, r.text
    r = await api.post("/paas/rest/catalog/productRelease", json={"productName": "www", "version": "1.0"})
    assert r.status_code == 204, r.text

    # PUT tierInstance: new values for the web tier's product, every web node reconfigured
    final = await _done(cloud, await api.put(f"{inst_url}/tierInstance", json={
        "tierDto": {"name": "web"}, "productInstanceDtos": [
            {"productReleaseDto": {"productName": "www"}, "attributes": [{"key": "GREETING", "value": "hi"}]}]}))
    assert final["kind"] == "reconfigure" and "Scale reconfigure tier web" in final["description"]
    async with cloud.services.db.read() as conn:
        keys = sorted((await conn.execute(sa.select(models.paas_steps.c.key).where(
            models.paas_steps.c.task_id == final["id"]))).scalars())
        www = (await conn.execute(sa.select(PI.c.attributes).where(PI.c.product == "www"))).scalar()
    assert keys == ["reconfigure:web:1:www"] and www["GREETING"] == "hi"
    [inst] = await table(cloud, models.paas_env_instances)
    web = next(t for t in inst["environment"]["tiers"] if t["name"] == "web")
    assert {"key": "GREETING", "value": "hi", "type": "Plain", "description": ""} in web["products"][0]["attributes"]
    for body, word in (({"tierDto": {"name": "web"}, "attributes": [{"key": "NOPE", "value": "x"}]}, "NOPE"),
                       ({"tierDto": {"name": "web"}, "attributes": [{"key": "PATH", "value": "/x"}]}, "PATH"),
                       ({"tierDto": {"name": "web"}}, "no attribute to change"),
                       ({"tierDto": {"name": "ghost"}, "attributes": []}, "ghost")):
        r = await api.put(f"{inst_url}/tierInstance", json=body)
        assert r.status_code in (400, 404) and word in r.json()["message"], r.text

    # POST productInstance: one more product on web-1 only
    pis = f"{inst_url}/tierInstance/gap3-web-1/productInstance"
    await _done(cloud, await api.post(pis, json={"productReleaseDto": {"productName": "probe", "version": "2.0"},
                                                 "attributes": [{"key": "LEVEL", "value": "5"}]}))
    listed = {p["productReleaseDto"]["productName"]: p for p in (await api.get(pis)).json()}
    assert set(listed) == {"www", "probe"}
    async with cloud.services.db.read() as conn:
        probe = (await conn.execute(sa.select(PI).where(PI.c.product == "probe"))).mappings().one()
    assert (probe["status"], probe["version"], probe["attributes"]["LEVEL"]) == ("INSTALLED", "2.0", "5")
    assert {n["name"]: n["status"] for n in await table(cloud, TI)}["gap3-web-1"] == "INSTALLED"
    for body, code, word in (({"productReleaseDto": {"productName": "probe", "version": "2.0"}}, 409, "already has"),
                             ({"productReleaseDto": {"productName": "www"}}, 409, "part of tier web"),
                             ({"productReleaseDto": {"productName": "nosuch"}}, 400, "nosuch"),
                             ({"productReleaseDto": {"productName": "www"}, "attributes": [
                                 {"key": "PAAS_NODE", "value": "x"}]}, 400, "PAAS_NODE")):
        r = await api.post(pis, json=body)
        assert r.status_code == code and word in r.json()["message"], r.text
    r = await api.delete(f"{pis}/www")
    assert r.status_code == 400 and "part of tier web" in r.json()["message"], r.text

    # DELETE productInstance: stop + uninstall; the row stays UNINSTALLED, the node INSTALLED
    final = await _done(cloud, await api.delete(f"{pis}/gap3-web-1_probe_2.0"))
    async with cloud.services.db.read() as conn:
        status = (await conn.execute(sa.select(PI.c.status).where(PI.c.product == "probe"))).scalar()
        ran = sorted((await conn.execute(sa.select(models.paas_exec_records.c.step).where(
            models.paas_exec_records.c.task_id == final["id"]))).scalars())
    assert status == "UNINSTALLED" and ran == ["stop", "uninstall"]
    assert {n["name"]: n["status"] for n in await table(cloud, TI)}["gap3-web-1"] == "INSTALLED"
    r = await api.post(pis, json={"productReleaseDto": {"productName": "probe"},
                                  "attributes": [{"key": "PEER", "value": "IP(ghost)", "type": "IP"}]})
    assert r.status_code == 400 and "has no tier ghost" in r.json()["message"], r.text
    await _done(cloud, await api.post(pis, json={"productReleaseDto": {"productName": "probe"}}))  # again

    # a product whose install fails: its node goes ERROR; removing it (best effort) brings the node back
    r = await api.post("/paas/rest/catalog/productRelease", json={
        "productName": "flaky", "version": "1.0", "recipes": {"install": "exit 4\n", "stop": "exit 4\n"}})
    assert r.status_code == 204, r.text
    r = await api.post(pis, json={"productReleaseDto": {"productName": "flaky"},
                                  "attributes": [{"key": "CUMULO_FAKE_EXIT", "value": "4"}]})
    assert r.status_code == 202, r.text
    failed = await engine.wait(int(r.json()["href"].rsplit("/", 1)[1]), timeout=120)
    assert failed["status"] == "ERROR" and failed["error"]["step"] == "install:web:1:flaky", failed["error"]
    assert {n["name"]: n["status"] for n in await table(cloud, TI)}["gap3-web-1"] == "ERROR"
    await _done(cloud, await api.delete(f"{pis}/flaky"))
    assert {n["name"]: n["status"] for n in await table(cloud, TI)}["gap3-web-1"] == "INSTALLED"

    [inst] = await table(cloud, models.paas_env_instances)
    task = await engine.destroy(ctx, inst)
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"


def test_the_catalogue_checks_a_tiers_affinity() -> None:
    dto = {"name": "web", "flavour": "f", "image": "i"}
    with pytest.raises(errors.Invalid, match="tier web: affinity 'sideways' is not None or one of anti-affinity"):
        cat.check_tier(shapes.parse_tier({**dto, "affinity": "sideways"}))
    for ok in ("None", "anti-affinity", "Soft-Anti-Affinity", None):
        cat.check_tier(shapes.parse_tier({**dto, "affinity": ok}))


async def test_a_tiers_affinity_is_a_server_group(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
                                                  ) -> None:
    from cumulo.compute.service.server_groups import ServerGroupService

    ctx = await demo_ctx(cloud)
    engine = cloud.paas_engine
    env = environment(await image(as_ctx(ctx), "g4"))
    env["tiers"][1]["affinity"] = "affinity"
    task = await engine.deploy(ctx, name="gap4", description="", environment=env)
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    [inst] = await table(cloud, models.paas_env_instances)
    task = await engine.scale(ctx, inst, "web", count=2)
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    groups = ServerGroupService(cloud.services.db, cloud.services.conf)
    [group] = [g for g in await groups.list_groups(ctx.project_id) if g["name"].startswith("paas-")]
    web = sorted(str(n["server_id"]) for n in await table(cloud, TI) if n["tier"] == "web")
    assert group["policy"] == "affinity" and group["name"] == f"paas-{inst['id'][:8]}-web"
    assert sorted(group["members"]) == web
    ledger = [(r["type"], r["name"], r["state"]) for r in await table(cloud, models.paas_resources)]
    assert ("server_group", group["name"], "created") in ledger
    [inst] = await table(cloud, models.paas_env_instances)
    task = await engine.destroy(ctx, inst)
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    assert [g for g in await groups.list_groups(ctx.project_id) if g["name"].startswith("paas-")] == []


async def test_a_rolled_back_deploy_deletes_its_server_group(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    from cumulo.compute.service.server_groups import ServerGroupService

    ctx = await demo_ctx(cloud)
    env = environment(await image(as_ctx(ctx), "g5"))
    env["tiers"][0]["affinity"] = "soft-anti-affinity"
    env["tiers"][0]["products"][0]["attributes"].append({"key": "CUMULO_FAKE_EXIT", "value": "3"})
    task = await cloud.paas_engine.deploy(ctx, name="gap5", description="", environment=env)
    final = await cloud.paas_engine.wait(task["id"], timeout=120)
    assert final["status"] == "ERROR", final
    groups = await ServerGroupService(cloud.services.db, cloud.services.conf).list_groups(ctx.project_id)
    assert [g["name"] for g in groups if g["name"].startswith("paas-")] == []
    assert {(r["type"], r["state"]) for r in await table(cloud, models.paas_resources)
            if r["type"] == "server_group"} == {("server_group", "deleted")}


def test_the_cli_commands_send_pegasus_dtos() -> None:
    from osc_lib import exceptions
    from test_paas_osc import Resp, Session, _command, _task

    from cumulo.paas.osc import products as cli

    s = Session([Resp(202, _task("RUNNING"))] * 3)
    cmd, parsed = _command(cli.ReconfigureTier, s, ["i1", "web", "--attribute", "www:GREETING=hi there",
                                                     "--attribute", "PORT=8080"])
    assert dict(zip(*cmd.take_action(parsed), strict=True))["status"] == "RUNNING"
    call = s.calls[0]
    assert (call["method"], call["url"]) == ("PUT", "/rest/envInst/org/default/vdc/p1/environmentInstance/i1/tierInstance")
    assert call["json"] == {"tierDto": {"name": "web"}, "attributes": [{"key": "PORT", "value": "8080"}],
                            "productInstanceDtos": [{"productReleaseDto": {"productName": "www"},
                                                     "attributes": [{"key": "GREETING", "value": "hi there"}]}]}
    cmd, parsed = _command(cli.AddProductInstance, s, ["i1", "i1-web-1", "--product", "probe-2.0",
                                                        "--attribute", "LEVEL=5"])
    cmd.take_action(parsed)
    assert s.calls[1]["method"] == "POST" and s.calls[1]["url"].endswith("/tierInstance/i1-web-1/productInstance")
    assert s.calls[1]["json"] == {"productReleaseDto": {"productName": "probe", "version": "2.0"},
                                  "attributes": [{"key": "LEVEL", "value": "5"}]}
    cmd, parsed = _command(cli.RemoveProductInstance, s, ["i1", "i1-web-1", "probe"])
    cmd.take_action(parsed)
    assert s.calls[2]["method"] == "DELETE" and s.calls[2]["url"].endswith("/tierInstance/i1-web-1/productInstance/probe")
    for argv in (["i1", "web"], ["i1", "web", "--attribute", "NOVALUE"]):
        cmd, parsed = _command(cli.ReconfigureTier, Session([]), argv)
        with pytest.raises(exceptions.CommandError):
            cmd.take_action(parsed)
