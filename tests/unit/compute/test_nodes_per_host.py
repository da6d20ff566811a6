"""One host, several compute nodes (Nova's model): a node per driver, one service and bus topic per
host, messages dispatched to the instance's node, scheduling by image kind, per-node periodic work,
one pool of the machine shared by the nodes (each weighing its claims by its own ratios), a
nova-compute service per node, and kernel/ramdisk resolution for direct-kernel boot.

Two fake drivers stand in for runc and QEMU: node "cumulo-local" offers containers, node
"cumulo-local-qemu" offers qemu.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from workers_harness import FLAVOR_SMALL, Rig

from cumulo.bus.base import compute_topic
from cumulo.compute import specs
from cumulo.compute import states as st
from cumulo.compute.agent.power import sync_power_states
from cumulo.compute.drivers.base import InstanceSpec, PowerState
from cumulo.compute.drivers.fake import FakeDriver
from cumulo.compute.models import instances
from cumulo.compute.service import hostinfo
from cumulo.compute.specs import flavor_spec
from cumulo.compute.workers import NodeSetup
from cumulo.errors import NotFound
from cumulo.hosts.models import services

HOST = "cumulo-local"
VM_NODE = f"{HOST}-qemu"
NODE_TYPES: dict[str, tuple[str, ...]] = {HOST: ("container",), VM_NODE: ("qemu",)}
# Per-node CPU overcommit over the 8-core pool: containers 4:1, VMs 2:1.
NODE_RATIOS: dict[str, dict[str, float]] = {HOST: {"VCPU": 4.0}, VM_NODE: {"VCPU": 2.0}}


class TwoNodeRig(Rig):
    """The local host runs two nodes behind one ComputeHost; fake hosts stay one node each."""

    node_types: dict[str, tuple[str, ...]] = NODE_TYPES

    def node_setups(self) -> list[NodeSetup]:
        setups = []
        for node, types in self.node_types.items():
            driver = FakeDriver(self.conf, node, local=False)
            driver.info = dataclasses.replace(driver.info, instance_types=types)
            setups.append(NodeSetup(HOST, node, driver, NODE_RATIOS[node], pooled=True))
        for i in range(1, self.conf.fake_hosts + 1):
            name = f"fake-host-{i}"
            setups.append(NodeSetup(name, name, FakeDriver(self.conf, name)))
        return setups

    async def boot(self, flavor: dict[str, Any] | None = None, **image: Any) -> str:
        """Create a server from a new image (formats and properties as given) and wait for it."""
        flavor = flavor or FLAVOR_SMALL
        props = dict(image)
        image_id = self.images.add(**props)
        summary = {"id": image_id, "disk_format": props.pop("disk_format", "raw"),
                   "container_format": props.pop("container_format", "bare"), "properties": props}
        uuid = await self.create(flavor, image_ref=image_id, request_spec={"flavor": flavor, "image": summary})
        await self.wait_settled(uuid)
        return uuid


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    r = await TwoNodeRig(tmp_path, fake_host_vcpus=8, fake_host_ram_mb=8192, fake_host_disk_gb=100).start()
    try:
        yield r
    finally:
        await r.stop()


async def _on(rig: TwoNodeRig, node: str) -> set[str]:
    return {s.uuid for s in await rig.managers[node].driver.list_instances()}


async def test_each_image_kind_lands_on_its_node(rig: TwoNodeRig) -> None:
    vm = await rig.boot(hypervisor_type="qemu")
    ct = await rig.boot(disk_format="raw", container_format="docker")  # no hypervisor_type: by format
    disk = await rig.boot(disk_format="qcow2", container_format="bare")  # a disk image: a VM
    rows = {u: await rig.get(u) for u in (vm, ct, disk)}
    assert {u: (r["vm_state"], r["host"], r["node"]) for u, r in rows.items()} == {
        vm: (st.ACTIVE, HOST, VM_NODE), ct: (st.ACTIVE, HOST, HOST), disk: (st.ACTIVE, HOST, VM_NODE)}
    assert await _on(rig, VM_NODE) == {vm, disk} and await _on(rig, HOST) == {ct}
    # Each build ran on the node the scheduler chose; its placement allocation is on that node too.
    usage = await rig.placement_usage()
    assert usage[VM_NODE]["VCPU"] == 2 and usage[HOST]["VCPU"] == 1


async def test_an_image_for_a_kind_nobody_offers_gets_no_valid_host(rig: TwoNodeRig) -> None:
    uuid = await rig.boot(hypervisor_type="xen")
    row = await rig.get(uuid)
    assert row["vm_state"] == st.ERROR and row["node"] is None
    assert "ImagePropertiesFilter removed 2 of 2" in (await rig.faults(uuid))[-1]["message"]


async def test_operations_reach_the_instance_node(rig: TwoNodeRig) -> None:
    vm = await rig.boot(hypervisor_type="qemu")
    ct = await rig.boot(hypervisor_type="container")
    await rig.act(vm, "stop_instance", "stop", st.POWERING_OFF)
    assert (await rig.wait_settled(vm))["vm_state"] == st.STOPPED
    assert await rig.managers[VM_NODE].driver.get_power_state(vm) == PowerState.SHUTDOWN
    assert await rig.managers[HOST].driver.get_power_state(ct) == PowerState.RUNNING
    console = await rig.bus.call(compute_topic(HOST), "get_console_output", instance_uuid=ct, length=5)
    assert isinstance(console, str) and console
    await rig.act_delete(vm)
    await rig.wait(vm, lambda r: r["deleted"])
    assert await _on(rig, VM_NODE) == set() and await _on(rig, HOST) == {ct}
    with pytest.raises(NotFound):
        await rig.bus.call(compute_topic(HOST), "get_diagnostics", instance_uuid=vm)


async def test_hypervisors_services_and_the_shared_pool(rig: TwoNodeRig) -> None:
    await rig.boot(hypervisor_type="qemu")
    await rig.boot(hypervisor_type="container")
    async with rig.db.read() as conn:
        nodes = {n["hypervisor_hostname"]: n for n in await hostinfo.list_nodes(conn, rig.conf)}
        svc = (await conn.execute(sa.select(services.c.host).where(services.c.binary == "nova-compute"))).all()
        on_vm = await hostinfo.servers_on(conn, HOST, VM_NODE)
        on_ct = await hostinfo.servers_on(conn, HOST, HOST)
    # One nova-compute service per node, named like it (the container node's is the host's).
    assert sorted(r[0] for r in svc) == [HOST, VM_NODE]
    assert set(nodes) == {HOST, VM_NODE}
    assert {n["host"] for n in nodes.values()} == {HOST}
    assert nodes[VM_NODE]["service"]["host"] == VM_NODE and nodes[HOST]["service"]["host"] == HOST
    assert nodes[VM_NODE]["instance_types"] == ["qemu"] and nodes[HOST]["instance_types"] == ["container"]
    # Each node offers the whole 8-vCPU, 8 GiB, 100 GB machine; its own servers' use; the pool's free.
    assert [(n["vcpus"], n["memory_mb"], n["local_gb"]) for n in nodes.values()] == [(8, 8192, 100)] * 2
    assert [(n["running_vms"], n["vcpus_used"], n["memory_mb_used"]) for n in nodes.values()] == [(1, 1, 2048)] * 2
    assert [(n["free_ram_mb"], n["free_disk_gb"]) for n in nodes.values()] == [(8192 - 4096, 100 - 40)] * 2
    assert nodes[HOST]["details"]["pool"] == nodes[VM_NODE]["details"]["pool"] == f"{HOST}:pool"
    assert nodes[HOST]["details"]["allocation_ratios"]["VCPU"] == 4.0
    assert nodes[VM_NODE]["details"]["allocation_ratios"]["VCPU"] == 2.0
    assert len(on_vm) == 1 and len(on_ct) == 1
    # Statistics count the machine once and every server.
    stats = hostinfo.statistics(list(nodes.values()))
    assert (stats["count"], stats["vcpus"], stats["memory_mb"], stats["local_gb"]) == (2, 8, 8192, 100)
    assert (stats["vcpus_used"], stats["memory_mb_used"], stats["free_ram_mb"], stats["running_vms"]) == (2, 4096, 4096, 2)
    inv = await rig.placement.get_inventory(rig.managers[VM_NODE].node.node_uuid or "")
    assert inv["VCPU"].total == 8 and inv["VCPU"].allocation_ratio == 2.0


FLAVOR_WIDE = {"flavorid": "w4", "name": "w4", "vcpus": 4, "memory_mb": 64, "root_gb": 1, "ephemeral_gb": 0,
               "swap": 0, "extra_specs": {}}


async def test_vms_and_containers_draw_from_one_pool_weighed_by_their_ratios(rig: TwoNodeRig) -> None:
    # 8 cores: a 4-vCPU VM at 2:1 takes 2 cores, a 4-vCPU container at 4:1 takes 1 core.
    vms = [await rig.boot(FLAVOR_WIDE, hypervisor_type="qemu") for _ in range(3)]  # 6 cores
    cts = [await rig.boot(FLAVOR_WIDE, hypervisor_type="container") for _ in range(2)]  # 2 cores: full
    assert [(await rig.get(u))["vm_state"] for u in vms + cts] == [st.ACTIVE] * 5
    late = await rig.boot(FLAVOR_WIDE, hypervisor_type="container")
    assert (await rig.get(late))["vm_state"] == st.ERROR
    fault = (await rig.faults(late))[-1]["message"]
    # In full ("Not enough VCPU: requested 4, at most 0 free on any host.") or, when the filter tolls
    # need the room in the 255-character fault, "Out of VCPU.": first either way.
    assert fault.startswith(("No valid host was found. Not enough VCPU: requested 4, at most 0 free",
                             "No valid host was found. Out of VCPU.")), fault
    # The container node alone would have had 32 vCPUs: the VMs' claims shrank it.
    # A VM going gives its 2 cores back: two more containers fit, not more.
    await rig.act_delete(vms[0])
    await rig.wait(vms[0], lambda r: r["deleted"])
    more = [await rig.boot(FLAVOR_WIDE, hypervisor_type="container") for _ in range(3)]
    assert [(await rig.get(u))["vm_state"] for u in more] == [st.ACTIVE, st.ACTIVE, st.ERROR]


async def test_memory_is_one_pool_and_not_overcommitted(rig: TwoNodeRig) -> None:
    # 8 GiB: two 2 GiB VMs and two 2 GiB containers fill it whichever node holds what.
    for kind in ("qemu", "container", "qemu", "container"):
        assert (await rig.get(await rig.boot(hypervisor_type=kind)))["vm_state"] == st.ACTIVE
    late = await rig.boot(hypervisor_type="container")
    assert (await rig.get(late))["vm_state"] == st.ERROR
    fault = (await rig.faults(late))[-1]["message"]
    assert fault.startswith(("No valid host was found. Not enough MEMORY_MB: requested 2048, at most 0 free",
                             "No valid host was found. Out of MEMORY_MB.")), fault


async def test_claims_on_two_nodes_of_one_pool_never_overcommit_it(rig: TwoNodeRig) -> None:
    ct, vm = rig.managers[HOST].node.node_uuid or "", rig.managers[VM_NODE].node.node_uuid or ""
    # 8 cores = 32 container vCPUs or 16 VM vCPUs. A core's worth on each node first, so that
    # neither can fill the pool alone whichever node's claims the race favours (on PostgreSQL the
    # VM node's claims alone may take the rest: concurrent writers promise no interleaving).
    for kind, node, n in (("c", ct, 4), ("v", vm, 2)):
        assert all([bool(await rig.placement.claim(f"{kind}-first-{i}", node, {"VCPU": 1})) for i in range(n)])
    # Then 40 racing 1-vCPU claims on each node, for the 6 cores left.
    claims = [rig.placement.claim(f"{kind}-{i}", node, {"VCPU": 1}) for i in range(40) for kind, node in
              (("c", ct), ("v", vm))]
    won = [bool(c) for c in await asyncio.gather(*claims)]
    used = await rig.placement_usage()
    n_ct, n_vm = used.get(HOST, {}).get("VCPU", 0), used.get(VM_NODE, {}).get("VCPU", 0)
    assert n_ct + n_vm == sum(won) + 6 and n_ct >= 4 and n_vm >= 2
    assert n_ct / 4 + n_vm / 2 <= 8 and n_ct / 4 + n_vm / 2 > 8 - 0.5  # full, never over
    # Neither node is full on its own: the pool is what says no.
    assert n_ct < 32 and n_vm < 16
    assert "in the host's shared pool" in (await rig.placement.claim("one-more", ct, {"VCPU": 1})).reason


async def test_disabling_one_node_sends_new_work_to_the_other(rig: TwoNodeRig) -> None:
    async with rig.db.write() as conn:
        await conn.execute(sa.update(services).where(services.c.host == VM_NODE).values(disabled=True))
    vm = await rig.boot(hypervisor_type="qemu")
    ct = await rig.boot(hypervisor_type="container")
    assert (await rig.get(vm))["vm_state"] == st.ERROR and (await rig.get(ct))["vm_state"] == st.ACTIVE
    assert "ComputeFilter removed 1 of 2 hosts" in (await rig.faults(vm))[-1]["message"]
    async with rig.db.write() as conn:
        await conn.execute(sa.update(services).where(services.c.host == VM_NODE).values(disabled=False))
    assert (await rig.get(await rig.boot(hypervisor_type="qemu")))["vm_state"] == st.ACTIVE


async def test_power_sync_runs_per_node(rig: TwoNodeRig) -> None:
    vm = await rig.boot(hypervisor_type="qemu")
    ct = await rig.boot(hypervisor_type="container")
    vm_driver = rig.managers[VM_NODE].driver
    assert isinstance(vm_driver, FakeDriver)
    await vm_driver.power_off(vm)  # the guest shut itself down
    assert await sync_power_states(rig.managers[HOST].node) == 0  # not its instance
    assert await sync_power_states(rig.managers[VM_NODE].node) == 1
    assert (await rig.get(vm))["vm_state"] == st.STOPPED and (await rig.get(ct))["vm_state"] == st.ACTIVE


async def test_restart_reconciles_each_node(rig: TwoNodeRig) -> None:
    vm = await rig.boot(hypervisor_type="qemu")
    ct = await rig.boot(hypervisor_type="container")
    # Mid-build at the crash: the VM node's driver already runs it (QEMU outlives the agent).
    building = await rig.insert_instance(FLAVOR_SMALL, host=HOST, node=VM_NODE, task_state=st.SPAWNING)
    vm_driver = rig.managers[VM_NODE].driver
    assert isinstance(vm_driver, FakeDriver)
    await vm_driver.spawn(InstanceSpec(uuid=building, name="b", hostname="b", project_id="p1",
                                       flavor=flavor_spec(FLAVOR_SMALL), image=None))
    orphan = "00000000-0000-4000-8000-0000000000aa"
    await vm_driver.spawn(InstanceSpec(uuid=orphan, name="o", hostname="o", project_id="p1",
                                       flavor=flavor_spec(FLAVOR_SMALL), image=None))
    await rig.restart()
    adopted = await rig.get(building)
    assert (adopted["vm_state"], adopted["task_state"], adopted["node"]) == (st.ACTIVE, None, VM_NODE)
    assert (await rig.get(vm))["vm_state"] == st.ACTIVE and (await rig.get(ct))["vm_state"] == st.ACTIVE
    # The orphan went; each node kept its own guests and never reaped the other's.
    assert await _on(rig, VM_NODE) == {vm, building} and await _on(rig, HOST) == {ct}
    usage = await rig.placement_usage()
    assert usage[VM_NODE]["VCPU"] == 2 and usage[HOST]["VCPU"] == 1


async def test_kernel_and_ramdisk_resolve_for_the_project(rig: TwoNodeRig) -> None:
    kernel = rig.images.add(disk_format="aki", container_format="aki", visibility="public")
    ramdisk = rig.images.add(disk_format="ari", container_format="ari", visibility="private", owner="p1")
    root = rig.images.add(disk_format="qcow2", kernel_id=kernel, ramdisk_id=ramdisk, hypervisor_type="qemu")
    spec = await specs.image_spec(rig.images, root, project_id="p1", strict=True)
    assert spec is not None and spec.kernel_path.endswith(f"{kernel}.img") and spec.ramdisk_path.endswith(f"{ramdisk}.img")
    assert spec.properties["kernel_id"] == kernel  # the properties stay as they are
    # Another project cannot use p1's private ramdisk: a build fails, a power operation only logs.
    with pytest.raises(NotFound, match=f"ramdisk image {ramdisk}.*not visible to project p2"):
        await specs.image_spec(rig.images, root, project_id="p2", strict=True)
    lenient = await specs.image_spec(rig.images, root, project_id="p2")
    assert lenient is not None and lenient.ramdisk_path == "" and lenient.kernel_path


async def test_a_missing_kernel_fails_the_build_with_a_clear_fault(rig: TwoNodeRig) -> None:
    gone = "11111111-2222-4333-8444-555555555555"
    uuid = await rig.boot(hypervisor_type="qemu", kernel_id=gone)
    row = await rig.get(uuid)
    assert row["vm_state"] == st.ERROR and row["host"] is None
    message = (await rig.faults(uuid))[-1]["message"]
    assert f"Image {gone} could not be found" in message and "kernel image" in message
    assert await _on(rig, VM_NODE) == set()
    assert await rig.placement_usage() == {}


async def test_a_node_whose_driver_went_takes_no_new_servers(rig: TwoNodeRig) -> None:
    vm = await rig.boot(hypervisor_type="qemu")
    rig.node_types = {HOST: ("container",)}  # restarted without the VM driver
    await rig.restart()
    async with rig.db.read() as conn:
        names = {n["hypervisor_hostname"] for n in await hostinfo.list_nodes(conn, rig.conf)}
    assert names == {HOST, VM_NODE}  # kept: it still has vm
    late = await rig.boot(hypervisor_type="qemu")
    assert (await rig.get(late))["vm_state"] == st.ERROR  # NoValidHost, not a build stuck on a ghost node
    assert (await rig.get(vm))["node"] == VM_NODE
    async with rig.db.write() as conn:  # vm goes (as an admin would clean up)
        await conn.execute(sa.update(instances).where(instances.c.uuid == vm).values(deleted=True))
    await rig.restart()
    async with rig.db.read() as conn:
        names = {n["hypervisor_hostname"] for n in await hostinfo.list_nodes(conn, rig.conf)}
    assert names == {HOST}


async def test_a_host_without_a_node_named_like_it_keeps_one_service_named_like_it(rig: TwoNodeRig) -> None:
    vm = await rig.boot(hypervisor_type="qemu")
    rig.node_types = {VM_NODE: ("qemu",)}  # restarted with QEMU only
    await rig.restart()
    async with rig.db.read() as conn:
        names = sorted(r[0] for r in await conn.execute(
            sa.select(services.c.host).where(services.c.binary == "nova-compute")))
        nodes = {n["hypervisor_hostname"]: n for n in await hostinfo.list_nodes(conn, rig.conf)}
    # The host's service now runs the QEMU node; the QEMU node's own one went with no node to run.
    assert names == [HOST] and set(nodes) == {VM_NODE}
    assert nodes[VM_NODE]["service"]["host"] == HOST and nodes[VM_NODE]["service"]["up"]
    assert (await rig.get(vm))["vm_state"] == st.ACTIVE
    rig.node_types = NODE_TYPES  # both again: each node its own service
    await rig.restart()
    async with rig.db.read() as conn:
        names = sorted(r[0] for r in await conn.execute(
            sa.select(services.c.host).where(services.c.binary == "nova-compute")))
    assert names == [HOST, VM_NODE]
