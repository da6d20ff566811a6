"""Schema-driven fuzz of the compute API: for every operation of the OpenAPI document (at the
maximum microversion, and at 2.1), as a member, a reader and an admin, hypothesis sends valid,
broken and malformed requests. Nothing may answer 5xx; every 4xx is a Nova fault."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
from fuzz_support import FLAVOR, World, call_strategy, check, operations, send, start_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from cumulo.compute.api import openapi_ops
from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.web.openapi import build_openapi

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOC = build_openapi([openapi_ops.FAMILY], axis=MICROVERSIONS)
DOC_21 = build_openapi([openapi_ops.FAMILY], axis=MICROVERSIONS, version="2.1")
FAULT = DOC["components"]["schemas"]["ComputeFault"]
ROLES = ("member", "reader", "admin")

FUZZ = settings(
    max_examples=int(os.environ.get("CUMULO_FUZZ_EXAMPLES", "8")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("fuzz-compute")):
        yield w


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(world: World) -> World:
    await world.ensure()
    await world.volume_ids()
    return world


def _refs(w: World) -> dict[str, list[Any]]:
    return {
        "imageRef": [w.image_id, *w.ids.get("public_image", [])],
        "flavorRef": ["1", "42", FLAVOR, "http://cumulo.test/compute/v2.1/flavors/fuzz"],
        "key_name": [w.keypair],
        "availability_zone": ["nova"],
        "tenant": [w.other_project],
        "networks": ["auto", "none"],
        "volumeId": w.ids.get("volume_id", []),
        "volume_id": w.ids.get("volume_id", [])[:1],
        "snapshot_id": w.ids.get("snapshot_id", []),
    }


_ACTIONS: list[Any] = [
    {"os-stop": None}, {"os-start": None}, {"reboot": {"type": "SOFT"}}, {"reboot": {"type": "HARD"}},
    {"lock": None}, {"unlock": None}, {"pause": None}, {"unpause": None}, {"suspend": None}, {"resume": None},
    {"createImage": {"name": "fuzz-snap"}}, {"os-getConsoleOutput": {"length": 10}}, {"os-getConsoleOutput": {}},
    {"resize": {"flavorRef": "1"}}, {"confirmResize": None}, {"revertResize": None},
    {"createBackup": {"name": "fuzz-backup", "backup_type": "daily", "rotation": 1}}, {"restore": None},
]


def _seeds(w: World, method: str, path: str) -> Any:
    """Known-good bodies per operation, built when drawn (the world's ids change)."""
    table = {
        ("post", "/compute/v2.1/servers"): lambda: [
            {"server": {"name": "fz", "imageRef": w.image_id, "flavorRef": FLAVOR}},
            {"server": {"name": "fz", "imageRef": w.image_id, "flavorRef": FLAVOR, "networks": "auto",
                        "metadata": {"a": "b"}, "key_name": w.keypair, "availability_zone": "nova"}},
            {"server": {"name": "fz", "imageRef": w.image_id, "flavorRef": FLAVOR, "networks": "none",
                        "min_count": 2, "max_count": 3}},
        ],
        ("post", "/compute/v2.1/servers/{server_id}/action"): lambda: [
            *_ACTIONS, {"rebuild": {"imageRef": w.image_id}}, {"rebuild": {"imageRef": w.image_id, "name": "re"}},
        ],
        ("put", "/compute/v2.1/servers/{server_id}"): lambda: [{"server": {"name": "renamed"}}],
        ("post", "/compute/v2.1/os-keypairs"): lambda: [
            {"keypair": {"name": "fz-new"}}, {"keypair": {"name": "fz-ed", "key_algorithm": "ed25519"}},
        ],
        ("post", "/compute/v2.1/flavors/{flavor_id}/action"): lambda: [
            {"addTenantAccess": {"tenant": w.other_project}}, {"removeTenantAccess": {"tenant": w.other_project}},
        ],
        ("put", "/compute/v2.1/os-services/{service_id}"): lambda: [
            {"status": "disabled", "disabled_reason": "fuzz"}, {"status": "enabled"}, {"forced_down": True},
            {"host": w.cloud.conf.host_name, "binary": "nova-compute"},
        ],
        ("put", "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}"): lambda: [{"k": "v2"}],
        ("put", "/compute/v2.1/servers/{server_id}/metadata/{key}"): lambda: [{"meta": {"k": "v2"}}],
        ("put", "/compute/v2.1/os-quota-sets/{project_id}"): lambda: [
            {"quota_set": {"instances": 30}}, {"quota_set": {"cores": -1, "ram": 100000}}, {"quota_set": {"key_pairs": 50, "force": True}},
        ],
        ("put", "/compute/v2.1/images/{image_id}/metadata/{key}"): lambda: [{"meta": {"k": "v2"}}],
        ("post", "/compute/v2.1/images/{image_id}/metadata"): lambda: [{"metadata": {"k": "v"}}],
        ("post", "/compute/v2.1/os-security-groups"): lambda: [{"security_group": {"name": "fz-sg", "description": "d"}}],
        ("put", "/compute/v2.1/os-security-groups/{group_id}"): lambda: [
            {"security_group": {"name": "fuzz-sg", "description": "again"}}],
        ("post", "/compute/v2.1/os-security-group-rules"): lambda: [
            {"security_group_rule": {"parent_group_id": gid, "ip_protocol": "tcp", "from_port": 80, "to_port": 80}}
            for gid in w.ids.get("group_id", [])[:1]],
        ("post", "/compute/v2.1/os-floating-ips"): lambda: [{}],
        ("post", "/compute/v2.1/servers/{server_id}/os-interface"): lambda: [{"interfaceAttachment": {}}],
        ("put", "/compute/v2.1/images/{image_id}/metadata"): lambda: [{"metadata": {"k": "v"}}],
        ("post", "/compute/v2.1/servers/{server_id}/os-volume_attachments"): lambda: [
            {"volumeAttachment": {"volumeId": vid}} for vid in w.ids.get("volume_id", [])[:1]],
        ("put", "/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}"): lambda: [
            {"volumeAttachment": {"volumeId": vid}} for vid in w.ids.get("volume_id", [])[1:]],
        ("post", "/compute/v2.1/os-volumes"): lambda: [{"volume": {"size": 1, "display_name": "fz"}}],
        ("post", "/compute/v2.1/os-snapshots"): lambda: [
            {"snapshot": {"volume_id": vid, "display_name": "fz"}} for vid in w.ids.get("volume_id", [])[:1]],
    }
    return table.get((method, path))


_STRATEGIES: dict[tuple[str, str, str], Any] = {}


def _strategy(w: World, doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> Any:
    version = doc["info"]["x-openstack-compute-microversion"]
    key = (version, path, method)
    if key not in _STRATEGIES:
        headers = {"OpenStack-API-Version": f"compute {version}"}
        _STRATEGIES[key] = call_strategy(path, method, op, w.ids, _refs(w), headers, _seeds(w, method, path))
    return _STRATEGIES[key]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "method", "op"), operations(DOC), ids=[o["operationId"] for _, _, o in operations(DOC)])
