"""Subnet pools (subnet_allocation, default-subnetpools) and get-me-a-network (auto-allocated-topology)
through the /networking API: shapes, allocation, exhaustion, isolation, idempotency, faults."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from net_support import fault, make_net, make_subnet

from cumulo.network import subnetpools as sp

pytestmark = pytest.mark.timeout(120)


async def make_pool(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/v2.0/subnetpools", json={"subnetpool": {"name": "pool", **body}})
    assert r.status_code == 201, r.text
    pool: dict[str, Any] = r.json()["subnetpool"]
    return pool


async def pool_subnet(c: httpx.AsyncClient, network_id: str, **body: Any) -> httpx.Response:
    return await c.post("/v2.0/subnets", json={"subnet": {"network_id": network_id, "ip_version": 4, **body}})


def test_allocate_lowest_free_prefix() -> None:
    import ipaddress

    pool = [ipaddress.ip_network("10.0.0.0/24")]
    used = [ipaddress.ip_network("10.0.0.0/26"), ipaddress.ip_network("10.0.0.128/25")]
    assert str(sp.allocate(pool, used, 26)) == "10.0.0.64/26"
    assert str(sp.allocate(pool, used, 28)) == "10.0.0.64/28"
    assert sp.allocate(pool, used, 25) is None
    assert sp.allocate(pool, [ipaddress.ip_network("10.0.0.0/16")], 28) is None  # used space bigger than the pool


async def test_pool_shape_crud_and_extensions(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    aliases = {e["alias"] for e in (await alice.get("/v2.0/extensions")).json()["extensions"]}
    assert {"subnet_allocation", "default-subnetpools", "auto-allocated-topology", "standard-attr-tag"} <= aliases
    pool = await make_pool(alice, prefixes=["10.10.0.0/24", "10.10.1.0/24"], tags=["t1"])
    assert pool["prefixes"] == ["10.10.0.0/23"]  # collapsed, as Neutron compacts them
    assert pool["ip_version"] == 4 and pool["min_prefixlen"] == 8 and pool["max_prefixlen"] == 32
    assert pool["default_prefixlen"] == 8 and pool["default_quota"] is None and pool["address_scope_id"] is None
    assert pool["shared"] is False and pool["is_default"] is False and pool["tags"] == ["t1"]
    assert pool["tenant_id"] == pool["project_id"] == "project-a" and pool["revision_number"] == 0
    r = await alice.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"name": "n2", "default_prefixlen": 26,
                                                                                 "min_prefixlen": 24}})
    assert r.status_code == 200, r.text
    assert r.json()["subnetpool"]["name"] == "n2" and r.json()["subnetpool"]["default_prefixlen"] == 26
    assert [p["id"] for p in (await alice.get("/v2.0/subnetpools")).json()["subnetpools"]] == [pool["id"]]
    # isolation: bob neither lists, sees, updates nor deletes alice's private pool
    assert (await bob.get("/v2.0/subnetpools")).json()["subnetpools"] == []
    fault(await bob.get(f"/v2.0/subnetpools/{pool['id']}"), 404, "SubnetPoolNotFound")
    fault(await bob.delete(f"/v2.0/subnetpools/{pool['id']}"), 404, "SubnetPoolNotFound")
    net = await make_net(bob)
    fault(await pool_subnet(bob, net["id"], subnetpool_id=pool["id"]), 404, "SubnetPoolNotFound")
    # tags through the tag API
    assert (await alice.put(f"/v2.0/subnetpools/{pool['id']}/tags/t2")).status_code == 201
    assert (await alice.get(f"/v2.0/subnetpools/{pool['id']}/tags")).json()["tags"] == ["t1", "t2"]
    assert (await alice.delete(f"/v2.0/subnetpools/{pool['id']}")).status_code == 204
    fault(await alice.get(f"/v2.0/subnetpools/{pool['id']}"), 404, "SubnetPoolNotFound")


async def test_pool_bad_input(alice: httpx.AsyncClient) -> None:
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"name": "p"}}), 400)
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": []}}), 400)
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["nope"]}}), 400, "InvalidCIDR")
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["10.0.0.0/8", "fd00::/48"]}}),
          400, "PrefixVersionMismatch")
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["10.0.0.0/8"], "min_prefixlen": 28,
                                                                       "max_prefixlen": 24}}),
          400, "IllegalSubnetPoolPrefixBounds")
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["10.0.0.0/8"], "shared": True}}),
          403, "PolicyNotAuthorized")
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["10.0.0.0/8"], "is_default": True}}),
          403, "PolicyNotAuthorized")
    fault(await alice.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["10.0.0.0/8"],
                                                                       "address_scope_id": "x"}}), 400)
    pool = await make_pool(alice, prefixes=["10.20.0.0/16"])
    # prefixes may only grow
    fault(await alice.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"prefixes": ["10.20.0.0/17"]}}),
          400, "IllegalSubnetPoolPrefixUpdate")
    r = await alice.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"prefixes": ["10.20.0.0/15"]}})
    assert r.status_code == 200 and r.json()["subnetpool"]["prefixes"] == ["10.20.0.0/15"]
    fault(await alice.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"ip_version": 6}}), 400)
    fault(await alice.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"shared": True}}), 400)


async def test_subnets_from_a_pool(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    pool = await make_pool(alice, prefixes=["10.30.0.0/24"], default_prefixlen=26, min_prefixlen=25, max_prefixlen=28)
    net = await make_net(alice)
    r = await pool_subnet(alice, net["id"], subnetpool_id=pool["id"])
    assert r.status_code == 201, r.text
    first = r.json()["subnet"]
    assert first["cidr"] == "10.30.0.0/26" and first["subnetpool_id"] == pool["id"]
    assert first["gateway_ip"] == "10.30.0.1"
    second = (await pool_subnet(alice, (await make_net(alice))["id"], subnetpool_id=pool["id"], prefixlen=28)).json()
    assert second["subnet"]["cidr"] == "10.30.0.64/28"
    # a requested cidr must lie in the pool and overlap no other subnet of the pool (on any network)
    other = await make_net(alice)
    fault(await pool_subnet(alice, other["id"], subnetpool_id=pool["id"], cidr="10.30.0.0/27"),
          409, "SubnetAllocationError")
    fault(await pool_subnet(alice, other["id"], subnetpool_id=pool["id"], cidr="192.168.0.0/26"),
          409, "SubnetAllocationError")
    fault(await pool_subnet(alice, other["id"], subnetpool_id=pool["id"], prefixlen=24),
          400, "MinPrefixSubnetAllocationError")
    fault(await pool_subnet(alice, other["id"], subnetpool_id=pool["id"], prefixlen=29),
          400, "MaxPrefixSubnetAllocationError")
    fault(await pool_subnet(alice, other["id"], subnetpool_id=pool["id"], ip_version=6), 400, "InvalidInput")
    r = await pool_subnet(alice, other["id"], subnetpool_id=pool["id"], cidr="10.30.0.128/26")
    assert r.status_code == 201, r.text
    # exhaustion: .192/26 is the last /26; then nothing of that size is left
    assert (await pool_subnet(alice, other["id"], subnetpool_id=pool["id"])).json()["subnet"]["cidr"] == "10.30.0.192/26"
    msg = fault(await pool_subnet(alice, (await make_net(alice))["id"], subnetpool_id=pool["id"]),
                409, "SubnetAllocationError")
    assert "Insufficient prefix space" in msg
    # a pool with subnets cannot be deleted; once they are gone it can
    fault(await alice.delete(f"/v2.0/subnetpools/{pool['id']}"), 409, "SubnetPoolInUse")
    # prefixlen without a pool, and a pool-less subnet without cidr
    fault(await pool_subnet(alice, other["id"], prefixlen=26), 400)
    fault(await pool_subnet(alice, other["id"], use_default_subnetpool=True), 400, "BadRequest")
    for n in (await alice.get("/v2.0/networks")).json()["networks"]:
        assert (await alice.delete(f"/v2.0/networks/{n['id']}")).status_code == 204
    assert (await alice.delete(f"/v2.0/subnetpools/{pool['id']}")).status_code == 204


async def test_shared_default_pool_quota_and_concurrency(admin: httpx.AsyncClient, alice: httpx.AsyncClient,
                                                         bob: httpx.AsyncClient) -> None:
    pool = await make_pool(admin, prefixes=["10.40.0.0/22"], default_prefixlen=26, shared=True, is_default=True,
                           default_quota=128)
    fault(await admin.post("/v2.0/subnetpools", json={"subnetpool": {"prefixes": ["10.50.0.0/16"], "is_default": True}}),
          400, "InvalidInput")
    assert [p["id"] for p in (await bob.get("/v2.0/subnetpools")).json()["subnetpools"]] == [pool["id"]]
    fault(await bob.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": {"name": "x"}}), 403)
    a_net, b_net = await make_net(alice), await make_net(bob)
    # two projects allocating at once get distinct prefixes
    ra, rb = await asyncio.gather(pool_subnet(alice, a_net["id"], use_default_subnetpool=True),
                                  pool_subnet(bob, b_net["id"], use_default_subnetpool=True))
    assert ra.status_code == rb.status_code == 201, (ra.text, rb.text)
    assert {ra.json()["subnet"]["cidr"], rb.json()["subnet"]["cidr"]} == {"10.40.0.0/26", "10.40.0.64/26"}
    # default_quota 128 addresses: a second /26 for alice is fine, a third is over quota
    assert (await pool_subnet(alice, (await make_net(alice))["id"], use_default_subnetpool=True)).status_code == 201
    fault(await pool_subnet(alice, (await make_net(alice))["id"], use_default_subnetpool=True),
          409, "SubnetPoolQuotaExceeded")


async def _default_topology(admin: httpx.AsyncClient) -> str:
    ext = await make_net(admin, **{"router:external": True, "is_default": True})
    await make_subnet(admin, ext["id"], "172.31.4.0/24", enable_dhcp=False)
    await make_pool(admin, prefixes=["10.60.0.0/16"], default_prefixlen=26, shared=True, is_default=True)
    return str(ext["id"])


async def test_auto_allocated_topology(admin: httpx.AsyncClient, alice: httpx.AsyncClient,
                                       bob: httpx.AsyncClient) -> None:
    url = "/v2.0/auto-allocated-topology/project-a"
    msg = fault(await alice.get(url), 409, "AutoAllocationFailure")
    assert "No default router:external network" in msg
    fault(await alice.get(url, params={"fields": "dry-run"}), 409, "AutoAllocationFailure")
    ext_id = await _default_topology(admin)
    # one default external network only
    fault(await admin.post("/v2.0/networks", json={"network": {"name": "e2", "router:external": True,
                                                                "is_default": True}}),
          409, "DefaultExternalNetworkExists")
    r = await alice.get(url, params={"fields": "dry-run"})
    assert r.status_code == 200 and r.json()["auto_allocated_topology"]["id"] == "dry-run=pass"
    assert (await alice.get("/v2.0/networks", params={"tenant_id": "project-a"})).json()["networks"] == []
    # concurrent first requests agree on one topology
    r1, r2 = await asyncio.gather(alice.get(url), alice.get(url))
    assert r1.status_code == r2.status_code == 200, (r1.text, r2.text)
    topo = r1.json()["auto_allocated_topology"]
    assert topo == r2.json()["auto_allocated_topology"]
    assert topo["tenant_id"] == topo["project_id"] == "project-a"
    assert (await alice.get(url)).json()["auto_allocated_topology"]["id"] == topo["id"]  # idempotent
    nets = [n for n in (await alice.get("/v2.0/networks")).json()["networks"] if n["project_id"] == "project-a"]
    assert [n["id"] for n in nets] == [topo["id"]] and nets[0]["name"] == "auto_allocated_network"
    (sub,) = (await alice.get("/v2.0/subnets", params={"network_id": topo["id"]})).json()["subnets"]
    assert sub["cidr"] == "10.60.0.0/26" and sub["subnetpool_id"] is not None
    (router,) = (await alice.get("/v2.0/routers")).json()["routers"]
    assert router["name"] == "auto_allocated_router" and router["external_gateway_info"]["network_id"] == ext_id
    ports = (await alice.get("/v2.0/ports", params={"device_id": router["id"]})).json()["ports"]
    assert any(p["network_id"] == topo["id"] for p in ports)
    # another project gets its own, and cannot read or delete alice's
    fault(await bob.get(url), 403, "PolicyNotAuthorized")
    fault(await bob.delete(url), 403, "PolicyNotAuthorized")
    bob_topo = (await bob.get("/v2.0/auto-allocated-topology/project-b")).json()["auto_allocated_topology"]
    assert bob_topo["id"] != topo["id"]
    fault(await alice.get(url, params={"fields": "id"}), 400, "BadRequest")  # Neutron's: dry-run only
    # a topology whose network has a server port is not taken apart at all (409 before any change)
    port = await alice.post("/v2.0/ports", json={"port": {"network_id": topo["id"], "device_owner": "compute:nova"}})
    assert port.status_code == 201, port.text
    fault(await alice.delete(url), 409, "NetworkInUse")
    assert [r["id"] for r in (await alice.get("/v2.0/routers")).json()["routers"]] == [router["id"]]
    assert (await alice.delete(f"/v2.0/ports/{port.json()['port']['id']}")).status_code == 204
    # DELETE tears it down; the next GET builds a new one
    assert (await alice.delete(url)).status_code == 204
    assert (await alice.get("/v2.0/routers")).json()["routers"] == []
    fault(await alice.get(f"/v2.0/networks/{topo['id']}"), 404, "NetworkNotFound")
    assert (await alice.get(url)).json()["auto_allocated_topology"]["id"] != topo["id"]


async def test_auto_allocation_needs_a_default_pool(admin: httpx.AsyncClient, alice: httpx.AsyncClient) -> None:
    ext = await make_net(admin, **{"router:external": True, "is_default": True})
    await make_subnet(admin, ext["id"], "172.31.5.0/24", enable_dhcp=False)
    msg = fault(await alice.get("/v2.0/auto-allocated-topology/project-a"), 409, "AutoAllocationFailure")
    assert "No default subnetpools defined" in msg
    # an exhausted default pool: the failure is clean (nothing left behind)
    await make_pool(admin, prefixes=["10.70.0.0/26"], default_prefixlen=26, shared=True, is_default=True)
    taker = await make_net(admin)
    r = await admin.post("/v2.0/subnets", json={"subnet": {"network_id": taker["id"], "ip_version": 4,
                                                            "use_default_subnetpool": True}})
    assert r.status_code == 201, r.text
    fault(await alice.get("/v2.0/auto-allocated-topology/project-a"), 409, "AutoAllocationFailure")
    assert [n for n in (await alice.get("/v2.0/networks")).json()["networks"] if n["project_id"] == "project-a"] == []
    assert (await alice.get("/v2.0/routers")).json()["routers"] == []


async def test_first_start_makes_auto_allocation_work(svc: Any) -> None:
    """cumulo up's first start: public is the default external network and the shared default pool
    exists, so get-me-a-network works out of the box; a marker from before subnet pools is upgraded."""
    import json

    from _asgi_ctx import ctx_for

    from cumulo.network import topology

    done = await topology.ensure_default_topology(svc, svc.conf, admin_project="project-admin", demo_project="demo")
    admin = ctx_for("project-admin", "admin")
    pool = await svc.get_subnetpool(admin, done["default_subnetpool"])
    assert pool["prefixes"] == ["10.1.0.0/16"] and pool["shared"] and pool["is_default"]
    assert pool["default_prefixlen"] == 26 and pool["name"] == "shared-default-subnetpool-v4"
    assert (await svc.get_network(admin, done["public"]))["is_default"] is True
    topo = await svc.get_auto_allocated_topology(ctx_for("project-x"), "project-x")
    net = await svc.get_network(ctx_for("project-x"), topo["id"])
    sub = await svc.get_subnet(ctx_for("project-x"), net["subnets"][0])
    assert sub["cidr"] == "10.1.0.0/26"
    # a marker written before subnet pools: the next start adds the pool once
    marker = svc.conf.state_dir / topology.MARKER
    old = {k: v for k, v in done.items() if k != "default_subnetpool"}
    marker.write_text(json.dumps(old))
    again = await topology.ensure_default_topology(svc, svc.conf, admin_project="project-admin", demo_project="demo")
    assert again["default_subnetpool"] == done["default_subnetpool"]
    assert len(await svc.list_subnetpools(admin)) == 1


async def test_hostile_pool_requests_are_4xx(alice: httpx.AsyncClient) -> None:
    pool = await make_pool(alice, prefixes=["10.80.0.0/24"], default_prefixlen=28)
    net = await make_net(alice)
    bad_subnets: list[dict[str, Any]] = [
        {"subnetpool_id": "nope"}, {"subnetpool_id": 7}, {"subnetpool_id": pool["id"], "prefixlen": "x"},
        {"subnetpool_id": pool["id"], "prefixlen": -1}, {"subnetpool_id": pool["id"], "prefixlen": 99},
        {"subnetpool_id": pool["id"], "prefixlen": 32}, {"subnetpool_id": pool["id"], "cidr": "nope"},
        {"subnetpool_id": pool["id"], "cidr": 5}, {"use_default_subnetpool": "yes"},
        {"use_default_subnetpool": True, "ip_version": 5}, {"subnetpool_id": pool["id"], "ip_version": "4"},
    ]
    for extra in bad_subnets:
        r = await alice.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], **extra}})
        assert 400 <= r.status_code < 500, (extra, r.text)
        assert set(r.json()["NeutronError"]) == {"type", "message", "detail"}
    bad_pools: list[Any] = [
        {"prefixes": "10.0.0.0/8"}, {"prefixes": [None]}, {"prefixes": ["10.0.0.0/8"], "default_quota": -1},
        {"prefixes": ["10.0.0.0/8"], "default_prefixlen": 40}, {"prefixes": ["10.0.0.0/8"], "name": 5},
        {"prefixes": ["10.0.0.0/8"], "nope": 1}, {"prefixes": ["fd00::/8"], "min_prefixlen": 200},
    ]
    for body in bad_pools:
        r = await alice.post("/v2.0/subnetpools", json={"subnetpool": body})
        assert 400 <= r.status_code < 500, (body, r.text)
    for body in ({"prefixes": None}, {"default_quota": "x"}, {"min_prefixlen": 30}, {"id": "x"}):
        r = await alice.put(f"/v2.0/subnetpools/{pool['id']}", json={"subnetpool": body})
        assert 400 <= r.status_code < 500, (body, r.text)
    for path in ("/v2.0/auto-allocated-topology/" + "a" * 300, "/v2.0/auto-allocated-topology/%20"):
        assert 400 <= (await alice.get(path)).status_code < 500
