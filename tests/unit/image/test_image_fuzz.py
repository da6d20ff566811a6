"""Schema-agnostic fuzz of the image API's request bodies and queries: nothing answers 5xx."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

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

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=300),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=10,
)
_keys = st.sampled_from(
    ["name", "id", "visibility", "protected", "os_hidden", "tags", "min_ram", "min_disk", "disk_format",
     "container_format", "owner", "status", "custom", "os_glance_x", "self", "locations"]
) | st.text(max_size=300)
_create = st.dictionaries(_keys, _json, max_size=6) | _json
_patch_op = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "test", ""]) | st.text(max_size=5)},
    optional={"path": st.sampled_from(["/name", "/tags", "/min_ram", "/x", "/visibility", "/", "x", "/a/b"])
              | st.text(max_size=30), "value": _json},
)
_query = st.lists(
    st.tuples(
        st.sampled_from(["limit", "marker", "sort", "sort_key", "sort_dir", "name", "status", "tag", "size_min",
                         "created_at", "visibility", "member_status", "protected", "os_hidden", "x"]),
        st.text(max_size=40),
    ),
    max_size=4,
)


def test_no_5xx(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    conf.state_dir.mkdir(parents=True)
    db = Database(f"sqlite+aiosqlite:///{conf.state_dir / 'fuzz.sqlite'}")
    svc = ImageService(db, conf)

    async def setup() -> tuple[httpx.AsyncClient, str]:
        await db.create_all()
        await svc.bootstrap()
        ctx = RequestContext(user_id="u", project_id="p", roles=expand_roles(["member"]))
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(make_app(svc, axis=MICROVERSIONS), ctx)), base_url="http://t")
        r = await c.post("/v2/images", json={"name": "target", "disk_format": "raw", "container_format": "bare"})
        return c, r.json()["id"]

    client, image_id = loop.run_until_complete(setup())
    try:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(create=_create, ops=st.lists(_patch_op, max_size=3) | _json, query=_query)
        def run(create: Any, ops: Any, query: list[tuple[str, str]]) -> None:
            async def go() -> None:
                r = await client.post("/v2/images", json=create)
                assert r.status_code < 500, (create, r.text)
                r = await client.patch(
                    f"/v2/images/{image_id}", json=ops,
                    headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
                )
                assert r.status_code < 500, (ops, r.text)
                r = await client.get("/v2/images", params=query)
                assert r.status_code < 500, (query, r.text)

            loop.run_until_complete(go())

        run()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(db.dispose())
        loop.close()
