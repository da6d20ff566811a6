"""Availability zones, compute services and hypervisors: shapes by version, state, usage, policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from resources_app import Harness, check, ctx, make_harness, nova

ADMIN = ctx("admin-proj", "admin")
MEMBER = ctx("proj-a", "member")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path) as h:
        yield h


async def cloud_rows(h: Harness) -> dict[str, Any]:
    """Two compute hosts (one of them in zone 'az2' and down), a scheduler and a conductor."""
    c1 = await h.add_service("host1")
    c2 = await h.add_service("host2", zone="az2", up=False)
    await h.add_service("ctl", "nova-scheduler", zone="internal")
    await h.add_service("ctl", "nova-conductor", zone="internal")
    n1 = await h.add_node("host1", c1["id"])
    n2 = await h.add_node("host2", c2["id"], vcpus=4, ram=8192, disk=100)
    return {"c1": c1, "c2": c2, "n1": n1, "n2": n2}


async def test_availability_zones(harness: Harness) -> None:
    await cloud_rows(harness)
    r = await harness.call(MEMBER, "GET", "/os-availability-zone")
    assert r.status_code == 200
    check(r.json(), nova.schema("availability_zones", "2.1"))
    zones = {z["zoneName"]: z["zoneState"]["available"] for z in r.json()["availabilityZoneInfo"]}
    assert zones == {"nova": True, "az2": False}  # "internal" is hidden; az2's only host is down
    assert (await harness.call(MEMBER, "GET", "/os-availability-zone/detail")).status_code == 403
    d = await harness.call(ADMIN, "GET", "/os-availability-zone/detail")
    check(d.json(), nova.schema("availability_zones_detail", "2.79"))
    info = {z["zoneName"]: z for z in d.json()["availabilityZoneInfo"]}
    assert set(info["internal"]["hosts"]["ctl"]) == {"nova-scheduler", "nova-conductor"}
    host1 = info["nova"]["hosts"]["host1"]["nova-compute"]
    assert host1["available"] is True and host1["active"] is True
    assert info["az2"]["hosts"] is None and info["az2"]["zoneState"]["available"] is False


@pytest.mark.parametrize("version", ["2.1", "2.11", "2.53", "2.79"])
async def test_services_list(harness: Harness, version: str) -> None:
    rows = await cloud_rows(harness)
    r = await harness.call(ADMIN, "GET", "/os-services", version)
    check(r.json(), nova.schema("services", version, admin=True), f"os-services {version}")
    by_key = {(s["host"], s["binary"]): s for s in r.json()["services"]}
    h1, h2 = by_key[("host1", "nova-compute")], by_key[("host2", "nova-compute")]
    assert (h1["state"], h1["status"], h1["zone"]) == ("up", "enabled", "nova")
    assert (h2["state"], h2["zone"]) == ("down", "az2")
    assert by_key[("ctl", "nova-scheduler")]["zone"] == "internal"
    assert h1["id"] == (rows["c1"]["uuid"] if version >= "2.53" else rows["c1"]["id"])
    only = await harness.call(ADMIN, "GET", "/os-services?binary=nova-compute&host=host2", version)
    assert [(s["host"], s["binary"]) for s in only.json()["services"]] == [("host2", "nova-compute")]
    assert (await harness.call(MEMBER, "GET", "/os-services", version)).status_code == 403


async def test_services_legacy_actions(harness: Harness) -> None:
    await cloud_rows(harness)
    body = {"host": "host1", "binary": "nova-compute"}
    r = await harness.call(ADMIN, "PUT", "/os-services/disable", "2.1", json=body)
    assert r.json() == {"service": {"host": "host1", "binary": "nova-compute", "status": "disabled"}}
    r = await harness.call(ADMIN, "PUT", "/os-services/disable-log-reason", "2.1", json={**body, "disabled_reason": "maint"})
    assert r.json()["service"]["disabled_reason"] == "maint"
    listed = (await harness.call(ADMIN, "GET", "/os-services?host=host1")).json()["services"][0]
    assert (listed["status"], listed["disabled_reason"]) == ("disabled", "maint")
    r = await harness.call(ADMIN, "PUT", "/os-services/enable", "2.1", json=body)
    assert r.json()["service"]["status"] == "enabled"
    # force-down exists from 2.11.
    assert (await harness.call(ADMIN, "PUT", "/os-services/force-down", "2.10", json={**body, "forced_down": True})).status_code == 404
    r = await harness.call(ADMIN, "PUT", "/os-services/force-down", "2.11", json={**body, "forced_down": True})
    assert r.json() == {"service": {"host": "host1", "binary": "nova-compute", "forced_down": True}}
    listed = (await harness.call(ADMIN, "GET", "/os-services?host=host1", "2.11")).json()["services"][0]
    assert listed["state"] == "down" and listed["forced_down"] is True
    assert (await harness.call(ADMIN, "PUT", "/os-services/disable-log-reason", json=body)).status_code == 400
    assert (await harness.call(ADMIN, "PUT", "/os-services/disable", json={"host": "ctl", "binary": "nova-scheduler"})).status_code == 400
    assert (await harness.call(ADMIN, "PUT", "/os-services/disable", json={"host": "nohost", "binary": "nova-compute"})).status_code == 404
    assert (await harness.call(ADMIN, "PUT", "/os-services/explode", json=body)).status_code == 404
    assert (await harness.call(ADMIN, "PUT", "/os-services/disable", json={"host": "host1"})).status_code == 400
    assert (await harness.call(MEMBER, "PUT", "/os-services/disable", json=body)).status_code == 403


async def test_services_update_253(harness: Harness) -> None:
    rows = await cloud_rows(harness)
    sid = rows["c1"]["uuid"]
    r = await harness.call(ADMIN, "PUT", f"/os-services/{sid}", "2.53", json={"status": "disabled", "disabled_reason": "maint"})
    assert r.status_code == 200
    check({"services": [r.json()["service"]]}, nova.schema("services", "2.53", admin=True))
    assert (r.json()["service"]["status"], r.json()["service"]["disabled_reason"]) == ("disabled", "maint")
    r = await harness.call(ADMIN, "PUT", f"/os-services/{sid}", "2.53", json={"forced_down": True})
    assert r.json()["service"]["state"] == "down" and r.json()["service"]["forced_down"] is True
    r = await harness.call(ADMIN, "PUT", f"/os-services/{sid}", "2.53", json={"status": "enabled", "forced_down": False})
    assert (r.json()["service"]["status"], r.json()["service"]["state"], r.json()["service"]["disabled_reason"]) == ("enabled", "up", None)
    for body in ({}, {"disabled_reason": "x"}, {"status": "enabled", "disabled_reason": "x"}, {"status": "off"}, {"bogus": 1}):
        assert (await harness.call(ADMIN, "PUT", f"/os-services/{sid}", "2.53", json=body)).status_code == 400, body
    assert (await harness.call(ADMIN, "PUT", "/os-services/not-a-uuid", "2.53", json={"status": "enabled"})).status_code == 400
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await harness.call(ADMIN, "PUT", f"/os-services/{missing}", "2.53", json={"status": "enabled"})).status_code == 404


async def test_services_delete(harness: Harness) -> None:
    rows = await cloud_rows(harness)
    await harness.add_instance("proj-a", host="host1")
    busy = await harness.call(ADMIN, "DELETE", f"/os-services/{rows['c1']['uuid']}", "2.53")
    assert busy.status_code == 409
    assert (await harness.call(ADMIN, "DELETE", "/os-services/abc", "2.1")).status_code == 400
    assert (await harness.call(ADMIN, "DELETE", "/os-services/abc", "2.53")).status_code == 400
    assert (await harness.call(ADMIN, "DELETE", "/os-services/9999", "2.1")).status_code == 404
    assert (await harness.call(MEMBER, "DELETE", f"/os-services/{rows['c2']['id']}", "2.1")).status_code == 403
    gone = await harness.call(ADMIN, "DELETE", f"/os-services/{rows['c2']['id']}", "2.1")
    assert gone.status_code == 204
    assert harness.placement.deleted == [rows["n2"]["uuid"]]
    names = [h["hypervisor_hostname"] for h in (await harness.call(ADMIN, "GET", "/os-hypervisors")).json()["hypervisors"]]
    assert names == ["host1"]


@pytest.mark.parametrize("version", ["2.1", "2.28", "2.33", "2.53", "2.75", "2.79"])
async def test_hypervisor_shapes_and_usage(harness: Harness, version: str) -> None:
    rows = await cloud_rows(harness)
    await harness.add_instance("proj-a", host="host1", vcpus=2, ram=1024, disk=10)
    await harness.add_instance("proj-b", host="host1", vcpus=1, ram=512, disk=5, task_state="rebooting")
    brief = await harness.call(ADMIN, "GET", "/os-hypervisors", version)
    check(brief.json(), nova.schema("hypervisors", version, admin=True), f"list {version}")
    detail = await harness.call(ADMIN, "GET", "/os-hypervisors/detail", version)
    check(detail.json(), nova.schema("hypervisors_detail", version, admin=True), f"detail {version}")
    h1 = detail.json()["hypervisors"][0]
    assert (h1["vcpus_used"], h1["memory_mb_used"], h1["local_gb_used"], h1["running_vms"]) == (3, 1536, 15, 2)
    assert (h1["free_ram_mb"], h1["free_disk_gb"], h1["current_workload"]) == (32768 - 1536, 485, 1)
    assert (h1["state"], h1["status"]) == ("up", "enabled")
    assert detail.json()["hypervisors"][1]["state"] == "down"
    ident = str(rows["n1"]["uuid"] if version >= "2.53" else rows["n1"]["id"])
    assert h1["id"] == (ident if version >= "2.53" else rows["n1"]["id"])
    show = await harness.call(ADMIN, "GET", f"/os-hypervisors/{ident}", version)
    check(show.json(), nova.schema("hypervisor", version, admin=True), f"show {version}")
    cpu = show.json()["hypervisor"]["cpu_info"]
    assert (isinstance(cpu, dict) if version >= "2.28" else isinstance(cpu, str))
    stats = await harness.call(ADMIN, "GET", "/os-hypervisors/statistics", version)
    check(stats.json(), nova.schema("hypervisor_statistics", version, admin=True))
    s = stats.json()["hypervisor_statistics"]
    assert (s["count"], s["vcpus"], s["vcpus_used"], s["running_vms"]) == (2, 20, 3, 2)
    up = await harness.call(ADMIN, "GET", f"/os-hypervisors/{ident}/uptime", version)
    assert up.status_code == 200 and " up " in up.json()["hypervisor"]["uptime"]
    assert set(up.json()["hypervisor"]) == {"id", "hypervisor_hostname", "state", "status", "uptime"}


async def test_hypervisor_ids_search_and_servers(harness: Harness) -> None:
    rows = await cloud_rows(harness)
    vm = await harness.add_instance("proj-a", host="host1", name="web")
    # Before 2.53 ids are integers: anything else is a 404; from 2.53 a uuid, else 400.
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors/abc", "2.1")).status_code == 404
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors/9999", "2.1")).status_code == 404
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors/1", "2.53")).status_code == 400
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors/00000000-0000-0000-0000-000000000000", "2.53")).status_code == 404
    found = await harness.call(ADMIN, "GET", "/os-hypervisors/host1/search", "2.1")
    assert [h["hypervisor_hostname"] for h in found.json()["hypervisors"]] == ["host1"]
    with_servers = await harness.call(ADMIN, "GET", "/os-hypervisors/host/servers", "2.1")
    by_name = {h["hypervisor_hostname"]: h for h in with_servers.json()["hypervisors"]}
    assert by_name["host1"]["servers"] == [{"name": "web", "uuid": vm}] and "servers" not in by_name["host2"]
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors/zzz/search", "2.1")).status_code == 404
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors/host1/search", "2.53")).status_code == 404
    # 2.53: query parameters instead.
    q = await harness.call(ADMIN, "GET", "/os-hypervisors?hypervisor_hostname_pattern=host2&with_servers=true", "2.53")
    assert [h["hypervisor_hostname"] for h in q.json()["hypervisors"]] == ["host2"] and "servers" not in q.json()["hypervisors"][0]
    q = await harness.call(ADMIN, "GET", "/os-hypervisors?hypervisor_hostname_pattern=host2&with_servers=true", "2.75")
    assert q.json()["hypervisors"][0]["servers"] == []
    shown = await harness.call(ADMIN, "GET", f"/os-hypervisors/{rows['n1']['uuid']}?with_servers=1", "2.79")
    assert shown.json()["hypervisor"]["servers"] == [{"name": "web", "uuid": vm}]
    check(shown.json(), nova.schema("hypervisor", "2.79", admin=True))
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors?hypervisor_hostname_pattern=nomatch", "2.53")).status_code == 404
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors?hypervisor_hostname_pattern=h&limit=1", "2.53")).status_code == 400
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors?with_servers=maybe", "2.53")).status_code == 400
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors?bogus=1", "2.53")).status_code == 400


async def test_hypervisor_pagination(harness: Harness) -> None:
    rows = await cloud_rows(harness)
    page = await harness.call(ADMIN, "GET", "/os-hypervisors?limit=1", "2.33")
    assert len(page.json()["hypervisors"]) == 1
    assert page.json()["hypervisors_links"][0]["href"].endswith(f"/v2.1/os-hypervisors?limit=1&marker={rows['n1']['id']}")
    rest = await harness.call(ADMIN, "GET", f"/os-hypervisors/detail?limit=1&marker={rows['n1']['uuid']}", "2.53")
    assert [h["hypervisor_hostname"] for h in rest.json()["hypervisors"]] == ["host2"]
    assert (await harness.call(ADMIN, "GET", "/os-hypervisors?marker=nope", "2.53")).status_code == 400


async def test_hypervisors_admin_only(harness: Harness) -> None:
    rows = await cloud_rows(harness)
    for path in ("/os-hypervisors", "/os-hypervisors/detail", "/os-hypervisors/statistics", f"/os-hypervisors/{rows['n1']['id']}"):
        r = await harness.call(MEMBER, "GET", path)
        assert r.status_code == 403 and set(r.json()) == {"forbidden"}, path
    # os-aggregates: tests/unit/compute/test_aggregates_api.py
