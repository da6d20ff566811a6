"""Mixin collections over HTTP, in-process (occi.api + occi.api_mixins + the store on SQLite, with
in-memory kind backends): user mixins defined through the query interface, entities associated by
POST, replaced by PUT, disassociated by DELETE (GFD.223), listed and filtered in the renderings;
provider mixins' collections; two projects that never see each other's mixins or tags."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from _asgi_ctx import AsCtx

from cumulo import errors
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database
from cumulo.occi import categories
from cumulo.occi.api import build_deps, make_app
from cumulo.occi.mixins import MixinStore
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind, Mixin

TAGS = "http://example.com/occi/tags#"
WEB = TAGS + "web"
OS = "http://schemas.openstack.org/template/os#"
IMAGE = "1d2c3b4a-0000-4000-8000-000000000001"
DEFINE_WEB = f'web; scheme="{TAGS}"; class="mixin"; title="Web servers"; location="/tags/web/"'
SCHEMA = json.loads((Path(__file__).parents[1] / "reference" / "occi" / "occi-1.2-schema.json").read_text())


def valid(doc: Any, definition: str) -> None:
    """`doc` against one definition of the OCCI 1.2 JSON schema (tests/reference/occi)."""
    jsonschema.Draft4Validator({**SCHEMA, "anyOf": [{"$ref": f"#/definitions/{definition}"}]}).validate(doc)


class MemoryBackend:
    """A kind backend over a dict, scoped by project as the real ones are."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.rows: dict[str, tuple[str, Entity]] = {}

    def add(self, ctx: RequestContext, title: str, mixins: tuple[str, ...] = ()) -> Entity:
        eid = str(uuid.uuid4())
        e = Entity(kind=self.kind.id, id=eid, location=f"{self.kind.location}{eid}", mixins=list(mixins),
                   attributes={"occi.core.id": eid, "occi.core.title": title})
        self.rows[eid] = (str(ctx.project_id), e)
        return e

    def _copy(self, e: Entity) -> Entity:
        return Entity(kind=e.kind, id=e.id, location=e.location, mixins=list(e.mixins), attributes=dict(e.attributes))

    async def list(self, ctx: RequestContext) -> list[Entity]:
        return [self._copy(e) for p, e in self.rows.values() if p == ctx.project_id]

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        found = self.rows.get(entity_id)
        if found is None or found[0] != ctx.project_id:
            raise errors.NotFound(f"{self.kind.term} {entity_id} not found")
        return self._copy(found[1])

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        raise errors.Invalid("not in this test")

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        await self.get(ctx, entity_id)
        del self.rows[entity_id]

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        raise errors.Invalid("not in this test")


class Images:
    async def mixins(self, ctx: RequestContext) -> list[Mixin]:
        return [Mixin(OS, IMAGE, "cirros (container)", depends=(categories.OS_TPL.id,),
                      applies=(categories.COMPUTE.id,), location=f"/os_tpl/{IMAGE}/")]


def make_ctx() -> RequestContext:
    return RequestContext(user_id=uuid.uuid4().hex, project_id=uuid.uuid4().hex, roles=expand_roles(["member"]))


class World:
    def __init__(self, app: Any, store: MixinStore, compute: MemoryBackend, storage: MemoryBackend) -> None:
        self.app, self.store, self.compute, self.storage = app, store, compute, storage

    def client(self, ctx: RequestContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(self.app, ctx)),
                                 base_url="http://cumulo.test")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'occi.db'}")
    await db.create_all()
    store = MixinStore(db, lookup=categories.get,
                       provider_locations=lambda: [c.location for c in categories.ALL
                                                   if isinstance(c, Kind | Mixin) and c.location])
    compute, storage = MemoryBackend(categories.COMPUTE), MemoryBackend(categories.STORAGE)
    deps = build_deps(None, backends=[compute, storage], sources=[Images()], user_mixins=store)
    try:
        yield World(make_app(occi_deps=deps), store, compute, storage)
    finally:
        await db.dispose()


def locations(resp: httpx.Response) -> list[str]:
    return [ln.strip() for ln in resp.text.splitlines() if ln.strip() and not ln.startswith("#")]


async def define_web(c: httpx.AsyncClient) -> None:
    r = await c.post("/-/", headers={"Content-Type": "text/occi", "Category": DEFINE_WEB})
    assert r.status_code == 200, r.text


