"""Limits, os-quota-sets and os-quota-class-sets: shapes by version, usage, policy, validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from resources_app import Harness, check, ctx, make_harness, nova

ADMIN = ctx("admin-proj", "admin")
MEMBER = ctx("proj-a", "member")
READER = ctx("proj-a", "reader")
VERSIONS = ["2.1", "2.35", "2.36", "2.39", "2.56", "2.57", "2.79"]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path) as h:
        yield h


@pytest.mark.parametrize("version", VERSIONS)
async def test_limits_shapes_and_usage(harness: Harness, version: str) -> None:
    await harness.add_instance("proj-a", vcpus=2, ram=1024)
    await harness.add_instance("proj-a", vcpus=1, ram=512)
    await harness.add_instance("proj-b", vcpus=4, ram=4096)
    r = await harness.call(READER, "GET", "/limits", version)
    assert r.status_code == 200
    check(r.json(), nova.schema("limits", version), f"GET /limits {version}")
    absolute = r.json()["limits"]["absolute"]
    assert r.json()["limits"]["rate"] == []
    assert (absolute["totalInstancesUsed"], absolute["totalCoresUsed"], absolute["totalRAMUsed"]) == (2, 3, 1536)
    assert (absolute["maxTotalInstances"], absolute["maxTotalCores"], absolute["maxTotalRAMSize"]) == (10, 20, 51200)
    assert absolute["maxTotalKeypairs"] == 100 and absolute["maxServerMeta"] == 128


async def test_limits_of_another_project(harness: Harness) -> None:
    await harness.add_instance("proj-b", vcpus=4, ram=4096)
    assert (await harness.call(MEMBER, "GET", "/limits?tenant_id=proj-b")).status_code == 403
    r = await harness.call(ADMIN, "GET", "/limits?tenant_id=proj-b")
    assert r.json()["limits"]["absolute"]["totalCoresUsed"] == 4
    assert (await harness.call(ADMIN, "GET", "/limits?reserved=1", "2.57")).status_code == 200
    assert (await harness.call(ADMIN, "GET", "/limits?reserved=1", "2.75")).status_code == 400


@pytest.mark.parametrize("version", VERSIONS)
async def test_quota_set_shapes(harness: Harness, version: str) -> None:
    await harness.add_instance("proj-a", vcpus=2, ram=2048)
    show = await harness.call(MEMBER, "GET", "/os-quota-sets/proj-a", version)
    assert show.status_code == 200
    check(show.json(), nova.schema("quota_set", version), f"show {version}")
    assert show.json()["quota_set"]["id"] == "proj-a" and show.json()["quota_set"]["instances"] == 10
    defaults = await harness.call(MEMBER, "GET", "/os-quota-sets/proj-a/defaults", version)
    check(defaults.json(), nova.schema("quota_set_defaults", version), f"defaults {version}")
    detail = await harness.call(MEMBER, "GET", "/os-quota-sets/proj-a/detail", version)
    check(detail.json(), nova.schema("quota_set_detail", version), f"detail {version}")
    d = detail.json()["quota_set"]
    assert d["cores"] == {"in_use": 2, "limit": 20, "reserved": 0}
    assert d["ram"]["in_use"] == 2048 and d["key_pairs"]["in_use"] == 0
    upd = await harness.call(ADMIN, "PUT", "/os-quota-sets/proj-a", version, json={"quota_set": {"instances": 5, "cores": "12"}})
    assert upd.status_code == 200, upd.text
    check(upd.json(), nova.schema("quota_set_update", version), f"update {version}")
    assert (upd.json()["quota_set"]["instances"], upd.json()["quota_set"]["cores"]) == (5, 12)


async def test_quota_policy_and_isolation(harness: Harness) -> None:
    other = await harness.call(MEMBER, "GET", "/os-quota-sets/proj-b")
    assert other.status_code == 403 and set(other.json()) == {"forbidden"}
    assert (await harness.call(MEMBER, "GET", "/os-quota-sets/proj-b/detail")).status_code == 403
    assert (await harness.call(ADMIN, "GET", "/os-quota-sets/proj-b")).status_code == 200
    assert (await harness.call(MEMBER, "PUT", "/os-quota-sets/proj-a", json={"quota_set": {"instances": 50}})).status_code == 403
    assert (await harness.call(MEMBER, "DELETE", "/os-quota-sets/proj-a")).status_code == 403
    ghost = await harness.call(ADMIN, "GET", "/os-quota-sets/ghost")
    assert ghost.status_code == 400 and ghost.json()["badRequest"]["message"] == "Project ID ghost is not a valid project."
    assert (await harness.call(ADMIN, "PUT", "/os-quota-sets/ghost", json={"quota_set": {"instances": 1}})).status_code == 400


@pytest.mark.parametrize(
    ("version", "body"),
    [
        ("2.1", {"quota_set": {"instances": -2}}),
        ("2.1", {"quota_set": {"instances": "many"}}),
        ("2.1", {"quota_set": {"bogus": 1}}),
        ("2.1", {"quota_set": {"instances": 2**31}}),
        ("2.1", {"quota_set": {"instances": 1, "force": "sometimes"}}),
        ("2.1", {"instances": 1}),
        ("2.36", {"quota_set": {"floating_ips": 1}}),
        ("2.57", {"quota_set": {"injected_files": 1}}),
    ],
)
async def test_quota_update_rejects_bad_input(harness: Harness, version: str, body: dict[str, object]) -> None:
    r = await harness.call(ADMIN, "PUT", "/os-quota-sets/proj-a", version, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["badRequest"]["code"] == 400


async def test_quota_below_usage_needs_force(harness: Harness) -> None:
    for _ in range(3):
        await harness.add_instance("proj-a")
    low = await harness.call(ADMIN, "PUT", "/os-quota-sets/proj-a", json={"quota_set": {"instances": 2}})
    assert low.status_code == 400
    assert "must be greater than or equal to already used and reserved 3" in low.json()["badRequest"]["message"]
    forced = await harness.call(ADMIN, "PUT", "/os-quota-sets/proj-a", json={"quota_set": {"instances": 2, "force": True}})
    assert forced.status_code == 200 and forced.json()["quota_set"]["instances"] == 2
    unlimited = await harness.call(ADMIN, "PUT", "/os-quota-sets/proj-a", json={"quota_set": {"instances": -1}})
    assert unlimited.json()["quota_set"]["instances"] == -1
    limits = (await harness.call(MEMBER, "GET", "/limits")).json()["limits"]["absolute"]
    assert limits["maxTotalInstances"] == -1
    assert (await harness.call(ADMIN, "DELETE", "/os-quota-sets/proj-a")).status_code == 202
    assert (await harness.call(MEMBER, "GET", "/os-quota-sets/proj-a")).json()["quota_set"]["instances"] == 10


async def test_quota_class_default_changes_defaults(harness: Harness) -> None:
    shown = await harness.call(ADMIN, "GET", "/os-quota-class-sets/default", "2.56")
    assert shown.status_code == 200
    qc = shown.json()["quota_class_set"]
    assert qc["id"] == "default" and qc["instances"] == 10 and "server_groups" in qc and "floating_ips" not in qc
    old = (await harness.call(ADMIN, "GET", "/os-quota-class-sets/default", "2.1")).json()["quota_class_set"]
    assert "server_groups" not in old and "floating_ips" in old
    upd = await harness.call(ADMIN, "PUT", "/os-quota-class-sets/default", "2.56", json={"quota_class_set": {"instances": 7}})
    assert upd.status_code == 200 and upd.json()["quota_class_set"]["instances"] == 7 and "id" not in upd.json()["quota_class_set"]
    assert (await harness.call(MEMBER, "GET", "/os-quota-sets/proj-a/defaults")).json()["quota_set"]["instances"] == 7
    assert (await harness.call(MEMBER, "GET", "/limits")).json()["limits"]["absolute"]["maxTotalInstances"] == 7
    assert (await harness.call(MEMBER, "GET", "/os-quota-class-sets/default")).status_code == 403
    bad = await harness.call(ADMIN, "PUT", "/os-quota-class-sets/default", "2.57", json={"quota_class_set": {"injected_files": 1}})
    assert bad.status_code == 400
