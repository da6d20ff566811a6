"""The OCCI compute backend and template mixins over the in-process cloud (fake driver): the
servers it makes are Nova's servers (same rows, same states), actions map to Nova's, and another
project sees nothing. The real-host effects (runc, QEMU, authorized_keys, user data) are the
system tests' (tests/system/test_occi_*.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _asgi_ctx import ctx_for
from occi_cloud import image, services

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi import categories
from cumulo.occi.backends import compute as occi_compute
from cumulo.occi.backends import templates
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, LinkRequest, split_location

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBd3mVmyC6gxhnTt2nVkVqSUdMAhFqvOhYnOOjEjn8Aq occi@test"
H = {"OpenStack-API-Version": "compute 2.79"}


async def settle(backend: occi_compute.ComputeBackend, ctx: RequestContext, sid: str, timeout: float = 20.0) -> Entity:
    """The entity once no task runs on its server (polls with a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ent = await backend.get(ctx, sid)
        message = ent.attributes["occi.compute.state.message"]  # "<vm_state>[/<task_state>]"
        if "/" not in message and message != "building":
            return ent
        assert loop.time() < deadline, f"server stuck in {message}"
        await asyncio.sleep(0.03)


async def volume_status(client: httpx.AsyncClient, vid: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await client.get(f"/volume/v3/p1/volumes/{vid}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()["volume"]
        if body["status"] == status:
            return body
        assert loop.time() < deadline, f"volume {vid} is {body['status']}, not {status}"
        await asyncio.sleep(0.03)


def os_tpl(image_id: str) -> str:
    return templates.OS_SCHEME + image_id


def res_tpl(flavorid: str) -> str:
    return templates.RESOURCE_SCHEME + flavorid


def act(term: str, **attrs: Any) -> ActionRequest:
    return ActionRequest(categories.COMPUTE_ACTION + term, attrs)


def test_instance_type_from_the_image() -> None:
    assert templates.instance_type({"container_format": "docker"}) == "container"
    assert templates.instance_type({"container_format": "bare", "disk_format": "qcow2"}) == "vm"
    assert templates.instance_type({"container_format": "bare", "hypervisor_type": "container"}) == "container"
    assert templates.instance_type({"container_format": "docker", "hypervisor_type": "qemu"}) == "vm"
    mixin = templates.os_tpl_of({"id": "0b6b5b2e-0000-4000-8000-000000000001", "name": "alpine", "container_format": "oci"})
    assert mixin.title == "alpine (container)" and mixin.depends == (categories.OS_TPL.id,)
    assert mixin.applies == (categories.COMPUTE.id,) and mixin.location == "/os_tpl/0b6b5b2e-0000-4000-8000-000000000001/"
    assert templates.flavor_term("m1.tiny").startswith("flavor-") and templates.flavor_term("42") == "42"


async def test_templates_are_the_callers_images_and_flavors(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    svc = services(cloud)
    p1, p2 = ctx_for("p1"), ctx_for("p2")
    img = await image(as_ctx(p1), "mine")
    os_src, res_src = templates.make(svc)
    mine = {m.id: m for m in await os_src.mixins(p1)}
    assert mine[os_tpl(img)].title == "mine (vm)"
    assert mine[os_tpl(img)].attributes[0].default == "vm"
    assert os_tpl(img) not in {m.id for m in await os_src.mixins(p2)}  # a private image of p1
    flavors = {m.id: m for m in await res_src.mixins(p1)}
    tiny = flavors[res_tpl("1")]
    assert tiny.title == "m1.tiny" and tiny.depends == (categories.RESOURCE_TPL.id,)
    assert {a.name: a.default for a in tiny.attributes} == {"occi.compute.cores": 1, "occi.compute.memory": 0.5}
    with pytest.raises(errors.Invalid, match="os_tpl"):
        await os_src.image_for(p2, os_tpl(img))
    # lookup: only the named ones, only those the caller sees
    named = [os_tpl(img), res_tpl("1"), os_tpl("not-an-image"), res_tpl("nope")]
    assert [m.id for m in await os_src.lookup(p1, named)] == [os_tpl(img)]
    assert await os_src.lookup(p2, named) == []
    assert [m.id for m in await res_src.lookup(p1, named)] == [res_tpl("1")]
    # the same request's create takes the image lookup read (once), another request reads it again
    assert (p1.request_id, img) in templates._SEEN
    assert (await os_src.image_for(p1, os_tpl(img)))["id"] == img
    assert (p1.request_id, img) not in templates._SEEN
    assert (await os_src.image_for(ctx_for("p1"), os_tpl(img)))["id"] == img
    assert p1.request_id in templates._FLAVORS
    assert (await res_src.flavor_for(p1, res_tpl("1")))["name"] == "m1.tiny"
    assert p1.request_id not in templates._FLAVORS
    assert (await res_src.flavor_for(ctx_for("p1"), res_tpl("2")))["name"] == "m1.small"


async def test_create_act_update_delete(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
    svc = services(cloud)
    p1, p2 = ctx_for("p1"), ctx_for("p2")
    nova = as_ctx(p1)
    img = await image(nova, architecture="x86_64")
    backend = occi_compute.make(svc)

    with pytest.raises(errors.Invalid, match="os_tpl"):
        await backend.create(p1, EntityRequest(kind=categories.COMPUTE.id, mixins=[res_tpl("1")]))
    with pytest.raises(errors.Invalid, match="occi.credentials.ssh.publickey"):
        await backend.create(p1, EntityRequest(kind=categories.COMPUTE.id, mixins=[os_tpl(img), categories.SSH_KEY.id],
                                               attributes={"occi.credentials.ssh.publickey": "ssh-rsa AAAA\nssh-rsa BBBB"}))

    req = EntityRequest(
        kind=categories.COMPUTE.id,
        mixins=[os_tpl(img), res_tpl("1"), categories.SSH_KEY.id, categories.USER_DATA.id],
        attributes={"occi.core.title": "web", "occi.compute.hostname": "web01", "occi.credentials.ssh.publickey": KEY,
                    "occi.compute.userdata": "#!/bin/sh\necho hello\n"},
    )
    made = await backend.create(p1, req)
    sid = made.id
    assert made.location == f"/compute/{sid}" and made.kind == categories.COMPUTE.id
    ent = await settle(backend, p1, sid)
    a = ent.attributes
    assert a["occi.core.title"] == "web" and a["occi.compute.hostname"] == "web01"
    assert a["occi.compute.state"] == "active" and a["occi.compute.cores"] == 1 and a["occi.compute.memory"] == 0.5
    assert a["occi.compute.architecture"] == "x64" and a["cumulo.compute.instance_type"] == "vm"
    assert set(ent.mixins) == {os_tpl(img), res_tpl("1")}
    assert set(ent.actions) == {occi_compute.STOP, occi_compute.RESTART, occi_compute.SUSPEND, occi_compute.SAVE}
    assert "occi.compute.userdata" not in a and "occi.credentials.ssh.publickey" not in a

    # The same server through Nova: name, key and user data as a Nova create would keep them.
    r = await nova.get(f"/compute/v2.1/servers/{sid}", headers=H)
    assert r.status_code == 200 and r.json()["server"]["name"] == "web" and r.json()["server"]["status"] == "ACTIVE"
    row = await svc.compute.get(p1, sid)
    assert row["key_data"] == KEY and row["key_name"] == "occi-ssh-key"
    assert base64.b64decode(row["user_data"]) == b"#!/bin/sh\necho hello\n"
    assert row["hostname"] == "web01"

    # Another project sees nothing and can act on nothing.
    assert sid not in {e.id for e in await backend.list(p2)}
    listed = {e.id: e for e in await backend.list(p1)}
    assert listed[sid].attributes == ent.attributes and listed[sid].mixins == ent.mixins  # as GET renders it
    for call in (backend.get(p2, sid), backend.act(p2, sid, act("stop")), backend.delete(p2, sid)):
        with pytest.raises(errors.NotFound):
            await call

    # Actions: not allowed in the state -> 409; each maps to Nova's.
    with pytest.raises(errors.InvalidState):
        await backend.act(p1, sid, act("start"))
    with pytest.raises(errors.Invalid, match="method"):
        await backend.act(p1, sid, act("stop", method="yank"))
    await backend.act(p1, sid, act("stop", method="poweroff"))
    ent = await settle(backend, p1, sid)
    assert ent.attributes["occi.compute.state"] == "inactive" and occi_compute.START in ent.actions
    assert occi_compute.STOP not in ent.actions
    with pytest.raises(errors.InvalidState):  # a soft reboot of a stopped server
        await backend.act(p1, sid, act("restart", method="warm"))
    await backend.act(p1, sid, act("restart"))  # no method: the hard reboot Nova allows from SHUTOFF
    assert (await settle(backend, p1, sid)).attributes["occi.compute.state"] == "active"
    await backend.act(p1, sid, act("stop"))
    assert (await settle(backend, p1, sid)).attributes["occi.compute.state"] == "inactive"
    await backend.act(p1, sid, act("start"))
    assert (await settle(backend, p1, sid)).attributes["occi.compute.state"] == "active"
    await backend.act(p1, sid, act("suspend", method="hibernate"))
    ent = await settle(backend, p1, sid)
    assert ent.attributes["occi.compute.state"] == "suspended" and occi_compute.START in ent.actions
    await backend.act(p1, sid, act("start"))  # resume
    assert (await settle(backend, p1, sid)).attributes["occi.compute.state"] == "active"
    await backend.act(p1, sid, act("restart", method="cold"))
    assert (await settle(backend, p1, sid)).attributes["occi.compute.state"] == "active"
    await backend.act(p1, sid, act("restart", method="warm"))
    assert (await settle(backend, p1, sid)).attributes["occi.compute.state"] == "active"
    r = await nova.get(f"/compute/v2.1/servers/{sid}/os-instance-actions", headers=H)
    assert [x["action"] for x in r.json()["instanceActions"]][:8] == ["reboot", "reboot", "resume", "suspend", "start", "stop", "reboot", "stop"]
    await backend.act(p1, sid, act("save", name="web-snap"))
    await settle(backend, p1, sid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    os_src = templates.OsTemplates(svc.images)
    while not any(m.title == "web-snap (vm)" for m in await os_src.mixins(p1)):
        assert loop.time() < deadline, "the snapshot never became an os_tpl"
        await asyncio.sleep(0.05)

    # Update: rename, hostname; cores cannot change by hand; a new resource_tpl resizes (confirmed).
    ent = await backend.update(p1, sid, EntityRequest(attributes={"occi.core.title": "web2", "occi.core.summary": "x"}),
                               replace=False)
    assert ent.attributes["occi.core.title"] == "web2" and ent.attributes["occi.core.summary"] == "x"
    with pytest.raises(errors.Invalid, match="occi.compute.cores"):
        await backend.update(p1, sid, EntityRequest(attributes={"occi.compute.cores": 4}), replace=False)
    with pytest.raises(errors.Invalid, match="os_tpl"):
        await backend.update(p1, sid, EntityRequest(mixins=[os_tpl("9d3f3c4e-0000-4000-8000-000000000000")]),
                             replace=False)
    await backend.update(p1, sid, EntityRequest(mixins=[res_tpl("2")]), replace=False)
    deadline = loop.time() + 20
    while True:
        row = await svc.compute.get(p1, sid)
        if row["vm_state"] == "active" and row["task_state"] is None and row["flavor"]["flavorid"] == "2":
            break
        assert loop.time() < deadline, f"resize never confirmed: {row['vm_state']}/{row['task_state']}"
        await asyncio.sleep(0.05)
    ent = await backend.get(p1, sid)
    assert res_tpl("2") in ent.mixins and ent.attributes["occi.compute.memory"] == 2.0
    ent = await backend.update(p1, sid, EntityRequest(attributes={"occi.core.title": "web3"}), replace=True)
    assert "occi.core.summary" not in ent.attributes  # PUT: an absent mutable attribute returns to its default

    await backend.delete(p1, sid)
    deadline = loop.time() + 20
    while sid in {e.id for e in await backend.list(p1)}:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    with pytest.raises(errors.NotFound):
        await backend.get(p1, sid)
    await backend.close()


async def test_default_flavor_and_inline_network(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
    svc = services(cloud)
    p1 = ctx_for("p1")
    nova = as_ctx(p1)
    img = await image(nova, min_ram=100)
    r = await as_ctx(p1).post("/networking/v2.0/networks", json={"network": {"name": "n1"}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]["id"]
    r = await nova.post("/networking/v2.0/subnets", json={"subnet": {"network_id": net, "cidr": "10.9.0.0/24", "ip_version": 4}})
    assert r.status_code == 201, r.text
    backend = occi_compute.make(svc)
    with pytest.raises(errors.Invalid, match="link target"):
        await backend.create(p1, EntityRequest(kind=categories.COMPUTE.id, mixins=[os_tpl(img)],
                                               links=[LinkRequest(target="/nowhere")]))
    r = await nova.post("/volume/v3/p1/volumes", json={"volume": {"size": 1, "name": "data"}})
    assert r.status_code == 202, r.text
    vid = r.json()["volume"]["id"]
    await volume_status(nova, vid, "available")
    made = await backend.create(p1, EntityRequest(
        kind=categories.COMPUTE.id, mixins=[os_tpl(img)],
        links=[LinkRequest(target=f"http://h/occi/network/{net}", kind=categories.NETWORKINTERFACE.id,
                           attributes={"occi.networkinterface.address": "10.9.0.42/24"}),
               LinkRequest(target=f"/storage/{vid}", kind=categories.STORAGELINK.id,
                           attributes={"occi.storagelink.deviceid": "/dev/vdb"})],
    ))
    with pytest.raises(errors.Invalid, match="occi.compute.cores=2 is not the resource_tpl's"):
        await backend.create(p1, EntityRequest(kind=categories.COMPUTE.id, mixins=[os_tpl(img), res_tpl("1")],
                                               attributes={"occi.compute.cores": 2}))
    with pytest.raises(errors.Invalid, match="no resource_tpl has occi.compute.cores=3"):
        await backend.create(p1, EntityRequest(kind=categories.COMPUTE.id, mixins=[os_tpl(img)],
                                               attributes={"occi.compute.cores": 3}))
    sized = await backend.create(p1, EntityRequest(kind=categories.COMPUTE.id, mixins=[os_tpl(img)],
                                                   attributes={"occi.compute.cores": 1, "occi.compute.memory": 2.0}))
    assert res_tpl("2") in sized.mixins  # m1.small: 1 vCPU, 2 GiB
    # new cores/memory on update: a resize to the smallest flavor that has them
    await settle(backend, p1, sized.id)
    await backend.update(p1, sized.id, EntityRequest(attributes={"occi.compute.cores": 2, "occi.compute.memory": 4}),
                         replace=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:  # VERIFY_RESIZE (inactive), then confirmed by the backend: active on m1.medium
        resized = await settle(backend, p1, sized.id)
        if res_tpl("3") in resized.mixins and resized.attributes["occi.compute.state"] == "active":
            break
        assert loop.time() < deadline, resized.attributes["occi.compute.state.message"]
        await asyncio.sleep(0.05)
    assert resized.attributes["occi.compute.cores"] == 2 and resized.attributes["occi.compute.memory"] == 4.0
    await backend.delete(p1, sized.id)
    await backend.close()

    ent = await settle(backend, p1, made.id)
    assert ent.attributes["occi.compute.state"] == "active"
    # the volume was attached at boot, as a data disk (a block device mapping of the create)
    attached = await volume_status(nova, vid, "in-use")
    assert [(a["server_id"], a["device"]) for a in attached["attachments"]] == [(made.id, "/dev/vdb")]
    links = {(split_location(link.location)[0], link.attributes.get("occi.core.target")) for link in ent.links}
    kinds = {b.kind.id for b in backend.link_backends}
    if categories.STORAGELINK.id in kinds:
        assert ("storagelink", f"/storage/{vid}") in links
    if categories.NETWORKINTERFACE.id in kinds:
        assert ("networkinterface", f"/network/{net}") in links
    # no resource_tpl: the smallest flavor with at least the image's min_ram (m1.micro: 128 MiB >= 100)
    assert templates.RESOURCE_SCHEME + "84" in ent.mixins
    assert ent.attributes["occi.core.title"].startswith("occi-")
    r = await nova.get(f"/compute/v2.1/servers/{made.id}", headers=H)
    assert [a["addr"] for a in r.json()["server"]["addresses"]["n1"]] == ["10.9.0.42"]
    await backend.delete(p1, made.id)
    await volume_status(nova, vid, "available")  # the volume outlives the server (delete_on_termination off)
