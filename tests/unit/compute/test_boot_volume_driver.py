"""Boot from volume on the driver side without a host: a DiskSpec with boot_index 0 is the root
disk (InstanceSpec.root_disk); the QEMU driver puts the volume's raw node where the image's
overlay goes (first on the bus, serial = volume id, firmware bootindex unless a kernel is given)
and keeps it out of the root ports. What really boots is tests/system/test_volume_boot_cli.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumulo.compute.drivers.base import DiskSpec, FlavorSpec, InstanceSpec
from cumulo.compute.drivers.qemu import blockdev, netdev
from cumulo.compute.drivers.qemu.process import Layout, VmConfig, build_argv
from cumulo.errors import DriverError

ROOT = "5f0c7c2e-8a1b-4d6e-9f00-1234567890ab"
DATA = "6a0c7c2e-8a1b-4d6e-9f00-1234567890ab"


def disk(vid: str, **kw: object) -> DiskSpec:
    return DiskSpec(volume_id=vid, path=f"/srv/state/volumes/{vid}.raw", **kw)  # type: ignore[arg-type]


def test_the_root_disk_is_the_boot_index_0_volume_and_round_trips() -> None:
    root = disk(ROOT, device_name="/dev/vda", boot_index=0)
    spec = InstanceSpec(uuid="u", name="n", hostname="h", project_id="p", flavor=FlavorSpec(1, 256, 0),
                        image=None, disks=(disk(DATA), root))
    assert spec.root_disk == root and root.is_root and not disk(DATA).is_root
    assert DiskSpec.from_dict(root.to_dict()) == root
    assert "boot_index" not in disk(DATA).to_dict()  # a data volume's record is what it was
    assert InstanceSpec(uuid="u", name="n", hostname="h", project_id="p", flavor=FlavorSpec(1, 256, 1),
                        image=None).root_disk is None


@pytest.mark.parametrize(("machine", "kernel", "bootindex"), [
    ("q35", False, "bootindex=1"), ("q35", True, None), ("microvm", True, None)])
def test_the_root_volume_replaces_the_overlay(machine: str, kernel: bool, bootindex: str | None) -> None:
    root = disk(ROOT, boot_index=0)
    cfg = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine=machine, kernel=kernel, root_volume=ROOT,
                   root_format="raw", hotplug_ports=netdev.hotplug_ports(machine, 2))
    recorded = blockdev.boot_disks(cfg, (root, disk(DATA)), 0)
    # The root sits on the root complex; the data volume takes the first root port (q35).
    assert recorded[0] == (root, "")
    assert recorded[1][1] == ("hp0" if machine == "q35" else "")
    found, others = blockdev.split_root(cfg, recorded)
    assert found == root and [d.volume_id for d, _b in others] == [DATA]
    layout = Layout(Path("/srv/qemu/x"))
    argv = build_argv(layout, cfg, blockdev.root_argv(cfg, root))
    assert str(layout.disk) not in " ".join(argv)
    nodes = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-blockdev" and argv[i + 1].startswith("{")]
    assert nodes[0]["filename"] == root.path and nodes[1]["driver"] == "raw"
    dev = next(argv[i + 1] for i, a in enumerate(argv) if a == "-device" and "vol-" in argv[i + 1])
    assert f"serial={ROOT[:20]}" in dev and "bus=" not in dev
    assert (bootindex in dev) if bootindex else "bootindex" not in dev
    # The root comes before the config drive: the guest sees it first (/dev/vda).
    assert argv.index(dev) < argv.index(next(a for a in argv if "node-name=config" in a))


def test_a_root_volume_missing_from_the_record_is_an_error() -> None:
    cfg = VmConfig(memory_mb=256, vcpus=1, accel="tcg", root_volume=ROOT)
    with pytest.raises(DriverError, match="root volume"):
        blockdev.split_root(cfg, [(disk(DATA), "")])
    plain = VmConfig(memory_mb=256, vcpus=1, accel="tcg")
    assert blockdev.split_root(plain, [(disk(DATA), "")]) == (None, [(disk(DATA), "")])


def test_a_swap_disk_follows_the_ephemeral_one_and_carries_a_swap_signature(tmp_path: Path) -> None:
    import asyncio
    import shutil

    from cumulo.compute.drivers.qemu import disks

    cfg = VmConfig(memory_mb=256, vcpus=1, accel="tcg", ephemeral=True, swap=True)
    layout = Layout(tmp_path)
    argv = " ".join(build_argv(layout, cfg))
    assert argv.index("node-name=ephemeral") < argv.index("node-name=swap") < argv.index("node-name=config")
    assert str(layout.swap) in argv
    assert "node-name=swap" not in " ".join(build_argv(layout, VmConfig(memory_mb=256, vcpus=1, accel="tcg")))
    if shutil.which("mkswap") is None:
        pytest.skip("no mkswap here")
    asyncio.run(disks.create_swap(layout.swap, 8))
    assert layout.swap.stat().st_size == 8 << 20 and layout.swap.stat().st_blocks * 512 < 1 << 20  # sparse
    with open(layout.swap, "rb") as fh:
        fh.seek(4096 - 10)
        assert fh.read(10) == b"SWAPSPACE2"
