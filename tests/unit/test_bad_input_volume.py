"""Every rule of "Bad input and safety" for the volume API (Cinder v3 at /volume/v3/<project>), on the
whole cloud (the real volume worker on a file store): junk JSON, wrong types, sizes and names, bad
and unknown ids, microversions, admin-only and reader refusals, 401, and the quota under concurrency.
Every error body is Cinder's fault ({"badRequest": {"message", "code"}}, itemNotFound, forbidden,
overLimit, ...: fuzz_support.assert_fault). tests/unit/test_bad_input.py has the other families'.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from _asgi_ctx import AsCtx
from fuzz_support import World, assert_fault, create_project, make_ctx, start_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG = "n" * 256
JSONH = {"Content-Type": "application/json"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("bad-input-volume")):
        yield w


@dataclass(frozen=True)
class Case:
    role: str
    method: str
    url: str  # may name {project}, {admin_project}, {other}, {volume}
    status: int
    json: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    contains: str | None = None


VOL = "/volume/v3/{project}"  # the member's and reader's project
AVOL = "/volume/v3/{admin_project}"
VMV = {"OpenStack-API-Version": "volume 3.70"}


def _vol(role: str, method: str, url: str, status: int, **kw: Any) -> Case:
    return Case(role, method, url, status, headers={**VMV, **kw.pop("headers", {})}, **kw)


CASES: dict[str, Case] = {
    "volume-malformed-json": _vol("member", "POST", f"{VOL}/volumes", 400, raw=b'{"volume": {', headers=JSONH),
    "volume-malformed-utf8": _vol("member", "POST", f"{VOL}/volumes", 400, raw=b'{"volume": "\xff\xfe"}', headers=JSONH),
    "volume-empty-body": _vol("member", "POST", f"{VOL}/volumes", 400, raw=b"", headers=JSONH),
    "volume-deeply-nested-json": _vol("member", "POST", f"{VOL}/volumes", 400, raw=b"[" * 5000, headers=JSONH),
    "volume-action-malformed": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 400, raw=b"{os-extend}", headers=JSONH),
    "volume-body-array": _vol("member", "POST", f"{VOL}/volumes", 400, json=[1, 2]),
    "volume-not-object": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": "big"}),
    "volume-unknown-action": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 400, json={"os-explode": {}},
                                  contains="os-explode"),
    "volume-two-actions": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 400,
                               json={"os-reserve": {}, "os-unreserve": {}}),
    "volume-size-type": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": {"size": "big"}}),
    "volume-size-negative": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": {"size": -1}}),
    "volume-size-zero": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": {"size": 0}}),
    "volume-size-huge": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": {"size": 2 ** 64}}),
    "volume-name-256": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": {"size": 1, "name": LONG}}),
    "volume-update-name-256": _vol("member", "PUT", f"{VOL}/volumes/{{volume}}", 400, json={"volume": {"name": LONG}}),
    "volume-metadata-type": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": {"size": 1, "metadata": ["a"]}}),
    "volume-metadata-value-256": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/metadata", 400,
                                      json={"metadata": {"k": LONG}}),
    "volume-source-not-uuid": _vol("member", "POST", f"{VOL}/volumes", 400, json={"volume": {"size": 1, "source_volid": "zzz"}}),
    "volume-bootable-type": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 400,
                                 json={"os-set_bootable": {"bootable": "maybe"}}),
    "volume-extend-smaller": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 400,
                                  json={"os-extend": {"new_size": 1}}),
    "volume-extend-type": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 400,
                               json={"os-extend": {"new_size": "two"}}),
    "volume-list-limit-negative": _vol("member", "GET", f"{VOL}/volumes?limit=-1", 400),
    "volume-list-sort-unknown": _vol("member", "GET", f"{VOL}/volumes?sort=bogus:asc", 400),
    "volume-bad-microversion": _vol("member", "GET", f"{VOL}/volumes", 400, headers={"OpenStack-API-Version": "volume 3.x"}),
    "volume-too-new-microversion": _vol("member", "GET", f"{VOL}/volumes", 406,  # Cinder: computeFault
                                        headers={"OpenStack-API-Version": "volume 3.999"}),
    "volume-show-not-uuid": _vol("member", "GET", f"{VOL}/volumes/not-a-uuid", 404),
    "volume-unknown": _vol("member", "GET", f"{VOL}/volumes/{uuid.uuid4()}", 404),
    "volume-delete-unknown": _vol("member", "DELETE", f"{VOL}/volumes/{uuid.uuid4()}", 404),
    "volume-action-unknown": _vol("member", "POST", f"{VOL}/volumes/{uuid.uuid4()}/action", 404, json={"os-reserve": {}}),
    "snapshot-unknown": _vol("member", "GET", f"{VOL}/snapshots/{uuid.uuid4()}", 404),
    "snapshot-of-unknown-volume": _vol("member", "POST", f"{VOL}/snapshots", 404, json={"snapshot": {"volume_id": str(uuid.uuid4())}}),
    "backup-unknown": _vol("member", "GET", f"{VOL}/backups/{uuid.uuid4()}", 404),
    "backup-restore-unknown": _vol("member", "POST", f"{VOL}/backups/{uuid.uuid4()}/restore", 404, json={"restore": {}}),
    "volume-type-unknown": _vol("member", "GET", f"{VOL}/types/{uuid.uuid4()}", 404),
    "volume-create-unknown-type": _vol("member", "POST", f"{VOL}/volumes", 404, json={"volume": {"size": 1, "volume_type": "nope"}}),
    "volume-create-unknown-image": _vol("member", "POST", f"{VOL}/volumes", 404,
                                        json={"volume": {"size": 1, "imageRef": str(uuid.uuid4())}}),
    "volume-route-unknown": _vol("member", "GET", f"{VOL}/no-such-thing", 404),
    "volume-url-other-project": _vol("member", "GET", "/volume/v3/{other}/volumes", 400),
    "volume-type-create-member": _vol("member", "POST", f"{VOL}/types", 403, json={"volume_type": {"name": "t"}}),
    "volume-quota-update-member": _vol("member", "PUT", f"{VOL}/os-quota-sets/{{project}}", 403,
                                       json={"quota_set": {"volumes": 100}}),
    "volume-quota-other-project-member": _vol("member", "GET", f"{VOL}/os-quota-sets/{{other}}", 403),
    "volume-reset-status-member": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 403,
                                       json={"os-reset_status": {"status": "error"}}),
    "volume-force-delete-member": _vol("member", "POST", f"{VOL}/volumes/{{volume}}/action", 403, json={"os-force_delete": {}}),
    "volume-quota-below-minus-one": _vol("admin", "PUT", f"{AVOL}/os-quota-sets/{{project}}", 400,
                                         json={"quota_set": {"volumes": -2}}),
    "volume-quota-unknown-field": _vol("admin", "PUT", f"{AVOL}/os-quota-sets/{{project}}", 400,
                                       json={"quota_set": {"bogus": 1}}),
    "volume-type-name-256": _vol("admin", "POST", f"{AVOL}/types", 400, json={"volume_type": {"name": LONG}}),
    "volume-create-reader": _vol("reader", "POST", f"{VOL}/volumes", 403, json={"volume": {"size": 1}}),
    "volume-update-reader": _vol("reader", "PUT", f"{VOL}/volumes/{{volume}}", 403, json={"volume": {"name": "x"}}),
    "volume-delete-reader": _vol("reader", "DELETE", f"{VOL}/volumes/{{volume}}", 403),
    "volume-extend-reader": _vol("reader", "POST", f"{VOL}/volumes/{{volume}}/action", 403, json={"os-extend": {"new_size": 3}}),
    "volume-metadata-reader": _vol("reader", "POST", f"{VOL}/volumes/{{volume}}/metadata", 403, json={"metadata": {"a": "b"}}),
    "volume-snapshot-reader": _vol("reader", "POST", f"{VOL}/snapshots", 403, json={"snapshot": {"volume_id": "{volume}"}}),
    "volume-backup-reader": _vol("reader", "POST", f"{VOL}/backups", 403, json={"backup": {"volume_id": "{volume}"}}),
    "volume-no-token": _vol("anon", "GET", f"{VOL}/volumes", 401),
}

_VOLUMES: dict[str, str] = {}  # the world's state dir -> a 2 GiB available volume of project A


async def _ensure_volume(w: World) -> str:
    key = str(w.cloud.conf.state_dir)
    vid = _VOLUMES.get(key)
    if vid is not None:
        r = await w.member.get(f"/volume/v3/{w.project}/volumes/{vid}", headers=VMV)
        if r.status_code == 200 and r.json()["volume"]["status"] == "available" and r.json()["volume"]["size"] == 2:
            return vid
    r = await w.member.post(f"/volume/v3/{w.project}/volumes", json={"volume": {"size": 2, "name": "bad-input"}}, headers=VMV)
    assert r.status_code == 202, r.text
    vid = _VOLUMES[key] = r.json()["volume"]["id"]
    for _ in range(500):
        r = await w.member.get(f"/volume/v3/{w.project}/volumes/{vid}", headers=VMV)
        if r.json()["volume"]["status"] == "available":
            return vid
        await asyncio.sleep(0.02)
    raise AssertionError(f"volume {vid} never available: {r.text}")


def _fill(text: str, w: World) -> str:
    return (text.replace("{admin_project}", w.admin_project).replace("{project}", w.project)
            .replace("{other}", w.other_project).replace("{volume}", _VOLUMES.get(str(w.cloud.conf.state_dir), "none")))


def _fill_json(value: Any, w: World) -> Any:
    if isinstance(value, str):
        return _fill(value, w)
    if isinstance(value, dict):
        return {k: _fill_json(v, w) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_json(v, w) for v in value]
    return value


@pytest.mark.parametrize("name", list(CASES))
async def test_rule(world: World, name: str) -> None:
    case = CASES[name]
    await _ensure_volume(world)
    if case.role == "anon":
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=world.cloud.asgi_app()), base_url="http://cumulo.test")
    else:
        client = world.clients[case.role]
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.raw is not None:
        kwargs["content"] = case.raw
    elif case.json is not None:
        kwargs["json"] = _fill_json(case.json, world)
    try:
        resp = await client.request(case.method, _fill(case.url, world), **kwargs)
    except Exception as exc:  # the app crashed: a real server answers 500
        raise AssertionError(f"{name}: app raised {exc!r}") from exc
    assert_fault(resp, case.status, case.contains)


async def test_volume_quota_holds_under_concurrency(world: World) -> None:
    """14 parallel volume creates against Cinder's default quota of 10 volumes: exactly 10 volumes,
    the rest 413 overLimit naming the quota; another project is not limited by this one's use."""
    project = await create_project(world.cloud.asgi_app(), "vol-race")
    ctx = make_ctx(project, "member")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(world.cloud.asgi_app(), ctx)),
                                 base_url=f"http://cumulo.test/volume/v3/{project}", headers=VMV) as member:
        results = await asyncio.gather(*(member.post("/volumes", json={"volume": {"size": 1}}) for _ in range(14)))
        codes = sorted(r.status_code for r in results)
        assert codes == [202] * 10 + [413] * 4, [(r.status_code, r.text[:200]) for r in results]
        for r in results:
            if r.status_code == 413:
                assert_fault(r, 413, "Maximum number of volumes allowed (10) exceeded")
        assert len((await member.get("/volumes")).json()["volumes"]) == 10
        usage = (await member.get(f"/os-quota-sets/{project}", params={"usage": "true"})).json()["quota_set"]
        assert usage["volumes"]["in_use"] == 10 and usage["gigabytes"]["in_use"] == 10
    r = await world.member.post(f"/volume/v3/{world.project}/volumes", json={"volume": {"size": 1}}, headers=VMV)
    assert r.status_code == 202, r.text
