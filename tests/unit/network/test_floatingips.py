"""Floating IPs through the network service: allocation from an external network (a non-external
network is 400), association through a router (none: 404 ExternalGatewayForFloatingIPNotFound),
disassociation, deletion, the gateway and interface a floating IP needs, and isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from l3_support import ADMIN, ALICE, BOB, external_network, make_service, tenant_network

from cumulo import errors
from cumulo.network import faults
from cumulo.network.service import NetworkService

MISSING = "4e5b1a1e-0000-4000-8000-000000000000"


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[NetworkService]:
    async with make_service(tmp_path) as s:
        yield s


async def fails(coro: Any, code: int, kind: str) -> errors.CumuloError:
    with pytest.raises(errors.CumuloError) as info:
        await coro
    exc = info.value
    assert (exc.code, faults.type_of(exc, exc.code)) == (code, kind), exc.message
    return exc


async def routed(svc: NetworkService) -> dict[str, Any]:
    """Alice's network behind a router to the external network, and a port on it."""
    ext, esub = await external_network(svc)
    net, sub = await tenant_network(svc, ALICE)
    router = await svc.create_router(ALICE, {"name": "r", "external_gateway_info": {"network_id": ext["id"]}})
    await svc.add_router_interface(ALICE, router["id"], {"subnet_id": sub["id"]})
    port = await svc.create_port(ALICE, {"network_id": net["id"]})
    return {"ext": ext, "esub": esub, "net": net, "sub": sub, "router": router, "port": port}


async def test_allocate_associate_disassociate_delete(svc: NetworkService) -> None:
    w = await routed(svc)
    fip = await svc.create_floatingip(ALICE, {"floating_network_id": w["ext"]["id"], "description": "web"})
    assert fip["status"] == "DOWN" and fip["port_id"] is None and fip["router_id"] is None
    assert fip["fixed_ip_address"] is None and fip["port_details"] is None and fip["description"] == "web"
    addr = fip["floating_ip_address"]
    assert addr.startswith("172.24.4.") and addr != w["esub"]["gateway_ip"]
    assert fip["project_id"] == fip["tenant_id"] == "proj-a" and fip["floating_network_id"] == w["ext"]["id"]
    fixed = w["port"]["fixed_ips"][0]["ip_address"]
    done = await svc.update_floatingip(ALICE, fip["id"], {"port_id": w["port"]["id"]})
    assert (done["port_id"], done["fixed_ip_address"], done["router_id"], done["status"]) == (
        w["port"]["id"], fixed, w["router"]["id"], "ACTIVE")
    assert done["port_details"]["network_id"] == w["net"]["id"]
    assert done["floating_ip_address"] == addr
    # The interface and the gateway it goes through cannot be removed meanwhile.
    await fails(svc.remove_router_interface(ALICE, w["router"]["id"], {"subnet_id": w["sub"]["id"]}), 409,
                "RouterInterfaceInUseByFloatingIP")
    await fails(svc.update_router(ALICE, w["router"]["id"], {"external_gateway_info": {}}), 409,
                "RouterExternalGatewayInUseByFloatingIp")
    undone = await svc.update_floatingip(ALICE, fip["id"], {"port_id": None})
    assert (undone["port_id"], undone["fixed_ip_address"], undone["router_id"], undone["status"]) == (None, None, None, "DOWN")
    await svc.delete_floatingip(ALICE, fip["id"])
    await fails(svc.get_floatingip(ALICE, fip["id"]), 404, "FloatingIPNotFound")
    assert await svc.list_floatingips(ALICE) == []
    # Its address is free again: the next floating IP may take it.
    again = await svc.create_floatingip(ADMIN, {"floating_network_id": w["ext"]["id"], "floating_ip_address": addr})
    assert again["floating_ip_address"] == addr


