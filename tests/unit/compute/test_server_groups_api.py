"""os-server-groups on the in-process cloud: shapes per microversion (against the reference module),
validation, isolation, pagination, quotas, the group scheduler hint, membership and server_groups
in a server (2.71), and (anti-)affinity across the fake hosts, concurrent builds included."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    NANO,
    World,
    fault_of,
    make_world,
    mv,
    settings,
    wait_gone,
    wait_status,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for `reference`
from reference import check, nova  # noqa: E402

from cumulo.compute.service.quotas import QuotaEngine  # noqa: E402

GROUPS = f"{API}/os-server-groups"
JSON = dict[str, Any]


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def create_group(
    client: httpx.AsyncClient, policy: str = "anti-affinity", version: str = "2.64", name: str = "g", **rules: int
) -> JSON:
    body: JSON = {"name": name}
    if version >= "2.64":
        body["policy"] = policy
        if rules:
            body["rules"] = rules
    else:
        body["policies"] = [policy]
    resp = await client.post(GROUPS, json={"server_group": body}, headers=mv(version))
    assert resp.status_code == 200, resp.text
    group: JSON = resp.json()["server_group"]
    return group


async def boot(world: World, group: str, count: int = 1, name: str = "m") -> list[str]:
    body: JSON = {"server": {"name": name, "imageRef": world.image_id, "flavorRef": NANO}}
    if count > 1:
        body["server"].update(min_count=count, max_count=count, return_reservation_id=True)
    body["os:scheduler_hints"] = {"group": group}
    resp = await world.member.post(f"{API}/servers", json=body)
    assert resp.status_code == 202, resp.text
    if count == 1:
        return [resp.json()["server"]["id"]]
    resv = resp.json()["reservation_id"]
    listed = await world.member.get(f"{API}/servers", params={"reservation_id": resv})
    return [s["id"] for s in listed.json()["servers"]]


async def settle(world: World, uuids: list[str]) -> dict[str, JSON]:
    """Each server once it leaves BUILD, seen by an admin (host visible)."""
    out: dict[str, JSON] = {}
    for u in uuids:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            body = (await world.admin.get(f"{API}/servers/{u}", headers=mv("2.71"))).json()["server"]
            if body["status"] in ("ACTIVE", "ERROR") and body.get("OS-EXT-STS:task_state") is None:
                out[u] = body
                break
            assert loop.time() < deadline, body
            await asyncio.sleep(0.02)
    return out


async def host_count(world: World) -> int:
    resp = await world.admin.get(f"{API}/os-services", params={"binary": "nova-compute"})
    return len({s["host"] for s in resp.json()["services"]})


# --- shapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["2.1", "2.13", "2.15", "2.63", "2.64", "2.79"])
async def test_shapes_follow_the_reference(world: World, version: str) -> None:
    policy = "soft-anti-affinity" if version >= "2.15" else "affinity"
    group = await create_group(world.member, policy, version)
    check({"server_group": group}, nova.schema("server_group", version))
    shown = await world.member.get(f"{GROUPS}/{group['id']}", headers=mv(version))
    assert shown.status_code == 200
    check(shown.json(), nova.schema("server_group", version))
    listed = await world.member.get(GROUPS, headers=mv(version))
    check(listed.json(), nova.schema("server_groups", version))
    expected = {"id", "name", "members"}
    expected |= {"policy", "rules"} if version >= "2.64" else {"policies", "metadata"}
    expected |= {"project_id", "user_id"} if version >= "2.13" else set()
    assert set(group) == expected
    if version >= "2.64":
        assert group["policy"] == policy and group["rules"] == {}
    else:
        assert group["policies"] == [policy] and group["metadata"] == {}
    assert group["members"] == []


async def test_rules_max_server_per_host(world: World) -> None:
    resp = await world.member.post(
        GROUPS, json={"server_group": {"name": "r", "policy": "anti-affinity", "rules": {"max_server_per_host": "3"}}},
        headers=mv("2.64"),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["server_group"]["rules"] == {"max_server_per_host": 3}
    # A group made with 2.64 rules still reads in the old shape.
    old = (await world.member.get(f"{GROUPS}/{resp.json()['server_group']['id']}", headers=mv("2.63"))).json()
    assert old["server_group"]["policies"] == ["anti-affinity"]


@pytest.mark.parametrize(
    ("version", "body", "needle"),
    [
        ("2.1", {"name": "x", "policies": ["soft-affinity"]}, "'soft-affinity' is not one of"),
        ("2.1", {"name": "x", "policies": ["affinity", "anti-affinity"]}, "policies"),
        ("2.1", {"name": "x", "policies": []}, "policies"),
        ("2.1", {"name": "x"}, "'policies' is a required property"),
        ("2.1", {"policies": ["affinity"]}, "'name' is a required property"),
        ("2.15", {"name": "x", "policies": ["affinity"], "metadata": {}}, "Additional properties"),
        ("2.15", {"name": " x", "policies": ["affinity"]}, "name"),
        ("2.64", {"name": "x", "policy": "affinity", "policies": ["affinity"]}, "Additional properties"),
        ("2.64", {"name": "x", "policies": ["affinity"]}, "'policy' is a required property"),
        ("2.64", {"name": "x", "policy": "best-effort"}, "policy"),
        ("2.64", {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}, "Only anti-affinity"),
        ("2.64", {"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}, "max_server_per_host"),
        ("2.64", {"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": "a"}}, "max_server_per_host"),
        ("2.64", {"name": "x", "policy": "anti-affinity", "rules": {"other": 1}}, "Additional properties"),
        ("2.64", {"name": "x" * 256, "policy": "affinity"}, "name"),
    ],
)
async def test_bad_bodies_are_400_in_nova_format(world: World, version: str, body: JSON, needle: str) -> None:
    resp = await world.member.post(GROUPS, json={"server_group": body}, headers=mv(version))
    assert resp.status_code == 400, resp.text
    name, code, message = fault_of(resp)
    assert (name, code) == ("badRequest", 400) and needle in message, message


async def test_unknown_query_parameters_rejected_from_275(world: World) -> None:
    assert (await world.member.get(GROUPS, params={"foo": "1"}, headers=mv("2.74"))).status_code == 200
    resp = await world.member.get(GROUPS, params={"foo": "1"}, headers=mv("2.75"))
    assert resp.status_code == 400 and "foo" in fault_of(resp)[2]
    resp = await world.member.get(GROUPS, params={"limit": "-1"})
    assert resp.status_code == 400


# --- isolation, listing, delete ---------------------------------------------------------------

async def test_other_projects_groups_are_hidden(world: World) -> None:
    mine = await create_group(world.member)
    theirs = await create_group(world.other, name="theirs")
    assert (await world.other.get(f"{GROUPS}/{mine['id']}")).status_code == 404
    assert (await world.other.delete(f"{GROUPS}/{mine['id']}")).status_code == 404
    assert fault_of(await world.member.get(f"{GROUPS}/{theirs['id']}"))[0] == "itemNotFound"
    own = {g["id"] for g in (await world.member.get(GROUPS, params={"all_projects": "True"})).json()["server_groups"]}
    assert own == {mine["id"]}  # a non-admin's all_projects still lists only their own, as in Nova
    every = (await world.admin.get(GROUPS, params={"all_projects": "1"})).json()["server_groups"]
    assert {mine["id"], theirs["id"]} <= {g["id"] for g in every}
    assert (await world.admin.get(f"{GROUPS}/{mine['id']}")).status_code == 200
    # Readers may look but not create.
    assert (await world.reader.get(f"{GROUPS}/{mine['id']}")).status_code == 200
    resp = await world.reader.post(GROUPS, json={"server_group": {"name": "r", "policies": ["affinity"]}})
    assert resp.status_code == 403


async def test_limit_and_offset(world: World) -> None:
    made = [(await create_group(world.member, name=f"g{i}"))["id"] for i in range(4)]
    page = (await world.member.get(GROUPS, params={"limit": "2", "offset": "1"})).json()["server_groups"]
    assert [g["id"] for g in page] == made[1:3]
    assert len((await world.member.get(GROUPS, params={"offset": "3"})).json()["server_groups"]) == 1


async def test_delete_group_leaves_servers(world: World) -> None:
    group = await create_group(world.member, "anti-affinity")
    [sid] = await boot(world, group["id"])
    await wait_status(world.member, sid, "ACTIVE")
    resp = await world.member.delete(f"{GROUPS}/{group['id']}")
    assert resp.status_code == 204 and resp.content == b""
    assert (await world.member.get(f"{GROUPS}/{group['id']}")).status_code == 404
    server = await wait_status(world.member, sid, "ACTIVE", version="2.71")
    assert server["server_groups"] == []


# --- quotas ------------------------------------------------------------------------------------

async def _set_quota(world: World, **values: int) -> None:
    """The project's limits, as `openstack quota set` leaves them (the test project is not in Keystone)."""
    async with world.cloud.db.write() as conn:
        await QuotaEngine(world.cloud.conf).set_limits(conn, world.project_id, values)


