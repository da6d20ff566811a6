"""Issue 12, acceptance 4: a tenant cannot see or act on another tenant's entities through /occi.

One real cloud (fake driver) mounted as `cumulo up` mounts it, with the service-backed backends:
project A makes a compute, a storage, a network, a storagelink, a networkinterface and a user mixin
through OCCI; project B's member then tries every route on each of them (get, full and partial
update, actions, delete, link creation pointing at them, filtering, collections, collection actions
and deletes, mixin collections) and gets 404 (or sees nothing), and A's entities are untouched."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio
from _asgi_ctx import AsCtx
from fuzz_support import FLAVOR, World, make_ctx, start_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
OS_TPL = "http://schemas.openstack.org/template/os#"
RES_TPL = "http://schemas.openstack.org/template/resource#"
TAGS = "http://example.com/iso-tags#"
BASE = "http://cumulo.test/occi"


def kind(term: str) -> tuple[str, str]:
    return ("Category", f'{term}; scheme="{INFRA}"; class="kind"')


@dataclass
class Iso:
    world: World
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    loc: dict[str, str] = field(default_factory=dict)  # kind term -> A's entity location ("/compute/<id>")


async def _post(client: httpx.AsyncClient, path: str, headers: list[tuple[str, str]]) -> httpx.Response:
    return await client.post(f"/occi{path}", headers=[("Content-Type", "text/occi"), *headers])


async def _wait(client: httpx.AsyncClient, loc: str, attr: str, want: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        r = await client.get(f"/occi{loc}", headers={"Accept": "application/occi+json"})
        assert r.status_code == 200, r.text
        seen = r.json()["attributes"].get(attr)
        if seen == want:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{loc}: {attr} stayed {seen!r}, never {want!r}")


async def _create(client: httpx.AsyncClient, path: str, headers: list[tuple[str, str]]) -> str:
    r = await _post(client, path, headers)
    assert r.status_code == 201, r.text
    return r.headers["location"].removeprefix(BASE)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def iso(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Iso]:
    async for world in start_world(tmp_path_factory.mktemp("occi-iso")):
        app = world.cloud.asgi_app()
        b = httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, make_ctx(world.other_project, "member"))),
                              base_url="http://cumulo.test")
        env = Iso(world, world.member, b)
        a = env.a
        env.loc["compute"] = await _create(a, "/compute/", [
            kind("compute"), ("Category", f'{world.image_id}; scheme="{OS_TPL}"; class="mixin"'),
            ("Category", f'{FLAVOR}; scheme="{RES_TPL}"; class="mixin"'), ("X-OCCI-Attribute", 'occi.core.title="iso-a"')])
        env.loc["storage"] = await _create(a, "/storage/", [kind("storage"), ("X-OCCI-Attribute", "occi.storage.size=1")])
        env.loc["network"] = await _create(a, "/network/", [
            kind("network"), ("Category", f'ipnetwork; scheme="{INFRA.removesuffix("#")}/network#"; class="mixin"'),
            ("X-OCCI-Attribute", 'occi.network.address="10.77.0.0/24"')])
        await _wait(a, env.loc["compute"], "occi.compute.state", "active")
        await _wait(a, env.loc["storage"], "occi.storage.state", "online")
        for link, target in (("storagelink", "storage"), ("networkinterface", "network")):
            env.loc[link] = await _create(a, f"/{link}/", [
                kind(link), ("X-OCCI-Attribute", f'occi.core.source="{env.loc["compute"]}"'),
                ("X-OCCI-Attribute", f'occi.core.target="{env.loc[target]}"')])
        r = await _post(a, "/-/", [("Category", f'mine; scheme="{TAGS}"; class="mixin"; location="/iso/mine/"')])
        assert r.status_code == 200, r.text
        r = await a.post("/occi/iso/mine/", headers={"Content-Type": "text/occi", "X-OCCI-Location": BASE + env.loc["compute"]})
        assert r.status_code == 200, r.text
        try:
            yield env
        finally:
            await b.aclose()


ACTIONS = {"compute": "stop", "storage": "offline", "network": "down"}
TERMS = ("compute", "storage", "network", "storagelink", "networkinterface")


@pytest.mark.parametrize("term", TERMS)
async def test_another_projects_entity_is_404_on_every_route(iso: Iso, term: str) -> None:
    loc = iso.loc[term]
    url = f"/occi{loc}"
    text = {"Content-Type": "text/occi"}
    probes = [
        ("GET", url, {}),
        ("PUT", url, {**text, "Category": kind(term)[1]}),
        ("POST", url, {**text, "X-OCCI-Attribute": 'occi.core.title="stolen"'}),
        ("DELETE", url, {}),
    ]
    if term in ACTIONS:
        probes.append(("POST", f"{url}?action={ACTIONS[term]}", text))
    for method, target, headers in probes:
        r = await iso.b.request(method, target, headers=headers)
        assert r.status_code == 404, (method, target, r.status_code, r.text)
    # A's entity is still there, unchanged
    r = await iso.a.get(url, headers={"Accept": "application/occi+json"})
    assert r.status_code == 200 and r.json().get("title") != "stolen", r.text


async def test_collections_and_filters_show_nothing_of_another_project(iso: Iso) -> None:
    for path in ("/occi/", *(f"/occi/{t}/" for t in TERMS)):
        r = await iso.b.get(path, headers={"Accept": "text/uri-list"})
        assert r.status_code == 200, r.text
        assert not set(r.text.split()) & {BASE + v for v in iso.loc.values()}, (path, r.text)
    a_id = iso.loc["compute"].rsplit("/", 1)[1]
    for path in ("/occi/", "/occi/compute/"):
        r = await iso.b.get(path, headers={"Accept": "text/uri-list", "X-OCCI-Attribute": f'occi.core.id="{a_id}"'})
        assert r.text.strip() == "", r.text
        r = await iso.a.get(path, headers={"Accept": "text/uri-list", "X-OCCI-Attribute": f'occi.core.id="{a_id}"'})
        assert r.text.split() == [BASE + iso.loc["compute"]], r.text  # the positive control


async def test_collection_actions_and_deletes_touch_only_the_callers_entities(iso: Iso) -> None:
    r = await iso.b.post("/occi/compute/?action=stop", headers={"Content-Type": "text/occi"})
    assert r.status_code == 200, r.text
    own = await _create(iso.b, "/network/", [kind("network"), ("X-OCCI-Attribute", 'occi.core.title="iso-b"')])
    r = await iso.b.delete("/occi/network/")  # B's own network goes; the shared ones B only sees stay
    assert r.status_code == 200, r.text
    assert (await iso.b.get(f"/occi{own}")).status_code == 404
    a = await iso.a.get(f"/occi{iso.loc['compute']}", headers={"Accept": "application/occi+json"})
    assert a.json()["attributes"]["occi.compute.state"] == "active"
    assert (await iso.a.get(f"/occi{iso.loc['network']}")).status_code == 200


async def test_links_cannot_point_at_another_projects_entities(iso: Iso) -> None:
    for link, target in (("storagelink", "storage"), ("networkinterface", "network")):
        r = await _post(iso.b, f"/{link}/", [
            kind(link), ("X-OCCI-Attribute", f'occi.core.source="{iso.loc["compute"]}"'),
            ("X-OCCI-Attribute", f'occi.core.target="{iso.loc[target]}"')])
        assert r.status_code == 404, r.text
    r = await iso.b.post("/occi/storagelink/", headers={"Content-Type": "application/occi+json"}, content=json.dumps({
        "kind": INFRA + "storagelink", "source": {"location": iso.loc["compute"]},
        "target": {"location": iso.loc["storage"], "kind": INFRA + "storage"}}))
    assert r.status_code == 404, r.text
    # an inline link of a create, to A's network: refused before any server is made
    before = (await iso.b.get("/occi/compute/", headers={"Accept": "text/uri-list"})).text.split()
    r = await _post(iso.b, "/compute/", [
        kind("compute"), ("Category", f'{iso.world.image_id}; scheme="{OS_TPL}"; class="mixin"'),
        ("Link", f'<{iso.loc["network"]}>; rel="{INFRA}network"; category="{INFRA}networkinterface"')])
    assert r.status_code in (404, 400), r.text  # 400 when B cannot see A's private image either
    after = (await iso.b.get("/occi/compute/", headers={"Accept": "text/uri-list"})).text.split()
    assert after == before


async def test_another_projects_user_mixins_do_not_exist(iso: Iso) -> None:
    listed = await iso.b.get("/occi/-/", headers={"Accept": "text/plain"})
    assert "Category: mine;" not in listed.text
    assert "Category: mine;" in (await iso.a.get("/occi/-/", headers={"Accept": "text/plain"})).text
    for method, headers in (("GET", {}), ("POST", {"X-OCCI-Location": BASE + iso.loc["storage"]}),
                            ("PUT", {"X-OCCI-Location": BASE + iso.loc["storage"]}), ("DELETE", {})):
        r = await iso.b.request(method, "/occi/iso/mine/", headers={"Content-Type": "text/occi", **headers})
        assert r.status_code == 404, (method, r.text)
    r = await iso.b.request("DELETE", "/occi/-/", headers={"Category": f'mine; scheme="{TAGS}"; class="mixin"'})
    assert r.status_code == 404, r.text
    # B's own mixin cannot collect A's entities
    r = await _post(iso.b, "/-/", [("Category", f'theirs; scheme="{TAGS}"; class="mixin"; location="/iso/theirs/"')])
    assert r.status_code == 200, r.text
    r = await iso.b.post("/occi/iso/theirs/", headers={"Content-Type": "text/occi", "X-OCCI-Location": BASE + iso.loc["compute"]})
    assert r.status_code == 404, r.text
    # A still sees its tag on its compute, and its collection
    r = await iso.a.get("/occi/iso/mine/", headers={"Accept": "text/uri-list"})
    assert r.text.split() == [BASE + iso.loc["compute"]], r.text
