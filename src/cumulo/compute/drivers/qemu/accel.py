"""Does KVM really run a guest here? Probed once per process, cached.

/dev/kvm can exist and open, yet a guest on it crawl or hang: measured here, a KVM guest runs
about 1.7 M loop iterations per second (TCG: about 300 M), so a Linux kernel never gets past its
decompressor. So the probe boots a guest that does real work: a 512-byte boot sector, written
here, that waits for one BIOS timer interrupt (interrupt delivery), enters 64-bit long mode
(GDT, identity-mapped 2 MB page, EFER.LME, paging), counts down from 20 M, then writes to an
`isa-debug-exit` port, on which QEMU exits with (value << 1) | 1. KVM is used when that exit
comes within a few seconds and no later than the same guest under TCG; otherwise TCG (a hung
QEMU is killed by its pid, which host.run does on timeout).

The boot sector (GNU as, `as --64` + `ld -Ttext 0x7c00 --oformat binary`):

    .code16: sti; hlt; cli; xor %ax,%ax; mov %ax,%ds; lgdtl gdtr
             mov %cr0,%eax; or $1,%eax; mov %eax,%cr0; ljmpl $0x08,$pm
    .code32 pm: mov $0x10,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss
             mov $0x1000,%edi; xor %eax,%eax; mov $3072,%ecx; rep stosl      # zero 3 tables
             movl $0x2003,0x1000; movl $0x3003,0x2000; movl $0x83,0x3000  # PML4→PDPT→PD 2MB
             mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4; mov $0x1000,%eax; mov %eax,%cr3
             mov $0xC0000080,%ecx; rdmsr; or $0x100,%eax; wrmsr
             mov %cr0,%eax; or $0x80000000,%eax; mov %eax,%cr0; ljmp $0x18,$lm
    .code64 lm: mov $20000000,%ecx; 2: dec %ecx; jnz 2b
             mov $0x2A,%al; out %al,$0xf4; 1: hlt; jmp 1b
    gdt: null, code32 0x00CF9A000000FFFF, data 0x00CF92000000FFFF, code64 0x00AF9A000000FFFF
    gdtr: .word 31; .long gdt
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from cumulo import host
from cumulo.compute.drivers.qemu.process import QEMU
from cumulo.errors import HostError

EXIT_VALUE = 0x2A
EXPECTED_EXIT = (EXIT_VALUE << 1) | 1
PROBE_TIMEOUT = 3.0
_CODE = bytes.fromhex(
    "fbf4fa31c08ed8660f0116b87c0f20c06683c8010f22c066ea1f7c0000080066b810008ed88ec08ed0bf0010000031c0b900"
    "0c0000f3abc7050010000003200000c7050020000003300000c70500300000830000000f20e083c8200f22e0b8001000000f"
    "22d8b9800000c00f320d000100000f300f20c00d000000800f22c0ea867c00001800b9002d3101ffc975fcb02ae6f4f4ebfd"
    "66900000000000000000ffff0000009acf00ffff00000092cf00ffff0000009aaf001f00987c0000"
)
_CACHE: dict[str, tuple[bool, str]] = {}


def boot_sector() -> bytes:
    return _CODE + b"\0" * (510 - len(_CODE)) + b"\x55\xaa"


def probe_argv(image: Path, accel: str) -> list[str]:
    return [
        QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-machine", f"pc,accel={accel}",
        "-m", "16", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
        "-drive", f"file={image},format=raw,if=ide,index=0",
    ]


async def measure(accel: str, timeout: float = PROBE_TIMEOUT) -> tuple[float | None, str]:
    """(seconds, why): how long a guest under `accel` takes to run the probe; None if it cannot."""
    with tempfile.TemporaryDirectory(prefix="cumulo-accel-probe-") as tmp:
        image = Path(tmp) / "boot.img"
        image.write_bytes(boot_sector())
        started = time.monotonic()
        try:
            res = await host.run(probe_argv(image, accel), timeout=timeout, check=False)
        except HostError:
            return None, f"a {accel} guest did not finish the probe boot sector within {timeout:.0f}s"
        except OSError as exc:
            return None, f"{QEMU} cannot run: {exc}"
        took = time.monotonic() - started
        if res.returncode == EXPECTED_EXIT:
            return took, f"a {accel} guest ran the probe boot sector in {took:.2f}s"
        err = (res.stderr.decode(errors="replace").strip() or f"exit code {res.returncode}").splitlines()
        return None, f"a {accel} guest failed: {err[-1][:300] if err else 'no output'}"


async def kvm_works() -> tuple[bool, str]:
    """(usable, why), once per process."""
    if "kvm" in _CACHE:
        return _CACHE["kvm"]
    result: tuple[bool, str]
    if not os.path.exists("/dev/kvm"):
        result = (False, "/dev/kvm does not exist")
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        result = (False, "/dev/kvm is not accessible")
    else:
        kvm, why = await measure("kvm")
        tcg, _ = (None, "") if kvm is None else await measure("tcg")
        if kvm is None:
            result = (False, why)
        elif tcg is not None and tcg < kvm:  # a KVM slower than emulation is no KVM worth having
            result = (False, f"KVM is slower than TCG here ({kvm:.2f}s vs {tcg:.2f}s for the probe)")
        else:
            result = (True, why)
    _CACHE["kvm"] = result
    return result


async def choose(setting: str) -> tuple[str, str]:
    """(accel, reason) for conf.qemu.accel ("auto", "kvm" or "tcg")."""
    if setting == "tcg":
        return "tcg", "qemu_accel=tcg in the settings"
    ok, why = await kvm_works()
    if setting == "kvm":
        return "kvm", f"qemu_accel=kvm in the settings ({why})"
    return ("kvm" if ok else "tcg"), why
