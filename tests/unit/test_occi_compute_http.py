"""The compute kind through the OCCI HTTP app over the in-process cloud (fake driver): create with
os_tpl/resource_tpl/contextualization and an inline networkinterface in text/occi and in
application/occi+json, read back, the query interface's templates, an action refused in the state
(409) and one run, a missing os_tpl (400), and delete. The real hosts are the system tests'."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _asgi_ctx import ctx_for
from occi_cloud import image, occi_client

from cumulo.context import RequestContext

occi_api = pytest.importorskip("cumulo.occi.api")

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
OS = "http://schemas.openstack.org/template/os#"
RES = "http://schemas.openstack.org/template/resource#"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBd3mVmyC6gxhnTt2nVkVqSUdMAhFqvOhYnOOjEjn8Aq occi@test"
JSON_H = {"Content-Type": "application/occi+json", "Accept": "application/occi+json"}


async def state_of(occi: httpx.AsyncClient, cid: str, want: str, timeout: float = 20.0) -> dict[str, Any]:
    """The compute's JSON rendering once occi.compute.state is `want` and no task runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await occi.get(f"/occi/compute/{cid}", headers=JSON_H)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        attrs = body["attributes"]
        if attrs["occi.compute.state"] == want and "/" not in attrs["occi.compute.state.message"]:
            return body
        assert loop.time() < deadline, f"compute {cid} is {attrs['occi.compute.state.message']}, not {want}"
        await asyncio.sleep(0.03)


async def test_compute_over_http(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
    p1 = ctx_for("p1")
    nova = as_ctx(p1)
    img = await image(nova)
    r = await nova.post("/networking/v2.0/networks", json={"network": {"name": "n1"}})
    net = r.json()["network"]["id"]
    r = await nova.post("/networking/v2.0/subnets", json={"subnet": {"network_id": net, "cidr": "10.9.0.0/24", "ip_version": 4}})
    assert r.status_code == 201, r.text
    occi = occi_client(cloud, p1)

    # The query interface lists the image and the flavors as templates.
    r = await occi.get("/occi/-/", headers={"Accept": "text/plain"})
    assert r.status_code == 200
    assert re.search(rf'Category: {img}; scheme="{re.escape(OS)}"; class="mixin"; title="cirros \(vm\)"', r.text), r.text[:2000]
    assert f'Category: 42; scheme="{RES}"; class="mixin"; title="m1.nano"' in r.text

    # text/occi: every part in headers; an inline networkinterface with its fixed address.
    headers = [
        ("Content-Type", "text/occi"), ("Accept", "text/occi"),
        ("Category", f'compute; scheme="{INFRA}"; class="kind"'),
        ("Category", f'{img}; scheme="{OS}"; class="mixin", 42; scheme="{RES}"; class="mixin"'),
        ("Category", 'user_data; scheme="http://schemas.openstack.org/compute/instance#"; class="mixin"'),
        ("Category", 'public_key; scheme="http://schemas.openstack.org/instance/credentials#"; class="mixin"'),
        ("X-OCCI-Attribute", 'occi.core.title="web"'),
        ("X-OCCI-Attribute", f'org.openstack.compute.user_data="{base64.b64encode(b"#!/bin/sh").decode()}"'),
        ("X-OCCI-Attribute", f'org.openstack.credentials.publickey.data="{KEY}"'),
        ("Link", f'</occi/network/{net}>; rel="{INFRA}network"; category="{INFRA}networkinterface '
                 f'{INFRA[:-1]}/networkinterface#ipnetworkinterface"; occi.networkinterface.address="10.9.0.7"'),
    ]
    r = await occi.post("/occi/compute/", headers=headers)
    assert r.status_code == 201, r.text
    cid = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    body = await state_of(occi, cid, "active")
    assert body["kind"] == INFRA + "compute" and body["title"] == "web"  # occi.core.title (JSON rendering)
    assert set(body["mixins"]) >= {OS + img, RES + "42"}
    assert [(ln["kind"], ln["target"]["location"]) for ln in body["links"]] == [
        (INFRA + "networkinterface", f"http://cumulo.test/occi/network/{net}")]
    assert {a.rsplit("#", 1)[-1] for a in body.get("actions", [])} == {"stop", "restart", "suspend", "save"}
    row = await cloud.services.compute.get(p1, cid)
    assert row["key_data"] == KEY and base64.b64decode(row["user_data"]) == b"#!/bin/sh"
    r = await nova.get(f"/compute/v2.1/servers/{cid}", headers={"OpenStack-API-Version": "compute 2.79"})
    assert r.json()["server"]["addresses"]["n1"][0]["addr"] == "10.9.0.7"

    # An action the state does not allow is a 409; stop runs.
    r = await occi.post(f"/occi/compute/{cid}?action=start", headers={
        "Content-Type": "text/occi", "Category": f'start; scheme="{INFRA[:-1]}/compute/action#"; class="action"'})
    assert r.status_code == 409, r.text
    r = await occi.post(f"/occi/compute/{cid}?action=stop", headers={
        "Content-Type": "text/occi", "Category": f'stop; scheme="{INFRA[:-1]}/compute/action#"; class="action"',
        "X-OCCI-Attribute": 'method="poweroff"'})
    assert r.status_code in (200, 202, 204), r.text
    await state_of(occi, cid, "inactive")

    # JSON: a create without an os_tpl is a 400 naming it; with one, the smallest flavor that fits.
    r = await occi.post("/occi/compute/", headers=JSON_H, json={"kind": INFRA + "compute", "attributes": {}})
    assert r.status_code == 400 and "os_tpl" in r.text, r.text
    r = await occi.post("/occi/compute/", headers=JSON_H, json={"kind": INFRA + "compute", "mixins": [OS + img],
                                                               "attributes": {"occi.core.title": "json"}})
    assert r.status_code == 201, r.text
    cid2 = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    assert RES + "42" in (await state_of(occi, cid2, "active"))["mixins"]

    # Another project does not see them.
    other = occi_client(cloud, ctx_for("p2"))
    assert (await other.get(f"/occi/compute/{cid}", headers=JSON_H)).status_code == 404
    for c in (cid, cid2):
        r = await occi.delete(f"/occi/compute/{c}")
        assert r.status_code in (200, 204), r.text
    for client in (occi, other):
        await client.aclose()
