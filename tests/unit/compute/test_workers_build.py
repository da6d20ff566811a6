"""Conductor + scheduler + agent, through the bus: builds, scheduling failures, concurrency, delete."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from workers_harness import FLAVOR_MEDIUM, FLAVOR_SMALL, running

from cumulo.compute import states as st
from cumulo.compute.drivers.base import PowerState
from cumulo.compute.models import instances
from cumulo.hosts.models import compute_nodes, services

BIG = {**FLAVOR_SMALL, "flavorid": "9", "name": "huge", "memory_mb": 10**6}


async def test_build_goes_active_with_a_claim_and_events(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await rig.create(FLAVOR_SMALL)
        row = await rig.wait_settled(uuid)
        assert row["vm_state"] == st.ACTIVE and row["task_state"] is None
        assert row["power_state"] == PowerState.RUNNING and row["launched_at"] is not None
        assert row["host"] == rig.conf.host_name and row["node"] == rig.conf.host_name
        assert row["availability_zone"] == "nova" and row["hypervisor_type"] == "fake"
        assert await rig.placement_usage() == {rig.conf.host_name: {"VCPU": 1, "MEMORY_MB": 2048, "DISK_GB": 20}}
        events = {e["event"]: e["result"] for e in await rig.events(uuid, "create")}
        assert events == {"conductor_schedule_and_build_instances": "Success",
                          "compute_build_and_run_instance": "Success"}
        assert (await rig.driver().get_power_state(uuid)) == PowerState.RUNNING


async def test_agent_registers_service_node_and_provider(tmp_path: Path) -> None:
    async with running(tmp_path, fake_hosts=1, fake_host_vcpus=6, fake_host_ram_mb=3000, fake_host_disk_gb=70) as rig:
        async with rig.db.read() as conn:
            svc = {(r["host"], r["binary"]): r for r in (await conn.execute(sa.select(services))).mappings()}
            nodes = {r["host"]: r for r in (await conn.execute(sa.select(compute_nodes))).mappings()}
        assert svc[("fake-host-1", "nova-compute")]["availability_zone"] == "nova"
        assert svc[(rig.conf.host_name, "nova-conductor")]["availability_zone"] == "internal"
        assert svc[(rig.conf.host_name, "nova-scheduler")]["availability_zone"] == "internal"
        node = nodes["fake-host-1"]
        assert (node["vcpus"], node["memory_mb"], node["local_gb"]) == (6, 3000, 70)
        assert node["hypervisor_type"] == "fake" and "container" in node["instance_types"]
        assert "pause" in node["details"]["capabilities"]
        inv = await rig.placement.get_inventory(node["uuid"])
        assert inv["VCPU"].total == 6 and inv["VCPU"].allocation_ratio == rig.conf.cpu_allocation_ratio


async def test_spawn_failure_sets_error_quotes_driver_and_frees_everything(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await rig.create(FLAVOR_SMALL, metadata={"cumulo_fake_fail": "spawn"})
        row = await rig.wait_settled(uuid)
        assert row["vm_state"] == st.ERROR and row["task_state"] is None
        assert row["host"] is None and row["node"] is None
        fault = (await rig.faults(uuid))[-1]
        assert fault["code"] == 500 and "spawn failed as requested" in fault["message"]
        assert fault["message"].startswith(f"Build of instance {uuid} aborted")
        assert await rig.placement.allocations_for(uuid) == {}
        assert uuid not in {s.uuid for s in await rig.driver().list_instances()}
        events = {e["event"]: e for e in await rig.events(uuid, "create")}
        assert events["compute_build_and_run_instance"]["result"] == "Error"
        assert "DriverError" in events["compute_build_and_run_instance"]["traceback"]


async def test_image_property_makes_spawn_fail(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        image = rig.images.add(cumulo_fake_fail="spawn")
        uuid = await rig.create(FLAVOR_SMALL, image_ref=image)
        row = await rig.wait_settled(uuid)
        assert row["vm_state"] == st.ERROR
        assert "cumulo_fake_fail=spawn" in (await rig.faults(uuid))[-1]["message"]


async def test_no_valid_host_fault_names_the_filters(tmp_path: Path) -> None:
    async with running(tmp_path, fake_hosts=2) as rig:
        uuid = await rig.create(BIG)
        row = await rig.wait_settled(uuid)
        assert row["vm_state"] == st.ERROR and row["host"] is None
        fault = (await rig.faults(uuid))[-1]
        assert fault["code"] == 500
        assert fault["message"].startswith("No valid host was found.")
        assert "ComputeFilter removed 0 of 3" in fault["message"]
        assert "RamFilter removed 3 of 3" in fault["message"]
        events = {e["event"]: e["result"] for e in await rig.events(uuid, "create")}
        assert events == {"conductor_schedule_and_build_instances": "Error"}
        assert await rig.placement_usage() == {}


async def test_availability_zone_and_image_filters_reach_the_fault(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        az = await rig.create(FLAVOR_SMALL, request_spec={"availability_zone": "elsewhere"})
        xen = rig.images.add(hypervisor_type="xen")
        hv = await rig.create(FLAVOR_SMALL, image_ref=xen,
                              request_spec={"image": {"id": xen, "properties": {"hypervisor_type": "xen"}}})
        await rig.wait_settled(az)
        await rig.wait_settled(hv)
        assert "AvailabilityZoneFilter removed 1 of 1" in (await rig.faults(az))[-1]["message"]
        assert "ImagePropertiesFilter removed 1 of 1" in (await rig.faults(hv))[-1]["message"]
        ok = await rig.create(FLAVOR_SMALL, request_spec={"image": {"properties": {"hypervisor_type": "qemu"}}})
        assert (await rig.wait_settled(ok))["vm_state"] == st.ACTIVE


async def test_forced_host_via_availability_zone(tmp_path: Path) -> None:
    async with running(tmp_path, fake_hosts=2) as rig:
        uuid = await rig.create(FLAVOR_SMALL, request_spec={"availability_zone": "nova:fake-host-2"},
                                availability_zone="nova")
        row = await rig.wait_settled(uuid)
        assert row["host"] == "fake-host-2" and row["availability_zone"] == "nova"


async def test_twenty_concurrent_builds_never_double_claim(tmp_path: Path) -> None:
    # Three hosts with room for two 2 GiB servers each: exactly six of twenty fit.
    async with running(tmp_path, fake_hosts=2, fake_host_ram_mb=4096, fake_spawn_delay=0.05) as rig:
        for mgr in rig.managers.values():
            await rig.placement.ensure_provider(mgr.node.node_uuid or "", mgr.host, vcpus=16, memory_mb=4096, disk_gb=500)
        uuids = [await rig.insert_instance(FLAVOR_SMALL) for _ in range(20)]
        from cumulo.compute.rpc import ConductorAPI

        await asyncio.gather(*(ConductorAPI(rig.bus).build_instances([u]) for u in uuids))
        rows = [await rig.wait_settled(u, timeout=30) for u in uuids]
        active = [r for r in rows if r["vm_state"] == st.ACTIVE]
        assert len(active) == 6
        assert all(r["vm_state"] == st.ERROR for r in rows if r not in active)
        per_host: dict[str, int] = {}
        for r in active:
            per_host[r["host"]] = per_host.get(r["host"], 0) + 1
        assert per_host == {h: 2 for h in rig.hosts}  # spread, and nobody over capacity
        usage = await rig.placement_usage()
        assert all(u["MEMORY_MB"] == 4096 for u in usage.values())
        assert usage == await rig.live_usage()


async def test_multi_instance_build_request(tmp_path: Path) -> None:
    async with running(tmp_path, fake_hosts=1) as rig:
        uuids = [await rig.insert_instance(FLAVOR_MEDIUM) for _ in range(3)]
        from cumulo.compute.rpc import ConductorAPI

        await ConductorAPI(rig.bus).build_instances(uuids)
        rows = [await rig.wait_settled(u) for u in uuids]
        assert all(r["vm_state"] == st.ACTIVE for r in rows)
        assert {r["host"] for r in rows} == set(rig.hosts)


async def test_delete_during_build_leaves_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, fake_spawn_delay=0.3) as rig:
        uuid = await rig.create(FLAVOR_SMALL)
        await rig.wait(uuid, lambda r: r["task_state"] == st.SPAWNING)
        await rig.act_delete(uuid)
        row = await rig.wait(uuid, lambda r: r["deleted"])
        assert row["vm_state"] == st.DELETED and row["task_state"] is None and row["terminated_at"]
        assert await rig.placement.allocations_for(uuid) == {}
        assert uuid not in {s.uuid for s in await rig.driver().list_instances()}
        events = {e["event"]: e["result"] for e in await rig.events(uuid, "delete")}
        assert events == {"compute_terminate_instance": "Success"}


async def test_terminate_frees_the_claim_and_soft_deletes(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await rig.create(FLAVOR_SMALL)
        await rig.wait_settled(uuid)
        await rig.act_delete(uuid)
        row = await rig.wait(uuid, lambda r: r["deleted"])
        assert row["deleted_at"] is not None and row["power_state"] == PowerState.NOSTATE
        assert await rig.placement_usage() == {}
        assert await rig.driver().list_instances() == []


async def test_build_of_a_row_deleted_meanwhile_is_a_no_op(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await rig.insert_instance(FLAVOR_SMALL, host=rig.conf.host_name, node=rig.conf.host_name,
                                         deleted=True, vm_state=st.DELETED, task_state=None)
        await rig.managers[rig.conf.host_name].build_and_run_instance(uuid, None)
        assert await rig.driver().list_instances() == []
        assert await rig.placement.allocations_for(uuid) == {}


async def test_row_deleted_while_scheduled_rolls_the_claim_back(tmp_path: Path) -> None:
    """The claim and the placement share one transaction: a row deleted meanwhile keeps no allocation."""
    async with running(tmp_path) as rig:
        uuid = await rig.insert_instance(FLAVOR_SMALL)
        scheduler = rig.conductor.scheduler

        class DeletingScheduler:
            async def select_destinations(self, spec: dict[str, object], n: int) -> list[dict[str, object]]:
                dests = await scheduler.select_destinations(spec, n)
                async with rig.db.write() as conn:  # the API's delete lands between selection and claim
                    await conn.execute(sa.update(instances).where(instances.c.uuid == uuid)
                                       .values(deleted=True, vm_state=st.DELETED, task_state=None))
                return dests

        rig.conductor.scheduler = DeletingScheduler()  # type: ignore[assignment]
        await rig.conductor.build_instances([uuid])
        row = await rig.get(uuid)
        assert row["host"] is None and row["vm_state"] == st.DELETED
        assert await rig.placement.allocations_for(uuid) == {}
        assert await rig.placement_usage() == {}
        assert await rig.events(uuid, "create") == []
