"""The Neutron v2.0 API at /networking: shapes, project isolation, IPAM through the API, bad input."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import httpx
import jsonschema
import pytest
from net_support import fault, make_net, make_port, make_subnet

pytestmark = pytest.mark.timeout(120)


async def test_version_discovery_and_extensions(alice: httpx.AsyncClient) -> None:
    r = await alice.get("/")
    assert r.status_code == 200
    (version,) = r.json()["versions"]
    assert version["id"] == "v2.0" and version["status"] == "CURRENT"
    assert version["links"][0]["href"] == "http://cumulo.test/networking/v2.0/"
    r = await alice.get("/v2.0/")
    names = {res["collection"] for res in r.json()["resources"]}
    assert {"networks", "subnets", "ports"} <= names
    aliases = {e["alias"] for e in (await alice.get("/v2.0/extensions")).json()["extensions"]}
    assert {"external-net", "binding", "port-security", "allowed-address-pairs", "extra_dhcp_opt", "quotas",
            "tag", "pagination", "sorting"} <= aliases
    assert "agent" not in aliases and (await alice.get("/v2.0/agents")).json() == {"agents": []}
    assert (await alice.get("/v2.0/extensions/binding")).json()["extension"]["alias"] == "binding"
    fault(await alice.get("/v2.0/extensions/nope"), 404)
    fault(await alice.get("/v2.0/nothing-here"), 404, "HTTPNotFound")


async def test_network_shape_and_crud(alice: httpx.AsyncClient) -> None:
    net = await make_net(alice, description="d", mtu=1400)
    for key in ("id", "name", "tenant_id", "project_id", "admin_state_up", "status", "shared", "router:external",
                "mtu", "subnets", "port_security_enabled", "created_at", "updated_at", "revision_number", "tags",
                "description", "availability_zone_hints", "is_default"):
        assert key in net, key
    assert net["project_id"] == net["tenant_id"] == "project-a"
    assert net["status"] == "ACTIVE" and net["mtu"] == 1400 and net["shared"] is False
    assert "provider:network_type" not in net  # admin-only attribute
    r = await alice.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "renamed"}})
    assert r.status_code == 200 and r.json()["network"]["name"] == "renamed"
    assert r.json()["network"]["revision_number"] == net["revision_number"] + 1
    assert (await alice.delete(f"/v2.0/networks/{net['id']}")).status_code == 204
    fault(await alice.get(f"/v2.0/networks/{net['id']}"), 404, "NetworkNotFound")


@pytest.mark.parametrize("attr", [{"shared": True}, {"router:external": True}, {"provider:network_type": "flat"}])
async def test_admin_only_network_attributes(alice: httpx.AsyncClient, admin: httpx.AsyncClient,
                                             attr: dict[str, Any]) -> None:
    r = await alice.post("/v2.0/networks", json={"network": {"name": "x", **attr}})
    fault(r, 403, "PolicyNotAuthorized")
    r = await admin.post("/v2.0/networks", json={"network": {"name": "x", **attr}})
    assert r.status_code == 201, r.text
    net = r.json()["network"]
    # another project's network: invisible (404) unless shared or external, then not the caller's (403)
    fault(await alice.put(f"/v2.0/networks/{net['id']}", json={"network": attr}), 404 if "shared" not in attr
          and "router:external" not in attr else 403)
    own = (await alice.post("/v2.0/networks", json={"network": {"name": "mine"}})).json()["network"]
    fault(await alice.put(f"/v2.0/networks/{own['id']}", json={"network": attr}), 403, "PolicyNotAuthorized")


async def test_projects_are_isolated(alice: httpx.AsyncClient, bob: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    sub = await make_subnet(alice, net["id"])
    port = await make_port(alice, net["id"])
    assert (await bob.get("/v2.0/networks")).json()["networks"] == []
    assert (await bob.get("/v2.0/subnets")).json()["subnets"] == []
    assert (await bob.get("/v2.0/ports")).json()["ports"] == []
    fault(await bob.get(f"/v2.0/networks/{net['id']}"), 404, "NetworkNotFound")
    fault(await bob.get(f"/v2.0/subnets/{sub['id']}"), 404, "SubnetNotFound")
    fault(await bob.get(f"/v2.0/ports/{port['id']}"), 404, "PortNotFound")
    fault(await bob.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "mine"}}), 404)
    fault(await bob.delete(f"/v2.0/ports/{port['id']}"), 404, "PortNotFound")
    fault(await bob.delete(f"/v2.0/networks/{net['id']}"), 404, "NetworkNotFound")
    # no port and no subnet on another project's network, not even with a chosen address
    r = await bob.post("/v2.0/ports", json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.9"}]}})
    fault(r, 404, "NetworkNotFound")
    fault(await bob.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.9.0.0/24",
                                                           "ip_version": 4}}), 404, "NetworkNotFound")
    # tags of another project's resources are out of reach too
    fault(await bob.put(f"/v2.0/networks/{net['id']}/tags/x"), 404)
    # the admin sees everything, and a list per project
    assert [n["id"] for n in (await admin.get("/v2.0/networks", params={"project_id": "project-a"})).json()["networks"]] \
        == [net["id"]]
    assert (await admin.get("/v2.0/networks", params={"project_id": "project-b"})).json()["networks"] == []
    # the same CIDR in two projects is fine
    other = await make_net(bob)
    await make_subnet(bob, other["id"], "10.0.0.0/24")


async def test_shared_network(alice: httpx.AsyncClient, bob: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    net = await make_net(admin, shared=True)
    sub = await make_subnet(admin, net["id"], "10.5.0.0/24")
    assert [n["id"] for n in (await bob.get("/v2.0/networks")).json()["networks"]] == [net["id"]]
    assert (await bob.get(f"/v2.0/subnets/{sub['id']}")).status_code == 200
    port = await make_port(bob, net["id"], fixed_ips=[{"subnet_id": sub["id"]}])
    assert port["project_id"] == "project-b" and port["fixed_ips"][0]["subnet_id"] == sub["id"]
    # choosing the address, adding a subnet or changing the network is for its owner
    r = await bob.post("/v2.0/ports", json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.5.0.77"}]}})
    fault(r, 403)
    fault(await bob.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.6.0.0/24",
                                                           "ip_version": 4}}), 403)
    fault(await bob.delete(f"/v2.0/networks/{net['id']}"), 403)
    # alice does not see bob's port on the shared network
    assert (await alice.get("/v2.0/ports")).json()["ports"] == []


async def test_subnet_rules(alice: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    sub = await make_subnet(alice, net["id"], "10.1.0.0/24", allocation_pools=[{"start": "10.1.0.10", "end": "10.1.0.20"}],
                            gateway_ip="10.1.0.254", dns_nameservers=["8.8.8.8"],
                            host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.1.0.5"}])
    assert sub["gateway_ip"] == "10.1.0.254" and sub["allocation_pools"] == [{"start": "10.1.0.10", "end": "10.1.0.20"}]
    assert sub["dns_nameservers"] == ["8.8.8.8"] and sub["host_routes"][0]["nexthop"] == "10.1.0.5"
    assert (await alice.get(f"/v2.0/networks/{net['id']}")).json()["network"]["subnets"] == [sub["id"]]
    bad = [
        ({"cidr": "10.1.0.128/25"}, 400, "InvalidInput"),  # overlaps
        ({"cidr": "10.2.0.0/24", "gateway_ip": "10.3.0.1"}, 400, "InvalidInput"),  # gateway outside
        ({"cidr": "10.2.0.5/24"}, 400, "HTTPBadRequest"),  # host bits
        ({"cidr": "10.2.0.0/24", "ip_version": 6}, 400, "InvalidInput"),
        ({"cidr": "10.2.0.0/24", "ip_version": 5}, 400, "HTTPBadRequest"),
        ({"cidr": "10.2.0.0/24", "allocation_pools": [{"start": "10.3.0.1", "end": "10.3.0.9"}]}, 400,
         "OutOfBoundsAllocationPool"),
        ({"cidr": "10.2.0.0/24", "allocation_pools": [{"start": "10.2.0.1", "end": "10.2.0.9"}]}, 409,
         "GatewayConflictWithAllocationPools"),
        ({"cidr": "10.2.0.0/24", "dns_nameservers": ["nope"]}, 400, "HTTPBadRequest"),
        ({"cidr": "10.2.0.0/24", "host_routes": [{"destination": "x"}]}, 400, "HTTPBadRequest"),
        ({"cidr": "10.2.0.0/24", "ipv6_address_mode": "slaac"}, 400, None),
        ({"cidr": "10.2.0.0/24", "bogus": 1}, 400, "HTTPBadRequest"),
        ({"cidr": "10.2.0.0/24", "enable_dhcp": "maybe"}, 400, "HTTPBadRequest"),
    ]
    for extra, status, kind in bad:
        body = {"network_id": net["id"], "ip_version": 4, **extra}
        fault(await alice.post("/v2.0/subnets", json={"subnet": body}), status, kind)
    fault(await alice.post("/v2.0/subnets", json={"subnet": {"cidr": "10.7.0.0/24", "ip_version": 4}}), 400)
    r = await alice.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"cidr": "10.8.0.0/24"}})
    fault(r, 400)
    r = await alice.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"name": "s", "gateway_ip": None}})
    assert r.status_code == 200 and r.json()["subnet"]["gateway_ip"] is None


async def test_ports_and_ipam(alice: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    sub = await make_subnet(alice, net["id"], "10.2.0.0/24", allocation_pools=[{"start": "10.2.0.2", "end": "10.2.0.3"}])
    p1 = await make_port(alice, net["id"])
    assert p1["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.2.0.2"}]
    assert p1["mac_address"].startswith("fa:16:3e:") and p1["status"] == "DOWN"
    # an address outside the pool but inside the subnet may be asked for
    p2 = await make_port(alice, net["id"], fixed_ips=[{"ip_address": "10.2.0.50"}], name="two")
    assert p2["fixed_ips"][0]["ip_address"] == "10.2.0.50"
    fault(await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"],
                                                         "fixed_ips": [{"ip_address": "10.2.0.50"}]}}),
          409, "IpAddressAlreadyAllocated")
    fault(await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"],
                                                         "fixed_ips": [{"ip_address": "10.2.0.1"}]}}),
          409, "IpAddressAlreadyAllocated")  # the gateway
    fault(await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"],
                                                         "fixed_ips": [{"ip_address": "10.3.0.5"}]}}),
          400, "InvalidIpForNetwork")
    fault(await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"], "fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "10.3.0.5"}]}}), 400, "InvalidIpForSubnet")
    await make_port(alice, net["id"])  # takes 10.2.0.3, the last pool address
    fault(await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}), 409, "IpAddressGenerationFailure")
    fault(await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"],
                                                         "mac_address": p1["mac_address"]}}), 409, "MacAddressInUse")
    # update: change the address, pairs, DHCP options, name; then port security off needs no pairs
    r = await alice.put(f"/v2.0/ports/{p2['id']}", json={"port": {
        "fixed_ips": [{"ip_address": "10.2.0.60"}], "allowed_address_pairs": [{"ip_address": "10.2.0.200/32"}],
        "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400"}], "device_id": "dev-1", "device_owner": "compute:nova"}})
    assert r.status_code == 200, r.text
    port = r.json()["port"]
    assert port["fixed_ips"][0]["ip_address"] == "10.2.0.60"
    assert port["allowed_address_pairs"] == [{"ip_address": "10.2.0.200/32", "mac_address": p2["mac_address"]}]
    assert port["extra_dhcp_opts"] == [{"opt_name": "mtu", "opt_value": "1400", "ip_version": 4}]
    fault(await alice.put(f"/v2.0/ports/{p2['id']}", json={"port": {"port_security_enabled": False,
                                                                      "security_groups": []}}), 409,
          "AddressPairAndPortSecurityRequired")
    r = await alice.put(f"/v2.0/ports/{p2['id']}", json={"port": {"port_security_enabled": False,
                                                                  "allowed_address_pairs": [], "security_groups": []}})
    assert r.status_code == 200 and r.json()["port"]["port_security_enabled"] is False
    # 10.2.0.50 is free again
    await make_port(alice, net["id"], fixed_ips=[{"ip_address": "10.2.0.50"}])
    # the network and the subnet are in use
    fault(await alice.delete(f"/v2.0/networks/{net['id']}"), 409, "NetworkInUse")
    fault(await alice.delete(f"/v2.0/subnets/{sub['id']}"), 409, "SubnetInUse")
    for p in (await alice.get("/v2.0/ports")).json()["ports"]:
        assert (await alice.delete(f"/v2.0/ports/{p['id']}")).status_code == 204
    assert (await alice.delete(f"/v2.0/networks/{net['id']}")).status_code == 204
    fault(await alice.get(f"/v2.0/subnets/{sub['id']}"), 404, "SubnetNotFound")


async def test_binding_is_admin_only(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    await make_subnet(alice, net["id"])
    fault(await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"], "binding:host_id": "h1"}}), 403)
    port = await make_port(alice, net["id"])
    assert "binding:host_id" not in port
    r = await admin.put(f"/v2.0/ports/{port['id']}", json={"port": {"binding:host_id": "h1"}})
    assert r.status_code == 200, r.text
    assert r.json()["port"]["binding:host_id"] == "h1" and r.json()["port"]["binding:vif_type"] == "bridge"


async def test_ipv6_static_and_slaac(alice: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    static = await make_subnet(alice, net["id"], "fd00:1::/64")
    slaac = await make_subnet(alice, net["id"], "fd00:2::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    port = await make_port(alice, net["id"], fixed_ips=[{"subnet_id": static["id"]}, {"subnet_id": slaac["id"]},
                                                        {"ip_address": "fd00:1::99"}])
    ips = [ip["ip_address"] for ip in port["fixed_ips"]]
    assert ips[0] == "fd00:1::2" and ips[2] == "fd00:1::99"
    mac = port["mac_address"].split(":")
    slaac_ip = ipaddress.ip_address(ips[1])
    assert ips[1].startswith("fd00:2::f816:3eff:fe") and int(slaac_ip) & 0xFFFF == int(mac[4] + mac[5], 16)


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {}),
        (b'{"network": {"name": "\\ud800"}}', {}),
        (b"", {}),
        (b"[]", {}),
        (b'{"network": []}', {}),
        (b'{"net": {}}', {}),
        (b'{"network": {"name": 5}}', {}),
        (b'{"network": {"name": "' + b"x" * 300 + b'"}}', {}),
        (b'{"network": {"admin_state_up": "perhaps"}}', {}),
        (b'{"network": {"mtu": 99999999999999999999999}}', {}),
        (b'{"network": {"id": "x"}}', {}),
        (b'{"network": {"tags": ["a,b"]}}', {}),
        (b'{"network": {"tenant_id": "someone-else"}}', {}),
    ],
)
async def test_bad_network_bodies_are_400(alice: httpx.AsyncClient, content: bytes, headers: dict[str, str]) -> None:
    r = await alice.post("/v2.0/networks", content=content, headers={"Content-Type": "application/json", **headers})
    fault(r, 400)


async def test_oversized_and_chunked_bodies(alice: httpx.AsyncClient) -> None:
    big = b'{"network": {"name": "' + b"x" * (2 << 20) + b'"}}'
    fault(await alice.post("/v2.0/networks", content=big), 413)

    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    fault(await alice.post("/v2.0/networks", content=chunks()), 413)


@pytest.mark.parametrize(
    "body",
    [
        {"fixed_ips": "10.0.0.5"},
        {"fixed_ips": [{"ip_address": "bogus"}]},
        {"fixed_ips": [{"subnet_id": "not-a-uuid"}]},
        {"fixed_ips": [{"subnet_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}]},
        {"fixed_ips": [{"foo": "bar"}]},
        {"mac_address": "zz:zz"},
        {"mac_address": "01:00:5e:00:00:01"},
        {"allowed_address_pairs": [{"mac_address": "fa:16:3e:00:00:01"}]},
        {"allowed_address_pairs": [{"ip_address": "nope"}]},
        {"allowed_address_pairs": [{"ip_address": "10.0.0.9"}, {"ip_address": "10.0.0.9"}]},
        {"extra_dhcp_opts": [{"opt_value": "x"}]},
        {"extra_dhcp_opts": "x"},
        {"port_security_enabled": False, "security_groups": ["1b4e28ba-2fa1-11d2-883f-0016d3cca427"]},
        {"binding:vnic_type": "warp"},
        {"network_id": "not-a-uuid"},
        {"status": "ACTIVE"},
        {"device_id": 12},
    ],
)
async def test_bad_port_bodies_are_400(alice: httpx.AsyncClient, body: dict[str, Any]) -> None:
    net = await make_net(alice)
    await make_subnet(alice, net["id"])
    r = await alice.post("/v2.0/ports", json={"port": {"network_id": net["id"], **body}})
    fault(r, 400)


async def test_list_filters_sorting_paging_and_fields(alice: httpx.AsyncClient) -> None:
    ids = [(await make_net(alice, name=f"n{i}", admin_state_up=i % 2 == 0))["id"] for i in range(5)]
    r = await alice.get("/v2.0/networks", params=[("name", "n1"), ("name", "n3")])
    assert sorted(n["name"] for n in r.json()["networks"]) == ["n1", "n3"]
    r = await alice.get("/v2.0/networks", params={"admin_state_up": "false"})
    assert sorted(n["name"] for n in r.json()["networks"]) == ["n1", "n3"]
    r = await alice.get("/v2.0/networks", params={"sort_key": "name", "sort_dir": "desc", "fields": "name"})
    assert r.json()["networks"] == [{"name": f"n{i}"} for i in (4, 3, 2, 1, 0)]
    fault(await alice.get("/v2.0/networks", params={"sort_key": "nope"}), 400)
    fault(await alice.get("/v2.0/networks", params={"limit": "x"}), 400)
    seen: list[str] = []
    url: str | None = "/v2.0/networks?limit=2&sort_key=name"
    while url:
        body = (await alice.get(url)).json()
        seen += [n["name"] for n in body["networks"]]
        nxt = [link["href"] for link in body.get("networks_links", []) if link["rel"] == "next"]
        url = nxt[0] if nxt else None
    assert seen == ["n0", "n1", "n2", "n3", "n4"]
    r = await alice.get(f"/v2.0/networks/{ids[0]}", params={"fields": "id"})
    assert r.json() == {"network": {"id": ids[0]}}


async def test_ports_filter_by_fixed_ip_and_device(alice: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    await make_subnet(alice, net["id"], "10.4.0.0/24")
    a = await make_port(alice, net["id"], device_id="srv-1")
    await make_port(alice, net["id"])
    ip = a["fixed_ips"][0]["ip_address"]
    r = await alice.get("/v2.0/ports", params={"fixed_ips": f"ip_address={ip}"})
    assert [p["id"] for p in r.json()["ports"]] == [a["id"]]
    r = await alice.get("/v2.0/ports", params={"device_id": "srv-1"})
    assert [p["id"] for p in r.json()["ports"]] == [a["id"]]


async def test_tags(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    base = f"/v2.0/networks/{net['id']}/tags"
    assert (await alice.put(f"{base}/red")).status_code == 201
    assert (await alice.get(f"{base}/red")).status_code == 204
    fault(await alice.get(f"{base}/blue"), 404, "TagNotFound")
    r = await alice.put(base, json={"tags": ["a", "b"]})
    assert r.status_code == 200 and r.json() == {"tags": ["a", "b"]}
    assert (await alice.get(base)).json() == {"tags": ["a", "b"]}
    await make_net(alice, name="untagged")
    r = await alice.get("/v2.0/networks", params={"tags": "a,b"})
    assert [n["id"] for n in r.json()["networks"]] == [net["id"]]
    r = await alice.get("/v2.0/networks", params={"not-tags": "a"})
    assert [n["name"] for n in r.json()["networks"]] == ["untagged"]
    fault(await alice.put(f"{base}", json={"tags": ["x" * 61]}), 400)
    fault(await alice.put(base, json={"tags": "a"}), 400)
    assert (await alice.delete(f"{base}/a")).status_code == 204
    fault(await alice.delete(f"{base}/a"), 404, "TagNotFound")
    assert (await alice.delete(base)).status_code == 204
    assert (await alice.get(base)).json() == {"tags": []}
    fault(await alice.get("/v2.0/widgets/x/tags"), 404)
    fault(await bob.get(base), 404, "NetworkNotFound")


async def test_quotas(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    r = await alice.get("/v2.0/quotas/project-a")
    assert r.json()["quota"] == {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
                                 "security_group": 10, "security_group_rule": 100}
    fault(await alice.get("/v2.0/quotas/project-b"), 403)
    fault(await alice.put("/v2.0/quotas/project-a", json={"quota": {"network": 1000}}), 403)
    fault(await admin.put("/v2.0/quotas/project-a", json={"quota": {"widgets": 1}}), 400)
    fault(await admin.put("/v2.0/quotas/project-a", json={"quota": {"network": -5}}), 400)
    r = await admin.put("/v2.0/quotas/project-a", json={"quota": {"network": 1}})
    assert r.status_code == 200 and r.json()["quota"]["network"] == 1
    await make_net(alice)
    fault(await alice.post("/v2.0/networks", json={"network": {"name": "two"}}), 409, "OverQuota")
    details = (await alice.get("/v2.0/quotas/project-a/details.json")).json()["quota"]
    assert details["network"] == {"limit": 1, "used": 1, "reserved": 0}
    assert [q["project_id"] for q in (await admin.get("/v2.0/quotas")).json()["quotas"]] == ["project-a"]
    fault(await alice.get("/v2.0/quotas"), 403)
    assert (await admin.delete("/v2.0/quotas/project-a")).status_code == 204
    assert (await alice.get("/v2.0/quotas/project-a")).json()["quota"]["network"] == 100
    assert (await alice.get("/v2.0/quotas/project-a/default")).json()["quota"]["port"] == 500


async def test_bulk_create_is_all_or_nothing(alice: httpx.AsyncClient) -> None:
    r = await alice.post("/v2.0/networks", json={"networks": [{"name": "b1"}, {"name": "b2"}]})
    assert r.status_code == 201 and [n["name"] for n in r.json()["networks"]] == ["b1", "b2"]
    r = await alice.post("/v2.0/networks", json={"networks": [{"name": "b3"}, {"name": 7}]})
    fault(r, 400)
    names = sorted(n["name"] for n in (await alice.get("/v2.0/networks")).json()["networks"])
    assert names == ["b1", "b2"]


async def test_openapi_document(svc: Any) -> None:
    from _asgi_ctx import AsCtx, ctx_for, outside

    from cumulo.compute.api.openapi_ops import MICROVERSIONS
    from cumulo.network.api import make_app
    from cumulo.web.http import PrefixDispatcher

    app = PrefixDispatcher({"/networking": make_app(svc, axis=MICROVERSIONS)}, outside("/networking"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx_for("p"))),
                                 base_url="http://cumulo.test/networking") as c:
        doc = (await c.get("/openapi.json")).json()
    assert "/networking/v2.0/ports/{port_id}" in doc["paths"]
    ids = []
    for path, methods in doc["paths"].items():
        for method, o in methods.items():
            ids.append(o["operationId"])
            declared = {p["name"] for p in o.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{([^}]+)}", path)), (method, path)
            for media in o.get("requestBody", {}).get("content", {}).values():
                jsonschema.Draft202012Validator.check_schema(media["schema"])
    assert len(ids) == len(set(ids))


async def test_external_network_is_visible_but_its_subnets_only_when_shared(
    alice: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    ext = await make_net(admin, **{"router:external": True})
    sub = await make_subnet(admin, ext["id"], "172.24.4.0/24")
    assert [n["id"] for n in (await alice.get("/v2.0/networks")).json()["networks"]] == [ext["id"]]
    assert (await alice.get("/v2.0/subnets", params={"network_id": ext["id"]})).json()["subnets"] == []
    fault(await alice.get(f"/v2.0/subnets/{sub['id']}"), 404, "SubnetNotFound")
    assert (await admin.put(f"/v2.0/networks/{ext['id']}", json={"network": {"shared": True}})).status_code == 200
    assert [s["id"] for s in (await alice.get("/v2.0/subnets")).json()["subnets"]] == [sub["id"]]


async def test_a_new_slaac_subnet_addresses_the_ports_already_there(alice: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    await make_subnet(alice, net["id"], "10.3.0.0/24")
    port = await make_port(alice, net["id"])
    slaac = await make_subnet(alice, net["id"], "fd00:3::/64", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    shown = (await alice.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    v6 = [ip for ip in shown["fixed_ips"] if ip["subnet_id"] == slaac["id"]]
    mac = port["mac_address"].split(":")
    assert len(v6) == 1 and int(ipaddress.ip_address(v6[0]["ip_address"])) & 0xFFFF == int(mac[4] + mac[5], 16)
    # the SLAAC subnet goes with its addresses; the IPv4 one is still in use
    assert (await alice.delete(f"/v2.0/subnets/{slaac['id']}")).status_code == 204
    shown = (await alice.get(f"/v2.0/ports/{port['id']}")).json()["port"]
    assert [ip["subnet_id"] for ip in shown["fixed_ips"]] == [port["fixed_ips"][0]["subnet_id"]]
    fault(await alice.delete(f"/v2.0/subnets/{port['fixed_ips'][0]['subnet_id']}"), 409, "SubnetInUse")


async def test_no_token_is_401_but_version_discovery_is_open(svc: Any) -> None:
    from _asgi_ctx import outside

    from cumulo.network.api import make_app
    from cumulo.web.http import PrefixDispatcher

    app = PrefixDispatcher({"/networking": make_app(svc)}, outside("/networking"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cumulo.test") as c:
        assert (await c.get("/networking")).json()["versions"][0]["id"] == "v2.0"
        fault(await c.get("/networking/v2.0/networks"), 401, "HTTPUnauthorized")
        fault(await c.get("/networking/v2.0/networks", headers={"X-Auth-Token": "bogus"}), 401)
