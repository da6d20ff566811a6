"""Cold migration, confirm/revert across hosts, its failure paths and evacuation, on two fake hosts
(the state machine, records and claims; the real drivers: tests/system/test_cold_migration_real.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from servers_support import API, World, fault_of, make_world, mv, wait_status

from cumulo import conf as conf_mod
from cumulo.compute.agent import migrate as agent_migrate
from cumulo.compute.models import migrations
from cumulo.placement.service import migration_consumer


@pytest.fixture
def settings(tmp_path: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0,
                         fake_hosts=2, local_driver="fake")


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _node(cloud: Any, host: str) -> Any:
    return next(m.node for m in cloud.managers if m.node.host == host)


async def _records(cloud: Any, uuid: str) -> list[dict[str, Any]]:
    async with cloud.db.read() as conn:
        rows = await conn.execute(sa.select(migrations).where(migrations.c.instance_uuid == uuid).order_by(migrations.c.id))
        return [dict(r) for r in rows.mappings()]


async def _held(cloud: Any, uuid: str) -> dict[str, dict[str, dict[str, int]]]:
    """{consumer: {provider host: resources}} of the server and of its migration consumer."""
    placement = cloud.services.placement
    names = {m.node.node_uuid: m.node.host for m in cloud.managers}
    out: dict[str, dict[str, dict[str, int]]] = {}
    for consumer in (uuid, migration_consumer(uuid)):
        held = await placement.allocations_for(consumer)
        if held:
            out["server" if consumer == uuid else "migration"] = {names[p]: r for p, r in held.items()}
    return out


async def _show(world: World, sid: str) -> dict[str, Any]:
    body: dict[str, Any] = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]
    return body


async def _migrated(world: World, cloud: Any, sid: str) -> tuple[str, str]:
    """Migrate the server; wait for VERIFY_RESIZE; (source, destination)."""
    source = (await _show(world, sid))["OS-EXT-SRV-ATTR:host"]
    resp = await world.action(sid, {"migrate": None}, world.admin)
    assert resp.status_code == 202, resp.text
    body = await wait_status(world.admin, sid, "VERIFY_RESIZE")
    dest = body["OS-EXT-SRV-ATTR:host"]
    assert dest != source
    return source, dest


async def test_migrate_confirm_moves_the_server_and_its_claims(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    source, dest = await _migrated(world, cloud, sid)
    recs = await _records(cloud, sid)
    assert [(r["migration_type"], r["status"], r["source_compute"], r["dest_compute"]) for r in recs] == [
        ("migration", "finished", source, dest)]
    flavor = {"VCPU": 1, "MEMORY_MB": 64, "DISK_GB": 1}
    # Nova's migration-based allocations: the source's held by the migration until confirm.
    assert await _held(cloud, sid) == {"server": {dest: flavor}, "migration": {source: flavor}}
    assert sid in {s.uuid for s in await _node(cloud, dest).driver.list_instances()}
    assert sid in {s.uuid for s in await _node(cloud, source).driver.list_instances()}  # kept for a revert
    resp = await world.action(sid, {"confirmResize": None})
    assert resp.status_code == 204, resp.text
    body = await wait_status(world.member, sid, "ACTIVE")
    assert (await _show(world, sid))["OS-EXT-SRV-ATTR:host"] == dest and body["OS-EXT-STS:power_state"] == 1
    assert await _held(cloud, sid) == {"server": {dest: flavor}}
    assert sid not in {s.uuid for s in await _node(cloud, source).driver.list_instances()}
    assert [r["status"] for r in await _records(cloud, sid)] == ["confirmed"]
    listed = (await world.admin.get(f"{API}/os-migrations", headers=mv("2.23"))).json()["migrations"]
    assert [(m["migration_type"], m["status"]) for m in listed if m["instance_uuid"] == sid] == [
        ("migration", "confirmed")]
    actions = (await world.admin.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [a["action"] for a in actions][:2] == ["confirmResize", "migrate"]


async def test_migrate_revert_puts_it_back_on_the_source(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    source, dest = await _migrated(world, cloud, sid)
    assert (await world.action(sid, {"revertResize": None})).status_code == 202
    body = await wait_status(world.member, sid, "ACTIVE")
    assert (await _show(world, sid))["OS-EXT-SRV-ATTR:host"] == source and body["OS-EXT-STS:power_state"] == 1
    assert await _held(cloud, sid) == {"server": {source: {"VCPU": 1, "MEMORY_MB": 64, "DISK_GB": 1}}}
    assert sid not in {s.uuid for s in await _node(cloud, dest).driver.list_instances()}
    assert [r["status"] for r in await _records(cloud, sid)] == ["reverted"]


async def test_a_stopped_server_migrates_stopped(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    await wait_status(world.member, sid, "SHUTOFF")
    _source, dest = await _migrated(world, cloud, sid)
    assert (await _show(world, sid))["OS-EXT-STS:power_state"] == 4
    assert (await world.action(sid, {"confirmResize": None})).status_code == 204
    await wait_status(world.member, sid, "SHUTOFF")
    assert (await _show(world, sid))["OS-EXT-SRV-ATTR:host"] == dest


@pytest.mark.parametrize("step", ["migrate", "finish_migration"])
async def test_a_failed_move_leaves_the_server_on_its_source(world: World, cloud: Any, step: str) -> None:
    sid = (await world.active(metadata={"cumulo_fake_fail": step}))["id"]
    source = (await _show(world, sid))["OS-EXT-SRV-ATTR:host"]
    assert (await world.action(sid, {"migrate": None}, world.admin)).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")
    for _ in range(200):  # the record settles right after the row
        if (await _records(cloud, sid))[0]["status"] == "error":
            break
        await __import__("asyncio").sleep(0.02)
    body = await _show(world, sid)
    assert body["OS-EXT-SRV-ATTR:host"] == source and body["OS-EXT-STS:task_state"] is None
    assert body["OS-EXT-STS:power_state"] == 1
    assert [r["status"] for r in await _records(cloud, sid)] == ["error"]
    assert await _held(cloud, sid) == {"server": {source: {"VCPU": 1, "MEMORY_MB": 64, "DISK_GB": 1}}}
    other = next(m.node for m in cloud.managers if m.node.host != source)
    assert sid not in {s.uuid for s in await other.driver.list_instances()}
    async with cloud.db.read() as conn:
        from cumulo.compute.models import instance_faults

        faults = (await conn.execute(sa.select(instance_faults.c.message).where(
            instance_faults.c.instance_uuid == sid))).scalars().all()
    assert any("failed" in f for f in faults), faults


async def test_migrate_to_a_named_host_and_no_valid_host(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    source = (await _show(world, sid))["OS-EXT-SRV-ATTR:host"]
    other = next(m.node.host for m in cloud.managers if m.node.host != source)
    resp = await world.action(sid, {"migrate": {"host": other}}, world.admin, version="2.56")
    assert resp.status_code == 202, resp.text
    body = await wait_status(world.admin, sid, "VERIFY_RESIZE")
    assert body["OS-EXT-SRV-ATTR:host"] == other
    assert (await world.action(sid, {"confirmResize": None})).status_code == 204
    await wait_status(world.member, sid, "ACTIVE")
    # Every other host disabled: nowhere to go, 400 and nothing changed.
    listed = (await world.admin.get(f"{API}/os-services?binary=nova-compute", headers=mv("2.53"))).json()["services"]
    for svc in listed:
        if svc["host"] != other:
            resp = await world.admin.put(f"{API}/os-services/{svc['id']}", json={"status": "disabled"},
                                         headers=mv("2.53"))
            assert resp.status_code == 200, resp.text
    resp = await world.action(sid, {"migrate": None}, world.admin)
    assert resp.status_code == 400 and fault_of(resp)[2].startswith("No valid host was found."), resp.text
    body = await _show(world, sid)
    assert body["status"] == "ACTIVE" and body["OS-EXT-STS:task_state"] is None and body["OS-EXT-SRV-ATTR:host"] == other
    assert [r["status"] for r in await _records(cloud, sid)] == ["confirmed", "error"]


async def test_evacuate_from_a_forced_down_host(world: World, cloud: Any) -> None:
    sid = (await world.active())["id"]
    source = (await _show(world, sid))["OS-EXT-SRV-ATTR:host"]
    resp = await world.action(sid, {"evacuate": {}}, world.admin, version="2.68")
    assert resp.status_code == 409 and f"Compute service of {source} is still in use." == fault_of(resp)[2]
    assert (await world.action(sid, {"evacuate": {}}, world.member, version="2.68")).status_code == 403
    resp = await world.action(sid, {"evacuate": {"onSharedStorage": True}}, world.admin, version="2.13")
    assert resp.status_code == 400
    resp = await world.action(sid, {"evacuate": {"x": 1}}, world.admin, version="2.68")
    assert resp.status_code == 400
    svc = (await world.admin.get(f"{API}/os-services?binary=nova-compute&host={source}",
                                 headers=mv("2.53"))).json()["services"][0]
    resp = await world.admin.put(f"{API}/os-services/{svc['id']}", json={"forced_down": True}, headers=mv("2.53"))
    assert resp.status_code == 200 and resp.json()["service"]["state"] == "down", resp.text
    resp = await world.action(sid, {"evacuate": {"onSharedStorage": False, "adminPass": "s3cret"}}, world.admin,
                              version="2.13")
    assert resp.status_code == 200 and resp.json() == {"adminPass": "s3cret"}, resp.text
    body = await wait_status(world.admin, sid, "ACTIVE")
    dest = body["OS-EXT-SRV-ATTR:host"]
    assert dest != source
    assert await _held(cloud, sid) == {"server": {dest: {"VCPU": 1, "MEMORY_MB": 64, "DISK_GB": 1}}}
    recs = await _records(cloud, sid)
    assert [(r["migration_type"], r["status"], r["source_compute"], r["dest_compute"]) for r in recs] == [
        ("evacuation", "done", source, dest)]
    # The dead host comes back: its copy is destroyed, never restarted; the record completes.
    src = _node(cloud, source)
    assert sid in {s.uuid for s in await src.driver.list_instances()}
    assert await agent_migrate.destroy_evacuated(src) == [sid]
    assert sid not in {s.uuid for s in await src.driver.list_instances()}
    assert [r["status"] for r in await _records(cloud, sid)] == ["completed"]
    assert (await _show(world, sid))["OS-EXT-SRV-ATTR:host"] == dest


async def test_agents_restarting_mid_verify_resize_keep_both_copies_and_claims(tmp_path: Path) -> None:
    from workers_harness import FLAVOR_SMALL, Rig

    from cumulo.compute import actions
    from cumulo.compute import states as st
    from cumulo.compute.service import migrate as svc_migrate

    rig = await Rig(tmp_path, fake_hosts=1).start()
    try:
        source, dest = rig.hosts
        uuid = await rig.create(FLAVOR_SMALL, request_spec={"flavor": FLAVOR_SMALL, "force_host": source})
        assert (await rig.wait_settled(uuid))["host"] == source
        await svc_migrate.migrate(rig.compute_service(), rig.ctx, await rig.get(uuid), None)
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert (row["vm_state"], row["host"]) == (st.RESIZED, dest)
        await rig.restart()  # every agent reconciles: neither copy is an orphan, no claim is stale
        names = {m.node.node_uuid: m.node.host for m in rig.managers.values()}
        held = {c: {names[p]: r for p, r in (await rig.placement.allocations_for(c)).items()}
                for c in (uuid, migration_consumer(uuid))}
        res = {"VCPU": 1, "MEMORY_MB": 2048, "DISK_GB": 20}
        assert held == {uuid: {dest: res}, migration_consumer(uuid): {source: res}}
        assert uuid in {s.uuid for s in await rig.driver(source).list_instances()}
        await rig.act(uuid, "confirm_resize", actions.CONFIRM_RESIZE, st.RESIZE_CONFIRMING)
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert (row["vm_state"], row["host"]) == (st.ACTIVE, dest)
        assert uuid not in {s.uuid for s in await rig.driver(source).list_instances()}
        assert await rig.placement.allocations_for(migration_consumer(uuid)) == {}
    finally:
        await rig.stop()


async def test_a_resize_that_does_not_fit_its_host_moves(tmp_path: Path) -> None:
    from workers_harness import FLAVOR_MEDIUM, FLAVOR_SMALL, Rig, start_resize

    from cumulo.compute import actions, migration_records
    from cumulo.compute import states as st

    # 6000 MB a host: small (2048) + medium (4096) do not fit one host together, medium alone does.
    rig = await Rig(tmp_path, fake_hosts=1, fake_host_ram_mb=6000).start()
    try:
        source, dest = rig.hosts
        uuid = await rig.create(FLAVOR_SMALL, request_spec={"flavor": FLAVOR_SMALL, "force_host": source})
        assert (await rig.wait_settled(uuid))["host"] == source
        async with rig.db.write() as conn:
            await migration_records.start_resize(conn, rig.ctx, await rig.get(uuid), FLAVOR_MEDIUM)
        await start_resize(rig, uuid, FLAVOR_MEDIUM)
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert (row["vm_state"], row["host"], row["memory_mb"]) == (st.RESIZED, dest, 4096), row
        [rec] = await _records(rig, uuid)
        assert (rec["migration_type"], rec["status"], rec["source_compute"], rec["dest_compute"]) == (
            "resize", "finished", source, dest)
        await rig.act(uuid, "revert_resize", actions.REVERT_RESIZE, st.RESIZE_REVERTING)
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert (row["vm_state"], row["host"], row["memory_mb"]) == (st.ACTIVE, source, 2048), row
        assert (await rig.placement.allocations_for(migration_consumer(uuid))) == {}
    finally:
        await rig.stop()


async def test_conductor_messages_delivered_twice_move_the_server_once(tmp_path: Path) -> None:
    """A broker redelivers a message whose conductor died before its ack: both handlers are idempotent."""
    from workers_harness import FLAVOR_SMALL, Rig

    from cumulo.compute import migration_records
    from cumulo.compute import states as st
    from cumulo.compute.service import migrate as svc_migrate
    from cumulo.hosts.models import services

    rig = await Rig(tmp_path, fake_hosts=2).start()
    try:
        source = rig.hosts[0]
        res = {"VCPU": 1, "MEMORY_MB": 2048, "DISK_GB": 20}
        uuid = await rig.create(FLAVOR_SMALL, request_spec={"flavor": FLAVOR_SMALL, "force_host": source})
        await rig.wait_settled(uuid)
        svc = rig.compute_service()
        _row, mig = await svc_migrate._begin(svc, rig.ctx, await rig.get(uuid), svc_migrate.MIGRATE_TRANSITION,
                                             migration_records.MIGRATION, migration_records.PRE_MIGRATING)
        for _ in range(2):
            await rig.conductor.migrate_server(uuid, None, None, "req-1")
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert row["vm_state"] == st.RESIZED and row["host"] != source
        dest = row["host"]
        names = {m.node.node_uuid: m.node.host for m in rig.managers.values()}

        async def held(consumer: str) -> dict[str, Any]:
            return {names[p]: r for p, r in (await rig.placement.allocations_for(consumer)).items()}

        assert await held(uuid) == {dest: res} and await held(migration_consumer(uuid)) == {source: res}
        assert [r["status"] for r in await _records(rig, uuid)] == ["finished"]
        copies = [h for h in rig.hosts if uuid in {s.uuid for s in await rig.driver(h).list_instances()}]
        assert sorted(copies) == sorted([source, dest])

        # Evacuation, twice: rebuilt once, on one host.
        async with rig.db.write() as conn:
            await conn.execute(sa.update(services).where(services.c.host == dest).values(forced_down=True))
        await rig.act(uuid, "confirm_resize", "confirmResize", st.RESIZE_CONFIRMING)
        await rig.wait(uuid, lambda r: r["task_state"] is None and r["vm_state"] == st.ACTIVE)
        _row, mig = await svc_migrate._begin(svc, rig.ctx, await rig.get(uuid), svc_migrate.EVACUATE_TRANSITION,
                                             migration_records.EVACUATION, migration_records.ACCEPTED)
        for _ in range(2):
            await rig.conductor.evacuate_server(uuid, None, False, mig, "req-2")
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert row["vm_state"] == st.ACTIVE and row["host"] not in (dest,)
        assert await held(uuid) == {row["host"]: res}
        assert [r["status"] for r in await _records(rig, uuid)] == ["confirmed", "done"]
    finally:
        await rig.stop()


async def test_a_destination_that_died_finishing_finishes_at_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers_harness import FLAVOR_SMALL, Rig

    from cumulo.compute import instances as inst_db
    from cumulo.compute import states as st
    from cumulo.compute.rpc import ComputeAPI
    from cumulo.compute.service import migrate as svc_migrate

    rig = await Rig(tmp_path, fake_hosts=1).start()
    try:
        source, dest = rig.hosts
        uuid = await rig.create(FLAVOR_SMALL, request_spec={"flavor": FLAVOR_SMALL, "force_host": source})
        await rig.wait_settled(uuid)

        async def lost(*args: Any, **kwargs: Any) -> None:  # the destination dies before it finishes
            return None

        with monkeypatch.context() as m:
            m.setattr(ComputeAPI, "finish_migration", lost)
            await svc_migrate.migrate(rig.compute_service(), rig.ctx, await rig.get(uuid), None)
            await rig.wait(uuid, lambda r: r["task_state"] == st.RESIZE_MIGRATED)
        async with rig.db.write() as conn:  # it had begun: the task says so
            assert await inst_db.cas_update(conn, uuid, {"task_state": st.RESIZE_FINISH},
                                            expected_task_state=st.RESIZE_MIGRATED)
        await rig.restart()
        row = await rig.wait(uuid, lambda r: r["task_state"] is None)
        assert (row["vm_state"], row["host"]) == (st.RESIZED, dest)
        assert [r["status"] for r in await _records(rig, uuid)] == ["finished"]
    finally:
        await rig.stop()


async def test_ports_move_with_the_server(world: World, cloud: Any) -> None:
    from servers_support import make_network

    net = await make_network(world.member, "mig-net", "10.77.0.0/24")
    sid = (await world.active(networks=[{"uuid": net["network"]["id"]}]))["id"]

    async def binding() -> list[str]:
        ports = (await world.admin.get(f"/networking/v2.0/ports?device_id={sid}")).json()["ports"]
        return [p["binding:host_id"] for p in ports]

    source = (await _show(world, sid))["OS-EXT-SRV-ATTR:host"]
    assert await binding() == [source]
    _source, dest = await _migrated(world, cloud, sid)
    assert await binding() == [dest]
    assert (await world.action(sid, {"revertResize": None})).status_code == 202
    await wait_status(world.member, sid, "ACTIVE")
    assert await binding() == [source]
    addresses = (await _show(world, sid))["addresses"]
    assert [a["addr"] for a in addresses["mig-net"]][0].startswith("10.77.0.")


async def test_volumes_follow_the_server(world: World, cloud: Any) -> None:
    vol_url = f"/volume/v3/{world.project_id}/volumes"
    resp = await world.member.post(vol_url, json={"volume": {"size": 1}})
    assert resp.status_code == 202, resp.text
    vid = resp.json()["volume"]["id"]
    sid = (await world.active())["id"]

    async def volume(status: str) -> dict[str, Any]:
        for _ in range(1000):
            body: dict[str, Any] = (await world.member.get(f"{vol_url}/{vid}")).json()["volume"]
            if body["status"] == status:
                return body
            await __import__("asyncio").sleep(0.02)
        raise AssertionError(f"volume not {status}")

    await volume("available")
    resp = await world.member.post(f"{API}/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": vid}})
    assert resp.status_code == 200, resp.text
    await volume("in-use")
    _source, dest = await _migrated(world, cloud, sid)
    # The attachment stays (the file store's connection is the machine's); the destination's driver has it.
    [att] = (await volume("in-use"))["attachments"]
    assert att["server_id"] == sid
    assert vid in await _node(cloud, dest).driver.attached_volumes(sid)
    assert (await world.action(sid, {"confirmResize": None})).status_code == 204
    await wait_status(world.member, sid, "ACTIVE")
    assert vid in await _node(cloud, dest).driver.attached_volumes(sid)


async def test_migrate_and_evacuate_with_the_broker_away_change_nothing(
    world: World, cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cumulo.bus.base import BusUnavailable

    sid = (await world.active())["id"]
    source = (await _show(world, sid))["OS-EXT-SRV-ATTR:host"]
    svc = (await world.admin.get(f"{API}/os-services?binary=nova-compute&host={source}",
                                 headers=mv("2.53"))).json()["services"][0]
    assert (await world.admin.put(f"{API}/os-services/{svc['id']}", json={"forced_down": True},
                                  headers=mv("2.53"))).status_code == 200

    async def away(topic: str, method: str, **args: Any) -> None:
        raise BusUnavailable(f"message broker unreachable: {topic} not sent within 5 s")

    monkeypatch.setattr(cloud.bus, "call", away)
    monkeypatch.setattr(cloud.bus, "cast", away)
    for body, version in (({"migrate": None}, "2.1"), ({"evacuate": {}}, "2.68")):
        resp = await world.action(sid, body, world.admin, version=version)
        assert resp.status_code == 503 and fault_of(resp)[0] == "serviceUnavailable", resp.text
        shown = await _show(world, sid)
        assert (shown["status"], shown["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
        assert await _records(cloud, sid) == []
    actions = (await world.admin.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [a["action"] for a in actions] == ["create"]
