"""Compute microversions against the API reference (issue 2, acceptance item 3).

A server is built (image uploaded through the image API, flavor m1.tiny from the bootstrap) and
every resource is fetched at 2.1, at the middle version 2.47, at the declared maximum 2.79, with
"latest" and with no header, as a member and as an admin. Each body is checked against the
independent reference schemas in tests/reference/nova.py: no missing and no extra fields. The
version headers must echo the negotiated version; versions outside 2.1..2.79 get 406 and
malformed ones 400, in Nova's fault format. Then the fields that change between versions are
checked by value: the 2.47 embedded flavor, 2.19 description, 2.26 tags, 2.73 locked_reason and
the 2.3+ volumes_attached entries.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for `reference`
from reference import check, nova, shape_errors  # noqa: E402

from cumulo.context import RequestContext, expand_roles

API = "/compute/v2.1"
MAX = nova.MAX_VERSION
# (header value sent, version the server must negotiate); None means no header at all.
VERSION_CASES = [("2.1", "2.1"), ("2.47", "2.47"), (MAX, MAX), ("latest", MAX), (None, "2.1")]
CASE_IDS = ["2.1", "2.47", MAX, "latest", "no-header"]

JSON = dict[str, Any]


def vtuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def headers_for(version: str | None, style: str = "new") -> dict[str, str]:
    if version is None:
        return {}
    if style == "legacy":
        return {"X-OpenStack-Nova-API-Version": version}
    return {"OpenStack-API-Version": f"compute {version}"}


@dataclass
class World:
    """What the tests look at: a project with an ACTIVE server, an image, a keypair."""

    member: httpx.AsyncClient
    admin: httpx.AsyncClient
    project_id: str
    server_id: str
    image_id: str
    flavor: JSON
    keypair: str


@dataclass
class Probe:
    """Fetches resources at one version and collects every difference from the reference."""

    world: World
    sent: str | None
    version: str
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"@{self.sent or 'no-header'}"

    def headers_ok(self, resp: httpx.Response, what: str) -> None:
        new = resp.headers.get("openstack-api-version")
        legacy = resp.headers.get("x-openstack-nova-api-version")
        if new != f"compute {self.version}":
            self.problems.append(f"{what} {self.label}: OpenStack-API-Version header {new!r}, expected 'compute {self.version}'")
        if legacy != self.version:
            self.problems.append(f"{what} {self.label}: X-OpenStack-Nova-API-Version header {legacy!r}, expected {self.version!r}")

    async def call(
        self,
        method: str,
        path: str,
        resource: str,
        *,
        admin: bool = False,
        expect: int = 200,
        template: str | None = None,
        **kw: Any,
    ) -> Any:
        client = self.world.admin if admin else self.world.member
        what = f"{method} {template or path} ({'admin' if admin else 'member'})"
        resp = await client.request(method, API + path, headers=headers_for(self.sent), **kw)
        if resp.status_code != expect:
            self.problems.append(f"{what} {self.label}: status {resp.status_code}, expected {expect}: {resp.text[:300]}")
            return None
        self.headers_ok(resp, what)
        body = resp.json()
        for err in shape_errors(body, nova.schema(resource, self.version, admin)):
            self.problems.append(f"{what} {self.label} [{resource} {self.version}]: {err}")
        return body

    async def get(self, path: str, resource: str, **kw: Any) -> Any:
        return await self.call("GET", path, resource, **kw)


def make_ctx(project_id: str, *roles: str) -> RequestContext:
    return RequestContext(user_id=uuid.uuid4().hex, project_id=project_id, roles=expand_roles(list(roles)))


async def wait_status(
    client: httpx.AsyncClient, server_id: str, status: str, timeout: float = 20.0, allow_error: bool = False
) -> JSON:
    deadline = asyncio.get_running_loop().time() + timeout
    body: JSON = {}
    while asyncio.get_running_loop().time() < deadline:
        resp = await client.get(f"{API}/servers/{server_id}")
        assert resp.status_code == 200, resp.text
        body = resp.json()["server"]
        if body["status"] == status:
            return body
        assert allow_error or body["status"] != "ERROR", f"server went to ERROR: {body.get('fault')}"
        await asyncio.sleep(0.05)
    raise AssertionError(f"server {server_id} not {status} after {timeout}s: {body.get('status')}")


async def upload_image(client: httpx.AsyncClient) -> str:
    resp = await client.post("/image/v2/images", json={"name": "mv-image", "disk_format": "raw", "container_format": "bare"})
    assert resp.status_code == 201, resp.text
    image_id: str = resp.json()["id"]
    resp = await client.put(
        f"/image/v2/images/{image_id}/file", content=b"\0" * 4096, headers={"Content-Type": "application/octet-stream"}
    )
    assert resp.status_code == 204, resp.text
    return image_id


async def find_flavor(client: httpx.AsyncClient, name: str) -> JSON:
    resp = await client.get(f"{API}/flavors/detail")
    assert resp.status_code == 200, resp.text
    by_name = {f["name"]: f for f in resp.json()["flavors"]}
    assert name in by_name, f"bootstrap flavors: {sorted(by_name)}"
    return by_name[name]


async def create_server(client: httpx.AsyncClient, image_id: str, flavor_id: str, **extra: Any) -> str:
    body = {"server": {"name": "mv-server", "imageRef": image_id, "flavorRef": flavor_id, **extra}}
    resp = await client.post(f"{API}/servers", json=body, headers=headers_for(MAX))
    assert resp.status_code == 202, resp.text
    return resp.json()["server"]["id"]  # type: ignore[no-any-return]


@pytest.fixture
def client(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> httpx.AsyncClient:
    """A member of a fresh project, for tests that need no server."""
    return as_ctx(make_ctx(uuid.uuid4().hex, "member"))


async def demo_project_id(cloud: Any, anon_client: httpx.AsyncClient) -> str:
    """The bootstrap demo project's id (quota APIs check that a project exists, as Nova does)."""
    demo = cloud.credentials["demo"]
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": "demo", "domain": {"name": "Default"}, "password": demo["password"]}},
        },
        "scope": {"project": {"name": demo["project"], "domain": {"name": "Default"}}},
    }
    resp = await anon_client.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]["project"]["id"]  # type: ignore[no-any-return]


