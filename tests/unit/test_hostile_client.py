"""What a hostile client found (issue 8, section 1, items 3 and 4), on the whole cloud.

- A body without Content-Length (chunked) is counted while it streams: past the route's limit the
  server stops reading and answers 413 in the family's fault format, without pulling the rest.
  JSON routes allow 1 MiB; image data uploads stream to disk up to `image_size_cap`.
- A lone UTF-16 surrogate ("\\ud800") anywhere in a JSON body, key or value, is a 400 in the
  family's fault format (it used to be a 500 and a dropped connection).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fuzz_support import API, FLAVOR, World, assert_fault, start_world
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import conf as conf_mod
from cumulo.web.http import MAX_JSON_BODY, family_app, json_body, json_response

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMG = "/image/v2"
IDN = "/identity/v3"
VOL = "/volume/v3/{project}"  # Cinder's URLs name the caller's project
ADMIN_VOL = "/volume/v3/{admin_project}"
JSONH = {"Content-Type": "application/json"}
PATCHH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OCTET = {"Content-Type": "application/octet-stream"}
CHUNK = 64 << 10
OCCI = "/occi"
OJSONH = {"Content-Type": "application/occi+json", "Accept": "application/occi+json"}
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
PAAS = "/paas/rest"
PINST = f"{PAAS}/envInst/org/default/vdc/{{project}}/environmentInstance"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("hostile")):
        yield w


class Counting:
    """A streamed body of `total` bytes (so no Content-Length) that counts the chunks pulled."""

    def __init__(self, total: int, head: bytes = b"", chunk: int = CHUNK) -> None:
        self.total, self.head, self.chunk, self.pulled = total, head, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        if self.head:
            self.pulled += 1
            sent += len(self.head)
            yield self.head
        while sent < self.total:
            self.pulled += 1
            piece = b"x" * min(self.chunk, self.total - sent)
            sent += len(piece)
            yield piece

    @property
    def max_chunks(self) -> int:
        return -(-self.total // self.chunk) + 1


def _anon(w: World) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=w.cloud.asgi_app()), base_url="http://cumulo.test")


def _bounded(body: Counting, limit: int) -> None:
    """The server stopped reading soon after the limit: far from all of the body."""
    assert body.pulled <= limit // body.chunk + 3, (body.pulled, body.max_chunks)
    assert body.pulled < body.max_chunks


# ---- item 3: bodies are limited while they stream ---------------------------------------------


STREAMED = [
    ("anon", "POST", f"{IDN}/auth/tokens", JSONH, b'{"auth": {"identity": {"methods": ["password"], "x": "'),
    ("admin", "POST", f"{IDN}/projects", JSONH, b'{"project": {"name": "'),
    ("member", "POST", f"{API}/servers", JSONH, b'{"server": {"name": "'),
    ("member", "POST", f"{API}/servers/{{server}}/action", JSONH, b'{"os-stop": "'),
    ("member", "POST", f"{IMG}/images", JSONH, b'{"name": "'),
    ("member", "PATCH", f"{IMG}/images/{{image}}", PATCHH, b'[{"op": "replace", "path": "/name", "value": "'),
    ("member", "POST", f"{VOL}/volumes", JSONH, b'{"volume": {"size": 1, "name": "'),
    ("member", "POST", f"{VOL}/snapshots", JSONH, b'{"snapshot": {"volume_id": "'),
    ("member", "POST", f"{OCCI}/compute/", OJSONH, b'{"kind": "' + INFRA.encode() + b'compute", "title": "'),
    ("member", "POST", f"{OCCI}/storage/", {"Content-Type": "text/plain"}, b'Category: storage; scheme="' + INFRA.encode() + b'"\nX-OCCI-Attribute: occi.core.title="'),
    ("member", "POST", f"{OCCI}/-/", OJSONH, b'{"mixins": [{"term": "t", "scheme": "http://e.org/t#", "location": "/'),
    ("admin", "PUT", f"{ADMIN_VOL}/os-quota-sets/{{project}}", JSONH, b'{"quota_set": {"volumes": "'),
    ("member", "GET", f"{VOL}/volumes/detail", JSONH, b""),
    # Routes that never read a body must not buffer one either (the limit holds for every route).
    ("member", "GET", f"{API}/servers", JSONH, b""),
    ("anon", "GET", f"{IDN}/", JSONH, b""),
    ("member", "GET", f"{OCCI}/compute/", {"Accept": "text/uri-list"}, b""),
    ("member", "POST", f"{PAAS}/catalog/productRelease", JSONH, b'{"productName": "'),
    ("member", "POST", f"{PAAS}/catalog/org/default/environment", JSONH, b'{"name": "e", "tierDtos": [{"name": "'),
    ("member", "POST", f"{PINST}", JSONH, b'{"blueprintName": "'),
    ("member", "POST", f"{PINST}/none/applicationInstance", JSONH,
     b'{"applicationName": "a", "artifactsDto": [{"path": "data:application/gzip;base64,'),
    ("member", "GET", f"{PAAS}/vdc/{{project}}/task", JSONH, b""),
]


@pytest.mark.parametrize(("role", "method", "url", "headers", "head"), STREAMED, ids=[f"{m} {u}" for _, m, u, _, _ in STREAMED])
async def test_chunked_json_body_over_the_limit_is_413_while_streaming(
    world: World, role: str, method: str, url: str, headers: dict[str, str], head: bytes
) -> None:
    await world.ensure()
    url = _fill(url, world)
    client = _anon(world) if role == "anon" else world.clients[role]
    body = Counting(5 << 20, head)
    resp = await client.request(method, url, content=body, headers=headers)
    assert "content-length" not in {k.lower() for k in resp.request.headers}
    if method == "GET":
        # Nothing reads the body: the answer comes without pulling it at all (beyond what the
        # transport hands over before the app runs).
        assert resp.status_code < 500, resp.text
        assert body.pulled <= 2, body.pulled
        return
    assert_fault(resp, 413)
    _bounded(body, MAX_JSON_BODY)


async def test_declared_length_over_the_limit_is_413_before_reading(world: World) -> None:
    body = Counting(64 << 10, b'{"auth": "')
    resp = await _anon(world).post(
        f"{IDN}/auth/tokens", content=body, headers={**JSONH, "Content-Length": str(200 << 20)}
    )
    assert_fault(resp, 413)
    assert body.pulled <= 1


async def test_a_route_that_buffers_the_whole_body_is_still_bounded() -> None:
    """The family app limits every route, even one that calls request.body() itself."""

    async def greedy(request: Request) -> Response:
        raw = await request.body()
        return json_response({"size": len(raw)})

    async def via_json_body(request: Request) -> Response:
        return json_response({"got": await json_body(request)})

    def fault(status: int, message: str, request: Request) -> Response:
        return json_response({"error": {"code": status, "message": message}}, status=status)

    app = family_app(None, [Route("/greedy", greedy, methods=["POST"]), Route("/json", via_json_body, methods=["POST"])], fault)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = Counting(5 << 20)
        r = await c.post("/greedy", content=body)
        assert r.status_code == 413 and r.json()["error"]["code"] == 413, r.text
        assert "1 MiB" in r.json()["error"]["message"]
        _bounded(body, MAX_JSON_BODY)
        # Within the limit, chunked bodies arrive whole.
        ok = Counting(MAX_JSON_BODY - 10)
        r = await c.post("/greedy", content=ok)
        assert r.status_code == 200 and r.json() == {"size": MAX_JSON_BODY - 10}

        async def doc() -> AsyncIterator[bytes]:
            for piece in (b'{"a": ', b"[1, 2", b"]}"):
                yield piece

        r = await c.post("/json", content=doc())
        assert r.status_code == 200 and r.json() == {"got": {"a": [1, 2]}}


async def test_image_upload_has_its_own_limit(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Image data streams to disk up to image_size_cap (Glance's option), not the JSON limit;
    past the cap: 413 at once, no partial file, and the image is queued again."""
    await world.ensure()
    images = world.cloud.services.images
    r = await world.member.post(f"{IMG}/images", json={"name": "big", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    # 3 MiB (over the JSON limit) fits the default cap.
    r = await world.member.put(f"{IMG}/images/{image_id}/file", content=Counting(3 << 20), headers=OCTET)
    assert r.status_code == 204, r.text
    assert (await world.member.get(f"{IMG}/images/{image_id}")).json()["size"] == 3 << 20

    monkeypatch.setattr(images, "size_cap", 1 << 20)
    r = await world.member.post(f"{IMG}/images", json={"name": "big2", "disk_format": "raw", "container_format": "bare"})
    image_id = r.json()["id"]
    body = Counting(8 << 20)
    r = await world.member.put(f"{IMG}/images/{image_id}/file", content=body, headers=OCTET)
    assert_fault(r, 413)
    _bounded(body, 1 << 20)
    assert (await world.member.get(f"{IMG}/images/{image_id}")).json()["status"] == "queued"
    assert list(images.store.tmp_dir.iterdir()) == []


async def test_image_size_cap_is_a_setting() -> None:
    assert conf_mod.load(env={}).image_size_cap == 1 << 40  # Glance's default: 1 TiB
    assert conf_mod.load(env={"CUMULO_IMAGE_SIZE_CAP": "12345"}).image_size_cap == 12345


# ---- item 4: lone surrogates ------------------------------------------------------------------

S = "\ud800"

# (role, method, url, body with a lone surrogate, headers): fields across the three families.
SURROGATES: dict[str, tuple[str, str, str, Any, dict[str, str]]] = {
    "identity-token-user-name": ("anon", "POST", f"{IDN}/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": S, "domain": {"id": "default"}, "password": "x"}}}}}, JSONH),
    "identity-token-password": ("anon", "POST", f"{IDN}/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "admin", "domain": {"id": "default"}, "password": "a" + S}}}}}, JSONH),
    "identity-token-domain": ("anon", "POST", f"{IDN}/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "admin", "domain": {"name": S}, "password": "x"}}}}}, JSONH),
    "identity-token-id": ("anon", "POST", f"{IDN}/auth/tokens", {"auth": {"identity": {"methods": ["token"], "token": {"id": S}}}}, JSONH),
    "identity-project-name": ("admin", "POST", f"{IDN}/projects", {"project": {"name": "p" + S}}, JSONH),
    "identity-project-description": ("admin", "POST", f"{IDN}/projects", {"project": {"name": "p", "description": S}}, JSONH),
    "identity-user-name": ("admin", "POST", f"{IDN}/users", {"user": {"name": S}}, JSONH),
    "identity-role-name": ("admin", "POST", f"{IDN}/roles", {"role": {"name": S}}, JSONH),
    "identity-key": ("admin", "POST", f"{IDN}/projects", {"project": {"name": "p", S: 1}}, JSONH),
    "compute-server-name": ("member", "POST", f"{API}/servers", {"server": {"name": S, "imageRef": "{image}", "flavorRef": FLAVOR}}, JSONH),
    "compute-server-metadata-key": ("member", "POST", f"{API}/servers", {"server": {
        "name": "s", "imageRef": "{image}", "flavorRef": FLAVOR, "metadata": {S: "v"}}}, JSONH),
    "compute-server-update": ("member", "PUT", f"{API}/servers/{{server}}", {"server": {"name": S}}, JSONH),
    "compute-metadata-value": ("member", "POST", f"{API}/servers/{{server}}/metadata", {"metadata": {"k": S}}, JSONH),
    "compute-snapshot-name": ("member", "POST", f"{API}/servers/{{server}}/action", {"createImage": {"name": S}}, JSONH),
    "compute-action-name": ("member", "POST", f"{API}/servers/{{server}}/action", {S: None}, JSONH),
    "compute-keypair-name": ("member", "POST", f"{API}/os-keypairs", {"keypair": {"name": S}}, JSONH),
    "compute-flavor-name": ("admin", "POST", f"{API}/flavors", {"flavor": {"name": S, "ram": 64, "vcpus": 1, "disk": 1}}, JSONH),
    "image-name": ("member", "POST", f"{IMG}/images", {"name": S}, JSONH),
    "image-property": ("member", "POST", f"{IMG}/images", {"name": "i", "colour": S}, JSONH),
    "image-property-key": ("member", "POST", f"{IMG}/images", {"name": "i", S: "v"}, JSONH),
    "image-tag": ("member", "POST", f"{IMG}/images", {"name": "i", "tags": [S]}, JSONH),
    "image-patch-value": ("member", "PATCH", f"{IMG}/images/{{image}}", [{"op": "replace", "path": "/name", "value": S}], PATCHH),
    "image-patch-path": ("member", "PATCH", f"{IMG}/images/{{image}}", [{"op": "add", "path": "/x" + S, "value": "v"}], PATCHH),
    "image-member": ("member", "POST", f"{IMG}/images/{{image}}/members", {"member": S}, JSONH),
    "volume-name": ("member", "POST", f"{VOL}/volumes", {"volume": {"size": 1, "name": S}}, JSONH),
    "volume-description": ("member", "POST", f"{VOL}/volumes", {"volume": {"size": 1, "description": "d" + S}}, JSONH),
    "volume-metadata-key": ("member", "POST", f"{VOL}/volumes", {"volume": {"size": 1, "metadata": {S: "v"}}}, JSONH),
    "volume-metadata-value": ("member", "POST", f"{VOL}/volumes", {"volume": {"size": 1, "metadata": {"k": S}}}, JSONH),
    "volume-key": ("member", "POST", f"{VOL}/volumes", {"volume": {"size": 1, S: 1}}, JSONH),
    "volume-type-name": ("member", "POST", f"{VOL}/volumes", {"volume": {"size": 1, "volume_type": S}}, JSONH),
    "volume-snapshot-name": ("member", "POST", f"{VOL}/snapshots", {"snapshot": {"volume_id": S, "name": S}}, JSONH),
    "volume-backup-name": ("member", "POST", f"{VOL}/backups", {"backup": {"volume_id": S, "name": S}}, JSONH),
    "volume-action-name": ("member", "POST", f"{VOL}/volumes/{{volume}}/action", {S: {}}, JSONH),
    "volume-action-value": ("member", "POST", f"{VOL}/volumes/{{volume}}/action", {"os-volume_upload_image": {"image_name": S}}, JSONH),
    "volume-update-name": ("member", "PUT", f"{VOL}/volumes/{{volume}}", {"volume": {"name": S}}, JSONH),
    "volume-metadata-post": ("member", "POST", f"{VOL}/volumes/{{volume}}/metadata", {"metadata": {"k": S}}, JSONH),
    "volume-type-create": ("admin", "POST", f"{ADMIN_VOL}/types", {"volume_type": {"name": S}}, JSONH),
    "volume-type-extra-spec": ("admin", "POST", f"{ADMIN_VOL}/types", {"volume_type": {"name": "t", "extra_specs": {S: "v"}}}, JSONH),
    "occi-compute-title": ("member", "POST", f"{OCCI}/compute/", {"kind": INFRA + "compute", "title": S}, OJSONH),
    "occi-attribute-name": ("member", "POST", f"{OCCI}/storage/", {"kind": INFRA + "storage", "attributes": {S: 1}}, OJSONH),
    "occi-attribute-value": ("member", "POST", f"{OCCI}/storage/", {
        "kind": INFRA + "storage", "attributes": {"occi.storage.size": 1, "occi.core.summary": S}}, OJSONH),
    "occi-update": ("member", "POST", f"{OCCI}/compute/{{server}}", {"attributes": {"occi.core.title": S}}, OJSONH),
    "occi-action": ("member", "POST", f"{OCCI}/compute/{{server}}?action=save", {"action": S}, OJSONH),
    "occi-mixin-define": ("member", "POST", f"{OCCI}/-/", {"mixins": [{"term": "t", "scheme": "http://e.org/t#",
                                                                         "location": "/t" + S + "/"}]}, OJSONH),
    "paas-product-name": ("member", "POST", f"{PAAS}/catalog/productRelease", {"productName": S, "version": "1"}, JSONH),
    "paas-attribute-key": ("member", "POST", f"{PAAS}/catalog/productRelease", {
        "productName": "p", "version": "1", "attributes": [{"key": S, "value": "v"}]}, JSONH),
    "paas-recipe": ("member", "POST", f"{PAAS}/catalog/productRelease", {
        "productName": "p", "version": "1", "recipes": {"install": "echo " + S}}, JSONH),
    "paas-environment-description": ("member", "POST", f"{PAAS}/catalog/org/default/environment", {
        "name": "e", "description": S, "tierDtos": []}, JSONH),
    "paas-tier-key": ("member", "POST", f"{PAAS}/catalog/org/default/environment", {
        "name": "e", "tierDtos": [{"name": "t", "flavour": "f", "image": "i", S: 1}]}, JSONH),
    "paas-blueprint": ("member", "POST", PINST, {"blueprintName": S, "environmentDto": {"name": "e"}}, JSONH),
    "paas-scale": ("member", "POST", f"{PINST}/none/tier/web/scale", {"remove": S}, JSONH),
}


_VOLUMES: dict[str, str] = {}  # world's cloud id -> a volume of project A, made once


async def _volume(w: World) -> str:
    key = str(w.cloud.conf.state_dir)
    if key not in _VOLUMES:
        r = await w.member.post(f"/volume/v3/{w.project}/volumes", json={"volume": {"size": 1, "name": "hostile"}})
        assert r.status_code == 202, r.text
        _VOLUMES[key] = r.json()["volume"]["id"]
    return _VOLUMES[key]


def _fill(value: Any, w: World) -> Any:
    if isinstance(value, str):
        return (value.replace("{image}", w.image_id).replace("{server}", w.server_id)
                .replace("{volume}", _VOLUMES.get(str(w.cloud.conf.state_dir), "none"))
                .replace("{admin_project}", w.admin_project).replace("{project}", w.project))
    if isinstance(value, dict):
        return {_fill(k, w): _fill(v, w) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, w) for v in value]
    return value


