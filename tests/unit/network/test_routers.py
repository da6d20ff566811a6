"""Routers through the network service: the external gateway (router:external only, SNAT, external
fixed IPs from IPAM), interfaces by subnet (the subnet's gateway IP on a network:router_interface
port) or by port, the bad inputs Neutron refuses (each a 4xx with its fault type), RouterInUse, and
isolation between projects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from l3_support import ADMIN, ALICE, BOB, READER, external_network, make_service, tenant_network

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


async def test_router_shape_and_gateway(svc: NetworkService) -> None:
    ext, esub = await external_network(svc)
    r = await svc.create_router(ALICE, {"name": "r1", "external_gateway_info": {"network_id": ext["id"]}})
    assert r["status"] == "ACTIVE" and r["admin_state_up"] is True and r["routes"] == []
    assert r["tenant_id"] == r["project_id"] == "proj-a" and r["tags"] == []
    gw = r["external_gateway_info"]
    assert gw["network_id"] == ext["id"] and gw["enable_snat"] is True
    [fixed] = gw["external_fixed_ips"]
    assert fixed["subnet_id"] == esub["id"] and fixed["ip_address"] != esub["gateway_ip"]
    # The gateway's port is a service port of no project: no tenant lists it.
    assert all(p["device_owner"] != "network:router_gateway" for p in await svc.list_ports(ALICE))
    gw_ports = [p for p in await svc.list_ports(ADMIN) if p["device_owner"] == "network:router_gateway"]
    assert [p["device_id"] for p in gw_ports] == [r["id"]]
    # Clearing the gateway frees its port; setting it again allocates anew.
    cleared = await svc.update_router(ALICE, r["id"], {"external_gateway_info": {}})
    assert cleared["external_gateway_info"] is None
    assert not [p for p in await svc.list_ports(ADMIN) if p["device_owner"] == "network:router_gateway"]
    again = await svc.update_router(ALICE, r["id"], {"external_gateway_info": {"network_id": ext["id"]}, "name": "r2"})
    assert again["name"] == "r2" and again["external_gateway_info"]["network_id"] == ext["id"]
    assert again["revision_number"] > r["revision_number"]


async def test_gateway_options_are_for_the_admin(svc: NetworkService) -> None:
    ext, esub = await external_network(svc)
    await fails(svc.create_router(ALICE, {"external_gateway_info": {"network_id": ext["id"], "enable_snat": False}}),
                403, "PolicyNotAuthorized")
    await fails(svc.create_router(ALICE, {"external_gateway_info": {
        "network_id": ext["id"], "external_fixed_ips": [{"ip_address": "172.24.4.50"}]}}), 403, "PolicyNotAuthorized")
    r = await svc.create_router(ADMIN, {"project_id": "proj-a", "external_gateway_info": {
        "network_id": ext["id"], "enable_snat": False, "external_fixed_ips": [{"ip_address": "172.24.4.50"}]}})
    gw = r["external_gateway_info"]
    assert gw["enable_snat"] is False
    assert gw["external_fixed_ips"] == [{"subnet_id": esub["id"], "ip_address": "172.24.4.50"}]
    assert r["project_id"] == "proj-a"
    snat = await svc.update_router(ADMIN, r["id"], {"external_gateway_info": {"network_id": ext["id"], "enable_snat": True}})
    assert snat["external_gateway_info"]["enable_snat"] is True
    assert snat["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == "172.24.4.50"
    # A taken address, and the subnet's own gateway, are refused.
    await fails(svc.create_router(ADMIN, {"external_gateway_info": {
        "network_id": ext["id"], "external_fixed_ips": [{"ip_address": "172.24.4.50"}]}}), 409, "IpAddressAlreadyAllocated")
    await fails(svc.create_router(ADMIN, {"external_gateway_info": {
        "network_id": ext["id"], "external_fixed_ips": [{"ip_address": esub["gateway_ip"]}]}}), 400, "BadRequest")
    await fails(svc.create_router(ADMIN, {"external_gateway_info": {
        "network_id": ext["id"], "external_fixed_ips": [{"ip_address": "10.9.9.9"}]}}), 400, "InvalidIpForSubnet")


BAD_GATEWAYS: list[tuple[Any, int, str]] = [
    ({"network_id": MISSING}, 404, "NetworkNotFound"),
    ({"network_id": "not-a-uuid"}, 400, "HTTPBadRequest"),
    ({"enable_snat": True}, 400, "HTTPBadRequest"),
    ({"network_id": MISSING, "colour": "red"}, 400, "HTTPBadRequest"),
    ("public", 400, "HTTPBadRequest"),
]


@pytest.mark.parametrize(("gateway", "code", "kind"), BAD_GATEWAYS)
async def test_bad_gateways(svc: NetworkService, gateway: Any, code: int, kind: str) -> None:
    await fails(svc.create_router(ALICE, {"name": "r", "external_gateway_info": gateway}), code, kind)
    assert await svc.list_routers(ALICE) == []  # nothing half made


async def test_gateway_must_be_external(svc: NetworkService) -> None:
    net, _ = await tenant_network(svc, ALICE)
    exc = await fails(svc.create_router(ALICE, {"external_gateway_info": {"network_id": net["id"]}}), 400, "BadRequest")
    assert exc.message == f"Bad router request: Network {net['id']} is not an external network."
    r = await svc.create_router(ALICE, {"name": "r"})
    await fails(svc.update_router(ALICE, r["id"], {"external_gateway_info": {"network_id": net["id"]}}), 400, "BadRequest")
    # Bob's private network is not even visible to Alice.
    bob_net, _ = await tenant_network(svc, BOB)
    await fails(svc.update_router(ALICE, r["id"], {"external_gateway_info": {"network_id": bob_net["id"]}}), 404,
                "NetworkNotFound")


async def test_interface_by_subnet_takes_its_gateway_ip(svc: NetworkService) -> None:
    net, sub = await tenant_network(svc, ALICE)
    r = await svc.create_router(ALICE, {"name": "r"})
    info = await svc.add_router_interface(ALICE, r["id"], {"subnet_id": sub["id"]})
    assert set(info) == {"id", "tenant_id", "project_id", "port_id", "network_id", "subnet_id", "subnet_ids", "tags"}
    assert (info["id"], info["network_id"], info["subnet_id"], info["subnet_ids"]) == (r["id"], net["id"], sub["id"], [sub["id"]])
    port = await svc.get_port(ALICE, info["port_id"])
    assert port["device_owner"] == "network:router_interface" and port["device_id"] == r["id"]
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": sub["gateway_ip"]}]
    # The port goes with the interface, not through the port API.
    await fails(svc.delete_port(ALICE, info["port_id"]), 409, "ServicePortInUse")
    exc = await fails(svc.delete_router(ALICE, r["id"]), 409, "RouterInUse")
    assert info["port_id"] in exc.message
    removed = await svc.remove_router_interface(ALICE, r["id"], {"subnet_id": sub["id"]})
    assert removed["port_id"] == info["port_id"] and removed["subnet_ids"] == [sub["id"]]
    await fails(svc.get_port(ALICE, info["port_id"]), 404, "PortNotFound")
    await fails(svc.remove_router_interface(ALICE, r["id"], {"subnet_id": sub["id"]}), 404,
                "RouterInterfaceNotFoundForSubnet")
    await svc.delete_router(ALICE, r["id"])
    await fails(svc.get_router(ALICE, r["id"]), 404, "RouterNotFound")


async def test_interface_by_port(svc: NetworkService) -> None:
    net, sub = await tenant_network(svc, ALICE)
    r = await svc.create_router(ALICE, {"name": "r"})
    port = await svc.create_port(ALICE, {"network_id": net["id"], "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.0.0.254"}]})
    info = await svc.add_router_interface(ALICE, r["id"], {"port_id": port["id"]})
    assert (info["port_id"], info["subnet_id"]) == (port["id"], sub["id"])
    shown = await svc.get_port(ALICE, port["id"])
    assert (shown["device_owner"], shown["device_id"]) == ("network:router_interface", r["id"])
    # A port already in use, and a second interface on the same subnet, are refused.
    other = await svc.create_router(ALICE, {"name": "other"})
    await fails(svc.add_router_interface(ALICE, other["id"], {"port_id": port["id"]}), 409, "PortInUse")
    await fails(svc.add_router_interface(ALICE, r["id"], {"subnet_id": sub["id"]}), 400, "BadRequest")
    await fails(svc.remove_router_interface(ALICE, r["id"], {"port_id": MISSING}), 404, "RouterInterfaceNotFound")
    _, sub2 = await tenant_network(svc, ALICE, "10.5.0.0/24")
    await fails(svc.remove_router_interface(ALICE, r["id"], {"port_id": port["id"], "subnet_id": sub2["id"]}), 400,
                "SubnetMismatchForPort")
    await svc.remove_router_interface(ALICE, r["id"], {"port_id": port["id"]})
    await fails(svc.get_port(ALICE, port["id"]), 404, "PortNotFound")


async def test_subnet_rules_of_interfaces(svc: NetworkService) -> None:
    ext, _ = await external_network(svc)
    _, sub = await tenant_network(svc, ALICE, "10.0.0.0/24")
    _, overlapping = await tenant_network(svc, ALICE, "10.0.0.0/16")
    _, no_gw = await tenant_network(svc, ALICE, "10.7.0.0/24", gateway_ip=None)
    _, ext_like = await tenant_network(svc, ALICE, "172.24.4.0/25")
    r = await svc.create_router(ALICE, {"name": "r", "external_gateway_info": {"network_id": ext["id"]}})
    await svc.add_router_interface(ALICE, r["id"], {"subnet_id": sub["id"]})
    exc = await fails(svc.add_router_interface(ALICE, r["id"], {"subnet_id": overlapping["id"]}), 400, "BadRequest")
    assert "overlaps with cidr 10.0.0.0/24" in exc.message
    await fails(svc.add_router_interface(ALICE, r["id"], {"subnet_id": no_gw["id"]}), 400, "BadRequest")
    # The external network's subnets count as the router's own.
    await fails(svc.add_router_interface(ALICE, r["id"], {"subnet_id": ext_like["id"]}), 400, "BadRequest")
    # A second router cannot take the subnet: its gateway IP is the first router's (Neutron: 409).
    r2 = await svc.create_router(ALICE, {"name": "r2"})
    await fails(svc.add_router_interface(ALICE, r2["id"], {"subnet_id": sub["id"]}), 409, "IpAddressAlreadyAllocated")


BAD_INTERFACE_BODIES: list[tuple[Any, str]] = [
    ({}, "Either subnet_id or port_id must be specified"),
    (None, "Either subnet_id or port_id must be specified"),
    ({"subnet_id": "nope"}, "'nope' is not a valid UUID"),
    ({"subnet_id": 7}, "'7' is not a valid UUID"),
    ({"subnet_id": MISSING, "port_id": MISSING}, "Cannot specify both subnet-id and port-id"),
]


@pytest.mark.parametrize(("body", "why"), BAD_INTERFACE_BODIES)
async def test_bad_interface_bodies(svc: NetworkService, body: Any, why: str) -> None:
    r = await svc.create_router(ALICE, {"name": "r"})
    exc = await fails(svc.add_router_interface(ALICE, r["id"], body), 400, "BadRequest")
    assert exc.message == f"Bad router request: {why}."
    await fails(svc.add_router_interface(ALICE, r["id"], {"subnet_id": MISSING}), 404, "SubnetNotFound")
    await fails(svc.add_router_interface(ALICE, r["id"], {"port_id": MISSING}), 404, "PortNotFound")


async def test_routes(svc: NetworkService) -> None:
    _, sub = await tenant_network(svc, ALICE)
    r = await svc.create_router(ALICE, {"name": "r"})
    await svc.add_router_interface(ALICE, r["id"], {"subnet_id": sub["id"]})
    done = await svc.update_router(ALICE, r["id"], {"routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.9"}]})
    assert done["routes"] == [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.9"}]
    await fails(svc.update_router(ALICE, r["id"], {"routes": [{"destination": "192.168.0.0/16", "nexthop": "10.9.0.9"}]}),
                400, "InvalidRoutes")
    await fails(svc.update_router(ALICE, r["id"], {"routes": [{"destination": "bad", "nexthop": "10.0.0.9"}]}),
                400, "HTTPBadRequest")


async def test_projects_are_isolated(svc: NetworkService) -> None:
    _, sub = await tenant_network(svc, ALICE)
    r = await svc.create_router(ALICE, {"name": "r"})
    bob_r = await svc.create_router(BOB, {"name": "bob"})
    assert [x["id"] for x in await svc.list_routers(BOB)] == [bob_r["id"]]
    await fails(svc.get_router(BOB, r["id"]), 404, "RouterNotFound")
    await fails(svc.update_router(BOB, r["id"], {"name": "mine"}), 404, "RouterNotFound")
    await fails(svc.delete_router(BOB, r["id"]), 404, "RouterNotFound")
    await fails(svc.add_router_interface(BOB, r["id"], {"subnet_id": sub["id"]}), 404, "RouterNotFound")
    # Bob cannot attach Alice's subnet or port to his own router either.
    await fails(svc.add_router_interface(BOB, bob_r["id"], {"subnet_id": sub["id"]}), 404, "SubnetNotFound")
    net = (await svc.list_networks(ALICE))[0]
    port = await svc.create_port(ALICE, {"network_id": net["id"]})
    await fails(svc.add_router_interface(BOB, bob_r["id"], {"port_id": port["id"]}), 404, "PortNotFound")
    await fails(svc.create_router(BOB, {"name": "x", "tenant_id": "proj-a"}), 400, "HTTPBadRequest")
    assert {x["id"] for x in await svc.list_routers(ADMIN)} >= {r["id"], bob_r["id"]}


async def test_reader_and_quota(svc: NetworkService) -> None:
    await fails(svc.create_router(READER, {"name": "r"}), 403, "PolicyNotAuthorized")
    await svc.update_quota(ADMIN, "proj-a", {"router": 1})
    await svc.create_router(ALICE, {"name": "one"})
    exc = await fails(svc.create_router(ALICE, {"name": "two"}), 409, "OverQuota")
    assert exc.message == "Quota exceeded for resources: ['router']."
    await fails(svc.create_router(ALICE, {"name": "x", "distributed": True}), 400, "HTTPBadRequest")
