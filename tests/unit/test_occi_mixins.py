"""The user-mixin store (occi.mixins) on a real SQLite database: definitions checked as GFD.221/223/229
say, tags per entity and per mixin collection, and two projects that never see each other's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cumulo import errors
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database
from cumulo.occi import categories
from cumulo.occi.mixins import MixinStore, make, normalize_location
from cumulo.occi.model import Attribute, Kind, Mixin

TAGS = "http://example.com/occi/tags#"


def make_ctx() -> RequestContext:
    return RequestContext(user_id=uuid.uuid4().hex, project_id=uuid.uuid4().hex, roles=expand_roles(["member"]))


def tag(term: str, location: str | None = None, **kw: object) -> Mixin:
    return Mixin(TAGS, term, location=f"/tags/{term}/" if location is None else location, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MixinStore]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'occi.db'}")
    await db.create_all()

    class Svc:
        pass

    svc = Svc()
    svc.db = db  # type: ignore[attr-defined]
    try:
        yield make(svc)
    finally:
        await db.dispose()


async def test_define_list_and_delete(store: MixinStore) -> None:
    ctx = make_ctx()
    await store.define(ctx, [tag("web", title="Web servers"), Mixin(TAGS, "db", location="http://h:1/occi/db")])
    got = {m.id: m for m in await store.mixins(ctx)}
    assert got[TAGS + "web"].location == "/tags/web/" and got[TAGS + "web"].title == "Web servers"
    assert got[TAGS + "db"].location == "/db/"  # absolute URL, /occi prefix and missing slash normalized
    assert (await store.at(ctx, "/occi/db/")) == got[TAGS + "db"]
    assert await store.known(ctx, [TAGS + "db", TAGS + "nope", categories.OS_TPL.id]) == [TAGS + "db"]
    await store.remove(ctx, [TAGS + "web"])
    assert [m.id for m in await store.mixins(ctx)] == [TAGS + "db"]
    with pytest.raises(errors.NotFound, match="web"):
        await store.remove(ctx, [TAGS + "web"])


@pytest.mark.parametrize(("mixin", "exc", "names"), [
    (Mixin(TAGS, "bad term", location="/x/"), errors.Invalid, "term"),
    (Mixin(TAGS, "-x", location="/x/"), errors.Invalid, "term"),
    (Mixin("example.com/tags#", "x", location="/x/"), errors.Invalid, "scheme"),
    (Mixin("http://example.com/tags", "x", location="/x/"), errors.Invalid, "scheme"),
    (Mixin("http://schemas.ogf.org/occi/infrastructure/mine#", "x", location="/x/"), errors.Invalid, "reserved"),
    (Mixin("http://schemas.openstack.org/template/os#", "x", location="/x/"), errors.Invalid, "reserved"),
    (Mixin(TAGS, "x"), errors.Invalid, "location is required"),
    (Mixin(TAGS, "x", location="/a/../b/"), errors.Invalid, "location"),
    (Mixin(TAGS, "x", location="/a?b=1"), errors.Invalid, "location"),
    (Mixin(TAGS, "x", location="/a//b/"), errors.Invalid, "location"),
    (Mixin(TAGS, "x", location="/a/b/c/d/e/"), errors.Invalid, "location"),
    (Mixin(TAGS, "x", location="/"), errors.Invalid, "location"),
    (Mixin(TAGS, "x", location="/compute/"), errors.Conflict, "compute"),
    (Mixin(TAGS, "x", location="/occi/storage/mine/"), errors.Conflict, "storage"),
    (Mixin(TAGS, "x", location="/-/"), errors.Invalid, "location"),
    (Mixin(TAGS, "x", location="/os_tpl/x/"), errors.Conflict, "os_tpl"),
    (Mixin(TAGS, "x", location="/occi/occi/x/"), errors.Conflict, "occi"),
    (Mixin(TAGS, "x", location="/openstack/"), errors.Conflict, "provider's collection /openstack/public_key/"),
    (Mixin(TAGS, "x", location="/ipnetwork/"), errors.Conflict, "ipnetwork"),
    (categories.IPNETWORK, errors.Conflict, "provider"),
    (Mixin(TAGS, "x", location="/x/", attributes=(Attribute("com.example.a"),)), errors.Invalid, "attributes"),
    (Mixin(TAGS, "x", location="/x/", depends=(TAGS + "nothing",)), errors.Invalid, "depends"),
    (Mixin(TAGS, "x", location="/x/", applies=(TAGS + "nothing",)), errors.Invalid, "applies"),
    (Mixin(TAGS, "x", location="/x/", title="a\nb"), errors.Invalid, "title"),
])
async def test_bad_definitions_are_refused_naming_the_offender(store: MixinStore, mixin: Mixin,
                                                                exc: type[Exception], names: str) -> None:
    ctx = make_ctx()
    with pytest.raises(exc, match=names):
        await store.define(ctx, [mixin])
    assert await store.mixins(ctx) == []


async def test_a_kind_is_not_a_mixin_definition(store: MixinStore) -> None:
    with pytest.raises(errors.Invalid, match="only mixins"):
        await store.define(make_ctx(), [Kind(TAGS, "k", location="/k/")])  # type: ignore[list-item]


async def test_clashes_are_409_and_a_batch_is_all_or_nothing(store: MixinStore) -> None:
    ctx = make_ctx()
    await store.define(ctx, [tag("web")])
    with pytest.raises(errors.Conflict, match="already exists"):
        await store.define(ctx, [tag("other"), tag("web", location="/elsewhere/")])
    with pytest.raises(errors.Conflict, match="location /tags/web/"):
        await store.define(ctx, [Mixin(TAGS, "other", location="/tags/web")])
    with pytest.raises(errors.Conflict, match="already exists"):
        await store.define(ctx, [tag("a"), tag("a", location="/b/")])
    assert [m.term for m in await store.mixins(ctx)] == ["web"]


async def test_depends_and_applies(store: MixinStore) -> None:
    ctx = make_ctx()
    await store.define(ctx, [tag("base"), tag("derived", depends=(TAGS + "base",)),
                             tag("vms", applies=(categories.COMPUTE.id,))])
    with pytest.raises(errors.Conflict, match="derived depends on"):
        await store.remove(ctx, [TAGS + "base"])
    await store.remove(ctx, [TAGS + "base", TAGS + "derived"])  # together: fine
    await store.check_tags(ctx, [TAGS + "vms"], "compute")
    with pytest.raises(errors.Invalid, match="does not apply to storage"):
        await store.check_tags(ctx, [TAGS + "vms"], "storage")
    assert await store.entities_of(ctx, TAGS + "vms") == []
    await store.tag(ctx, [TAGS + "vms"], "compute", "s1")
    with pytest.raises(errors.Invalid, match="does not apply to storage"):
        await store.tag(ctx, [TAGS + "vms"], "storage", "v1")
    with pytest.raises(errors.Invalid, match="does not apply"):
        await store.add_members(ctx, TAGS + "vms", [("network", "n1")])
    await store.define(ctx, [tag("anyres", applies=(categories.RESOURCE.id,))])
    await store.add_members(ctx, TAGS + "anyres", [("network", "n1"), ("storage", "v1")])
    with pytest.raises(errors.Invalid, match="does not apply to storagelink"):
        await store.add_members(ctx, TAGS + "anyres", [("storagelink", "a1")])


async def test_provider_categories_cannot_be_deleted(store: MixinStore) -> None:
    for cid in (categories.OS_TPL.id, categories.COMPUTE.id, "http://schemas.openstack.org/template/os#img"):
        assert not store.is_user_mixin(cid)
        with pytest.raises(errors.Forbidden, match="provider"):
            await store.remove(make_ctx(), [cid])
    assert store.is_user_mixin(TAGS + "web")


async def test_tags_of_entities(store: MixinStore) -> None:
    ctx = make_ctx()
    await store.define(ctx, [tag("web"), tag("prod")])
    await store.tag(ctx, [TAGS + "web", TAGS + "prod"], "compute", "s1")
    await store.tag(ctx, [TAGS + "web"], "compute", "s1")  # again: no duplicate
    await store.tag(ctx, [TAGS + "prod"], "storage", "s2")
    assert await store.tags_of(ctx, "compute", ["s1", "s2", "s3"]) == {"s1": [TAGS + "web", TAGS + "prod"]}  # tagging order
    assert await store.tags_of(ctx, "storage", ["s2"]) == {"s2": [TAGS + "prod"]}
    with pytest.raises(errors.NotFound, match="nope"):
        await store.tag(ctx, [TAGS + "nope"], "compute", "s1")
    await store.set_tags(ctx, "compute", "s1", [TAGS + "prod"])
    assert await store.tags_of(ctx, "compute", ["s1"]) == {"s1": [TAGS + "prod"]}
    await store.set_tags(ctx, "compute", "s1", [])
    assert await store.tags_of(ctx, "compute", ["s1"]) == {}
    await store.tag(ctx, [TAGS + "web"], "compute", "s1")
    await store.untag_entity(ctx, "compute", "s1")
    assert await store.entities_of(ctx, TAGS + "web") == []
    assert await store.entities_of(ctx, TAGS + "prod") == ["/storage/s2"]


async def test_collection_membership(store: MixinStore) -> None:
    ctx = make_ctx()
    await store.define(ctx, [tag("web")])
    mid = TAGS + "web"
    await store.add_members(ctx, mid, [("compute", "a"), ("compute", "b"), ("compute", "a")])
    await store.add_members(ctx, mid, [("storage", "c"), ("compute", "a")])
    assert await store.entities_of(ctx, mid) == ["/compute/a", "/compute/b", "/storage/c"]
    await store.replace_members(ctx, mid, [("compute", "b"), ("network", "d")])
    assert sorted(await store.entities_of(ctx, mid)) == ["/compute/b", "/network/d"]
    await store.remove_members(ctx, mid, [("compute", "b"), ("compute", "zzz")])
    assert await store.entities_of(ctx, mid) == ["/network/d"]
    await store.add_members(ctx, mid, [("compute", "e")])
    await store.remove_members(ctx, mid)
    assert await store.entities_of(ctx, mid) == []
    await store.add_members(ctx, mid, [("compute", "e")])
    await store.remove(ctx, [mid])  # deleting the mixin drops its tags
    await store.define(ctx, [tag("web")])
    assert await store.entities_of(ctx, mid) == []
    await store.add_members(ctx, mid, [("compute", "e")])
    other = make_ctx()
    await store.define(other, [tag("web")])
    await store.add_members(other, mid, [("compute", "e")])
    await store.forget("compute", ["e"], project_id=other.project_id)  # only the other project's tag
    assert await store.entities_of(other, mid) == []
    assert await store.entities_of(ctx, mid) == ["/compute/e"]
    await store.add_members(other, mid, [("compute", "e")])
    await store.forget("compute", ["e"])  # every project's
    assert await store.entities_of(ctx, mid) == [] and await store.entities_of(other, mid) == []


async def test_two_projects_never_see_each_others_mixins_or_tags(store: MixinStore) -> None:
    alice, bob = make_ctx(), make_ctx()
    await store.define(alice, [tag("web")])
    await store.tag(alice, [TAGS + "web"], "compute", "s1")
    assert await store.mixins(bob) == []
    assert await store.at(bob, "/tags/web/") is None
    assert await store.known(bob, [TAGS + "web"]) == []
    assert await store.tags_of(bob, "compute", ["s1"]) == {}
    for call in (store.get(bob, TAGS + "web"), store.members(bob, TAGS + "web"),
                 store.add_members(bob, TAGS + "web", [("compute", "s2")]),
                 store.remove_members(bob, TAGS + "web"), store.remove(bob, [TAGS + "web"]),
                 store.tag(bob, [TAGS + "web"], "compute", "s2"),
                 store.set_tags(bob, "compute", "s1", [TAGS + "web"])):
        with pytest.raises(errors.NotFound):
            await call
    # bob may define the same category and location: his own, independent of alice's
    await store.define(bob, [tag("web")])
    await store.tag(bob, [TAGS + "web"], "compute", "s1")
    await store.set_tags(bob, "compute", "s1", [])
    assert await store.tags_of(alice, "compute", ["s1"]) == {"s1": [TAGS + "web"]}
    await store.remove(bob, [TAGS + "web"])
    assert await store.entities_of(alice, TAGS + "web") == ["/compute/s1"]


async def test_an_unscoped_token_has_no_mixins(store: MixinStore) -> None:
    ctx = RequestContext(user_id="u", project_id=None)
    assert await store.mixins(ctx) == []
    with pytest.raises(errors.Forbidden, match="project"):
        await store.define(ctx, [tag("web")])


def test_normalize_location() -> None:
    assert normalize_location("/a/b") == "/a/b/"
    assert normalize_location("https://cloud.example:8774/occi/a/") == "/a/"
    assert normalize_location("/occi/a~b.c_d-e/") == "/a~b.c_d-e/"
    for bad in ("", "a/b", "/a/%2e%2e/", "/a b/", "http://host", "/a/#x", "/\x00/"):
        with pytest.raises(errors.Invalid):
            normalize_location(bad)
