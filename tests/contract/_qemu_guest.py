"""Guests for the QEMU driver's tests: the tiny VM (built once per process into a cache dir shared
with the other QEMU tests), images made from it, and a 512-byte BIOS boot sector (SeaBIOS path).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import subprocess
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cumulo.compute.drivers.base import ImageSpec
from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from cumulo.compute.drivers.qemu import QemuDriver

CACHE = Path(os.environ.get("CUMULO_TEST_BUILD_CACHE") or tinyvm.default_cache())
BIOS_BANNER = "CUMULO-BIOS-BOOT"
QEMU_MISSING = (
    "QEMU is not installed (apt-get install qemu-system-x86 qemu-utils)"
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None else ""
)
_BUILT: list[Any] = []


def tiny_vm() -> Any:
    """The tiny VM's artifacts (cumulo.image.demo.tinyvm.Artifacts); skips the test when they cannot be built."""
    if _BUILT:
        return _BUILT[0]
    out = CACHE / "tiny-vm-artifacts"
    out.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".tiny-vm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several pytest processes may build at once
        try:
            art = asyncio.run(tinyvm.build_tiny_vm(out, CACHE)) if not _running_loop() else _build_in_thread(out)
        except tinyvm.BuildFailed as exc:
            pytest.skip(f"cannot build the tiny VM here: {exc}")
    _BUILT.append(art)
    return art


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _build_in_thread(out: Path) -> Any:
    """build_tiny_vm from inside a running event loop (an async test): in a thread of its own."""
    import concurrent.futures

    from cumulo.image.demo import tinyvm

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, tinyvm.build_tiny_vm(out, CACHE)).result()


def tiny_image(disk: Path | None = None, disk_format: str = "qcow2", **props: Any) -> ImageSpec:
    """The tiny VM's root-disk image (or `disk`), booting its kernel and ramdisk (AKI/ARI)."""
    from cumulo.image.demo import tinyvm

    art = tiny_vm()
    return ImageSpec(
        id=str(uuidlib.uuid4()), path=str(disk or art.disk), disk_format=disk_format, container_format="bare",
        properties={"kernel_id": "aki-tiny", "ramdisk_id": "ari-tiny", "os_command_line": art.cmdline,
                    "cumulo_boot_banner": tinyvm.READY, "hypervisor_type": "qemu", **props},
        kernel_path=str(art.kernel), ramdisk_path=str(art.ramdisk),
    )


def corrupt_qcow2(tmp: Path) -> Path:
    """A qcow2 whose header is fine but whose L1 table points far beyond the file: check fails."""
    path = tmp / "corrupt.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)  # noqa: S603, S607
    data = bytearray(path.read_bytes())
    data[40:48] = (1 << 40).to_bytes(8, "big")  # l1_table_offset: far past the end of the file
    path.write_bytes(bytes(data))
    return path


def backed_qcow2(tmp: Path, backing: str, backing_fmt: str = "raw") -> Path:
    """A qcow2 whose backing file is a host file (what a hostile upload would carry)."""
    path = tmp / "backed.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_fmt, "-b", backing, "-u",  # noqa: S603, S607
                    str(path), "64M"], check=True)
    return path


def bios_boot_sector() -> bytes:
    """Real-mode code that prints BIOS_BANNER on COM1 (0x3f8), then halts.

    xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
    loop: lodsb; test al,al; jz done; out dx,al; jmp loop
    done: cli; hlt; jmp done
    """
    msg = (BIOS_BANNER + "\r\n").encode()
    code = bytearray([0x31, 0xC0, 0x8E, 0xD8, 0xBE, 0, 0, 0xBA, 0xF8, 0x03,
                      0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8, 0xFA, 0xF4, 0xEB, 0xFC])
    addr = 0x7C00 + len(code)
    code[5], code[6] = addr & 0xFF, addr >> 8
    data = bytes(code) + msg + b"\0"
    return data + b"\0" * (510 - len(data)) + b"\x55\xaa"


