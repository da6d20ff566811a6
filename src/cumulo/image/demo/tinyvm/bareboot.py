"""A bare `qemu-system-x86_64` command line for the tiny VM: no driver, the console on stdio.

For the boot test (tests/contract/test_tinyvm_boot.py): the image booting without the driver.
"""

from __future__ import annotations

from pathlib import Path

from cumulo.image.demo.tinyvm import KERNEL_CMDLINE


def qemu_argv(
    kernel: Path,
    initrd: Path,
    *,
    config_drive: Path | None = None,
    qmp: Path | None = None,
    machine: str = "q35",
    accel: str = "tcg",
    memory_mb: int = 256,
    cmdline: str = KERNEL_CMDLINE,
) -> list[str]:
    """QEMU booting `kernel` + `initrd` directly, the serial console on stdin/stdout."""
    argv = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", f"{machine},accel={accel}", "-m", str(memory_mb), "-smp", "1", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-serial", "stdio", "-nic", "none",
    ]
    if config_drive is not None:
        argv += ["-drive", f"file={config_drive},format=raw,if=virtio,readonly=on"]
    if qmp is not None:
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    return argv