async def test_a_user_mixin_collection_through_its_life(world: World) -> None:
    ctx = make_ctx()
    a = world.compute.add(ctx, "a")
    b = world.compute.add(ctx, "b")
    v = world.storage.add(ctx, "v")
    async with world.client(ctx) as c:
        await define_web(c)
        r = await c.get("/-/", headers={"Accept": "text/plain"})
        assert "Category: web; " in r.text and 'location="http://cumulo.test/tags/web/"' in r.text, r.text

        # POST: associate (text/occi headers, one absolute and one root-relative location)
        r = await c.post("/tags/web/", headers=[("Content-Type", "text/occi"), ("Accept", "text/uri-list"),
                                                ("X-OCCI-Location", f"http://cumulo.test/compute/{a.id}"),
                                                ("X-OCCI-Location", f"/compute/{b.id}")])
        assert r.status_code == 200, r.text
        assert locations(r) == [f"http://cumulo.test/compute/{a.id}", f"http://cumulo.test/compute/{b.id}"]

        # the tag shows on the entity, and GET on the collection in every rendering
        r = await c.get(f"/compute/{a.id}", headers={"Accept": "text/plain"})
        assert f'Category: web; scheme="{TAGS}"; class="mixin"' in r.text, r.text
        r = await c.get("/tags/web/", headers={"Accept": "application/occi+json"})
        body = r.json()
        assert [e["id"] for e in body["resources"]] == [a.id, b.id]
        assert all(WEB in e["mixins"] for e in body["resources"])
        r = await c.get("/tags/web/", headers={"Accept": "text/occi"})
        assert [loc.strip() for v in r.headers.get_list("x-occi-location") for loc in v.split(",")] == [
            f"http://cumulo.test/compute/{a.id}", f"http://cumulo.test/compute/{b.id}"]

        # filtering by attribute and by category, as on kind collections
        r = await c.get("/tags/web/", headers={"Accept": "text/uri-list",
                                               "X-OCCI-Attribute": 'occi.core.title="b"'})
        assert locations(r) == [f"http://cumulo.test/compute/{b.id}"]
        r = await c.get("/tags/web/", headers={"Accept": "text/uri-list", "Category":
                                               f'storage; scheme="{categories.INFRA}"; class="kind"'})
        assert locations(r) == []

        # PUT: replace the membership (text/uri-list body)
        r = await c.put("/tags/web/", content=f"# members\r\n/compute/{b.id}\r\n/storage/{v.id}\r\n",
                        headers={"Content-Type": "text/uri-list", "Accept": "text/uri-list"})
        assert r.status_code == 200, r.text
        assert sorted(locations(r)) == sorted([f"http://cumulo.test/compute/{b.id}",
                                               f"http://cumulo.test/storage/{v.id}"])

        # DELETE one (text/plain body), then every member (no body)
        r = await c.request("DELETE", "/tags/web/", content=f"X-OCCI-Location: /compute/{b.id}\n",
                            headers={"Content-Type": "text/plain", "Accept": "text/uri-list"})
        assert r.status_code == 200 and locations(r) == [f"http://cumulo.test/storage/{v.id}"]
        await c.post("/tags/web/", headers={"X-OCCI-Location": f"/compute/{a.id}", "Content-Type": "text/occi"})
        r = await c.delete("/tags/web/", headers={"Accept": "text/uri-list"})
        assert r.status_code == 200 and locations(r) == []
        assert await world.store.entities_of(ctx, WEB) == []

        # the query interface's DELETE removes the mixin and its collection
        await c.post("/tags/web/", headers={"X-OCCI-Location": f"/compute/{a.id}", "Content-Type": "text/occi"})
        r = await c.request("DELETE", "/-/", headers={"Category": f'web; scheme="{TAGS}"; class="mixin"'})
        assert r.status_code == 200, r.text
        assert (await c.get("/tags/web/")).status_code == 404
        assert (await c.get(f"/compute/{a.id}", headers={"Accept": "application/occi+json"})).json().get(
            "mixins", []) == []


async def test_json_renderings_validate_against_the_schema(world: World) -> None:
    ctx = make_ctx()
    a = world.compute.add(ctx, "a")
    async with world.client(ctx) as c:
        await define_web(c)
        await c.post("/tags/web/", headers={"X-OCCI-Location": f"/compute/{a.id}", "Content-Type": "text/occi"})
        r = await c.get("/-/", headers={"Accept": "application/occi+json", "Category":
                                        f'web; scheme="{TAGS}"; class="mixin"'})
        doc = r.json()
        assert [m["location"] for m in doc["mixins"]] == ["http://cumulo.test/tags/web/"], doc
        valid(doc, "model")
        valid(doc["mixins"][0], "mixin")
        r = await c.get("/tags/web/", headers={"Accept": "application/occi+json"})
        valid(r.json(), "resource_collection")
        assert r.json()["resources"][0]["mixins"] == [WEB]