@FUZZ
@given(data=st.data())
async def test_compute_latest(fresh: World, path: str, method: str, op: dict[str, Any], role: str, data: Any) -> None:
    call = data.draw(_strategy(fresh, DOC, path, method, op))
    check(await send(fresh.clients[role], call, path), call, FAULT, role)


@pytest.mark.parametrize(("path", "method", "op"), operations(DOC_21), ids=[o["operationId"] for _, _, o in operations(DOC_21)])
@FUZZ
@given(data=st.data())
async def test_compute_v21(fresh: World, path: str, method: str, op: dict[str, Any], data: Any) -> None:
    call = data.draw(_strategy(fresh, DOC_21, path, method, op))
    role = data.draw(st.sampled_from(ROLES))
    check(await send(fresh.clients[role], call, path), call, FAULT, role)


# os-volume_attachments between 2.1 and the newest: the attach body takes tag from 2.49; tag is shown from 2.70.
_ATTACH_MID = [(version, path, method, o) for version in ("2.49", "2.70")
               for path, method, o in operations(build_openapi([openapi_ops.FAMILY], axis=MICROVERSIONS, version=version))
               if "os-volume_attachments" in path]


@pytest.mark.parametrize(("version", "path", "method", "op"), _ATTACH_MID,
                         ids=[f"{ver}-{o['operationId']}" for ver, _, _, o in _ATTACH_MID])
@FUZZ
@given(data=st.data())
async def test_compute_volume_attachments_mid(fresh: World, version: str, path: str, method: str, op: dict[str, Any],
                                              data: Any) -> None:
    call = data.draw(_strategy(fresh, {"info": {"x-openstack-compute-microversion": version}}, path, method, op))
    role = data.draw(st.sampled_from(ROLES))
    check(await send(fresh.clients[role], call, path), call, FAULT, role)


CORE = [
    ("POST", "/compute/v2.1/servers"), ("GET", "/compute/v2.1/servers/detail"), ("GET", "/compute/v2.1/servers/{server_id}"),
    ("PUT", "/compute/v2.1/servers/{server_id}"), ("DELETE", "/compute/v2.1/servers/{server_id}"),
    ("POST", "/compute/v2.1/servers/{server_id}/action"), ("PUT", "/compute/v2.1/servers/{server_id}/metadata"),
    ("POST", "/compute/v2.1/os-keypairs"), ("POST", "/compute/v2.1/flavors"), ("PUT", "/compute/v2.1/os-quota-sets/{project_id}"),
]


