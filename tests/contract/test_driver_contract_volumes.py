"""More of the driver contract: the VOLUMES capability (DiskSpec at spawn, attach_volume /
detach_volume / extend_volume), with real files, loop devices and QEMU.

Volumes are sparse raw files in the test's tmp dir (what the block store makes). The fake driver
records; runc mounts an ext4 on a loop device into a running container at /mnt/volumes/<id>;
QEMU hot plugs virtio-blk into one running q35 tiny VM (TCG boots are slow: one VM), whose
user_data names every /dev/vd* it sees on the console with its serial, and whether the bytes a
container wrote are on it. Everything is removed by its own name: containers and VMs by the
drivers' destroy, QEMU processes by pidfile under the tmp dir, loop devices by backing file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import _qemu_guest as guest
import pytest
from test_runc_driver import (  # noqa: F401  # runc_driver: a fixture
    RUNC_MISSING,
    assert_nothing_left,
    runc_driver,
    spec_for,
)

from cumulo import conf as conf_mod
from cumulo.blockstore import loop
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import Capability, DiskSpec, FlavorSpec, InstanceSpec, Volumes, supports
from cumulo.compute.drivers.fake import FakeDriver
from cumulo.compute.drivers.qemu import QemuDriver, blockdev, netdev
from cumulo.compute.drivers.runc import RuncDriver, volhost
from cumulo.errors import Conflict, DriverError, NotFound

SLEEPER = "/bin/sh -c 'exec sleep 600'"
MIB = 1 << 20


def new_volume(tmp: Path, size: int = 64 * MIB) -> DiskSpec:
    vid = str(uuidlib.uuid4())
    path = tmp / "vols" / f"{vid}.raw"
    path.parent.mkdir(exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
    return DiskSpec(volume_id=vid, path=str(path), device_name="/dev/vdb")


def loop_devices(disk: DiskSpec) -> list[str]:
    return loop.devices_of(disk.path)


def in_container(drv: RuncDriver, uuid: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["runc", "--root", str(drv.runc.root), "exec", f"cumulo-{uuid}", *argv]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)  # noqa: S603


@pytest.fixture
def made_volumes(tmp_path: Path) -> Iterator[list[DiskSpec]]:
    """Volumes a test makes; no loop device may hold one at the end (released by backing file)."""
    made: list[DiskSpec] = []
    yield made
    left = {d.volume_id: loop_devices(d) for d in made if loop_devices(d)}
    for devs in left.values():
        for dev in devs:
            subprocess.run(["losetup", "-d", dev], check=False)  # noqa: S603, S607
    assert left == {}


# -- fake -------------------------------------------------------------------------------------------


async def test_fake_driver_records_volumes(tmp_path: Path) -> None:
    drv = load_driver("fake", conf_mod.load(env={}, state_dir=tmp_path / "state"), "h", local=False)
    assert isinstance(drv, FakeDriver) and supports(drv, Capability.VOLUMES) and isinstance(drv, Volumes)
    disk = new_volume(tmp_path)
    spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name="f", hostname="f", project_id="p",
                        flavor=FlavorSpec(1, 64, 1), image=None, disks=(disk,))
    await drv.spawn(spec)
    assert await drv.attached_volumes(spec.uuid) == [disk.volume_id]
    other = new_volume(tmp_path)
    await drv.attach_volume(spec.uuid, other)
    await drv.attach_volume(spec.uuid, other)  # again: a no-op
    await drv.extend_volume(spec.uuid, other.volume_id, 128 * MIB)
    await drv.detach_volume(spec.uuid, disk.volume_id)
    await drv.detach_volume(spec.uuid, disk.volume_id)  # not attached: fine
    assert await drv.attached_volumes(spec.uuid) == [other.volume_id]
    with pytest.raises(NotFound):
        await drv.extend_volume(spec.uuid, disk.volume_id, 128 * MIB)


# -- runc -------------------------------------------------------------------------------------------


@pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "root and runc present")
async def test_container_attach_write_detach_reattach_extend(
        runc_driver: RuncDriver, tmp_path: Path, made_volumes: list[DiskSpec]) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "vol-c", os_command_line=SLEEPER)
    await runc_driver.spawn(spec)
    disk = new_volume(tmp_path)
    made_volumes.append(disk)
    where = volhost.container_path(disk.volume_id)

    started = time.monotonic()
    await runc_driver.attach_volume(spec.uuid, disk)
    attach_s = time.monotonic() - started
    await runc_driver.attach_volume(spec.uuid, disk)  # again: a no-op
    assert await runc_driver.attached_volumes(spec.uuid) == [disk.volume_id]
    assert await loop.fs_type(loop_devices(disk)[0]) == "ext4"  # made on the blank volume
    in_container(runc_driver, spec.uuid, "sh", "-c", f"echo VOLDATA-{disk.volume_id} > {where}/data && sync")
    assert in_container(runc_driver, spec.uuid, "cat", f"{where}/data").stdout.strip() == f"VOLDATA-{disk.volume_id}"

    # A process of the container holding a file there: detach refuses, naming it.
    holder = subprocess.Popen(["runc", "--root", str(runc_driver.runc.root), "exec", f"cumulo-{spec.uuid}",  # noqa: S603, S607
                               "sh", "-c", f"exec 3< {where}/data; : > /tmp/held; exec sleep 600"])
    try:
        deadline = time.monotonic() + 30
        while in_container(runc_driver, spec.uuid, "test", "-e", "/tmp/held", check=False).returncode != 0:
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never held the file"
            await asyncio.sleep(0.1)
        with pytest.raises(Conflict, match="sleep.*force"):
            await runc_driver.detach_volume(spec.uuid, disk.volume_id)
        assert loop_devices(disk)  # still attached
        assert in_container(runc_driver, spec.uuid, "cat", f"{where}/data").returncode == 0
    finally:
        in_container(runc_driver, spec.uuid, "sh", "-c", "for p in $(pidof sleep); do [ $p = 1 ] || kill $p; done",
                     check=False)
        holder.wait(timeout=30)
    await runc_driver.detach_volume(spec.uuid, disk.volume_id)
    await runc_driver.detach_volume(spec.uuid, disk.volume_id)  # not attached: fine
    assert loop_devices(disk) == []
    assert in_container(runc_driver, spec.uuid, "cat", f"{where}/data", check=False).returncode != 0
    assert not volhost.mount_point(runc_driver.dir.parent, spec.uuid, disk.volume_id).exists()

    # An attach cut short after its record (a crash): attaching again makes it whole.
    await asyncio.to_thread(volhost.write, runc_driver.dir / spec.uuid, [disk.to_dict()])
    await runc_driver.attach_volume(spec.uuid, disk)
    # Attached again: the data is there; it stays across a stop and start.
    await runc_driver.power_off(spec.uuid)
    await runc_driver.power_on(spec)
    assert in_container(runc_driver, spec.uuid, "cat", f"{where}/data").stdout.strip() == f"VOLDATA-{disk.volume_id}"

    # Extend: the file grows (the store's job), the filesystem follows.
    before = int(in_container(runc_driver, spec.uuid, "df", "-k", where).stdout.splitlines()[-1].split()[1])
    with open(disk.path, "r+b") as fh:
        fh.truncate(128 * MIB)
    await runc_driver.extend_volume(spec.uuid, disk.volume_id, 128 * MIB)
    after = int(in_container(runc_driver, spec.uuid, "df", "-k", where).stdout.splitlines()[-1].split()[1])
    assert after > before * 1.8, (before, after)
    assert in_container(runc_driver, spec.uuid, "cat", f"{where}/data").stdout.strip() == f"VOLDATA-{disk.volume_id}"

    # Extend while a process holds it (and the host cannot grow a mounted ext4): the growth waits
    # for the next detach; an attach after it has the grown filesystem.
    holder = subprocess.Popen(["runc", "--root", str(runc_driver.runc.root), "exec", f"cumulo-{spec.uuid}",  # noqa: S603, S607
                               "sh", "-c", f"exec 3< {where}/data; : > /tmp/held2; exec sleep 600"])
    try:
        deadline = time.monotonic() + 30
        while in_container(runc_driver, spec.uuid, "test", "-e", "/tmp/held2", check=False).returncode != 0:
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never held the file"
            await asyncio.sleep(0.1)
        with open(disk.path, "r+b") as fh:
            fh.truncate(192 * MIB)
        await runc_driver.extend_volume(spec.uuid, disk.volume_id, 192 * MIB)
        held = int(in_container(runc_driver, spec.uuid, "df", "-k", where).stdout.splitlines()[-1].split()[1])
        if loop.can_grow_online():
            assert held > after * 1.3
        else:
            assert held == after and volhost.read(runc_driver.dir / spec.uuid)[0].get("grow") is True
    finally:
        in_container(runc_driver, spec.uuid, "sh", "-c", "for p in $(pidof sleep); do [ $p = 1 ] || kill $p; done",
                     check=False)
        holder.wait(timeout=30)
    await runc_driver.detach_volume(spec.uuid, disk.volume_id)
    await runc_driver.attach_volume(spec.uuid, disk)
    grown = int(in_container(runc_driver, spec.uuid, "df", "-k", where).stdout.splitlines()[-1].split()[1])
    assert grown > after * 1.3, (after, grown)

    await runc_driver.destroy(spec.uuid)
    assert loop_devices(disk) == []
    assert not (runc_driver.dir.parent / "volmounts" / spec.uuid).exists()
    print(f"container attach {attach_s * 1000:.0f} ms")


@pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "root and runc present")
async def test_container_attach_failures_leave_nothing(
        runc_driver: RuncDriver, tmp_path: Path, made_volumes: list[DiskSpec]) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "vol-f", os_command_line=SLEEPER)
    await runc_driver.spawn(spec)
    # A volume holding something a container cannot mount (a swap signature): a Conflict.
    odd = new_volume(tmp_path)
    made_volumes.append(odd)
    subprocess.run(["mkswap", odd.path], check=True, capture_output=True)  # noqa: S603, S607
    with pytest.raises(Conflict, match="swap"):
        await runc_driver.attach_volume(spec.uuid, odd)
    # A volume file that does not exist: an error, nothing left.
    gone = dataclasses.replace(new_volume(tmp_path), path=str(tmp_path / "vols" / "missing.raw"))
    with pytest.raises(Exception, match="loop|No such|missing"):
        await runc_driver.attach_volume(spec.uuid, gone)
    # A volume id that is not a canonical UUID never names a dir or a mount.
    with pytest.raises(DriverError, match="UUID"):
        await runc_driver.attach_volume(spec.uuid, dataclasses.replace(odd, volume_id="../../escape"))
    for d in (odd, gone):
        assert loop_devices(d) == []
        assert not volhost.mount_point(runc_driver.dir.parent, spec.uuid, d.volume_id).exists()
    assert volhost.read(runc_driver.dir / spec.uuid) == []
    assert in_container(runc_driver, spec.uuid, "ls", volhost.MOUNT_ROOT, check=False).stdout.strip() == ""
    await runc_driver.destroy(spec.uuid)
    # A spawn with a volume it cannot mount fails and leaves nothing; one with a good volume has it.
    bad = dataclasses.replace(spec_for(tmp_path, "vol-sb", os_command_line=SLEEPER), disks=(odd,))
    with pytest.raises(DriverError, match="swap"):
        await runc_driver.spawn(bad)
    assert loop_devices(odd) == [] and not (runc_driver.dir / bad.uuid).exists()
    good = new_volume(tmp_path)
    made_volumes.append(good)
    ok = dataclasses.replace(spec_for(tmp_path, "vol-sg", os_command_line=SLEEPER), disks=(good,))
    await runc_driver.spawn(ok)
    assert in_container(runc_driver, ok.uuid, "grep", f" {volhost.container_path(good.volume_id)} ext4 ",
                        "/proc/mounts").returncode == 0
    # Multiattach on one host: a second container shares the device; detaching one leaves the other's.
    await runc_driver.spawn(spec2 := spec_for(tmp_path, "vol-m", os_command_line=SLEEPER))
    await runc_driver.attach_volume(spec2.uuid, good)
    in_container(runc_driver, spec2.uuid, "sh", "-c", f"echo shared > {volhost.container_path(good.volume_id)}/s")
    await runc_driver.detach_volume(spec2.uuid, good.volume_id)
    assert in_container(runc_driver, ok.uuid, "cat", f"{volhost.container_path(good.volume_id)}/s").stdout == "shared\n"
    await runc_driver.destroy(spec2.uuid)
    await runc_driver.destroy(ok.uuid)
    assert loop_devices(good) == []
    assert_nothing_left(runc_driver, tmp_path)


# -- QEMU -------------------------------------------------------------------------------------------

WATCHER = b"""#!/bin/sh
( seen=""
  while :; do
    for d in /sys/block/vd*; do
      n=${d##*/}; [ -e "$d" ] || continue
      case " $seen " in *" $n "*) continue ;; esac
      seen="$seen $n"
      s=$(cat $d/serial 2>/dev/null)
      echo "VOLTEST-SEEN $n $s"
      if grep -q "VOLDATA-" /dev/$n 2>/dev/null; then
        mkdir -p /mnt/$n && mount -t ext4 /dev/$n /mnt/$n && {
          echo "VOLTEST-READ $n $(cat /mnt/$n/data)"
          echo "VMDATA-$s" > /mnt/$n/from-vm
          umount /mnt/$n && echo "VOLTEST-WROTE $n"
        }
      elif [ -n "$s" ]; then
        mke2fs -q /dev/$n && mkdir -p /mnt/$n && mount -t ext4 /dev/$n /mnt/$n && {
          echo "VMFIRST-$s" > /mnt/$n/first
          umount /mnt/$n && echo "VOLTEST-FORMATTED $n"
        }
      fi
    done
    for n in $seen; do [ -e /sys/block/$n ] || { echo "VOLTEST-GONE $n"; seen=$(echo " $seen " | sed "s/ $n / /"); }; done
    sleep 0.3
  done ) </dev/null >/dev/console 2>&1 &
