"""os-quota-sets with ?user_id=: Nova's per-user quotas (shapes per microversion, defaults from the
project, the settable range, force, delete, policy and bad input)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from resources_app import Harness, check, ctx, make_harness, nova

from cumulo.compute.models import instances, project_user_quotas

ADMIN = ctx("admin-proj", "admin")
MEMBER = ctx("proj-a", "member")  # user "user-proj-a"
OTHER = ctx("proj-b", "member")
Q = "/os-quota-sets/proj-a"
ALICE = "user-proj-a"
BOB = "bob"


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path) as h:
        yield h


async def put(h: Harness, quota: dict[str, object], user: str | None = None, version: str | None = None, path: str = Q) -> tuple[int, dict[str, object]]:
    r = await h.call(ADMIN, "PUT", f"{path}?user_id={user}" if user else path, version, json={"quota_set": quota})
    return r.status_code, r.json()


async def shown(h: Harness, user: str | None = None, who: object = ADMIN) -> dict[str, int]:
    r = await h.call(who, "GET", f"{Q}?user_id={user}" if user else Q)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    body: dict[str, int] = r.json()["quota_set"]
    return body


async def add_for(h: Harness, user: str, **kw: int) -> None:
    iid = await h.add_instance("proj-a", **kw)
    async with h.db.write() as conn:
        await conn.execute(sa.update(instances).where(instances.c.uuid == iid).values(user_id=user))


@pytest.mark.parametrize("version", ["2.1", "2.35", "2.36", "2.56", "2.57", "2.75", "2.79"])
async def test_user_quota_shapes_and_values(harness: Harness, version: str) -> None:
    """Tempest's _get_updated_quotas, checked against the reference schemas of each microversion."""
    code, _ = await put(harness, {"ram": "5120"}, version=version)
    assert code == 200
    code, upd = await put(harness, {"ram": "2048"}, user=ALICE, version=version)
    assert code == 200, upd
    check(upd, nova.schema("quota_set_update", version), f"user update {version}")
    assert upd["quota_set"]["ram"] == 2048  # type: ignore[index]
    r = await harness.call(ADMIN, "GET", f"{Q}?user_id={ALICE}", version)
    check(r.json(), nova.schema("quota_set", version), f"user show {version}")
    body = r.json()["quota_set"]
    assert body["id"] == "proj-a" and body["ram"] == 2048 and body["instances"] == 10
    assert ("floating_ips" in body) == (version < "2.36") and ("injected_files" in body) == (version < "2.57")
    await harness.add_instance("proj-a", vcpus=2, ram=1024)  # ALICE's
    await add_for(harness, BOB, vcpus=4, ram=512)
    d = await harness.call(ADMIN, "GET", f"{Q}/detail?user_id={ALICE}", version)
    check(d.json(), nova.schema("quota_set_detail", version), f"user detail {version}")
    detail = d.json()["quota_set"]
    assert detail["ram"] == {"in_use": 1024, "limit": 2048, "reserved": 0}
    assert detail["cores"] == {"in_use": 2, "limit": 20, "reserved": 0}
    project = (await harness.call(ADMIN, "GET", f"{Q}/detail", version)).json()["quota_set"]
    assert project["ram"] == {"in_use": 1536, "limit": 5120, "reserved": 0}


async def test_user_limits_default_to_the_project_and_delete_reverts(harness: Harness) -> None:
    assert (await shown(harness, ALICE))["instances"] == 10
    await put(harness, {"instances": 6, "key_pairs": 50})
    assert (await shown(harness, ALICE))["instances"] == 6  # the project's, while the user has none
    code, body = await put(harness, {"instances": 3}, user=ALICE)
    assert code == 200 and "id" not in body["quota_set"]  # type: ignore[operator]
    alice = await shown(harness, ALICE)
    assert (alice["instances"], alice["key_pairs"]) == (3, 50)
    assert (await shown(harness))["instances"] == 6 and (await shown(harness, BOB))["instances"] == 6
    await put(harness, {"instances": 8})
    assert (await shown(harness, ALICE))["instances"] == 3  # the user's own limit stays
    assert (await harness.call(ADMIN, "DELETE", f"{Q}?user_id={ALICE}")).status_code == 202
    assert (await shown(harness, ALICE))["instances"] == 8  # reverted to the project's
    assert (await shown(harness))["instances"] == 8  # the project's untouched


async def test_project_delete_drops_its_users_limits(harness: Harness) -> None:
    await put(harness, {"cores": 4}, user=ALICE)
    await put(harness, {"cores": 4}, user=ALICE, path="/os-quota-sets/proj-b")
    assert (await harness.call(ADMIN, "DELETE", Q)).status_code == 202
    assert (await shown(harness, ALICE))["cores"] == 20
    async with harness.db.read() as conn:
        left = (await conn.execute(sa.select(project_user_quotas.c.project_id))).scalars().all()
    assert left == ["proj-b"]