async def test_fuzz_got_past_validation(world: World) -> None:
    """The fuzz is worth something only if valid requests get through: the core operations and
    most of the others answered 2xx at least once (this runs after the fuzz, in file order)."""
    from fuzz_support import STATS

    seen = {k: v for k, v in STATS.items() if k[1].startswith("/compute/")}
    if len(seen) < len(operations(DOC)):
        pytest.skip("the fuzz tests did not all run in this session")
    # An operation's documented answer counts too: a blank-id route's is 404 (GET /os-volumes/).
    documented = {(m.upper(), p): int(next(iter(o["responses"]))) for d in (DOC, DOC_21) for p, m, o in operations(d)}
    passed = {k for k, counts in seen.items() if any(200 <= c < 300 or c == documented.get(k) for c in counts)}
    assert not [k for k in CORE if k not in passed], sorted(set(seen) - passed)
    assert len(passed) >= 0.8 * len(seen), sorted(set(seen) - passed)


async def test_document_covers_every_route() -> None:
    """Every compute route the app serves is in the document (so the fuzz reaches it): each route
    module's, but the version documents' (served without a token, at /compute/ and /compute/v2.1/)."""
    import importlib
    import pkgutil

    import cumulo.compute.api as compute_api

    documented = {(m.upper(), p) for p, m, _ in operations(build_openapi([openapi_ops.FAMILY], axis=MICROVERSIONS, version="2.52"))}
    documented |= {(m.upper(), p) for p, m, _ in operations(DOC)}
    documented |= {(m.upper(), p) for p, m, _ in operations(DOC_21)}  # the proxies end before 2.52
    modules = [importlib.import_module(f"cumulo.compute.api.{info.name}") for info in pkgutil.iter_modules(compute_api.__path__)
               if info.name != "versions"]
    routed = [m for m in modules if hasattr(m, "ROUTES")]
    assert len(routed) >= 20, [m.__name__ for m in routed]
    missing = []
    for module in routed:
        for route in module.ROUTES:
            assert isinstance(route, Route)
            for method in route.methods or ():
                if method != "HEAD" and (method, "/compute" + route.path) not in documented:
                    missing.append(f"{method} {route.path}")
    assert not missing, missing


_VERSION_TEXT = st.sampled_from(["2.0", "2.80", "3.0", "1.1", "latest", "LATEST", "2.", ".1", "2.1.1", "02.10", "2.01",
                                 " 2.5 ", "2.99999999999999999999", "-2.5", "compute", "", "\x00"]) | st.text(max_size=12)


@FUZZ
@given(text=_VERSION_TEXT, header=st.sampled_from(["OpenStack-API-Version", "X-OpenStack-Nova-API-Version"]),
       prefix=st.sampled_from(["compute ", "volume ", "", "compute  "]))
async def test_microversion_headers(world: World, text: str, header: str, prefix: str) -> None:
    """Any version header gets a normal answer, 400 or 406, never a 5xx."""
    value = (prefix if header == "OpenStack-API-Version" else "") + text
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return  # not sendable as an HTTP header
    resp = await world.member.get("/compute/v2.1/servers", headers={header.encode(): raw})
    assert resp.status_code in (200, 400, 406), (value, resp.text)
    if resp.status_code != 200:
        jsonschema.validate(resp.json(), FAULT)


async def test_openapi_document_is_well_formed() -> None:
    """Unique operation ids, every {param} declared, request schemas valid JSON Schema 2020-12."""
    import re

    from cumulo.identity.api import openapi_ops as identity_ops
    from cumulo.image import openapi_ops as image_ops

    doc = build_openapi([openapi_ops.FAMILY, image_ops.FAMILY, identity_ops.FAMILY], axis=MICROVERSIONS)
    assert doc["openapi"].startswith("3.1")
    ids = [o["operationId"] for _, _, o in operations(doc)]
    assert len(ids) == len(set(ids)) and len(ids) > 100
    for path, method, o in operations(doc):
        declared = {p["name"] for p in o["parameters"] if p["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), (method, path)
        for media in o.get("requestBody", {}).get("content", {}).values():
            jsonschema.Draft202012Validator.check_schema(media["schema"])
        fault = o["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert fault in doc["components"]["schemas"]
    # The body schemas are the API's own objects, so a request the API rejects is rejected here too.
    from cumulo.compute.api.microversion import MAX_VERSION
    from cumulo.compute.api.schemas import servers as server_schemas

    create = DOC["paths"]["/compute/v2.1/servers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create is server_schemas.CREATE.for_version(MAX_VERSION)
    assert "/compute/v2.1/servers/{server_id}/tags" not in DOC_21["paths"]


async def test_openapi_route_serves_the_document() -> None:
    import httpx

    from cumulo.compute.api.app import render_fault
    from cumulo.web.http import family_app
    from cumulo.web.openapi import openapi_route

    app = family_app(None, [openapi_route(openapi_ops.FAMILY, MICROVERSIONS)], render_fault)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/openapi.json")
        assert r.status_code == 200 and "/compute/v2.1/servers" in r.json()["paths"]
        assert r.json()["info"]["x-openstack-compute-microversion"] == "2.79"
        r = await c.get("/openapi.json", params={"microversion": "2.1"})
        assert r.json()["info"]["x-openstack-compute-microversion"] == "2.1"
        r = await c.get("/openapi.json", params={"microversion": "9.9"})
        assert r.status_code == 400 and r.json()["badRequest"]["code"] == 400
