"""On the in-process cloud (fake driver): os-simple-tenant-usage from real instance rows,
os-server-external-events per-event codes and policy, and the server security group actions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    make_ctx,
    make_network,
    make_world,
    mv,
    settings,
    wait_gone,
)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")


def window() -> dict[str, str]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return {"start": fmt(now - dt.timedelta(days=1)), "end": fmt(now + dt.timedelta(days=1))}


USAGE_KEYS = {"server_usages", "start", "stop", "tenant_id", "total_hours", "total_local_gb_usage",
              "total_memory_mb_usage", "total_vcpus_usage"}
SERVER_KEYS = {"ended_at", "flavor", "hours", "instance_id", "local_gb", "memory_mb", "name", "started_at", "state",
               "tenant_id", "uptime", "vcpus"}


async def test_tenant_usage(world: World) -> None:
    a = await world.active("a")
    b = await world.active("b")
    await world.member.delete(f"{API}/servers/{b['id']}")
    await wait_gone(world.member, b["id"])
    r = await world.admin.get(f"{API}/os-simple-tenant-usage", params={**window(), "detailed": "1"})
    assert r.status_code == 200, r.text
    mine = [u for u in r.json()["tenant_usages"] if u["tenant_id"] == world.project_id]
    assert len(mine) == 1 and set(mine[0]) == USAGE_KEYS
    servers = {s["instance_id"]: s for s in mine[0]["server_usages"]}
    assert set(servers) == {a["id"], b["id"]}  # a deleted server still counts for its hours
    assert all(set(s) == SERVER_KEYS for s in servers.values())
    assert servers[a["id"]]["state"] == "active" and servers[a["id"]]["ended_at"] is None
    assert servers[b["id"]]["state"] == "terminated" and servers[b["id"]]["ended_at"]
    assert servers[a["id"]]["flavor"] == "m1.nano" and servers[a["id"]]["vcpus"] == 1
    assert mine[0]["total_hours"] > 0
    assert mine[0]["total_vcpus_usage"] == pytest.approx(sum(s["vcpus"] * s["hours"] for s in servers.values()))
    brief = (await world.admin.get(f"{API}/os-simple-tenant-usage", params=window())).json()["tenant_usages"]
    assert all("server_usages" not in u for u in brief)
    # A project reads its own usage (reader too); another project's is forbidden; the list is admin-only.
    own = await world.reader.get(f"{API}/os-simple-tenant-usage/{world.project_id}", params=window())
    assert own.status_code == 200 and set(own.json()["tenant_usage"]) == USAGE_KEYS
    assert (await world.other.get(f"{API}/os-simple-tenant-usage/{world.project_id}", params=window())).status_code == 403
    assert (await world.member.get(f"{API}/os-simple-tenant-usage", params=window())).status_code == 403
    empty = await world.admin.get(f"{API}/os-simple-tenant-usage/{uuid.uuid4().hex}", params=window())
    assert empty.json() == {"tenant_usage": {}}
    # Paging from 2.40: one server per page, a next link naming the last server.
    page = await world.admin.get(f"{API}/os-simple-tenant-usage/{world.project_id}", params={**window(), "limit": 1},
                                 headers=mv("2.40"))
    body = page.json()
    assert len(body["tenant_usage"]["server_usages"]) == 1 and "marker=" in body["tenant_usage_links"][0]["href"]
    marker = body["tenant_usage"]["server_usages"][0]["instance_id"]
    nxt = await world.admin.get(f"{API}/os-simple-tenant-usage/{world.project_id}",
                                params={**window(), "limit": 1, "marker": marker}, headers=mv("2.40"))
    assert nxt.json()["tenant_usage"]["server_usages"][0]["instance_id"] != marker


async def test_tenant_usage_bad_input(world: World) -> None:
    w = window()
    path = f"{API}/os-simple-tenant-usage/{world.project_id}"
    assert (await world.admin.get(path, params={"start": w["end"], "end": w["start"]})).status_code == 400
    assert (await world.admin.get(path, params={"start": "yesterday"})).status_code == 400
    assert (await world.admin.get(path, params={**w, "limit": 1, "marker": "nope"}, headers=mv("2.40"))).status_code == 400
    assert (await world.admin.get(path, params={**w, "bogus": 1}, headers=mv("2.75"))).status_code == 400
    assert (await world.admin.get(path, params={**w, "bogus": 1}, headers=mv("2.74"))).status_code == 200
    assert (await world.admin.get(f"{API}/os-simple-tenant-usage/", params=w)).status_code == 404


async def test_external_events(world: World) -> None:
    server = await world.active()
    service = world.as_ctx(make_ctx(uuid.uuid4().hex, "service"))
    missing = str(uuid.uuid4())
    events = [{"name": "network-changed", "server_uuid": server["id"]}]
    r = await service.post(f"{API}/os-server-external-events", json={"events": events})
    assert r.status_code == 200, r.text
    assert r.json() == {"events": [{"name": "network-changed", "server_uuid": server["id"], "status": "completed", "code": 200}]}
    r = await world.admin.post(f"{API}/os-server-external-events",
                               json={"events": [*events, {"name": "network-vif-plugged", "server_uuid": missing, "tag": "p"}]})
    assert r.status_code == 207
    assert [(e["status"], e["code"]) for e in r.json()["events"]] == [("completed", 200), ("failed", 404)]
    assert r.json()["events"][1]["tag"] == "p"
    # power-update exists from 2.76 and needs a tag.
    power = {"events": [{"name": "power-update", "server_uuid": server["id"]}]}
    assert (await service.post(f"{API}/os-server-external-events", json=power, headers=mv("2.75"))).status_code == 400
    r = await service.post(f"{API}/os-server-external-events", json=power, headers=mv("2.76"))
    assert r.status_code == 207 and r.json()["events"][0]["code"] == 400
    for bad in ({"events": []}, {"events": [{"name": "nope", "server_uuid": server["id"]}]},
                {"events": [{"name": "network-changed", "server_uuid": "x"}]}, {"other": 1}):
        assert (await service.post(f"{API}/os-server-external-events", json=bad)).status_code == 400, bad
    assert (await world.member.post(f"{API}/os-server-external-events", json={"events": events})).status_code == 403


async def test_server_security_groups(world: World) -> None:
    """A server's groups are its ports' Neutron groups, found by name in its project."""
    net = await make_network(world.member, "sg-net", "10.30.0.0/24")
    nets = [{"uuid": net["network"]["id"]}]
    server = await world.active(networks=nets)
    sid = server["id"]
    # A group named on create must exist in the project: 400 as Nova.
    r = await world.member.post(f"{API}/servers", json={"server": {"name": "x", "imageRef": world.image_id,
                                                                     "flavorRef": "1", "security_groups": [{"name": "nope"}]}})
    assert r.status_code == 400 and r.json()["badRequest"]["message"] == "Security group nope not found."
    web = (await world.member.post("/networking/v2.0/security-groups", json={"security_group": {"name": "web"}})).json()
    web_id = web["security_group"]["id"]
    other = await world.active("other", networks=nets, security_groups=[{"name": "web"}])
    ports = (await world.member.get("/networking/v2.0/ports", params={"device_id": other["id"]})).json()["ports"]
    assert [p["security_groups"] for p in ports] == [[web_id]]

    async def names(uuid: str = sid) -> list[str]:
        shown = (await world.member.get(f"{API}/servers/{uuid}")).json()["server"]
        return [g["name"] for g in shown.get("security_groups", [])]

    assert await names(other["id"]) == ["web"]
    assert (await world.action(sid, {"addSecurityGroup": {"name": "web"}})).status_code == 202
    listed = (await world.member.get(f"{API}/servers/{sid}/os-security-groups")).json()["security_groups"]
    assert sorted(g["name"] for g in listed) == ["default", "web"]
    assert set(listed[0]) == {"id", "name", "description", "tenant_id", "rules"}
    default = next(g for g in listed if g["name"] == "default")
    # Neutron's default group: ingress from the same group (Nova shows ingress rules only).
    assert default["rules"] and all(r["group"] == {"name": "default", "tenant_id": world.project_id}
                                    for r in default["rules"])
    assert await names() == ["default", "web"]
    assert (await world.action(sid, {"removeSecurityGroup": {"name": "web"}})).status_code == 202
    assert await names() == ["default"]
    r = await world.action(sid, {"removeSecurityGroup": {"name": "web"}})  # known to the project, not on the server
    assert r.status_code == 400
    assert (await world.action(sid, {"removeSecurityGroup": {"name": "nosuch"}})).status_code == 404
    assert (await world.action(sid, {"addSecurityGroup": {"name": "nosuch"}})).status_code == 404
    assert (await world.action(sid, {"removeSecurityGroup": {"name": "default"}})).status_code == 202
    assert await names() == []  # Nova leaves the key out when the server has no group
    assert (await world.action(sid, {"removeSecurityGroup": {"name": "default"}})).status_code == 400
    assert (await world.action(sid, {"addSecurityGroup": {"name": "default"}})).status_code == 202
    assert (await world.action(sid, {"addSecurityGroup": {"name": "default"}})).status_code == 202
    assert await names() == ["default"]
    for bad in ({"addSecurityGroup": None}, {"addSecurityGroup": {}}, {"addSecurityGroup": {"name": " "}}):
        assert (await world.action(sid, bad)).status_code == 400, bad
    assert (await world.action(sid, {"addSecurityGroup": {"name": "default"}}, client=world.reader)).status_code == 403
    assert (await world.action(sid, {"addSecurityGroup": {"name": "default"}}, client=world.other)).status_code == 404
    assert (await world.other.get(f"{API}/servers/{sid}/os-security-groups")).status_code == 404


async def test_aggregate_zone_places_servers(world: World) -> None:
    """An aggregate's zone reaches the scheduler: a server asking for it lands on its host and shows it."""
    services = (await world.admin.get(f"{API}/os-services", params={"binary": "nova-compute"})).json()["services"]
    host = sorted(s["host"] for s in services)[0]
    r = await world.admin.post(f"{API}/os-aggregates", json={"aggregate": {"name": "az-agg", "availability_zone": "zone-x"}})
    agg = r.json()["aggregate"]
    r = await world.admin.post(f"{API}/os-aggregates/{agg['id']}/action", json={"add_host": {"host": host}})
    assert r.status_code == 200, r.text
    zones = (await world.member.get(f"{API}/os-availability-zone")).json()["availabilityZoneInfo"]
    assert "zone-x" in {z["zoneName"] for z in zones}
    for _ in range(2):
        server = await world.active(availability_zone="zone-x")
        shown = (await world.admin.get(f"{API}/servers/{server['id']}")).json()["server"]
        assert shown["OS-EXT-AZ:availability_zone"] == "zone-x"
        assert host in (shown["OS-EXT-SRV-ATTR:host"], shown["OS-EXT-SRV-ATTR:hypervisor_hostname"])
    # Its servers pin the host's zone: removing the host would move them, so it is refused.
    r = await world.admin.post(f"{API}/os-aggregates/{agg['id']}/action", json={"remove_host": {"host": host}})
    assert r.status_code == 409