async def test_json_locations_and_deleted_members(world: World) -> None:
    ctx = make_ctx()
    a = world.compute.add(ctx, "a")
    b = world.compute.add(ctx, "b")
    async with world.client(ctx) as c:
        r = await c.post("/-/", content=json.dumps({"mixins": [{"term": "web", "scheme": TAGS,
                                                                 "location": "/tags/web/"}]}),
                         headers={"Content-Type": "application/occi+json"})
        assert r.status_code == 200, r.text
        r = await c.post("/tags/web/", content=json.dumps([f"/compute/{a.id}", f"/compute/{b.id}"]),
                         headers={"Content-Type": "application/occi+json", "Accept": "application/occi+json"})
        assert r.status_code == 200, r.text
        assert [e["id"] for e in r.json()["resources"]] == [a.id, b.id]
        # PUT with an entity collection rendering (JSON Rendering 1.2: resources by kind and id)
        r = await c.put("/tags/web/", content=json.dumps({"resources": [{"kind": categories.COMPUTE.id, "id": b.id}]}),
                        headers={"Content-Type": "application/occi+json", "Accept": "application/occi+json"})
        assert r.status_code == 200 and [e["id"] for e in r.json()["resources"]] == [b.id], r.text
        await c.post("/tags/web/", content=json.dumps({"locations": [f"http://cumulo.test/compute/{a.id}"]}),
                     headers={"Content-Type": "application/occi+json"})
        assert await world.store.entities_of(ctx, WEB) == [f"/compute/{b.id}", f"/compute/{a.id}"]
        # b deleted through the OCCI API: its tags go with it; a deleted behind OCCI's back (as through
        # the OpenStack API): the collection drops it when the backend no longer finds it
        assert (await c.delete(f"/compute/{b.id}")).status_code == 200
        del world.compute.rows[a.id]
        assert await world.store.entities_of(ctx, WEB) == [f"/compute/{a.id}"]
        r = await c.get("/tags/web/", headers={"Accept": "text/uri-list"})
        assert r.status_code == 200 and locations(r) == []
        assert await world.store.entities_of(ctx, WEB) == []


async def test_applies_from_a_json_definition(world: World) -> None:
    ctx = make_ctx()
    a = world.compute.add(ctx, "a")
    v = world.storage.add(ctx, "v")
    async with world.client(ctx) as c:
        r = await c.post("/-/", content=json.dumps({"mixins": [{
            "term": "vms", "scheme": TAGS, "title": "VMs only", "location": "/vms/",
            "applies": [categories.COMPUTE.id], "depends": []}]}), headers={"Content-Type": "application/occi+json"})
        assert r.status_code == 200, r.text
        r = await c.post("/vms/", headers={"X-OCCI-Location": f"/storage/{v.id}", "Accept": "text/plain"})
        assert r.status_code == 400 and "does not apply to storage" in r.text, r.text
        r = await c.post("/vms/", headers={"X-OCCI-Location": f"/compute/{a.id}", "Accept": "text/uri-list"})
        assert locations(r) == [f"http://cumulo.test/compute/{a.id}"]
        r = await c.get("/-/", headers={"Accept": "application/occi+json",
                                        "Category": f'vms; scheme="{TAGS}"; class="mixin"'})
        assert r.json()["mixins"][0]["applies"] == [categories.COMPUTE.id]


@pytest.mark.parametrize(("location", "status", "names"), [
    ("/compute/6c0b8d3e-0000-4000-8000-00000000dead", 404, "6c0b8d3e-0000-4000-8000-00000000dead"),
    ("/nothing/xyz", 400, "/nothing/xyz"),
    ("/compute/a/b/c", 400, "/compute/a/b/c"),
])
async def test_bad_locations_are_refused_naming_them(world: World, location: str, status: int, names: str) -> None:
    ctx = make_ctx()
    a = world.compute.add(ctx, "a")
    async with world.client(ctx) as c:
        await define_web(c)
        r = await c.post("/tags/web/", headers=[("Content-Type", "text/occi"), ("Accept", "text/plain"),
                                                ("X-OCCI-Location", f"/compute/{a.id}"),
                                                ("X-OCCI-Location", location)])
        assert r.status_code == status, r.text
        assert names in r.text
        assert await world.store.entities_of(ctx, WEB) == []  # all or nothing


