"""The volume seam without a host: DiskSpec, the QEMU driver's block nodes, devices, record and
root ports (blockdev.py), and the runc driver's record and config.json binds (volhost.py). What
really attaches is tests/contract/test_driver_contract_volumes.py's."""

from __future__ import annotations

import json
import uuid as uuidlib
from pathlib import Path

import pytest

from cumulo.compute.drivers.base import CAPABILITY_PROTOCOLS, Capability, DiskSpec, NicSpec, Volumes
from cumulo.compute.drivers.nicrecord import PluggedNic
from cumulo.compute.drivers.qemu import blockdev, netdev
from cumulo.compute.drivers.qemu.process import VmConfig
from cumulo.compute.drivers.runc import volhost
from cumulo.errors import Conflict, DriverError

VID = "5f0c7c2e-8a1b-4d6e-9f00-1234567890ab"


def disk(**kw: object) -> DiskSpec:
    base: dict[str, object] = {"volume_id": VID, "path": f"/srv/state/volumes/{VID}.raw"}
    return DiskSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_diskspec_defaults_serial_and_round_trip() -> None:
    d = disk()
    assert d.device_name == "/dev/vdb" and d.kind == "file" and not d.read_only
    assert d.guest_serial == VID[:20]
    assert disk(serial="abc").guest_serial == "abc"
    assert DiskSpec.from_dict(d.to_dict()) == d
    with pytest.raises(ValueError, match="kind"):
        DiskSpec.from_dict({**d.to_dict(), "kind": "iscsi"})
    remote = disk(kind="nbd", path="nbd://198.18.0.2:10809/ab12", tls_dir="/srv/state/volumes/.run/nbd-keys/x",
                  nbd=(("export", "ab12"), ("psk_identity", "cumulo-x"), ("target_host", "198.18.0.2"),
                       ("target_port", "10809")))
    assert DiskSpec.from_dict(remote.to_dict()) == remote and remote.target["export"] == "ab12"
    assert CAPABILITY_PROTOCOLS[Capability.VOLUMES] is Volumes


def test_qemu_nodes_and_devices_derive_from_the_volume_id() -> None:
    d = disk()
    node = blockdev.node_name(VID)
    assert node == "vol-5f0c7c2e8a1b4d6e9f00" and len(blockdev.file_node(VID)) < 32
    proto, fmt = blockdev.node_props(d)
    assert proto == {"driver": "file", "filename": d.path, "node-name": node + "-file", "discard": "unmap"}
    assert fmt == {"driver": "raw", "file": node + "-file", "node-name": node, "discard": "unmap"}
    ro_proto, ro_fmt = blockdev.node_props(disk(read_only=True, kind="host_device"))
    assert ro_proto["driver"] == "host_device" and ro_proto["read-only"] and ro_fmt["read-only"]
    q35 = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="q35", hotplug_ports=netdev.hotplug_ports("q35", 1))
    assert blockdev.device_props(q35, d, "hp1") == {
        "driver": "virtio-blk-pci", "drive": node, "id": node + "-dev", "serial": VID[:20], "bus": "hp1"}
    micro = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="microvm")
    assert blockdev.device_props(micro, d, "")["driver"] == "virtio-blk-device"
    argv = blockdev.disk_argv(q35, [(d, "hp1")])
    assert argv[0] == "-blockdev" and json.loads(argv[1])["filename"] == d.path  # JSON: a path never splits
    assert argv[4] == "-device" and argv[5].startswith(f"virtio-blk-pci,drive={node},id={node}-dev,serial=")
    for bad in (disk(path="relative.raw"), disk(path="/a,b.raw"), disk(volume_id="x")):
        with pytest.raises(DriverError):
            blockdev.check(bad)


