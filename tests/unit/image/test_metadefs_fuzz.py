"""Fuzz of the metadefs catalog, the tasks API and glance-direct import: random, hostile and malformed bodies, names
and queries on every write and list route, as the admin (who gets past policy). Nothing may answer
5xx, and every 4xx is Glance's fault body."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from _asgi_ctx import AsCtx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulo import conf as conf_mod
from cumulo.compute.api.openapi_ops import MICROVERSIONS
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database
from cumulo.image.api import make_app
from cumulo.image.service import ImageService

NS = "/v2/metadefs/namespaces"
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=100) | st.just("\ud800"),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=10,
)
_keys = st.sampled_from(
    ["namespace", "name", "display_name", "description", "visibility", "protected", "owner", "title", "type",
     "enum", "properties", "objects", "tags", "resource_type_associations", "required", "prefix",
     "properties_target", "minimum", "items", "input", "self", "created_at"]
) | st.text(max_size=30)
_body = st.dictionaries(_keys, _json, max_size=6) | _json
_name = st.sampled_from(["Fuzz::NS", "nope", "x" * 300, "..", "%2F", "a b", "\x00", "OS::Glance::Image"]) | st.text(
    min_size=1, max_size=40
)
_query = st.lists(
    st.tuples(st.sampled_from(["limit", "marker", "sort_key", "sort_dir", "visibility", "resource_types",
                               "resource_type", "status", "type", "x"]), st.text(max_size=40)),
    max_size=4,
)
_ROUTES = [
    ("POST", NS), ("PUT", f"{NS}/{{n}}"), ("POST", f"{NS}/{{n}}/objects"), ("PUT", f"{NS}/{{n}}/objects/{{m}}"),
    ("POST", f"{NS}/{{n}}/properties"), ("PUT", f"{NS}/{{n}}/properties/{{m}}"), ("POST", f"{NS}/{{n}}/tags"),
    ("PUT", f"{NS}/{{n}}/tags/{{m}}"), ("POST", f"{NS}/{{n}}/resource_types"), ("POST", "/v2/tasks"),
    ("POST", "/v2/images/{staged}/import"), ("POST", "/v2/images/{m}/import"),
]
_GETS = [NS, f"{NS}/{{n}}", f"{NS}/{{n}}/objects", f"{NS}/{{n}}/properties/{{m}}", f"{NS}/{{n}}/tags",
         f"{NS}/{{n}}/resource_types", "/v2/metadefs/resource_types", "/v2/tasks", "/v2/tasks/{m}",
         "/v2/schemas/metadefs/{m}"]


SEEN: dict[int, int] = {}
STAGED: list[str] = []


def _check(r: httpx.Response, what: Any) -> None:
    SEEN[r.status_code // 100] = SEEN.get(r.status_code // 100, 0) + 1
    assert r.status_code < 500, (what, r.status_code, r.text)
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"message", "code", "title"}, (what, body)


def test_metadefs_never_5xx(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    conf.state_dir.mkdir(parents=True)
    db = Database(f"sqlite+aiosqlite:///{conf.state_dir / 'fuzz.sqlite'}")
    svc = ImageService(db, conf)

    async def setup() -> httpx.AsyncClient:
        await db.create_all()
        await svc.bootstrap()
        ctx = RequestContext(user_id="u", project_id="p", roles=expand_roles(["admin"]))
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(make_app(svc, axis=MICROVERSIONS), ctx)), base_url="http://t")
        r = await c.post(NS, json={"namespace": "Fuzz::NS", "objects": [{"name": "nope"}], "tags": [{"name": "nope"}],
                                   "properties": {"nope": {"title": "t", "type": "string"}}})
        assert r.status_code == 201, r.text
        r = await c.post("/v2/images", json={"name": "staged", "disk_format": "raw", "container_format": "bare"})
        STAGED.append(r.json()["id"])
        r = await c.put(f"/v2/images/{STAGED[0]}/stage", content=b"x" * 100,
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 204, r.text
        return c

    client = loop.run_until_complete(setup())
    try:

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        @given(route=st.sampled_from(_ROUTES), get=st.sampled_from(_GETS), body=_body, n=_name, m=_name,
               query=_query, raw=st.binary(max_size=50))
        def run(route: tuple[str, str], get: str, body: Any, n: str, m: str, query: list[tuple[str, str]],
                raw: bytes) -> None:
            def fill(path: str) -> str:
                path = path.replace("{staged}", STAGED[0])
                return path.replace("{n}", quote(n, safe="")).replace("{m}", quote(m, safe=""))

            async def go() -> None:
                method, path = route
                # ensure_ascii: a lone surrogate travels as the JSON escape "\\ud800"
                r = await client.request(method, fill(path), content=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
                _check(r, (method, path, body))
                r = await client.request(method, fill(path), content=raw, headers={"Content-Type": "application/json"})
                _check(r, (method, path, raw))
                r = await client.get(fill(get), params=query)
                _check(r, (get, query))

            loop.run_until_complete(go())

        run()
        assert SEEN.get(2, 0) > 20 and SEEN.get(4, 0) > 100, SEEN  # the fuzz reached both outcomes
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(db.dispose())
        loop.close()
