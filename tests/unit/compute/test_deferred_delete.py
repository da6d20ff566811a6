"""Deferred delete (reclaim_instance_interval): soft delete, restore, forceDelete, the agent's
reclaim pass, its race with restore, quotas while soft-deleted, and restart recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from servers_support import API, World, fault_of, make_world, mv, wait_gone, wait_status

from cumulo import conf as conf_mod
from cumulo.compute import states as st
from cumulo.compute.agent import reclaim
from cumulo.db import utcnow

INTERVAL = 3600  # long: the periodic pass never runs on its own during a test; tests drive it


@pytest.fixture
def settings(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(
        env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0, fake_hosts=2,
        local_driver="fake", reclaim_instance_interval=INTERVAL,
    )


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _later() -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=INTERVAL + 1)


async def _reclaim_all(cloud: Any, now: dt.datetime | None = None) -> list[str]:
    out: list[str] = []
    for mgr in cloud.managers:
        out += await reclaim.reclaim(mgr.node, now=now or _later())
    return out


async def _row(cloud: Any, uuid: str) -> dict[str, Any]:
    from cumulo.compute import instances as inst_db

    async with cloud.db.read() as conn:
        row = await inst_db.get(conn, uuid, include_deleted=True)
    assert row is not None
    return row


async def _soft_deleted(world: World) -> str:
    sid = (await world.active())["id"]
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    body = await wait_status(world.member, sid, "SOFT_DELETED")
    assert body["OS-EXT-STS:vm_state"] == "soft-delete"
    return str(sid)


async def test_delete_soft_deletes_and_powers_off(world: World, cloud: Any) -> None:
    sid = await _soft_deleted(world)
    body = (await world.member.get(f"{API}/servers/{sid}")).json()["server"]
    assert body["status"] == "SOFT_DELETED" and body["OS-EXT-STS:power_state"] == 4  # SHUTDOWN
    row = await _row(cloud, sid)
    assert row["deleted_at"] is not None and not row["deleted"]
    # Listed with status=SOFT_DELETED; still visible to its project only.
    listed = (await world.member.get(f"{API}/servers/detail?status=SOFT_DELETED")).json()["servers"]
    assert [s["id"] for s in listed] == [sid]
    assert (await world.other.get(f"{API}/servers/{sid}")).status_code == 404
    # A second DELETE changes nothing (the clock does not restart).
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    assert (await _row(cloud, sid))["deleted_at"] == row["deleted_at"]
    actions = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [a["action"] for a in actions] == ["delete", "create"]


async def test_restore_brings_it_back_running(world: World, cloud: Any) -> None:
    sid = await _soft_deleted(world)
    resp = await world.action(sid, {"restore": None})
    assert resp.status_code == 202, resp.text
    body = await wait_status(world.member, sid, "ACTIVE")
    assert body["OS-EXT-STS:power_state"] == 1
    assert (await _row(cloud, sid))["deleted_at"] is None
    # Restored servers are not reclaimed.
    assert await _reclaim_all(cloud) == []
    await wait_status(world.member, sid, "ACTIVE")
    actions = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [a["action"] for a in actions] == ["restore", "delete", "create"]


async def test_restore_needs_soft_deleted(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(sid, {"restore": {}})
    assert resp.status_code == 409
    assert fault_of(resp) == ("conflictingRequest", 409, f"Cannot 'restore' instance {sid} while it is in vm_state active")
    assert (await world.action("7c4a1a55-bd85-4d3b-b5e2-7a5f3fe0a0a1", {"restore": None})).status_code == 404
    assert (await world.action(sid, {"restore": None, "x": 1})).status_code == 400
    # Other projects cannot see it: 404, not 403.
    assert (await world.action(sid, {"restore": None}, client=world.other)).status_code == 404
    assert (await world.action(sid, {"restore": None}, client=world.reader)).status_code == 403


async def test_reclaim_deletes_only_servers_older_than_the_interval(world: World, cloud: Any) -> None:
    sid = await _soft_deleted(world)
    assert await _reclaim_all(cloud, now=utcnow()) == []  # too young
    await wait_status(world.member, sid, "SOFT_DELETED")
    assert await _reclaim_all(cloud) == [sid]
    await wait_gone(world.member, sid)
    assert (await _row(cloud, sid))["vm_state"] == st.DELETED


async def test_restore_after_reclaim_claimed_it_is_409(world: World, cloud: Any) -> None:
    sid = await _soft_deleted(world)
    row = await _row(cloud, sid)
    mgr = next(m for m in cloud.managers if m.node.owns(row))
    assert await reclaim.claim_for_reclaim(mgr.node, sid, _later())
    resp = await world.action(sid, {"restore": None})
    assert resp.status_code == 409
    assert fault_of(resp)[2] == f"Cannot 'restore' instance {sid} while it is in task_state deleting"


async def test_reclaim_after_restore_claimed_it_loses(world: World, cloud: Any) -> None:
    sid = await _soft_deleted(world)
    row = await _row(cloud, sid)
    mgr = next(m for m in cloud.managers if m.node.owns(row))
    assert (await world.action(sid, {"restore": None})).status_code == 202
    assert not await reclaim.claim_for_reclaim(mgr.node, sid, _later())
    await wait_status(world.member, sid, "ACTIVE")


async def test_restore_racing_reclaim_exactly_one_wins(world: World, cloud: Any) -> None:
    for _ in range(3):
        sid = await _soft_deleted(world)
        restored, reclaimed = await asyncio.gather(world.action(sid, {"restore": None}), _reclaim_all(cloud))
        if restored.status_code == 202:
            assert reclaimed == []
            await wait_status(world.member, sid, "ACTIVE")
        else:
            assert restored.status_code == 409, restored.text
            assert reclaimed == [sid]
            await wait_gone(world.member, sid)


async def test_force_delete(world: World, cloud: Any) -> None:
    sid = await _soft_deleted(world)
    assert (await world.action(sid, {"forceDelete": None}, client=world.other)).status_code == 404
    assert (await world.action(sid, {"forceDelete": None})).status_code == 202
    await wait_gone(world.member, sid)
    # Any vm_state with no task in flight: an ACTIVE server goes at once too.
    sid2 = (await world.active())["id"]
    assert (await world.action(sid2, {"forceDelete": {}})).status_code == 202
    await wait_gone(world.member, sid2)
    assert (await world.action(sid2, {"forceDelete": None})).status_code == 404


async def test_force_delete_respects_lock_and_task(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"lock": None})).status_code == 202
    resp = await world.action(sid, {"forceDelete": None})
    assert resp.status_code == 409 and fault_of(resp)[2] == f"Instance {sid} is locked"
    assert (await world.action(sid, {"unlock": None})).status_code == 202
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    resp = await world.action(sid, {"forceDelete": None})
    # Either still powering off (409 naming the task) or already stopped (202).
    assert resp.status_code in (202, 409), resp.text
    if resp.status_code == 409:
        assert "task_state powering-off" in fault_of(resp)[2]


async def test_never_launched_server_is_deleted_at_once(world: World, cloud: Any) -> None:
    # A server that never launched is not soft-deleted (Nova falls back to a real delete).
    sid = (await world.create("fresh"))["id"]
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)


async def test_soft_deleted_servers_leave_the_quota_and_restore_rechecks(world: World, cloud: Any) -> None:
    project = world.project_id
    async with cloud.db.write() as conn:
        await cloud.services.compute.quotas.set_limits(conn, project, {"instances": 1})
    sid = await _soft_deleted(world)
    usage = (await world.member.get(f"{API}/limits")).json()["limits"]["absolute"]
    assert usage["totalInstancesUsed"] == 0
    # The freed slot can be taken; then the restore no longer fits: 403, and nothing changes.
    other = (await world.active("second"))["id"]
    resp = await world.action(sid, {"restore": None})
    assert resp.status_code == 403, resp.text
    assert fault_of(resp)[0] == "forbidden" and "instances" in fault_of(resp)[2]
    await wait_status(world.member, sid, "SOFT_DELETED")
    assert (await world.action(other, {"forceDelete": None})).status_code == 202
    await wait_gone(world.member, other)
    assert (await world.action(sid, {"restore": None})).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")


async def test_interrupted_soft_delete_and_restore_finish_on_restart(world: World, cloud: Any) -> None:
    from cumulo.compute import instances as inst_db
    from cumulo.compute.agent import reconcile

    sid = (await world.active())["id"]
    row = await _row(cloud, sid)
    mgr = next(m for m in cloud.managers if m.node.owns(row))
    async with cloud.db.write() as conn:
        await inst_db.cas_update(conn, sid, {"task_state": st.SOFT_DELETING, "deleted_at": utcnow()})
    await reconcile.reconcile_host(mgr.node)
    await wait_status(world.member, sid, "SOFT_DELETED")
    async with cloud.db.write() as conn:
        await inst_db.cas_update(conn, sid, {"task_state": st.RESTORING, "deleted_at": None})
    await reconcile.reconcile_host(mgr.node)
    await wait_status(world.member, sid, "ACTIVE")


def test_the_setting_defaults_to_immediate_delete(tmp_path: Path) -> None:
    assert conf_mod.Settings().reclaim_instance_interval == 0
    env = {"CUMULO_RECLAIM_INSTANCE_INTERVAL": "90"}
    assert conf_mod.load(env=env, state_dir=tmp_path).reclaim_instance_interval == 90


async def test_old_microversions_see_the_same_state(world: World) -> None:
    sid = await _soft_deleted(world)
    body = (await world.member.get(f"{API}/servers/{sid}", headers=mv("2.1"))).json()["server"]
    assert body["status"] == "SOFT_DELETED"
