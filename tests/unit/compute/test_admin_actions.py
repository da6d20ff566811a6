"""Admin server actions: os-resetState, injectNetworkInfo and migrate (policy, bad input, 404s,
state changes, instance actions), and what a reset to ERROR allows: list by status, rebuild, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servers_support import API, World, fault_of, make_world, mv, upload_image, wait_gone, wait_status

from cumulo import conf as conf_mod

MISSING = "8c1a3b52-3f83-4bd0-9c1d-3f1f1d9f0a11"


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> conf_mod.Settings:
    # One host unless a test is parametrized with more (fake_hosts): migrate needs a second one to find.
    callspec = getattr(request.node, "callspec", None)
    return conf_mod.load(
        env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0, local_driver="fake",
        fake_hosts=callspec.params.get("fake_hosts", 0) if callspec else 0,
    )


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def _actions(world: World, sid: str) -> list[str]:
    body = (await world.admin.get(f"{API}/servers/{sid}/os-instance-actions")).json()
    return [a["action"] for a in body["instanceActions"]]


async def test_reset_state_error_then_active(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(sid, {"os-resetState": {"state": "error"}}, world.admin)
    assert resp.status_code == 202, resp.text
    body = (await world.reader.get(f"{API}/servers/{sid}")).json()["server"]
    assert body["status"] == "ERROR" and body["OS-EXT-STS:vm_state"] == "error"
    assert body["OS-EXT-STS:task_state"] is None
    listed = (await world.member.get(f"{API}/servers?status=error")).json()["servers"]
    assert [s["id"] for s in listed] == [sid]
    assert (await world.member.get(f"{API}/servers?status=ACTIVE")).json()["servers"] == []
    resp = await world.action(sid, {"os-resetState": {"state": "active"}}, world.admin)
    assert resp.status_code == 202, resp.text
    body = (await world.reader.get(f"{API}/servers/{sid}")).json()["server"]
    assert body["status"] == "ACTIVE"
    assert (await _actions(world, sid))[:2] == ["resetState", "resetState"]


async def test_reset_state_clears_a_stuck_task(world: World, cloud: Any) -> None:
    from cumulo.compute import instances as inst_db

    sid = (await world.active())["id"]
    async with cloud.db.write() as conn:
        await inst_db.cas_update(conn, sid, {"task_state": "rebooting"})
    assert (await world.reader.get(f"{API}/servers/{sid}")).json()["server"]["status"] == "REBOOT"
    assert (await world.action(sid, {"os-resetState": {"state": "active"}}, world.admin)).status_code == 202
    body = (await world.reader.get(f"{API}/servers/{sid}")).json()["server"]
    assert body["status"] == "ACTIVE" and body["OS-EXT-STS:task_state"] is None


async def test_reset_state_policy_and_bad_input(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(sid, {"os-resetState": {"state": "error"}})
    assert resp.status_code == 403 and fault_of(resp)[0] == "forbidden"
    for bad in ({"state": "deleted"}, {}, {"state": "error", "x": 1}, "error", None):
        resp = await world.action(sid, {"os-resetState": bad}, world.admin)
        assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest", bad
    resp = await world.action(MISSING, {"os-resetState": {"state": "error"}}, world.admin)
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"
    assert (await world.reader.get(f"{API}/servers/{sid}")).json()["server"]["status"] == "ACTIVE"


async def test_error_server_rebuilds_and_deletes(world: World) -> None:
    sid = (await world.active())["id"]
    alt = await upload_image(world.member, "alt-image")
    assert (await world.action(sid, {"os-resetState": {"state": "error"}}, world.admin)).status_code == 202
    resp = await world.action(sid, {"rebuild": {"imageRef": alt}})
    assert resp.status_code == 202, resp.text
    assert resp.json()["server"]["image"]["id"] == alt
    body = await wait_status(world.member, sid, "ACTIVE")
    assert body["image"]["id"] == alt
    assert (await world.action(sid, {"os-resetState": {"state": "error"}}, world.admin)).status_code == 202
    assert (await world.admin.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)


async def test_inject_network_info(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"injectNetworkInfo": None})).status_code == 403
    resp = await world.action(sid, {"injectNetworkInfo": None}, world.admin)
    assert resp.status_code == 202 and resp.content == b""
    body = (await world.admin.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"][0]
    assert body["action"] == "injectNetworkInfo"
    detail = (await world.admin.get(f"{API}/servers/{sid}/os-instance-actions/{body['request_id']}",
                                    headers=mv("2.51"))).json()["instanceAction"]
    assert [(e["event"], e["result"]) for e in detail["events"]] == [("api_inject_network_info", "Success")]
    assert (await world.reader.get(f"{API}/servers/{sid}")).json()["server"]["status"] == "ACTIVE"
    resp = await world.action(MISSING, {"injectNetworkInfo": None}, world.admin)
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"


async def test_migrate_policy_404_and_no_valid_host(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.action(MISSING, {"migrate": None}, world.admin)
    assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"
    assert (await world.action(sid, {"migrate": None})).status_code == 403
    # One host: the scheduler has nowhere else to put it.
    resp = await world.action(sid, {"migrate": None}, world.admin)
    assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest"
    assert fault_of(resp)[2].startswith("No valid host was found.")
    body = (await world.reader.get(f"{API}/servers/{sid}")).json()["server"]
    assert body["status"] == "ACTIVE" and body["OS-EXT-STS:task_state"] is None
    # 2.56: a target host, validated.
    host = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    resp = await world.action(sid, {"migrate": {"host": host}}, world.admin, version="2.56")
    assert resp.status_code == 400 and fault_of(resp)[2] == "Cannot migrate to the same host."
    resp = await world.action(sid, {"migrate": {"host": "no-such-host"}}, world.admin, version="2.56")
    assert resp.status_code == 400 and fault_of(resp)[2] == "Compute host no-such-host could not be found."
    resp = await world.action(sid, {"migrate": {"host": "bad host!"}}, world.admin, version="2.56")
    assert resp.status_code == 400
    resp = await world.action(sid, {"migrate": {"host": host, "x": 1}}, world.admin, version="2.56")
    assert resp.status_code == 400


async def test_migrate_state_checks(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"suspend": None})).status_code == 202
    await wait_status(world.member, sid, "SUSPENDED")
    resp = await world.action(sid, {"migrate": None}, world.admin)
    assert resp.status_code == 409 and "vm_state suspended" in fault_of(resp)[2]


@pytest.mark.parametrize("fake_hosts", [2])
async def test_migrate_with_another_host_moves_it(world: World, fake_hosts: int) -> None:
    # The whole flow and its failure paths: test_cold_migration.py.
    sid = (await world.active())["id"]
    resp = await world.action(sid, {"migrate": None}, world.admin)
    assert resp.status_code == 202, resp.text
    await wait_status(world.member, sid, "VERIFY_RESIZE")