async def test_user_limit_stays_within_the_project_unless_forced(harness: Harness) -> None:
    await put(harness, {"ram": 5120})
    code, body = await put(harness, {"ram": 6000}, user=ALICE)
    assert code == 400
    assert body["badRequest"]["message"] == "Quota limit 6000 for ram must be less than or equal to 5120."  # type: ignore[index]
    code, body = await put(harness, {"ram": -1}, user=ALICE)
    assert code == 400 and "less than or equal to 5120" in body["badRequest"]["message"]  # type: ignore[index]
    # The users' limits share the project's: with ALICE at 3072, BOB may have at most 2048.
    assert (await put(harness, {"ram": 3072}, user=ALICE))[0] == 200
    code, body = await put(harness, {"ram": 2049}, user=BOB)
    assert code == 400 and body["badRequest"]["message"] == "Quota limit 2049 for ram must be less than or equal to 2048."  # type: ignore[index]
    assert (await put(harness, {"ram": 2048}, user=BOB))[0] == 200
    assert (await put(harness, {"ram": 5120}, user=ALICE))[0] == 400
    assert (await put(harness, {"ram": 3000}, user=ALICE))[0] == 200  # lowering one's own always fits
    # Nor may the project's limit fall below the sum of its users' limits.
    code, body = await put(harness, {"ram": 4000})
    assert code == 400
    assert body["badRequest"]["message"] == (  # type: ignore[index]
        "Quota limit 4000 for ram must be greater than or equal to already used and reserved 5048."
    )
    forced = await put(harness, {"ram": 9000, "force": "True"}, user=BOB)
    assert forced[0] == 200 and forced[1]["quota_set"]["ram"] == 9000  # type: ignore[index]
    assert (await shown(harness))["ram"] == 5120
    # An unlimited project leaves the users' limits unbounded above.
    await put(harness, {"cores": -1, "force": True})
    assert (await put(harness, {"cores": 1000}, user=ALICE))[0] == 200
    assert (await put(harness, {"cores": -1}, user=BOB))[0] == 200


async def test_user_limit_not_below_the_users_usage(harness: Harness) -> None:
    for _ in range(3):
        await harness.add_instance("proj-a")
    await add_for(harness, BOB)
    code, body = await put(harness, {"instances": 2}, user=ALICE)
    assert code == 400
    assert body["badRequest"]["message"] == (  # type: ignore[index]
        "Quota limit 2 for instances must be greater than or equal to already used and reserved 3."
    )
    assert (await put(harness, {"instances": 1}, user=BOB))[0] == 200  # counts only BOB's servers
    assert (await put(harness, {"instances": 2, "force": True}, user=ALICE))[0] == 200


async def test_per_project_resources_go_to_the_project(harness: Harness) -> None:
    # Nova keeps fixed_ips/floating_ips per project: a per-user update sets the project's.
    code, body = await put(harness, {"floating_ips": 7, "instances": 4, "force": True}, user=ALICE, version="2.35")
    assert code == 200 and body["quota_set"]["floating_ips"] == 7  # type: ignore[index]
    project = (await harness.call(ADMIN, "GET", Q, "2.35")).json()["quota_set"]
    assert (project["floating_ips"], project["instances"]) == (7, 10)


async def test_user_quota_policy(harness: Harness) -> None:
    # The project's own members read its users' quotas (Nova's show/detail policy); only admins write.
    assert (await shown(harness, BOB, who=MEMBER))["instances"] == 10
    assert (await harness.call(MEMBER, "GET", f"{Q}/detail?user_id={BOB}")).status_code == 200
    r = await harness.call(MEMBER, "PUT", f"{Q}?user_id={ALICE}", json={"quota_set": {"instances": 50}})
    assert r.status_code == 403 and set(r.json()) == {"forbidden"}
    assert (await harness.call(MEMBER, "DELETE", f"{Q}?user_id={ALICE}")).status_code == 403
    assert (await harness.call(OTHER, "GET", f"{Q}?user_id={ALICE}")).status_code == 403
    assert (await harness.call(OTHER, "GET", f"{Q}/detail?user_id={ALICE}")).status_code == 403
    ghost = await harness.call(ADMIN, "PUT", "/os-quota-sets/ghost?user_id=x", json={"quota_set": {"instances": 1}})
    assert ghost.status_code == 400 and ghost.json()["badRequest"]["message"] == "Project ID ghost is not a valid project."


@pytest.mark.parametrize(
    ("version", "query", "body"),
    [
        ("2.1", f"user_id={ALICE}", {"quota_set": {"instances": -2}}),
        ("2.1", f"user_id={ALICE}", {"quota_set": {"bogus": 1}}),
        ("2.1", f"user_id={ALICE}", {"quota_set": {"instances": 1, "force": "sometimes"}}),
        ("2.36", f"user_id={ALICE}", {"quota_set": {"floating_ips": 1}}),
        ("2.57", f"user_id={ALICE}", {"quota_set": {"injected_files": 1}}),
        ("2.1", "user_id=" + "u" * 256, {"quota_set": {"instances": 1}}),
        ("2.75", f"user_id={ALICE}&project=x", {"quota_set": {"instances": 1}}),
    ],
)
async def test_user_quota_update_rejects_bad_input(harness: Harness, version: str, query: str, body: dict[str, object]) -> None:
    r = await harness.call(ADMIN, "PUT", f"{Q}?{query}", version, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["badRequest"]["code"] == 400
    assert (await shown(harness, ALICE))["instances"] == 10  # nothing stored


async def test_blank_user_id_is_the_project(harness: Harness) -> None:
    # Nova reads the first non-blank user_id; a blank one means the project itself.
    assert (await put(harness, {"instances": 4}, user=""))[0] == 200
    assert (await shown(harness))["instances"] == 4
    r = await harness.call(ADMIN, "GET", f"{Q}?user_id=&user_id={BOB}")
    assert r.json()["quota_set"]["instances"] == 4
    await put(harness, {"instances": 2}, user=BOB)
    assert (await harness.call(ADMIN, "GET", f"{Q}?user_id=&user_id={BOB}")).json()["quota_set"]["instances"] == 2
