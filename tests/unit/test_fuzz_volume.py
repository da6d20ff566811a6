"""Schema-driven fuzz of the volume API (Cinder v3 at /volume) through the whole cloud: every
operation of its OpenAPI document, as a member, a reader and an admin, at 3.70 and (a member) at
3.0, with known-good bodies sent as they are and broken, arbitrary JSON, malformed bytes, lone
surrogates, bodies without Content-Length and hostile path values. The volume worker is the real one
(file block store under the test's state dir). Nothing may answer 5xx; every 4xx is Cinder's fault
body ({"itemNotFound": {"message", "code"}}, ...)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fuzz_support import STATS, World, call_strategy, check, operations, send, start_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulo.volume.api import openapi_ops
from cumulo.web.openapi import build_openapi

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOC = build_openapi([openapi_ops.family()], axis=openapi_ops.AXIS)
FAULT = DOC["components"]["schemas"]["VolumeFault"]
OPS = operations(DOC)
ROLES = ("member", "reader", "admin")
SERVER = "11111111-2222-4333-8444-555555555555"  # an instance uuid for attachments (no server needed)

FUZZ = settings(max_examples=int(os.environ.get("CUMULO_FUZZ_EXAMPLES", "6")), deadline=None, derandomize=True,
                database=None, suppress_health_check=list(HealthCheck))


def v3(project: str) -> str:
    return f"/volume/v3/{project}"


class Volumes:
    """The world's volume resources (project A's), made again when a fuzz example broke them."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.ids: dict[str, dict[str, list[str]]] = {role: {} for role in ROLES}
        self.vol = self.snap = self.backup = self.att_vol = self.attachment = self.type_id = ""

    def projects(self) -> dict[str, str]:
        return {"member": self.w.project, "reader": self.w.project, "admin": self.w.admin_project}

    async def _wait(self, kind: str, rid: str, want: str = "available") -> dict[str, Any]:
        m = self.w.member
        for _ in range(600):
            r = await m.get(f"{v3(self.w.project)}/{kind}s/{rid}", headers={"OpenStack-API-Version": "volume 3.70"})
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()[kind]
            if body["status"] == want:
                return body
            assert not body["status"].startswith("error"), body
            await asyncio.sleep(0.02)
        raise AssertionError(f"{kind} {rid} never {want}")

    async def _status(self, kind: str, rid: str) -> str | None:
        if not rid:
            return None
        r = await self.w.member.get(f"{v3(self.w.project)}/{kind}s/{rid}", headers={"OpenStack-API-Version": "volume 3.70"})
        return str(r.json()[kind]["status"]) if r.status_code == 200 else None

    async def _post(self, client: httpx.AsyncClient, url: str, body: Any, key: str) -> str:
        r = await client.post(url, json=body, headers={"OpenStack-API-Version": "volume 3.70"})
        assert r.status_code in (200, 202), r.text
        rid: str = r.json()[key]["id"]
        return rid

    async def ensure(self) -> None:
        w, a, m = self.w, self.w.admin, self.w.member
        admin_base, base = v3(w.admin_project), v3(w.project)
        mv = {"OpenStack-API-Version": "volume 3.70"}
        # Fuzzed quota changes undone; room for what the fuzz creates, never unbounded.
        await a.delete(f"{admin_base}/os-quota-sets/{w.project}", headers=mv)
        r = await a.put(f"{admin_base}/os-quota-sets/{w.project}", headers=mv,
                        json={"quota_set": {"volumes": 60, "snapshots": 60, "backups": 60}})
        assert r.status_code == 200, r.text
        r = await m.get(f"{base}/volumes/detail", params={"limit": "1000"}, headers=mv)
        assert r.status_code == 200, r.text
        ours = {self.vol, self.att_vol}
        extra = [v for v in r.json()["volumes"] if v["id"] not in ours]
        if len(extra) > 30:  # fuzz leftovers: their snapshots first, then force-delete them
            r = await m.get(f"{base}/snapshots", params={"limit": "1000"}, headers=mv)
            for s in r.json()["snapshots"]:
                if s["id"] != self.snap:
                    await a.post(f"{admin_base}/snapshots/{s['id']}/action", json={"os-force_delete": {}}, headers=mv)
            for v in extra:
                await a.post(f"{admin_base}/volumes/{v['id']}/action", json={"os-force_delete": {}}, headers=mv)
        if await self._status("volume", self.vol) != "available":
            self.vol = await self._post(m, f"{base}/volumes", {"volume": {"size": 1, "name": "fuzz-vol",
                                                                          "metadata": {"k": "v"}}}, "volume")
            await self._wait("volume", self.vol)
        await m.post(f"{base}/volumes/{self.vol}/metadata", json={"metadata": {"k": "v"}}, headers=mv)
        if await self._status("snapshot", self.snap) != "available":
            self.snap = await self._post(m, f"{base}/snapshots", {"snapshot": {"volume_id": self.vol, "name": "fz",
                                                                               "metadata": {"k": "v"}}}, "snapshot")
            await self._wait("snapshot", self.snap)
        if await self._status("backup", self.backup) != "available":
            self.backup = await self._post(m, f"{base}/backups", {"backup": {"volume_id": self.vol, "name": "fz"}},
                                           "backup")
            await self._wait("backup", self.backup)
            await self._wait("volume", self.vol)
        if await self._status("volume", self.att_vol) not in ("reserved", "attaching", "in-use"):
            self.att_vol = await self._post(m, f"{base}/volumes", {"volume": {"size": 1, "name": "fuzz-att"}}, "volume")
            await self._wait("volume", self.att_vol)
            self.attachment = await self._post(m, f"{base}/attachments", {"attachment": {
                "volume_uuid": self.att_vol, "instance_uuid": SERVER}}, "attachment")
        if not self.type_id or (await a.get(f"{admin_base}/types/{self.type_id}", headers=mv)).status_code != 200:
            listed = (await a.get(f"{admin_base}/types", headers=mv)).json()["volume_types"]
            found = [t["id"] for t in listed if t["name"] == "fuzz-type"]
            self.type_id = found[0] if found else await self._post(
                a, f"{admin_base}/types", {"volume_type": {"name": "fuzz-type"}}, "volume_type")
        await a.post(f"{admin_base}/types/{self.type_id}/extra_specs", json={"extra_specs": {"k": "v"}}, headers=mv)
        for role, project in self.projects().items():
            self.ids[role].clear()
            self.ids[role].update(
                project_id=[project], volume_id=[self.vol, self.att_vol], snapshot_id=[self.snap],
                backup_id=[self.backup], attachment_id=[self.attachment], type_id=[self.type_id, "__DEFAULT__"],
                key=["k", "nope"], target_project=[w.project, w.other_project, w.admin_project],
            )

    def refs(self) -> dict[str, list[Any]]:
        vols = [self.vol, self.att_vol]
        return {
            "volume_id": vols, "source_volid": vols, "volume_uuid": vols, "snapshot_id": [self.snap],
            "backup_id": [self.backup], "instance_uuid": [SERVER], "imageRef": [self.w.image_id],
            "volume_type": ["fuzz-type", "__DEFAULT__", self.type_id], "project": [self.w.other_project],
            "status": ["available", "error", "in-use"],
        }

    def seeds(self, method: str, path: str) -> list[Any] | None:
        tail = path.removeprefix("/volume/v3/{project_id}")
        vol, att = self.vol, self.att_vol
        table: dict[tuple[str, str], list[Any]] = {
            ("post", "/volumes"): [
                {"volume": {"size": 1}}, {"volume": {"size": 1, "name": "fz", "metadata": {"a": "b"}}},
                {"volume": {"source_volid": vol}}, {"volume": {"snapshot_id": self.snap}},
                {"volume": {"size": 1, "imageRef": self.w.image_id}}, {"volume": {"backup_id": self.backup}},
                {"volume": {"size": 1, "volume_type": "fuzz-type", "multiattach": True}},
            ],
            ("put", "/volumes/{volume_id}"): [{"volume": {"name": "renamed", "description": "d"}}],
            ("post", "/volumes/{volume_id}/action"): [
                {"os-extend": {"new_size": 2}}, {"os-set_bootable": {"bootable": True}},
                {"os-update_readonly_flag": {"readonly": True}}, {"os-reserve": {}}, {"os-unreserve": {}},
                {"os-attach": {"instance_uuid": SERVER, "mountpoint": "/dev/vdb"}}, {"os-detach": {}},
                {"os-begin_detaching": {}}, {"os-roll_detaching": {}}, {"os-retype": {"new_type": "fuzz-type"}},
                {"os-volume_upload_image": {"image_name": "fz", "disk_format": "raw"}},
                {"os-reset_status": {"status": "available"}}, {"os-force_delete": {}},
                {"os-initialize_connection": {"connector": {"host": "h"}}},
                {"os-terminate_connection": {"connector": {"host": "h"}}}, {"os-force_detach": {}},
            ],
            ("post", "/volumes/{volume_id}/metadata"): [{"metadata": {"k": "v", "a": "b"}}],
            ("put", "/volumes/{volume_id}/metadata"): [{"metadata": {"k": "v"}}],
            ("put", "/volumes/{volume_id}/metadata/{key}"): [{"meta": {"k": "v2"}}],
            ("post", "/types"): [{"volume_type": {"name": "fz-new", "extra_specs": {"a": "b"}}},
                                 {"volume_type": {"name": "fz-private", "os-volume-type-access:is_public": False}}],
            ("put", "/types/{type_id}"): [{"volume_type": {"description": "d"}}],
            ("post", "/types/{type_id}/action"): [{"addProjectAccess": {"project": self.w.other_project}},
                                                  {"removeProjectAccess": {"project": self.w.other_project}}],
            ("post", "/types/{type_id}/extra_specs"): [{"extra_specs": {"k": "v"}}],
            ("put", "/types/{type_id}/extra_specs/{key}"): [{"k": "v2"}],
            ("post", "/snapshots"): [{"snapshot": {"volume_id": vol, "name": "fz"}}, {"snapshot": {"volume_id": att, "force": True}}],
            ("put", "/snapshots/{snapshot_id}"): [{"snapshot": {"name": "renamed"}}],
            ("post", "/snapshots/{snapshot_id}/action"): [{"os-reset_status": {"status": "available"}}, {"os-force_delete": {}}],
            ("post", "/snapshots/{snapshot_id}/metadata"): [{"metadata": {"k": "v"}}],
            ("put", "/snapshots/{snapshot_id}/metadata"): [{"metadata": {"k": "v"}}],
            ("put", "/snapshots/{snapshot_id}/metadata/{key}"): [{"meta": {"k": "v2"}}],
            ("post", "/backups"): [{"backup": {"volume_id": vol}}, {"backup": {"volume_id": att, "force": True, "incremental": False}}],
            ("put", "/backups/{backup_id}"): [{"backup": {"name": "renamed"}}],
            ("post", "/backups/{backup_id}/restore"): [{"restore": {}}, {"restore": {"volume_id": vol}}, {"restore": {"name": "r"}}],
            ("post", "/backups/{backup_id}/action"): [{"os-reset_status": {"status": "available"}}, {"os-force_delete": {}}],
            ("post", "/attachments"): [{"attachment": {"volume_uuid": vol, "instance_uuid": SERVER}},
                                       {"attachment": {"volume_uuid": vol, "instance_uuid": SERVER,
                                                       "connector": {"host": "h", "mountpoint": "/dev/vdc"}}}],
            ("put", "/attachments/{attachment_id}"): [{"attachment": {"connector": {"host": "h"}}}],
            ("post", "/attachments/{attachment_id}/action"): [{"os-complete": {}}, {"os-complete": None}],
            ("put", "/os-quota-sets/{target_project}"): [{"quota_set": {"volumes": 30}}, {"quota_set": {"gigabytes": -1}}],
        }
        return table.get((method, tail))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[World, Volumes]]:
    async for w in start_world(tmp_path_factory.mktemp("fuzz-volume")):
        yield w, Volumes(w)


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(world: tuple[World, Volumes]) -> tuple[World, Volumes]:
    w, vols = world
    await w.ensure(compute=False)
    await vols.ensure()
    return w, vols


