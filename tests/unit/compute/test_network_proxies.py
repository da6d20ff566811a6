"""Nova's proxies to the network service below 2.36 (os-security-groups, os-security-group-rules,
os-floating-ips, os-floating-ip-pools, os-networks, os-tenant-networks): Nova's shapes, Neutron's objects behind them, each bad input
with Nova's fault, and 404 from 2.36 on."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_world,
    mv,
    settings,
)

MISSING = "0e44cc9c-e052-415d-afbf-469b0d384170"


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def test_security_groups_and_rules(world: World) -> None:
    c = world.member
    resp = await c.post(f"{API}/os-security-groups", json={"security_group": {"name": "web", "description": "w"}})
    assert resp.status_code == 200, resp.text
    group = resp.json()["security_group"]
    assert set(group) == {"id", "name", "description", "tenant_id", "rules"}
    assert group["name"] == "web" and group["tenant_id"] == world.project_id and group["rules"] == []
    # The same group through Neutron.
    neutron = (await c.get(f"/networking/v2.0/security-groups/{group['id']}")).json()["security_group"]
    assert neutron["name"] == "web"
    resp = await c.post(f"{API}/os-security-group-rules", json={"security_group_rule": {
        "parent_group_id": group["id"], "ip_protocol": "tcp", "from_port": 80, "to_port": 81, "cidr": "10.0.0.0/8"}})
    assert resp.status_code == 200, resp.text
    rule = resp.json()["security_group_rule"]
    assert rule == {"id": rule["id"], "parent_group_id": group["id"], "ip_protocol": "tcp", "from_port": 80,
                    "to_port": 81, "ip_range": {"cidr": "10.0.0.0/8"}, "group": {}}
    icmp = (await c.post(f"{API}/os-security-group-rules", json={"security_group_rule": {
        "parent_group_id": group["id"], "ip_protocol": "icmp", "from_port": -1, "to_port": -1,
        "group_id": group["id"]}})).json()["security_group_rule"]
    assert icmp["from_port"] == -1 and icmp["group"] == {"name": "web", "tenant_id": world.project_id}
    shown = (await c.get(f"{API}/os-security-groups/{group['id']}")).json()["security_group"]
    assert sorted(r["id"] for r in shown["rules"]) == sorted([rule["id"], icmp["id"]])
    listed = (await c.get(f"{API}/os-security-groups")).json()["security_groups"]
    assert {"default", "web"} <= {g["name"] for g in listed}
    resp = await c.put(f"{API}/os-security-groups/{group['id']}", json={"security_group": {"name": "web2", "description": "x"}})
    assert resp.status_code == 200 and resp.json()["security_group"]["name"] == "web2", resp.text
    assert (await c.delete(f"{API}/os-security-group-rules/{rule['id']}")).status_code == 202
    assert (await c.delete(f"{API}/os-security-group-rules/{rule['id']}")).status_code == 404
    assert (await c.delete(f"{API}/os-security-groups/{group['id']}")).status_code == 202
    assert (await c.get(f"{API}/os-security-groups/{group['id']}")).status_code == 404
    # Another project's group is not found; from 2.36 the proxy is gone.
    assert (await world.other.get(f"{API}/os-security-groups/{listed[0]['id']}")).status_code == 404
    assert (await c.get(f"{API}/os-security-groups", headers=mv("2.36"))).status_code == 404


async def test_security_group_bad_input(world: World) -> None:
    c = world.member
    gid = (await c.post(f"{API}/os-security-groups", json={"security_group": {"name": "g", "description": ""}})
           ).json()["security_group"]["id"]
    bad_groups = [{}, {"security_group": "x"}, {"security_group": {"description": "d"}},
                  {"security_group": {"name": " ", "description": "d"}}, {"security_group": {"name": "n"}},
                  {"security_group": {"name": "x" * 256, "description": "d"}},
                  {"security_group": {"name": 5, "description": "d"}}]
    for body in bad_groups:
        resp = await c.post(f"{API}/os-security-groups", json=body)
        assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest", (body, resp.text)
    rules: list[tuple[dict[str, Any], int]] = [
        ({"ip_protocol": "tcp", "from_port": 1, "to_port": 2}, 400),  # no parent
        ({"parent_group_id": gid, "ip_protocol": "gre", "from_port": 1, "to_port": 2}, 400),
        ({"parent_group_id": gid, "ip_protocol": "tcp", "from_port": 90, "to_port": 80}, 400),
        ({"parent_group_id": gid, "ip_protocol": "tcp", "from_port": 0, "to_port": 70000}, 400),
        ({"parent_group_id": gid, "ip_protocol": "tcp", "from_port": "x", "to_port": 2}, 400),
        ({"parent_group_id": gid, "ip_protocol": "icmp", "from_port": 300, "to_port": 0}, 400),
        ({"parent_group_id": gid, "ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "nope"}, 400),
        ({"parent_group_id": gid, "ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "10.0.0.0/8",
          "group_id": gid}, 400),
        ({"parent_group_id": MISSING, "ip_protocol": "tcp", "from_port": 1, "to_port": 2}, 404),
        ({"parent_group_id": "not-a-uuid", "ip_protocol": "tcp", "from_port": 1, "to_port": 2}, 400),
    ]
    for body, status in rules:
        resp = await c.post(f"{API}/os-security-group-rules", json={"security_group_rule": body})
        assert resp.status_code == status, (body, resp.text)
    ok = {"parent_group_id": gid, "ip_protocol": "udp", "from_port": 53, "to_port": 53}
    assert (await c.post(f"{API}/os-security-group-rules", json={"security_group_rule": ok})).status_code == 200
    dup = await c.post(f"{API}/os-security-group-rules", json={"security_group_rule": ok})
    assert dup.status_code == 400 and "already exists" in fault_of(dup)[2], dup.text
    for path in (f"os-security-groups/{MISSING}", "os-security-groups/not-a-uuid"):
        assert (await c.get(f"{API}/{path}")).status_code == 404, path
        assert (await c.delete(f"{API}/{path}")).status_code == 404, path
    assert (await c.delete(f"{API}/os-security-groups/")).status_code == 404  # no id: 404 as Nova
    cidr_rule = {"parent_group_id": gid, "ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.2.3.124/24"}
    resp = await c.post(f"{API}/os-security-group-rules", json={"security_group_rule": cidr_rule})
    assert resp.status_code == 200 and resp.json()["security_group_rule"]["ip_range"] == {"cidr": "10.2.3.124/24"}, resp.text
    # The default group cannot go (Neutron refuses): 400 as Nova.
    default = next(g for g in (await c.get(f"{API}/os-security-groups")).json()["security_groups"] if g["name"] == "default")
    resp = await c.delete(f"{API}/os-security-groups/{default['id']}")
    assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest", resp.text
    assert (await world.reader.post(f"{API}/os-security-groups", json={"security_group": {"name": "r", "description": ""}})
            ).status_code == 403


async def test_floating_ips(world: World) -> None:
    c = world.member
    pools = (await c.get(f"{API}/os-floating-ip-pools")).json()["floating_ip_pools"]
    if not pools:
        pytest.skip("no external network in this cloud")
    resp = await c.post(f"{API}/os-floating-ips", json={"pool": pools[0]["name"]})
    assert resp.status_code == 200, resp.text
    fip = resp.json()["floating_ip"]
    assert set(fip) == {"id", "ip", "fixed_ip", "instance_id", "pool"}
    assert fip["pool"] == pools[0]["name"] and fip["instance_id"] is None and fip["fixed_ip"] is None
    assert (await c.get(f"{API}/os-floating-ips/{fip['id']}")).json()["floating_ip"] == fip
    assert [f["id"] for f in (await c.get(f"{API}/os-floating-ips")).json()["floating_ips"]] == [fip["id"]]
    assert (await world.other.get(f"{API}/os-floating-ips")).json()["floating_ips"] == []
    assert (await world.other.get(f"{API}/os-floating-ips/{fip['id']}")).status_code == 404
    unnamed = await c.post(f"{API}/os-floating-ips")  # the default pool
    assert unnamed.status_code == 200, unnamed.text
    resp = await c.post(f"{API}/os-floating-ips", json={"pool": "no-such-pool"})
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"
    for fid in (fip["id"], unnamed.json()["floating_ip"]["id"]):
        assert (await c.delete(f"{API}/os-floating-ips/{fid}")).status_code == 202
    assert (await c.delete(f"{API}/os-floating-ips/{fip['id']}")).status_code == 404
    assert (await c.get(f"{API}/os-floating-ips/{MISSING}")).status_code == 404
    assert (await c.get(f"{API}/os-floating-ips", headers=mv("2.36"))).status_code == 404


async def test_neutron_quota_and_exhaustion_are_novas_faults(world: World) -> None:
    """Neutron's 409 OverQuota is Nova's 403 (FloatingIpLimitExceeded, SecurityGroupLimitExceeded); an
    external network out of addresses is Nova's 404 NoMoreFloatingIps."""
    from servers_support import make_network

    c = world.member
    await make_network(world.admin, "tiny-ext", "198.51.100.0/30", **{"router:external": True})  # one address: .2
    assert (await c.post(f"{API}/os-floating-ips", json={"pool": "tiny-ext"})).status_code == 200
    resp = await c.post(f"{API}/os-floating-ips", json={"pool": "tiny-ext"})
    assert fault_of(resp) == ("itemNotFound", 404, "No more floating IPs in pool tiny-ext."), resp.text
    groups = (await c.get(f"{API}/os-security-groups")).json()["security_groups"]
    default = next(g for g in groups if g["name"] == "default")
    resp = await world.admin.put(f"/networking/v2.0/quotas/{world.project_id}", json={"quota": {
        "floatingip": 1, "security_group": len(groups), "security_group_rule": 0}})
    assert resp.status_code == 200, resp.text
    resp = await c.post(f"{API}/os-floating-ips", json={"pool": "tiny-ext"})
    assert fault_of(resp) == ("forbidden", 403, "IP allocation over quota in pool tiny-ext."), resp.text
    resp = await c.post(f"{API}/os-floating-ips")
    assert fault_of(resp) == ("forbidden", 403, "IP allocation over quota."), resp.text
    resp = await c.post(f"{API}/os-security-groups", json={"security_group": {"name": "more", "description": ""}})
    assert resp.status_code == 403 and "Quota exceeded" in fault_of(resp)[2], resp.text
    resp = await c.post(f"{API}/os-security-group-rules", json={"security_group_rule": {
        "parent_group_id": default["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"}})
    assert resp.status_code == 403 and "Quota exceeded" in fault_of(resp)[2], resp.text


async def test_fixed_and_floating_ip_actions(world: World) -> None:
    from servers_support import make_network, wait_status

    c = world.member
    net = await make_network(c, "act", "10.31.0.0/24")
    nid = net["network"]["id"]
    resp = await c.post(f"{API}/servers", json={"server": {"name": "a", "imageRef": world.image_id, "flavorRef": "1",
                                                           "networks": [{"uuid": nid}]}}, headers=mv("2.37"))
    sid = resp.json()["server"]["id"]
    await wait_status(c, sid, "ACTIVE")

    async def addrs() -> list[str]:
        return [a["addr"] for a in (await c.get(f"{API}/servers/{sid}")).json()["server"]["addresses"]["act"]]

    [first] = await addrs()
    assert (await world.action(sid, {"addFixedIp": {"networkId": nid}})).status_code == 202
    both = await addrs()
    assert len(both) == 2 and first in both
    [second] = [a for a in both if a != first]
    assert (await world.action(sid, {"removeFixedIp": {"address": second}})).status_code == 202
    assert await addrs() == [first]
    for body, status in (({"addFixedIp": {"networkId": MISSING}}, 400), ({"removeFixedIp": {"address": "10.99.0.1"}}, 400),
                         ({"addFixedIp": {}}, 400), ({"addFixedIp": {"networkId": nid}, "x": 1}, 400)):
        resp = await world.action(sid, body)
        assert resp.status_code == status, (body, resp.text)
    resp = await world.action(sid, {"addFixedIp": {"networkId": nid}}, version="2.44")
    assert resp.status_code == 400 and "There is no such action" in fault_of(resp)[2]
    # A floating IP: needs a router from the network to the external one.
    pools = (await c.get(f"{API}/os-floating-ip-pools")).json()["floating_ip_pools"]
    if not pools:
        return
    ext = next(n for n in (await c.get("/networking/v2.0/networks")).json()["networks"] if n["router:external"])
    router = (await c.post("/networking/v2.0/routers", json={"router": {
        "name": "r", "external_gateway_info": {"network_id": ext["id"]}}})).json()["router"]
    assert (await c.put(f"/networking/v2.0/routers/{router['id']}/add_router_interface",
                        json={"subnet_id": net["subnet"]["id"]})).status_code == 200
    fip = (await c.post(f"{API}/os-floating-ips", json={"pool": ext["name"]})).json()["floating_ip"]
    assert (await world.action(sid, {"addFloatingIp": {"address": fip["ip"]}})).status_code == 202
    shown = (await c.get(f"{API}/os-floating-ips/{fip['id']}")).json()["floating_ip"]
    assert shown["instance_id"] == sid and shown["fixed_ip"] == first

    async def floating() -> list[str]:
        addresses = (await c.get(f"{API}/servers/{sid}")).json()["server"]["addresses"]["act"]
        return [a["addr"] for a in addresses if a["OS-EXT-IPS:type"] == "floating"]

    assert await floating() == [fip["ip"]]
    resp = await world.action(sid, {"addFloatingIp": {"address": fip["ip"], "fixed_address": "10.99.9.9"}})
    assert resp.status_code == 400, resp.text
    assert (await world.action(sid, {"addFloatingIp": {"address": "203.0.113.77"}})).status_code == 404
    for bad in ({"addFloatingIp": {"address": ""}}, {"addFloatingIp": {"address": 5}}, {"removeFloatingIp": {"address": "x"}},
                {"removeFixedIp": {"address": "nope"}}, {"addFloatingIp": {"address": fip["ip"], "fixed_address": "y"}}):
        resp = await world.action(sid, bad)
        assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest", (bad, resp.text)
    assert (await world.action(sid, {"removeFloatingIp": {"address": fip["ip"]}})).status_code == 202
    assert (await c.get(f"{API}/os-floating-ips/{fip['id']}")).json()["floating_ip"]["instance_id"] is None
    assert await floating() == []
    # Associated through Neutron's API (as openstacksdk's auto_ip does): server show has it at once.
    port_id = (await c.get("/networking/v2.0/ports", params={"device_id": sid})).json()["ports"][0]["id"]
    resp = await c.put(f"/networking/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": port_id}})
    assert resp.status_code == 200, resp.text
    assert await floating() == [fip["ip"]]
    await c.put(f"/networking/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": None}})
    assert await floating() == []
    assert (await world.action(sid, {"removeFloatingIp": {"address": fip["ip"]}})).status_code == 409


