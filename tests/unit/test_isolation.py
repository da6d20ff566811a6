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
    cloud: Any = None


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
        yield Pair(a, a_reader, b, w.admin, pa, pb, servers[0], servers[1], image_b, public_b, "shared-name", w.cloud)
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


# ---- volumes (Cinder at /volume/v3/{project}; the real volume worker, files under the state dir) ----


@dataclass
class Vols:
    volume: str  # B's, available, with metadata k=v
    snapshot: str
    backup: str
    attachment: str  # B's attachment record, on a second volume
    attached: str


def vol(project: str) -> str:
    return f"/volume/v3/{project}"


VMV = {"OpenStack-API-Version": "volume 3.70"}


async def _vol_wait(client: httpx.AsyncClient, url: str, key: str) -> None:
    import asyncio

    for _ in range(500):
        r = await client.get(url, headers=VMV)
        assert r.status_code == 200, r.text
        status = r.json()[key]["status"]
        if status == "available":
            return
        assert not status.startswith("error"), r.text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never available")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vols(pair: Pair) -> Vols:
    b, base = pair.b, vol(pair.project_b)

    async def made(url: str, body: Any, key: str) -> str:
        r = await b.post(f"{base}{url}", json=body, headers=VMV)
        assert r.status_code in (200, 202), r.text
        rid: str = r.json()[key]["id"]
        return rid

    volume = await made("/volumes", {"volume": {"size": 1, "name": "vol-b", "metadata": {"k": "v"}}}, "volume")
    await _vol_wait(b, f"{base}/volumes/{volume}", "volume")
    snapshot = await made("/snapshots", {"snapshot": {"volume_id": volume, "name": "snap-b", "metadata": {"k": "v"}}},
                          "snapshot")
    await _vol_wait(b, f"{base}/snapshots/{snapshot}", "snapshot")
    backup = await made("/backups", {"backup": {"volume_id": volume, "name": "backup-b"}}, "backup")
    await _vol_wait(b, f"{base}/backups/{backup}", "backup")
    await _vol_wait(b, f"{base}/volumes/{volume}", "volume")
    attached = await made("/volumes", {"volume": {"size": 1, "name": "att-b"}}, "volume")
    await _vol_wait(b, f"{base}/volumes/{attached}", "volume")
    attachment = await made("/attachments", {"attachment": {"volume_uuid": attached,
                                                            "instance_uuid": pair.server_b}}, "attachment")
    return Vols(volume, snapshot, backup, attachment, attached)


NOSERVER = "11111111-2222-4333-8444-555555555555"
# (method, URL under the project, body): every way to name B's volume, snapshot, backup or attachment.
VOLUME_PROBES: list[tuple[str, str, Any]] = [
    ("GET", "/volumes/{volume}", None),
    ("PUT", "/volumes/{volume}", {"volume": {"name": "stolen"}}),
    ("DELETE", "/volumes/{volume}", None),
    ("GET", "/volumes/{volume}/metadata", None),
    ("GET", "/volumes/{volume}/metadata/k", None),
    ("POST", "/volumes/{volume}/metadata", {"metadata": {"x": "y"}}),
    ("PUT", "/volumes/{volume}/metadata", {"metadata": {}}),
    ("PUT", "/volumes/{volume}/metadata/k", {"meta": {"k": "stolen"}}),
    ("DELETE", "/volumes/{volume}/metadata/k", None),
    ("POST", "/volumes/{volume}/action", {"os-extend": {"new_size": 2}}),
    ("POST", "/volumes/{volume}/action", {"os-attach": {"instance_uuid": NOSERVER, "mountpoint": "/dev/vdb"}}),
    ("POST", "/volumes/{volume}/action", {"os-reserve": {}}),
    ("POST", "/volumes/{volume}/action", {"os-set_bootable": {"bootable": True}}),
    ("POST", "/volumes/{volume}/action", {"os-update_readonly_flag": {"readonly": True}}),
    ("POST", "/volumes/{volume}/action", {"os-volume_upload_image": {"image_name": "steal"}}),
    ("POST", "/volumes/{volume}/action", {"os-initialize_connection": {"connector": {"host": "h"}}}),
    ("POST", "/volumes/{volume}/action", {"os-retype": {"new_type": "__DEFAULT__"}}),
    # clone, snapshot, back up or attach it, or make volumes of B's snapshot and backup
    ("POST", "/volumes", {"volume": {"size": 1, "source_volid": "{volume}"}}),
    ("POST", "/volumes", {"volume": {"snapshot_id": "{snapshot}"}}),
    ("POST", "/volumes", {"volume": {"backup_id": "{backup}"}}),
    ("POST", "/snapshots", {"snapshot": {"volume_id": "{volume}", "force": True}}),
    ("POST", "/backups", {"backup": {"volume_id": "{volume}", "force": True}}),
    ("POST", "/attachments", {"attachment": {"volume_uuid": "{volume}", "instance_uuid": NOSERVER}}),
    ("GET", "/snapshots/{snapshot}", None),
    ("PUT", "/snapshots/{snapshot}", {"snapshot": {"name": "stolen"}}),
    ("DELETE", "/snapshots/{snapshot}", None),
    ("GET", "/snapshots/{snapshot}/metadata", None),
    ("PUT", "/snapshots/{snapshot}/metadata/k", {"meta": {"k": "stolen"}}),
    ("GET", "/backups/{backup}", None),
    ("PUT", "/backups/{backup}", {"backup": {"name": "stolen"}}),
    ("DELETE", "/backups/{backup}", None),
    ("POST", "/backups/{backup}/restore", {"restore": {}}),
    ("GET", "/attachments/{attachment}", None),
    ("PUT", "/attachments/{attachment}", {"attachment": {"connector": {"host": "h"}}}),
    ("POST", "/attachments/{attachment}/action", {"os-complete": {}}),
    ("DELETE", "/attachments/{attachment}", None),
]


