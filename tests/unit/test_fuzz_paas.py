"""Fuzz of the PaaS front door (/paas): every route shape and method, as a member and a reader, with
valid, broken and malformed Pegasus DTOs (fields replaced by wrong types, hostile text, lone
surrogates, Pegasus's unwrapped single-element lists), raw bytes, odd media types and path segments.
Nothing may answer 5xx; every 4xx is Pegasus's fault {"message", "code"} with the answer's status.

The app runs over a fake engine (tests/unit/paas_api_support.py): the fuzz is of the HTTP layer, the
shapes and the catalogue's checks; the engine has its own tests. Like OCCI, /paas has no OpenAPI
document, so the requests come from the DTOs' shapes (docs/paas.md)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from _asgi_ctx import temp_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paas_api_support import FakeEngine, client, data_url, mount, product, tarball, tier, two_tier

from cumulo import conf as conf_mod

pytestmark = pytest.mark.asyncio(loop_scope="module")

FUZZ = settings(max_examples=int(os.environ.get("CUMULO_FUZZ_EXAMPLES", "8")), deadline=None, derandomize=True,
                database=None, suppress_health_check=list(HealthCheck))
HOSTILE = ("\ud800", "\x00", "\r\n", '"', "/", "..", "%", "\\", "é", "\u202e", " ", "9" * 40, "x" * 300, "-1", "")
CAT = "/paas/rest/catalog"
ENVS = f"{CAT}/org/{{org}}/environment"
VENVS = f"{CAT}/org/{{org}}/vdc/{{vdc}}/environment"
INST = "/paas/rest/envInst/org/{org}/vdc/{vdc}/environmentInstance"
ROUTES = (
    f"{CAT}/productRelease", f"{CAT}/productRelease/{{product}}",
    ENVS, f"{ENVS}/{{env}}", f"{ENVS}/{{env}}/tier", f"{ENVS}/{{env}}/tier/{{tier}}",
    VENVS, f"{VENVS}/{{env}}/tier/{{tier}}", f"{ENVS}/{{env}}/tier/{{tier}}/productRelease",
    f"{VENVS}/{{env}}/tier/{{tier}}/productRelease/{{product}}",
    INST, f"{INST}/{{name}}", f"{INST}/{{name}}/tierInstance", f"{INST}/{{name}}/tierInstance/{{node}}",
    f"{INST}/{{name}}/tierInstance/{{node}}/productInstance", f"{INST}/{{name}}/tierInstance/{{node}}/productInstance/{{pi}}",
    f"{INST}/{{name}}/applicationInstance", f"{INST}/{{name}}/applicationInstance/{{app}}",
    f"{INST}/{{name}}/tier/{{tier}}/scale", f"{INST}/{{name}}/event?tier={{tier}}",
    "/paas/rest/vdc/{vdc}/task?states={junk}&page={junk}&pageSize={junk}", "/paas/rest/vdc/{vdc}/task/{task}",
    "/paas/rest/vdc/{vdc}/task/environmentInstance/{name}", "/paas/rest/{junk}",
)
ACCEPTS = ("application/json", "*/*", "application/xml", "", "text/html;q=0.1, application/*", "a" * 300)
CTYPES = ("application/json", "application/json; charset=utf-8", "application/xml", "text/plain", "")


@dataclass
class Fz:
    engine: FakeEngine
    clients: dict[str, httpx.AsyncClient]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fz(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fz]:
    conf = conf_mod.load(env={}, state_dir=tmp_path_factory.mktemp("fuzz-paas") / "state", local_driver="fake")
    async with temp_database(conf) as db:
        engine = FakeEngine(db)
        app = mount(db, conf, engine)
        clients = {"member": client(app, "proj-f"), "reader": client(app, "proj-f", "reader")}
        m = clients["member"]
        for p in (product("web-app"), product("kv")):
            assert (await m.post(f"{CAT}/productRelease", json=p)).status_code == 204
        assert (await m.post(f"{CAT}/org/default/environment", json=two_tier())).status_code == 204
        r = await m.post(INST.format(org="default", vdc="proj-f"), json={"blueprintName": "shop1",
                                                                         "environmentDto": {"name": "shop"}})
        assert r.status_code == 202, r.text
        try:
            yield Fz(engine, clients)
        finally:
            for c in clients.values():
                await c.aclose()


def _bodies() -> dict[str, Any]:
    return {
        "product": product("fz", "1.0", ("K", "v", "Plain"), metadatas=[{"key": "open_ports", "value": "80"}]),
        "environment": two_tier("fz-env"),
        "tier": tier("fz-tier", {"productName": "kv", "version": "1.0"},
                     scalingPolicies=[{"name": "up", "metric": "cpu", "comparison": "gt", "threshold": 80,
                                       "scalingAdjustment": 1}]),
        "instance": {"blueprintName": "fz1", "environmentDto": {"name": "shop"}, "keepOnFailure": True},
        "node": {"name": "web"},
        "application": {"applicationName": "site", "artifactsDto": [
            {"name": "a", "path": data_url(tarball({"index.html": b"hi"})), "productReleaseDto": {"productName": "web-app"}}]},
        "scale": {"count": 2, "useTemplate": False},
    }


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**6), st.floats(allow_nan=True), st.sampled_from(HOSTILE),
                 st.text(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.sampled_from(("key", "value", "type", "name")), st.sampled_from(HOSTILE), max_size=2))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def bodies(draw: Any) -> Any:
    body = copy.deepcopy(_bodies()[draw(st.sampled_from(sorted(_bodies())))])
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        target = body
        for step in path[:-1]:
            target = target[step]
        how = draw(st.sampled_from(("junk", "delete", "unwrap")))
        if how == "delete" and isinstance(target, dict):
            del target[path[-1]]
        elif how == "unwrap" and isinstance(target[path[-1]], list) and target[path[-1]]:
            target[path[-1]] = target[path[-1]][0]  # Pegasus's single-element unwrap
        else:
            target[path[-1]] = draw(JUNK)
    if draw(st.booleans()):
        body = {**body, draw(st.text(max_size=6)): draw(JUNK)} if isinstance(body, dict) else body
    return draw(st.sampled_from((body, [body], "x", 5, None)) if draw(st.integers(0, 5)) == 0 else st.just(body))


def _segment(draw: Any, good: tuple[str, ...]) -> str:
    return draw(st.sampled_from((*good, "nope", "x" * 300, "%00", "%ff", "..", "%2e%2e", "a%20b", "-", "0")))


@st.composite
def requests(draw: Any, route: str) -> tuple[str, dict[str, Any]]:
    url = (route.replace("{org}", _segment(draw, ("default", "Default", "default")))
           .replace("{vdc}", _segment(draw, ("proj-f", "proj-f", "proj-other")))
           .replace("{product}", _segment(draw, ("kv-1.0", "kv", "web-app-1.0")))
           .replace("{env}", _segment(draw, ("shop", "fz-env"))).replace("{tier}", _segment(draw, ("web", "backend")))
           .replace("{name}", _segment(draw, ("shop1", "fz1"))).replace("{node}", _segment(draw, ("shop1-web-1",)))
           .replace("{pi}", _segment(draw, ("kv", "shop1-web-1_web-app_1.0"))).replace("{app}", _segment(draw, ("site",)))
           .replace("{task}", _segment(draw, ("1", "2", "99999999999999999999", "-1")))
           .replace("{junk}", _segment(draw, ("RUNNING", "1", ""))))
    headers: list[tuple[str, str]] = []
    accept = draw(st.sampled_from(ACCEPTS))
    if accept:
        headers.append(("Accept", accept))
    form = draw(st.sampled_from(("json", "json", "raw", "none")))
    content = b""
    if form == "json":
        content = json.dumps(draw(bodies())).encode()
    elif form == "raw":
        content = draw(st.binary(max_size=64))
    if form != "none":
        ctype = draw(st.sampled_from(CTYPES))
        if ctype:
            headers.append(("Content-Type", ctype))
    for name in ("callback", "Tenant-Id"):
        if draw(st.integers(0, 4)) == 0:
            headers.append((name, draw(st.sampled_from(("http://127.0.0.1:1/cb", "file:///etc/passwd", "proj-f",
                                                         "proj-other", "é\ud800")))))
    raw_headers = [(k.encode(), v.encode("utf-8", "surrogatepass")) for k, v in headers]
    return url, {"headers": raw_headers, "content": content}


CASES = [(route, method) for route in ROUTES for method in ("GET", "POST", "PUT", "DELETE")]


@pytest.mark.parametrize(("route", "method"), CASES, ids=[f"{m} {r}" for r, m in CASES])
@pytest.mark.parametrize("role", ["member", "reader"])
@FUZZ
@given(data=st.data())
async def test_paas_never_fails_on_bad_input(fz: Fz, route: str, method: str, role: str, data: Any) -> None:
    url, kwargs = data.draw(requests(route))
    where = f"[{role}] {method} {url} {kwargs['headers']} {kwargs['content'][:200]!r}"
    try:
        resp = await fz.clients[role].request(method, url, **kwargs)
    except Exception as exc:  # the app crashed: a real server answers 500 and drops the connection
        raise AssertionError(f"app raised {exc!r}: {where}") from exc
    where += f"\n-> {resp.status_code} {resp.text[:300]}"
    assert resp.status_code < 500, where
    if resp.status_code >= 400:
        assert resp.headers.get("content-type", "").startswith("application/json"), where
        body = resp.json()
        assert set(body) == {"message", "code"} and body["code"] == resp.status_code and body["message"], where
    elif resp.status_code != 204:
        resp.json()
    await fz.engine.finish_all()
