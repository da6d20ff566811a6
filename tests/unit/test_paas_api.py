"""The /paas front door over a fake engine: every route, the 202 Task answers, the engine's 409,
the policy rules, and the family's fault format."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
import sqlalchemy as sa
from _asgi_ctx import temp_database
from paas_api_support import CAT, FakeEngine, client, data_url, mount, product, tarball, tier, two_tier

from cumulo.db import Database, utcnow
from cumulo.paas.models import (
    paas_env_instances,
    paas_events,
    paas_exec_records,
    paas_product_instances,
    paas_tier_instances,
)

ORG = "default"
ENV = f"{CAT}/org/{ORG}/environment"


@dataclass
class Api:
    db: Database
    engine: FakeEngine
    app: Any
    conf: Any
    a: httpx.AsyncClient
    reader: httpx.AsyncClient
    admin: httpx.AsyncClient

    def inst(self, project: str = "proj-a") -> str:
        return f"/paas/rest/envInst/org/{ORG}/vdc/{project}/environmentInstance"


@pytest_asyncio.fixture
async def api(settings: Any) -> AsyncIterator[Api]:
    async with temp_database(settings) as db:
        engine = FakeEngine(db)
        app = mount(db, settings, engine)
        clients = [client(app, "proj-a"), client(app, "proj-a", "reader"), client(app, "proj-a", "admin")]
        try:
            yield Api(db, engine, app, settings, *clients)
        finally:
            for c in clients:
                await c.aclose()


async def catalogue(api: Api, name: str = "shop") -> None:
    for p in (product("web-app"), product("kv", "1.0", ("PORT", "8080", "Plain"))):
        r = await api.a.post(f"{CAT}/productRelease", json=p)
        assert r.status_code == 204 and r.content == b"", r.text
    r = await api.a.post(ENV, json=two_tier(name))
    assert r.status_code == 204 and r.headers["location"].endswith(f"/catalog/org/default/environment/{name}"), r.text


async def deployed(api: Api, name: str = "shop1") -> dict[str, Any]:
    await catalogue(api)
    r = await api.a.post(api.inst(), json={"blueprintName": name, "environmentDto": {"name": "shop"}},
                         headers={"callback": "http://127.0.0.1:9/cb"})
    assert r.status_code == 202, r.text
    return dict(r.json())


async def test_product_releases_create_list_show_delete(api: Api) -> None:
    r = await api.a.post(f"{CAT}/productRelease", json=product(
        "kv", "1.0", ("PORT", "8080", "Plain"), metadatas=[{"key": "open_ports", "value": "8080 9000-9010"}]))
    assert r.status_code == 204 and r.content == b"", r.text  # Pegasus's answer: no body
    assert r.headers["location"] == "http://cumulo.test/paas/rest/catalog/productRelease/kv-1.0"
    body = (await api.a.get(r.headers["location"])).json()
    assert body["productName"] == "kv" and body["version"] == "1.0" and body["builtin"] is False
    assert body["attributes"] == [{"key": "PORT", "value": "8080", "type": "Plain"}]
    assert body["recipes"] == {"install": "echo install", "start": "echo start"}
    assert body["metadatas"] == [{"key": "open_ports", "value": "8080 9000-9010"}]
    listed = (await api.reader.get(f"{CAT}/productRelease")).json()
    assert [p["productName"] for p in listed] == ["kv"]
    assert (await api.a.get(f"{CAT}/productRelease/kv-1.0")).json()["version"] == "1.0"
    assert (await api.a.get(f"{CAT}/productRelease/kv")).json()["version"] == "1.0"  # one release: by name
    again = await api.a.post(f"{CAT}/productRelease", json=product("kv"))
    assert again.status_code == 409 and again.json() == {"message": "product release kv-1.0 already exists "
                                                         "(this project's)", "code": 409}
    assert (await api.a.delete(f"{CAT}/productRelease/kv-1.0")).status_code == 204
    assert (await api.a.get(f"{CAT}/productRelease/kv-1.0")).status_code == 404


async def test_public_products_need_the_admin(api: Api) -> None:
    pub = product("shared", metadatas=[{"key": "public", "value": "yes"}])
    r = await api.a.post(f"{CAT}/productRelease", json=pub)
    assert r.status_code == 403 and "paas:product:publish" in r.json()["message"]
    assert (await api.admin.post(f"{CAT}/productRelease", json=pub)).status_code == 204
    async with client(api.app, "proj-b") as b:
        seen = (await b.get(f"{CAT}/productRelease/shared-1.0")).json()
        assert seen["public"] is True
        r = await b.delete(f"{CAT}/productRelease/shared-1.0")
        assert r.status_code == 403 and "public" in r.json()["message"]
    assert (await api.admin.delete(f"{CAT}/productRelease/shared-1.0")).status_code == 204


async def test_environments_and_tiers(api: Api) -> None:
    await catalogue(api)
    r = await api.a.get(f"{ENV}/shop")
    env = r.json()
    assert env["name"] == "shop" and env["vdc"] == "proj-a" and env["org"] == "default"
    assert [t["name"] for t in env["tierDtos"]] == ["web", "backend"]
    web = env["tierDtos"][0]
    assert web["floatingip"] == "true" and web["minimumNumberInstances"] == 1 and web["maximumNumberInstances"] == 3
    assert web["productReleaseDtos"][0]["attributes"][0]["type"] == "IPALL"
    # the vdc alias and the "Default" domain name reach the same environment
    alias = await api.a.get(f"{CAT}/org/Default/vdc/proj-a/environment/shop")
    assert alias.status_code == 200 and alias.json() == env
    assert [e["name"] for e in (await api.reader.get(ENV)).json()] == ["shop"]
    # tiers
    assert [t["name"] for t in (await api.a.get(f"{ENV}/shop/tier")).json()] == ["web", "backend"]
    r = await api.a.post(f"{ENV}/shop/tier", json=tier("cache", lo=0, hi=2, initial=0))
    assert r.status_code == 204 and r.headers["location"].endswith("/environment/shop/tier/cache")
    r = await api.a.put(f"{ENV}/shop/tier/cache", json=tier("cache", lo=1, hi=4, initial=2))
    assert r.status_code == 204 and r.content == b"" and r.headers["location"].endswith("/environment/shop/tier/cache")
    assert (await api.a.get(r.headers["location"])).json()["initialNumberInstances"] == 2
    assert (await api.a.get(f"{ENV}/shop/tier/cache")).json()["maximumNumberInstances"] == 4
    assert (await api.a.post(f"{ENV}/shop/tier", json=tier("cache"))).status_code == 409
    assert (await api.a.delete(f"{ENV}/shop/tier/cache")).status_code == 204
    assert (await api.a.get(f"{ENV}/shop/tier/cache")).status_code == 404
    # a tier the others depend on can not go
    r = await api.a.delete(f"{ENV}/shop/tier/backend")
    assert r.status_code == 400 and "backend" in r.json()["message"]
    # a product in use can not go
    r = await api.a.delete(f"{CAT}/productRelease/kv-1.0")
    assert r.status_code == 409 and "tier backend of environment shop" in r.json()["message"]
    assert (await api.a.post(ENV, json=two_tier())).status_code == 409
    assert (await api.a.delete(f"{ENV}/shop")).status_code == 204
    assert (await api.a.get(f"{ENV}/shop")).status_code == 404


async def test_org_and_vdc_must_be_the_callers(api: Api) -> None:
    await catalogue(api)
    for path in (f"{CAT}/org/FIWARE/environment/shop", f"{CAT}/org/default/vdc/proj-b/environment/shop",
                 "/paas/rest/envInst/org/default/vdc/proj-b/environmentInstance", "/paas/rest/vdc/proj-b/task"):
        r = await api.a.get(path)
        assert r.status_code == 404, path
    r = await api.a.get(ENV, headers={"Tenant-Id": "proj-b"})
    assert r.status_code == 403 and r.json()["code"] == 403


async def test_deploy_answers_202_with_the_task(api: Api) -> None:
    task = await deployed(api)
    assert task["status"] == "RUNNING" and task["vdc"] == "proj-a" and task["environment"] == "shop1"
    assert task["href"].startswith("http://cumulo.test/paas/rest/vdc/proj-a/task/")
    assert task["result"] == {"href": "http://cumulo.test/paas/rest/envInst/org/default/vdc/proj-a/environmentInstance/shop1",
                              "name": "shop1", "type": "EnvironmentInstance"}
    kind, call = api.engine.calls[0]
    assert kind == "deploy" and call["callback"] == "http://127.0.0.1:9/cb" and call["keep_on_failure"] is False
    snap = call["environment"]
    web = next(t for t in snap["tiers"] if t["name"] == "web")
    assert web["products"][0]["release"]["recipes"]["install"] == "echo install"
    backend = next(t for t in snap["tiers"] if t["name"] == "backend")
    assert backend["products"][0]["attributes"] == [{"key": "PORT", "value": "8080", "type": "Plain", "description": ""}]
    # the task, by its href and in the lists
    r = await api.reader.get(task["href"].removeprefix("http://cumulo.test"))
    assert r.status_code == 200 and r.json() == task
    assert [t["href"] for t in (await api.a.get("/paas/rest/vdc/proj-a/task?states=RUNNING")).json()] == [task["href"]]
    assert (await api.a.get("/paas/rest/vdc/proj-a/task?states=ERROR")).json() == []
    assert len((await api.a.get("/paas/rest/vdc/proj-a/task/environmentInstance/shop1")).json()) == 1
    # a second deploy of the same name
    r = await api.a.post(api.inst(), json={"blueprintName": "shop1", "environmentDto": {"name": "shop"}})
    assert r.status_code == 409


async def test_instance_nodes_products_and_the_engine_conflict(api: Api) -> None:
    await deployed(api)
    insts = (await api.reader.get(api.inst())).json()
    assert [i["blueprintName"] for i in insts] == ["shop1"]
    inst = (await api.a.get(f"{api.inst()}/shop1")).json()
    assert inst["status"] == "DEPLOYING" and inst["environmentInstanceName"] == "proj-a-shop"
    web = next(t for t in inst["tierDto"] if t["name"] == "web")
    assert [n["tierInstanceName"] for n in web["tierInstancePDto"]] == ["shop1-web-1"]
    nodes = (await api.a.get(f"{api.inst()}/shop1/tierInstance?tier=backend")).json()
    assert [n["tierInstanceName"] for n in nodes] == ["shop1-backend-1"]
    node = (await api.a.get(f"{api.inst()}/shop1/tierInstance/shop1-web-1")).json()
    assert node["vm"]["ip"] == "10.0.0.1" and node["tierDto"] == {"name": "web"}
    # a running task: the engine refuses the next operation
    r = await api.a.post(f"{api.inst()}/shop1/tierInstance", json={"name": "web"})
    assert r.status_code == 409 and "running task" in r.json()["message"]
    await api.engine.finish_all()
    r = await api.a.post(f"{api.inst()}/shop1/tierInstance", json={"name": "web"})
    assert r.status_code == 202 and r.headers["location"] == r.json()["href"] and r.json()["tier"] == "web"
    assert api.engine.calls[-1] == ("scale", {"name": "shop1", "tier": "web", "count": 2, "remove": None,
                                              "use_template": True, "callback": None})
    await api.engine.finish_all()
    assert (await api.a.delete(f"{api.inst()}/shop1/tierInstance/shop1-web-1")).status_code == 202
    assert api.engine.calls[-1][1]["remove"] == "shop1-web-1"
    await api.engine.finish_all()
    assert (await api.a.delete(f"{api.inst()}/shop1/tierInstance/shop1-web-9")).status_code == 404
    # the scale extension
    r = await api.a.post(f"{api.inst()}/shop1/tier/web/scale", json={"count": 3, "useTemplate": False})
    assert r.status_code == 202
    assert api.engine.calls[-1][1] == {"name": "shop1", "tier": "web", "count": 3, "remove": None,
                                            "use_template": False, "callback": None}
    await api.engine.finish_all()
    for bad, word in (({}, "either count"), ({"count": 1, "remove": "x"}, "either count"), ({"count": -1}, "zero"),
                      ({"count": "many"}, "whole number"), ({"size": 2}, "size")):
        r = await api.a.post(f"{api.inst()}/shop1/tier/web/scale", json=bad)
        assert r.status_code == 400 and word in r.json()["message"], (bad, r.text)
    assert (await api.a.post(f"{api.inst()}/shop1/tier/nope/scale", json={"count": 1})).status_code == 404
    r = await api.a.post(f"{api.inst()}/shop1/tier/web/scale", json={"remove": "shop1-backend-1"})
    assert r.status_code == 400 and "tier backend" in r.json()["message"]
    # destroy
    r = await api.a.delete(f"{api.inst()}/shop1")
    assert r.status_code == 202 and api.engine.calls[-1][0] == "destroy"


async def test_product_instances_show_their_steps(api: Api) -> None:
    await deployed(api)
    async with api.db.write() as conn:
        pi = (await conn.execute(sa.select(paas_product_instances.c.id).where(
            paas_product_instances.c.product == "web-app"))).scalar_one()
        await conn.execute(paas_exec_records.insert().values(
            product_instance_id=pi, step="install", exit_code=None, skipped_reason="template image img-1",
            started_at=utcnow(), ended_at=utcnow()))
        await conn.execute(paas_exec_records.insert().values(
            product_instance_id=pi, step="configure", exit_code=3, stdout="configuring\n", stderr="boom\n",
            started_at=utcnow(), ended_at=utcnow()))
    base = f"{api.inst()}/shop1/tierInstance/shop1-web-1/productInstance"
    listed = (await api.reader.get(base)).json()
    assert [p["name"] for p in listed] == ["shop1-web-1_web-app_1.0"]
    one = (await api.a.get(f"{base}/web-app")).json()
    assert one == (await api.a.get(f"{base}/shop1-web-1_web-app_1.0")).json()
    assert one["status"] == "INSTALLING" and one["fromTemplate"] is False
    assert one["attributes"] == [{"key": "PORT", "value": "80", "type": "Plain"}]
    install, configure = one["steps"]
    assert install["status"] == "SKIPPED" and install["skippedReason"] == "template image img-1"
    assert configure["status"] == "ERROR" and configure["exitCode"] == 3 and configure["output"] == "configuring\n\nboom\n"
    assert (await api.a.get(f"{base}/nope")).status_code == 404


async def test_applications_store_the_artifact(api: Api) -> None:
    await deployed(api)
    await api.engine.finish_all()
    raw = tarball({"index.html": b"<h1>hello</h1>", "cgi-bin/app": b"#!/bin/sh\necho hi\n"})
    body = {"applicationName": "site", "version": "1.0",
            "artifactsDto": [{"name": "site.tgz", "path": data_url(raw), "productReleaseDto": {"productName": "web-app"}}]}
    r = await api.a.post(f"{api.inst()}/shop1/applicationInstance", json=body)
    assert r.status_code == 202, r.text
    kind, call = api.engine.calls[-1]
    app = call["application"]
    assert kind == "deploy_application" and app["name"] == "site" and app["product"] == "web-app"
    assert app["artifact"]["size"] == len(raw) and app["artifact"]["source"] == "inline"
    path = api.conf.state_dir / "paas" / "artifacts" / app["artifact"]["sha256"]
    assert path.read_bytes() == raw and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    await api.engine.finish_all()
    for art, word in (({"path": "http://example.com/app.tgz"}, "data URL"),
                      ({"path": "data:application/gzip;base64,@@@"}, "base64"),
                      ({"path": data_url(b"plain text")}, "gzip"),
                      ({"path": data_url(tarball({"../../etc/passwd": b"x"}))}, "outside"),
                      ({"path": data_url(raw), "productReleaseDto": {"productName": "nope"}}, "nope")):
        bad = {"applicationName": "x", "artifactsDto": [{"productReleaseDto": {"productName": "web-app"}, **art}]}
        r = await api.a.post(f"{api.inst()}/shop1/applicationInstance", json=bad)
        assert r.status_code == 400 and word in r.json()["message"], (word, r.text)
    r = await api.a.post(f"{api.inst()}/shop1/applicationInstance", json={"applicationName": "x", "artifactsDto": []})
    assert r.status_code == 400 and "exactly one artifact" in r.json()["message"]
    assert (await api.a.get(f"{api.inst()}/shop1/applicationInstance")).json() == []
    assert (await api.a.get(f"{api.inst()}/shop1/applicationInstance/site")).status_code == 404


async def test_events_of_an_instance(api: Api) -> None:
    await deployed(api)
    async with api.db.read() as conn:
        inst_id = (await conn.execute(sa.select(paas_env_instances.c.id))).scalar_one()
    async with api.db.write() as conn:
        for tier_name, value in (("web", 91.5), ("backend", 12.0)):
            await conn.execute(paas_events.insert().values(
                env_instance_id=inst_id, project_id="proj-a", tier=tier_name, policy="up", metric="cpu", value=value,
                threshold=80.0, comparison="gt", decision="scale_out", reason="cpu 91.5 > 80", from_size=1, to_size=2))
    events = (await api.reader.get(f"{api.inst()}/shop1/event")).json()
    assert [e["tier"] for e in events] == ["web", "backend"]
    web = (await api.a.get(f"{api.inst()}/shop1/event?tier=web")).json()
    assert len(web) == 1 and web[0]["value"] == 91.5 and web[0]["fromSize"] == 1 and web[0]["toSize"] == 2


async def test_policy_rules(api: Api) -> None:
    await deployed(api)
    await api.engine.finish_all()
    writes = [("POST", f"{CAT}/productRelease", product("x")), ("POST", ENV, two_tier("other")),
              ("DELETE", f"{ENV}/shop", None), ("POST", api.inst(), {"blueprintName": "z", "environmentDto": {"name": "shop"}}),
              ("DELETE", f"{api.inst()}/shop1", None), ("POST", f"{api.inst()}/shop1/tier/web/scale", {"count": 2})]
    for method, path, body in writes:
        r = await api.reader.request(method, path, json=body)
        assert r.status_code == 403 and r.json()["code"] == 403, (method, path, r.text)
    for path in (f"{CAT}/productRelease", ENV, api.inst(), f"{api.inst()}/shop1/tierInstance", "/paas/rest/vdc/proj-a/task"):
        assert (await api.reader.get(path)).status_code == 200, path


async def test_without_an_engine_the_writes_answer_503(settings: Any) -> None:
    async with temp_database(settings) as db:
        app = mount(db, settings, None)
        async with client(app, "proj-a") as a:
            r = await a.post(f"{CAT}/productRelease", json=product("kv"))
            assert r.status_code == 204
            assert (await a.post(ENV, json={"name": "solo", "tierDtos": [
                tier("t", {"productName": "kv", "version": "1.0"})]})).status_code == 204
            r = await a.post("/paas/rest/envInst/org/default/vdc/proj-a/environmentInstance",
                             json={"blueprintName": "s", "environmentDto": {"name": "solo"}})
            assert r.status_code == 503 and r.json()["code"] == 503 and "engine" in r.json()["message"]
            assert (await a.get("/paas/rest/envInst/org/default/vdc/proj-a/environmentInstance")).json() == []


async def test_faults_unknown_paths_methods_media_types(api: Api) -> None:
    r = await api.a.get("/paas/rest/nothing/here")
    assert r.status_code == 404 and r.json() == {"message": "The resource could not be found.", "code": 404}
    r = await api.a.patch(f"{CAT}/productRelease")
    assert r.status_code == 405 and r.json()["code"] == 405
    r = await api.a.get(f"{CAT}/productRelease", headers={"Accept": "application/xml"})
    assert r.status_code == 406 and "application/json" in r.json()["message"]
    r = await api.a.post(f"{CAT}/productRelease", content=b"<productRelease/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415
    for ctype in ("application/json1", "text/json", "application/jsonx; charset=utf-8"):  # Pegasus's suite: 415
        r = await api.a.post(f"{CAT}/productRelease", content=b"{}", headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype
    r = await api.a.post(f"{CAT}/productRelease", content=b"{}", headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 400  # JSON, parsed; the empty release is refused for what it lacks
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://cumulo.test") as anon:
        r = await anon.get(f"{CAT}/productRelease")
        assert r.status_code == 401 and r.json()["code"] == 401


async def test_removed_nodes_leave_the_lists(api: Api) -> None:
    await deployed(api)
    await api.engine.finish_all()
    async with api.db.write() as conn:
        await conn.execute(paas_tier_instances.update().where(paas_tier_instances.c.name == "shop1-web-1").values(
            status="UNDEPLOYED", server_id=None))
    nodes = f"{api.inst()}/shop1/tierInstance"
    assert [n["tierInstanceName"] for n in (await api.a.get(nodes)).json()] == ["shop1-backend-1"]
    assert [n["tierInstanceName"] for n in (await api.a.get(f"{nodes}?status=UNDEPLOYED")).json()] == ["shop1-web-1"]
    web = next(t for t in (await api.a.get(f"{api.inst()}/shop1")).json()["tierDto"] if t["name"] == "web")
    assert web["tierInstancePDto"] == []
    assert (await api.a.get(f"{nodes}/shop1-web-1")).json()["status"] == "UNDEPLOYED"
    r = await api.a.delete(f"{nodes}/shop1-web-1")
    assert r.status_code == 404 and "was removed" in r.json()["message"]
    # one more node: counted from the live ones
    assert (await api.a.post(nodes, json={"name": "web"})).status_code == 202
    assert api.engine.calls[-1][1]["count"] == 1


class Chunks:
    """A streamed body (no Content-Length) of `total` bytes after `head`, counting what was pulled."""

    def __init__(self, head: bytes, total: int) -> None:
        self.head, self.total, self.pulled = head, total, 0

    async def __aiter__(self) -> Any:
        self.pulled += 1
        yield self.head
        sent = len(self.head)
        while sent < self.total:
            self.pulled += 1
            sent += 1 << 16
            yield b"x" * (1 << 16)


async def test_hostile_bodies_are_4xx_never_500(api: Api) -> None:
    await catalogue(api)
    inst = api.inst()
    for path in (f"{CAT}/productRelease", ENV, f"{ENV}/shop/tier", inst, f"{inst}/shop1/applicationInstance"):
        body = Chunks(b'{"name": "', 5 << 20)
        r = await api.a.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == 413 and body.pulled < 40, (path, body.pulled)
        r = await api.a.post(path, content=b"{}", headers={"Content-Type": "application/json",
                                                           "Content-Length": str(200 << 20)})
        assert r.status_code == 413, path
        for raw in (b'{"productName": "\\ud800", "name": "\\udfff"}', '{"name": "a\ud800"}'.encode("utf-8", "surrogatepass"),
                    b"[" * 10000, b'{"a": 1', b"\xff\xfe", b""):
            r = await api.a.post(path, content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and r.json()["code"] == 400 and r.json()["message"], (path, raw[:20], r.text)


async def test_a_tiers_product_releases(api: Api) -> None:
    await catalogue(api)
    assert (await api.a.post(f"{CAT}/productRelease", json=product("extra"))).status_code == 204
    base = f"{ENV}/shop/tier/backend/productRelease"
    assert [p["productName"] for p in (await api.reader.get(base)).json()] == ["kv"]
    r = await api.a.post(base, json={"productName": "extra"})
    assert r.status_code == 204 and r.headers["location"].endswith("/tier/backend/productRelease/extra"), r.text
    assert (await api.reader.get(r.headers["location"])).json() == {"productName": "extra", "version": "1.0", "attributes": []}
    r = await api.a.post(base, json={"productName": "extra"})
    assert r.status_code == 400 and "listed twice" in r.json()["message"]
    r = await api.a.post(base, json={"productName": "nope", "version": "2"})
    assert r.status_code == 400 and "unknown product release nope-2 in tier backend" in r.json()["message"]
    r = await api.a.post(f"{ENV}/shop/tier/backend/productRelease", json={"productName": "kv2", "attributes": [
        {"key": "W", "value": "IP(web)", "type": "IP"}]})
    assert r.status_code == 400 and "cycle" in r.json()["message"]
    assert (await api.a.delete(f"{base}/extra-1.0")).status_code == 204
    assert (await api.a.delete(f"{base}/extra")).status_code == 404
    assert [p["productName"] for p in (await api.a.get(base)).json()] == ["kv"]
    assert (await api.reader.post(base, json={"productName": "extra"})).status_code == 403