def _vfill(value: Any, v: Vols, missing: bool = False) -> Any:
    if isinstance(value, str):
        for name in ("volume", "snapshot", "backup", "attachment"):
            value = value.replace("{" + name + "}", str(uuid.uuid4()) if missing else getattr(v, name))
        return value
    if isinstance(value, dict):
        return {k: _vfill(x, v, missing) for k, x in value.items()}
    return value


@pytest.mark.parametrize(("method", "url", "body"), VOLUME_PROBES,
                         ids=[f"{m} {u} {b and next(iter(b.get('volume', b)))}" for m, u, b in VOLUME_PROBES])
async def test_other_projects_volumes_are_404(pair: Pair, vols: Vols, method: str, url: str, body: Any) -> None:
    base = vol(pair.project_a)
    r = await pair.a.request(method, base + _vfill(url, vols), json=_vfill(body, vols), headers=VMV)
    assert_fault(r, 404)
    assert r.json()["itemNotFound"]["message"], r.text
    # A reader may be refused a change first (403), but exactly as for an id that does not exist.
    r = await pair.a_reader.request(method, base + _vfill(url, vols), json=_vfill(body, vols), headers=VMV)
    missing = await pair.a_reader.request(method, base + _vfill(url, vols, True), json=_vfill(body, vols, True),
                                          headers=VMV)
    assert r.status_code in (403, 404), r.text
    assert_fault(r, missing.status_code)
    # Untouched: B still sees its resources as they were.
    bb = vol(pair.project_b)
    v = (await pair.b.get(f"{bb}/volumes/{vols.volume}", headers=VMV)).json()["volume"]
    assert v["name"] == "vol-b" and v["status"] == "available" and v["size"] == 1 and v["metadata"] == {"k": "v"}
    assert v["bootable"] == "false"
    s = (await pair.b.get(f"{bb}/snapshots/{vols.snapshot}", headers=VMV)).json()["snapshot"]
    assert s["name"] == "snap-b" and s["status"] == "available" and s["metadata"] == {"k": "v"}
    bk = (await pair.b.get(f"{bb}/backups/{vols.backup}", headers=VMV)).json()["backup"]
    assert bk["name"] == "backup-b" and bk["status"] == "available"
    att = (await pair.b.get(f"{bb}/attachments/{vols.attachment}", headers=VMV)).json()["attachment"]
    assert att["status"] == "reserved"


async def test_volume_lists_show_only_own_project(pair: Pair, vols: Vols) -> None:
    base = vol(pair.project_a)
    for url, key in (("/volumes", "volumes"), ("/volumes/detail", "volumes"), ("/snapshots/detail", "snapshots"),
                     ("/backups/detail", "backups"), ("/attachments", "attachments")):
        for params in ({}, {"all_tenants": "1"}, {"project_id": pair.project_b}, {"all_tenants": "1", "project_id": pair.project_b},
                       {"name": "vol-b"}):
            for client in (pair.a, pair.a_reader):
                r = await client.get(base + url, params=params, headers=VMV)
                assert r.status_code == 200, r.text
                ids = {x["id"] for x in r.json()[key]}
                assert not ids & {vols.volume, vols.attached, vols.snapshot, vols.backup, vols.attachment}, (url, params)
    r = await pair.a.get(f"{base}/volumes/summary", params={"all_tenants": "1"}, headers=VMV)
    assert r.json()["volume-summary"]["total_count"] == 0
    # An admin does see B's with all_tenants (3.67: no project in the URL).
    r = await pair.admin.get("/volume/v3/volumes/detail", params={"all_tenants": "1"}, headers=VMV)
    assert r.status_code == 200, r.text
    assert {vols.volume, vols.attached} <= {x["id"] for x in r.json()["volumes"]}


