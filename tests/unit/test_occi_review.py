"""Review of issue 12's /occi front door: what a failed or refused request leaves behind, and what
one project's request may do to another's data (in-process cloud, fake driver, real services)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _asgi_ctx import ctx_for, outside
from occi_cloud import image, occi_client, services

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi.api import make_app
from cumulo.web.http import PrefixDispatcher

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
TAGS = "http://example.com/review-tags#"
RES = "http://schemas.openstack.org/template/resource#"
JSON_H = {"Content-Type": "application/occi+json", "Accept": "application/occi+json"}

AsCtx = Callable[[RequestContext], httpx.AsyncClient]


async def _until(occi: httpx.AsyncClient, loc: str, attr: str, want: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := (await occi.get(loc, headers=JSON_H)).json()["attributes"].get(attr)) != want:
        assert loop.time() < deadline, f"{loc}: {attr} is {got!r}, not {want!r}"
        await asyncio.sleep(0.02)


async def _define(occi: httpx.AsyncClient, term: str, applies: list[str]) -> None:
    body = {"mixins": [{"term": term, "scheme": TAGS, "location": f"/review/{term}/", "applies": applies}]}
    r = await occi.post("/occi/-/", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 200, r.text


async def test_a_tag_that_does_not_apply_is_refused_before_the_entity_is_made(cloud: Any, as_ctx: AsCtx) -> None:
    p1 = ctx_for("review-tags")
    occi = occi_client(cloud, p1)
    await _define(occi, "computes", [INFRA + "compute"])
    body = {"kind": INFRA + "storage", "mixins": [TAGS + "computes"], "attributes": {"occi.storage.size": 1}}
    r = await occi.post("/occi/storage/", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 400, r.text
    assert "does not apply" in r.json()["error"]["message"]
    volumes = (await as_ctx(p1).get("/volume/v3/volumes")).json()["volumes"]
    assert volumes == []  # nothing made by a refused create


async def test_a_collection_delete_leaves_other_projects_tags_of_what_it_could_not_delete(
        cloud: Any, as_ctx: AsCtx) -> None:
    owner, other = ctx_for("review-owner"), ctx_for("review-other")
    admin = as_ctx(ctx_for("review-owner", "admin"))
    r = await admin.post("/networking/v2.0/networks", json={"network": {"name": "shared-net", "shared": True}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]["id"]
    mine = occi_client(cloud, owner)
    await _define(mine, "nets", [INFRA + "network"])
    r = await mine.post("/occi/review/nets/", headers={"X-OCCI-Location": f"/occi/network/{net}", "Accept": "text/uri-list"})
    assert r.status_code == 200, r.text

    # another project deletes its whole network collection (its own network goes): the shared
    # network is not its to delete, nor are its owner's tags of it
    r = await as_ctx(other).post("/networking/v2.0/networks", json={"network": {"name": "own"}})
    assert r.status_code == 201, r.text
    r = await occi_client(cloud, other).delete("/occi/network/", headers={"Accept": "text/plain"})
    assert r.status_code == 200, r.text
    assert (await as_ctx(other).get("/networking/v2.0/networks?name=own")).json()["networks"] == []
    r = await as_ctx(owner).get(f"/networking/v2.0/networks/{net}")
    assert r.status_code == 200, r.text  # still there
    r = await mine.get("/occi/review/nets/", headers={"Accept": "text/uri-list"})
    assert r.status_code == 200, r.text
    assert r.text.split() == [f"http://cumulo.test/occi/network/{net}"]  # and still tagged by its owner


async def test_a_refused_resize_leaves_the_compute_as_it_was(cloud: Any, as_ctx: AsCtx) -> None:
    p1 = ctx_for("review-resize")
    img = await image(as_ctx(p1))
    occi = occi_client(cloud, p1)
    body = {"kind": INFRA + "compute", "mixins": [f"http://schemas.openstack.org/template/os#{img}", RES + "42"],
            "attributes": {"occi.core.title": "before"}}
    r = await occi.post("/occi/compute/", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 201, r.text
    cid = r.headers["location"].rsplit("/", 1)[-1]
    loc = f"/occi/compute/{cid}"
    await _until(occi, loc, "occi.compute.state.message", "active")
    r = await occi.post(f"/occi/compute/{cid}?action=suspend", headers={"Accept": "text/plain"})
    assert r.status_code == 200, r.text
    await _until(occi, loc, "occi.compute.state.message", "suspended")
    # a rename with a resize the state refuses (suspended: Nova resizes only active or stopped servers)
    body = {"kind": INFRA + "compute", "mixins": [RES + "84"], "attributes": {"occi.core.title": "after"}}
    r = await occi.post(f"/occi/compute/{cid}", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 409, r.text
    got = (await occi.get(f"/occi/compute/{cid}", headers=JSON_H)).json()
    assert got["title"] == "before" and RES + "42" in got["mixins"]


async def test_a_refused_subnet_change_leaves_the_network_as_it_was(cloud: Any, as_ctx: AsCtx) -> None:
    occi = occi_client(cloud, ctx_for("review-net"))
    ipnetwork = "http://schemas.ogf.org/occi/infrastructure/network#ipnetwork"
    body = {"kind": INFRA + "network", "mixins": [ipnetwork],
            "attributes": {"occi.core.title": "before", "occi.network.address": "10.61.0.0/24"}}
    r = await occi.post("/occi/network/", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 201, r.text
    loc = "/occi/network/" + r.headers["location"].rsplit("/", 1)[-1]
    # a rename with a gateway outside the subnet (Neutron's 400)
    body = {"kind": INFRA + "network", "mixins": [ipnetwork],
            "attributes": {"occi.core.title": "after", "occi.network.gateway": "192.0.2.1"}}
    r = await occi.post(loc, content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 400, r.text
    got = (await occi.get(loc, headers=JSON_H)).json()
    assert got["title"] == "before" and got["attributes"]["occi.network.gateway"] == "10.61.0.1"


async def test_a_grow_over_quota_leaves_the_storage_as_it_was(cloud: Any, as_ctx: AsCtx) -> None:
    p1 = ctx_for("review-storage")
    admin = as_ctx(ctx_for("review-storage", "admin"))
    r = await admin.put("/volume/v3/review-storage/os-quota-sets/review-storage", json={"quota_set": {"gigabytes": 1}})
    assert r.status_code == 200, r.text
    occi = occi_client(cloud, p1)
    body = {"kind": INFRA + "storage", "attributes": {"occi.storage.size": 1, "occi.core.title": "before"}}
    r = await occi.post("/occi/storage/", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 201, r.text
    loc = "/occi/storage/" + r.headers["location"].rsplit("/", 1)[-1]
    await _until(occi, loc, "occi.storage.state.message", "available")
    body = {"kind": INFRA + "storage", "attributes": {"occi.storage.size": 2, "occi.core.title": "after"}}
    r = await occi.post(loc, content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 413, r.text
    got = (await occi.get(loc, headers=JSON_H)).json()
    assert got["title"] == "before" and got["attributes"]["occi.storage.size"] == 1


async def test_an_authorization_header_that_only_starts_like_basic_is_a_401(cloud: Any) -> None:
    app = PrefixDispatcher({"/occi": make_app(services(cloud))}, outside("/occi"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cumulo.test") as client:
        for value in ("Basicx dXNlcjpwdw==", "basic", "Basic\tdXNlcjpwdw==", "BASIC"):
            r = await client.get("/occi/-/", headers={"Authorization": value, "Accept": "text/plain"})
            assert r.status_code == 401, (value, r.status_code, r.text)
            assert r.headers["www-authenticate"].startswith(("Basic", "Keystone")), r.headers


async def test_a_refused_new_address_keeps_the_subnet(cloud: Any, as_ctx: AsCtx) -> None:
    p1 = ctx_for("review-subnet")
    occi = occi_client(cloud, p1)
    ipnetwork = "http://schemas.ogf.org/occi/infrastructure/network#ipnetwork"
    body = {"kind": INFRA + "network", "mixins": [ipnetwork], "attributes": {"occi.network.address": "10.70.0.0/24"}}
    r = await occi.post("/occi/network/", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 201, r.text
    net = r.headers["location"].rsplit("/", 1)[-1]
    before = (await as_ctx(p1).get(f"/networking/v2.0/networks/{net}")).json()["network"]["subnets"]
    # a new address with a gateway outside it: refused, and the subnet is the one it was (not re-made)
    body = {"kind": INFRA + "network", "mixins": [ipnetwork],
            "attributes": {"occi.network.address": "10.71.0.0/24", "occi.network.gateway": "10.70.0.1"}}
    r = await occi.post(f"/occi/network/{net}", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 400, r.text
    assert "10.70.0.1" in r.json()["error"]["message"]
    body["attributes"] = {"occi.network.address": "10.72.0.0/31"}  # too small for Neutron
    r = await occi.post(f"/occi/network/{net}", content=json.dumps(body).encode(), headers=JSON_H)
    assert r.status_code == 400, r.text
    after = (await as_ctx(p1).get(f"/networking/v2.0/networks/{net}")).json()["network"]["subnets"]
    assert after == before


def test_a_long_run_of_digits_is_parsed_in_linear_time() -> None:
    # A value of 200,000 digits then a letter (a text/plain body may hold 1 MiB): the number pattern
    # backtracked quadratically (minutes of the event loop for one request); now it is a bare token
    # at once (which validation refuses where a number is wanted), and a run of digits a number.
    from cumulo.occi import categories, validate
    from cumulo.occi.render import text_syntax

    junk = "1" * 200_000 + "x"
    assert text_syntax.parse_scalar(junk, "X-OCCI-Attribute: occi.storage.size=...") == junk
    with pytest.raises(errors.Invalid):
        validate.coerce(categories.attributes_of(categories.STORAGE.id)["occi.storage.size"], junk)
    assert text_syntax.parse_scalar("1" * 30, "") == int("1" * 30)
    assert text_syntax.parse_scalar("-1.5e3", "") == -1500.0
    assert text_syntax.parse_scalar("1.", "") == 1.0
    assert text_syntax.parse_scalar(".5", "") == 0.5


def test_a_body_of_folded_lines_is_refused_as_one_long_value() -> None:
    # 1 MiB of obs-fold continuation lines: one value longer than the bound, a 400. (Joining them
    # one by one copied the growing line each time: 7.8 s of the event loop; joined once: 0.06 s.)
    from cumulo.occi.render import text_syntax

    body = (b"X-OCCI-Attribute: a=1\n" + b" b\n" * 400_000)[:1 << 20]
    with pytest.raises(errors.Invalid, match="longer than"):
        text_syntax.fields_from_body(body)
    assert text_syntax.fields_from_body(b"X-OCCI-Attribute: a=\n  1\n") == [("x-occi-attribute", "a= 1")]


def test_related_categories_follow_parents_and_depends_transitively() -> None:
    # related() indexes what is below each category once (it scanned every category per category
    # reached: 3,000 os_tpl images took 1.0 s of the event loop per filtered query; now 0.004 s)
    from cumulo.occi import categories
    from cumulo.occi.api_common import related
    from cumulo.occi.model import Mixin

    mine = Mixin(scheme=TAGS, term="mine", depends=(categories.OS_TPL.id,))
    below = Mixin(scheme=TAGS, term="below", depends=(mine.id,))
    cats = [*categories.ALL, mine, below, Mixin(scheme=TAGS, term="other")]
    assert {c.id for c in related([categories.OS_TPL.id], cats)} == {categories.OS_TPL.id, mine.id, below.id}
    got = {c.id for c in related([categories.RESOURCE.id], cats)}
    assert {categories.COMPUTE.id, categories.STOP.id, categories.UP.id} <= got
    assert categories.LINK.id not in got and mine.id not in got


async def test_an_update_naming_another_entity_id_is_refused(cloud: Any) -> None:
    occi = occi_client(cloud, ctx_for("review-ids"))
    made = []
    for title in ("a", "b"):
        body = {"kind": INFRA + "network", "attributes": {"occi.core.title": title}}
        r = await occi.post("/occi/network/", content=json.dumps(body).encode(), headers=JSON_H)
        assert r.status_code == 201, r.text
        made.append(r.headers["location"].rsplit("/", 1)[-1])
    # b's rendering PUT at a's location: a 400 naming the id, and a keeps its title
    got = (await occi.get(f"/occi/network/{made[1]}", headers=JSON_H)).json()
    r = await occi.put(f"/occi/network/{made[0]}", content=json.dumps(got).encode(), headers=JSON_H)
    assert r.status_code == 400 and "occi.core.id" in r.text, r.text
    assert (await occi.get(f"/occi/network/{made[0]}", headers=JSON_H)).json()["title"] == "a"
    # its own id repeated is fine
    got = (await occi.get(f"/occi/network/{made[0]}", headers=JSON_H)).json()
    r = await occi.put(f"/occi/network/{made[0]}", content=json.dumps(got).encode(), headers=JSON_H)
    assert r.status_code == 200, r.text


async def test_an_admin_reaches_only_its_own_projects_storage_here(cloud: Any, as_ctx: AsCtx) -> None:
    # as every other kind through /occi (compute, network, networkinterface): another project's
    # volume is not in an admin's listing, nor reachable by its id
    owner = ctx_for("review-vol-owner")
    r = await as_ctx(owner).post("/volume/v3/review-vol-owner/volumes", json={"volume": {"size": 1, "name": "theirs"}})
    assert r.status_code == 202, r.text
    vid = r.json()["volume"]["id"]
    admin = occi_client(cloud, ctx_for("review-vol-admin", "admin"))
    listed = await admin.get("/occi/storage/", headers={"Accept": "text/uri-list"})
    assert vid not in listed.text
    assert (await admin.get(f"/occi/storage/{vid}", headers=JSON_H)).status_code == 404
    assert (await admin.post(f"/occi/storage/{vid}?action=snapshot", headers=JSON_H)).status_code == 404
    assert (await admin.delete(f"/occi/storage/{vid}", headers=JSON_H)).status_code == 404
    r = await as_ctx(owner).get(f"/volume/v3/review-vol-owner/volumes/{vid}")
    assert r.status_code == 200 and r.json()["volume"]["status"] != "deleting", r.text