async def test_create_associated_and_port_delete_disassociates(svc: NetworkService) -> None:
    w = await routed(svc)
    fip = await svc.create_floatingip(ALICE, {"floating_network_id": w["ext"]["id"], "port_id": w["port"]["id"]})
    assert fip["router_id"] == w["router"]["id"] and fip["status"] == "ACTIVE"
    await fails(svc.create_floatingip(ALICE, {"floating_network_id": w["ext"]["id"], "port_id": w["port"]["id"]}),
                409, "FloatingIPPortAlreadyAssociated")
    assert len(await svc.list_floatingips(ALICE)) == 1  # the refused one left nothing behind
    await svc.delete_port(ALICE, w["port"]["id"])
    after = await svc.get_floatingip(ALICE, fip["id"])
    assert (after["port_id"], after["router_id"], after["status"]) == (None, None, "DOWN")


async def test_non_external_network_is_400(svc: NetworkService) -> None:
    net, _ = await tenant_network(svc, ALICE)
    exc = await fails(svc.create_floatingip(ALICE, {"floating_network_id": net["id"]}), 400, "BadRequest")
    assert exc.message == f"Bad floatingip request: Network {net['id']} is not a valid external network."
    await fails(svc.create_floatingip(ALICE, {"floating_network_id": MISSING}), 404, "NetworkNotFound")
    await fails(svc.create_floatingip(ALICE, {}), 400, "HTTPBadRequest")
    await fails(svc.create_floatingip(ALICE, {"floating_network_id": "x"}), 400, "HTTPBadRequest")
    empty = await svc.create_network(ADMIN, {"name": "ext-empty", "router:external": True})
    await fails(svc.create_floatingip(ALICE, {"floating_network_id": empty["id"]}), 400, "BadRequest")


async def test_no_router_to_the_port(svc: NetworkService) -> None:
    ext, _ = await external_network(svc)
    net, sub = await tenant_network(svc, ALICE)
    port = await svc.create_port(ALICE, {"network_id": net["id"]})
    fip = await svc.create_floatingip(ALICE, {"floating_network_id": ext["id"]})
    exc = await fails(svc.update_floatingip(ALICE, fip["id"], {"port_id": port["id"]}), 404,
                      "ExternalGatewayForFloatingIPNotFound")
    assert sub["id"] in exc.message and port["id"] in exc.message
    # A router on the subnet without a gateway to the floating network is not enough either.
    r = await svc.create_router(ALICE, {"name": "r"})
    await svc.add_router_interface(ALICE, r["id"], {"subnet_id": sub["id"]})
    await fails(svc.update_floatingip(ALICE, fip["id"], {"port_id": port["id"]}), 404,
                "ExternalGatewayForFloatingIPNotFound")
    await svc.update_router(ALICE, r["id"], {"external_gateway_info": {"network_id": ext["id"]}})
    assert (await svc.update_floatingip(ALICE, fip["id"], {"port_id": port["id"]}))["router_id"] == r["id"]


BAD_ASSOCIATIONS: list[tuple[dict[str, Any], int, str]] = [
    ({"port_id": MISSING}, 404, "PortNotFound"),
    ({"port_id": "nope"}, 400, "HTTPBadRequest"),
    ({"fixed_ip_address": "10.0.0.5"}, 400, "BadRequest"),
    ({"port_id": "PORT", "fixed_ip_address": "10.0.0.200"}, 400, "BadRequest"),
    ({"port_id": "PORT", "fixed_ip_address": "not-an-ip"}, 400, "HTTPBadRequest"),
    ({"floating_ip_address": "172.24.4.99"}, 400, "HTTPBadRequest"),
    ({"router_id": MISSING}, 400, "HTTPBadRequest"),
    ({"port_id": "ROUTER_PORT"}, 400, "BadRequest"),
]


@pytest.mark.parametrize(("body", "code", "kind"), BAD_ASSOCIATIONS)
async def test_bad_updates(svc: NetworkService, body: dict[str, Any], code: int, kind: str) -> None:
    w = await routed(svc)
    fip = await svc.create_floatingip(ALICE, {"floating_network_id": w["ext"]["id"]})
    router_port = next(p for p in await svc.list_ports(ALICE) if p["device_owner"] == "network:router_interface")
    body = {k: {"PORT": w["port"]["id"], "ROUTER_PORT": router_port["id"]}.get(v, v) for k, v in body.items()}
    await fails(svc.update_floatingip(ALICE, fip["id"], body), code, kind)
    assert (await svc.get_floatingip(ALICE, fip["id"]))["port_id"] is None


