"""OCCI storage and storagelink backends (cumulo.occi.backends.storage / storagelink) against the
in-process cloud (fake driver; the real volume service and volume worker on a file store in a temp
state dir): the mapping of volumes and attachments to entities, create/update/delete, every storage
action with its effect seen through Cinder's own API (and the offline seal on the file), links made
and removed through the compute service's attach/detach, the refusals (400 naming the attribute,
409 for a state that does not allow it) and project isolation."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from occi_cloud import unseal_volumes, until

from cumulo import errors
from cumulo.context import RequestContext, expand_roles
from cumulo.occi import categories
from cumulo.occi.backends import storage as storage_mod
from cumulo.occi.backends import storagelink as link_mod
from cumulo.occi.model import ActionRequest, EntityRequest
from cumulo.volume.worker import offline

JSON = dict[str, Any]
COMPUTE = "/compute/v2.1"
NANO = "42"
ROOT = os.geteuid() == 0  # the offline seal (chattr +i) needs root


def ctx_of(project: str, *roles: str) -> RequestContext:
    return RequestContext(user_id=uuid.uuid4().hex, project_id=project, roles=expand_roles(list(roles or ("member",))))


class Env:
    def __init__(self, cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
        self.cloud = cloud
        self.project = uuid.uuid4().hex
        self.ctx = ctx_of(self.project)
        self.client = as_ctx(self.ctx)
        self.other_ctx = ctx_of(uuid.uuid4().hex)
        self.storage = storage_mod.StorageBackend(categories.STORAGE, cloud.services.volume)
        self.links = link_mod.StorageLinkBackend(categories.STORAGELINK, cloud.services.compute, cloud.services.volume)

    def vol_url(self, suffix: str = "") -> str:
        return f"/volume/v3/{self.project}{suffix}"

    async def cinder(self, vid: str) -> JSON | None:
        r = await self.client.get(self.vol_url(f"/volumes/{vid}"), headers={"OpenStack-API-Version": "volume 3.60"})
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: JSON = r.json()["volume"]
        return body

    async def storage_in(self, vid: str, state: str, message: str | None = None) -> Any:
        async def check() -> Any:
            e = await self.storage.get(self.ctx, vid)
            ok = e.attributes["occi.storage.state"] == state and (
                message is None or e.attributes["occi.storage.state.message"] == message)
            return e if ok else None
        return await until(check, f"storage {vid} {state} {message or ''}")

    async def server(self, name: str, **image_props: Any) -> str:
        r = await self.client.post("/image/v2/images", json={"name": name, "disk_format": "raw",
                                                              "container_format": "bare", **image_props})
        assert r.status_code == 201, r.text
        image = r.json()["id"]
        r = await self.client.put(f"/image/v2/images/{image}/file", content=b"\0" * 4096,
                                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 204, r.text
        r = await self.client.post(f"{COMPUTE}/servers", json={"server": {"name": name, "imageRef": image,
                                                                          "flavorRef": NANO, "networks": "none"}},
                                   headers={"OpenStack-API-Version": "compute 2.37"})
        assert r.status_code == 202, r.text
        sid = str(r.json()["server"]["id"])

        async def active() -> bool:
            body = (await self.client.get(f"{COMPUTE}/servers/{sid}")).json()["server"]
            assert body["status"] != "ERROR", body
            return bool(body["status"] == "ACTIVE" and body.get("OS-EXT-STS:task_state") is None)
        await until(active, f"server {sid} ACTIVE")
        return sid


@pytest.fixture
async def env(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> AsyncIterator[Env]:
    yield Env(cloud, as_ctx)
    unseal_volumes(cloud)


def vol_file(env: Env, vid: str) -> Path:
    return Path(env.cloud.services.conf.state_dir) / "volumes" / f"{vid}.raw"


async def test_storage_is_the_volume_create_update_delete(env: Env) -> None:
    made = await env.storage.create(env.ctx, EntityRequest(kind=categories.STORAGE.id, attributes={
        "occi.storage.size": 2.0, "occi.core.title": "data", "occi.core.summary": "for OCCI"}))
    vid = made.id
    assert made.location == f"/storage/{vid}" and made.kind == categories.STORAGE.id
    e = await env.storage_in(vid, "online", "available")
    assert e.attributes == {"occi.core.id": vid, "occi.core.title": "data", "occi.core.summary": "for OCCI",
                            "occi.storage.size": 2, "occi.storage.state": "online",
                            "occi.storage.state.message": "available"}
    assert e.actions == [storage_mod.OFFLINE_ACTION, storage_mod.BACKUP, storage_mod.SNAPSHOT, storage_mod.RESIZE]
    cinder = await env.cinder(vid)
    assert cinder is not None and (cinder["name"], cinder["description"], cinder["size"]) == ("data", "for OCCI", 2)
    assert [x.id for x in await env.storage.list(env.ctx)] == [vid]
    # GFD.224's size is a float: a fraction asks for at least that much, so it rounds up (pOCCI asks 0.1)
    small = await env.storage.create(env.ctx, EntityRequest(attributes={"occi.storage.size": 0.1}))
    assert small.attributes["occi.storage.size"] == 1 and (await env.cinder(small.id) or {})["size"] == 1
    await env.storage_in(small.id, "online", "available")
    await env.storage.delete(env.ctx, small.id)
    # bad creates: 400 naming the attribute
    for attrs, named in (({}, "occi.storage.size"), ({"occi.storage.size": -1.5}, "positive number"),
                         ({"occi.storage.size": 0}, "positive number"),
                         ({"occi.storage.size": 1, "occi.core.title": "x" * 256}, "occi.core.title"),
                         ({"occi.storage.size": 1, "occi.core.summary": "a\x00b"}, "occi.core.summary")):
        with pytest.raises(errors.Invalid, match=named):
            await env.storage.create(env.ctx, EntityRequest(attributes=attrs))
    # update: title -> name, a bigger size -> extend, smaller -> 400
    e = await env.storage.update(env.ctx, vid, EntityRequest(attributes={"occi.core.title": "renamed",
                                                                         "occi.storage.size": 3}), replace=False)
    assert e.attributes["occi.core.title"] == "renamed"
    e = await env.storage_in(vid, "online", "available")
    assert e.attributes["occi.storage.size"] == 3
    assert (await env.cinder(vid) or {})["size"] == 3 and vol_file(env, vid).stat().st_size == 3 << 30
    with pytest.raises(errors.Invalid, match="only grows"):
        await env.storage.update(env.ctx, vid, EntityRequest(attributes={"occi.storage.size": 1,
                                                                         "occi.core.title": "not kept"}), replace=False)
    assert (await env.storage.get(env.ctx, vid)).attributes["occi.core.title"] == "renamed"  # nothing half done
    e = await env.storage.update(env.ctx, vid, EntityRequest(attributes={"occi.storage.size": 3}), replace=True)
    assert "occi.core.summary" not in e.attributes and e.attributes["occi.core.title"] == ""  # PUT: back to defaults
    # a reader of the project sees it and changes nothing (the volume service's own policy)
    reader = ctx_of(env.project, "reader")
    assert [x.id for x in await env.storage.list(reader)] == [vid]
    for call in (env.storage.act(reader, vid, ActionRequest(storage_mod.OFFLINE_ACTION)),
                 env.storage.update(reader, vid, EntityRequest(attributes={"occi.core.title": "x"}), replace=False),
                 env.storage.delete(reader, vid),
                 env.storage.create(reader, EntityRequest(attributes={"occi.storage.size": 1}))):
        with pytest.raises(errors.Forbidden):
            await call
    # another project sees nothing and reaches nothing
    assert await env.storage.list(env.other_ctx) == []
    with pytest.raises(errors.NotFound):
        await env.storage.get(env.other_ctx, vid)
    with pytest.raises(errors.NotFound):
        await env.storage.act(env.other_ctx, vid, ActionRequest(storage_mod.OFFLINE_ACTION))
    with pytest.raises(errors.NotFound):
        await env.storage.delete(env.other_ctx, vid)
    await env.storage.delete(env.ctx, vid)
    await until(lambda: _gone(env, vid), f"volume {vid} deleted")
    assert not vol_file(env, vid).exists()


async def _gone(env: Env, vid: str) -> bool:
    return await env.cinder(vid) is None


@pytest.mark.skipif(not ROOT, reason="the offline seal (chattr +i) needs root")
async def test_storage_actions_and_their_effects(env: Env) -> None:
    vid = (await env.storage.create(env.ctx, EntityRequest(attributes={"occi.storage.size": 1,
                                                                       "occi.core.title": "acts"}))).id
    await env.storage_in(vid, "online", "available")
    # offline: Cinder's maintenance, the file sealed, only online offered; the rest refused (409)
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.OFFLINE_ACTION))
    e = await env.storage_in(vid, "offline", "maintenance")
    assert e.actions == [storage_mod.ONLINE]
    assert (await env.cinder(vid) or {})["status"] == "maintenance"
    assert await offline.sealed(vol_file(env, vid))
    for action in (storage_mod.OFFLINE_ACTION, storage_mod.BACKUP, storage_mod.SNAPSHOT):
        with pytest.raises(errors.InvalidState, match="not allowed now"):
            await env.storage.act(env.ctx, vid, ActionRequest(action))
    with pytest.raises(errors.InvalidState):
        await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.RESIZE, {"size": 2}))
    with pytest.raises(errors.InvalidState, match="offline"):
        await env.storage.delete(env.ctx, vid)
    with pytest.raises(errors.InvalidState):
        await env.storage.update(env.ctx, vid, EntityRequest(attributes={"occi.storage.size": 2}), replace=False)
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.ONLINE))
    await env.storage_in(vid, "online", "available")
    assert not await offline.sealed(vol_file(env, vid))
    # backup and snapshot: Cinder's own records
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.BACKUP))

    async def backup() -> Any:
        r = await env.client.get(env.vol_url("/backups/detail"))
        found = [b for b in r.json()["backups"] if b["volume_id"] == vid and b["status"] == "available"]
        return found[0] if found else None
    assert (await until(backup, "backup available"))["name"] == "acts backup"
    await env.storage_in(vid, "online", "available")
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.SNAPSHOT))

    async def snapshot() -> Any:
        r = await env.client.get(env.vol_url("/snapshots/detail"))
        found = [s for s in r.json()["snapshots"] if s["volume_id"] == vid and s["status"] == "available"]
        return found[0] if found else None
    snap = await until(snapshot, "snapshot available")
    # resize (1.1): `size`, or occi.storage.size; never smaller
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.RESIZE, {"size": 2.0}))
    assert (await env.storage_in(vid, "online", "available")).attributes["occi.storage.size"] == 2
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.RESIZE, {"occi.storage.size": 4}))
    assert (await env.storage_in(vid, "online", "available")).attributes["occi.storage.size"] == 4
    with pytest.raises(errors.Invalid, match="only grows"):
        await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.RESIZE, {"size": 1}))
    with pytest.raises(errors.Invalid, match="needs the new size"):
        await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.RESIZE, {}))
    with pytest.raises(errors.Invalid, match="unknown storage action"):
        await env.storage.act(env.ctx, vid, ActionRequest("http://schemas.ogf.org/occi/infrastructure/network/action#up"))
    # a storage with snapshots is not deleted (409 naming them) until they are gone
    with pytest.raises(errors.InvalidState, match=snap["id"]):
        await env.storage.delete(env.ctx, vid)
    assert (await env.client.delete(env.vol_url(f"/snapshots/{snap['id']}"))).status_code == 202
    await until(lambda: _snapshot_gone(env, snap["id"]), "snapshot deleted")
    await env.storage.delete(env.ctx, vid)
    await until(lambda: _gone(env, vid), f"volume {vid} deleted")


async def _snapshot_gone(env: Env, snap_id: str) -> bool:
    return (await env.client.get(env.vol_url(f"/snapshots/{snap_id}"))).status_code == 404


async def test_storagelink_attaches_and_detaches_through_the_compute_service(env: Env) -> None:
    vm = await env.server("vm")
    box = await env.server("box", hypervisor_type="container")
    vid = (await env.storage.create(env.ctx, EntityRequest(attributes={"occi.storage.size": 1}))).id
    other = (await env.storage.create(env.ctx, EntityRequest(attributes={"occi.storage.size": 1}))).id
    await env.storage_in(vid, "online", "available")
    await env.storage_in(other, "online", "available")
    # bad links: 400 naming the attribute
    for attrs, named in (({"occi.core.target": f"/storage/{vid}"}, "occi.core.source"),
                         ({"occi.core.source": f"/compute/{vm}"}, "occi.core.target"),
                         ({"occi.core.source": f"/storage/{vid}", "occi.core.target": f"/storage/{vid}"},
                          "occi.core.source"),
                         ({"occi.core.source": f"/compute/{vm}", "occi.core.target": f"/storage/{uuid.uuid4()}"},
                          "does not exist"),
                         ({"occi.core.source": f"/compute/{vm}", "occi.core.target": f"/storage/{vid}",
                           "occi.storagelink.deviceid": "/etc/passwd"}, "occi.storagelink.deviceid")):
        with pytest.raises(errors.Invalid, match=named):
            await env.links.create(env.ctx, EntityRequest(attributes=attrs))
    link = await env.links.create(env.ctx, EntityRequest(attributes={
        "occi.core.source": f"http://cumulo.test/occi/compute/{vm}", "occi.core.target": f"/storage/{vid}",
        "occi.storagelink.deviceid": "/dev/vdc"}))
    assert link.location == f"/storagelink/{link.id}"

    async def active(link_id: str) -> Any:
        e = await env.links.get(env.ctx, link_id)
        return e if e.attributes["occi.storagelink.state"] == "active" else None
    e = await until(lambda: active(link.id), "link active")
    assert e.attributes == {"occi.core.id": link.id, "occi.core.source": f"/compute/{vm}",
                            "occi.core.target": f"/storage/{vid}", "occi.storagelink.deviceid": "/dev/vdc",
                            "occi.storagelink.mountpoint": "/dev/vdc", "occi.storagelink.state": "active",
                            "occi.storagelink.state.message": "attached, volume in-use"}
    # the same attachment in Nova's and Cinder's APIs
    r = await env.client.get(f"{COMPUTE}/servers/{vm}/os-volume_attachments")
    assert [(a["volumeId"], a["device"]) for a in r.json()["volumeAttachments"]] == [(vid, "/dev/vdc")]
    cinder = await env.cinder(vid) or {}
    assert cinder["status"] == "in-use" and cinder["attachments"][0]["attachment_id"] == link.id
    assert (await env.storage.get(env.ctx, vid)).actions == [storage_mod.BACKUP, storage_mod.SNAPSHOT,
                                                             storage_mod.RESIZE]
    # a container sees its storage at /mnt/volumes/<id>
    boxed = await env.links.create(env.ctx, EntityRequest(attributes={
        "occi.core.source": f"/compute/{box}", "occi.core.target": f"/storage/{other}",
        "occi.storagelink.mountpoint": "/somewhere/else"}))  # the cloud decides the mountpoint
    e = await until(lambda: active(boxed.id), "container link active")
    assert e.attributes["occi.storagelink.mountpoint"] == f"/mnt/volumes/{other}"
    assert e.attributes["occi.storagelink.deviceid"] == "/dev/vdb"
    assert sorted(x.id for x in await env.links.list(env.ctx)) == sorted([link.id, boxed.id])
    assert [x.id for x in await env.links.links_of(env.ctx, [box])] == [boxed.id]  # a compute's own links
    assert [x.id for x in await env.links.links_of(env.other_ctx, [box])] == []
    # refusals while linked (409), changes of a link (400), another project (404 / empty)
    with pytest.raises(errors.InvalidState, match="storagelink"):
        await env.storage.delete(env.ctx, vid)
    with pytest.raises(errors.InvalidState, match="not allowed now"):
        await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.OFFLINE_ACTION))
    with pytest.raises(errors.InvalidState):
        await env.links.create(env.ctx, EntityRequest(attributes={
            "occi.core.source": f"/compute/{box}", "occi.core.target": f"/storage/{vid}"}))
    with pytest.raises(errors.Invalid, match="cannot change"):
        await env.links.update(env.ctx, link.id, EntityRequest(attributes={"occi.storagelink.deviceid": "/dev/vdd"}),
                               replace=False)
    same = await env.links.update(env.ctx, link.id, EntityRequest(attributes={"occi.storagelink.deviceid": "/dev/vdc"}),
                                  replace=True)
    assert same.id == link.id
    assert await env.links.list(env.other_ctx) == []
    reader = ctx_of(env.project, "reader")
    assert sorted(x.id for x in await env.links.list(reader)) == sorted([link.id, boxed.id])
    for call in (env.links.delete(reader, link.id), env.links.create(reader, EntityRequest(attributes={
            "occi.core.source": f"/compute/{box}", "occi.core.target": f"/storage/{vid}"}))):
        with pytest.raises(errors.Forbidden):
            await call
    for call in (env.links.get(env.other_ctx, link.id), env.links.delete(env.other_ctx, link.id)):
        with pytest.raises(errors.NotFound):
            await call
    with pytest.raises(errors.Invalid, match="does not exist"):
        await env.links.create(env.other_ctx, EntityRequest(attributes={
            "occi.core.source": f"/compute/{vm}", "occi.core.target": f"/storage/{vid}"}))
    # delete = detach: the volume is available again, the link gone
    await env.links.delete(env.ctx, link.id)
    await env.storage_in(vid, "online", "available")

    async def unlinked() -> bool:
        try:
            await env.links.get(env.ctx, link.id)
        except errors.NotFound:
            return True
        return False
    await until(unlinked, "link gone")
    assert [x.id for x in await env.links.list(env.ctx)] == [boxed.id]
    r = await env.client.get(f"{COMPUTE}/servers/{vm}/os-volume_attachments")
    assert r.json()["volumeAttachments"] == []


@pytest.mark.skipif(not ROOT, reason="the offline seal (chattr +i) needs root")
async def test_an_offline_storage_is_not_linked(env: Env) -> None:
    vm = await env.server("vm")
    vid = (await env.storage.create(env.ctx, EntityRequest(attributes={"occi.storage.size": 1}))).id
    await env.storage_in(vid, "online", "available")
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.OFFLINE_ACTION))
    await env.storage_in(vid, "offline", "maintenance")
    with pytest.raises(errors.InvalidState, match="offline"):
        await env.links.create(env.ctx, EntityRequest(attributes={
            "occi.core.source": f"/compute/{vm}", "occi.core.target": f"/storage/{vid}"}))
    # Nova's own attach refuses it too (Cinder's status check: 400)
    r = await env.client.post(f"{COMPUTE}/servers/{vm}/os-volume_attachments",
                              json={"volumeAttachment": {"volumeId": vid}})
    assert r.status_code == 400 and "maintenance" in r.text, r.text
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.ONLINE))
    await env.storage_in(vid, "online", "available")
    link = await env.links.create(env.ctx, EntityRequest(attributes={
        "occi.core.source": f"/compute/{vm}", "occi.core.target": f"/storage/{vid}"}))
    assert link.attributes["occi.storagelink.deviceid"] == "/dev/vdb"


async def test_an_offline_the_host_refuses_shows_in_the_state_message(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(store: object, volume_id: str) -> Path:
        raise errors.HostError("chattr +i failed (1): Operation not supported")

    monkeypatch.setattr(offline, "seal", refused)
    vid = (await env.storage.create(env.ctx, EntityRequest(attributes={"occi.storage.size": 1}))).id
    await env.storage_in(vid, "online", "available")
    await env.storage.act(env.ctx, vid, ActionRequest(storage_mod.OFFLINE_ACTION))

    async def back() -> Any:
        e = await env.storage.get(env.ctx, vid)
        return e if "Operation not supported" in e.attributes["occi.storage.state.message"] else None
    e = await until(back, "the refusal in the state message")
    assert e.attributes["occi.storage.state"] == "online"
    assert e.attributes["occi.storage.state.message"].startswith("available (the last operation failed: offline failed")
    assert storage_mod.OFFLINE_ACTION in e.actions