_STRATEGIES: dict[tuple[str, str, str, str], Any] = {}


def _strategy(vols: Volumes, role: str, version: str, path: str, method: str, op: dict[str, Any]) -> Any:
    key = (role, version, path, method)
    if key not in _STRATEGIES:
        seeds = vols.seeds(method, path)
        _STRATEGIES[key] = call_strategy(path, method, op, vols.ids[role], vols.refs(),
                                         {"OpenStack-API-Version": f"volume {version}"},
                                         (lambda: vols.seeds(method, path) or []) if seeds else None)
    return _STRATEGIES[key]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "method", "op"), OPS, ids=[o["operationId"] for _, _, o in OPS])
@FUZZ
@given(data=st.data())
async def test_volume_latest(fresh: tuple[World, Volumes], path: str, method: str, op: dict[str, Any], role: str,
                             data: Any) -> None:
    w, vols = fresh
    call = data.draw(_strategy(vols, role, "3.70", path, method, op))
    check(await send(w.clients[role], call, path), call, FAULT, role)


@pytest.mark.parametrize(("path", "method", "op"), OPS, ids=[o["operationId"] for _, _, o in OPS])
@FUZZ
@given(data=st.data())
async def test_volume_v30(fresh: tuple[World, Volumes], path: str, method: str, op: dict[str, Any], data: Any) -> None:
    w, vols = fresh
    call = data.draw(_strategy(vols, "member", "3.0", path, method, op))
    check(await send(w.clients["member"], call, path), call, FAULT, "member")


async def test_every_volume_write_got_past_validation(world: tuple[World, Volumes]) -> None:
    """The fuzz is only worth something if valid requests get through: every create and update of
    the main resources answered 2xx at least once (run after the fuzz above, in file order)."""
    seen = {k: v for k, v in STATS.items() if k[1].startswith("/volume/")}
    if not seen:
        pytest.skip("run together with the fuzz tests above")
    base = "/volume/v3/{project_id}"
    for method, tail in (("POST", "/volumes"), ("PUT", "/volumes/{volume_id}"), ("POST", "/volumes/{volume_id}/action"),
                         ("POST", "/snapshots"), ("POST", "/backups"), ("POST", "/volumes/{volume_id}/metadata"),
                         ("GET", "/volumes/{volume_id}"), ("GET", "/volumes/detail")):
        counts = seen.get((method, base + tail), {})
        assert any(200 <= code < 300 for code in counts), (method, tail, counts)