async def test_address_choice_is_for_the_admin(svc: NetworkService) -> None:
    ext, esub = await external_network(svc)
    await fails(svc.create_floatingip(ALICE, {"floating_network_id": ext["id"], "floating_ip_address": "172.24.4.77"}),
                403, "PolicyNotAuthorized")
    fip = await svc.create_floatingip(ADMIN, {"floating_network_id": ext["id"], "floating_ip_address": "172.24.4.77"})
    assert fip["floating_ip_address"] == "172.24.4.77"
    await fails(svc.create_floatingip(ADMIN, {"floating_network_id": ext["id"], "floating_ip_address": "172.24.4.77"}),
                409, "IpAddressInUse")
    await fails(svc.create_floatingip(ADMIN, {"floating_network_id": ext["id"], "floating_ip_address": "10.1.1.1"}),
                400, "InvalidIpForSubnet")
    by_subnet = await svc.create_floatingip(ALICE, {"floating_network_id": ext["id"], "subnet_id": esub["id"]})
    assert by_subnet["floating_ip_address"].startswith("172.24.4.")
    await fails(svc.create_floatingip(ALICE, {"floating_network_id": ext["id"], "subnet_id": MISSING}), 400, "InvalidInput")


async def test_exhausted_external_network(svc: NetworkService) -> None:
    ext = await svc.create_network(ADMIN, {"name": "tiny", "router:external": True})
    await svc.create_subnet(ADMIN, {"network_id": ext["id"], "cidr": "198.51.100.0/30", "ip_version": 4})
    await svc.create_floatingip(ALICE, {"floating_network_id": ext["id"]})  # .2 (.1 is the gateway)
    await fails(svc.create_floatingip(ALICE, {"floating_network_id": ext["id"]}), 400, "ExternalIpAddressExhausted")
    assert len(await svc.list_floatingips(ALICE)) == 1


async def test_projects_are_isolated(svc: NetworkService) -> None:
    w = await routed(svc)
    fip = await svc.create_floatingip(ALICE, {"floating_network_id": w["ext"]["id"]})
    bob_fip = await svc.create_floatingip(BOB, {"floating_network_id": w["ext"]["id"]})
    assert [f["id"] for f in await svc.list_floatingips(BOB)] == [bob_fip["id"]]
    await fails(svc.get_floatingip(BOB, fip["id"]), 404, "FloatingIPNotFound")
    await fails(svc.update_floatingip(BOB, fip["id"], {"port_id": None}), 404, "FloatingIPNotFound")
    await fails(svc.delete_floatingip(BOB, fip["id"]), 404, "FloatingIPNotFound")
    # Bob cannot point his floating IP at Alice's port: to him it does not exist.
    await fails(svc.update_floatingip(BOB, bob_fip["id"], {"port_id": w["port"]["id"]}), 404, "PortNotFound")
    await svc.update_quota(ADMIN, "proj-b", {"floatingip": 1})
    await fails(svc.create_floatingip(BOB, {"floating_network_id": w["ext"]["id"]}), 409, "OverQuota")


async def test_deleting_the_external_network_takes_unassociated_floating_ips(svc: NetworkService) -> None:
    w = await routed(svc)
    spare = await svc.create_floatingip(ALICE, {"floating_network_id": w["ext"]["id"]})
    used = await svc.create_floatingip(ALICE, {"floating_network_id": w["ext"]["id"], "port_id": w["port"]["id"]})
    # The router's gateway and the associated floating IP keep the network in use.
    await fails(svc.delete_network(ADMIN, w["ext"]["id"]), 409, "NetworkInUse")
    assert {f["id"] for f in await svc.list_floatingips(ALICE)} == {spare["id"], used["id"]}  # rolled back
    await svc.update_floatingip(ALICE, used["id"], {"port_id": None})
    await svc.update_router(ALICE, w["router"]["id"], {"external_gateway_info": None})
    await svc.delete_network(ADMIN, w["ext"]["id"])
    assert await svc.list_floatingips(ALICE) == []
    assert not [p for p in await svc.list_ports(ADMIN) if p["device_owner"] == "network:floatingip"]