def test_qemu_root_ports_are_shared_between_nics_and_volumes() -> None:
    q35 = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="q35", hotplug_ports=netdev.hotplug_ports("q35", 2))
    other = disk(volume_id=str(uuidlib.uuid4()))
    rec = {"disks": blockdev.record_docs(blockdev.boot_disks(q35, (disk(),), first_port=1))}
    assert blockdev.recorded(rec) == [(disk(), "hp1")]
    assert blockdev.find(rec, VID) == (disk(), "hp1") and blockdev.find(rec, other.volume_id) is None
    assert blockdev.free_port(q35, rec, live=True) == "hp0"
    nic = PluggedNic(0, NicSpec(
        port_id="p", mac="fa:16:3e:00:00:01", netns="cnet-x", bridge="br0", device="tapx",
        addresses=("10.0.0.5/24",), gateway=None))
    assert netdev.free_port(q35, [(nic, "hp0")], live=True, taken=blockdev.taken_ports(rec)) == "hp2"
    full = {**rec, "disks": blockdev.record_docs([(disk(volume_id=str(uuidlib.uuid4())), f"hp{k}")
                                                   for k in range(q35.hotplug_ports)])}
    with pytest.raises(Conflict, match="no free PCIe slot"):
        blockdev.free_port(q35, full, live=True)
    # Stopped with every port taken: the root complex takes it at the next start.
    assert blockdev.free_port(q35, full, live=False) == ""
    # A q35 server made with neither NICs nor volumes has the spare ports all the same.
    bare = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="q35", hotplug_ports=netdev.hotplug_ports("q35", 0))
    assert blockdev.free_port(bare, {}, live=True) == "hp0"
    # A record made before that (no ports): a hot plug is refused, naming the cure; stopped, the
    # driver gives it the spare ports first (with_spare_ports), so the volume takes one.
    legacy = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="q35")
    with pytest.raises(Conflict, match="no free PCIe slot.*without hot-plug root ports"):
        blockdev.free_port(legacy, {}, live=True)
    assert blockdev.free_port(netdev.with_spare_ports(legacy), {}, live=False) == "hp0"
    micro = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="microvm")
    with pytest.raises(Conflict, match="hw_machine_type=q35"):
        blockdev.free_port(micro, {}, live=True)
    assert blockdev.free_port(micro, {}, live=False) == ""


def test_runc_record_and_config_binds(tmp_path: Path) -> None:
    idir = tmp_path / "runc" / "u1"
    idir.mkdir(parents=True)
    config = {"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                         {"destination": "/mnt/volumes/old", "type": "bind", "source": "/x"}]}
    (idir / "config.json").write_text(json.dumps(config))
    d = disk(read_only=True)
    volhost.write(idir, [d.to_dict(), {"junk": 1}])
    assert volhost.read(idir) == [d.to_dict()]
    volhost.sync_config(tmp_path, idir, [d.to_dict()], "config.json")
    mounts = json.loads((idir / "config.json").read_text())["mounts"]
    assert mounts == [{"destination": "/proc", "type": "proc", "source": "proc"},
                      {"destination": f"/mnt/volumes/{VID}", "type": "bind",
                       "source": str(tmp_path / "volmounts" / "u1" / VID), "options": ["rbind", "nosuid", "nodev", "ro"]}]
    volhost.sync_config(tmp_path, idir, [], "config.json")
    assert json.loads((idir / "config.json").read_text())["mounts"] == [mounts[0]]
    volhost.write(idir, [])
    assert not (idir / volhost.VOLUMES).exists()


@pytest.mark.parametrize("bad", [disk(volume_id="../../etc"), disk(volume_id=VID.upper()), disk(path="rel.raw"),
                                 disk(volume_id=VID.replace("-", ""))])
def test_volume_ids_must_be_canonical_uuids(bad: DiskSpec) -> None:
    with pytest.raises(DriverError):
        volhost.check_disk(bad)
    with pytest.raises(DriverError):
        blockdev.check(bad)
    volhost.check_disk(disk())
    blockdev.check(disk())