async def test_bad_requests_on_a_mixin_collection(world: World) -> None:
    ctx = make_ctx()
    async with world.client(ctx) as c:
        await define_web(c)
        r = await c.post("/tags/web/", headers={"Content-Type": "text/occi"})
        assert r.status_code == 400 and "location" in r.text
        r = await c.post("/tags/web/?action=start", headers={"Content-Type": "text/occi"})
        assert r.status_code == 400 and "action" in r.text
        r = await c.post("/tags/web/", content=b"{", headers={"Content-Type": "application/occi+json"})
        assert r.status_code == 400
        r = await c.get("/tags/web/", headers={"Accept": "image/png"})
        assert r.status_code == 406
        assert (await c.get("/tags/nothing/")).status_code == 404
        # a definition the query interface refuses, naming the offender
        for category, status, names in (
            (f'web; scheme="{TAGS}"; class="mixin"; location="/elsewhere/"', 409, "already exists"),
            (f'other; scheme="{TAGS}"; class="mixin"; location="/compute/"', 409, "/compute/"),
            (f'other; scheme="{TAGS}"; class="mixin"', 400, "location"),
            ('other; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="mixin"; location="/o/"',
             400, "reserved"),
            (f'os_tpl; scheme="{categories.INFRA}"; class="mixin"; location="/o/"', 409, "os_tpl"),
            (f'compute; scheme="{categories.INFRA}"; class="kind"; location="/o/"', 400, "compute"),
        ):
            r = await c.post("/-/", headers={"Content-Type": "text/occi", "Category": category,
                                             "Accept": "text/plain"})
            assert r.status_code == status and names in r.text, (category, r.status_code, r.text)
        r = await c.request("DELETE", "/-/", headers={"Category": f'os_tpl; scheme="{categories.INFRA}"; class="mixin"'})
        assert r.status_code == 403
        r = await c.request("DELETE", "/-/", headers={"Category": f'nope; scheme="{TAGS}"; class="mixin"'})
        assert r.status_code == 404


async def test_provider_mixin_collections(world: World) -> None:
    ctx = make_ctx()
    from_image = world.compute.add(ctx, "from-image", (categories.OS_TPL.id, OS + IMAGE))
    world.compute.add(ctx, "other")
    async with world.client(ctx) as c:
        for path in (f"/os_tpl/{IMAGE}/", "/os_tpl/"):
            r = await c.get(path, headers={"Accept": "text/uri-list"})
            assert r.status_code == 200 and locations(r) == [f"http://cumulo.test/compute/{from_image.id}"], path
        assert locations(await c.get("/ipnetwork/", headers={"Accept": "text/uri-list"})) == []
        r = await c.post(f"/os_tpl/{IMAGE}/", headers={"X-OCCI-Location": f"/compute/{from_image.id}"})
        assert r.status_code == 405
        r = await c.post(f"/os_tpl/{IMAGE}/?action=stop", headers={"Content-Type": "text/occi"})
        assert r.status_code == 400 and "no action" in r.text


async def test_two_projects_never_see_each_others_mixins_or_tags(world: World) -> None:
    alice, bob = make_ctx(), make_ctx()
    a = world.compute.add(alice, "alice's")
    b = world.compute.add(bob, "bob's")
    async with world.client(alice) as ca, world.client(bob) as cb:
        await define_web(ca)
        assert (await ca.post("/tags/web/", headers={"X-OCCI-Location": f"/compute/{a.id}"})).status_code == 200
        assert "tags#" not in (await cb.get("/-/", headers={"Accept": "text/plain"})).text
        for method in ("GET", "POST", "PUT", "DELETE"):
            r = await cb.request(method, "/tags/web/", headers={"X-OCCI-Location": f"/compute/{b.id}"})
            assert r.status_code == 404, (method, r.text)
        r = await cb.request("DELETE", "/-/", headers={"Category": f'web; scheme="{TAGS}"; class="mixin"'})
        assert r.status_code == 404
        # bob's own mixin of the same id and location: alice's compute is not his to tag
        await define_web(cb)
        r = await cb.post("/tags/web/", headers={"X-OCCI-Location": f"/compute/{a.id}"})
        assert r.status_code == 404
        assert (await cb.get(f"/compute/{a.id}")).status_code == 404
        r = await cb.get("/tags/web/", headers={"Accept": "text/uri-list"})
        assert locations(r) == []
        r = await ca.get("/tags/web/", headers={"Accept": "text/uri-list"})
        assert locations(r) == [f"http://cumulo.test/compute/{a.id}"]
