"""How a server boots: the machine type, chosen per image, and what the fast path needs.

Two paths (docs/architecture.md, "VM boot paths", has the measured costs):

- **microvm + PVH** (the fast path): a direct-kernel (AKI/ARI) image whose kernel is an ELF
  vmlinux declaring a PVH entry (XEN_ELFNOTE_PHYS32_ENTRY; Linux with CONFIG_PVH=y). QEMU's
  `microvm` machine has no PCI bus, no legacy firmware boot and few devices; QEMU loads the ELF
  and enters it in 32-bit mode, so neither SeaBIOS, nor the real-mode setup, nor the in-guest
  decompression of a bzImage run. Disks are virtio-mmio (`virtio-blk-device`), found by the guest
  through the ACPI tables QEMU writes (the guest needs `virtio_mmio`; the ACPI power button works,
  so a stop is still an orderly power-off). Under TCG microvm has no timer the kernel can
  calibrate the TSC against (no HPET, no PIT speaker gate), so the driver passes
  `tsc_early_khz=<host TSC kHz>`: under TCG the guest's TSC counts at the host's rate.
- **q35 + SeaBIOS**: everything else (disk images, bzImage kernels, and any image that names
  `hw_machine_type` q35 or pc). `hw_machine_type=microvm` asks for the fast path explicitly.

Nothing here opens a file a tenant chose: the kernel read is the server's own hard link of the
AKI image file in its instance dir, and it is read bounded (headers and notes only).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import platform
import struct
import time
from pathlib import Path
from typing import Any

MICROVM = "microvm"
PC_MACHINES = ("q35", "pc")
XEN_ELFNOTE_PHYS32_ENTRY = 18
_MAX_NOTES = 64 << 10
_TSC_CACHE: list[int | None] = []


# -- the kernel file ----------------------------------------------------------------------------


def _read_at(fh: Any, offset: int, size: int) -> bytes:
    fh.seek(offset)
    data: bytes = fh.read(size)
    return data


def has_pvh_entry(path: Path) -> bool:
    """Whether `path` is an ELF64 x86-64 vmlinux with a PVH entry note (blocking, bounded reads)."""
    try:
        with open(path, "rb") as fh:
            head = _read_at(fh, 0, 64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return False
            if struct.unpack_from("<H", head, 0x12)[0] != 62:  # EM_X86_64
                return False
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            if phentsize < 56 or phnum > 64:
                return False
            table = _read_at(fh, phoff, phentsize * phnum)
            for k in range(len(table) // phentsize):
                p_type, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", table, k * phentsize)
                if p_type == 4 and _pvh_note(_read_at(fh, offset, min(filesz, _MAX_NOTES))):  # PT_NOTE
                    return True
    except (OSError, struct.error, ValueError):
        return False
    return False


def _pvh_note(notes: bytes) -> bool:
    i = 0
    while i + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, i)
        name_at = i + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        if notes[name_at:name_at + namesz].rstrip(b"\0") == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
            return bool(descsz >= 4)
        i = desc_at + ((descsz + 3) & ~3)
    return False


# -- the host's TSC rate (what a TCG guest's TSC counts at) ------------------------------------


def _rdtsc() -> tuple[Any, mmap.mmap]:
    """A callable running `rdtsc` (x86-64 machine code in an executable page): Python has no
    other way to read the host's TSC. `rdtsc; shl $32,%rdx; or %rdx,%rax; ret`."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes.fromhex("0f3148c1e2204809d0c3"))
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_uint64)(address), page


def _tight_pair(rdtsc: Any) -> tuple[float, int]:
    """(monotonic ns, TSC) read as close together as this host lets us (best of 7)."""
    best: tuple[int, float, int] | None = None
    for _ in range(7):
        a = time.perf_counter_ns()
        tsc = int(rdtsc())
        b = time.perf_counter_ns()
        if best is None or b - a < best[0]:
            best = (b - a, (a + b) / 2, tsc)
    assert best is not None
    return best[1], best[2]


def calibrate_tsc_khz(interval: float = 0.2) -> int | None:
    """The host TSC's rate in kHz, measured against the monotonic clock (blocking)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        rdtsc, page = _rdtsc()
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # no executable mappings allowed here
    try:
        t0, c0 = _tight_pair(rdtsc)
        time.sleep(interval)
        t1, c1 = _tight_pair(rdtsc)
    finally:
        del rdtsc
        with contextlib.suppress(BufferError):
            page.close()
    khz = round((c1 - c0) * 1e6 / (t1 - t0)) if t1 > t0 else 0
    return khz if 100_000 <= khz <= 10_000_000 else None


def _cpuinfo_khz() -> int | None:
    """`cpu MHz` of /proc/cpuinfo when the CPU says its TSC is constant (a fallback)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    if "constant_tsc" not in text:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            with contextlib.suppress(ValueError):
                return round(float(value) * 1000)
    return None


def host_tsc_khz() -> int | None:
    """Measured once per process (blocking: about 0.2 s); the settings may name it instead
    (qemu_tsc_khz)."""
    if not _TSC_CACHE:
        _TSC_CACHE.append(calibrate_tsc_khz() or _cpuinfo_khz())
    return _TSC_CACHE[0]


# -- the choice ---------------------------------------------------------------------------------


def choose_machine(props: dict[str, Any], *, kernel: bool, pvh: bool, default: str, fast: str,
                   fast_ok: bool) -> tuple[str, str]:
    """(machine, why) for an image: its hw_machine_type when it names one we run, microvm for a
    PVH kernel when the fast path is on (`fast` == "microvm") and possible here, else `default`."""
    asked = str(props.get("hw_machine_type") or "")
    if asked in PC_MACHINES:
        return asked, f"the image asks for hw_machine_type={asked}"
    if asked == MICROVM:
        if not kernel:
            return default, "hw_machine_type=microvm needs a direct-kernel (kernel_id) image; firmware boot on " + default
        if not fast_ok:
            return default, f"microvm is not possible here (no host TSC rate for a TCG guest); {default}"
        return MICROVM, "the image asks for hw_machine_type=microvm"
    if kernel and pvh and fast == MICROVM and fast_ok:
        return MICROVM, "a direct-kernel image whose kernel has a PVH entry: microvm, no firmware"
    if kernel and pvh and fast == MICROVM:
        return default, f"microvm is not possible here (no host TSC rate for a TCG guest); {default}"
    if kernel and not pvh:
        return default, f"the kernel has no PVH entry (a bzImage): {default} with SeaBIOS"
    return default, f"a disk image: {default} with SeaBIOS"
