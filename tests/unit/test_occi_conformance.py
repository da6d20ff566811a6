"""The MUST and SHOULD statements of OCCI HTTP Protocol 1.2 (GFD.223) and Text Rendering 1.2
(GFD.229), checked one by one against /occi over one real in-process cloud (fake driver, the
service-backed backends), with plain HTTP. Each test names the section it checks (numbered as in
the GFD documents: GFD.223 §5 headers and status codes, §6 pagination, §7 filtering, §9 query
interface, §10 entity instances, §11 collections; GFD.229 §4 ABNF, §5 renderings, §6 text/plain,
§7 text/occi, §8 text/uri-list). The pOCCI suite's run is in docs/conformance.md."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fuzz_support import FLAVOR, World, start_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
CORE = "http://schemas.ogf.org/occi/core#"
OS_TPL = "http://schemas.openstack.org/template/os#"
RES_TPL = "http://schemas.openstack.org/template/resource#"
TAGS = "http://example.com/conformance-tags#"
BASE = "http://cumulo.test/occi"
PLAIN = {"Accept": "text/plain"}
JSON_ACCEPT = {"Accept": "application/occi+json"}


@dataclass
class Env:
    world: World
    a: httpx.AsyncClient  # project A, member
    anon: httpx.AsyncClient  # no context: authenticates through occi.auth
    loc: dict[str, str] = field(default_factory=dict)  # "compute" -> "/compute/<id>", ...


def kind(term: str) -> str:
    return f'{term}; scheme="{INFRA}"; class="kind"'


async def _wait(client: httpx.AsyncClient, loc: str, attr: str, want: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        r = await client.get(f"/occi{loc}", headers=JSON_ACCEPT)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        seen = body["attributes"].get(attr)
        if seen == want and "/" not in str(body["attributes"].get(attr + ".message", "")):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{loc}: {attr} stayed {seen!r}, never {want!r}")


async def _create(client: httpx.AsyncClient, path: str, headers: list[tuple[str, str]]) -> str:
    r = await client.post(f"/occi{path}", headers=[("Content-Type", "text/occi"), *headers])
    assert r.status_code == 201, r.text
    return r.headers["location"].removeprefix(BASE)


async def _compute(env: Env, title: str) -> str:
    return await _create(env.a, "/compute/", [
        ("Category", kind("compute")), ("Category", f'{env.world.image_id}; scheme="{OS_TPL}"; class="mixin"'),
        ("Category", f'{FLAVOR}; scheme="{RES_TPL}"; class="mixin"'), ("X-OCCI-Attribute", f'occi.core.title="{title}"'),
        ("Link", f'<{BASE}{env.loc["network"]}>; rel="{INFRA}network"; category="{INFRA}networkinterface"')])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async for world in start_world(tmp_path_factory.mktemp("occi-conformance")):
        app = world.cloud.asgi_app()
        anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cumulo.test")
        e = Env(world, world.member, anon)
        e.loc["network"] = await _create(e.a, "/network/", [
            ("Category", kind("network")), ("Category", f'ipnetwork; scheme="{INFRA[:-1]}/network#"; class="mixin"'),
            ("X-OCCI-Attribute", 'occi.network.address="10.66.0.0/24"'), ("X-OCCI-Attribute", 'occi.core.title="conf"')])
        e.loc["compute"] = await _compute(e, "conf-vm")
        e.loc["storage"] = await _create(e.a, "/storage/", [("Category", kind("storage")),
                                                           ("X-OCCI-Attribute", "occi.storage.size=1")])
        await _wait(e.a, e.loc["compute"], "occi.compute.state", "active")
        await _wait(e.a, e.loc["storage"], "occi.storage.state", "online")
        try:
            yield e
        finally:
            await anon.aclose()


# --- GFD.223 §4 namespace, §5 headers and status codes ----------------------------------------------


async def test_gfd223_4_the_entity_kind_is_bound_to_no_path(env: Env) -> None:
    """§4: a Kind whose type cannot be instantiated (Core's entity) MUST NOT be bound to a URL path;
    the infrastructure kinds are (their location in the query interface)."""
    r = await env.a.get("/occi/-/", headers=PLAIN)
    lines = {line.split(";")[0] + ";" + line.split(";")[1]: line for line in r.text.splitlines()}
    entity = lines[f'Category: entity; scheme="{CORE}"']
    assert "location=" not in entity
    for term in ("compute", "storage", "network", "networkinterface", "storagelink"):
        assert f'location="{BASE}/{term}/"' in lines[f'Category: {term}; scheme="{INFRA}"']
    assert (await env.a.get("/occi/entity/", headers=PLAIN)).status_code == 404


async def test_gfd223_5_every_answer_carries_server_occi_1_2_content_type_and_accept(env: Env) -> None:
    """§5.2/§5.3: every response names OCCI/1.2 in Server (errors too), its media type in Content-Type,
    and (SHOULD) the media types served in Accept."""
    a, c = env.a, env.loc["compute"]
    answers = {
        200: await a.get("/occi/-/"),
        201: await a.post("/occi/storage/", headers={"Content-Type": "text/occi", "Category": kind("storage"),
                                                     "X-OCCI-Attribute": "occi.storage.size=1"}),
        400: await a.post(f"/occi{c}?action=fly", headers={"Content-Type": "text/occi"}),
        401: await env.anon.get("/occi/-/"),
        404: await a.get("/occi/compute/00000000-0000-0000-0000-000000000000"),
        405: await a.put("/occi/compute/", headers={"Content-Type": "text/occi"}),
        406: await a.get(f"/occi{c}", headers={"Accept": "image/png"}),
        409: await a.post(f"/occi{c}?action=start", headers={"Content-Type": "text/occi"}),
        413: await a.get("/occi/compute/?page=1&number=100000"),
        415: await a.post("/occi/compute/", headers={"Content-Type": "image/png"}, content=b"x"),
        501: await a.get("/occi/-/", headers={"User-Agent": "occi-client/9 OCCI/1.3"}),
    }
    for status, r in answers.items():
        assert r.status_code == status, (status, r.status_code, r.text)
        assert re.search(r"\bOCCI/1\.2\b", r.headers.get("server", "")), (status, r.headers)
        assert r.headers.get("content-type"), (status, r.headers)
        served = {m.strip() for m in r.headers.get("accept", "").split(",")}
        assert {"text/plain", "text/occi", "application/occi+json", "text/uri-list"} <= served, (status, served)
    await a.delete(answers[201].headers["location"].removeprefix("http://cumulo.test"))


@pytest.mark.parametrize("agent,status", [("occi-client/1 OCCI/1.3", 501), ("rOCCI-cli/5 OCCI/2.0", 501),
                                          ("rOCCI-cli/4 OCCI/1.1", 200), ("occi-client/1 OCCI/1.2", 200),
                                          ("curl/8", 200)])
async def test_gfd223_5_3_a_client_asking_a_higher_version_gets_501(env: Env, agent: str, status: int) -> None:
    """§5.3: a request naming a version higher than the server's MUST get 501 Not Implemented."""
    r = await env.a.get("/occi/compute/", headers={"User-Agent": agent, **PLAIN})
    assert r.status_code == status, r.text


async def test_gfd223_5_4_a_method_a_path_does_not_take_is_405_naming_the_allowed(env: Env) -> None:
    """§5.4 (405, RFC 7231 §6.5.5: Allow MUST list what the target supports): PUT is not defined on a
    kind's collection (§8's table) nor on the query interface (§9.2); a provider mixin's collection
    (its membership follows from the entities) takes GET only; an entity takes no PATCH or OPTIONS."""
    for method in ("PUT", "PATCH", "OPTIONS"):
        for path in ("/occi/compute/", "/occi/-/"):
            r = await env.a.request(method, path, headers={"Content-Type": "text/occi"})
            assert r.status_code == 405, (method, path, r.text)
            allowed = {m.strip() for m in r.headers["allow"].split(",")}
            assert "PUT" not in allowed and {"GET", "POST", "DELETE"} <= allowed, (method, path, allowed)
        r = await env.a.request(method, f"/occi/os_tpl/{env.world.image_id}/")  # a provider mixin's collection
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD", (method, r.headers)
    for method in ("PATCH", "OPTIONS"):
        r = await env.a.request(method, f"/occi{env.loc['compute']}")
        assert r.status_code == 405 and {"GET", "PUT", "POST", "DELETE"} <= set(r.headers["allow"].split(", "))


# --- GFD.223 §6 pagination, §7 filtering ------------------------------------------------------------


async def test_gfd223_6_pagination(env: Env) -> None:
    """§6: page/number select a sub-collection; a number too large is a 413; past the end is a 200
    with an empty collection."""
    full = (await env.a.get("/occi/", headers={"Accept": "text/uri-list"})).text.split()
    assert len(full) >= 3
    one = (await env.a.get("/occi/?page=2&number=1", headers={"Accept": "text/uri-list"})).text.split()
    assert one == full[1:2]
    r = await env.a.get(f"/occi/?page={len(full) + 1}&number=1", headers=PLAIN)
    assert r.status_code == 200 and r.text.strip() == ""
    assert (await env.a.get("/occi/?page=1&number=1000000", headers=PLAIN)).status_code == 413


async def test_gfd223_7_1_query_interface_filter_returns_related_categories_only(env: Env) -> None:
    """§7.1: a Category rendering in the GET's headers: only the categories related to it (the kind,
    its actions, ...), in any rendering asked."""
    r = await env.a.get("/occi/-/", headers={"Category": kind("compute"), **PLAIN})
    assert r.status_code == 200
    terms = {line.split(";")[0].removeprefix("Category: ") for line in r.text.splitlines()}
    assert {"compute", "start", "stop", "restart", "suspend", "save"} <= terms
    assert not terms & {"storage", "network", "online", "up"}


async def test_gfd223_7_2_collection_filter_by_attribute(env: Env) -> None:
    """§7.2: an entity rendering in the GET's headers: only entities whose attributes match."""
    r = await env.a.get("/occi/compute/", headers={"X-OCCI-Attribute": 'occi.core.title="conf-vm"', **PLAIN})
    assert r.status_code == 200 and r.text.strip() == f"X-OCCI-Location: {BASE}{env.loc['compute']}"
    r = await env.a.get("/occi/compute/", headers={"X-OCCI-Attribute": 'occi.core.title="nobody"', **PLAIN})
    assert r.status_code == 200 and r.text.strip() == ""


# --- GFD.223 §9 the query interface -----------------------------------------------------------------


async def test_gfd223_9_query_interface_get_post_delete(env: Env) -> None:
    """§9: GET at /-/ and at /.well-known/org/ogf/occi/-/ (200, a category collection); POST of a
    full category rendering adds a user mixin (200); DELETE removes it (200)."""
    qi = await env.a.get("/occi/-/", headers=PLAIN)
    well_known = await env.a.get("/occi/.well-known/org/ogf/occi/-/", headers=PLAIN)
    assert qi.status_code == well_known.status_code == 200 and qi.text == well_known.text
    assert all(line.startswith("Category: ") for line in qi.text.splitlines())
    mixin = f'audit; scheme="{TAGS}"; class="mixin"; location="/conformance/audit/"'
    r = await env.a.post("/occi/-/", headers={"Content-Type": "text/plain"}, content=f"Category: {mixin}\r\n")
    assert r.status_code == 200, r.text
    assert f'Category: audit; scheme="{TAGS}"' in (await env.a.get("/occi/-/", headers=PLAIN)).text
    r = await env.a.request("DELETE", "/occi/-/", headers={"Content-Type": "text/occi", "Category": mixin})
    assert r.status_code == 200, r.text
    assert f'Category: audit; scheme="{TAGS}"' not in (await env.a.get("/occi/-/", headers=PLAIN)).text


# --- GFD.223 §10 entity instances ---------------------------------------------------------------------


async def test_gfd223_10_1_get_is_200_with_the_entity_rendering(env: Env) -> None:
    for accept, probe in (("text/plain", "Category: compute;"), ("text/occi", "OK"), ("application/occi+json", '"kind"')):
        r = await env.a.get(f"/occi{env.loc['compute']}", headers={"Accept": accept})
        assert r.status_code == 200 and probe in r.text, (accept, r.text)
        assert r.headers["content-type"].split(";")[0] == accept


@pytest.mark.parametrize("media", ["text/plain", "text/occi", "application/occi+json"])
async def test_gfd223_10_2_put_of_its_own_rendering_replaces_and_leaves_links_intact(env: Env, media: str) -> None:
    """§10.2.2 (Replace): the entity rendering a GET gave, with a new title, PUT back: 200 with the
    entity rendering; the links it repeats (and its immutable attributes, unchanged) are accepted and
    left intact (pOCCI's OCCI/CORE/UPDATE/001 does exactly this)."""
    url = f"/occi{env.loc['compute']}"
    before = (await env.a.get(url, headers=JSON_ACCEPT)).json()
    got = await env.a.get(url, headers={"Accept": media})
    assert got.status_code == 200, got.text
    title = "conf-" + re.sub(r"\W", "-", media)
    if media == "text/occi":
        fields = [(k, re.sub(r'occi\.core\.title="[^"]*"', f'occi.core.title="{title}"', v))
                  for k, v in got.headers.multi_items() if k.lower() in ("category", "link", "x-occi-attribute")]
        r = await env.a.put(url, headers=[("Content-Type", media), *fields, ("Accept", "application/occi+json")])
    else:
        body = re.sub(rb'(occi\.core\.title="|"title": ?")[^"]*"', rb"\g<1>" + title.encode() + b'"', got.content)
        r = await env.a.put(url, headers={"Content-Type": media, **JSON_ACCEPT}, content=body)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["title"] == title
    assert [ln["id"] for ln in after["links"]] == [ln["id"] for ln in before["links"]] != []
    r = await env.a.post(url, headers={"Content-Type": "text/occi", "X-OCCI-Attribute": 'occi.core.title="conf-vm"'})
    assert r.status_code == 200, r.text


async def test_gfd223_10_3_partial_update_and_actions(env: Env) -> None:
    """§10.3.1: POST of a partial rendering is a 200 with the entity rendering. §10.3.2: POST
    ?action=<term> with the action invocation rendering is a 200; an unknown action a 400, one the
    state refuses a 409."""
    loc = env.loc["storage"]
    r = await env.a.post(f"/occi{loc}", headers={"Content-Type": "text/occi", "X-OCCI-Attribute": 'occi.core.summary="s"',
                                                 **JSON_ACCEPT})
    assert r.status_code == 200 and r.json()["summary"] == "s", r.text
    action = f'offline; scheme="{INFRA[:-1]}/storage/action#"; class="action"'
    r = await env.a.post(f"/occi{loc}?action=offline", headers={"Content-Type": "text/plain", **PLAIN},
                         content=f"Category: {action}\r\n")
    assert r.status_code == 200 and "Category: storage;" in r.text, r.text
    await _wait(env.a, loc, "occi.storage.state", "offline")
    r = await env.a.post(f"/occi{loc}?action=offline", headers={"Content-Type": "text/occi", "Category": action})
    assert r.status_code == 409, r.text
    assert (await env.a.post(f"/occi{loc}?action=evaporate", headers={"Content-Type": "text/occi"})).status_code == 400
    r = await env.a.post(f"/occi{loc}?action=online", headers={"Content-Type": "text/occi"})
    assert r.status_code == 200, r.text
    await _wait(env.a, loc, "occi.storage.state", "online")


async def test_gfd223_10_4_delete_deletes_the_entity(env: Env) -> None:
    """§10.4: DELETE is a 200 (or 204), and the entity is gone: the next GET is a 404 and no
    collection lists it, though the host finishes in the background (pOCCI OCCI/CORE/DELETE/001):
    a compute, a storage, a storagelink."""
    loc = await _compute(env, "conf-doomed")
    await _wait(env.a, loc, "occi.compute.state", "active")
    r = await env.a.delete(f"/occi{loc}")
    assert r.status_code in (200, 204), r.text
    assert (await env.a.get(f"/occi{loc}", headers=PLAIN)).status_code == 404
    assert BASE + loc not in (await env.a.get("/occi/compute/", headers={"Accept": "text/uri-list"})).text
    assert (await env.a.delete(f"/occi{loc}")).status_code == 404
    storage = await _create(env.a, "/storage/", [("Category", kind("storage")), ("X-OCCI-Attribute", "occi.storage.size=1")])
    await _wait(env.a, storage, "occi.storage.state", "online")
    assert (await env.a.delete(f"/occi{storage}")).status_code in (200, 204)
    assert (await env.a.get(f"/occi{storage}", headers=PLAIN)).status_code == 404
    assert BASE + storage not in (await env.a.get("/occi/", headers={"Accept": "text/uri-list"})).text
    # a storagelink: the link is gone at once, from its own GET and from its compute's links
    storage = await _create(env.a, "/storage/", [("Category", kind("storage")), ("X-OCCI-Attribute", "occi.storage.size=1")])
    await _wait(env.a, storage, "occi.storage.state", "online")
    link = await _create(env.a, "/storagelink/", [
        ("Category", kind("storagelink")), ("X-OCCI-Attribute", f'occi.core.source="{env.loc["compute"]}"'),
        ("X-OCCI-Attribute", f'occi.core.target="{storage}"')])
    await _wait(env.a, link, "occi.storagelink.state", "active")
    assert (await env.a.delete(f"/occi{link}")).status_code in (200, 204)
    assert (await env.a.get(f"/occi{link}", headers=PLAIN)).status_code == 404
    assert BASE + link not in (await env.a.get(f"/occi{env.loc['compute']}", headers=PLAIN)).text
    deadline = time.monotonic() + 60
    while (await env.a.delete(f"/occi{storage}")).status_code != 200:  # 409 until the volume is detached
        assert time.monotonic() < deadline, "the storage never became deletable"
        await asyncio.sleep(0.1)


# --- GFD.223 §11 collections --------------------------------------------------------------------------


async def test_gfd223_11_3_1_create_is_201_with_an_absolute_location(env: Env) -> None:
    """§11.3.1: 201 with the new entity's location (RFC 7231 Location: absolute here) and the
    location in the body's rendering (X-OCCI-Location, GFD.229 §4.4); text/occi: in a header, body OK."""
    made = []
    for accept in ("text/plain", "text/occi", "application/occi+json"):
        r = await env.a.post("/occi/storage/", headers={"Content-Type": "text/occi", "Category": kind("storage"),
                                                        "X-OCCI-Attribute": "occi.storage.size=1", "Accept": accept})
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        assert re.fullmatch(rf"{re.escape(BASE)}/storage/[0-9a-f-]{{36}}", location)
        made.append(location)
        if accept == "text/plain":
            assert r.text.strip() == f"X-OCCI-Location: {location}"
        elif accept == "text/occi":
            assert r.headers["x-occi-location"] == location and r.text == "OK"
        else:
            assert location in r.text
    for location in made:
        await _wait(env.a, location.removeprefix(BASE), "occi.storage.state", "online")
        assert (await env.a.delete(location.removeprefix("http://cumulo.test"))).status_code == 200


async def test_gfd223_11_2_11_3_2_11_4_2_mixin_collections(env: Env) -> None:
    """§11.3.2: POST of locations to a mixin's collection associates them (200, the collection);
    §11.2: PUT replaces the collection (200); §11.4.2: DELETE disassociates (200). Association is
    available only on a mixin's collection (a kind's takes a POST as a create)."""
    mixin = f'team; scheme="{TAGS}"; class="mixin"; location="/conformance/team/"'
    assert (await env.a.post("/occi/-/", headers={"Content-Type": "text/occi", "Category": mixin})).status_code == 200
    compute, storage = BASE + env.loc["compute"], BASE + env.loc["storage"]
    try:
        r = await env.a.post("/occi/conformance/team/", headers={"Content-Type": "text/uri-list", "Accept": "text/uri-list"},
                             content=f"{compute}\r\n".encode())
        assert r.status_code == 200 and r.text.split() == [compute], r.text
        r = await env.a.put("/occi/conformance/team/", headers={"Content-Type": "text/occi", "X-OCCI-Location": storage,
                                                                "Accept": "text/uri-list"})
        assert r.status_code == 200 and r.text.split() == [storage], r.text
        r = await env.a.delete("/occi/conformance/team/", headers={"Accept": "text/uri-list"})
        assert r.status_code == 200 and r.text.strip() == "", r.text
        r = await env.a.post("/occi/compute/", headers={"Content-Type": "text/occi", "X-OCCI-Location": compute})
        assert r.status_code == 400, r.text  # not an association: a create with no os_tpl
    finally:
        await env.a.request("DELETE", "/occi/-/", headers={"Content-Type": "text/occi", "Category": mixin})


# --- GFD.229 text renderings --------------------------------------------------------------------------

_TERM = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_URI = r"[a-z][a-z0-9+.-]*:[^\s\"]*"  # RFC 3986 URI: a scheme, then no space or quote
_CATEGORY = re.compile(
    rf'Category: {_TERM}; scheme="{_URI}"; class="(kind|mixin|action)"(; title="(?:[^"\\]|\\.)*")?'
    rf'(; rel="{_URI}{_TERM}")?(; location="{_URI}")?'
    rf'(; attributes="{_TERM}(\{{(immutable|required)( (immutable|required))*\}})?'
    rf'( {_TERM}(\{{(immutable|required)( (immutable|required))*\}})?)*")?'
    rf'(; actions="{_URI}{_TERM}( {_URI}{_TERM})*")?')


async def test_gfd229_4_1_every_category_line_follows_the_abnf(env: Env) -> None:
    """§4.1: each Category of the query interface matches the Category ABNF (order of the fields,
    quoting, attribute properties); its location is a URI (absolute)."""
    r = await env.a.get("/occi/-/", headers=PLAIN)
    lines = r.text.splitlines()
    assert len(lines) > 20
    for line in lines:
        assert _CATEGORY.fullmatch(line), line


async def test_gfd229_5_1_resource_rendering(env: Env) -> None:
    """§5.1.1: 1*Category, then *Link, then *Attribute; every action the entity offers as an
    ActionLink <uri?action=term>; rel="<action type>"; attribute values: strings quoted, numbers
    bare (§4.3)."""
    r = await env.a.get(f"/occi{env.loc['compute']}", headers=PLAIN)
    kinds = [line.split(":", 1)[0] for line in r.text.splitlines()]
    assert kinds == sorted(kinds, key=["Category", "Link", "X-OCCI-Attribute"].index) and kinds[0] == "Category"
    body = (await env.a.get(f"/occi{env.loc['compute']}", headers=JSON_ACCEPT)).json()
    for action in body["actions"]:
        term = action.rsplit("#", 1)[1]
        assert f'Link: <{BASE}{env.loc["compute"]}?action={term}>; rel="{action}"' in r.text.splitlines()
    assert re.search(r'^X-OCCI-Attribute: occi\.compute\.cores=\d+\r?$', r.text, re.M)
    assert re.search(r'^X-OCCI-Attribute: occi\.core\.title="conf-vm"\r?$', r.text, re.M)
    link = next(line for line in r.text.splitlines() if "networkinterface" in line)
    assert re.match(rf'Link: <{re.escape(BASE)}/network/[0-9a-f-]{{36}}>; rel="{re.escape(INFRA)}network"; '
                    rf'self="{re.escape(BASE)}/networkinterface/[0-9a-f-]{{36}}"; category="{re.escape(INFRA)}networkinterface', link)


async def test_gfd229_5_1_2_link_rendering(env: Env) -> None:
    """§5.1.2: a Link instance: 1*Category, *ActionLink, *Attribute (its source and target as
    attributes, no Link of its own)."""
    r = await env.a.get(f"/occi{env.loc['compute']}", headers=PLAIN)
    loc = re.findall(r'self="([^"]+)"', r.text)[0]
    r = await env.a.get(loc.removeprefix("http://cumulo.test"), headers=PLAIN)
    lines = r.text.splitlines()
    assert lines[0].startswith("Category: networkinterface;")
    assert not [line for line in lines if line.startswith("Link:") and "?action=" not in line]
    assert f'X-OCCI-Attribute: occi.core.target="{BASE}{env.loc["network"]}"' in lines


async def test_gfd229_5_3_5_4_collections(env: Env) -> None:
    """§5.3: an entity collection is *(X-OCCI-Location CRLF); §5.4: the query interface's *(Category CRLF)."""
    r = await env.a.get("/occi/", headers=PLAIN)
    assert r.text.endswith("\r\n") and all(re.fullmatch(rf"X-OCCI-Location: {re.escape(BASE)}/\w+/[0-9a-f-]{{36}}", line)
                                           for line in r.text.splitlines())
    r = await env.a.get("/occi/-/", headers=PLAIN)
    assert r.text.endswith("\r\n") and all(line.startswith("Category: ") for line in r.text.splitlines())


async def test_gfd229_5_5_2_a_mixin_renders_its_first_depends_as_rel(env: Env) -> None:
    """§5.5.2: Mixin.depends goes to `rel`, only its first value when there are several (applies is
    not rendered in text)."""
    mixins = [{"term": f"d{i}", "scheme": TAGS, "location": f"/conformance/d{i}/"} for i in (1, 2)]
    mixins.append({"term": "both", "scheme": TAGS, "location": "/conformance/both/", "depends": [TAGS + "d1", TAGS + "d2"],
                   "applies": [INFRA + "compute"]})
    r = await env.a.post("/occi/-/", headers={"Content-Type": "application/occi+json"}, json={"mixins": mixins})
    assert r.status_code == 200, r.text
    try:
        lines = (await env.a.get("/occi/-/", headers=PLAIN)).text.splitlines()
        [both] = [line for line in lines if line.startswith("Category: both;")]
        assert f'; rel="{TAGS}d1";' in both and "d2" not in both and INFRA + "compute" not in both
    finally:
        for term in ("both", "d1", "d2"):
            await env.a.request("DELETE", "/occi/-/", headers={"Content-Type": "text/occi",
                                                                "Category": f'{term}; scheme="{TAGS}"; class="mixin"'})


async def test_gfd229_6_text_occi_plain_is_answered_in_its_own_name(env: Env) -> None:
    """§6: text/occi+plain names the text/plain rendering: asked for it, the answer (a fault too)
    carries it."""
    ok = await env.a.get(f"/occi{env.loc['compute']}", headers={"Accept": "text/occi+plain"})
    missing = await env.a.get("/occi/compute/00000000-0000-0000-0000-000000000000", headers={"Accept": "text/occi+plain"})
    assert (ok.status_code, missing.status_code) == (200, 404)
    for r in (ok, missing):
        assert r.headers["content-type"].split(";")[0] == "text/occi+plain", r.headers


async def test_gfd229_7_text_occi_in_headers_repeated_or_comma_joined(env: Env) -> None:
    """§7: text/occi puts the rendering in headers and "OK" in the body; a request's fields may be
    repeated headers or one comma-joined header (both MUST be supported)."""
    r = await env.a.get(f"/occi{env.loc['compute']}", headers={"Accept": "text/occi"})
    assert r.text == "OK" and r.headers.get_list("category") and r.headers.get_list("x-occi-attribute")
    joined = {"Content-Type": "text/occi", "Category": kind("storage"),
              "X-OCCI-Attribute": 'occi.storage.size=1, occi.core.title="joined"'}
    repeated = [("Content-Type", "text/occi"), ("Category", kind("storage")), ("X-OCCI-Attribute", "occi.storage.size=1"),
                ("X-OCCI-Attribute", 'occi.core.title="repeated"')]
    for headers in (joined, repeated):
        r = await env.a.post("/occi/storage/", headers=headers)
        assert r.status_code == 201, r.text
        loc = r.headers["location"].removeprefix(BASE)
        body = await _wait(env.a, loc, "occi.storage.state", "online")
        assert body["title"] in ("joined", "repeated") and body["attributes"]["occi.storage.size"] == 1
        assert (await env.a.delete(f"/occi{loc}")).status_code == 200


async def test_gfd229_7_separators_inside_quoted_values(env: Env) -> None:
    """§7: header values holding separators MUST be quoted (RFC 7230 quoted-string): a title with a
    comma, a semicolon and an escaped quote survives a comma-joined request and the text/occi answer."""
    title = 'a, b; c \\"d\\"'
    r = await env.a.post("/occi/storage/", headers={"Content-Type": "text/occi", "Category": kind("storage"),
                                                    "X-OCCI-Attribute": f'occi.storage.size=1, occi.core.title="{title}"'})
    assert r.status_code == 201, r.text
    loc = r.headers["location"].removeprefix(BASE)
    body = await _wait(env.a, loc, "occi.storage.state", "online")
    assert body["title"] == 'a, b; c "d"'
    r = await env.a.get(f"/occi{loc}", headers={"Accept": "text/occi"})
    assert f'occi.core.title="{title}"' in r.headers["x-occi-attribute"]
    assert (await env.a.delete(f"/occi{loc}")).status_code == 200


async def test_gfd223_9_3_9_4_a_query_interface_change_needs_a_category(env: Env) -> None:
    """§9.3/§9.4: POST and DELETE on the query interface MUST carry a full category rendering:
    without one, a 400 (nothing changes)."""
    for method in ("POST", "DELETE"):
        r = await env.a.request(method, "/occi/-/", headers={"Content-Type": "text/occi"})
        assert r.status_code == 400, (method, r.text)


async def test_gfd229_8_uri_list_renders_listings_only(env: Env) -> None:
    """§8: text/uri-list asked for anything but a listing is a 400; a listing is one URI a line."""
    for path in (f"/occi{env.loc['compute']}", "/occi/-/"):
        r = await env.a.get(path, headers={"Accept": "text/uri-list"})
        assert r.status_code == 400, (path, r.text)
    r = await env.a.get("/occi/compute/", headers={"Accept": "text/uri-list"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/uri-list")
    assert f"{BASE}{env.loc['compute']}" in r.text.split()


# --- HTTP authentication (GFD.223 §12 security: HTTP authentication mechanisms) -----------------------


async def test_basic_login_without_a_project_is_not_kept(env: Env) -> None:
    """A Basic login that scopes no project (a 401 naming X-Auth-Project) is not cached: once the
    user has a default project, the same credentials work (pOCCI speaks Basic only)."""
    directory = env.world.cloud.services.identity.directory
    user = await directory.create_user({"name": "conf-basic", "password": "Conf-Pass-1", "domain_id": "default"})
    roles = {r["name"]: r["id"] for r in await directory.list_roles()}
    await directory.grant(env.world.project, user["id"], roles["member"])
    basic = {"Authorization": "Basic " + base64.b64encode(b"conf-basic:Conf-Pass-1").decode()}
    r = await env.anon.get("/occi/-/", headers=basic)
    assert r.status_code == 401 and "X-Auth-Project" in r.text
    await directory.update_user(user["id"], {"default_project_id": env.world.project})
    assert (await env.anon.get("/occi/-/", headers=basic)).status_code == 200