async def test_server_groups_quota_and_limits(world: World) -> None:
    await _set_quota(world, server_groups=2)
    for i in range(2):
        await create_group(world.member, name=f"q{i}")
    resp = await world.member.post(GROUPS, json={"server_group": {"name": "over", "policies": ["affinity"]}})
    assert resp.status_code == 403 and fault_of(resp)[2] == "Quota exceeded, too many server groups."
    absolute = (await world.member.get(f"{API}/limits")).json()["limits"]["absolute"]
    assert absolute["maxServerGroups"] == 2 and absolute["totalServerGroupsUsed"] == 2
    detail = (await world.member.get(f"{API}/os-quota-sets/{world.project_id}/detail")).json()["quota_set"]
    assert detail["server_groups"]["in_use"] == 2


async def test_server_group_members_quota(world: World) -> None:
    await _set_quota(world, server_group_members=2)
    group = await create_group(world.member, "soft-affinity")
    await boot(world, group["id"], count=2)
    body: JSON = {
        "server": {"name": "over", "imageRef": world.image_id, "flavorRef": NANO},
        "os:scheduler_hints": {"group": group["id"]},
    }
    resp = await world.member.post(f"{API}/servers", json=body)
    assert resp.status_code == 403 and fault_of(resp)[2] == "Quota exceeded, too many servers in group"
    # The refused create left nothing behind.
    shown = (await world.member.get(f"{GROUPS}/{group['id']}")).json()["server_group"]
    assert len(shown["members"]) == 2
    servers = (await world.member.get(f"{API}/servers")).json()["servers"]
    assert len(servers) == 2


