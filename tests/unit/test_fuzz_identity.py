"""Schema-driven fuzz of the identity API: every operation of the OpenAPI document, unauthenticated,
as a member and as an admin, with valid, broken and malformed bodies (lone surrogates included, and
bodies without Content-Length). Nothing may answer 5xx; every 4xx is Keystone's fault body.

Path ids are throwaway projects, users and roles made for the fuzz, so that an admin's fuzzed
DELETE never takes the bootstrap accounts away from the rest of the module."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fuzz_support import World, call_strategy, check, operations, send, start_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.identity.api import openapi_ops
from cumulo.web.openapi import build_openapi

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOC = build_openapi([openapi_ops.FAMILY], axis=MICROVERSIONS)
FAULT = DOC["components"]["schemas"]["IdentityFault"]
ROLES = ("anon", "member", "admin")
OPS = operations(DOC)
IDN = "/identity/v3"

FUZZ = settings(max_examples=int(os.environ.get("CUMULO_FUZZ_EXAMPLES", "8")), deadline=None, derandomize=True,
                database=None, suppress_health_check=list(HealthCheck))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("fuzz-identity")):
        w.clients["anon"] = httpx.AsyncClient(transport=httpx.ASGITransport(app=w.cloud.asgi_app()), base_url="http://cumulo.test")
        a = w.admin
        services = (await a.get(f"{IDN}/services")).json()["services"]
        endpoints = (await a.get(f"{IDN}/endpoints")).json()["endpoints"]
        regions = (await a.get(f"{IDN}/regions")).json()["regions"]
        w.ids.update(
            domain_id=["default"],
            service_id=[s["id"] for s in services],
            endpoint_id=[e["id"] for e in endpoints],
            region_id=[r["id"] for r in regions],
        )
        try:
            yield w
        finally:
            await w.clients.pop("anon").aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(world: World) -> World:
    """Throwaway ids for this test: a project, a user with a role on it, and a role."""
    a = world.admin
    tag = uuid.uuid4().hex[:8]
    r = await a.post(f"{IDN}/projects", json={"project": {"name": f"fz-p-{tag}"}})
    assert r.status_code == 201, r.text
    project = r.json()["project"]["id"]
    r = await a.post(f"{IDN}/users", json={"user": {"name": f"fz-u-{tag}", "password": "fz-password", "default_project_id": project}})
    assert r.status_code == 201, r.text
    user = r.json()["user"]["id"]
    r = await a.post(f"{IDN}/roles", json={"role": {"name": f"fz-r-{tag}"}})
    assert r.status_code == 201, r.text
    role = r.json()["role"]["id"]
    r = await a.put(f"{IDN}/projects/{project}/users/{user}/roles/{role}")
    assert r.status_code == 204, r.text
    world.ids.update(project_id=[project], user_id=[user], role_id=[role])
    world.ids["fuzz_user"] = [f"fz-u-{tag}"]
    return world


def _seeds(w: World, method: str, path: str) -> Any:
    def token_bodies() -> list[Any]:
        name = w.ids["fuzz_user"][0]
        user = {"name": name, "domain": {"id": "default"}, "password": "fz-password"}
        return [
            {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}},
            {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                      "scope": {"project": {"id": w.ids["project_id"][0]}}}},
            {"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": w.ids["user_id"][0], "password": "fz-password"}}},
                      "scope": "unscoped"}},
        ]

    table = {
        ("post", f"{IDN}/auth/tokens"): token_bodies,
        ("post", f"{IDN}/projects"): lambda: [{"project": {"name": f"fz-{uuid.uuid4().hex[:6]}", "tags": ["a"]}}],
        ("patch", f"{IDN}/projects/{{project_id}}"): lambda: [{"project": {"description": "d"}}],
        ("post", f"{IDN}/users"): lambda: [{"user": {"name": f"fz-{uuid.uuid4().hex[:6]}", "password": "p"}}],
        ("patch", f"{IDN}/users/{{user_id}}"): lambda: [{"user": {"email": "a@b.c"}}],
        ("post", f"{IDN}/roles"): lambda: [{"role": {"name": f"fz-{uuid.uuid4().hex[:6]}"}}],
        ("patch", f"{IDN}/roles/{{role_id}}"): lambda: [{"role": {"description": "d"}}],
    }
    return table.get((method, path))


_STRATEGIES: dict[tuple[str, str], Any] = {}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "method", "op"), OPS, ids=[o["operationId"] for _, _, o in OPS])
@FUZZ
@given(data=st.data())
async def test_identity_operation(fresh: World, path: str, method: str, op: dict[str, Any], role: str, data: Any) -> None:
    key = (path, method)
    if key not in _STRATEGIES:
        w = fresh
        seeds = (lambda: _seeds(w, method, path)()) if _seeds(w, method, path) else None  # drawn with today's ids
        _STRATEGIES[key] = call_strategy(path, method, op, w.ids, {}, {}, seeds)
    call = data.draw(_STRATEGIES[key])
    check(await send(fresh.clients[role], call, path), call, FAULT, role)


async def test_fuzz_got_past_validation(world: World) -> None:
    """Valid requests got through: the token and directory operations answered 2xx at least once."""
    from fuzz_support import STATS

    seen = {k: v for k, v in STATS.items() if k[1].startswith(f"{IDN}/")}
    if len(seen) < len(OPS):
        pytest.skip("the fuzz tests did not all run in this session")
    core = [("POST", f"{IDN}/auth/tokens"), ("POST", f"{IDN}/projects"), ("POST", f"{IDN}/users"), ("GET", f"{IDN}/projects")]
    passed = {k for k, counts in seen.items() if any(200 <= c < 300 for c in counts)}
    assert not [k for k in core if k not in passed], sorted(set(seen) - passed)