"""


@pytest.fixture
async def qemu_driver(tmp_path: Path) -> AsyncIterator[QemuDriver]:
    async with guest.qemu_driver(tmp_path, "vol-host", stop_timeout=5.0) as drv:
        yield drv


async def query_nodes(drv: QemuDriver, uuid: str) -> set[str]:
    res = await drv._qmp(drv._layout(uuid), "query-named-block-nodes")
    return {str(n.get("node-name")) for n in res}


@pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "root and runc present")
async def test_vm_boot_disk_hot_plug_and_unplug_and_container_data(
        qemu_driver: QemuDriver, runc_driver: RuncDriver, tmp_path: Path,  # noqa: F811
        made_volumes: list[DiskSpec]) -> None:
    boot_disk, hot = new_volume(tmp_path), new_volume(tmp_path)
    made_volumes += [boot_disk, hot]
    # The container writes first (the hot volume then holds an ext4 with its file).
    ctr = spec_for(tmp_path, "vol-w", os_command_line=SLEEPER)
    await runc_driver.spawn(ctr)
    await runc_driver.attach_volume(ctr.uuid, hot)
    where = volhost.container_path(hot.volume_id)
    in_container(runc_driver, ctr.uuid, "sh", "-c", f"echo VOLDATA-{hot.volume_id} > {where}/data && sync")
    await runc_driver.detach_volume(ctr.uuid, hot.volume_id)
    assert loop_devices(hot) == []

    image = guest.tiny_image(hw_machine_type="q35")
    vm = InstanceSpec(uuid=str(uuidlib.uuid4()), name="vol-vm", hostname="vol-vm", project_id="p",
                      flavor=FlavorSpec(vcpus=1, memory_mb=256, root_gb=1), image=image, user_data=WATCHER,
                      disks=(boot_disk,))
    await qemu_driver.spawn(vm)
    rec = qemu_driver.read_record(qemu_driver.dir / vm.uuid)
    if rec["vm"]["machine"] != "q35":
        pytest.skip("the tiny VM did not boot on q35 here")
    serial = boot_disk.volume_id[:20]
    # The boot volume is blank: the guest formats it (busybox mke2fs), mounts it and writes.
    await guest.wait_console(qemu_driver, vm.uuid, lambda t: f"{serial}" in t and "VOLTEST-FORMATTED" in t,
                             "the boot volume formatted and written by the guest")
    assert blockdev.node_name(boot_disk.volume_id) in await query_nodes(qemu_driver, vm.uuid)

    started = time.monotonic()
    await qemu_driver.attach_volume(vm.uuid, hot)
    attach_s = time.monotonic() - started
    await qemu_driver.attach_volume(vm.uuid, hot)  # again: a no-op
    assert await qemu_driver.attached_volumes(vm.uuid) == [boot_disk.volume_id, hot.volume_id]
    text = await guest.wait_console(qemu_driver, vm.uuid, lambda t: "VOLTEST-WROTE" in t,
                                    "the hot-plugged volume mounted, read and written by the guest")
    line = next(ln for ln in text.splitlines() if "VOLTEST-SEEN" in ln and hot.volume_id[:20] in ln)
    dev = line.split()[line.split().index("VOLTEST-SEEN") + 1]
    assert dev.startswith("vd")
    assert f"VOLTEST-READ {dev} VOLDATA-{hot.volume_id}" in text  # the container's file, read in the VM

    # A stop and start (a new QEMU, its argv from the record) keeps both volumes, in their ports.
    seen = text.count(f"{hot.volume_id[:20]}")
    await qemu_driver.power_off(vm.uuid, timeout=0)
    await qemu_driver.power_on(vm)
    assert {blockdev.node_name(boot_disk.volume_id), blockdev.node_name(hot.volume_id)} <= await query_nodes(
        qemu_driver, vm.uuid)
    text = await guest.wait_console(qemu_driver, vm.uuid, lambda t: t.count(f"{hot.volume_id[:20]}") > seen and
                                    t.count("VOLTEST-WROTE") >= 2, "the volume again after the restart")
    line = [ln for ln in text.splitlines() if "VOLTEST-SEEN" in ln and hot.volume_id[:20] in ln][-1]
    dev = line.split()[line.split().index("VOLTEST-SEEN") + 1]  # its name in the restarted guest

    # Extend: block_resize tells the guest.
    with open(hot.path, "r+b") as fh:
        fh.truncate(128 * MIB)
    await qemu_driver.extend_volume(vm.uuid, hot.volume_id, 128 * MIB)
    res = await qemu_driver._qmp(qemu_driver._layout(vm.uuid), "query-block")
    sizes = {str((b.get("inserted") or {}).get("node-name")): int((b.get("inserted") or {}).get("image", {}).get("virtual-size", 0))
             for b in res}
    assert sizes.get(blockdev.node_name(hot.volume_id)) == 128 * MIB, sizes

    await qemu_driver.detach_volume(vm.uuid, hot.volume_id)
    await guest.wait_console(qemu_driver, vm.uuid, lambda t: f"VOLTEST-GONE {dev}" in t, "the unplug in the guest")
    assert blockdev.node_name(hot.volume_id) not in await query_nodes(qemu_driver, vm.uuid)

    # An attach cut short after its record (a crash): attaching again plugs it; then detached.
    rec = qemu_driver.read_record(qemu_driver.dir / vm.uuid)
    rec["disks"] = blockdev.record_docs([*blockdev.recorded(rec), (hot, "hp2")])
    await qemu_driver.write_record(qemu_driver.dir / vm.uuid, rec)
    await qemu_driver.attach_volume(vm.uuid, hot)
    assert blockdev.node_name(hot.volume_id) in await query_nodes(qemu_driver, vm.uuid)
    await qemu_driver.detach_volume(vm.uuid, hot.volume_id)
    assert blockdev.node_name(hot.volume_id) not in await query_nodes(qemu_driver, vm.uuid)
    assert [d.volume_id for d, _b in blockdev.recorded(qemu_driver.read_record(qemu_driver.dir / vm.uuid))] == [
        boot_disk.volume_id]
    await qemu_driver.destroy(vm.uuid)

    # ... and what the VM wrote is read by the container (the reverse direction), on both volumes.
    await runc_driver.attach_volume(ctr.uuid, hot)
    assert in_container(runc_driver, ctr.uuid, "cat", f"{where}/from-vm").stdout.strip() == f"VMDATA-{hot.volume_id[:20]}"
    await runc_driver.attach_volume(ctr.uuid, boot_disk)
    first = f"{volhost.container_path(boot_disk.volume_id)}/first"
    assert in_container(runc_driver, ctr.uuid, "cat", first).stdout.strip() == f"VMFIRST-{serial}"
    await runc_driver.destroy(ctr.uuid)
    assert loop_devices(hot) == []
    print(f"VM attach {attach_s * 1000:.0f} ms")


async def test_running_microvm_refuses_volume_hot_plug(qemu_driver: QemuDriver, tmp_path: Path) -> None:
    vm = InstanceSpec(uuid=str(uuidlib.uuid4()), name="vol-micro", hostname="vol-micro", project_id="p",
                      flavor=FlavorSpec(vcpus=1, memory_mb=256, root_gb=1), image=guest.tiny_image())
    await qemu_driver.spawn(vm)
    if qemu_driver.read_record(qemu_driver.dir / vm.uuid)["vm"]["machine"] != "microvm":
        await qemu_driver.destroy(vm.uuid)
        pytest.skip("the tiny VM does not boot on microvm here")
    disk = new_volume(tmp_path)
    with pytest.raises(Conflict, match="hw_machine_type=q35"):
        await qemu_driver.attach_volume(vm.uuid, disk)
    assert blockdev.find(qemu_driver.read_record(qemu_driver.dir / vm.uuid), disk.volume_id) is None
    await qemu_driver.destroy(vm.uuid)


async def test_q35_server_made_without_nics_or_volumes_takes_a_hot_plugged_volume(
        qemu_driver: QemuDriver, tmp_path: Path, made_volumes: list[DiskSpec]) -> None:
    """A q35 server booted with neither NICs nor volumes (`--nic none`) has the spare root ports,
    so a volume hot plugs into it while it runs (QEMU's device_add into the port; the guest's boot
    is not waited for: what the guest sees of a hot plug is the test above's). A record made
    before every q35 server had ports gets them at its cold start, and its volume on the root
    complex stays there."""
    vm = InstanceSpec(uuid=str(uuidlib.uuid4()), name="vol-bare", hostname="vol-bare", project_id="p",
                      flavor=FlavorSpec(vcpus=1, memory_mb=256, root_gb=1), image=guest.tiny_image(hw_machine_type="q35"))
    await qemu_driver.spawn(vm)
    idir = qemu_driver.dir / vm.uuid
    rec = qemu_driver.read_record(idir)
    if rec["vm"]["machine"] != "q35":
        await qemu_driver.destroy(vm.uuid)
        pytest.skip("the tiny VM did not boot on q35 here")
    assert rec["vm"]["hotplug_ports"] == netdev.SPARE_PORTS and "nics" not in rec and "disks" not in rec
    assert [a for a in rec["argv"] if a.startswith("pcie-root-port")] == [
        f"pcie-root-port,id=hp{k},bus=pcie.0,chassis={k + 1}" for k in range(netdev.SPARE_PORTS)]
    first, second = new_volume(tmp_path), new_volume(tmp_path)
    made_volumes += [first, second]
    await qemu_driver.attach_volume(vm.uuid, first)  # running: hot plugged
    assert blockdev.find(qemu_driver.read_record(idir), first.volume_id) == (first, "hp0")
    assert blockdev.node_name(first.volume_id) in await query_nodes(qemu_driver, vm.uuid)
    found = await qemu_driver._qmp(qemu_driver._layout(vm.uuid), "qom-list", {"path": "/machine/peripheral"})
    assert blockdev.device_id(first.volume_id) in {p.get("name") for p in found}

    # The same server as a record made without ports, its volume on the root complex (attached
    # while stopped): the cold start adds the spare ports and keeps the volume where it was.
    await qemu_driver.power_off(vm.uuid, timeout=0)
    rec = qemu_driver.read_record(idir)
    rec["vm"]["hotplug_ports"] = 0
    rec["disks"] = blockdev.record_docs([(first, "")])
    await qemu_driver.write_record(idir, rec)
    await qemu_driver.power_on(vm)
    rec = qemu_driver.read_record(idir)
    assert rec["vm"]["hotplug_ports"] == netdev.SPARE_PORTS
    assert len([a for a in rec["argv"] if a.startswith("pcie-root-port")]) == netdev.SPARE_PORTS
    assert blockdev.find(rec, first.volume_id) == (first, "")
    assert "bus=" not in next(a for a in rec["argv"] if a.startswith(f"virtio-blk-pci,drive={blockdev.node_name(first.volume_id)}"))
    await qemu_driver.attach_volume(vm.uuid, second)
    assert blockdev.find(qemu_driver.read_record(idir), second.volume_id) == (second, "hp0")
    assert {blockdev.node_name(first.volume_id), blockdev.node_name(second.volume_id)} <= await query_nodes(
        qemu_driver, vm.uuid)
    await qemu_driver.destroy(vm.uuid)
