"""Project isolation: project A's member neither sees nor touches project B's servers, images
(unless public), keypairs or quotas. B's resources look like 404 to A (quotas: 403, as Nova's
policy answers for another project), and all_tenants never widens a non-admin's view."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from _asgi_ctx import AsCtx
from fuzz_support import API, FLAVOR, assert_fault, create_project, make_ctx, start_world, upload_image

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMG = "/image/v2"
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def mv(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


@dataclass
class Pair:
    a: httpx.AsyncClient  # member of project A
    a_reader: httpx.AsyncClient
    b: httpx.AsyncClient  # member of project B
    admin: httpx.AsyncClient
    project_a: str
    project_b: str
    server_a: str
    server_b: str
    image_b: str  # private to B
    public_b: str  # B's public image (made public by an admin)
    keypair: str  # the same name in A and B


async def _wait_active(client: httpx.AsyncClient, server_id: str) -> None:
    import asyncio

    for _ in range(500):
        body = (await client.get(f"{API}/servers/{server_id}")).json()["server"]
        if body["status"] == "ACTIVE" and body["OS-EXT-STS:task_state"] is None:
            return
        assert body["status"] != "ERROR", body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{server_id} never ACTIVE")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    async for w in start_world(tmp_path_factory.mktemp("isolation")):
        app = w.cloud.asgi_app()

        def client(project: str, role: str, app: Any = app) -> httpx.AsyncClient:
            ctx = make_ctx(project, role, user_id=f"user-{role}-{project}")
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx)), base_url="http://cumulo.test")

        pa, pb = w.project, await create_project(app, "iso-b")
        a, a_reader, b = client(pa, "member"), client(pa, "reader"), client(pb, "member")
        image_a = await upload_image(a, "img-a")
        image_b = await upload_image(b, "img-b")
        public_b = await upload_image(b, "img-b-public")
        r = await w.admin.patch(f"{IMG}/images/{public_b}", json=[{"op": "replace", "path": "/visibility", "value": "public"}],
                                headers=PATCH)
        assert r.status_code == 200, r.text
        servers = []
        for c, image in ((a, image_a), (b, image_b)):
            r = await c.post(f"{API}/servers", json={"server": {"name": "iso", "imageRef": image, "flavorRef": FLAVOR,
                                                              "metadata": {"k": "v"}}})
            assert r.status_code == 202, r.text
            servers.append(r.json()["server"]["id"])
            await _wait_active(c, servers[-1])
        for c in (a, b):
            r = await c.post(f"{API}/os-keypairs", json={"keypair": {"name": "shared-name"}})
            assert r.status_code == 200, r.text
        yield Pair(a, a_reader, b, w.admin, pa, pb, servers[0], servers[1], image_b, public_b, "shared-name")
        for c in (a, a_reader, b):
            await c.aclose()


# ---- servers ----------------------------------------------------------------------------------


SERVER_PROBES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("GET", "", None, {}),
    ("PUT", "", {"server": {"name": "stolen"}}, {}),
    ("DELETE", "", None, {}),
    ("POST", "/action", {"os-stop": None}, {}),
    ("POST", "/action", {"reboot": {"type": "HARD"}}, {}),
    ("POST", "/action", {"createImage": {"name": "steal"}}, {}),
    ("POST", "/action", {"os-getConsoleOutput": {}}, {}),
    ("GET", "/metadata", None, {}),
    ("GET", "/metadata/k", None, {}),
    ("POST", "/metadata", {"metadata": {"x": "y"}}, {}),
    ("PUT", "/metadata", {"metadata": {}}, {}),
    ("PUT", "/metadata/k", {"meta": {"k": "stolen"}}, {}),
    ("DELETE", "/metadata/k", None, {}),
    ("GET", "/tags", None, mv("2.26")),
    ("PUT", "/tags/x", None, mv("2.26")),
    ("DELETE", "/tags", None, mv("2.26")),
    ("GET", "/os-instance-actions", None, {}),
    ("GET", "/ips", None, {}),
]


@pytest.mark.parametrize(("method", "suffix", "body", "headers"), SERVER_PROBES,
                         ids=[f"{m} {s or '/'} {b and next(iter(b))}" for m, s, b, _ in SERVER_PROBES])
async def test_other_projects_server_is_404(pair: Pair, method: str, suffix: str, body: Any, headers: dict[str, str]) -> None:
    assert_fault(await pair.a.request(method, f"{API}/servers/{pair.server_b}{suffix}", json=body, headers=headers), 404)
    r = await pair.a_reader.request(method, f"{API}/servers/{pair.server_b}{suffix}", json=body, headers=headers)
    missing = await pair.a_reader.request(method, f"{API}/servers/{uuid.uuid4()}{suffix}", json=body, headers=headers)
    assert r.status_code in (403, 404), r.text
    assert_fault(r, missing.status_code)
    # Untouched: B still sees its server as it was.
    r = await pair.b.get(f"{API}/servers/{pair.server_b}")
    assert r.status_code == 200 and r.json()["server"]["name"] == "iso", r.text
    assert r.json()["server"]["metadata"] == {"k": "v"}
    assert r.json()["server"]["status"] == "ACTIVE" and r.json()["server"]["OS-EXT-STS:task_state"] is None


async def test_server_lists_show_only_own_project(pair: Pair) -> None:
    for url in (f"{API}/servers", f"{API}/servers/detail"):
        for params in ({}, {"project_id": pair.project_b}, {"tenant_id": pair.project_b}, {"name": "iso"}):
            r = await pair.a.get(url, params=params)
            assert r.status_code == 200, r.text
            ids = {s["id"] for s in r.json()["servers"]}
            assert pair.server_b not in ids, (url, params)
        r = await pair.a.get(url)
        assert pair.server_a in {s["id"] for s in r.json()["servers"]}


@pytest.mark.parametrize("url", [f"{API}/servers", f"{API}/servers/detail"])
async def test_all_tenants_never_widens_a_non_admin_view(pair: Pair, url: str) -> None:
    for value in ("1", "true", "True"):
        for client in (pair.a, pair.a_reader):
            r = await client.get(url, params={"all_tenants": value})
            if r.status_code == 200:  # ignored: only the caller's project
                assert {s["tenant_id"] for s in r.json()["servers"] if "tenant_id" in s} <= {pair.project_a}
                assert pair.server_b not in {s["id"] for s in r.json()["servers"]}
            else:  # or refused by policy, as Nova does
                assert_fault(r, 403)
    # The admin does see both projects with all_tenants.
    r = await pair.admin.get(url, params={"all_tenants": "1"})
    ids = {s["id"] for s in r.json()["servers"]}
    assert {pair.server_a, pair.server_b} <= ids


async def test_server_create_cannot_use_other_projects_private_image(pair: Pair) -> None:
    r = await pair.a.post(f"{API}/servers", json={"server": {"name": "x", "imageRef": pair.image_b, "flavorRef": FLAVOR}})
    assert_fault(r, 400)
    r = await pair.a.post(f"{API}/servers/{pair.server_a}/action", json={"rebuild": {"imageRef": pair.image_b}})
    assert r.status_code in (400, 404), r.text
    assert_fault(r, r.status_code)


# ---- images -----------------------------------------------------------------------------------


IMAGE_PROBES: list[tuple[str, str, Any, dict[str, str], bytes | None]] = [
    ("GET", "", None, {}, None),
    ("PATCH", "", [{"op": "replace", "path": "/name", "value": "stolen"}], PATCH, None),
    ("DELETE", "", None, {}, None),
    ("GET", "/file", None, {}, None),
    ("PUT", "/file", None, {"Content-Type": "application/octet-stream"}, b"evil"),
    ("PUT", "/tags/stolen", None, {}, None),
    ("DELETE", "/tags/x", None, {}, None),
    ("GET", "/members", None, {}, None),
    ("POST", "/actions/deactivate", None, {}, None),
]


@pytest.mark.parametrize(("method", "suffix", "body", "headers", "raw"), IMAGE_PROBES,
                         ids=[f"{m} {s or '/'}" for m, s, *_ in IMAGE_PROBES])
async def test_other_projects_private_image_is_404(pair: Pair, method: str, suffix: str, body: Any,
                                                   headers: dict[str, str], raw: bytes | None) -> None:
    kwargs: dict[str, Any] = {"headers": headers}
    if raw is not None:
        kwargs["content"] = raw
    elif body is not None:
        kwargs["json"] = body
    assert_fault(await pair.a.request(method, f"{IMG}/images/{pair.image_b}{suffix}", **kwargs), 404)
    # A reader may be refused a change before any lookup (403), but B's image must answer exactly
    # as a missing one does, or the status would reveal that it exists.
    r = await pair.a_reader.request(method, f"{IMG}/images/{pair.image_b}{suffix}", **kwargs)
    missing = await pair.a_reader.request(method, f"{IMG}/images/{uuid.uuid4()}{suffix}", **kwargs)
    assert r.status_code in (403, 404), r.text
    assert_fault(r, missing.status_code)
    r = await pair.b.get(f"{IMG}/images/{pair.image_b}")
    assert r.status_code == 200 and r.json()["name"] == "img-b" and r.json()["status"] == "active", r.text
    assert r.json()["tags"] == []


async def test_image_list_hides_other_projects_private_images(pair: Pair) -> None:
    for params in ({}, {"owner": pair.project_b}, {"visibility": "private"}, {"visibility": "all"}, {"name": "img-b"}):
        r = await pair.a.get(f"{IMG}/images", params=params)
        assert r.status_code == 200, r.text
        assert pair.image_b not in {i["id"] for i in r.json()["images"]}, params
    listed = {i["id"] for i in (await pair.a.get(f"{IMG}/images")).json()["images"]}
    assert pair.public_b in listed


async def test_public_image_is_visible_but_read_only(pair: Pair) -> None:
    r = await pair.a.get(f"{IMG}/images/{pair.public_b}")
    assert r.status_code == 200, r.text
    r = await pair.a.get(f"{IMG}/images/{pair.public_b}/file")
    assert r.status_code == 200 and r.content == b"\0" * 1024
    r = await pair.a.patch(f"{IMG}/images/{pair.public_b}", json=[{"op": "replace", "path": "/name", "value": "x"}],
                           headers=PATCH)
    assert_fault(r, 403)
    assert_fault(await pair.a.delete(f"{IMG}/images/{pair.public_b}"), 403)
    assert (await pair.b.get(f"{IMG}/images/{pair.public_b}")).json()["name"] == "img-b-public"


# ---- keypairs ---------------------------------------------------------------------------------


async def test_keypairs_are_per_user(pair: Pair) -> None:
    ra = await pair.a.get(f"{API}/os-keypairs/{pair.keypair}")
    rb = await pair.b.get(f"{API}/os-keypairs/{pair.keypair}")
    assert ra.status_code == rb.status_code == 200
    assert ra.json()["keypair"]["public_key"] != rb.json()["keypair"]["public_key"]
    r = await pair.b.post(f"{API}/os-keypairs", json={"keypair": {"name": "only-b"}})
    assert r.status_code == 200, r.text
    assert_fault(await pair.a.get(f"{API}/os-keypairs/only-b"), 404)
    assert_fault(await pair.a.delete(f"{API}/os-keypairs/only-b"), 404)
    names = {k["keypair"]["name"] for k in (await pair.a.get(f"{API}/os-keypairs")).json()["keypairs"]}
    assert "only-b" not in names
    # Naming another user needs admin (2.10+).
    r = await pair.a.get(f"{API}/os-keypairs/only-b", params={"user_id": f"user-member-{pair.project_b}"},
                         headers=mv("2.10"))
    assert r.status_code in (403, 404), r.text
    assert_fault(r, r.status_code)
    assert (await pair.b.get(f"{API}/os-keypairs/only-b")).status_code == 200


# ---- quotas -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None), ("GET", "/detail", None), ("PUT", "", {"quota_set": {"instances": 1000}}), ("DELETE", "", None),
])
async def test_other_projects_quotas_are_forbidden(pair: Pair, method: str, suffix: str, body: Any) -> None:
    r = await pair.a.request(method, f"{API}/os-quota-sets/{pair.project_b}{suffix}", json=body)
    assert r.status_code in (403, 404), r.text
    assert_fault(r, r.status_code)
    r = await pair.b.get(f"{API}/os-quota-sets/{pair.project_b}")
    assert r.json()["quota_set"]["instances"] == 10


async def test_limits_of_another_project_are_forbidden(pair: Pair) -> None:
    r = await pair.a.get(f"{API}/limits", params={"tenant_id": pair.project_b})
    if r.status_code == 200:  # ignored: the caller's own limits
        assert r.json()["limits"]["absolute"]["totalInstancesUsed"] >= 1
    else:
        assert_fault(r, 403)
    r = await pair.a.get(f"{API}/os-quota-sets/{pair.project_a}/detail")
    assert r.status_code == 200, r.text
    assert r.json()["quota_set"]["instances"]["in_use"] >= 1
