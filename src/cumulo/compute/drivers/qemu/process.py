"""The QEMU process of one server: where its files live, its argv, and starting/finding/killing it.

QEMU runs with `-daemonize`: `qemu-system-x86_64` forks, the child (the VM) is re-parented to init
and the parent exits once the child is set up (pidfile written, QMP socket listening), so the
server survives an agent restart and no zombie waits on us. Before the fork QEMU's errors go to
`qemu.log` (the parent's stderr; `-D` keeps the child's stderr there too).

A process is ours only if its /proc/<pid>/cmdline is a QEMU whose `-name` is `cumulo-<uuid>`:
the pidfile alone could name a pid reused by anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cumulo import host
from cumulo.errors import DriverError, HostError

QEMU = "qemu-system-x86_64"
NAME_PREFIX = "cumulo-"
DEFAULT_APPEND = "console=ttyS0 root=/dev/vda rw reboot=t panic=-1"


def process_name(uuid: str) -> str:
    return NAME_PREFIX + uuid


@dataclass(frozen=True)
class Layout:
    """The files of one server under `<state>/qemu/<uuid>/` (all absolute: QEMU chdirs to /)."""

    dir: Path

    @property
    def uuid(self) -> str:
        return self.dir.name

    @property
    def disk(self) -> Path:  # qcow2 overlay on the cached base image
        return self.dir / "disk.qcow2"

    @property
    def ephemeral(self) -> Path:
        return self.dir / "ephemeral.qcow2"

    @property
    def swap(self) -> Path:  # the swap disk (raw, made with mkswap) when the server has swap
        return self.dir / "swap.raw"

    @property
    def config_iso(self) -> Path:  # the config drive, ISO9660 labelled config-2
        return self.dir / "config.iso"

    @property
    def console(self) -> Path:  # the serial console (chardev file, O_APPEND)
        return self.dir / "console.log"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def qga(self) -> Path:  # the guest agent's channel (VmConfig.guest_agent), qga.py
        return self.dir / "qga.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def qemu_log(self) -> Path:  # QEMU's own stderr
        return self.dir / "qemu.log"

    @property
    def kernel(self) -> Path:  # direct kernel boot: a hard link of the AKI image file
        return self.dir / "kernel"

    @property
    def initrd(self) -> Path:  # ... and of the ARI image file
        return self.dir / "initrd"

    @property
    def record(self) -> Path:  # instance.json, written last
        return self.dir / "instance.json"


@dataclass(frozen=True)
class VmConfig:
    """What the argv is built from; kept in instance.json so a start rebuilds the same VM."""

    memory_mb: int
    vcpus: int
    accel: str  # "kvm" | "tcg"
    machine: str = "q35"
    kernel: bool = False  # direct kernel boot from layout.kernel (+ layout.initrd when initrd)
    initrd: bool = False
    append: str = ""
    root_format: str = "qcow2"
    ephemeral: bool = False
    swap: bool = False  # layout.swap: the flavor's (or a swap mapping's) swap disk
    config_drive: bool = True
    tsc_khz: int = 0  # microvm under TCG: the host TSC rate, passed to the guest (boot.py)
    # q35: PCIe root ports hp0.. for NICs and volumes (netdev.py, blockdev.py): one per boot device + spares
    hotplug_ports: int = 0
    # Boot from volume: the id of the recorded volume that is the root disk (blockdev.root_argv
    # puts it where the image's overlay goes); "" for a server with a disk.qcow2 root.
    root_volume: str = ""
    # The image's hw_qemu_guest_agent=yes: a virtio-serial port org.qemu.guest_agent.0 on the
    # chardev socket qga.sock (exec.py runs commands in the guest through it).
    guest_agent: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> VmConfig:
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        return cls(**known)


def _drive(path: Path, node: str, fmt: str, *, readonly: bool = False, bootindex: int | None = None,
           mmio: bool = False) -> list[str]:
    # -blockdev (protocol node + format node) and an explicit device: the format is always given,
    # never probed (untrusted images). Not -drive: QEMU 7.2 cannot inactivate a writable -drive at
    # the end of a migration ("bdrv_inactivate_all() failed"), so suspend (migrate to a file) fails.
    ro = ",read-only=on" if readonly else ",discard=unmap"
    proto = f"driver=file,filename={path},node-name={node}-file{ro}"
    fmt_node = f"driver={fmt},file={node}-file,node-name={node}{ro}"
    # microvm has no PCI: virtio over MMIO, found by the guest through QEMU's ACPI tables.
    dev = f"virtio-blk-{'device' if mmio else 'pci'},drive={node},id={node}-dev"
    if bootindex is not None and not mmio:
        dev += f",bootindex={bootindex}"
    return ["-blockdev", proto, "-blockdev", fmt_node, "-device", dev]


def machine_option(cfg: VmConfig) -> str:
    if cfg.machine == "microvm":
        # The fast path (boot.py): ACPI on (virtio-mmio discovery, the power button); no i8259
        # PIC or i8254 PIT (the guest runs on the LAPIC timer and the TSC); the RTC and the ISA
        # serial port (ttyS0) stay.
        return f"microvm,accel={cfg.accel},acpi=on,pic=off,pit=off,rtc=on,isa-serial=on"
    return f"{cfg.machine},accel={cfg.accel}"


def kernel_append(cfg: VmConfig) -> str:
    append = cfg.append or DEFAULT_APPEND
    if cfg.machine == "microvm":
        append += " pci=off"  # there is no PCI bus: no probing for one
        if cfg.accel != "kvm" and cfg.tsc_khz > 0:
            append += f" tsc_early_khz={int(cfg.tsc_khz)}"
    return append


def root_port(k: int) -> str:
    return f"hp{k}"


def root_bootindex(cfg: VmConfig) -> int | None:
    """The root disk's bootindex: firmware boots from it unless a kernel is given (microvm has
    no firmware)."""
    return None if cfg.kernel or cfg.machine == "microvm" else 1


def build_argv(layout: Layout, cfg: VmConfig, root_drive: list[str] | None = None) -> list[str]:
    """QEMU's command line for one server. No value from the user reaches it except the kernel
    command line (`-append`, one argv element) and sizes (integers). `root_drive`: the root
    volume's options (blockdev.root_argv) of a server booted from a volume (cfg.root_volume), in
    the place of the image's overlay, first on the bus so the guest sees it as /dev/vda."""
    if "," in str(layout.dir):
        raise DriverError(f"the state dir {layout.dir} holds a comma, which QEMU options cannot carry")
    mmio = cfg.machine == "microvm"
    argv = [
        QEMU,
        "-name", process_name(layout.uuid),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-machine", machine_option(cfg),
        "-cpu", "host" if cfg.accel == "kvm" else "max",
        "-m", str(int(cfg.memory_mb)),
        "-smp", str(int(cfg.vcpus)),
        "-no-reboot",
        "-pidfile", str(layout.pidfile),
        "-daemonize",
        "-D", str(layout.qemu_log),
        # Relative to QEMU's cwd (the instance dir, see start()): a unix socket path has at most
        # 107 bytes, less than a deep state dir needs. Clients connect via qmp.open_socket.
        "-qmp", f"unix:{layout.qmp.name},server=on,wait=off",
        "-chardev", f"file,id=ser0,path={layout.console},append=on",
        "-serial", "chardev:ser0",
        "-nic", "none",
    ]
    for k in range(cfg.hotplug_ports if cfg.machine == "q35" else 0):  # NICs' and volumes' slots (netdev.py)
        argv += ["-device", f"pcie-root-port,id={root_port(k)},bus=pcie.0,chassis={k + 1}"]
    if cfg.root_volume:
        argv += list(root_drive or [])
    else:
        argv += _drive(layout.disk, "root", cfg.root_format, bootindex=None if cfg.kernel else 1, mmio=mmio)
    if cfg.ephemeral:
        argv += _drive(layout.ephemeral, "ephemeral", "qcow2", mmio=mmio)
    if cfg.swap:
        argv += _drive(layout.swap, "swap", "raw", mmio=mmio)
    if cfg.config_drive:
        argv += _drive(layout.config_iso, "config", "raw", readonly=True, mmio=mmio)
    if cfg.guest_agent:
        argv += guest_agent_argv(layout, cfg)
    if cfg.kernel:
        argv += ["-kernel", str(layout.kernel), "-append", kernel_append(cfg)]
        if cfg.initrd:
            argv += ["-initrd", str(layout.initrd)]
    return argv


