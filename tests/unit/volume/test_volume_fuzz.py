"""A small property-based fuzz of the volume API: arbitrary JSON into every write route and every
volume action, and hostile path values; every answer is below 500 and every 4xx is Cinder's fault."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from _asgi_ctx import ctx_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vol_support import make_volume

from cumulo.volume.api.volumes import ACTIONS
from cumulo.volume.service import VolumeService

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                    st.sampled_from(["", "rw", "ro", "true", "available", "in-use", "__DEFAULT__", "\ud800",
                                     "11111111-2222-4333-8444-555555555555", "/dev/vdb", "-1", "0", "1", "3.70"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
KEYS = ["size", "name", "new_size", "instance_uuid", "mountpoint", "mode", "attachment_id", "bootable", "readonly",
        "new_type", "status", "volume_id", "volume_uuid", "connector", "metadata", "force", "image_name",
        "disk_format", "snapshot_id", "source_volid", "imageRef", "backup_id", "volume_type", "project", "extra_specs"]
bodies = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.text)
    if r.status_code >= 400:
        body = r.json()
        (name, err), = body.items()
        assert set(err) == {"message", "code"} and err["code"] == r.status_code, body


async def test_fuzz_actions(svc: VolumeService, client: Callable[..., httpx.AsyncClient]) -> None:
    alice = client(ctx_for("project-a", "member"))
    admin = client(ctx_for("project-a", "admin"))
    vid = (await make_volume(alice))["id"]
    seen: list[tuple[str, Any]] = []

    @FUZZ
    @given(name=st.sampled_from(sorted(ACTIONS) + ["os-nope"]), value=st.one_of(values, bodies), as_admin=st.booleans())
    def one(name: str, value: Any, as_admin: bool) -> None:
        seen.append((name, value))

    one()
    assert len(seen) >= 30
    for name, value in seen:
        c = admin if len(str(value)) % 2 else alice
        _check(await c.post(f"/volumes/{vid}/action", content=json.dumps({name: value})))


async def test_fuzz_creates_and_updates(svc: VolumeService, client: Callable[..., httpx.AsyncClient]) -> None:
    alice = client(ctx_for("project-a", "member"))
    admin = client(ctx_for("project-a", "admin"))
    vid = (await make_volume(alice))["id"]
    drawn: list[tuple[str, str, Any]] = []
    routes = [("POST", "/volumes", "volume"), ("PUT", f"/volumes/{vid}", "volume"), ("POST", "/snapshots", "snapshot"),
              ("POST", "/backups", "backup"), ("POST", "/attachments", "attachment"), ("POST", "/types", "volume_type"),
              ("PUT", "/os-quota-sets/project-a", "quota_set"), ("POST", f"/volumes/{vid}/metadata", "metadata"),
              ("PUT", f"/volumes/{vid}/metadata", "metadata")]

    @FUZZ
    @given(route=st.sampled_from(routes), inner=st.one_of(bodies, values), wrapped=st.booleans())
    def one(route: tuple[str, str, str], inner: Any, wrapped: bool) -> None:
        method, path, key = route
        drawn.append((method, path, {key: inner} if wrapped else inner))

    one()
    assert len(drawn) >= 30
    for method, path, body in drawn:
        c = admin if "quota" in path or "types" in path else alice
        _check(await c.request(method, path, content=json.dumps(body)))


async def test_fuzz_path_values(svc: VolumeService, client: Callable[..., httpx.AsyncClient]) -> None:
    alice = client(ctx_for("project-a", "member"))
    drawn: list[str] = []

    @FUZZ
    @given(text=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=60))
    def one(text: str) -> None:
        drawn.append(text)

    one()
    assert len(drawn) >= 30
    from urllib.parse import quote

    for text in drawn:
        v = quote(text, safe="")
        for path in (f"/volumes/{v}", f"/snapshots/{v}", f"/backups/{v}", f"/types/{v}", f"/attachments/{v}",
                     f"/volumes/{v}/metadata", f"/os-quota-sets/{v}"):
            _check(await alice.get(path))
        _check(await alice.get("/volumes/detail", params={"sort": text, "limit": text, "marker": text, "name": text}))
