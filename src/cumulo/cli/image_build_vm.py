"""`cumulo image build tiny-vm`: the bootable VM demo image (kernel, initramfs, root disk) into a directory."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from cumulo.image.demo import tinyvm


def run_tiny_vm(output: Path, cache: Path) -> int:
    try:
        art = asyncio.run(tinyvm.build_tiny_vm(output, cache))
    except tinyvm.BuildFailed as exc:
        print(f"cumulo image build: {exc}", file=sys.stderr)
        return 1
    for path in (art.kernel, art.ramdisk, art.disk):
        print(f"{path} ({path.stat().st_size} bytes)")
    print(f"kernel {art.kernel_release} ({art.kernel_package}); command line: {art.cmdline}")
    print("  openstack image create --disk-format aki --container-format aki "
          f"--file {art.kernel} {tinyvm.KERNEL_NAME}")
    print("  openstack image create --disk-format ari --container-format ari "
          f"--file {art.ramdisk} {tinyvm.RAMDISK_NAME}")
    print("  openstack image create --disk-format qcow2 --container-format bare "
          f"--file {art.disk} --property kernel_id=<kernel id> --property ramdisk_id=<ramdisk id> "
          f"--property hypervisor_type=qemu --property hw_qemu_guest_agent=yes "
          f"--property os_command_line='{art.cmdline}' {tinyvm.NAME}")
    return 0