@pytest.mark.parametrize("name", list(SURROGATES))
@pytest.mark.parametrize("encoding", ["escape", "utf8"])
async def test_lone_surrogate_is_400(world: World, name: str, encoding: str) -> None:
    await world.ensure()
    role, method, url, body, headers = SURROGATES[name]
    await _volume(world)
    raw = json.dumps(_fill(body, world)).encode()  # "\ud800" as a JSON escape
    if encoding == "utf8":  # the same code point as (invalid) UTF-8 bytes: ED A0 80
        raw = json.dumps(_fill(body, world), ensure_ascii=False).encode("utf-8", "surrogatepass")
    client = _anon(world) if role == "anon" else world.clients[role]
    try:
        resp = await client.request(method, _fill(url, world), content=raw, headers=headers)
    except Exception as exc:  # the app crashed: a real server answers 500 and drops the connection
        raise AssertionError(f"{name}: app raised {exc!r}") from exc
    assert_fault(resp, 400)
    assert "surrogate" in resp.text or "UTF-8" in resp.text, resp.text


async def test_surrogate_pairs_are_fine(world: World) -> None:
    """A well-formed pair ("\\ud83d\\ude00", an emoji) is ordinary text."""
    await world.ensure()
    resp = await world.member.post(f"{IMG}/images", content=b'{"name": "smile \\ud83d\\ude00"}', headers=JSONH)
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == "smile \U0001f600"


async def test_a_surrogate_that_reaches_a_response_is_escaped_not_a_crash() -> None:
    """Belt and braces: the response encoder never raises on a lone surrogate (it escapes it)."""
    body = json_response({"name": "a\ud800b"}).body
    assert body == b'{"name":"a\\ud800b"}'
    assert json_response({"name": "ü"}).body == '{"name":"ü"}'.encode()
