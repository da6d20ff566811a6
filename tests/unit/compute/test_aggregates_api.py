"""os-aggregates: CRUD, host actions, metadata, Nova's errors, and the zone an aggregate gives hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from admin_extras_app import make_extras_harness
from resources_app import Harness, ctx

ADMIN = ctx("admin-proj", "admin")
MEMBER = ctx("proj-a", "member")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_extras_harness(tmp_path) as harness:
        await harness.add_service("host1")
        await harness.add_service("host2")
        await harness.add_service("ctl", "nova-scheduler", zone="internal")
        yield harness


async def create(h: Harness, name: str, zone: str | None = None, version: str = "2.1") -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if zone is not None:
        body["availability_zone"] = zone
    r = await h.call(ADMIN, "POST", "/os-aggregates", version, json={"aggregate": body})
    assert r.status_code == 200, r.text
    return r.json()["aggregate"]  # type: ignore[no-any-return]


async def act(h: Harness, agg_id: int, body: dict[str, Any], who: Any = ADMIN, version: str = "2.1") -> Any:
    return await h.call(who, "POST", f"/os-aggregates/{agg_id}/action", version, json=body)


AGG_KEYS = {"availability_zone", "created_at", "deleted", "deleted_at", "hosts", "id", "metadata", "name", "updated_at"}


async def test_create_show_list_update_delete(h: Harness) -> None:
    agg = await create(h, "agg1", "zone-a")
    assert set(agg) == AGG_KEYS - {"hosts", "metadata"}
    assert (agg["name"], agg["availability_zone"], agg["deleted"], agg["updated_at"]) == ("agg1", "zone-a", False, None)
    shown = (await h.call(ADMIN, "GET", f"/os-aggregates/{agg['id']}")).json()["aggregate"]
    assert set(shown) == AGG_KEYS and shown["metadata"] == {"availability_zone": "zone-a"} and shown["hosts"] == []
    v241 = (await h.call(ADMIN, "GET", f"/os-aggregates/{agg['id']}", "2.41")).json()["aggregate"]
    assert set(v241) == AGG_KEYS | {"uuid"}
    listed = (await h.call(ADMIN, "GET", "/os-aggregates")).json()["aggregates"]
    assert [a["name"] for a in listed] == ["agg1"]
    r = await h.call(ADMIN, "PUT", f"/os-aggregates/{agg['id']}", json={"aggregate": {"name": " agg2 "}})
    assert r.status_code == 200 and r.json()["aggregate"]["name"] == "agg2" and r.json()["aggregate"]["updated_at"]
    r = await h.call(ADMIN, "DELETE", f"/os-aggregates/{agg['id']}")
    assert r.status_code == 200 and r.content == b""
    assert (await h.call(ADMIN, "GET", f"/os-aggregates/{agg['id']}")).status_code == 404


async def test_validation_and_errors(h: Harness) -> None:
    await create(h, "dup")
    r = await h.call(ADMIN, "POST", "/os-aggregates", json={"aggregate": {"name": "dup"}})
    assert r.status_code == 409 and "conflictingRequest" in r.json()
    for bad in ("", "a" * 256, " lead", None, 5):
        r = await h.call(ADMIN, "POST", "/os-aggregates", json={"aggregate": {"name": bad}})
        assert r.status_code == 400, bad
    for zone in ("a:b", "", " z"):
        r = await h.call(ADMIN, "POST", "/os-aggregates", json={"aggregate": {"name": "z", "availability_zone": zone}})
        assert r.status_code == 400, zone
    assert (await h.call(ADMIN, "POST", "/os-aggregates", json={"aggregate": {"name": "x", "extra": 1}})).status_code == 400
    assert (await h.call(ADMIN, "GET", "/os-aggregates/-1")).status_code == 404
    assert (await h.call(ADMIN, "DELETE", "/os-aggregates/-1")).status_code == 404
    assert (await h.call(ADMIN, "GET", "/os-aggregates/abc")).status_code == 400
    assert (await h.call(ADMIN, "GET", f"/os-aggregates/{10**30}")).status_code == 404
    r = await h.call(ADMIN, "PUT", "/os-aggregates/1", json={"aggregate": {}})
    assert r.status_code == 400


async def test_policy(h: Harness) -> None:
    agg = await create(h, "p")
    assert (await h.call(MEMBER, "GET", "/os-aggregates")).status_code == 403
    assert (await h.call(MEMBER, "POST", "/os-aggregates", json={"aggregate": {"name": "m"}})).status_code == 403
    assert (await h.call(MEMBER, "GET", f"/os-aggregates/{agg['id']}")).status_code == 403
    assert (await h.call(MEMBER, "DELETE", f"/os-aggregates/{agg['id']}")).status_code == 403
    assert (await act(h, agg["id"], {"add_host": {"host": "host1"}}, MEMBER)).status_code == 403
    assert (await act(h, agg["id"], {"remove_host": {"host": "host1"}}, MEMBER)).status_code == 403


async def test_hosts_and_metadata(h: Harness) -> None:
    agg = await create(h, "hosts")
    r = await act(h, agg["id"], {"add_host": {"host": "host1"}})
    assert r.status_code == 200 and r.json()["aggregate"]["hosts"] == ["host1"]
    assert (await act(h, agg["id"], {"add_host": {"host": "host1"}})).status_code == 409
    assert (await act(h, agg["id"], {"add_host": {"host": "nohost"}})).status_code == 404
    assert (await act(h, agg["id"], {"add_host": {"host": "ctl"}})).status_code == 404  # not a compute host
    assert (await act(h, 999, {"add_host": {"host": "host2"}})).status_code == 404
    assert (await act(h, agg["id"], {"remove_host": {"host": "host2"}})).status_code == 404
    assert (await act(h, agg["id"], {"remove_host": {"host": "nohost"}})).status_code == 404
    assert (await act(h, agg["id"], {"add_host": {"host": "bad host"}})).status_code == 400
    assert (await act(h, agg["id"], {"explode": {}})).status_code == 400
    # A non-empty aggregate cannot be deleted.
    assert (await h.call(ADMIN, "DELETE", f"/os-aggregates/{agg['id']}")).status_code == 400
    r = await act(h, agg["id"], {"set_metadata": {"metadata": {"ssd": "true", "gpu": "1"}}})
    assert r.json()["aggregate"]["metadata"] == {"ssd": "true", "gpu": "1"}
    r = await act(h, agg["id"], {"set_metadata": {"metadata": {"gpu": None, "missing": None}}})
    assert r.json()["aggregate"]["metadata"] == {"ssd": "true"}
    assert (await act(h, agg["id"], {"set_metadata": {"metadata": {"k": 1}}})).status_code == 400
    r = await act(h, agg["id"], {"remove_host": {"host": "host1"}})
    assert r.status_code == 200 and r.json()["aggregate"]["hosts"] == []


async def zones(h: Harness) -> dict[str, str]:
    services = (await h.call(ADMIN, "GET", "/os-services?binary=nova-compute")).json()["services"]
    return {s["host"]: s["zone"] for s in services}


async def test_zone_follows_aggregate(h: Harness) -> None:
    agg = await create(h, "az", "zone-a")
    await act(h, agg["id"], {"add_host": {"host": "host1"}})
    assert await zones(h) == {"host1": "zone-a", "host2": "nova"}
    names = {z["zoneName"] for z in (await h.call(MEMBER, "GET", "/os-availability-zone")).json()["availabilityZoneInfo"]}
    assert names == {"zone-a", "nova"}
    # A host in one zone cannot join an aggregate of another (409 on add, 400 on a zone change).
    other = await create(h, "other", "zone-b")
    r = await act(h, other["id"], {"add_host": {"host": "host1"}})
    assert r.status_code == 409 and "zone-a" in r.json()["conflictingRequest"]["message"]
    plain = await create(h, "plain")
    await act(h, plain["id"], {"add_host": {"host": "host1"}})
    r = await act(h, plain["id"], {"set_metadata": {"metadata": {"availability_zone": "zone-c"}}})
    assert r.status_code == 400
    # Renaming the zone moves the host along; removing the host puts it back in the default zone.
    r = await h.call(ADMIN, "PUT", f"/os-aggregates/{agg['id']}", json={"aggregate": {"availability_zone": "zone-z"}})
    assert r.status_code == 200 and r.json()["aggregate"]["availability_zone"] == "zone-z"
    assert (await zones(h))["host1"] == "zone-z"
    await act(h, agg["id"], {"remove_host": {"host": "host1"}})
    assert (await zones(h))["host1"] == "nova"


async def test_zone_survives_service_registration(h: Harness) -> None:
    from cumulo.hosts import servicegroup

    agg = await create(h, "keep", "zone-k")
    await act(h, agg["id"], {"add_host": {"host": "host2"}})
    await servicegroup.register_service(h.db, "host2", "nova-compute", "compute.host2", "nova")
    assert (await zones(h))["host2"] == "zone-k"


async def test_zone_change_refused_with_servers(h: Harness) -> None:
    await h.add_instance("proj-a", host="host1")
    agg = await create(h, "busy", "zone-a")
    r = await act(h, agg["id"], {"add_host": {"host": "host1"}})
    assert r.status_code == 409 and "would change" in r.json()["conflictingRequest"]["message"]
    plain = await create(h, "plain")
    assert (await act(h, plain["id"], {"add_host": {"host": "host1"}})).status_code == 200
    r = await act(h, plain["id"], {"set_metadata": {"metadata": {"availability_zone": "zone-b"}}})
    assert r.status_code == 400 and "contain instances" in r.json()["badRequest"]["message"]


async def test_concurrent_adds_and_creates(h: Harness) -> None:
    import asyncio

    agg = await create(h, "race")
    adds = await asyncio.gather(*(act(h, agg["id"], {"add_host": {"host": "host1"}}) for _ in range(6)))
    assert sorted(r.status_code for r in adds) == [200] + [409] * 5
    made = await asyncio.gather(*(h.call(ADMIN, "POST", "/os-aggregates", json={"aggregate": {"name": "same"}}) for _ in range(6)))
    assert sorted(r.status_code for r in made) == [200] + [409] * 5