async def test_unknown_group_hint_is_400(world: World) -> None:
    theirs = await create_group(world.other)
    for hint in ("6d5fa5b4-6f0c-4bd2-8a0b-3a39b1f8a1a1", theirs["id"]):
        body: JSON = {
            "server": {"name": "x", "imageRef": world.image_id, "flavorRef": NANO},
            "os:scheduler_hints": {"group": hint},
        }
        resp = await world.member.post(f"{API}/servers", json=body)
        assert resp.status_code == 400, resp.text
        assert fault_of(resp)[2] == f"Instance group {hint} could not be found."
    resp = await world.member.post(
        f"{API}/servers",
        json={"server": {"name": "x", "imageRef": world.image_id, "flavorRef": NANO}, "os:scheduler_hints": {"group": "nope"}},
    )
    assert resp.status_code == 400


# --- membership and placement --------------------------------------------------------------------

async def test_members_and_server_groups_field(world: World) -> None:
    group = await create_group(world.member, "anti-affinity")
    uuids = await boot(world, group["id"], count=2)
    servers = await settle(world, uuids)
    assert {s["status"] for s in servers.values()} == {"ACTIVE"}
    shown = (await world.member.get(f"{GROUPS}/{group['id']}")).json()["server_group"]
    assert sorted(shown["members"]) == sorted(uuids)
    # server_groups appears from 2.71 in show (and update), not in detail.
    body = (await world.member.get(f"{API}/servers/{uuids[0]}", headers=mv("2.71"))).json()["server"]
    assert body["server_groups"] == [group["id"]]
    check({"server": body}, nova.schema("server", "2.71"))
    assert "server_groups" not in (await world.member.get(f"{API}/servers/{uuids[0]}", headers=mv("2.70"))).json()["server"]
    detail = (await world.member.get(f"{API}/servers/detail", headers=mv("2.79"))).json()["servers"]
    assert all("server_groups" not in s for s in detail)
    put = await world.member.put(f"{API}/servers/{uuids[0]}", json={"server": {"name": "n"}}, headers=mv("2.75"))
    assert put.json()["server"]["server_groups"] == [group["id"]]
    # Deleting a server ends its membership.
    assert (await world.member.delete(f"{API}/servers/{uuids[0]}")).status_code == 204
    await wait_gone(world.member, uuids[0])
    shown = (await world.member.get(f"{GROUPS}/{group['id']}")).json()["server_group"]
    assert shown["members"] == [uuids[1]]


async def test_anti_affinity_spreads_then_refuses(world: World) -> None:
    hosts = await host_count(world)
    assert hosts >= 2
    group = await create_group(world.member, "anti-affinity")
    uuids = [u for _ in range(hosts) for u in await boot(world, group["id"])]
    placed = await settle(world, uuids)
    assert {s["status"] for s in placed.values()} == {"ACTIVE"}
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in placed.values()}) == hosts
    [extra] = await boot(world, group["id"])
    failed = (await settle(world, [extra]))[extra]
    assert failed["status"] == "ERROR"
    message = failed["fault"]["message"]
    assert message.startswith("No valid host was found.") and "ServerGroupAntiAffinityFilter removed" in message