GUEST_AGENT_PORT = "org.qemu.guest_agent.0"  # the port name qemu-ga opens (/dev/virtio-ports/...)


def guest_agent_argv(layout: Layout, cfg: VmConfig) -> list[str]:
    """The guest agent's channel: a listening chardev socket (relative, as -qmp) and a virtio-serial
    controller (PCI on q35, MMIO on microvm) with one port named for qemu-ga."""
    bus = "virtio-serial-device" if cfg.machine == "microvm" else "virtio-serial-pci"
    return ["-chardev", f"socket,id=qga0,path={layout.qga.name},server=on,wait=off",
            "-device", f"{bus},id=vser0",
            "-device", f"virtserialport,bus=vser0.0,chardev=qga0,name={GUEST_AGENT_PORT}"]


# -- finding and killing our process -----------------------------------------------------------


def read_pid(layout: Layout) -> int | None:
    try:
        text = layout.pidfile.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_ours(pid: int, uuid: str) -> bool:
    """A live (non-zombie) QEMU whose -name is cumulo-<uuid>."""
    args = cmdline(pid)
    if not args or not os.path.basename(args[0]).startswith("qemu-system"):
        return False
    name = process_name(uuid)
    if not any(a == "-name" and b.split(",")[0] == name for a, b in zip(args, args[1:], strict=False)):
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X", "x")


