"""The OCCI front door's HTTP behaviour (GFD.223), in process: routing, status codes, faults in the
negotiated rendering, the Server header, version handling, the query interface and its filters,
collections, filtering and pagination, entities, actions, user mixins as tags, and authentication
(X-Auth-Token and HTTP Basic against a real bootstrapped identity service).

The kinds are served by in-test backends (occi_fakes) that scope by project as the real ones do;
the service-backed backends have their own tests, and tests/unit/test_occi_api_isolation.py runs the
isolation table over the real ones."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from _asgi_ctx import AsCtx, ctx_for
from occi_fakes import FakeBackend, FakeTemplates

from cumulo import conf as conf_mod
from cumulo.db import Database
from cumulo.identity import passwords
from cumulo.identity.service import IdentityService
from cumulo.occi import categories
from cumulo.occi.api import make_app
from cumulo.occi.auth import OcciAuth
from cumulo.occi.deps import OcciDeps
from cumulo.occi.faults import SERVER
from cumulo.occi.mixins import MixinStore
from cumulo.web.http import PrefixDispatcher

pytestmark = pytest.mark.asyncio(loop_scope="module")

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
COMPUTE_CAT = f'compute; scheme="{INFRA}"; class="kind"'
STORAGE_CAT = f'storage; scheme="{INFRA}"; class="kind"'
OCCI_TEXT = {"Content-Type": "text/occi", "Accept": "text/occi"}
PLAIN = {"Content-Type": "text/plain", "Accept": "text/plain"}
JSON_H = {"Content-Type": "application/occi+json", "Accept": "application/occi+json"}
TAG_SCHEME = "http://example.com/tags#"


@dataclass
class Env:
    app: Any
    identity: IdentityService
    creds: dict[str, dict[str, str]]
    backends: dict[str, FakeBackend]
    a: httpx.AsyncClient  # project A, member
    b: httpx.AsyncClient  # project B, member
    anon: httpx.AsyncClient  # no context: authenticates through occi.auth

    @property
    def compute(self) -> FakeBackend:
        return self.backends["compute"]


async def _no_root(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"request outside /occi: {scope.get('path')}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    from argon2 import PasswordHasher

    mp = pytest.MonkeyPatch()
    mp.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    tmp: Path = tmp_path_factory.mktemp("occi-api")
    conf = conf_mod.load(env={}, state_dir=tmp / "state")
    conf.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{conf.state_dir / 'occi.sqlite'}")
    await db.create_all()
    identity = IdentityService(db, conf)
    creds = await identity.bootstrap()
    backends = {k.term: FakeBackend(k) for k in (categories.COMPUTE, categories.STORAGE, categories.NETWORK,
                                                 categories.NETWORKINTERFACE, categories.STORAGELINK)}
    store = MixinStore(db, lookup=categories.get)
    d = OcciDeps(services=None, backends={b.kind.id: b for b in backends.values()}, sources=[FakeTemplates()],
                 user_mixins=store, auth=OcciAuth(identity))
    app = make_app(occi_deps=d)

    def client(inner: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=PrefixDispatcher({"/occi": inner}, _no_root)),
                                 base_url="http://cumulo.test")

    e = Env(app, identity, creds, backends, client(AsCtx(app, ctx_for("proj-a"))), client(AsCtx(app, ctx_for("proj-b"))),
            client(app))
    yield e
    for c in (e.a, e.b, e.anon):
        await c.aclose()
    await db.dispose()
    mp.undo()


async def _create(client: httpx.AsyncClient, kind: str = COMPUTE_CAT, *attrs: str, mixins: tuple[str, ...] = ()) -> str:
    headers = [("Content-Type", "text/occi"), ("Category", kind)]
    headers += [("Category", m) for m in mixins]
    headers += [("X-OCCI-Attribute", a) for a in attrs]
    r = await client.post(f"/occi/{kind.split(';')[0]}/", headers=headers)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith("http://cumulo.test/occi/")
    return location.removeprefix("http://cumulo.test/occi")


# --- headers, versions, faults ------------------------------------------------------------------


async def test_every_answer_carries_the_server_header(env: Env) -> None:
    for resp in (
        await env.a.get("/occi/-/"),
        await env.a.get("/occi/nowhere/at/all"),
        await env.anon.get("/occi/-/"),
        await env.a.patch("/occi/compute/"),
        await env.a.get("/occi/-/", headers={"User-Agent": "rOCCI-cli/9 OCCI/1.3"}),
    ):
        assert resp.headers.get_list("server") == [SERVER], (resp.status_code, resp.headers)
        assert "application/occi+json" in resp.headers["accept"]  # GFD.223 §5.2: the renderings served
    assert SERVER.endswith(" OCCI/1.2") and SERVER.startswith("cumulo/")


@pytest.mark.parametrize("agent", ["client/1 OCCI/1.3", "x OCCI/2.0", "OCCI/10.0 y"])
async def test_a_newer_occi_version_is_501(env: Env, agent: str) -> None:
    r = await env.a.get("/occi/-/", headers={"User-Agent": agent, "Accept": "application/occi+json"})
    assert r.status_code == 501
    assert "OCCI/1.2" in r.json()["error"]["message"]


@pytest.mark.parametrize("agent", ["rOCCI-cli/4.3 OCCI/1.1", "client OCCI/1.2", "curl/8.0", "OCCI/x.y"])
async def test_older_or_no_version_is_served(env: Env, agent: str) -> None:
    r = await env.a.get("/occi/-/", headers={"User-Agent": agent})
    assert r.status_code == 200, r.text


async def test_faults_use_the_negotiated_rendering(env: Env) -> None:
    r = await env.a.get("/occi/compute/nope", headers={"Accept": "application/occi+json"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/occi+json")
    assert r.json()["error"]["code"] == 404 and r.json()["error"]["message"]
    r = await env.a.get("/occi/compute/nope", headers={"Accept": "text/occi"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/occi") and r.text.strip()
    r = await env.a.get("/occi/compute/nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/plain") and r.text.strip()


async def test_unknown_paths_methods_and_media_types(env: Env) -> None:
    assert (await env.a.get("/occi/nowhere/")).status_code == 404  # no kind, no mixin there
    assert (await env.a.get("/occi/compute/a/b")).status_code == 404
    r = await env.a.patch("/occi/compute/")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    r = await env.a.put("/occi/compute/", headers=OCCI_TEXT)
    assert r.status_code == 405 and "PUT" not in r.headers["allow"]
    assert (await env.a.put("/occi/-/")).status_code == 405
    assert (await env.a.get("/occi/-/", headers={"Accept": "application/xml"})).status_code == 406
    # text/uri-list renders collections only (GFD.229)
    assert (await env.a.get("/occi/-/", headers={"Accept": "text/uri-list"})).status_code == 400
    r = await env.a.post("/occi/compute/", content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415


# --- the query interface --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/occi/-/", "/occi/.well-known/org/ogf/occi/-/"])
async def test_query_interface_lists_the_model(env: Env, path: str) -> None:
    r = await env.a.get(path, headers={"Accept": "text/plain"})
    assert r.status_code == 200
    for term in ("entity", "resource", "link", "compute", "storage", "network", "networkinterface", "storagelink",
                 "ipnetwork", "os_tpl", "resource_tpl", "img-a", "start", "online", "up"):
        assert f"Category: {term};" in r.text, term
    r = await env.a.get(path, headers={"Accept": "application/occi+json"})
    body = r.json()
    assert {k["term"] for k in body["kinds"]} >= {"compute", "storage", "network", "networkinterface", "storagelink"}
    assert {m["term"] for m in body["mixins"]} >= {"ipnetwork", "os_tpl", "img-a", "img-b"}


async def test_query_interface_filtering(env: Env) -> None:
    # A kind: itself and its actions.
    r = await env.a.get("/occi/-/", headers={"Accept": "application/occi+json", "Category": COMPUTE_CAT})
    body = r.json()
    assert [k["term"] for k in body["kinds"]] == ["compute"]
    assert {a["term"] for a in body.get("actions", [])} == {"start", "stop", "restart", "suspend", "save"}
    assert not body.get("mixins")
    # os_tpl: the templates below it (what EGI clients ask to list images)
    r = await env.a.get("/occi/-/", headers={
        "Accept": "text/plain", "Category": 'os_tpl; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="mixin"'})
    terms = [line.split(";")[0].removeprefix("Category: ") for line in r.text.splitlines() if line.startswith("Category:")]
    assert sorted(terms) == ["img-a", "img-b", "os_tpl"]
    # a category nobody defines: nothing
    r = await env.a.get("/occi/-/", headers={"Accept": "text/plain", "Category": 'x; scheme="http://e.org/x#"'})
    assert r.status_code == 200 and "Category:" not in r.text
    # a malformed filter is a 400
    r = await env.a.get("/occi/-/", headers={"Category": 'compute; scheme="unterminated'})
    assert r.status_code == 400


async def test_user_mixins_through_the_query_interface(env: Env) -> None:
    tag = f'mytag; scheme="{TAG_SCHEME}"; class="mixin"; location="/tags/mytag/"; title="mine"'
    r = await env.a.post("/occi/-/", headers={"Content-Type": "text/occi", "Category": tag})
    assert r.status_code == 200, r.text
    listed = await env.a.get("/occi/-/", headers={"Accept": "text/plain"})
    assert "Category: mytag;" in listed.text
    assert "Category: mytag;" not in (await env.b.get("/occi/-/", headers={"Accept": "text/plain"})).text
    # use it as a tag on create: the backend never sees it, the entity shows it
    loc = await _create(env.a, COMPUTE_CAT, 'occi.core.title="tagged"', mixins=(f'mytag; scheme="{TAG_SCHEME}"; class="mixin"',))
    eid = loc.rsplit("/", 1)[1]
    assert TAG_SCHEME + "mytag" not in env.compute.rows[eid][1].mixins
    got = await env.a.get(f"/occi{loc}", headers={"Accept": "application/occi+json"})
    assert TAG_SCHEME + "mytag" in got.json()["mixins"]
    # B cannot use it, remove it, or see its collection
    r = await env.b.post("/occi/compute/", headers=[("Content-Type", "text/occi"), ("Category", COMPUTE_CAT),
                                                   ("Category", f'mytag; scheme="{TAG_SCHEME}"; class="mixin"')])
    assert r.status_code == 400 and "mytag" in r.text
    r = await env.b.request("DELETE", "/occi/-/", headers={"Category": f'mytag; scheme="{TAG_SCHEME}"; class="mixin"'})
    assert r.status_code == 404
    assert (await env.b.get("/occi/tags/mytag/")).status_code == 404
    # a provider category cannot be removed
    r = await env.a.request("DELETE", "/occi/-/", headers={"Category": COMPUTE_CAT})
    assert r.status_code == 403
    r = await env.a.request("DELETE", "/occi/-/", headers={"Category": f'mytag; scheme="{TAG_SCHEME}"; class="mixin"'})
    assert r.status_code == 200
    got = await env.a.get(f"/occi{loc}", headers={"Accept": "application/occi+json"})
    assert TAG_SCHEME + "mytag" not in got.json().get("mixins", [])


# --- entities -------------------------------------------------------------------------------------


async def test_create_read_update_delete_in_three_renderings(env: Env) -> None:
    loc = await _create(env.a, COMPUTE_CAT, 'occi.core.title="one"', "occi.compute.cores=2")
    r = await env.a.get(f"/occi{loc}", headers={"Accept": "text/occi"})
    assert r.status_code == 200 and "occi.compute.cores=2" in ",".join(r.headers.get_list("x-occi-attribute"))
    r = await env.a.get(f"/occi{loc}", headers={"Accept": "text/plain"})
    assert 'X-OCCI-Attribute: occi.core.title="one"' in r.text
    # JSON create
    r = await env.a.post("/occi/storage/", headers=JSON_H, content=json.dumps({
        "kind": INFRA + "storage", "attributes": {"occi.storage.size": 2, "occi.core.title": "disk"}}))
    assert r.status_code == 201, r.text
    sloc = r.headers["location"].removeprefix("http://cumulo.test/occi")
    # partial update (POST) and full update (PUT)
    r = await env.a.post(f"/occi{loc}", headers=[("Content-Type", "text/occi"), ("Accept", "application/occi+json"),
                                                 ("X-OCCI-Attribute", 'occi.core.title="renamed"')])
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "renamed"  # JSON rendering: occi.core.title is the member "title"
    r = await env.a.put(f"/occi{loc}", headers=[("Content-Type", "text/occi"), ("Accept", "application/occi+json"),
                                                ("Category", COMPUTE_CAT), ("X-OCCI-Attribute", "occi.compute.cores=4")])
    assert r.status_code == 200, r.text
    assert r.json()["attributes"]["occi.compute.cores"] == 4 and "title" not in r.json()
    # a PUT where no entity is: ids are OpenStack's, a client cannot choose one
    r = await env.a.put("/occi/compute/00000000-0000-0000-0000-000000000000",
                        headers=[("Content-Type", "text/occi"), ("Category", COMPUTE_CAT)])
    assert r.status_code == 404
    # listing in every rendering
    r = await env.a.get("/occi/compute/", headers={"Accept": "text/uri-list"})
    assert r.status_code == 200 and f"http://cumulo.test/occi{loc}" in r.text.split()
    r = await env.a.get("/occi/", headers={"Accept": "text/plain"})
    assert f"X-OCCI-Location: http://cumulo.test/occi{sloc}" in r.text
    assert (await env.a.delete(f"/occi{loc}")).status_code == 200
    assert (await env.a.get(f"/occi{loc}")).status_code == 404
    assert (await env.a.delete(f"/occi{sloc}")).status_code == 200


@pytest.mark.parametrize(("attrs", "needle"), [
    (['occi.compute.colour="red"'], "occi.compute.colour"),  # unknown attribute
    (['occi.compute.cores="many"'], "occi.compute.cores"),  # wrong type
    (["occi.compute.state=\"active\""], "occi.compute.state"),  # immutable
])
async def test_bad_attributes_are_400_naming_them(env: Env, attrs: list[str], needle: str) -> None:
    headers = [("Content-Type", "text/occi"), ("Category", COMPUTE_CAT)] + [("X-OCCI-Attribute", a) for a in attrs]
    r = await env.a.post("/occi/compute/", headers=headers)
    assert r.status_code == 400 and needle in r.text, r.text


@pytest.mark.parametrize(("headers", "needle"), [
    ([("Category", 'compute; scheme="http://schemas.ogf.org/occi/infrastructure#')], ""),  # unterminated
    ([("Category", STORAGE_CAT)], "storage"),  # the wrong kind for /compute/
    ([("Category", COMPUTE_CAT), ("Category", 'nope; scheme="http://e.org/n#"; class="mixin"')], "nope"),
    ([("Category", COMPUTE_CAT), ("X-OCCI-Attribute", "no equals sign")], ""),
])
async def test_malformed_requests_are_400(env: Env, headers: list[tuple[str, str]], needle: str) -> None:
    r = await env.a.post("/occi/compute/", headers=[("Content-Type", "text/occi"), *headers])
    assert r.status_code == 400 and needle in r.text, r.text


async def test_malformed_bodies_never_500(env: Env) -> None:
    for ct, body in (("application/occi+json", b"{"), ("application/occi+json", b'{"kind": 5}'),
                     ("application/occi+json", b"[" * 5000), ("application/occi+json", b'{"kind": "\\ud800"}'),
                     ("text/plain", b"Category: \xff\xfe"), ("text/plain", b"garbage line"),
                     ("text/occi", b"x" * 100)):
        r = await env.a.post("/occi/compute/", headers={"Content-Type": ct}, content=body)
        assert 400 <= r.status_code < 500, (ct, body[:20], r.status_code, r.text)


async def test_actions(env: Env) -> None:
    loc = await _create(env.a, COMPUTE_CAT, 'occi.core.title="act"')
    eid = loc.rsplit("/", 1)[1]
    # start on an active compute: the state forbids it
    start = f'start; scheme="{INFRA.removesuffix("#")}/compute/action#"; class="action"'
    r = await env.a.post(f"/occi{loc}?action=start", headers={"Content-Type": "text/occi", "Category": start})
    assert r.status_code == 409, r.text
    r = await env.a.post(f"/occi{loc}?action=explode", headers={"Content-Type": "text/occi"})
    assert r.status_code == 400 and "explode" in r.text
    r = await env.a.post(f"/occi{loc}?action=", headers={"Content-Type": "text/occi"})
    assert r.status_code == 400
    # stop with its method attribute, as text/plain
    stop = f'Category: stop; scheme="{INFRA.removesuffix("#")}/compute/action#"; class="action"\n' \
           'X-OCCI-Attribute: method="poweroff"\n'
    r = await env.a.post(f"/occi{loc}?action=stop", headers={"Content-Type": "text/plain", "Accept": "application/occi+json"},
                         content=stop)
    assert r.status_code == 200, r.text
    assert r.json()["attributes"]["occi.compute.state"] == "inactive"
    assert env.compute.acted[-1] == (eid, "stop", {"method": "poweroff"})
    # an attribute the action does not define, or a value outside its enum, is a 400 naming it
    r = await env.a.post(f"/occi{loc}?action=start", headers={"Content-Type": "text/occi",
                                                              "X-OCCI-Attribute": 'method="warm"'})
    assert r.status_code == 400 and "method" in r.text, r.text
    r = await env.a.post(f"/occi{loc}?action=stop", headers={"Content-Type": "text/occi",
                                                             "X-OCCI-Attribute": 'method="sideways"'})
    assert r.status_code == 400 and "method" in r.text, r.text
    assert env.compute.acted[-1] == (eid, "stop", {"method": "poweroff"})  # neither reached the backend
    # a mismatched action category is a 400
    r = await env.a.post(f"/occi{loc}?action=start", headers={"Content-Type": "text/occi", "Category":
                                                              stop.splitlines()[0].removeprefix("Category: ")})
    assert r.status_code == 400


async def test_collection_action_and_delete(env: Env) -> None:
    env.backends["network"].rows.clear()
    net = f'network; scheme="{INFRA}"; class="kind"'
    for _ in range(2):
        await _create(env.a, net)
    other = await _create(env.b, net)
    r = await env.a.post("/occi/network/?action=down", headers={"Content-Type": "text/occi"})
    assert r.status_code == 200, r.text
    assert [a[1] for a in env.backends["network"].acted[-2:]] == ["down", "down"]
    assert (await env.a.delete("/occi/network/")).status_code == 200
    assert (await env.a.get("/occi/network/", headers={"Accept": "text/uri-list"})).text.strip() == ""
    assert (await env.b.get(f"/occi{other}")).status_code == 200  # B's network is untouched


async def test_collection_filtering_and_pagination(env: Env) -> None:
    env.backends["storage"].rows.clear()
    for i in range(5):
        await _create(env.a, STORAGE_CAT, f'occi.core.title="vol{i % 2}"', f"occi.storage.size={i + 1}")
    r = await env.a.get("/occi/storage/", headers={"Accept": "text/uri-list", "X-OCCI-Attribute": 'occi.core.title="vol1"'})
    assert len(r.text.split()) == 2
    r = await env.a.get("/occi/storage/", headers={"Accept": "text/uri-list", "X-OCCI-Attribute": "occi.storage.size=3"})
    assert len(r.text.split()) == 1
    # by category, on the root path: only storage
    r = await env.a.get("/occi/", headers={"Accept": "text/uri-list", "Category": STORAGE_CAT})
    assert len(r.text.split()) == 5 and all("/storage/" in u for u in r.text.split())
    r = await env.a.get("/occi/", headers={"Accept": "text/uri-list", "Category": 'resource; scheme="http://schemas.ogf.org/occi/core#"'})
    assert len(r.text.split()) >= 5
    # pagination
    pages = [(await env.a.get(f"/occi/storage/?page={p}&number=2", headers={"Accept": "text/uri-list"})).text.split()
             for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [2, 2, 1, 0] and len({u for p in pages for u in p}) == 5
    assert len((await env.a.get("/occi/storage/?page=2;number=3", headers={"Accept": "text/uri-list"})).text.split()) == 2
    assert (await env.a.get("/occi/storage/?number=100000")).status_code == 413
    assert (await env.a.get("/occi/storage/?page=x&number=2")).status_code == 400
    assert (await env.a.get("/occi/storage/?page=0&number=2")).status_code == 400


async def test_links_must_point_at_the_callers_entities(env: Env) -> None:
    mine = await _create(env.a, STORAGE_CAT, "occi.storage.size=1")
    theirs = await _create(env.b, STORAGE_CAT, "occi.storage.size=1")
    compute = await _create(env.a, COMPUTE_CAT)
    link = f'storagelink; scheme="{INFRA}"; class="kind"'
    for target, status in ((theirs, 404), (mine, 201)):
        r = await env.a.post("/occi/storagelink/", headers=[
            ("Content-Type", "text/occi"), ("Category", link),
            ("X-OCCI-Attribute", f'occi.core.source="{compute}"'), ("X-OCCI-Attribute", f'occi.core.target="{target}"')])
        assert r.status_code == status, r.text
    # an inline link to another project's storage on create
    r = await env.a.post("/occi/compute/", headers=[
        ("Content-Type", "text/occi"), ("Category", COMPUTE_CAT),
        ("Link", f'<{theirs}>; rel="{INFRA}storage"; category="{INFRA}storagelink"')])
    assert r.status_code == 404, r.text


# --- authentication -------------------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_no_or_bad_token_gets_the_keystone_challenge(env: Env) -> None:
    for headers in ({}, {"X-Auth-Token": "bogus"}):
        r = await env.anon.get("/occi/-/", headers=headers)
        assert r.status_code == 401
        assert r.headers.get_list("www-authenticate") == ["Keystone uri='http://cumulo.test/identity/v3'"]


async def test_a_keystone_token_scopes_the_request(env: Env) -> None:
    issued = await env.identity.authenticate(
        {"methods": ["password"], "password": {"user": {"name": "demo", "domain": {"id": "default"},
                                                        "password": env.creds["demo"]["password"]}}},
        {"project": {"name": env.creds["demo"]["project"], "domain": {"id": "default"}}})
    loc = await _create(env.anon.__class__(transport=env.anon._transport, base_url="http://cumulo.test",
                                           headers={"X-Auth-Token": issued.token}), STORAGE_CAT,
                        "occi.storage.size=1")
    eid = loc.rsplit("/", 1)[1]
    assert env.backends["storage"].rows[eid][0] == issued.info.ctx.project_id


async def test_basic_credentials(env: Env) -> None:
    demo = env.creds["demo"]
    # the bootstrap's demo user has no default project: Basic alone scopes nothing (401, Basic challenge)
    r = await env.anon.get("/occi/-/", headers=_basic("demo", demo["password"]))
    assert r.status_code == 401 and "X-Auth-Project" in r.text
    assert r.headers.get_list("www-authenticate") == ['Basic realm="cumulo"']
    scoped = {**_basic("demo", demo["password"]), "X-Auth-Project": demo["project"]}
    assert (await env.anon.get("/occi/-/", headers=scoped)).status_code == 200
    assert (await env.anon.get("/occi/-/", headers=scoped)).status_code == 200  # the cached login
    for headers in (_basic("demo", "wrong"), _basic("nobody", "x"), {"Authorization": "Basic !!!"},
                    {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
                    {**_basic("demo", "wrong"), "X-Auth-Token": "bogus"}):
        r = await env.anon.get("/occi/-/", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers.get_list("www-authenticate") == ['Basic realm="cumulo"'], headers
    # scoped by the X-Auth-Project header (name or id); a project the user has no role on is a 401
    project = await env.identity.directory.list_projects({"name": demo["project"]})
    for value in (demo["project"], project[0]["id"]):
        r = await env.anon.post("/occi/storage/", headers={**_basic("demo", demo["password"]), "X-Auth-Project": value,
                                                           "Content-Type": "text/occi", "Category": STORAGE_CAT,
                                                           "X-OCCI-Attribute": "occi.storage.size=1"})
        assert r.status_code == 201, r.text
        eid = r.headers["location"].rsplit("/", 1)[1]
        assert env.backends["storage"].rows[eid][0] == project[0]["id"]
    r = await env.anon.get("/occi/-/", headers={**_basic("demo", demo["password"]), "X-Auth-Project": "admin"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="cumulo"'


async def test_a_changed_password_ends_the_cached_basic_login(env: Env) -> None:
    project = (await env.identity.directory.list_projects({"name": env.creds["demo"]["project"]}))[0]
    user = await env.identity.directory.create_user({"name": "occi-basic", "password": "first-Pass-1",
                                                     "domain_id": "default", "default_project_id": project["id"]})
    roles = {r["name"]: r["id"] for r in await env.identity.directory.list_roles()}
    await env.identity.directory.grant(project["id"], user["id"], roles["member"])
    headers = _basic("occi-basic", "first-Pass-1")  # scoped to the user's default project
    assert (await env.anon.get("/occi/-/", headers=headers)).status_code == 200
    await env.identity.directory.update_user(user["id"], {"password": "second-Pass-2"})
    assert (await env.anon.get("/occi/-/", headers=headers)).status_code == 401
    headers = _basic("occi-basic", "second-Pass-2")
    assert (await env.anon.get("/occi/-/", headers=headers)).status_code == 200


async def test_an_unscoped_token_is_401(env: Env) -> None:
    issued = await env.identity.authenticate(
        {"methods": ["password"], "password": {"user": {"name": "demo", "domain": {"id": "default"},
                                                        "password": env.creds["demo"]["password"]}}}, "unscoped")
    r = await env.anon.get("/occi/-/", headers={"X-Auth-Token": issued.token})
    assert r.status_code == 401 and "project" in r.text
    assert r.headers["www-authenticate"].startswith("Keystone uri=")


async def test_head_and_root_methods(env: Env) -> None:
    r = await env.a.head("/occi/-/")
    assert r.status_code == 200 and r.content == b"" and r.headers["server"] == SERVER
    assert (await env.a.head("/occi/compute/")).status_code == 200
    r = await env.a.post("/occi/", headers=OCCI_TEXT)
    assert r.status_code == 405 and "GET" in r.headers["allow"]


async def test_core_kind_collections_list_their_sub_kinds(env: Env) -> None:
    storage = await _create(env.a, STORAGE_CAT, "occi.storage.size=1")
    compute = await _create(env.a, COMPUTE_CAT)
    link = await _create(env.a, f'storagelink; scheme="{INFRA}"; class="kind"',
                         f'occi.core.source="{compute}"', f'occi.core.target="{storage}"')
    resources = (await env.a.get("/occi/resource/", headers={"Accept": "text/uri-list"})).text.split()
    links = (await env.a.get("/occi/link/", headers={"Accept": "text/uri-list"})).text.split()
    base = "http://cumulo.test/occi"
    assert {base + storage, base + compute} <= set(resources) and base + link not in resources
    assert base + link in links and base + compute not in links
    assert base + storage not in (await env.b.get("/occi/resource/", headers={"Accept": "text/uri-list"})).text.split()
    r = await env.a.post("/occi/resource/", headers=[("Content-Type", "text/occi"), ("Category", COMPUTE_CAT)])
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert (await env.a.get("/occi/entity/")).status_code == 404  # entity cannot be instantiated: not bound


# --- the pure pieces --------------------------------------------------------------------------------


async def test_client_versions_and_fault_media_types() -> None:
    from cumulo.occi.faults import client_version, fault_media_type

    assert client_version("rOCCI-cli/4.3.9 OCCI/1.1") == (1, 1)
    assert client_version("x OCCI/1.10") == (1, 10)  # numeric: 1.10 is above 1.2
    assert client_version("curl/8.0") is None and client_version("OCCI/one.two") is None
    assert fault_media_type([]) == "text/plain"
    assert fault_media_type(["application/occi+json"]) == "json"
    assert fault_media_type(["text/plain;q=0.5, text/occi"]) == "text/occi"
    assert fault_media_type(["text/occi;q=0.1", "application/json;q=0.9"]) == "json"
    assert fault_media_type(["application/xml"]) == "text/plain"


async def test_basic_credentials_parsing() -> None:
    from cumulo.occi.auth import OcciUnauthorized, basic_credentials

    assert basic_credentials("Basic " + base64.b64encode(b"demo:pa:ss").decode()) == ("demo", "pa:ss")
    assert basic_credentials("basic " + base64.b64encode("dém:ø".encode()).decode()) == ("dém", "ø")
    assert basic_credentials("Bearer abc") is None
    for bad in ("Basic", "Basic @@", "Basic " + base64.b64encode(b":nouser").decode(),
                "Basic " + base64.b64encode(b"u:" + b"p" * 2000).decode()):
        with pytest.raises(OcciUnauthorized) as exc:
            basic_credentials(bad)
        assert exc.value.challenge == 'Basic realm="cumulo"'


async def test_filters_match_categories_and_typed_attributes() -> None:
    from cumulo.occi.api_common import matches, related
    from cumulo.occi.model import Entity, EntityRequest

    e = Entity(kind=INFRA + "storage", id="s1", location="/storage/s1", mixins=[TAG_SCHEME + "t"],
               attributes={"occi.storage.size": 2.0, "occi.core.title": "a", "x.flag": True})
    assert matches(e, EntityRequest(kind="http://schemas.ogf.org/occi/core#resource"))
    assert matches(e, EntityRequest(mixins=[TAG_SCHEME + "t"], attributes={"occi.storage.size": 2}))
    assert matches(e, EntityRequest(attributes={"occi.storage.size": "2", "x.flag": "true", "occi.core.id": "s1"}))
    assert not matches(e, EntityRequest(kind=INFRA + "compute"))
    assert not matches(e, EntityRequest(attributes={"occi.core.title": "b"}))
    assert not matches(e, EntityRequest(attributes={"occi.storage.state": "online"}))  # absent: no match
    ids = {c.id for c in related([INFRA + "storage"], list(categories.ALL))}
    assert ids == {INFRA + "storage", *categories.STORAGE.actions}
    ids = {c.id for c in related(["http://schemas.ogf.org/occi/core#link"], list(categories.ALL))}
    assert {INFRA + "networkinterface", INFRA + "storagelink"} <= ids and INFRA + "compute" not in ids
