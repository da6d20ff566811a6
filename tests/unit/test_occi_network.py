"""The OCCI network and networkinterface backends over the in-process cloud (fake driver): networks
are Neutron's networks (a subnet for the ipnetwork mixin, made or refused together with its network),
up/down is admin_state_up (409 in the other state), networkinterfaces are a server's ports attached
and detached through Nova's os-interface path, and another project sees nothing. The bridge really
going down is tests/contract/test_netplane_admin_state.py's and the system tests'."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _asgi_ctx import ctx_for
from occi_cloud import image, services

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi import categories
from cumulo.occi.backends import network as occi_network
from cumulo.occi.backends import networkinterface as occi_nic
from cumulo.occi.deps import OcciServices
from cumulo.occi.model import ActionRequest, EntityRequest, LinkRequest

IPNET = categories.IPNETWORK.id
IPNIC = categories.IPNETWORKINTERFACE.id


def act(term: str) -> ActionRequest:
    return ActionRequest(categories.NETWORK_ACTION + term, {})


def new_net(title: str, **attrs: Any) -> EntityRequest:
    return EntityRequest(kind=categories.NETWORK.id, mixins=[IPNET] if attrs else [],
                         attributes={"occi.core.title": title, **attrs})


async def test_network_create_read_act_update_delete(cloud: Any) -> None:
    svc = services(cloud)
    backend = occi_network.make(svc)
    p1, p2 = ctx_for("p1"), ctx_for("p2")

    plain = await backend.create(p1, new_net("plain"))
    assert plain.location == f"/network/{plain.id}" and plain.mixins == []
    assert plain.attributes["occi.network.state"] == "active" and plain.actions == [occi_network.DOWN]
    assert (await svc.network.get_network(p1, plain.id))["name"] == "plain"

    ent = await backend.create(p1, new_net("lan", **{"occi.network.address": "10.20.0.0/24",
                                                     "occi.network.gateway": "10.20.0.254",
                                                     "occi.network.allocation": "static"}))
    a = ent.attributes
    assert ent.mixins == [IPNET] and a["occi.network.address"] == "10.20.0.0/24"
    assert a["occi.network.gateway"] == "10.20.0.254" and a["occi.network.allocation"] == "static"
    [sub] = [s for s in await svc.network.list_subnets(p1) if s["network_id"] == ent.id]
    assert sub["cidr"] == "10.20.0.0/24" and sub["enable_dhcp"] is False and sub["gateway_ip"] == "10.20.0.254"

    # ipnetwork without an address: a prefix of the default subnet pool, DHCP on.
    pooled = await backend.create(p1, EntityRequest(kind=categories.NETWORK.id, mixins=[IPNET],
                                                    attributes={"occi.core.title": "pooled"}))
    assert pooled.mixins == [IPNET] and pooled.attributes["occi.network.allocation"] == "dynamic"
    assert "/" in pooled.attributes["occi.network.address"]

    # Network and subnet are made together or not at all.
    before = {n["id"] for n in await svc.network.list_networks(p1)}
    with pytest.raises(errors.Invalid, match="host bits"):
        await backend.create(p1, new_net("bad", **{"occi.network.address": "10.21.0.5/24"}))
    with pytest.raises(errors.CumuloError):  # a gateway outside the subnet: the network goes again
        await backend.create(p1, new_net("bad", **{"occi.network.address": "10.21.0.0/24",
                                                   "occi.network.gateway": "192.168.9.1"}))
    assert {n["id"] for n in await svc.network.list_networks(p1)} == before

    # Scope: p1 sees its own and the shared/external public; p2 sees neither of p1's.
    mine = {e.id: e for e in await backend.list(p1)}
    assert {plain.id, ent.id} <= set(mine)
    public = [e for e in mine.values() if e.attributes["occi.core.title"] == "public"]
    assert public and public[0].actions == []  # not p1's to bring up or down
    with pytest.raises(errors.Forbidden):
        await backend.act(p1, public[0].id, act("down"))
    assert not {plain.id, ent.id} & {e.id for e in await backend.list(p2)}
    for call in (backend.get(p2, ent.id), backend.act(p2, ent.id, act("down")), backend.delete(p2, ent.id),
                 backend.update(p2, ent.id, EntityRequest(attributes={"occi.core.title": "x"}), replace=False)):
        with pytest.raises(errors.NotFound):
            await call

    # down/up: admin_state_up; the same action twice is a 409.
    await backend.act(p1, ent.id, act("down"))
    assert (await svc.network.get_network(p1, ent.id))["admin_state_up"] is False
    got = await backend.get(p1, ent.id)
    assert got.attributes["occi.network.state"] == "inactive" and got.actions == [occi_network.UP]
    with pytest.raises(errors.InvalidState):
        await backend.act(p1, ent.id, act("down"))
    await backend.act(p1, ent.id, act("up"))
    assert (await backend.get(p1, ent.id)).attributes["occi.network.state"] == "active"
    with pytest.raises(errors.InvalidState):
        await backend.act(p1, ent.id, act("up"))
    with pytest.raises(errors.Invalid):
        await backend.act(p1, ent.id, ActionRequest(categories.COMPUTE_ACTION + "start", {}))

    # Update: title, summary, gateway, allocation; vlan is Neutron's admin-only provider attribute.
    got = await backend.update(p1, ent.id, EntityRequest(attributes={
        "occi.core.title": "lan2", "occi.core.summary": "the lan", "occi.network.allocation": "dynamic"}),
        replace=False)
    a = got.attributes
    assert a["occi.core.title"] == "lan2" and a["occi.core.summary"] == "the lan"
    assert a["occi.network.gateway"] == "10.20.0.254" and a["occi.network.allocation"] == "dynamic"
    with pytest.raises(errors.Conflict):  # Neutron: a gateway inside the allocation pool
        await backend.update(p1, ent.id, EntityRequest(attributes={"occi.network.gateway": "10.20.0.1"}),
                             replace=False)
    with pytest.raises(errors.Forbidden):
        await backend.update(p1, ent.id, EntityRequest(attributes={"occi.network.vlan": 42}), replace=False)
    got = await backend.update(p1, ent.id, EntityRequest(attributes={"occi.core.title": "lan2"}), replace=True)
    assert "occi.core.summary" not in got.attributes  # PUT without it clears it

    # A new address replaces a subnet nobody uses; with a port on it, it is a 409.
    got = await backend.update(p1, ent.id, EntityRequest(attributes={"occi.network.address": "10.30.0.0/24"}),
                               replace=False)
    assert got.attributes["occi.network.address"] == "10.30.0.0/24"
    assert got.attributes["occi.network.allocation"] == "dynamic"
    port = await svc.network.create_port(p1, {"network_id": ent.id})
    with pytest.raises(errors.Conflict, match="occi.network.address"):
        await backend.update(p1, ent.id, EntityRequest(attributes={"occi.network.address": "10.31.0.0/24"}),
                             replace=False)
    assert (await backend.get(p1, ent.id)).attributes["occi.network.address"] == "10.30.0.0/24"
    # An ipnetwork added later gives a plain network its subnet.
    got = await backend.update(p1, plain.id, EntityRequest(mixins=[IPNET], attributes={
        "occi.network.address": "10.40.0.0/24"}), replace=False)
    assert got.mixins == [IPNET] and got.attributes["occi.network.allocation"] == "dynamic"

    # Delete: refused while a port uses the network (409), then gone with its subnet.
    with pytest.raises(errors.Conflict):
        await backend.delete(p1, ent.id)
    await svc.network.delete_port(p1, port["id"])
    await backend.delete(p1, ent.id)
    with pytest.raises(errors.NotFound):
        await backend.get(p1, ent.id)
    assert not [s for s in await svc.network.list_subnets(p1) if s["network_id"] == ent.id]


async def active(svc: OcciServices, ctx: RequestContext, uuid: str, timeout: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        row = await svc.compute.get(ctx, uuid)
        if row["vm_state"] == "active" and row["task_state"] is None:
            return row
        assert loop.time() < deadline, f"server stuck in {row['vm_state']}/{row['task_state']}"
        await asyncio.sleep(0.03)


async def test_networkinterface_attach_read_detach(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> None:
    from cumulo.occi.backends import compute as occi_compute
    from cumulo.occi.backends import templates

    svc = services(cloud)
    p1, p2 = ctx_for("p1"), ctx_for("p2")
    nets = occi_network.make(svc)
    nics = occi_nic.make(svc)
    a = await nets.create(p1, new_net("a", **{"occi.network.address": "10.50.0.0/24"}))
    b = await nets.create(p1, new_net("b", **{"occi.network.address": "10.51.0.0/24",
                                              "occi.network.allocation": "static"}))
    img = await image(as_ctx(p1))
    computes = occi_compute.make(svc)
    made = await computes.create(p1, EntityRequest(
        kind=categories.COMPUTE.id, mixins=[templates.OS_SCHEME + img, templates.RESOURCE_SCHEME + "1"],
        attributes={"occi.core.title": "vm"},
        links=[LinkRequest(target=f"/network/{a.id}", kind=categories.NETWORKINTERFACE.id,
                           attributes={"occi.networkinterface.address": "10.50.0.10"})]))
    await active(svc, p1, made.id)

    [eth0] = await nics.list(p1)
    at = eth0.attributes
    assert at["occi.core.source"] == f"/compute/{made.id}" and at["occi.core.target"] == f"/network/{a.id}"
    assert at["occi.networkinterface.interface"] == "eth0" and at["occi.networkinterface.state"] == "active"
    assert eth0.mixins == [IPNIC] and at["occi.networkinterface.address"] == "10.50.0.10"
    assert at["occi.networkinterface.gateway"] == "10.50.0.1" and at["occi.networkinterface.allocation"] == "dynamic"
    port = await svc.network.get_port(p1, eth0.id)
    assert port["device_id"] == made.id and at["occi.networkinterface.mac"] == port["mac_address"]
    assert [e.id for e in await nics.links_of(p1, [made.id])] == [eth0.id]

    # A networkinterface posted on its own: a port on b, hot plugged (os-interface attach).
    with pytest.raises(errors.Invalid, match="occi.core.target"):
        await nics.create(p1, EntityRequest(kind=categories.NETWORKINTERFACE.id, attributes={
            "occi.core.source": f"/compute/{made.id}", "occi.core.target": f"/storage/{b.id}"}))
    with pytest.raises(errors.NotFound):  # p2 cannot link to p1's compute
        await nics.create(p2, EntityRequest(kind=categories.NETWORKINTERFACE.id, attributes={
            "occi.core.source": f"/compute/{made.id}", "occi.core.target": f"/network/{b.id}"}))
    eth1 = await nics.create(p1, EntityRequest(kind=categories.NETWORKINTERFACE.id, mixins=[IPNIC], attributes={
        "occi.core.source": f"http://cumulo.test/occi/compute/{made.id}", "occi.core.target": f"/network/{b.id}",
        "occi.networkinterface.address": "10.51.0.7", "occi.core.title": "second"}))
    at = eth1.attributes
    assert at["occi.networkinterface.interface"] == "eth1" and at["occi.networkinterface.address"] == "10.51.0.7"
    assert at["occi.networkinterface.allocation"] == "static" and at["occi.core.title"] == "second"
    r = await as_ctx(p1).get(f"/compute/v2.1/servers/{made.id}/os-interface")
    assert {i["port_id"] for i in r.json()["interfaceAttachments"]} == {eth0.id, eth1.id}
    assert [e.id for e in await nics.list(p1)] == [eth0.id, eth1.id]

    # down on the network: the interface shows inactive.
    await nets.act(p1, b.id, act("down"))
    got = await nics.get(p1, eth1.id)
    assert got.attributes["occi.networkinterface.state"] == "inactive"
    assert "network down" in got.attributes["occi.networkinterface.state.message"]
    await nets.act(p1, b.id, act("up"))

    # Update: the title; anything else of the link is fixed.
    got = await nics.update(p1, eth1.id, EntityRequest(attributes={"occi.core.title": "renamed"}), replace=False)
    assert got.attributes["occi.core.title"] == "renamed"
    with pytest.raises(errors.Invalid, match="occi.networkinterface.address"):
        await nics.update(p1, eth1.id, EntityRequest(attributes={"occi.networkinterface.address": "10.51.0.8"}),
                          replace=False)

    # Another project sees nothing and can do nothing.
    assert await nics.list(p2) == []
    for call in (nics.get(p2, eth1.id), nics.delete(p2, eth1.id),
                 nics.update(p2, eth1.id, EntityRequest(attributes={"occi.core.title": "x"}), replace=False)):
        with pytest.raises(errors.NotFound):
            await call

    # Delete: detached, and the port made for it is gone.
    await nics.delete(p1, eth1.id)
    with pytest.raises(errors.NotFound):
        await svc.network.get_port(p1, eth1.id)
    assert [e.id for e in await nics.list(p1)] == [eth0.id]
    with pytest.raises(errors.NotFound):
        await nics.get(p1, eth1.id)