async def test_concurrent_anti_affinity_builds_never_share_a_host(world: World) -> None:
    """All at once (one multi-create and single creates side by side): the late check keeps one
    member per host, and every refused build says why."""
    hosts = await host_count(world)
    group = await create_group(world.member, "anti-affinity")
    batches = await asyncio.gather(boot(world, group["id"], count=2), *(boot(world, group["id"]) for _ in range(hosts)))
    uuids = [u for b in batches for u in b]
    placed = await settle(world, uuids)
    active = [s for s in placed.values() if s["status"] == "ACTIVE"]
    assert len(active) == hosts
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in active}) == hosts
    for s in placed.values():
        if s["status"] == "ERROR":
            assert s["fault"]["message"].startswith("No valid host was found."), s["fault"]


async def test_max_server_per_host(world: World) -> None:
    hosts = await host_count(world)
    group = await create_group(world.member, "anti-affinity", max_server_per_host=2)
    uuids = await boot(world, group["id"], count=2 * hosts)
    placed = await settle(world, uuids)
    assert {s["status"] for s in placed.values()} == {"ACTIVE"}
    assert set(Counter(s["OS-EXT-SRV-ATTR:host"] for s in placed.values()).values()) == {2}
    [extra] = await boot(world, group["id"])
    assert (await settle(world, [extra]))[extra]["status"] == "ERROR"


@pytest.mark.parametrize("policy", ["affinity", "soft-affinity"])
async def test_affinity_keeps_members_together(world: World, policy: str) -> None:
    group = await create_group(world.member, policy)
    first = await boot(world, group["id"])
    rest = await asyncio.gather(*(boot(world, group["id"]) for _ in range(3)))
    placed = await settle(world, first + [u for b in rest for u in b])
    assert {s["status"] for s in placed.values()} == {"ACTIVE"}
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in placed.values()}) == 1


async def test_soft_anti_affinity_spreads_but_never_refuses(world: World) -> None:
    hosts = await host_count(world)
    group = await create_group(world.member, "soft-anti-affinity")
    uuids = [u for _ in range(hosts + 1) for u in await boot(world, group["id"])]
    placed = await settle(world, uuids)
    assert {s["status"] for s in placed.values()} == {"ACTIVE"}
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in placed.values()}) == hosts


# The API reference's own samples (doc/api_samples/os-server-groups) fit the reference shapes used above.
_SAMPLE_21 = {"id": "5bbcc3c4-1da2-4437-a48a-66f15b1b13f9", "name": "test", "policies": ["anti-affinity"],
              "members": [], "metadata": {}}
_SAMPLE_213 = {**_SAMPLE_21, "project_id": "6f70656e737461636b20342065766572", "user_id": "fake"}
_SAMPLE_264 = {"id": "5bbcc3c4-1da2-4437-a48a-66f15b1b13f9", "name": "test", "policy": "anti-affinity",
               "rules": {"max_server_per_host": 3}, "members": [],
               "project_id": "6f70656e737461636b20342065766572", "user_id": "fake"}


@pytest.mark.parametrize(("version", "sample"), [("2.1", _SAMPLE_21), ("2.13", _SAMPLE_213), ("2.64", _SAMPLE_264)])
def test_reference_samples_fit_the_reference_shapes(version: str, sample: JSON) -> None:
    check({"server_group": sample}, nova.schema("server_group", version))
    check({"server_groups": [sample]}, nova.schema("server_groups", version))
    wrong = "2.64" if version != "2.64" else "2.63"
    with pytest.raises(AssertionError):
        check({"server_group": sample}, nova.schema("server_group", wrong))


async def test_group_hint_as_a_list_and_rebuild_view(world: World) -> None:
    group = await create_group(world.member, "affinity")
    body: JSON = {
        "server": {"name": "listed", "imageRef": world.image_id, "flavorRef": NANO},
        "os:scheduler_hints": {"group": [group["id"]]},
    }
    resp = await world.member.post(f"{API}/servers", json=body)
    assert resp.status_code == 202, resp.text
    sid = resp.json()["server"]["id"]
    await wait_status(world.member, sid, "ACTIVE")
    rebuilt = await world.action(sid, {"rebuild": {"imageRef": world.image_id}}, version="2.71")
    assert rebuilt.status_code == 202 and rebuilt.json()["server"]["server_groups"] == [group["id"]]
    two = {**body, "os:scheduler_hints": {"group": [group["id"], group["id"]]}}
    resp = await world.member.post(f"{API}/servers", json=two)
    assert resp.status_code == 400 and "Only one server group" in fault_of(resp)[2]