async def test_os_networks_and_tenant_networks(world: World) -> None:
    c = world.member
    resp = await c.post("/networking/v2.0/networks", json={"network": {"name": "mine"}})
    assert resp.status_code == 201, resp.text
    mine = resp.json()["network"]
    listed = (await c.get(f"{API}/os-tenant-networks")).json()["networks"]
    assert {"id": mine["id"], "cidr": "None", "label": "mine"} in listed
    shown = await c.get(f"{API}/os-tenant-networks/{mine['id']}")
    assert shown.status_code == 200 and shown.json() == {"network": {"id": mine["id"], "cidr": "None", "label": "mine"}}
    nets = (await c.get(f"{API}/os-networks")).json()["networks"]
    entry = next(n for n in nets if n["id"] == mine["id"])
    assert entry["label"] == "mine" and entry["cidr"] is None and "project_id" not in entry  # admin-only field
    assert (await c.get(f"{API}/os-networks/{mine['id']}")).json()["network"] == entry
    admin_view = (await world.admin.get(f"{API}/os-networks/{mine['id']}")).json()["network"]
    assert admin_view["label"] == "mine" and "project_id" in admin_view and admin_view["mtu"] is None
    # Another project's network is not found, nor is a bad id; from 2.36 both APIs are gone.
    for path in (f"os-networks/{mine['id']}", f"os-tenant-networks/{mine['id']}"):
        resp = await world.other.get(f"{API}/{path}")
        assert resp.status_code == 404 and fault_of(resp) == ("itemNotFound", 404, "Network not found."), resp.text
    assert (await c.get(f"{API}/os-networks/not-a-uuid")).status_code == 404
    assert mine["id"] not in {n["id"] for n in (await world.other.get(f"{API}/os-tenant-networks")).json()["networks"]}
    assert (await c.get(f"{API}/os-tenant-networks", headers=mv("2.36"))).status_code == 404
    assert (await c.get(f"{API}/os-networks", headers=mv("2.36"))).status_code == 404