async def test_other_projects_url_and_quotas_are_refused(pair: Pair, vols: Vols) -> None:
    # A's token on B's URL: Cinder refuses the project mismatch (400), and never serves B's data.
    r = await pair.a.get(f"{vol(pair.project_b)}/volumes/{vols.volume}", headers=VMV)
    assert r.status_code in (400, 403, 404), r.text
    assert_fault(r, r.status_code)
    base = vol(pair.project_a)
    for method, body in (("GET", None), ("PUT", {"quota_set": {"volumes": 100}}), ("DELETE", None)):
        r = await pair.a.request(method, f"{base}/os-quota-sets/{pair.project_b}", json=body, headers=VMV)
        assert_fault(r, 403)
    r = await pair.b.get(f"{vol(pair.project_b)}/os-quota-sets/{pair.project_b}", params={"usage": "true"}, headers=VMV)
    q = r.json()["quota_set"]
    assert q["volumes"]["limit"] == 10 and q["volumes"]["in_use"] == 2


async def test_another_projects_volume_cannot_be_attached_to_own_server(pair: Pair, vols: Vols) -> None:
    """Nova's side: A's own server, B's volume (and B's attached one) -> 404, nothing attached."""
    for vid in (vols.volume, vols.attached, str(uuid.uuid4())):
        r = await pair.a.post(f"{API}/servers/{pair.server_a}/os-volume_attachments",
                              json={"volumeAttachment": {"volumeId": vid}}, headers=mv("2.79"))
        assert_fault(r, 404)
    r = await pair.a.get(f"{API}/servers/{pair.server_a}/os-volume_attachments")
    assert r.status_code == 200 and r.json()["volumeAttachments"] == [], r.text
    # B's server is 404 to A whatever the volume
    r = await pair.a.post(f"{API}/servers/{pair.server_b}/os-volume_attachments",
                          json={"volumeAttachment": {"volumeId": vols.volume}})
    assert_fault(r, 404)
    v = (await pair.b.get(f"{vol(pair.project_b)}/volumes/{vols.volume}", headers=VMV)).json()["volume"]
    assert v["status"] == "available" and v["attachments"] == []


# ---- PaaS (issue 13, acceptance 6): B's catalogue and inventory are 404 to A, whatever the path ------


PAAS = "/paas/rest"


@dataclass
class Paas:
    task: int  # B's task id
    node: str = "b-shop-web-1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def paas(pair: Pair) -> Paas:
    """B's product, environment, and (written as an engine would) instance, node, product instance,
    application, event and task."""
    from cumulo.db import new_uuid, utcnow
    from cumulo.paas import models as m

    r = await pair.b.post(f"{PAAS}/catalog/productRelease", json={"productName": "iso-kv", "version": "1.0"})
    assert r.status_code == 204, r.text
    tier = {"name": "web", "flavour": "1", "image": "busybox", "productReleaseDtos": [{"productName": "iso-kv"}]}
    r = await pair.b.post(f"{PAAS}/catalog/org/default/environment", json={"name": "shop", "tierDtos": [tier]})
    assert r.status_code == 204, r.text
    inst, node, pi = new_uuid(), new_uuid(), new_uuid()
    env = {"name": "shop", "description": "", "tiers": [{**tier, "products": [{"name": "iso-kv", "version": "1.0"}]}]}
    async with pair.cloud.db.write() as conn:
        await conn.execute(m.paas_env_instances.insert().values(
            id=inst, project_id=pair.project_b, user_id="u", name="b-shop", environment_name="shop", environment=env,
            status="INSTALLED"))
        await conn.execute(m.paas_tier_instances.insert().values(
            id=node, env_instance_id=inst, tier="web", replica=1, name="b-shop-web-1", status="INSTALLED"))
        await conn.execute(m.paas_product_instances.insert().values(
            id=pi, tier_instance_id=node, env_instance_id=inst, product="iso-kv", version="1.0", status="INSTALLED"))
        await conn.execute(m.paas_applications.insert().values(
            id=new_uuid(), env_instance_id=inst, name="site", product="iso-kv", status="ARTEFACT_DEPLOYED"))
        await conn.execute(m.paas_events.insert().values(
            env_instance_id=inst, project_id=pair.project_b, tier="web", decision="no_action", reason="quiet"))
        res = await conn.execute(m.paas_tasks.insert().values(
            project_id=pair.project_b, user_id="u", kind="deploy", status="SUCCESS", env_instance_id=inst,
            env_instance_name="b-shop", start_time=utcnow()))
    return Paas(int(res.inserted_primary_key[0]))