def bios_image(tmp: Path) -> ImageSpec:
    """A raw disk whose boot sector prints BIOS_BANNER: boots through SeaBIOS, no kernel."""
    path = tmp / "bios.raw"
    path.write_bytes(bios_boot_sector() + b"\0" * ((1 << 20) - 512))
    return ImageSpec(id=str(uuidlib.uuid4()), path=str(path), disk_format="raw", container_format="bare",
                     properties={"cumulo_boot_banner": BIOS_BANNER})


def qemu_pids(uuid: str) -> list[int]:
    """Every QEMU process named for this instance (by /proc cmdline)."""
    from cumulo.compute.drivers.qemu import process

    return process.scan_pids(uuid)


def kill_all(uuids: list[str]) -> None:
    """Test cleanup: SIGKILL every QEMU named for one of our uuids (by pid, never by name pattern)."""
    for uuid in uuids:
        for pid in qemu_pids(uuid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def kill_under(root: Path) -> list[int]:
    """SIGKILL every QEMU whose -pidfile lies under `root` (a test's own state); return the pids."""
    from cumulo.compute.drivers.qemu import process

    killed = []
    prefix = str(root.absolute()) + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        args = process.cmdline(int(entry))
        if not args or not os.path.basename(args[0]).startswith("qemu-system"):
            continue
        if any(a == "-pidfile" and b.startswith(prefix) for a, b in zip(args, args[1:], strict=False)):
            try:
                os.kill(int(entry), 9)
                killed.append(int(entry))
            except ProcessLookupError:
                pass
    return killed


@contextlib.asynccontextmanager
async def qemu_driver(tmp_path: Path, host: str, stop_timeout: float) -> AsyncIterator[QemuDriver]:
    """A QEMU driver for host `host` with its state under `tmp_path`/qstate (skips where QEMU is
    missing); on the way out it destroys every instance, then SIGKILLs any QEMU left under its state."""
    from cumulo import conf as conf_mod
    from cumulo.compute.drivers import load_driver
    from cumulo.compute.drivers.qemu import QemuDriver

    if QEMU_MISSING:
        pytest.skip(QEMU_MISSING)
    state = tmp_path / "qstate"
    settings = conf_mod.load(env={}, state_dir=state).replace(
        extra={"qemu_boot_timeout": 120.0, "qemu_stop_timeout": stop_timeout})
    drv = load_driver("qemu", settings, host, local=True)
    assert isinstance(drv, QemuDriver)
    await drv.init_host()
    try:
        yield drv
        for st in await drv.list_instances():
            await drv.destroy(st.uuid)
    finally:
        kill_under(state)


async def tcg_driver(state: Path, host: str) -> QemuDriver:
    """A QEMU driver for host `host` on `state`, forced to TCG (boot 120 s, stop 5 s), its host set up
    (a second one on the same state dir adopts what the first runs)."""
    from cumulo import conf as conf_mod
    from cumulo.compute.drivers import load_driver
    from cumulo.compute.drivers.qemu import QemuDriver

    conf = conf_mod.load(env={}, state_dir=state)
    conf = conf.replace(extra={**conf.extra, "qemu_accel": "tcg", "qemu_boot_timeout": 120, "qemu_stop_timeout": 5})
    drv = load_driver("qemu", conf, host, local=True)
    assert isinstance(drv, QemuDriver)
    await drv.init_host()
    return drv


async def wait_console(drv: QemuDriver, uuid: str, pred: Callable[[str], bool], what: str,
                       timeout: float = 180.0) -> str:
    """The driver's console output once `pred` holds of it (polled; fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        text = await drv.get_console_output(uuid, 1 << 20)
        if pred(text):
            return text
        assert time.monotonic() < deadline, f"no {what} on the console within {timeout}s:\n{text[-3000:]}"
        await asyncio.sleep(0.3)