def live_pid(layout: Layout) -> int | None:
    """The pid of this server's QEMU when it runs, else None."""
    pid = read_pid(layout)
    return pid if pid is not None and is_ours(pid, layout.uuid) else None


def scan_pids(uuid: str, pidfile: Path | None = None) -> list[int]:
    """Every QEMU named cumulo-<uuid> on the host (a pidfile may be missing or stale); with
    `pidfile`, only those started with that very -pidfile (this cloud's, not another's)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not is_ours(int(entry), uuid):
            continue
        if pidfile is not None:
            args = cmdline(int(entry))
            if not any(a == "-pidfile" and b == str(pidfile) for a, b in zip(args, args[1:], strict=False)):
                continue
        out.append(int(entry))
    return out


async def wait_exit(pid: int, uuid: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while is_ours(pid, uuid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
    return True


async def kill(layout: Layout, *, scan: bool = False) -> None:
    """SIGKILL this server's QEMU (only if /proc says it is ours) and wait until it is gone."""
    pids = {p for p in [read_pid(layout)] if p is not None and is_ours(p, layout.uuid)}
    if scan:
        pids.update(await asyncio.to_thread(scan_pids, layout.uuid, layout.pidfile))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        if not await wait_exit(pid, layout.uuid, 10.0):
            raise DriverError(f"QEMU (pid {pid}) of instance {layout.uuid} did not die after SIGKILL")


def _tail_text(path: Path, max_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - max_bytes))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""


async def start(layout: Layout, argv: list[str], timeout: float = 60.0, pass_fds: tuple[int, ...] = ()) -> int:
    """Run QEMU daemonized; return the VM's pid once the parent reports it set up. `pass_fds`
    (the NICs' taps) are inherited under the numbers the argv names."""
    for stale in (layout.pidfile, layout.qmp, layout.qga):
        stale.unlink(missing_ok=True)
    size = layout.qemu_log.stat().st_size if layout.qemu_log.exists() else 0
    try:
        code = await host.run_to_file(argv, str(layout.qemu_log), timeout=timeout, cwd=str(layout.dir),
                                      pass_fds=pass_fds)
    except HostError as exc:
        await kill(layout, scan=True)
        raise DriverError(f"QEMU of instance {layout.uuid} did not start: {exc}") from exc
    if code != 0:
        msg = await asyncio.to_thread(_read_from, layout.qemu_log, size)
        raise DriverError(f"QEMU of instance {layout.uuid} failed to start ({code}): {msg.strip()[-2000:] or 'no output'}")
    pid = live_pid(layout)
    if pid is None:
        msg = await asyncio.to_thread(_read_from, layout.qemu_log, size)
        raise DriverError(f"QEMU of instance {layout.uuid} exited at once: {msg.strip()[-2000:] or 'no output'}")
    return pid


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(65536).decode(errors="replace")
    except OSError:
        return ""


def stderr_tail(layout: Layout) -> str:
    return _tail_text(layout.qemu_log)
