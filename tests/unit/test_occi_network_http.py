"""Networks and networkinterfaces through the real /occi app of the in-process cloud (fake driver),
in the text/plain and JSON renderings: create with the ipnetwork mixin, read, down/up (409 when
repeated), filtering the collection by the mixin, delete; another project gets 404s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from _asgi_ctx import ctx_for

from cumulo.context import RequestContext
from cumulo.occi import categories

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
NETWORK_CAT = f'network; scheme="{INFRA}"; class="kind"'
IPNETWORK_CAT = 'ipnetwork; scheme="http://schemas.ogf.org/occi/infrastructure/network#"; class="mixin"'
TEXT = {"Content-Type": "text/plain", "Accept": "text/plain"}


def action(term: str) -> str:
    return f'Category: {term}; scheme="{categories.NETWORK_ACTION}"; class="action"\n'


async def test_network_over_http(as_ctx: Callable[[RequestContext], httpx.AsyncClient], cloud: Any) -> None:
    p1, p2 = as_ctx(ctx_for("p1")), as_ctx(ctx_for("p2"))
    body = (f"Category: {NETWORK_CAT}\nCategory: {IPNETWORK_CAT}\n"
            'X-OCCI-Attribute: occi.core.title="lan"\n'
            'X-OCCI-Attribute: occi.network.address="10.60.0.0/24"\n'
            'X-OCCI-Attribute: occi.network.allocation="dynamic"\n')
    r = await p1.post("/occi/network/", content=body, headers=TEXT)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    path = "/occi/network/" + location.rstrip("/").rsplit("/", 1)[-1]
    net_id = path.rsplit("/", 1)[-1]
    [net] = [n for n in await cloud.services.network.list_networks(ctx_for("p1")) if n["id"] == net_id]
    assert net["name"] == "lan" and net["admin_state_up"] is True

    r = await p1.get(path, headers={"Accept": "application/occi+json"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["kind"] == categories.NETWORK.id and categories.IPNETWORK.id in doc["mixins"]
    assert doc["attributes"]["occi.network.address"] == "10.60.0.0/24"
    assert doc["attributes"]["occi.network.state"] == "active"

    r = await p1.post(path + "?action=down", content=action("down"), headers=TEXT)
    assert r.status_code in (200, 204), r.text
    assert (await cloud.services.network.get_network(ctx_for("p1"), net_id))["admin_state_up"] is False
    r = await p1.post(path + "?action=down", content=action("down"), headers=TEXT)
    assert r.status_code == 409, r.text
    r = await p1.get(path, headers={"Accept": "text/plain"})
    assert 'occi.network.state="inactive"' in r.text, r.text
    r = await p1.post(path + "?action=up", content=action("up"), headers=TEXT)
    assert r.status_code in (200, 204), r.text

    # Filtering the collection by the ipnetwork mixin: the new network, not a plain one.
    r = await p1.post("/occi/network/", content=f"Category: {NETWORK_CAT}\n"
                      'X-OCCI-Attribute: occi.core.title="plain"\n', headers=TEXT)
    assert r.status_code == 201, r.text
    plain = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    r = await p1.get("/occi/network/", headers={"Accept": "text/uri-list", "Content-Type": "text/plain",
                                                "Category": IPNETWORK_CAT})
    assert r.status_code == 200, r.text
    assert net_id in r.text and plain not in r.text

    # Another project: 404 on everything of p1's.
    for method, url in (("GET", path), ("DELETE", path), ("POST", path + "?action=up")):
        r = await p2.request(method, url, content=action("up") if method == "POST" else None, headers=TEXT)
        assert r.status_code == 404, (method, r.status_code, r.text)
    r = await p2.get("/occi/network/", headers={"Accept": "text/uri-list"})
    assert net_id not in r.text

    for ident in (net_id, plain):
        r = await p1.delete(f"/occi/network/{ident}")
        assert r.status_code in (200, 204), r.text
    r = await p1.get(path)
    assert r.status_code == 404


async def test_networkinterface_over_http(as_ctx: Callable[[RequestContext], httpx.AsyncClient], cloud: Any) -> None:
    from test_occi_network import active, image, services

    from cumulo.occi.backends import compute as occi_compute
    from cumulo.occi.backends import templates
    from cumulo.occi.model import EntityRequest

    svc = services(cloud)
    c1 = ctx_for("p1")
    p1, p2 = as_ctx(c1), as_ctx(ctx_for("p2"))
    r = await p1.post("/occi/network/", content=f"Category: {NETWORK_CAT}\nCategory: {IPNETWORK_CAT}\n"
                      'X-OCCI-Attribute: occi.network.address="10.61.0.0/24"\n', headers=TEXT)
    assert r.status_code == 201, r.text
    net_id = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    img = await image(p1)
    made = await occi_compute.make(svc).create(c1, EntityRequest(
        kind=categories.COMPUTE.id, mixins=[templates.OS_SCHEME + img, templates.RESOURCE_SCHEME + "1"]))
    await active(svc, c1, made.id)
    before = {p["id"] for p in await svc.network.ports_of_device(made.id)}

    body = (f'Category: networkinterface; scheme="{INFRA}"; class="kind"\n'
            f'X-OCCI-Attribute: occi.core.source="/occi/compute/{made.id}"\n'
            f'X-OCCI-Attribute: occi.core.target="/occi/network/{net_id}"\n')
    r = await p2.post("/occi/networkinterface/", content=body, headers=TEXT)
    assert r.status_code == 404, r.text
    r = await p1.post("/occi/networkinterface/", content=body, headers=TEXT)
    assert r.status_code == 201, r.text
    link = "/occi/networkinterface/" + r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    [port] = [p for p in await svc.network.ports_of_device(made.id) if p["id"] not in before]
    assert link.endswith(port["id"]) and port["network_id"] == net_id

    r = await p1.get(link, headers={"Accept": "application/occi+json"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["kind"] == categories.NETWORKINTERFACE.id
    assert doc["attributes"]["occi.networkinterface.address"] == port["fixed_ips"][0]["ip_address"]
    assert str(doc["target"]["location"]).endswith(f"/network/{net_id}"), doc
    r = await p1.get(f"/occi/compute/{made.id}", headers={"Accept": "text/plain"})
    assert port["id"] in r.text, r.text  # rendered inline on its compute
    assert (await p2.get(link)).status_code == 404

    r = await p1.delete(link)
    assert r.status_code in (200, 204), r.text
    assert port["id"] not in {p["id"] for p in await svc.network.ports_of_device(made.id)}
    assert (await p1.get(link)).status_code == 404