def _paas_probes(project: str, task: int) -> list[tuple[str, str, Any]]:
    env = f"{PAAS}/catalog/org/default/environment/shop"
    venv = f"{PAAS}/catalog/org/default/vdc/{project}/environment/shop"
    inst = f"{PAAS}/envInst/org/default/vdc/{project}/environmentInstance/b-shop"
    node = f"{inst}/tierInstance/b-shop-web-1"
    return [
        ("GET", f"{PAAS}/catalog/productRelease/iso-kv-1.0", None),
        ("DELETE", f"{PAAS}/catalog/productRelease/iso-kv-1.0", None),
        *[(mth, path, body) for base in (env, venv) for mth, path, body in (
            ("GET", base, None), ("DELETE", base, None), ("GET", f"{base}/tier", None),
            ("POST", f"{base}/tier", {"name": "x", "flavour": "1", "image": "i"}), ("GET", f"{base}/tier/web", None),
            ("PUT", f"{base}/tier/web", {"name": "web", "flavour": "1", "image": "i"}),
            ("DELETE", f"{base}/tier/web", None), ("GET", f"{base}/tier/web/productRelease", None),
            ("POST", f"{base}/tier/web/productRelease", {"productName": "iso-kv"}),
            ("DELETE", f"{base}/tier/web/productRelease/iso-kv", None))],
        ("GET", inst, None), ("DELETE", inst, None),
        ("GET", f"{inst}/tierInstance", None), ("POST", f"{inst}/tierInstance", {"name": "web"}),
        ("GET", node, None), ("DELETE", node, None),
        ("GET", f"{node}/productInstance", None), ("GET", f"{node}/productInstance/iso-kv", None),
        ("GET", f"{inst}/applicationInstance", None), ("GET", f"{inst}/applicationInstance/site", None),
        ("DELETE", f"{inst}/applicationInstance/site", None),
        ("POST", f"{inst}/tier/web/scale", {"count": 2}), ("GET", f"{inst}/event", None),
        ("GET", f"{PAAS}/vdc/{project}/task/{task}", None),
        ("GET", f"{PAAS}/vdc/{project}/task/environmentInstance/b-shop", None),
    ]


async def test_other_projects_paas_resources_are_404(pair: Pair, paas: Paas) -> None:
    for project in (pair.project_a, pair.project_b):  # A's own vdc in the path, and B's
        for method, path, body in _paas_probes(project, paas.task):
            if project == pair.project_a and path.endswith("/task/environmentInstance/b-shop"):
                r = await pair.a.get(path)  # a list: empty, not an error
                assert r.status_code == 200 and r.json() == [], r.text
                continue
            for client in (pair.a, pair.a_reader):
                r = await client.request(method, path, json=body)
                if client is pair.a_reader and r.status_code == 403:
                    continue  # a reader's write: refused by policy before any lookup
                assert_fault(r, 404)
    # A's lists show nothing of B's
    a = pair.a
    assert "iso-kv" not in [p["productName"] for p in (await a.get(f"{PAAS}/catalog/productRelease")).json()]
    assert (await a.get(f"{PAAS}/catalog/org/default/environment")).json() == []
    assert (await a.get(f"{PAAS}/envInst/org/default/vdc/{pair.project_a}/environmentInstance")).json() == []
    assert paas.task not in [int(t["href"].rsplit("/", 1)[1]) for t in (await a.get(f"{PAAS}/vdc/{pair.project_a}/task")).json()]
    # A may even create its own of the same names
    assert (await a.post(f"{PAAS}/catalog/productRelease", json={"productName": "iso-kv", "version": "1.0"})).status_code == 204
    # B's are untouched
    b, inst = pair.b, f"{PAAS}/envInst/org/default/vdc/{pair.project_b}/environmentInstance/b-shop"
    assert (await b.get(inst)).json()["status"] == "INSTALLED"
    assert (await b.get(f"{inst}/tierInstance/{paas.node}")).status_code == 200
    assert (await b.get(f"{PAAS}/catalog/org/default/environment/shop/tier/web")).status_code == 200
    assert (await b.get(f"{PAAS}/vdc/{pair.project_b}/task/{paas.task}")).json()["status"] == "SUCCESS"
    assert len((await b.get(f"{inst}/event")).json()) == 1
