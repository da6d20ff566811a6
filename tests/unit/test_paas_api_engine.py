"""/paas over the cloud's own engine (in-process cloud, fake driver: recipes are not run, exec exits
0): the API's snapshot, task and inventory shapes as the real engine writes them. Register products
and a two-tier environment, deploy (202, the task RUNNING then SUCCESS by its href), read the nodes
and the product records, add a node (POST tierInstance) and remove it by name (DELETE), deploy an
application artifact, see nothing from another project, destroy: nothing left. The whole path on
runc, through the openstack CLI, is tests/system/test_paas_cli.py's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from occi_cloud import image
from paas_api_support import data_url, tarball
from test_paas_deploy_infra import demo_ctx, leftovers

from cumulo.context import RequestContext, expand_roles
from cumulo.paas.engine.actions_net import named_networks

CAT = "/paas/rest/catalog"
RECIPES = {"install": "echo install", "configure": "echo configure", "start": "echo start", "stop": "echo stop",
           "deploy": "echo deploy"}


async def wait_task(client: httpx.AsyncClient, href: str, timeout: float = 120.0) -> dict[str, Any]:
    """The task once it ended (polled by its href), with every status seen on the way."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    path = href.removeprefix("http://cumulo.test")
    while time.monotonic() < deadline:
        r = await client.get(path)
        assert r.status_code == 200, r.text
        task: dict[str, Any] = r.json()
        if not seen or seen[-1] != task["status"]:
            seen.append(task["status"])
        if task["status"] in ("SUCCESS", "ERROR"):
            task["seen"] = seen
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {href} still {seen} after {timeout} s")


