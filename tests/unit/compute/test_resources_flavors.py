"""Flavors: listing, shapes by microversion, management, extra specs and access, visibility."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from resources_app import Harness, check, ctx, make_harness, nova

from cumulo.compute.service import flavors as service
from cumulo.errors import Invalid, NotFound

ADMIN = ctx("admin-proj", "admin")
MEMBER = ctx("proj-a", "member")
OTHER = ctx("proj-b", "member")
READER = ctx("proj-a", "reader")
VERSIONS = ["2.1", "2.55", "2.61", "2.75", "2.79"]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path) as h:
        yield h


def new_flavor(name: str = "f1", **kw: object) -> dict[str, object]:
    return {"flavor": {"name": name, "ram": 256, "vcpus": 1, "disk": 1, **kw}}


async def test_default_flavors_are_idempotent(harness: Harness) -> None:
    await service.ensure_default_flavors(harness.db)
    r = await harness.call(READER, "GET", "/flavors/detail")
    assert r.status_code == 200
    by_name = {f["name"]: f for f in r.json()["flavors"]}
    assert len(r.json()["flavors"]) == 7
    assert by_name["m1.nano"]["id"] == "42" and by_name["m1.nano"]["ram"] == 64
    assert by_name["m1.xlarge"]["vcpus"] == 8 and by_name["m1.xlarge"]["disk"] == 160
    # Nova sorts by flavorid as text.
    assert [f["id"] for f in r.json()["flavors"]] == ["1", "2", "3", "4", "42", "5", "84"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_list_and_show_shapes(harness: Harness, version: str) -> None:
    brief = await harness.call(READER, "GET", "/flavors", version)
    check(brief.json(), nova.schema("flavors", version), f"GET /flavors {version}")
    detail = await harness.call(READER, "GET", "/flavors/detail", version)
    check(detail.json(), nova.schema("flavors_detail", version), f"GET /flavors/detail {version}")
    show = await harness.call(READER, "GET", "/flavors/1", version)
    check(show.json(), nova.schema("flavor", version), f"GET /flavors/1 {version}")
    links = {x["rel"]: x["href"] for x in show.json()["flavor"]["links"]}
    assert links == {"self": "http://cumulo.test/v2.1/flavors/1", "bookmark": "http://cumulo.test/flavors/1"}


async def test_swap_rendering_changes_at_275(harness: Harness) -> None:
    old = (await harness.call(READER, "GET", "/flavors/1", "2.74")).json()["flavor"]
    new = (await harness.call(READER, "GET", "/flavors/1", "2.75")).json()["flavor"]
    assert old["swap"] == "" and new["swap"] == 0
    assert "extra_specs" in new and "extra_specs" not in (await harness.call(READER, "GET", "/flavors/1", "2.60")).json()["flavor"]


async def test_filters_sorting_and_pagination(harness: Harness) -> None:
    r = await harness.call(READER, "GET", "/flavors/detail?minRam=4096&minDisk=50")
    assert {f["name"] for f in r.json()["flavors"]} == {"m1.large", "m1.xlarge"}
    r = await harness.call(READER, "GET", "/flavors?sort_key=memory_mb&sort_dir=desc")
    assert [f["name"] for f in r.json()["flavors"]][:2] == ["m1.xlarge", "m1.large"]
    page1 = (await harness.call(READER, "GET", "/flavors?limit=3")).json()
    assert [f["id"] for f in page1["flavors"]] == ["1", "2", "3"]
    nxt = page1["flavors_links"][0]
    assert nxt["rel"] == "next" and nxt["href"] == "http://cumulo.test/v2.1/flavors?limit=3&marker=3"
    page2 = (await harness.call(READER, "GET", "/flavors?limit=3&marker=3")).json()
    assert [f["id"] for f in page2["flavors"]] == ["4", "42", "5"]
    page3 = (await harness.call(READER, "GET", "/flavors?limit=3&marker=5")).json()
    assert [f["id"] for f in page3["flavors"]] == ["84"] and "flavors_links" not in page3
    for bad in ("marker=nope", "limit=-1", "limit=x", "minRam=abc", "sort_key=bogus", "sort_dir=up"):
        r = await harness.call(READER, "GET", f"/flavors?{bad}")
        assert r.status_code == 400, bad
        assert set(r.json()) == {"badRequest"}
    r = await harness.call(ADMIN, "GET", "/flavors?is_public=maybe")
    assert r.status_code == 400 and "Invalid is_public filter" in r.json()["badRequest"]["message"]
    # Unknown parameters are ignored before 2.75 and rejected from it.
    assert (await harness.call(READER, "GET", "/flavors?foo=1", "2.74")).status_code == 200
    assert (await harness.call(READER, "GET", "/flavors?foo=1", "2.75")).status_code == 400


@pytest.mark.parametrize("version", ["2.1", "2.55", "2.61", "2.79"])
async def test_create_show_delete(harness: Harness, version: str) -> None:
    body = new_flavor("tiny-x", id="custom.1", swap=128, rxtx_factor=2.0, **{"OS-FLV-EXT-DATA:ephemeral": 5})
    if version >= "2.55":
        body["flavor"]["description"] = "small one"  # type: ignore[index]
    r = await harness.call(ADMIN, "POST", "/flavors", version, json=body)
    assert r.status_code == 200, r.text
    check(r.json(), nova.schema("flavor", version, admin=True), f"POST /flavors {version}")
    f = r.json()["flavor"]
    assert (f["id"], f["swap"], f["rxtx_factor"], f["OS-FLV-EXT-DATA:ephemeral"]) == ("custom.1", 128, 2.0, 5)
    assert f["os-flavor-access:is_public"] is True
    assert (await harness.call(MEMBER, "GET", "/flavors/custom.1", version)).status_code == 200
    assert (await harness.call(ADMIN, "DELETE", "/flavors/custom.1", version)).status_code == 202
    gone = await harness.call(MEMBER, "GET", "/flavors/custom.1", version)
    assert gone.status_code == 404 and gone.json()["itemNotFound"]["message"] == "Flavor custom.1 could not be found."


async def test_create_generates_uuid_and_rejects_duplicates(harness: Harness) -> None:
    r = await harness.call(ADMIN, "POST", "/flavors", json={"flavor": {"name": "auto", "ram": "512", "vcpus": "2", "disk": "0", "id": None}})
    assert r.status_code == 200
    fid = r.json()["flavor"]["id"]
    assert len(fid) == 36 and r.json()["flavor"]["ram"] == 512
    dup_name = await harness.call(ADMIN, "POST", "/flavors", json=new_flavor("auto"))
    assert dup_name.status_code == 409 and "Flavor with name auto already exists." in dup_name.json()["conflictingRequest"]["message"]
    dup_id = await harness.call(ADMIN, "POST", "/flavors", json=new_flavor("other", id="1"))
    assert dup_id.status_code == 409 and "ID 1 already exists" in dup_id.json()["conflictingRequest"]["message"]


@pytest.mark.parametrize(
    "flavor",
    [
        {"name": "x" * 256, "ram": 1, "vcpus": 1, "disk": 0},
        {"name": " lead", "ram": 1, "vcpus": 1, "disk": 0},
        {"name": "ok", "ram": 0, "vcpus": 1, "disk": 0},
        {"name": "ok", "ram": 1, "vcpus": "0", "disk": 0},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": -1},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "swap": -5},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "rxtx_factor": 0},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "rxtx_factor": "0"},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "OS-FLV-EXT-DATA:ephemeral": -1},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "id": "bad/id!"},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "bogus": 1},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "description": "only from 2.55"},
        {"name": "ok", "ram": 1, "vcpus": 1},
        {"name": "ok", "ram": "lots", "vcpus": 1, "disk": 0},
        {"name": "ok", "ram": 1, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": "perhaps"},
    ],
)
async def test_create_rejects_bad_input(harness: Harness, flavor: dict[str, object]) -> None:
    r = await harness.call(ADMIN, "POST", "/flavors", "2.1", json={"flavor": flavor})
    assert r.status_code == 400, r.text
    assert r.json()["badRequest"]["code"] == 400


async def test_malformed_json_is_400(harness: Harness) -> None:
    r = await harness.call(ADMIN, "POST", "/flavors", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "badRequest" in r.json()


async def test_management_is_admin_only(harness: Harness) -> None:
    assert (await harness.call(MEMBER, "POST", "/flavors", json=new_flavor())).status_code == 403
    assert (await harness.call(MEMBER, "DELETE", "/flavors/1")).status_code == 403
    r = await harness.call(MEMBER, "PUT", "/flavors/1", "2.55", json={"flavor": {"description": "x"}})
    assert r.status_code == 403 and set(r.json()) == {"forbidden"}
    assert (await harness.call(ctx("proj-a"), "GET", "/flavors/1")).status_code == 200
    nobody = ctx("proj-a", "none-role")
    assert (await harness.call(nobody, "GET", "/flavors")).status_code == 403


async def test_update_description_from_255(harness: Harness) -> None:
    assert (await harness.call(ADMIN, "PUT", "/flavors/1", "2.54", json={"flavor": {"description": "d"}})).status_code == 404
    r = await harness.call(ADMIN, "PUT", "/flavors/1", "2.79", json={"flavor": {"description": "tiny"}})
    assert r.status_code == 200
    check(r.json(), nova.schema("flavor", "2.79", admin=True))
    assert r.json()["flavor"]["description"] == "tiny"
    assert (await harness.call(ADMIN, "PUT", "/flavors/1", "2.79", json={"flavor": {}})).status_code == 400
    assert (await harness.call(ADMIN, "PUT", "/flavors/nope", "2.79", json={"flavor": {"description": None}})).status_code == 404


async def test_private_flavor_access(harness: Harness) -> None:
    r = await harness.call(ADMIN, "POST", "/flavors", json=new_flavor("secret", id="p1", **{"os-flavor-access:is_public": False}))
    assert r.status_code == 200 and r.json()["flavor"]["os-flavor-access:is_public"] is False
    # Invisible to projects without a grant, in lists and by id.
    assert (await harness.call(MEMBER, "GET", "/flavors/p1")).status_code == 404
    names = {f["name"] for f in (await harness.call(MEMBER, "GET", "/flavors")).json()["flavors"]}
    assert "secret" not in names
    # Admins see all with is_public=None, only private ones with false.
    admin_all = {f["name"] for f in (await harness.call(ADMIN, "GET", "/flavors?is_public=None")).json()["flavors"]}
    admin_private = {f["name"] for f in (await harness.call(ADMIN, "GET", "/flavors?is_public=false")).json()["flavors"]}
    assert "secret" in admin_all and admin_private == {"secret"}

    add = await harness.call(ADMIN, "POST", "/flavors/p1/action", json={"addTenantAccess": {"tenant": "proj-a"}})
    assert add.status_code == 200
    assert add.json() == {"flavor_access": [{"flavor_id": "p1", "tenant_id": "proj-a"}]}
    assert (await harness.call(MEMBER, "GET", "/flavors/p1")).status_code == 200
    assert (await harness.call(OTHER, "GET", "/flavors/p1")).status_code == 404
    listed = await harness.call(ADMIN, "GET", "/flavors/p1/os-flavor-access")
    assert listed.json()["flavor_access"] == [{"flavor_id": "p1", "tenant_id": "proj-a"}]
    again = await harness.call(ADMIN, "POST", "/flavors/p1/action", json={"addTenantAccess": {"tenant": "proj-a"}})
    assert again.status_code == 409
    bad_project = await harness.call(ADMIN, "POST", "/flavors/p1/action", json={"addTenantAccess": {"tenant": "ghost"}})
    assert bad_project.status_code == 400 and "not a valid project" in bad_project.json()["badRequest"]["message"]
    # Public flavors have no access list, and (2.7+) refuse grants.
    assert (await harness.call(ADMIN, "GET", "/flavors/1/os-flavor-access")).status_code == 404
    pub = await harness.call(ADMIN, "POST", "/flavors/1/action", "2.7", json={"addTenantAccess": {"tenant": "proj-a"}})
    assert pub.status_code == 409
    assert (await harness.call(MEMBER, "GET", "/flavors/p1/os-flavor-access")).status_code == 403
    assert (await harness.call(MEMBER, "POST", "/flavors/p1/action", json={"addTenantAccess": {"tenant": "proj-a"}})).status_code == 403

    rm = await harness.call(ADMIN, "POST", "/flavors/p1/action", json={"removeTenantAccess": {"tenant": "proj-a"}})
    assert rm.status_code == 200 and rm.json() == {"flavor_access": []}
    assert (await harness.call(MEMBER, "GET", "/flavors/p1")).status_code == 404
    assert (await harness.call(ADMIN, "POST", "/flavors/p1/action", json={"removeTenantAccess": {"tenant": "proj-a"}})).status_code == 404
    assert (await harness.call(ADMIN, "POST", "/flavors/p1/action", json={"frobnicate": {}})).status_code == 400
    assert (await harness.call(ADMIN, "POST", "/flavors/p1/action", json={"addTenantAccess": {}})).status_code == 400


async def test_extra_specs(harness: Harness) -> None:
    r = await harness.call(ADMIN, "POST", "/flavors/1/os-extra_specs", json={"extra_specs": {"hw:cpu_policy": "dedicated", "quota:cpu": 5}})
    assert r.status_code == 200 and r.json() == {"extra_specs": {"hw:cpu_policy": "dedicated", "quota:cpu": 5}}
    listed = await harness.call(READER, "GET", "/flavors/1/os-extra_specs")
    assert listed.json() == {"extra_specs": {"hw:cpu_policy": "dedicated", "quota:cpu": "5"}}
    one = await harness.call(READER, "GET", "/flavors/1/os-extra_specs/quota:cpu")
    assert one.json() == {"quota:cpu": "5"}
    upd = await harness.call(ADMIN, "PUT", "/flavors/1/os-extra_specs/quota:cpu", json={"quota:cpu": "7"})
    assert upd.status_code == 200 and upd.json() == {"quota:cpu": "7"}
    mismatch = await harness.call(ADMIN, "PUT", "/flavors/1/os-extra_specs/quota:cpu", json={"other": "7"})
    assert mismatch.status_code == 400 and mismatch.json()["badRequest"]["message"] == "Request body and URI mismatch"
    two = await harness.call(ADMIN, "PUT", "/flavors/1/os-extra_specs/a", json={"a": "1", "b": "2"})
    assert two.status_code == 400
    detail = (await harness.call(READER, "GET", "/flavors/1", "2.61")).json()["flavor"]
    assert detail["extra_specs"] == {"hw:cpu_policy": "dedicated", "quota:cpu": "7"}
    dele = await harness.call(ADMIN, "DELETE", "/flavors/1/os-extra_specs/quota:cpu")
    assert dele.status_code == 200 and dele.content == b""
    missing = await harness.call(READER, "GET", "/flavors/1/os-extra_specs/quota:cpu")
    assert missing.status_code == 404 and "has no extra specs with key quota:cpu" in missing.json()["itemNotFound"]["message"]
    assert (await harness.call(ADMIN, "DELETE", "/flavors/1/os-extra_specs/quota:cpu")).status_code == 404
    assert (await harness.call(MEMBER, "POST", "/flavors/1/os-extra_specs", json={"extra_specs": {"a": "b"}})).status_code == 403
    assert (await harness.call(ADMIN, "POST", "/flavors/1/os-extra_specs", json={"extra_specs": {"bad/key": "b"}})).status_code == 400
    assert (await harness.call(ADMIN, "POST", "/flavors/1/os-extra_specs", json={"extra_specs": {"k": "v" * 256}})).status_code == 400
    assert (await harness.call(ADMIN, "POST", "/flavors/nope/os-extra_specs", json={"extra_specs": {"a": "b"}})).status_code == 404


async def test_get_flavor_for(harness: Harness) -> None:
    async with harness.db.write() as conn:
        await service.create(conn, {"flavorid": "priv", "name": "priv", "memory_mb": 1, "vcpus": 1, "root_gb": 0, "is_public": False})
    async with harness.db.read() as conn:
        snap = await service.get_flavor_for(conn, MEMBER, "2")
        assert snap["name"] == "m1.small" and snap["memory_mb"] == 2048 and snap["root_gb"] == 20
        assert set(snap) == set(service.SNAPSHOT_KEYS)
        by_url = await service.get_flavor_for(conn, MEMBER, "http://cumulo.test/compute/flavors/42")
        assert by_url["flavorid"] == "42"
        with pytest.raises(NotFound):
            await service.get_flavor_for(conn, MEMBER, "priv")
        assert (await service.get_flavor_for(conn, ADMIN, "priv"))["name"] == "priv"
        with pytest.raises(NotFound):
            await service.get_flavor_for(conn, MEMBER, "nope")
        with pytest.raises(Invalid):
            await service.get_flavor_for(conn, MEMBER, "")
