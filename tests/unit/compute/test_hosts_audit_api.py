"""os-hosts (up to 2.42) and os-instance_usage_audit_log: shapes, filters, Nova's errors, policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from admin_extras_app import make_extras_harness
from resources_app import Harness, ctx

from cumulo.compute.api.usage_audit_log import last_completed_month

ADMIN = ctx("admin-proj", "admin")
MEMBER = ctx("proj-a", "member")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_extras_harness(tmp_path) as harness:
        c1 = await harness.add_service("host1")
        c2 = await harness.add_service("host2", zone="az2")
        await harness.add_service("host3", disabled=True)
        await harness.add_service("ctl", "nova-scheduler", zone="internal")
        await harness.add_node("host1", c1["id"], vcpus=8, ram=4096, disk=40)
        await harness.add_node("host2", c2["id"])
        yield harness


async def test_list_hosts(h: Harness) -> None:
    r = await h.call(ADMIN, "GET", "/os-hosts", "2.42")
    assert r.status_code == 200
    assert r.json()["hosts"] == [
        {"host_name": "host1", "service": "compute", "zone": "nova"},
        {"host_name": "host2", "service": "compute", "zone": "az2"},
        {"host_name": "ctl", "service": "scheduler", "zone": "internal"},
    ]  # host3's service is disabled: Nova lists enabled services only
    assert [x["host_name"] for x in (await h.call(ADMIN, "GET", "/os-hosts?zone=az2")).json()["hosts"]] == ["host2"]
    assert len((await h.call(ADMIN, "GET", "/os-hosts?zone=")).json()["hosts"]) == 3
    assert (await h.call(ADMIN, "GET", "/os-hosts?zone=xxx")).json()["hosts"] == []
    assert (await h.call(ADMIN, "GET", "/os-hosts", "2.43")).status_code == 404
    assert (await h.call(MEMBER, "GET", "/os-hosts")).status_code == 403


async def test_show_host(h: Harness) -> None:
    await h.add_instance("proj-a", host="host1", vcpus=2, ram=512, disk=1)
    await h.add_instance("proj-a", host="host1", vcpus=1, ram=256, disk=2)
    await h.add_instance("proj-b", host="host1", vcpus=1, ram=128, disk=1)
    await h.add_instance("proj-b", host="host2")
    r = await h.call(ADMIN, "GET", "/os-hosts/host1")
    assert r.status_code == 200
    got = {x["resource"]["project"]: x["resource"] for x in r.json()["host"]}
    assert [x["resource"]["project"] for x in r.json()["host"]][:3] == ["(total)", "(used_now)", "(used_max)"]
    assert got["(total)"] == {"host": "host1", "project": "(total)", "cpu": 8, "memory_mb": 4096, "disk_gb": 40}
    assert (got["(used_now)"]["cpu"], got["(used_now)"]["memory_mb"]) == (4, 896)
    assert (got["(used_max)"]["cpu"], got["(used_max)"]["memory_mb"], got["(used_max)"]["disk_gb"]) == (4, 896, 4)
    assert (got["proj-a"]["cpu"], got["proj-a"]["memory_mb"], got["proj-a"]["disk_gb"]) == (3, 768, 3)
    assert (got["proj-b"]["cpu"], got["proj-b"]["disk_gb"]) == (1, 1)
    assert (await h.call(ADMIN, "GET", "/os-hosts/nonexistent_hostname")).status_code == 404
    assert (await h.call(ADMIN, "GET", "/os-hosts/ctl")).status_code == 404  # not a compute host
    assert (await h.call(MEMBER, "GET", "/os-hosts/host1")).status_code == 403
    assert (await h.call(ADMIN, "GET", "/os-hosts/host1", "2.43")).status_code == 404


async def test_host_update_and_power(h: Harness) -> None:
    ok = {"status": "enable", "maintenance_mode": "disable"}
    r = await h.call(ADMIN, "PUT", "/os-hosts/host1", json=ok)
    assert r.status_code == 501 and r.json()["notImplemented"]["message"] == "The requested functionality is not supported."
    for bad in ({}, {"status": "invalid"}, {"maintenance_mode": "invalid", "status": "enable"}, {"other": "x"}):
        assert (await h.call(ADMIN, "PUT", "/os-hosts/host1", json=bad)).status_code == 400, bad
    assert (await h.call(ADMIN, "PUT", "/os-hosts/nonexistent_hostname", json=ok)).status_code == 404
    assert (await h.call(MEMBER, "PUT", "/os-hosts/host1", json=ok)).status_code == 403
    for action in ("reboot", "shutdown", "startup"):
        assert (await h.call(ADMIN, "GET", f"/os-hosts/host1/{action}")).status_code == 501
        assert (await h.call(ADMIN, "GET", f"/os-hosts/nonexistent_hostname/{action}")).status_code == 404
        assert (await h.call(MEMBER, "GET", f"/os-hosts/host1/{action}")).status_code == 403


def test_last_completed_month() -> None:
    # The month before the one `before` falls in; on the first's midnight, the month before that.
    assert last_completed_month(dt.datetime(2026, 12, 6, 1, 2)) == (dt.datetime(2026, 11, 1), dt.datetime(2026, 12, 1))
    assert last_completed_month(dt.datetime(2026, 12, 1)) == (dt.datetime(2026, 10, 1), dt.datetime(2026, 11, 1))
    assert last_completed_month(dt.datetime(2026, 1, 15)) == (dt.datetime(2025, 12, 1), dt.datetime(2026, 1, 1))
    assert last_completed_month(dt.datetime(2026, 2, 1, 0, 0, 1)) == (dt.datetime(2026, 1, 1), dt.datetime(2026, 2, 1))


AUDIT_KEYS = {"hosts_not_run", "log", "num_hosts", "num_hosts_done", "num_hosts_not_run", "num_hosts_running",
              "overall_status", "period_beginning", "period_ending", "total_errors", "total_instances"}


async def test_usage_audit_log(h: Harness) -> None:
    r = await h.call(ADMIN, "GET", "/os-instance_usage_audit_log")
    assert r.status_code == 200
    log = r.json()["instance_usage_audit_logs"]
    assert set(log) == AUDIT_KEYS
    assert log["hosts_not_run"] == ["host1", "host2", "host3"] and log["num_hosts"] == 3 and log["num_hosts_not_run"] == 3
    assert (log["num_hosts_done"], log["total_instances"], log["log"]) == (0, 0, {})
    assert log["overall_status"] == "0 of 3 hosts done. 0 errors."
    r = await h.call(ADMIN, "GET", "/os-instance_usage_audit_log/" + quote("2026-03-15 10:00:00"))
    shown = r.json()["instance_usage_audit_log"]
    assert (shown["period_beginning"], shown["period_ending"]) == ("2026-02-01 00:00:00", "2026-03-01 00:00:00")
    r = await h.call(ADMIN, "GET", "/os-instance_usage_audit_log/" + quote("2026-03-15 10:00:00.123456"))
    assert r.status_code == 200
    r = await h.call(ADMIN, "GET", "/os-instance_usage_audit_log/invalid_time")
    assert r.status_code == 400 and r.json()["badRequest"]["message"] == "Invalid timestamp for date invalid_time"
    assert (await h.call(MEMBER, "GET", "/os-instance_usage_audit_log")).status_code == 403
    assert (await h.call(MEMBER, "GET", "/os-instance_usage_audit_log/" + quote("2026-03-15 10:00:00"))).status_code == 403
