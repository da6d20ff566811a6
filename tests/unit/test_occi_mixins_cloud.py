"""User mixins and mixin collections on one real in-process cloud (fake driver), with the
service-backed compute backend: a server made through Nova is in its image's os_tpl collection, a
compute made through OCCI with a user mixin on create is tagged, and a server deleted through Nova
leaves the tag's collection."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fuzz_support import API, FLAVOR, World, start_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
OS_TPL = "http://schemas.openstack.org/template/os#"
RES_TPL = "http://schemas.openstack.org/template/resource#"
TAGS = "http://example.com/cloud-tags#"
BASE = "http://cumulo.test/occi"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("occi-mixins")):
        yield w


def uris(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [ln.strip() for ln in r.text.splitlines() if ln.strip() and not ln.startswith("#")]


async def _gone(client: httpx.AsyncClient, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await client.get(path)).status_code == 404:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} still there after {timeout} s")


async def test_template_and_user_mixin_collections(world: World) -> None:
    c = world.member
    nova_server = f"{BASE}/compute/{world.server_id}"
    assert nova_server in uris(await c.get(f"/occi/os_tpl/{world.image_id}/", headers={"Accept": "text/uri-list"}))
    assert nova_server in uris(await c.get("/occi/os_tpl/", headers={"Accept": "text/uri-list"}))

    r = await c.post("/occi/-/", headers={"Content-Type": "text/occi", "Category":
                                          f'web; scheme="{TAGS}"; class="mixin"; location="/tags/web/"'})
    assert r.status_code == 200, r.text
    # a compute made through OCCI with the user mixin among its categories is tagged on create
    r = await c.post("/occi/compute/", headers=[
        ("Content-Type", "text/occi"),
        ("Category", f'compute; scheme="{INFRA}"; class="kind"'),
        ("Category", f'{world.image_id}; scheme="{OS_TPL}"; class="mixin"'),
        ("Category", f'{FLAVOR}; scheme="{RES_TPL}"; class="mixin"'),
        ("Category", f'web; scheme="{TAGS}"; class="mixin"'),
        ("X-OCCI-Attribute", 'occi.core.title="tagged"')])
    assert r.status_code == 201, r.text
    made = r.headers["location"]
    assert uris(await c.get("/occi/tags/web/", headers={"Accept": "text/uri-list"})) == [made]
    assert made in uris(await c.get(f"/occi/resource_tpl/{FLAVOR}/", headers={"Accept": "text/uri-list"}))
    # the Nova-made server joins by POST on the collection; filtering picks one by title
    r = await c.post("/occi/tags/web/", headers={"Content-Type": "text/occi", "X-OCCI-Location": nova_server,
                                                 "Accept": "text/uri-list"})
    assert uris(r) == [made, nova_server]
    r = await c.get("/occi/tags/web/", headers={"Accept": "text/uri-list", "X-OCCI-Attribute": 'occi.core.title="tagged"'})
    assert uris(r) == [made]
    r = await c.get(made.removeprefix("http://cumulo.test"), headers={"Accept": "application/occi+json"})
    assert TAGS + "web" in r.json()["mixins"]

    # deleted through Nova: it leaves the collection (its tag is dropped on the next GET)
    r = await c.delete(f"{API}/servers/{made.rsplit('/', 1)[1]}")
    assert r.status_code == 204, r.text
    await _gone(c, made.removeprefix("http://cumulo.test"))
    assert uris(await c.get("/occi/tags/web/", headers={"Accept": "text/uri-list"})) == [nova_server]
    r = await c.request("DELETE", "/occi/-/", headers={"Category": f'web; scheme="{TAGS}"; class="mixin"'})
    assert r.status_code == 200, r.text
    assert (await c.get("/occi/tags/web/")).status_code == 404


async def test_a_user_mixin_that_does_not_apply_refuses_the_create_before_any_server(world: World) -> None:
    c = world.member
    r = await c.post("/occi/-/", content=json.dumps({"mixins": [{
        "term": "disks", "scheme": TAGS, "location": "/tags/disks/", "applies": [INFRA + "storage"]}]}),
        headers={"Content-Type": "application/occi+json"})
    assert r.status_code == 200, r.text
    before = (await c.get(f"{API}/servers")).json()["servers"]
    r = await c.post("/occi/compute/", headers=[
        ("Content-Type", "text/occi"), ("Accept", "text/plain"),
        ("Category", f'compute; scheme="{INFRA}"; class="kind"'),
        ("Category", f'{world.image_id}; scheme="{OS_TPL}"; class="mixin"'),
        ("Category", f'disks; scheme="{TAGS}"; class="mixin"'),
        ("X-OCCI-Attribute", 'occi.core.title="refused"')])
    assert r.status_code == 400 and "does not apply to compute" in r.text, r.text
    assert (await c.get(f"{API}/servers")).json()["servers"] == before