@pytest.fixture
async def world(
    cloud: Any, anon_client: httpx.AsyncClient, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> World:
    project = await demo_project_id(cloud, anon_client)
    member = as_ctx(make_ctx(project, "member"))
    admin = as_ctx(make_ctx(project, "admin"))
    image_id = await upload_image(member)
    flavor = await find_flavor(member, "m1.tiny")
    resp = await member.post(f"{API}/os-keypairs", json={"keypair": {"name": "mv-key"}}, headers=headers_for(MAX))
    assert resp.status_code == 201, resp.text
    server_id = await create_server(
        member,
        image_id,
        flavor["id"],
        key_name="mv-key",
        metadata={"role": "web"},
        description="a described server",
        networks="none",
    )
    await wait_status(member, server_id, "ACTIVE")
    resp = await member.put(f"{API}/servers/{server_id}/tags", json={"tags": ["blue", "green"]}, headers=headers_for("2.26"))
    assert resp.status_code == 200, resp.text
    return World(member, admin, project, server_id, image_id, flavor, "mv-key")


# --- version documents and negotiation ----------------------------------------------------------


async def test_version_documents(client: httpx.AsyncClient) -> None:
    for path in ("/compute/", "/compute"):
        resp = await client.get(path)
        if resp.status_code in (301, 302, 307, 308):
            continue  # a redirect from /compute to /compute/ is fine
        assert resp.status_code == 200, (path, resp.text)
        check(resp.json(), nova.schema("version_list", "2.1"), f"GET {path}")
        v21 = [v for v in resp.json()["versions"] if v["id"] == "v2.1"]
        assert len(v21) == 1, resp.json()
        assert (v21[0]["version"], v21[0]["min_version"], v21[0]["status"]) == (MAX, "2.1", "CURRENT")
    for path in ("/compute/v2.1", "/compute/v2.1/"):
        resp = await client.get(path)
        assert resp.status_code == 200, (path, resp.text)
        check(resp.json(), nova.schema("version_show", "2.1"), f"GET {path}")
        doc = resp.json()["version"]
        assert (doc["id"], doc["version"], doc["min_version"]) == ("v2.1", MAX, "2.1")
        assert any(link["rel"] == "self" and link["href"].rstrip("/").endswith("/compute/v2.1") for link in doc["links"])


STYLES = ("new", "legacy")
OUT_OF_RANGE = ("2.80", "2.100", "3.0", "1.9", "2.0", "1.0")
MALFORMED = ("2.x", "abc", "2", "2.1.1", "2.01", "02.1", "-2.1", "2 .1")
# (One cloud serves all cases of each test below: the cases are cheap, a cloud start is not.)


async def test_headers_echo_the_negotiated_version(client: httpx.AsyncClient) -> None:
    for style in STYLES:
        for sent, negotiated in VERSION_CASES:
            case = f"{style} header {sent!r}"
            resp = await client.get(f"{API}/flavors", headers=headers_for(sent, style))
            assert resp.status_code == 200, (case, resp.text)
            assert resp.headers.get("openstack-api-version") == f"compute {negotiated}", case
            assert resp.headers.get("x-openstack-nova-api-version") == negotiated, case
            vary = resp.headers.get("vary", "").lower()
            assert "openstack-api-version" in vary and "x-openstack-nova-api-version" in vary, case


async def test_other_services_versions_are_ignored(client: httpx.AsyncClient) -> None:
    resp = await client.get(f"{API}/flavors", headers={"OpenStack-API-Version": "volume 3.70"})
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("openstack-api-version") == "compute 2.1"
    resp = await client.get(f"{API}/flavors", headers={"OpenStack-API-Version": "volume 3.0, compute 2.60"})
    assert resp.headers.get("openstack-api-version") == "compute 2.60"


async def test_out_of_range_is_406(client: httpx.AsyncClient) -> None:
    for style in STYLES:
        for version in OUT_OF_RANGE:
            case = f"{style} header {version!r}"
            resp = await client.get(f"{API}/servers", headers=headers_for(version, style))
            assert resp.status_code == 406, (case, resp.text)
            check(resp.json(), nova.fault("computeFault", 406), f"406 body for {case}")
            assert version in resp.json()["computeFault"]["message"], case


async def test_malformed_version_is_400(client: httpx.AsyncClient) -> None:
    for style in STYLES:
        for version in MALFORMED:
            case = f"{style} header {version!r}"
            resp = await client.get(f"{API}/servers", headers=headers_for(version, style))
            assert resp.status_code == 400, (case, resp.text)
            check(resp.json(), nova.fault("badRequest", 400), f"400 body for {case}")


# --- every resource against the reference, per version --------------------------------------


@pytest.mark.parametrize(("sent", "negotiated"), VERSION_CASES, ids=CASE_IDS)
async def test_resources_match_reference(world: World, sent: str | None, negotiated: str) -> None:
    p = Probe(world, sent, negotiated)
    sid = world.server_id
    v = vtuple(negotiated)

    for admin in (False, True):
        await p.get("/servers", "servers", admin=admin)
        await p.get("/servers/detail", "servers_detail", admin=admin)
        await p.get(f"/servers/{sid}", "server", admin=admin, template="/servers/{id}")
        actions = await p.get(
            f"/servers/{sid}/os-instance-actions", "instance_actions", admin=admin, template="/servers/{id}/os-instance-actions"
        )
        if actions and actions["instanceActions"]:
            req = actions["instanceActions"][-1]["request_id"]  # the oldest: create
            await p.get(
                f"/servers/{sid}/os-instance-actions/{req}",
                "instance_action",
                admin=admin,
                template="/servers/{id}/os-instance-actions/{request_id}",
            )
        elif actions is not None:
            p.problems.append(f"GET /servers/{{id}}/os-instance-actions {p.label}: no actions recorded for a created server")

    page = await p.get("/servers?limit=1", "servers")
    if page is not None and "servers_links" not in page:
        # Nova adds a next link whenever a page is full (api-guide "Paginated collections").
        p.problems.append(f"GET /servers?limit=1 {p.label}: full page without servers_links")

    flavor_id = world.flavor["id"]
    await p.get("/flavors", "flavors")
    await p.get("/flavors/detail", "flavors_detail")
    await p.get(f"/flavors/{flavor_id}", "flavor", template="/flavors/{id}")
    await p.get("/os-keypairs", "keypairs")
    await p.get(f"/os-keypairs/{world.keypair}", "keypair", template="/os-keypairs/{name}")
    await p.get("/limits", "limits")
    proj = world.project_id
    await p.get(f"/os-quota-sets/{proj}", "quota_set", template="/os-quota-sets/{project}")
    await p.get(f"/os-quota-sets/{proj}/defaults", "quota_set_defaults", template="/os-quota-sets/{project}/defaults")
    await p.get(f"/os-quota-sets/{proj}/detail", "quota_set_detail", template="/os-quota-sets/{project}/detail")
    await p.get("/os-availability-zone", "availability_zones")
    await p.get("/os-availability-zone/detail", "availability_zones_detail", admin=True)
    await p.get("/os-services", "services", admin=True)
    hyps = await p.get("/os-hypervisors", "hypervisors", admin=True)
    await p.get("/os-hypervisors/detail", "hypervisors_detail", admin=True)
    await p.get("/os-hypervisors/statistics", "hypervisor_statistics", admin=True)
    if hyps and hyps["hypervisors"]:
        hid = hyps["hypervisors"][0]["id"]
        await p.get(f"/os-hypervisors/{hid}", "hypervisor", admin=True, template="/os-hypervisors/{id}")
    elif hyps is not None:
        p.problems.append(f"GET /os-hypervisors {p.label}: no hypervisors listed")

    await p.call(
        "POST",
        f"/servers/{sid}/action",
        "console_output",
        json={"os-getConsoleOutput": {"length": 5}},
        template="/servers/{id}/action (os-getConsoleOutput)",
    )
    await p.get(f"/servers/{sid}/metadata", "server_metadata", template="/servers/{id}/metadata")
    await p.get(f"/servers/{sid}/metadata/role", "server_metadata_item", template="/servers/{id}/metadata/{key}")
    if v >= (2, 26):
        await p.get(f"/servers/{sid}/tags", "server_tags", template="/servers/{id}/tags")
    else:
        # os-server-tags exists from 2.26; below it the route is not there for this version.
        resp = await world.member.get(f"{API}/servers/{sid}/tags", headers=headers_for(sent))
        if resp.status_code != 404:
            p.problems.append(f"GET /servers/{{id}}/tags {p.label}: status {resp.status_code}, expected 404 below 2.26")

    assert not p.problems, f"{len(p.problems)} difference(s) from the reference:\n" + "\n".join(p.problems)


@pytest.mark.parametrize(("sent", "negotiated"), VERSION_CASES, ids=CASE_IDS)
async def test_create_responses_match_reference(world: World, sent: str | None, negotiated: str) -> None:
    h = headers_for(sent)
    v = vtuple(negotiated)
    body: JSON = {"server": {"name": "mv-create", "imageRef": world.image_id, "flavorRef": world.flavor["id"]}}
    if v >= (2, 37):  # networks is required from 2.37
        body["server"]["networks"] = "none"
    resp = await world.member.post(f"{API}/servers", json=body, headers=h)
    assert resp.status_code == 202, resp.text
    check(resp.json(), nova.schema("server_create", negotiated), f"POST /servers @{negotiated}")
    assert resp.headers.get("location", "").endswith(f"/servers/{resp.json()['server']['id']}")

    # os-keypairs create: 200 before 2.2, 201 from 2.2 (os-keypairs.inc "Import (or create) Keypair").
    status = 201 if v >= (2, 2) else 200
    resp = await world.member.post(f"{API}/os-keypairs", json={"keypair": {"name": f"gen-{uuid.uuid4().hex[:6]}"}}, headers=h)
    assert resp.status_code == status, resp.text
    check(resp.json(), nova.schema("keypair_generate", negotiated), f"POST /os-keypairs (generate) @{negotiated}")
    public_key = resp.json()["keypair"]["public_key"]
    imported: JSON = {"keypair": {"name": f"imp-{uuid.uuid4().hex[:6]}", "public_key": public_key}}
    resp = await world.member.post(f"{API}/os-keypairs", json=imported, headers=h)
    assert resp.status_code == status, resp.text
    check(resp.json(), nova.schema("keypair_import", negotiated), f"POST /os-keypairs (import) @{negotiated}")


# --- the fields that change between versions, by value -----------------------------------------


async def show(world: World, version: str | None, admin: bool = False) -> JSON:
    client = world.admin if admin else world.member
    resp = await client.get(f"{API}/servers/{world.server_id}", headers=headers_for(version))
    assert resp.status_code == 200, resp.text
    check(resp.json(), nova.schema("server", version or "2.1", admin), f"GET /servers/{{id}} @{version}")
    return resp.json()["server"]  # type: ignore[no-any-return]


async def test_flavor_link_before_2_47_and_embedded_from_2_47(world: World) -> None:
    fl = world.flavor
    for version in ("2.1", "2.46"):
        flavor = (await show(world, version))["flavor"]
        assert flavor["id"] == fl["id"]
        assert [link["rel"] for link in flavor["links"]] == ["bookmark"]
        assert flavor["links"][0]["href"].endswith(f"/flavors/{fl['id']}")
    for version in ("2.47", MAX):
        flavor = (await show(world, version))["flavor"]
        assert flavor == {
            "original_name": "m1.tiny",
            "vcpus": fl["vcpus"],
            "ram": fl["ram"],
            "disk": fl["disk"],
            "ephemeral": fl["OS-FLV-EXT-DATA:ephemeral"],
            "swap": fl["swap"] or 0,
            "extra_specs": flavor["extra_specs"],
        }
        resp = await world.member.get(f"{API}/flavors/{fl['id']}/os-extra_specs")
        assert resp.status_code == 200, resp.text
        assert flavor["extra_specs"] == resp.json()["extra_specs"]
    detail = await world.member.get(f"{API}/servers/detail", headers=headers_for("2.47"))
    entry = next(s for s in detail.json()["servers"] if s["id"] == world.server_id)
    assert entry["flavor"]["original_name"] == "m1.tiny"


async def test_description_from_2_19(world: World) -> None:
    assert "description" not in await show(world, "2.18")
    assert (await show(world, "2.19"))["description"] == "a described server"
    resp = await world.member.put(
        f"{API}/servers/{world.server_id}", json={"server": {"description": "changed"}}, headers=headers_for("2.19")
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["server"]["description"] == "changed"
    assert (await show(world, MAX))["description"] == "changed"
    # Before 2.19 a description in the body is an unknown field.
    resp = await world.member.put(
        f"{API}/servers/{world.server_id}", json={"server": {"description": "x"}}, headers=headers_for("2.18")
    )
    assert resp.status_code == 400, resp.text


async def test_tags_from_2_26(world: World) -> None:
    assert "tags" not in await show(world, "2.25")
    assert sorted((await show(world, "2.26"))["tags"]) == ["blue", "green"]
    resp = await world.member.get(f"{API}/servers/{world.server_id}/tags", headers=headers_for("2.26"))
    assert sorted(resp.json()["tags"]) == ["blue", "green"]
    resp = await world.member.put(f"{API}/servers/{world.server_id}/tags/red", headers=headers_for("2.26"))
    assert resp.status_code in (201, 204), resp.text
    assert sorted((await show(world, MAX))["tags"]) == ["blue", "green", "red"]
    resp = await world.member.get(f"{API}/servers/{world.server_id}/tags", headers=headers_for("2.25"))
    assert resp.status_code == 404, resp.text


async def test_locked_from_2_9_and_locked_reason_from_2_73(world: World) -> None:
    sid = world.server_id
    resp = await world.member.post(f"{API}/servers/{sid}/action", json={"lock": {"locked_reason": "maintenance"}}, headers=headers_for("2.73"))
    assert resp.status_code == 202, resp.text
    assert "locked" not in await show(world, "2.8")
    s = await show(world, "2.9")
    assert s["locked"] is True and "locked_reason" not in s
    assert "locked_reason" not in await show(world, "2.72")
    s = await show(world, "2.73")
    assert (s["locked"], s["locked_reason"]) == (True, "maintenance")
    resp = await world.member.post(f"{API}/servers/{sid}/action", json={"unlock": None}, headers=headers_for("2.73"))
    assert resp.status_code == 202, resp.text
    s = await show(world, MAX)
    assert (s["locked"], s["locked_reason"]) == (False, None)


async def test_volumes_attached_entries_by_version(world: World) -> None:
    # Cumulo has no block storage yet, so the list is empty; the schemas require
    # delete_on_termination in each entry from 2.3 (checked by value in test_reference_shapes).
    for version in ("2.1", "2.3", MAX):
        assert (await show(world, version))["os-extended-volumes:volumes_attached"] == []
    items = nova.schema("server", MAX)["properties"]["server"]["properties"]["os-extended-volumes:volumes_attached"]["items"]
    assert items["required"] == ["id", "delete_on_termination"]


async def test_admin_view_adds_extended_attributes(world: World) -> None:
    member = await show(world, MAX)
    admin = await show(world, MAX, admin=True)
    extra = set(admin) - set(member)
    assert {"OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:instance_name", "host_status", "OS-EXT-SRV-ATTR:user_data"} <= extra
    assert admin["OS-EXT-SRV-ATTR:host"], "an ACTIVE server has a host"
    assert admin["host_status"] == "UP"
    assert member["hostId"] and member["hostId"] == admin["hostId"]


async def test_state_dependent_fields_error_and_shutoff(world: World) -> None:
    """fault appears for ERROR (and progress does not); SHUTOFF shows neither - at every version."""
    resp = await world.admin.post(
        f"{API}/flavors", json={"flavor": {"name": "mv-huge-disk", "ram": 64, "vcpus": 1, "disk": 10_000_000}}
    )
    assert resp.status_code == 200, resp.text
    body = {"server": {"name": "mv-error", "imageRef": world.image_id, "flavorRef": resp.json()["flavor"]["id"]}}
    resp = await world.member.post(f"{API}/servers", json=body)
    assert resp.status_code == 202, resp.text
    error_id = resp.json()["server"]["id"]
    await wait_status(world.member, error_id, "ERROR", allow_error=True)

    resp = await world.member.post(f"{API}/servers/{world.server_id}/action", json={"os-stop": None})
    assert resp.status_code == 202, resp.text
    await wait_status(world.member, world.server_id, "SHUTOFF")

    problems: list[str] = []
    for sent, negotiated in VERSION_CASES:
        for admin in (False, True):
            client = world.admin if admin else world.member
            for sid in (error_id, world.server_id):
                resp = await client.get(f"{API}/servers/{sid}", headers=headers_for(sent))
                assert resp.status_code == 200, resp.text
                who = "admin" if admin else "member"
                for err in shape_errors(resp.json(), nova.schema("server", negotiated, admin)):
                    problems.append(f"GET /servers/{{id}} ({resp.json()['server']['status']}, {who}) @{sent}: {err}")
            resp = await client.get(f"{API}/servers/detail", headers=headers_for(sent))
            for err in shape_errors(resp.json(), nova.schema("servers_detail", negotiated, admin)):
                problems.append(f"GET /servers/detail ({who}) @{sent}: {err}")
    assert not problems, "\n".join(problems)
    fault = (await show_server(world, error_id, MAX))["fault"]
    assert fault["code"] == 500 and "No valid host" in fault["message"]


async def show_server(world: World, server_id: str, version: str) -> JSON:
    resp = await world.member.get(f"{API}/servers/{server_id}", headers=headers_for(version))
    assert resp.status_code == 200, resp.text
    return resp.json()["server"]  # type: ignore[no-any-return]
