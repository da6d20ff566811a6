"""The tiny VM image: the Debian cloud kernel + a busybox initramfs + an empty qcow2 root disk.

Built from Debian packages only (`linux-image-cloud-amd64`, `busybox-static`, `qemu-guest-agent`
with the host's copies of its libraries), offline once the kernel and qemu-ga .debs are cached. Registered the OpenStack way: an AKI (kernel) and an ARI (ramdisk) image,
named by the `kernel_id` / `ramdisk_id` properties of the root-disk image, whose
`os_command_line` is KERNEL_CMDLINE. See init.sh for what the guest does at boot.

The AKI is the kernel's uncompressed vmlinux when it has a PVH entry (the Debian cloud kernel
does: CONFIG_PVH=y), so the QEMU driver boots it on its fast path (microvm, PVH entry: no
firmware, no in-guest decompression); otherwise the bzImage (vmlinuz), booted on q35.

The guest runs the QEMU guest agent on the virtio-serial port org.qemu.guest_agent.0 (the root-disk
image sets hw_qemu_guest_agent=yes, so the QEMU driver gives it the channel): the driver's exec.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from cumulo.image.demo.tinyvm.disk import empty_qcow2
from cumulo.image.demo.tinyvm.guestagent import GuestAgentUnavailable, fetch_guest_agent
from cumulo.image.demo.tinyvm.initramfs import (
    BUSYBOX,
    STAGE1_MODULES,
    STAGE2_MODULES,
    VFAT_MODULES,
    BusyboxMissing,
    build_initramfs,
)
from cumulo.image.demo.tinyvm.kernel import KernelUnavailable, fetch_kernel, pvh_vmlinux

__all__ = [
    "BANNER", "READY", "KERNEL_CMDLINE", "NAME", "KERNEL_NAME", "RAMDISK_NAME", "ROOT_DISK_SIZE",
    "Artifacts", "BuildFailed", "build_tiny_vm", "default_cache",
]

NAME = "tiny-vm"
KERNEL_NAME = "tiny-vm-kernel"
RAMDISK_NAME = "tiny-vm-ramdisk"
BANNER = "Cumulo tiny-vm booting"  # first line of /init, then " (kernel <uname -r>)"
READY = "cumulo-tiny-vm ready"  # "... hostname=<h> uptime=<s>" once set up
# The recommended kernel command line (also the root-disk image's os_command_line). `quiet` and
# the i8042/PCI/TSC knobs skip probing that costs seconds under TCG; reboot=t with QEMU's
# -no-reboot turns a guest reboot or panic (panic=-1) into a QEMU exit the host sees.
KERNEL_CMDLINE = (
    "console=ttyS0 quiet reboot=t panic=-1 "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
    "tsc=reliable no_timer_check cryptomgr.notests random.trust_cpu=on "
    "8250.nr_uarts=1 rcupdate.rcu_expedited=1"
)
ROOT_DISK_SIZE = 64 << 20
KERNEL_FILE, RAMDISK_FILE, DISK_FILE = "vmlinuz", "initramfs.cpio", "disk.qcow2"
PVH_KERNEL_FILE = "vmlinux"


class BuildFailed(Exception):
    """The image could not be built; the message names the cause (no network, no busybox...)."""


@dataclass(frozen=True)
class Artifacts:
    kernel: Path
    ramdisk: Path
    disk: Path
    kernel_release: str
    kernel_package: str
    cmdline: str = KERNEL_CMDLINE
    pvh: bool = False  # `kernel` is an ELF vmlinux with a PVH entry (else a bzImage)


def default_cache() -> Path:
    """Host-wide: the kernel .deb is the same for every cloud on this machine, so a second state
    dir (a test, a fresh cloud) builds offline from it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cumulo" / "build"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def build_tiny_vm(output: Path, cache: Path, busybox: Path = BUSYBOX) -> Artifacts:
    """Write the kernel (vmlinux or vmlinuz), initramfs.cpio and disk.qcow2 into `output`.

    The kernel comes from `cache` (downloaded once with apt); the rest is rebuilt from it and the
    host's busybox, byte for byte the same each time. Raises BuildFailed naming the cause.
    """
    try:
        kernel = await fetch_kernel(cache, STAGE1_MODULES + VFAT_MODULES + STAGE2_MODULES)
        agent = await fetch_guest_agent(cache)
        ramdisk = await asyncio.to_thread(build_initramfs, kernel, busybox, agent)
        pvh = await asyncio.to_thread(pvh_vmlinux, kernel)
    except (KernelUnavailable, BusyboxMissing, GuestAgentUnavailable) as exc:
        raise BuildFailed(str(exc)) from exc
    except OSError as exc:
        raise BuildFailed(f"building the tiny VM image failed: {exc}") from exc

    def write() -> Artifacts:
        output.mkdir(parents=True, exist_ok=True)
        kernel_out = output / (PVH_KERNEL_FILE if pvh else KERNEL_FILE)
        _write_atomic(kernel_out, (pvh or kernel.vmlinuz).read_bytes())
        _write_atomic(output / RAMDISK_FILE, ramdisk)
        _write_atomic(output / DISK_FILE, empty_qcow2(ROOT_DISK_SIZE))
        return Artifacts(kernel_out, output / RAMDISK_FILE, output / DISK_FILE, kernel.release, kernel.package,
                         pvh=pvh is not None)

    try:
        return await asyncio.to_thread(write)
    except OSError as exc:
        raise BuildFailed(f"cannot write the tiny VM image to {output}: {exc}") from exc

