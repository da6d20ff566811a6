"""Per-user quotas bind: server creates (also in parallel), key pairs and server groups check the
user's own limits beside the project's, against the in-process cloud (fake driver)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    NANO,
    TINY,
    World,
    fault_of,
    make_ctx,
    make_world,
    settings,
    wait_status,
)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def user_client(world: World, user_id: str) -> httpx.AsyncClient:
    return world.as_ctx(make_ctx(world.project_id, "member", user_id=user_id))


async def set_quota(world: World, quota: dict[str, Any], user_id: str | None = None) -> None:
    admin = world.as_ctx(make_ctx(world.project_id, "admin"))
    query = f"?user_id={user_id}" if user_id else ""
    r = await admin.put(f"{API}/os-quota-sets/{world.project_id}{query}", json={"quota_set": quota})
    assert r.status_code == 200, r.text


async def boot(world: World, client: httpx.AsyncClient, **extra: Any) -> httpx.Response:
    body = {"server": {"name": "q", "imageRef": world.image_id, "flavorRef": NANO, **extra}}
    return await client.post(f"{API}/servers", json=body)


async def test_create_checks_the_users_limit_below_the_projects(world: World) -> None:
    alice, bob = uuid.uuid4().hex, uuid.uuid4().hex
    await set_quota(world, {"instances": 2}, alice)
    a, b = user_client(world, alice), user_client(world, bob)
    # max_count is cut to the user's headroom, as Nova does with the project's.
    many = await boot(world, a, min_count=1, max_count=5)
    assert many.status_code == 202, many.text
    assert len((await a.get(f"{API}/servers")).json()["servers"]) == 2
    over = await boot(world, a)
    assert over.status_code == 403
    assert fault_of(over) == ("forbidden", 403, "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances")
    # Another user of the project is bound by the project's quota only (10).
    for _ in range(3):
        assert (await boot(world, b)).status_code == 202
    detail = (await a.get(f"{API}/os-quota-sets/{world.project_id}/detail?user_id={alice}")).json()["quota_set"]
    assert detail["instances"] == {"in_use": 2, "limit": 2, "reserved": 0}
    assert (await a.get(f"{API}/os-quota-sets/{world.project_id}/detail")).json()["quota_set"]["instances"]["in_use"] == 5
    # The user's cores limit binds too, and the message names it.
    await set_quota(world, {"instances": 5, "cores": 2}, alice)
    over = await boot(world, a)
    assert fault_of(over) == ("forbidden", 403, "Quota exceeded for cores: Requested 1, but already used 2 of 2 cores")
    # Deleting the user's quotas reverts them to the project's: the user boots again.
    admin = world.as_ctx(make_ctx(world.project_id, "admin"))
    assert (await admin.delete(f"{API}/os-quota-sets/{world.project_id}?user_id={alice}")).status_code == 202
    assert (await boot(world, a)).status_code == 202


async def test_project_quota_still_binds_a_user_with_room(world: World) -> None:
    alice = uuid.uuid4().hex
    await set_quota(world, {"instances": 3})
    await set_quota(world, {"instances": 3}, alice)
    others = user_client(world, uuid.uuid4().hex)
    assert (await boot(world, others, min_count=2, max_count=2)).status_code == 202
    a = user_client(world, alice)
    assert (await boot(world, a)).status_code == 202
    over = await boot(world, a)
    assert fault_of(over) == ("forbidden", 403, "Quota exceeded for instances: Requested 1, but already used 3 of 3 instances")


async def test_parallel_creates_respect_the_users_quota(world: World) -> None:
    alice = uuid.uuid4().hex
    await set_quota(world, {"instances": 3}, alice)
    a = user_client(world, alice)
    results = await asyncio.gather(*(boot(world, a) for _ in range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(202) == 3 and codes.count(403) == 9, codes
    assert len((await a.get(f"{API}/servers")).json()["servers"]) == 3


async def test_key_pairs_and_server_groups_use_the_users_limit(world: World) -> None:
    alice = uuid.uuid4().hex
    await set_quota(world, {"key_pairs": 1, "server_groups": 1}, alice)
    a, b = user_client(world, alice), user_client(world, uuid.uuid4().hex)
    assert (await a.post(f"{API}/os-keypairs", json={"keypair": {"name": "k1"}})).status_code == 200
    over = await a.post(f"{API}/os-keypairs", json={"keypair": {"name": "k2"}})
    assert over.status_code == 403 and "Quota exceeded, too many key pairs." in over.text
    assert (await b.post(f"{API}/os-keypairs", json={"keypair": {"name": "k2"}})).status_code == 200
    group = {"server_group": {"name": "g", "policies": ["affinity"]}}
    assert (await a.post(f"{API}/os-server-groups", json=group)).status_code == 200
    assert (await a.post(f"{API}/os-server-groups", json=group)).status_code == 403
    assert (await b.post(f"{API}/os-server-groups", json=group)).status_code == 200


async def test_resize_checks_the_owners_limit(world: World) -> None:
    alice = uuid.uuid4().hex
    await set_quota(world, {"ram": 256}, alice)
    a = user_client(world, alice)
    resp = await boot(world, a)
    assert resp.status_code == 202
    sid = resp.json()["server"]["id"]
    await wait_status(a, sid, "ACTIVE")
    over = await a.post(f"{API}/servers/{sid}/action", json={"resize": {"flavorRef": TINY}})
    assert fault_of(over) == ("forbidden", 403, "Quota exceeded for ram: Requested 448, but already used 64 of 256 ram")
    await set_quota(world, {"ram": 1024}, alice)
    assert (await a.post(f"{API}/servers/{sid}/action", json={"resize": {"flavorRef": TINY}})).status_code == 202


async def test_server_group_members_uses_the_users_limit(world: World) -> None:
    alice = uuid.uuid4().hex
    await set_quota(world, {"server_group_members": 1}, alice)
    a, b = user_client(world, alice), user_client(world, uuid.uuid4().hex)
    group = (await a.post(f"{API}/os-server-groups", json={"server_group": {"name": "g", "policies": ["affinity"]}})).json()
    hint = {"os:scheduler_hints": {"group": group["server_group"]["id"]}}
    body = {"server": {"name": "m", "imageRef": world.image_id, "flavorRef": NANO}, **hint}
    assert (await a.post(f"{API}/servers", json=body)).status_code == 202
    over = await a.post(f"{API}/servers", json=body)
    assert fault_of(over) == ("forbidden", 403, "Quota exceeded, too many servers in group")
    assert (await b.post(f"{API}/servers", json=body)).status_code == 202  # the project's limit (10) for others
