"""The storage and storagelink kinds through the OCCI front door's HTTP app (occi.api.make_app over
the in-process cloud's real services, fake driver): create by POST in text/occi, a read in
application/occi+json, the storage actions by `POST ?action=` (409 when the state refuses, the
seal on the volume's file), a storagelink POSTed with source and target and deleted again. The
backends' own behaviour is tests/unit/test_occi_storage.py's; the real-host rows are SYSTEST's."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from occi_cloud import occi_client, unseal_volumes, until

from cumulo.context import RequestContext, expand_roles
from cumulo.volume.worker import offline

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
ACTION = "http://schemas.ogf.org/occi/infrastructure/storage/action#"
JSON_ACCEPT = {"Accept": "application/occi+json"}
ROOT = os.geteuid() == 0


class Env:
    def __init__(self, cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
        self.cloud = cloud
        self.project = uuid.uuid4().hex
        ctx = RequestContext(user_id=uuid.uuid4().hex, project_id=self.project, roles=expand_roles(["member"]))
        self.occi = occi_client(cloud, ctx)
        self.os = as_ctx(ctx)  # the OpenStack APIs as the same caller

    async def storage(self, path: str) -> dict[str, Any]:
        r = await self.occi.get(f"/occi{path}", headers=JSON_ACCEPT)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def state(self, path: str, state: str, attr: str = "occi.storage.state") -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body = await self.storage(path)
            return body if body["attributes"][attr] == state else None
        got: dict[str, Any] = await until(check, f"{path} {state}")
        return got

    async def action(self, path: str, term: str, *attrs: str) -> httpx.Response:
        headers = [("Content-Type", "text/occi"), ("Category", f'{term}; scheme="{ACTION}"; class="action"')]
        headers += [("X-OCCI-Attribute", a) for a in attrs]
        return await self.occi.post(f"/occi{path}?action={term}", headers=headers)


@pytest.fixture
async def env(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> AsyncIterator[Env]:
    yield Env(cloud, as_ctx)
    unseal_volumes(cloud)


async def _create(env: Env, kind: str, *attrs: str) -> str:
    headers = [("Content-Type", "text/occi"), ("Category", f'{kind}; scheme="{INFRA}"; class="kind"')]
    headers += [("X-OCCI-Attribute", a) for a in attrs]
    r = await env.occi.post(f"/occi/{kind}/", headers=headers)
    assert r.status_code == 201, r.text
    return str(r.headers["location"]).removeprefix("http://cumulo.test/occi")


@pytest.mark.skipif(not ROOT, reason="the offline seal (chattr +i) needs root")
async def test_storage_over_http_create_actions_delete(env: Env) -> None:
    r = await env.occi.post("/occi/storage/", headers=[
        ("Content-Type", "text/occi"), ("Category", f'storage; scheme="{INFRA}"; class="kind"')])
    assert r.status_code == 400 and "occi.storage.size" in r.text, r.text
    path = await _create(env, "storage", "occi.storage.size=1", 'occi.core.title="web data"')
    vid = path.rsplit("/", 1)[-1]
    body = await env.state(path, "online")
    assert body["kind"] == INFRA + "storage" and body["attributes"]["occi.storage.size"] == 1
    assert body["title"] == "web data"  # JSON rendering: occi.core.title is the entity's "title"
    r = await env.os.get(f"/volume/v3/{env.project}/volumes/{vid}")
    assert r.json()["volume"]["name"] == "web data"
    # offline, then every action but online is a 409; online again
    assert (await env.action(path, "offline")).status_code == 200
    body = await env.state(path, "offline")
    assert [a.rsplit("#", 1)[-1] for a in body.get("actions", [])] == ["online"]
    assert await offline.sealed(Path(env.cloud.services.conf.state_dir) / "volumes" / f"{vid}.raw")
    r = await env.os.get(f"/volume/v3/{env.project}/volumes/{vid}")
    assert r.json()["volume"]["status"] == "maintenance"
    for term in ("offline", "backup", "snapshot"):
        r = await env.action(path, term)
        assert r.status_code == 409, (term, r.text)
    assert (await env.occi.delete(f"/occi{path}")).status_code == 409
    assert (await env.action(path, "online")).status_code == 200
    await env.state(path, "online")
    # resize (1.1) with `size`, and the size update
    assert (await env.action(path, "resize", "size=2")).status_code == 200

    async def size_is(n: int) -> bool:
        b = await env.storage(path)
        return bool(b["attributes"]["occi.storage.size"] == n and b["attributes"]["occi.storage.state.message"] == "available")
    await until(lambda: size_is(2), "size 2")
    r = await env.occi.post(f"/occi{path}", headers=[("Content-Type", "text/occi"), ("X-OCCI-Attribute", "occi.storage.size=3")])
    assert r.status_code == 200, r.text
    await until(lambda: size_is(3), "size 3")
    r = await env.occi.post(f"/occi{path}", headers=[("Content-Type", "text/occi"), ("X-OCCI-Attribute", "occi.storage.size=1")])
    assert r.status_code == 400 and "only grows" in r.text, r.text
    assert (await env.action(path, "backup")).status_code == 200

    async def backed_up() -> bool:
        r = await env.os.get(f"/volume/v3/{env.project}/backups/detail")
        return any(b["volume_id"] == vid and b["status"] == "available" for b in r.json()["backups"])
    await until(backed_up, "backup available")
    await env.state(path, "available", "occi.storage.state.message")
    assert (await env.occi.delete(f"/occi{path}")).status_code == 200

    async def gone() -> bool:
        return (await env.occi.get(f"/occi{path}")).status_code == 404
    await until(gone, "storage gone")


async def test_storagelink_over_http(env: Env) -> None:
    r = await env.os.post("/image/v2/images", json={"name": "img", "disk_format": "raw", "container_format": "bare"})
    image = r.json()["id"]
    await env.os.put(f"/image/v2/images/{image}/file", content=b"\0" * 4096,
                     headers={"Content-Type": "application/octet-stream"})
    r = await env.os.post("/compute/v2.1/servers", json={"server": {
        "name": "vm", "imageRef": image, "flavorRef": "42", "networks": "none"}},
        headers={"OpenStack-API-Version": "compute 2.37"})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]

    async def active() -> bool:
        s = (await env.os.get(f"/compute/v2.1/servers/{sid}")).json()["server"]
        return bool(s["status"] == "ACTIVE" and s.get("OS-EXT-STS:task_state") is None)
    await until(active, "server ACTIVE")
    spath = await _create(env, "storage", "occi.storage.size=1")
    vid = spath.rsplit("/", 1)[-1]
    await env.state(spath, "online")
    lpath = await _create(env, "storagelink", f'occi.core.source="/occi/compute/{sid}"',
                          f'occi.core.target="/occi/storage/{vid}"')
    link = await env.state(lpath, "active", "occi.storagelink.state")
    assert link["kind"] == INFRA + "storagelink"
    assert link["attributes"]["occi.storagelink.deviceid"] == "/dev/vdb"
    assert link["source"]["location"].endswith(f"/compute/{sid}") and link["target"]["location"].endswith(f"/storage/{vid}")
    r = await env.occi.get("/occi/storagelink/", headers={"Accept": "text/uri-list"})
    assert r.status_code == 200 and r.text.split() == [f"http://cumulo.test/occi{lpath}"], r.text
    r = await env.occi.get(f"/occi/compute/{sid}", headers=JSON_ACCEPT)
    assert any(x["id"] == lpath.rsplit("/", 1)[-1] for x in r.json().get("links", [])), r.text
    # its own rendering PUT back (absolute source/target locations) is no change (GFD.223 §10.2.2)
    r = await env.occi.put(f"/occi{lpath}", content=json.dumps(link).encode(),
                           headers={**JSON_ACCEPT, "Content-Type": "application/occi+json"})
    assert r.status_code == 200, r.text
    assert (await env.occi.delete(f"/occi{spath}")).status_code == 409  # linked
    assert (await env.occi.delete(f"/occi{lpath}")).status_code == 200
    await env.state(spath, "available", "occi.storage.state.message")
    assert (await env.occi.get(f"/occi{lpath}")).status_code == 404


async def test_junk_for_storage_and_storagelink_is_4xx_naming_it(env: Env) -> None:
    spath = await _create(env, "storage", "occi.storage.size=1")
    await env.state(spath, "online")
    sid = str(uuid.uuid4())
    cases: list[tuple[str, str, list[tuple[str, str]]]] = [
        ("POST", "/occi/storage/", [("X-OCCI-Attribute", "occi.storage.size=-1")]),
        ("POST", "/occi/storage/", [("X-OCCI-Attribute", "occi.storage.size=1e308")]),
        ("POST", "/occi/storage/", [("X-OCCI-Attribute", "occi.storage.size=-2.5")]),
        ("POST", "/occi/storage/", [("X-OCCI-Attribute", 'occi.storage.size="big"')]),
        ("POST", "/occi/storage/", [("X-OCCI-Attribute", "occi.storage.size=1"),
                                    ("X-OCCI-Attribute", f'occi.core.title="{"t" * 300}"')]),
        ("POST", "/occi/storage/", [("X-OCCI-Attribute", "occi.storage.size=1"),
                                    ("X-OCCI-Attribute", 'occi.storage.state="offline"')]),
        ("POST", f"/occi{spath}?action=resize", [("X-OCCI-Attribute", "size=-3")]),
        ("POST", f"/occi{spath}?action=resize", [("X-OCCI-Attribute", "size=nan")]),
        ("POST", f"/occi{spath}?action=resize", []),
        ("POST", f"/occi{spath}?action=explode", []),
        ("PUT", f"/occi{spath}", [("X-OCCI-Attribute", "occi.storage.size=0")]),
        ("GET", "/occi/storage/not-a-uuid", []),
        ("GET", f"/occi/storage/{'x' * 400}", []),
        ("DELETE", f"/occi/storage/{sid}", []),
        ("GET", f"/occi/storagelink/{sid}", []),
        ("DELETE", f"/occi/storagelink/{sid}", []),
        ("POST", "/occi/storagelink/", [("X-OCCI-Attribute", f'occi.core.source="/occi/compute/{sid}"'),
                                        ("X-OCCI-Attribute", f'occi.core.target="/occi{spath}"')]),
        ("POST", "/occi/storagelink/", [("X-OCCI-Attribute", f'occi.core.source="/occi{spath}"'),
                                        ("X-OCCI-Attribute", f'occi.core.target="/occi{spath}"')]),
        ("POST", "/occi/storagelink/", [("X-OCCI-Attribute", 'occi.core.source="http://evil.example/x/y/z"'),
                                        ("X-OCCI-Attribute", f'occi.core.target="/occi{spath}"')]),
        ("POST", "/occi/storagelink/", [("X-OCCI-Attribute", f'occi.core.target="/occi{spath}"')]),
    ]
    for method, url, attrs in cases:
        kind = "storagelink" if url.startswith("/occi/storagelink/") else "storage"
        headers = [("Content-Type", "text/occi")]
        if method in ("POST", "PUT") and "?action=" not in url and url.endswith("/"):
            headers.append(("Category", f'{kind}; scheme="{INFRA}"; class="kind"'))
        if "?action=" in url:
            term = url.rsplit("=", 1)[-1]
            headers.append(("Category", f'{term}; scheme="{ACTION}"; class="action"'))
        r = await env.occi.request(method, url, headers=headers + attrs)
        assert 400 <= r.status_code < 500, (method, url, attrs, r.status_code, r.text)
    assert (await env.occi.delete(f"/occi{spath}")).status_code == 200
