"""os-migrateLive and /servers/{id}/migrations over the fake driver (three hosts in one cloud): the
state machine, the migration record and its statuses, the placement allocations that move, Nova's
pre-checks (400/409), a failing move (the server stays on its source), abort and force_complete.
The real move of a QEMU guest is tests/contract/test_qemu_live_migration.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from servers_support import API, World, fault_of, make_world, mv, settings, wait_status  # noqa: F401

from cumulo.compute.drivers.fake import FakeDriver
from cumulo.compute.models import migrations
from cumulo.placement.models import allocations, resource_providers


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _drivers(cloud: Any) -> dict[str, FakeDriver]:
    return {m.host: m.driver for m in cloud.managers}


async def _host(world: World, sid: str) -> str:
    return str((await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:host"])


async def _record(cloud: Any, sid: str) -> dict[str, Any]:
    async with cloud.db.read() as conn:
        row = (await conn.execute(sa.select(migrations).where(migrations.c.instance_uuid == sid)
                                  .order_by(migrations.c.id.desc()))).mappings().first()
    assert row is not None
    return dict(row)


async def _allocations(cloud: Any, consumer: str) -> set[str]:
    async with cloud.db.read() as conn:
        rows = await conn.execute(
            sa.select(resource_providers.c.name).join(resource_providers, resource_providers.c.id == allocations.c.provider_id)
            .where(allocations.c.consumer_id == consumer))
        return {r[0] for r in rows}


async def _wait_record(cloud: Any, sid: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rec = await _record(cloud, sid)
        if rec["status"] in statuses:
            return rec
        assert loop.time() < deadline, f"record stays {rec['status']}, not one of {statuses}"
        await asyncio.sleep(0.05)


async def _live(world: World, sid: str, body: dict[str, Any], version: str = "2.30") -> Any:
    return await world.action(sid, {"os-migrateLive": body}, client=world.admin, version=version)


async def test_live_migration_moves_the_server_and_its_allocation(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    source = await _host(world, sid)
    resp = await _live(world, sid, {"host": None, "block_migration": "auto"}, "2.25")
    assert resp.status_code == 202, resp.text
    await _wait_record(cloud, sid, {"completed", "error"})
    body = await wait_status(world.member, sid, "ACTIVE")
    dest = await _host(world, sid)
    assert dest != source
    drivers = _drivers(cloud)
    assert sid in drivers[dest]._instances and sid not in drivers[source]._instances
    rec = await _record(cloud, sid)
    assert (rec["status"], rec["migration_type"], rec["source_compute"], rec["dest_compute"]) == (
        "completed", "live-migration", source, dest)
    assert rec["downtime_ms"] is not None and rec["memory_total"] == 1 << 30
    assert await _allocations(cloud, sid) == {dest} and await _allocations(cloud, rec["uuid"]) == set()
    assert body["status"] == "ACTIVE"
    listed = (await world.admin.get(f"{API}/os-migrations?migration_type=live-migration", headers=mv("2.23"))).json()
    assert [m["status"] for m in listed["migrations"]] == ["completed"]
    actions = (await world.admin.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert actions[0]["action"] == "live-migration"
    # Nothing in progress any more.
    assert (await world.admin.get(f"{API}/servers/{sid}/migrations", headers=mv("2.23"))).json() == {"migrations": []}


async def test_forced_host_and_the_pre_checks(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    source = await _host(world, sid)
    other = next(h for h in _drivers(cloud) if h != source)
    # Nova's checks, each answered before anything changes.
    resp = await world.action(sid, {"os-migrateLive": {"host": other, "block_migration": "auto"}}, version="2.30")
    assert resp.status_code == 403
    resp = await _live(world, sid, {"host": source, "block_migration": "auto"})
    assert resp.status_code == 400 and "current host" in fault_of(resp)[2]
    resp = await _live(world, sid, {"host": "nowhere", "block_migration": "auto"})
    assert resp.status_code == 400 and fault_of(resp)[2] == "Compute host nowhere could not be found."
    resp = await _live(world, sid, {"host": other, "block_migration": False})
    assert resp.status_code == 400 and "shared storage" in fault_of(resp)[2]
    resp = await _live(world, sid, {"host": other, "block_migration": "auto"}, "2.24")  # "auto" from 2.25
    assert resp.status_code == 400
    resp = await _live(world, sid, {"host": other, "block_migration": True}, "2.24")  # disk_over_commit missing
    assert resp.status_code == 400
    resp = await _live(world, sid, {"host": other, "block_migration": True, "force": True}, "2.68")  # force gone
    assert resp.status_code == 400
    assert (await _host(world, sid)) == source
    # A forced host (2.30) is taken as it is.
    resp = await _live(world, sid, {"host": other, "block_migration": True, "force": True})
    assert resp.status_code == 202, resp.text
    await _wait_record(cloud, sid, {"completed", "error"})
    await wait_status(world.member, sid, "ACTIVE")
    assert await _host(world, sid) == other
    # A stopped server is a 409.
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    await wait_status(world.member, sid, "SHUTOFF")
    resp = await _live(world, sid, {"host": None, "block_migration": "auto"})
    assert resp.status_code == 409 and fault_of(resp)[0] == "conflictingRequest"


async def test_a_failing_move_leaves_the_server_on_its_source(world: World, cloud: Any) -> None:
    sid = (await world.active(metadata={"cumulo_fake_fail": "live_migration"}))["id"]
    source = await _host(world, sid)
    assert (await _live(world, sid, {"host": None, "block_migration": "auto"})).status_code == 202
    rec = await _wait_record(cloud, sid, {"completed", "error"})
    assert rec["status"] == "error"
    body = await wait_status(world.member, sid, "ACTIVE")
    assert body["OS-EXT-STS:task_state"] is None if "OS-EXT-STS:task_state" in body else True
    assert await _host(world, sid) == source
    drivers = _drivers(cloud)
    assert [h for h, d in drivers.items() if sid in d._instances] == [source]
    assert await _allocations(cloud, sid) == {source} and await _allocations(cloud, rec["uuid"]) == set()
    admin_view = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]
    assert admin_view["OS-EXT-STS:task_state"] is None


async def test_abort_and_force_complete(world: World, cloud: Any) -> None:
    sid = (await world.active(metadata={"cumulo_fake_fail": "live_migration_slow"}))["id"]
    source = await _host(world, sid)
    path = f"{API}/servers/{sid}/migrations"
    assert (await _live(world, sid, {"host": None, "block_migration": "auto"})).status_code == 202
    rec = await _wait_record(cloud, sid, {"running"})
    shown = (await world.admin.get(path, headers=mv("2.79"))).json()["migrations"]
    assert [m["id"] for m in shown] == [rec["id"]] and shown[0]["status"] == "running"
    assert set(shown[0]) == {
        "created_at", "dest_compute", "dest_host", "dest_node", "disk_processed_bytes", "disk_remaining_bytes",
        "disk_total_bytes", "id", "memory_processed_bytes", "memory_remaining_bytes", "memory_total_bytes",
        "server_uuid", "source_compute", "source_node", "status", "updated_at", "uuid"}
    one = (await world.admin.get(f"{path}/{rec['id']}", headers=mv("2.23"))).json()["migration"]
    assert one["id"] == rec["id"] and "uuid" not in one
    assert (await world.member.delete(f"{path}/{rec['id']}", headers=mv("2.24"))).status_code == 403
    assert (await world.admin.delete(f"{path}/{rec['id']}", headers=mv("2.23"))).status_code == 404
    assert (await world.admin.delete(f"{path}/{rec['id']}", headers=mv("2.24"))).status_code == 202
    rec = await _wait_record(cloud, sid, {"cancelled", "error", "completed"})
    assert rec["status"] == "cancelled"
    await wait_status(world.member, sid, "ACTIVE")
    assert await _host(world, sid) == source and await _allocations(cloud, rec["uuid"]) == set()
    faults = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"].get("fault")
    assert faults is None
    # force_complete: the slow move converges at once.
    assert (await _live(world, sid, {"host": None, "block_migration": "auto"})).status_code == 202
    rec = await _wait_record(cloud, sid, {"running"})
    act = f"{path}/{rec['id']}/action"
    assert (await world.admin.post(act, json={"force_complete": None}, headers=mv("2.21"))).status_code == 404
    resp = await world.admin.post(act, json={"force_complete": None}, headers=mv("2.22"))
    assert resp.status_code == 202, resp.text
    rec = await _wait_record(cloud, sid, {"completed", "error"}, timeout=20)
    assert rec["status"] == "completed"
    await wait_status(world.member, sid, "ACTIVE")
    assert await _host(world, sid) != source
    resp = await world.admin.post(act, json={"force_complete": None}, headers=mv("2.22"))
    assert resp.status_code in (400, 409)


async def test_a_container_is_refused_naming_criu(world: World, cloud: Any) -> None:
    """A runc node does not advertise live_migration; its details say why (drivers/runc/criu.py),
    and os-migrateLive answers 400 quoting it. The source node's row is made to read as a runc
    node's would here (no CRIU on this host)."""
    from cumulo.compute.drivers.runc import criu
    from cumulo.hosts.models import compute_nodes

    details = await criu.live_migration_details()
    assert details["live_migration"] == "no" and details["live_migration_reason"].startswith("CRIU: ")
    sid = (await world.active())["id"]
    node = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]["OS-EXT-SRV-ATTR:hypervisor_hostname"]
    async with cloud.db.write() as conn:
        row = (await conn.execute(sa.select(compute_nodes.c.details).where(
            compute_nodes.c.hypervisor_hostname == node))).scalar_one()
        caps = [c for c in row["capabilities"] if c != "live_migration"]
        await conn.execute(sa.update(compute_nodes).where(compute_nodes.c.hypervisor_hostname == node)
                           .values(details={**row, "capabilities": caps, **details}))
    resp = await _live(world, sid, {"host": None, "block_migration": "auto"})
    assert resp.status_code == 400
    assert details["live_migration_reason"] in fault_of(resp)[2] and "cold migration" in fault_of(resp)[2]
    # The reason shows in `hypervisor show` (cpu_info.driver_details).
    hyp = (await world.admin.get(f"{API}/os-hypervisors/detail", headers=mv("2.53"))).json()["hypervisors"]
    shown = next(h for h in hyp if h["hypervisor_hostname"] == node)["cpu_info"]["driver_details"]
    assert shown["live_migration_reason"] == details["live_migration_reason"]


