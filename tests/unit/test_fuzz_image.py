"""Schema-driven fuzz of the image API: every operation of the OpenAPI document, as a member, a
reader and an admin, with valid, broken and malformed requests (JSON-patch bodies, raw uploads,
wrong media types, hostile ids and query strings). Nothing may answer 5xx; every 4xx is Glance's
fault body. (tests/unit/image/test_image_fuzz.py fuzzes create/patch/list on the image app alone;
this one covers every route, through the whole cloud, driven by the document.)"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from fuzz_support import World, call_strategy, check, operations, send, start_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.image import openapi_ops
from cumulo.web.openapi import build_openapi

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOC = build_openapi([openapi_ops.FAMILY], axis=MICROVERSIONS)
FAULT = DOC["components"]["schemas"]["ImageFault"]
ROLES = ("member", "reader", "admin")
OPS = operations(DOC)

FUZZ = settings(max_examples=int(os.environ.get("CUMULO_FUZZ_EXAMPLES", "10")), deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

PATCH_PATHS = ["/name", "/tags", "/min_ram", "/min_disk", "/visibility", "/protected", "/os_hidden", "/owner",
               "/disk_format", "/container_format", "/custom_prop", "/status", "/id", "/locations", "/tags/-", "/"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("fuzz-image")):
        r = await w.member.post("/image/v2/images", json={"name": "fuzz-shared", "visibility": "shared",
                                                          "disk_format": "raw", "container_format": "bare"})
        assert r.status_code == 201, r.text
        shared = r.json()["id"]
        r = await w.member.post(f"/image/v2/images/{shared}/members", json={"member": w.other_project})
        assert r.status_code == 200, r.text
        w.ids["shared_image"] = [shared]
        w.ids["tag"] = ["t", "nope", "x" * 255]
        w.ids["namespace"] = [FUZZ_NS]
        w.ids["name"] = ["nope"]
        w.ids["resource_type"] = ["OS::Glance::Image"]
        w.ids["kind"] = ["namespace", "objects", "property", "resource_types", "tag"]
        yield w


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(world: World) -> World:
    await world.ensure(compute=False)
    # A queued image each test, so valid uploads have somewhere to go.
    r = await world.member.post("/image/v2/images", json={"name": "fuzz-queued", "disk_format": "raw",
                                                          "container_format": "bare"})
    assert r.status_code == 201, r.text
    world.ids["image_id"] = [*world.ids["image_id"], *world.ids["shared_image"], r.json()["id"]]
    await _metadefs(world)
    for path, method, op in OPS:  # the seeded metadefs writes get their strategies here, with their seeds
        seeds = _SEEDS.get((path, method))
        if seeds and (path, method) not in _STRATEGIES:
            _STRATEGIES[(path, method)] = call_strategy(path, method, op, world.ids, _refs(world), {},
                                                        lambda seeds=seeds: seeds)
    return world


FUZZ_NS = "Fuzz::NS"


async def _metadefs(w: World) -> None:
    """A public metadefs namespace holding an object, a property and a tag named "nope" and an
    association with OS::Glance::Image, put back before each test (the fuzz renames and deletes)."""
    ns = f"/image/v2/metadefs/namespaces/{FUZZ_NS}"
    r = await w.admin.get(ns)
    if r.status_code == 200 and r.json().get("protected"):
        await w.admin.put(ns, json={"namespace": FUZZ_NS, "visibility": "public"})
    elif r.status_code == 404:
        await w.admin.post("/image/v2/metadefs/namespaces", json={"namespace": FUZZ_NS, "visibility": "public"})
    for path, body in (
        ("objects", {"name": "nope"}),
        ("properties", {"name": "nope", "title": "Nope", "type": "string"}),
        ("tags/nope", None),
        ("resource_types", {"name": "OS::Glance::Image"}),
    ):
        r = await w.admin.post(f"{ns}/{path}", json=body)
        assert r.status_code in (201, 409), r.text


# Known-good bodies for the metadefs writes (names a URL can carry), sent as they are and broken.
_NS_PATH = "/image/v2/metadefs/namespaces"
_SEEDS: dict[tuple[str, str], list[Any]] = {
    (_NS_PATH, "post"): [{"namespace": "Fuzz::New", "visibility": "public", "protected": False}],
    (f"{_NS_PATH}/{{namespace}}", "put"): [{"namespace": FUZZ_NS, "visibility": "public", "protected": False}],
    (f"{_NS_PATH}/{{namespace}}/objects", "post"): [{"name": "obj", "required": [], "properties": {}}],
    (f"{_NS_PATH}/{{namespace}}/objects/{{name}}", "put"): [{"name": "nope", "description": "d"}],
    (f"{_NS_PATH}/{{namespace}}/properties", "post"): [{"name": "prop", "title": "P", "type": "integer"}],
    (f"{_NS_PATH}/{{namespace}}/properties/{{name}}", "put"): [{"name": "nope", "title": "P", "type": "string"}],
    (f"{_NS_PATH}/{{namespace}}/tags", "post"): [{"tags": [{"name": "nope"}, {"name": "two"}]}],
    (f"{_NS_PATH}/{{namespace}}/tags/{{name}}", "put"): [{"name": "nope"}],
    (f"{_NS_PATH}/{{namespace}}/resource_types", "post"): [{"name": "OS::Nova::Flavor", "prefix": "hw:"}],
}


def _refs(w: World) -> dict[str, list[Any]]:
    return {
        "path": PATCH_PATHS,
        "op": ["add", "replace", "remove"],
        "member": [w.other_project, w.admin_project],
        "visibility": ["private", "shared", "public", "community"],
        "disk_format": ["raw", "qcow2"],
        "container_format": ["bare", "docker"],
    }


_STRATEGIES: dict[tuple[str, str], Any] = {}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "method", "op"), OPS, ids=[o["operationId"] for _, _, o in OPS])
@FUZZ
@given(data=st.data())
async def test_image_operation(fresh: World, path: str, method: str, op: dict[str, Any], role: str, data: Any) -> None:
    key = (path, method)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = call_strategy(path, method, op, fresh.ids, _refs(fresh), {})
    call = data.draw(_STRATEGIES[key])
    check(await send(fresh.clients[role], call, path), call, FAULT, role)


async def test_every_image_operation_got_past_validation(world: World) -> None:
    """The fuzz is only worth something if valid requests get through: each operation has
    answered 2xx at least once (run after the fuzz above, in file order)."""
    from fuzz_support import STATS

    seen = {k: v for k, v in STATS.items() if k[1].startswith("/image/")}
    if not seen:
        pytest.skip("the fuzz tests did not run in this session")
    missing = [f"{m} {p}" for (m, p), counts in seen.items() if not any(200 <= c < 300 for c in counts)]
    assert not missing, missing


async def test_document_covers_every_route() -> None:
    """Every image route the app serves (but version discovery) is in the document."""
    from starlette.routing import Route

    from cumulo.image.api import ROUTES

    documented = {(m.upper(), p) for p, m, _ in OPS}
    missing = []
    for route in ROUTES:
        assert isinstance(route, Route)
        if route.path in ("/", "/versions"):
            continue
        path = "/image" + route.path.replace(":path}", "}")
        missing += [f"{m} {route.path}" for m in route.methods or () if m != "HEAD" and (m, path) not in documented]
    assert not missing, missing