async def test_deploy_scale_application_destroy_through_the_api(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    ctx = await demo_ctx(cloud)
    a = as_ctx(ctx)
    image_id = await image(a, "paas-base")
    for name, attrs in (("kv", []), ("www", [{"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"}])):
        r = await a.post(f"{CAT}/productRelease", json={"productName": name, "version": "1.0", "attributes": attrs,
                                                        "recipes": RECIPES})
        assert r.status_code == 204, r.text

    def tier(name: str, product: str, hi: int) -> dict[str, Any]:
        return {"name": name, "flavour": "m1.tiny", "image": image_id, "minimumNumberInstances": 1,
                "maximumNumberInstances": hi, "initialNumberInstances": 1, "floatingip": "false",
                "productReleaseDtos": [{"productName": product, "version": "1.0"}]}

    r = await a.post(f"{CAT}/org/default/environment", json={"name": "shop", "tierDtos": [
        tier("web", "www", 2), tier("backend", "kv", 1)]})
    assert r.status_code == 204, r.text
    inst = f"/paas/rest/envInst/org/default/vdc/{ctx.project_id}/environmentInstance"
    r = await a.post(inst, json={"blueprintName": "shop1", "environmentDto": {"name": "shop"}})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == r.json()["href"] and r.json()["status"] in ("QUEUED", "RUNNING")
    task = await wait_task(a, r.json()["href"])
    assert task["status"] == "SUCCESS", task
    assert task["result"]["href"].endswith(f"/vdc/{ctx.project_id}/environmentInstance/shop1")
    body = (await a.get(f"{inst}/shop1")).json()
    assert body["status"] == "INSTALLED" and body["blueprintName"] == "shop1"
    assert {t["name"]: len(t["tierInstancePDto"]) for t in body["tierDto"]} == {"web": 1, "backend": 1}
    web1 = next(t for t in body["tierDto"] if t["name"] == "web")["tierInstancePDto"][0]
    assert web1["tierInstanceName"] == "shop1-web-1" and web1["vm"]["ip"] and web1["vm"]["id"]
    pis = (await a.get(f"{inst}/shop1/tierInstance/shop1-web-1/productInstance")).json()
    [www] = pis
    assert www["status"] == "INSTALLED" and www["productReleaseDto"] == {"productName": "www", "version": "1.0"}
    assert [s["step"] for s in www["steps"]][:3] == ["install", "configure", "start"]
    assert all(s["status"] == "SUCCESS" for s in www["steps"]), www["steps"]
    backend_ip = (await a.get(f"{inst}/shop1/tierInstance/shop1-backend-1")).json()["vm"]["ip"]
    assert {x["key"]: x["value"] for x in www["attributes"]}.get("BACKENDS") == backend_ip

    # one more web node, then remove it by name
    r = await a.post(f"{inst}/shop1/tierInstance", json={"name": "web"})
    assert r.status_code == 202, r.text
    assert (await wait_task(a, r.json()["href"]))["status"] == "SUCCESS"
    names = [n["tierInstanceName"] for n in (await a.get(f"{inst}/shop1/tierInstance?tier=web")).json()]
    assert names == ["shop1-web-1", "shop1-web-2"]
    r = await a.post(f"{inst}/shop1/tierInstance", json={"name": "web"})  # beyond max 2: the engine says so
    assert r.status_code == 400 and "max" in r.json()["message"], r.text
    r = await a.delete(f"{inst}/shop1/tierInstance/shop1-web-2")
    assert r.status_code == 202, r.text
    assert (await wait_task(a, r.json()["href"]))["status"] == "SUCCESS"
    names = [n["tierInstanceName"] for n in (await a.get(f"{inst}/shop1/tierInstance?tier=web")).json()]
    assert names == ["shop1-web-1"]

    # an application artifact into www's directory
    r = await a.post(f"{inst}/shop1/applicationInstance", json={"applicationName": "site", "version": "1", "artifactsDto": [
        {"name": "site.tgz", "path": data_url(tarball({"index.html": b"<h1>hi</h1>"})),
         "productReleaseDto": {"productName": "www"}}]})
    assert r.status_code == 202, r.text
    assert (await wait_task(a, r.json()["href"]))["status"] == "SUCCESS"
    [app] = (await a.get(f"{inst}/shop1/applicationInstance")).json()
    assert app["applicationName"] == "site" and app["productName"] == "www" and app["artifact"]["source"] == "inline"

    # another project: none of it
    other = as_ctx(RequestContext(user_id="u2", project_id="other-project", roles=expand_roles(["member"])))
    other_inst = "/paas/rest/envInst/org/default/vdc/other-project/environmentInstance"
    assert (await other.get(other_inst)).json() == []
    assert (await other.get(f"{other_inst}/shop1")).status_code == 404
    assert (await other.get(task["href"].removeprefix("http://cumulo.test"))).status_code == 404
    assert (await other.get(f"/paas/rest/vdc/other-project/task/{task['href'].rsplit('/', 1)[1]}")).status_code == 404

    r = await a.delete(f"{inst}/shop1")
    assert r.status_code == 202, r.text
    assert (await wait_task(a, r.json()["href"]))["status"] == "SUCCESS"
    assert (await a.get(f"{inst}/shop1")).status_code == 404
    assert await leftovers(cloud, ctx) == {"servers": [], "groups": [], "fips": []}


async def test_a_deploy_naming_a_network_the_project_lacks_is_a_400(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    """A tier's networks are checked at the POST (not only by the task's "net" step): a name the
    project does not see, or another project's network, is a 400 naming it; nothing is made."""
    ctx = await demo_ctx(cloud)
    a = as_ctx(ctx)
    image_id = await image(a, "paas-base")
    other = RequestContext(user_id="u2", project_id="other-project", roles=expand_roles(["member"]))
    theirs = await cloud.services.network.create_network(other, {"name": "theirs"})
    inst = f"/paas/rest/envInst/org/default/vdc/{ctx.project_id}/environmentInstance"
    for env, net in (("lost", "nowhere"), ("stolen", "theirs"), ("stolen-id", theirs["id"])):
        r = await a.post(f"{CAT}/org/default/environment", json={"name": env, "tierDtos": [{
            "name": "web", "flavour": "m1.tiny", "image": image_id, "minimumNumberInstances": 1,
            "maximumNumberInstances": 1, "initialNumberInstances": 1, "networkDto": [{"networkName": net}]}]})
        assert r.status_code == 204, r.text
        r = await a.post(inst, json={"blueprintName": f"{env}1", "environmentDto": {"name": env}})
        assert r.status_code == 400, r.text
        assert r.json() == {"message": f"tier web: network {net!r} is not a network of the project", "code": 400}
        assert (await a.get(f"{inst}/{env}1")).status_code == 404
    assert (await a.get(f"/paas/rest/vdc/{ctx.project_id}/task")).json() == []
    # the project's own network (by name) passes the same check
    private = [n for n in await cloud.services.network.list_networks(ctx) if n["name"] == "private"]
    assert await named_networks(cloud.services.network, ctx, {"name": "web", "networks": [{"name": "private"}]}) == [
        private[0]["id"]]