async def test_a_failure_after_the_move_resumes_the_source(world: World, cloud: Any) -> None:
    sid = (await world.active(metadata={"cumulo_fake_fail": "post_live_migration"}))["id"]
    source = await _host(world, sid)
    assert (await _live(world, sid, {"host": None, "block_migration": "auto"})).status_code == 202
    rec = await _wait_record(cloud, sid, {"completed", "error"})
    assert rec["status"] == "error"
    await wait_status(world.member, sid, "ACTIVE")
    drivers = _drivers(cloud)
    assert [h for h, d in drivers.items() if sid in d._instances] == [source]
    from cumulo.compute.drivers.base import PowerState

    assert await drivers[source].get_power_state(sid) == PowerState.RUNNING  # resumed, not left paused
    assert await _allocations(cloud, sid) == {source} and await _allocations(cloud, rec["uuid"]) == set()


async def test_a_dead_conductors_migration_is_rolled_back(world: World, cloud: Any) -> None:
    """What a conductor finds at its start: a record left running by one that died; the source
    runs on, the destination's copy goes, the claim is released, the server has a fault."""
    from cumulo.compute import live_records
    from cumulo.compute import states as st
    from cumulo.compute.conductor import live
    from cumulo.db import utcnow

    sid = (await world.active(metadata={"cumulo_fake_fail": "live_migration_slow"}))["id"]
    source = await _host(world, sid)
    assert (await _live(world, sid, {"host": None, "block_migration": "auto"})).status_code == 202
    rec = await _wait_record(cloud, sid, {"running"})
    dest = rec["dest_compute"]
    drivers = _drivers(cloud)
    assert sid in drivers[dest]._instances  # the incoming copy
    # A conductor starting now finds the record untouched since before its start (as if the one
    # driving it had died): it rolls the move back (the source agent's move is cancelled).
    await live.recover(cloud.workers.conductor, utcnow(), wait=0.0)
    rec = await _record(cloud, sid)
    assert rec["status"] == live_records.ERROR
    async with cloud.db.read() as conn:
        from cumulo.compute import instances as inst_db

        row = await inst_db.get(conn, sid)
    assert row is not None and row["task_state"] is None and row["host"] == source and row["vm_state"] == st.ACTIVE
    assert sid not in drivers[dest]._instances and sid in drivers[source]._instances
    assert await _allocations(cloud, rec["uuid"]) == set()
    from cumulo.compute.models import instance_faults

    async with cloud.db.read() as conn:
        faults = [r[0] for r in await conn.execute(
            sa.select(instance_faults.c.message).where(instance_faults.c.instance_uuid == sid))]
    assert faults == [live.INTERRUPTED[:255]]  # (a server's fault shows in the API once it is ERROR)


async def test_a_paused_server_moves_paused(world: World, cloud: Any) -> None:
    from cumulo.compute.drivers.base import PowerState

    sid = (await world.active())["id"]
    source = await _host(world, sid)
    assert (await world.action(sid, {"pause": None})).status_code == 202
    await wait_status(world.member, sid, "PAUSED")
    assert (await _live(world, sid, {"host": None, "block_migration": "auto"})).status_code == 202
    rec = await _wait_record(cloud, sid, {"completed", "error"})
    assert rec["status"] == "completed"
    await wait_status(world.member, sid, "PAUSED")
    dest = await _host(world, sid)
    assert dest != source and await _drivers(cloud)[dest].get_power_state(sid) == PowerState.PAUSED
