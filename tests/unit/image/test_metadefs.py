"""The metadata definitions catalog (/v2/metadefs, /v2/schemas/metadefs): shapes as the Image API
v2 reference shows them, Glance's faults for bad input, admin-only writes and visibility."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cumulo.context import RequestContext

NS = "/v2/metadefs/namespaces"
Client = Callable[[RequestContext], httpx.AsyncClient]

SCHEMA_NAMES = {
    "namespace": "namespace", "namespaces": "namespaces", "resource_type": "resource_type_association",
    "resource_types": "resource_type_associations", "object": "object", "objects": "objects",
    "property": "property", "properties": "properties", "tag": "tag", "tags": "tags",
}


def _fault(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"message", "code", "title"}
    assert body["code"].startswith(str(status))
    return body


@pytest.fixture
def admin(client: Client, ctx: Callable[..., RequestContext]) -> httpx.AsyncClient:
    return client(ctx("admin-project", "admin"))


@pytest.fixture
def member(client: Client, ctx: Callable[..., RequestContext]) -> httpx.AsyncClient:
    return client(ctx("p1"))


async def _namespace(admin: httpx.AsyncClient, name: str = "Cumulo::Test", **extra: Any) -> dict[str, Any]:
    r = await admin.post(NS, json={"namespace": name, **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.mark.parametrize(("kind", "name"), sorted(SCHEMA_NAMES.items()))
async def test_every_metadef_schema_is_served_by_name(member: httpx.AsyncClient, kind: str, name: str) -> None:
    r = await member.get(f"/v2/schemas/metadefs/{kind}")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == name


async def test_unknown_metadef_schema_is_a_glance_404(member: httpx.AsyncClient) -> None:
    _fault(await member.get("/v2/schemas/metadefs/nope"), 404)


async def test_builtin_resource_types_are_listed(member: httpx.AsyncClient) -> None:
    r = await member.get("/v2/metadefs/resource_types")
    assert r.status_code == 200
    names = [t["name"] for t in r.json()["resource_types"]]
    assert names[0] == "OS::Glance::Image"
    assert {"OS::Nova::Flavor", "OS::Nova::Server", "OS::Cinder::Volume", "OS::Nova::Aggregate"} <= set(names)
    assert set(r.json()["resource_types"][0]) == {"name", "created_at", "updated_at"}


async def test_namespace_lifecycle_with_protection(admin: httpx.AsyncClient) -> None:
    created = await _namespace(
        admin, "Cumulo::Life", visibility="public", description="d", display_name="Life", protected=True,
        resource_type_associations=[{"name": "OS::Glance::Image", "prefix": "hw_"}],
    )
    assert created["namespace"] == "Cumulo::Life"
    assert created["self"] == f"{NS}/Cumulo::Life"
    assert created["schema"] == "/v2/schemas/metadefs/namespace"
    assert created["owner"] == "admin-project" and created["protected"] is True
    assert [a["name"] for a in created["resource_type_associations"]] == ["OS::Glance::Image"]
    listed = (await admin.get(NS)).json()
    assert listed["schema"] == "/v2/schemas/metadefs/namespaces" and listed["first"] == NS
    assert "Cumulo::Life" in [n["namespace"] for n in listed["namespaces"]]
    _fault(await admin.delete(f"{NS}/Cumulo::Life"), 403)
    r = await admin.put(f"{NS}/Cumulo::Life", json={"namespace": "Cumulo::Life", "visibility": "private",
                                                      "protected": False, "display_name": "Life"})
    assert r.status_code == 200, r.text
    assert r.json()["visibility"] == "private" and r.json()["protected"] is False
    assert "description" not in r.json()  # PUT replaces: an omitted attribute is cleared
    assert (await admin.delete(f"{NS}/Cumulo::Life")).status_code == 204
    _fault(await admin.get(f"{NS}/Cumulo::Life"), 404)


async def test_duplicate_namespace_is_409(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::Dup")
    _fault(await admin.post(NS, json={"namespace": "Cumulo::Dup"}), 409)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"namespace": ""}, 400),
        ({"namespace": "a/b"}, 400),
        ({"namespace": "x" * 81}, 400),
        ({"namespace": "ok", "visibility": "shared"}, 400),
        ({"namespace": "ok", "protected": "yes"}, 400),
        ({"namespace": "ok", "bogus": 1}, 400),
        ({"namespace": "ok", "created_at": "2020-01-01T00:00:00Z"}, 403),
        ({"namespace": "ok", "properties": {"p": {"type": "string"}}}, 400),  # a property needs a title
        (["namespace"], 400),
    ],
)
async def test_bad_namespace_bodies_are_glance_4xx(admin: httpx.AsyncClient, body: Any, status: int) -> None:
    _fault(await admin.post(NS, json=body), status)


async def test_writes_are_admin_only(member: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    _fault(await member.post(NS, json={"namespace": "Cumulo::Mine"}), 403)
    await _namespace(admin, "Cumulo::Pub", visibility="public")
    _fault(await member.put(f"{NS}/Cumulo::Pub", json={"namespace": "Cumulo::Pub"}), 403)
    _fault(await member.delete(f"{NS}/Cumulo::Pub"), 403)
    _fault(await member.post(f"{NS}/Cumulo::Pub/objects", json={"name": "o"}), 403)
    _fault(await member.post(f"{NS}/Cumulo::Pub/tags/t"), 403)
    _fault(await member.post(f"{NS}/Cumulo::Pub/resource_types", json={"name": "OS::Nova::Flavor"}), 403)


async def test_private_namespaces_are_hidden_from_other_projects(
    client: Client, ctx: Callable[..., RequestContext], admin: httpx.AsyncClient, member: httpx.AsyncClient
) -> None:
    await _namespace(admin, "Cumulo::Public", visibility="public")
    await _namespace(admin, "Cumulo::Secret")  # private by default
    await _namespace(admin, "Cumulo::P1", owner="p1")
    await admin.post(f"{NS}/Cumulo::Secret/tags/t")
    names = {n["namespace"] for n in (await member.get(NS)).json()["namespaces"]}
    assert names == {"Cumulo::Public", "Cumulo::P1"}
    _fault(await member.get(f"{NS}/Cumulo::Secret"), 404)
    _fault(await member.get(f"{NS}/Cumulo::Secret/tags"), 404)
    assert (await member.get(f"{NS}/Cumulo::P1")).status_code == 200
    reader = client(ctx("p2", "reader"))
    assert {n["namespace"] for n in (await reader.get(NS)).json()["namespaces"]} == {"Cumulo::Public"}


async def test_list_filters_and_pages(admin: httpx.AsyncClient) -> None:
    for i in range(3):
        await _namespace(admin, f"Cumulo::Page{i}", visibility="public" if i else "private")
    await admin.post(f"{NS}/Cumulo::Page2/resource_types", json={"name": "OS::Nova::Flavor"})
    r = await admin.get(NS, params={"limit": 2, "sort_key": "namespace", "sort_dir": "asc"})
    body = r.json()
    assert [n["namespace"] for n in body["namespaces"]] == ["Cumulo::Page0", "Cumulo::Page1"]
    assert "marker=Cumulo%3A%3APage1" in body["next"]
    r = await admin.get(NS, params={"limit": 2, "sort_key": "namespace", "sort_dir": "asc", "marker": "Cumulo::Page1"})
    assert [n["namespace"] for n in r.json()["namespaces"]] == ["Cumulo::Page2"] and "next" not in r.json()
    r = await admin.get(NS, params={"visibility": "private"})
    assert [n["namespace"] for n in r.json()["namespaces"]] == ["Cumulo::Page0"]
    r = await admin.get(NS, params={"resource_types": "OS::Nova::Flavor,OS::Other"})
    assert [n["namespace"] for n in r.json()["namespaces"]] == ["Cumulo::Page2"]
    for bad in ({"limit": "x"}, {"limit": "-1"}, {"sort_key": "owner"}, {"sort_dir": "up"}, {"visibility": "all"}):
        _fault(await admin.get(NS, params=bad), 400)
    _fault(await admin.get(NS, params={"marker": "Cumulo::Nope"}), 404)


async def test_objects_crud(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::Obj")
    base = f"{NS}/Cumulo::Obj/objects"
    body = {"name": "CPU Limits", "description": "d", "required": ["quota:cpu_period"],
            "properties": {"quota:cpu_period": {"title": "Period", "type": "integer", "minimum": 1000}}}
    r = await admin.post(base, json=body)
    assert r.status_code == 201, r.text
    obj = r.json()
    assert set(obj) == {"name", "description", "required", "properties", "created_at", "updated_at", "schema", "self"}
    assert obj["self"] == f"{base}/CPU Limits" and obj["schema"] == "/v2/schemas/metadefs/object"
    _fault(await admin.post(base, json={"name": "CPU Limits"}), 409)
    _fault(await admin.post(base, json={"name": "x", "properties": {"p": {"title": "t", "type": "float"}}}), 400)
    listed = (await admin.get(base)).json()
    assert listed["schema"] == "/v2/schemas/metadefs/objects" and [o["name"] for o in listed["objects"]] == ["CPU Limits"]
    r = await admin.put(f"{base}/CPU Limits", json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed" and r.json()["required"] == []
    _fault(await admin.get(f"{base}/CPU Limits"), 404)
    assert (await admin.get(f"{base}/Renamed")).json()["name"] == "Renamed"
    shown = (await admin.get(f"{NS}/Cumulo::Obj")).json()
    assert shown["objects"][0]["name"] == "Renamed"
    assert (await admin.delete(f"{base}/Renamed")).status_code == 204
    _fault(await admin.delete(f"{base}/Renamed"), 404)
    await admin.post(base, json={"name": "a"})
    assert (await admin.delete(base)).status_code == 204
    assert (await admin.get(base)).json()["objects"] == []


async def test_properties_crud_and_prefix(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::Prop")
    base = f"{NS}/Cumulo::Prop/properties"
    enum = ["qemu", "kvm"]
    r = await admin.post(base, json={"name": "hypervisor_type", "title": "Hypervisor", "type": "string", "enum": enum})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "hypervisor_type", "title": "Hypervisor", "type": "string", "enum": enum}
    _fault(await admin.post(base, json={"name": "hypervisor_type", "title": "t", "type": "string"}), 409)
    _fault(await admin.post(base, json={"name": "p", "type": "string"}), 400)  # no title
    listed = (await admin.get(base)).json()
    assert listed == {"properties": {"hypervisor_type": {"title": "Hypervisor", "type": "string", "enum": enum}}}
    r = await admin.put(f"{base}/hypervisor_type", json={"name": "hypervisor_type", "title": "New", "type": "string"})
    assert r.status_code == 200 and r.json() == {"name": "hypervisor_type", "title": "New", "type": "string"}
    await admin.post(f"{NS}/Cumulo::Prop/resource_types", json={"name": "OS::Glance::Image", "prefix": "hw_"})
    shown = (await admin.get(f"{NS}/Cumulo::Prop", params={"resource_type": "OS::Glance::Image"})).json()
    assert list(shown["properties"]) == ["hw_hypervisor_type"]
    r = await admin.get(f"{base}/hw_hypervisor_type", params={"resource_type": "OS::Glance::Image"})
    assert r.status_code == 200 and r.json()["name"] == "hypervisor_type"
    assert (await admin.delete(f"{base}/hypervisor_type")).status_code == 204
    _fault(await admin.get(f"{base}/hypervisor_type"), 404)


async def test_tags_single_and_bulk(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::Tags")
    base = f"{NS}/Cumulo::Tags/tags"
    r = await admin.post(base, json={"tags": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
    assert r.status_code == 201 and r.json() == {"tags": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    listed = (await admin.get(base)).json()["tags"]
    assert [t["name"] for t in listed] == ["a", "b", "c"] and set(listed[0]) == {"name", "created_at", "updated_at"}
    await admin.post(base, json={"tags": [{"name": "d"}]})  # replaces
    assert [t["name"] for t in (await admin.get(base)).json()["tags"]] == ["d"]
    await admin.post(base, json={"tags": [{"name": "e"}]}, headers={"X-Openstack-Append": "True"})
    assert [t["name"] for t in (await admin.get(base)).json()["tags"]] == ["d", "e"]
    _fault(await admin.post(base, json={"tags": [{"name": "d"}]}, headers={"X-Openstack-Append": "True"}), 409)
    _fault(await admin.post(base, json={"tags": [{"name": "x"}, {"name": "x"}]}), 409)
    _fault(await admin.post(base, json={"tags": "x"}), 400)
    r = await admin.post(f"{base}/single")
    assert r.status_code == 201 and r.json()["name"] == "single"
    _fault(await admin.post(f"{base}/single"), 409)
    r = await admin.put(f"{base}/single", json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert (await admin.get(f"{base}/renamed")).status_code == 200
    _fault(await admin.put(f"{base}/renamed", json={"name": "d"}), 409)
    assert (await admin.delete(f"{base}/renamed")).status_code == 204
    assert (await admin.delete(base)).status_code == 204
    assert (await admin.get(base)).json() == {"tags": []}


async def test_resource_type_associations(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::RT")
    base = f"{NS}/Cumulo::RT/resource_types"
    r = await admin.post(base, json={"name": "OS::Nova::Flavor", "prefix": "hw:", "properties_target": "image"})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"name", "prefix", "properties_target", "created_at", "updated_at"}
    _fault(await admin.post(base, json={"name": "OS::Nova::Flavor"}), 409)
    _fault(await admin.post(base, json={"prefix": "x"}), 400)
    r = await admin.post(base, json={"name": "My::New::Type"})  # unknown types are created, as in Glance
    assert r.status_code == 201
    types = [t["name"] for t in (await admin.get("/v2/metadefs/resource_types")).json()["resource_types"]]
    assert "My::New::Type" in types
    listed = (await admin.get(base)).json()["resource_type_associations"]
    assert sorted(a["name"] for a in listed) == ["My::New::Type", "OS::Nova::Flavor"]
    assert (await admin.delete(f"{base}/OS::Nova::Flavor")).status_code == 204
    _fault(await admin.delete(f"{base}/OS::Nova::Flavor"), 404)
    _fault(await admin.delete(f"{base}/No::Such"), 404)


async def test_protected_namespace_keeps_its_contents(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::Locked", protected=True, tags=[{"name": "t"}],
                     objects=[{"name": "o"}], properties={"p": {"title": "P", "type": "string"}})
    base = f"{NS}/Cumulo::Locked"
    shown = (await admin.get(base)).json()
    assert shown["tags"] == [{"name": "t"}] and shown["objects"][0]["name"] == "o" and "p" in shown["properties"]
    for path in ("tags/t", "objects/o", "properties/p", "tags", "objects", "properties"):
        _fault(await admin.delete(f"{base}/{path}"), 403)


async def test_deleting_a_namespace_removes_its_contents(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::Gone", tags=[{"name": "t"}], objects=[{"name": "o"}],
                     resource_type_associations=[{"name": "OS::Glance::Image"}])
    assert (await admin.delete(f"{NS}/Cumulo::Gone")).status_code == 204
    again = await _namespace(admin, "Cumulo::Gone")
    assert "tags" not in again and "objects" not in again and "resource_type_associations" not in again


async def test_blank_image_id_is_404(member: httpx.AsyncClient) -> None:
    _fault(await member.get("/v2/images/"), 404)
    _fault(await member.delete("/v2/images/"), 404)


# Response keys per the Image API v2 reference (metadefs-*.inc response parameters and samples).
_NS_KEYS = {"created_at", "description", "display_name", "namespace", "owner", "protected", "schema", "self",
            "updated_at", "visibility"}
_SCHEMA_PROPS = {
    "namespace": {"namespace", "display_name", "description", "visibility", "protected", "owner", "created_at",
                  "updated_at", "schema", "self", "resource_type_associations", "properties", "objects", "tags"},
    "object": {"name", "description", "required", "properties", "schema", "self", "created_at", "updated_at"},
    "property": {"name", "title", "description", "operators", "type", "required", "minimum", "maximum", "maxLength",
                 "minLength", "pattern", "enum", "readonly", "default", "items", "maxItems", "minItems",
                 "uniqueItems", "additionalItems"},
    "tag": {"name", "created_at", "updated_at"},
    "resource_type": {"name", "prefix", "properties_target", "created_at", "updated_at"},
}
_SCHEMA_REQUIRED = {"namespace": ["namespace"], "object": ["name"], "property": ["type", "title", "name"],
                    "tag": ["name"], "resource_type": ["name"]}
_COLLECTIONS = {"namespaces": "namespaces", "objects": "objects", "properties": "properties", "tags": "tags",
                "resource_types": "resource_type_associations"}


@pytest.mark.parametrize("kind", sorted(_SCHEMA_PROPS))
async def test_item_schemas_match_the_reference(member: httpx.AsyncClient, kind: str) -> None:
    body = (await member.get(f"/v2/schemas/metadefs/{kind}")).json()
    assert set(body["properties"]) == _SCHEMA_PROPS[kind]
    assert body["required"] == _SCHEMA_REQUIRED[kind] and body["additionalProperties"] is False


@pytest.mark.parametrize(("kind", "key"), sorted(_COLLECTIONS.items()))
async def test_collection_schemas_match_the_reference(member: httpx.AsyncClient, kind: str, key: str) -> None:
    body = (await member.get(f"/v2/schemas/metadefs/{kind}")).json()
    assert set(body["properties"]) == {key, "first", "next", "schema"}
    assert [link["rel"] for link in body["links"]] == ["first", "next", "describedby"]
    assert "$ref" not in str(body) or "definitions" in body  # every reference resolves inside the document


async def test_response_keys_match_the_reference(admin: httpx.AsyncClient) -> None:
    r = await admin.post(NS, json={"namespace": "Cumulo::Shape", "description": "d", "display_name": "Shape",
                                   "visibility": "public"})
    assert r.headers["location"] == f"http://cumulo.test/image{NS}/Cumulo::Shape"
    created = r.json()
    assert set(created) == _NS_KEYS
    updated = (await admin.put(f"{NS}/Cumulo::Shape", json={"namespace": "Cumulo::Shape", "description": "d",
                                                            "display_name": "S", "visibility": "public"})).json()
    assert set(updated) == _NS_KEYS
    listed = (await admin.get(NS)).json()
    assert set(listed) == {"first", "namespaces", "schema"} and set(listed["namespaces"][0]) == _NS_KEYS
    base = f"{NS}/Cumulo::Shape"
    assert set((await admin.get(f"{base}/objects")).json()) == {"objects", "schema"}
    assert set((await admin.get(f"{base}/properties")).json()) == {"properties"}
    assert set((await admin.get(f"{base}/tags")).json()) == {"tags"}
    assert set((await admin.get(f"{base}/resource_types")).json()) == {"resource_type_associations"}
    prop = {"name": "p", "title": "P", "type": "string", "description": "d", "enum": ["a"]}
    assert (await admin.post(f"{base}/properties", json=prop)).json() == prop
    assert (await admin.get(f"{base}/properties/p")).json() == prop


@pytest.mark.parametrize("kind", ["objects", "tags", "resource_type_associations"])
async def test_duplicate_names_inside_a_create_body_are_409(admin: httpx.AsyncClient, kind: str) -> None:
    _fault(await admin.post(NS, json={"namespace": "Cumulo::Twice", kind: [{"name": "a"}, {"name": "a"}]}), 409)
    _fault(await admin.get(f"{NS}/Cumulo::Twice"), 404)  # nothing was left half-made


async def test_concurrent_creates_of_one_name_give_one_201_and_409s(admin: httpx.AsyncClient) -> None:
    results = await asyncio.gather(*(admin.post(NS, json={"namespace": "Cumulo::Race"}) for _ in range(5)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409, 409], codes


_WRITES = [
    ("POST", NS, {"namespace": "Cumulo::X"}),
    ("PUT", f"{NS}/Cumulo::Pol", {"namespace": "Cumulo::Pol"}),
    ("DELETE", f"{NS}/Cumulo::Pol", None),
    ("POST", f"{NS}/Cumulo::Pol/objects", {"name": "o2"}),
    ("PUT", f"{NS}/Cumulo::Pol/objects/o", {"name": "o"}),
    ("DELETE", f"{NS}/Cumulo::Pol/objects/o", None),
    ("DELETE", f"{NS}/Cumulo::Pol/objects", None),
    ("POST", f"{NS}/Cumulo::Pol/properties", {"name": "p2", "title": "P", "type": "string"}),
    ("PUT", f"{NS}/Cumulo::Pol/properties/p", {"name": "p", "title": "P", "type": "string"}),
    ("DELETE", f"{NS}/Cumulo::Pol/properties/p", None),
    ("DELETE", f"{NS}/Cumulo::Pol/properties", None),
    ("POST", f"{NS}/Cumulo::Pol/tags", {"tags": [{"name": "t2"}]}),
    ("POST", f"{NS}/Cumulo::Pol/tags/t2", None),
    ("PUT", f"{NS}/Cumulo::Pol/tags/t", {"name": "t"}),
    ("DELETE", f"{NS}/Cumulo::Pol/tags/t", None),
    ("DELETE", f"{NS}/Cumulo::Pol/tags", None),
    ("POST", f"{NS}/Cumulo::Pol/resource_types", {"name": "OS::Nova::Flavor"}),
    ("DELETE", f"{NS}/Cumulo::Pol/resource_types/OS::Glance::Image", None),
]
_READS = [NS, f"{NS}/Cumulo::Pol", f"{NS}/Cumulo::Pol/objects", f"{NS}/Cumulo::Pol/objects/o",
          f"{NS}/Cumulo::Pol/properties", f"{NS}/Cumulo::Pol/properties/p", f"{NS}/Cumulo::Pol/tags",
          f"{NS}/Cumulo::Pol/tags/t", f"{NS}/Cumulo::Pol/resource_types", "/v2/metadefs/resource_types"]


async def _policy_namespace(admin: httpx.AsyncClient) -> None:
    await _namespace(admin, "Cumulo::Pol", visibility="public", objects=[{"name": "o"}], tags=[{"name": "t"}],
                     properties={"p": {"title": "P", "type": "string"}},
                     resource_type_associations=[{"name": "OS::Glance::Image"}])


@pytest.mark.parametrize(("method", "path", "body"), _WRITES, ids=[f"{m} {p}" for m, p, _ in _WRITES])
@pytest.mark.parametrize("role", ["member", "reader"])
async def test_every_write_is_admin_only(
    client: Client, ctx: Callable[..., RequestContext], admin: httpx.AsyncClient, method: str, path: str,
    body: Any, role: str,
) -> None:
    await _policy_namespace(admin)
    user = client(ctx("p1", role))
    body_msg = _fault(await user.request(method, path, json=body), 403)
    assert "Policy doesn't allow" in body_msg["message"]
    r = await admin.request(method, path, json=body)  # the same request as the admin succeeds
    assert r.status_code in (200, 201, 204), r.text


@pytest.mark.parametrize("path", _READS)
async def test_every_read_is_open_to_readers(
    client: Client, ctx: Callable[..., RequestContext], admin: httpx.AsyncClient, path: str
) -> None:
    await _policy_namespace(admin)
    r = await client(ctx("p2", "reader")).get(path)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", f"{NS}/Cumulo::Pol/objects", {"name": ""}, 400),
        ("POST", f"{NS}/Cumulo::Pol/objects", {"name": "o", "required": "x"}, 400),
        ("PUT", f"{NS}/Cumulo::Pol/objects/o", {"description": "no name"}, 400),
        ("PUT", f"{NS}/Cumulo::Pol/objects/o", {"name": "o", "self": "x"}, 403),
        ("POST", f"{NS}/Cumulo::Pol/properties", {"name": "q", "title": "Q", "type": "float"}, 400),
        ("POST", f"{NS}/Cumulo::Pol/properties", {"name": "q", "title": "Q", "type": "string", "minLength": -1}, 400),
        ("PUT", f"{NS}/Cumulo::Pol/properties/nope", {"name": "nope", "title": "Q", "type": "string"}, 404),
        ("PUT", f"{NS}/Cumulo::Pol/tags/t", {"name": "x" * 256}, 400),
        ("PUT", f"{NS}/Cumulo::Pol/tags/t", {}, 400),
        ("POST", f"{NS}/Cumulo::Pol/tags/{'x' * 256}", None, 400),
        ("POST", f"{NS}/Cumulo::Pol/tags", {"tags": [{"name": "a", "extra": 1}]}, 400),
        ("POST", f"{NS}/Cumulo::Pol/resource_types", {"name": "x" * 81}, 400),
        ("POST", f"{NS}/Cumulo::Pol/resource_types", {"name": "OS::Glance::Image"}, 409),
        ("POST", f"{NS}/Nope/objects", {"name": "o"}, 404),
        ("PUT", f"{NS}/Cumulo::Pol", {"namespace": "Cumulo::Pol", "visibility": "community"}, 400),
    ],
)
async def test_bad_child_input_is_a_glance_4xx(
    admin: httpx.AsyncClient, method: str, path: str, body: Any, status: int
) -> None:
    await _policy_namespace(admin)
    _fault(await admin.request(method, path, json=body), status)
