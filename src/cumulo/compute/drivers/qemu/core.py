"""What every facet of the QEMU driver stands on: its settings, the server's files and record,
QMP, the power state, starting QEMU and stopping it.

The facets (freeze.py, suspend.py, resize.py, metrics.py, rebuild.py, snapshot.py) are classes
derived from QemuCore, and QemuDriver (the package) is made of all of them, as Incus's
driver_qemu_*.go files are methods of one struct. No facet imports the package, so there is no
import circle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.base import Capability, DriverInfo, PowerState
from cumulo.compute.drivers.local import LocalInstances
from cumulo.compute.drivers.qemu import blockdev, boot, netdev, process, qmp
from cumulo.compute.drivers.qemu.files import last_lines, note, read_json, read_tail
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.conf import Settings
from cumulo.errors import DriverError

CONSOLE_MAX_BYTES = 1 << 20
DEFAULT_BOOT_TIMEOUT = 90.0
BANNER_PROPERTY = "cumulo_boot_banner"
# Image properties a server keeps in its record (a snapshot boots the same way).
GUEST_AGENT_PROPERTY = "hw_qemu_guest_agent"  # Nova's image property: "yes" gives the guest agent's channel
KEPT_PROPERTIES = ("os_command_line", BANNER_PROPERTY, "hw_machine_type", "kernel_id", "ramdisk_id",
                   GUEST_AGENT_PROPERTY)
STOP_GRACE = 30.0  # ACPI powerdown before a resize or rebuild (then quit)
SUSPENDED_MARKER = "suspended.json"  # written by suspend (suspend.py): no process, state saved



def wants_guest_agent(props: dict[str, Any]) -> bool:
    """Whether an image asks for the guest agent's channel (Nova reads the property as a boolean)."""
    return str(props.get(GUEST_AGENT_PROPERTY) or "").strip().lower() in ("yes", "true", "1", "on", "y", "t")


# QMP query-status → power state (Nova's libvirt mapping of domain states).
_STATUS_POWER = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED, "io-error": PowerState.PAUSED, "watchdog": PowerState.PAUSED,
    "debug": PowerState.PAUSED, "prelaunch": PowerState.PAUSED, "inmigrate": PowerState.PAUSED,
    "finish-migrate": PowerState.PAUSED, "postmigrate": PowerState.PAUSED, "save-vm": PowerState.PAUSED,
    "restore-vm": PowerState.PAUSED, "colo": PowerState.PAUSED,
    "suspended": PowerState.SUSPENDED,  # guest ACPI S3
    "shutdown": PowerState.SHUTDOWN,
    "guest-panicked": PowerState.CRASHED, "internal-error": PowerState.CRASHED,
}


class QemuCore(LocalInstances):
    label = "QEMU"
    unsafe = "/,"  # -drive file=...,: a comma would split QEMU's options

    def __init__(self, conf: Settings, host_name: str, *, local: bool = True) -> None:
        self.conf = conf
        self.host_name = host_name
        self.local = local
        state = Path(conf.state_dir).absolute()
        self.dir = state / "qemu"
        self.base_dir = state / "qemu-base"  # verified base images, shared by servers
        settings = conf.qemu
        self.accel_setting = settings.accel
        self.boot_timeout = settings.boot_timeout
        self.stop_timeout = settings.stop_timeout
        self.console_max = settings.console_max_bytes
        self.machine = settings.machine
        self.kernel_machine = settings.direct_kernel_machine
        self.tsc_setting = settings.tsc_khz
        self.tsc_khz = 0  # the host TSC rate, for microvm guests under TCG (init_host)
        self.spawn_delay = settings.spawn_delay
        self.accel = "tcg"
        self._qmp_locks: dict[str, asyncio.Lock] = {}
        self._qga_locks: dict[str, asyncio.Lock] = {}  # one guest agent session per server (exec.py)
        self._op_locks: dict[str, asyncio.Lock] = {}
        self.info = DriverInfo(
            name="qemu",
            hypervisor_type="QEMU",
            instance_types=("qemu",),
            version=1,
            capabilities=frozenset({Capability.POWER, Capability.PAUSE, Capability.CONSOLE, Capability.SUSPEND,
                                    Capability.RESIZE, Capability.REBUILD, Capability.SNAPSHOT,
                                    Capability.DIAGNOSTICS, Capability.METRICS, Capability.NICS,
                                    Capability.VOLUMES, Capability.EXEC,
                                    Capability.LIVE_MIGRATION, Capability.COLD_MIGRATION}),
            details={"accel": "tcg", "accel_reason": "not probed yet", "machine": self.machine,
                     "suspend": "migrate-to-file", "resize": "cold"},
        )

    # -- helpers shared with the sibling modules --------------------------------------------------

    def _layout(self, uuid: str) -> Layout:
        return Layout(self.instance_dir(uuid))

    def _existing(self, uuid: str) -> Layout:
        return Layout(self.existing_dir(uuid))

    def _op_lock(self, uuid: str) -> asyncio.Lock:
        """Serialises operations on one server (start/stop/pause/... never interleave)."""
        return self._op_locks.setdefault(uuid, asyncio.Lock())

    def _vm_config(self, layout: Layout) -> VmConfig:
        return VmConfig.from_json(self.read_record(layout.dir).get("vm") or {})

    async def _qmp(self, layout: Layout, command: str, arguments: dict[str, Any] | None = None,
                   timeout: float = 10.0) -> Any:
        """One QMP command in a session of its own, serialised per server."""
        async with self._qmp_locks.setdefault(layout.uuid, asyncio.Lock()):
            return await qmp.call(layout.qmp, command, arguments, timeout=timeout)

    async def _qmp_status(self, layout: Layout) -> str | None:
        """QMP's run state ("running", "paused", ...); None when there is no QEMU; "" when it
        runs but QMP does not answer."""
        if process.live_pid(layout) is None:
            return None
        try:
            res = await self._qmp(layout, "query-status", timeout=5.0)
        except DriverError:
            return None if process.live_pid(layout) is None else ""
        return str(res.get("status", "")) if isinstance(res, dict) else ""

    def _suspended(self, layout: Layout) -> bool:
        return (layout.dir / SUSPENDED_MARKER).is_file()

    def _forget_suspend(self, layout: Layout) -> None:
        """Drop a saved state (a stop or hard reboot of a suspended server boots it afresh)."""
        rec = read_json(layout.dir / SUSPENDED_MARKER) or {}
        (layout.dir / SUSPENDED_MARKER).unlink(missing_ok=True)
        state_file = rec.get("state_file")
        if isinstance(state_file, str) and state_file and "/" not in state_file:
            (layout.dir / state_file).unlink(missing_ok=True)

    def _power(self, layout: Layout, status: str | None) -> PowerState:
        if not self.has_record(layout.dir):
            return PowerState.NOSTATE  # a spawn under way, or one a crash cut short
        if status is None:
            return PowerState.SUSPENDED if self._suspended(layout) else PowerState.SHUTDOWN
        return _STATUS_POWER.get(status, PowerState.NOSTATE)

    async def _state(self, layout: Layout) -> PowerState:
        return self._power(layout, await self._qmp_status(layout))

    def _fast_ok(self) -> bool:
        """microvm can run here: KVM (kvmclock), or TCG with a known host TSC rate."""
        return self.accel == "kvm" or self.tsc_khz > 0

    def choose_machine(self, props: dict[str, Any], kernel: Path | None) -> tuple[str, str]:
        """(machine, why) for an image whose kernel file (direct boot) is `kernel`. Blocking."""
        pvh = kernel is not None and boot.has_pvh_entry(kernel)
        return boot.choose_machine(props, kernel=kernel is not None, pvh=pvh, default=self.machine,
                                   fast=self.kernel_machine, fast_ok=self._fast_ok())

    def _runtime(self, cfg: VmConfig) -> VmConfig:
        """cfg with what this host decides at each start: the accelerator and the TSC rate."""
        return dataclasses.replace(cfg, accel=self.accel,
                                   tsc_khz=self.tsc_khz if cfg.machine == boot.MICROVM else 0)

    async def _start(self, layout: Layout, cfg: VmConfig, rec: dict[str, Any], *, why: str,
                     extra_argv: list[str] | None = None) -> None:
        """Start QEMU for cfg, return once QMP says it runs the guest (or, with extra_argv such as
        `-incoming defer`, waits for it); record the argv used. Whether the guest then boots is
        not waited for (module docstring).

        On failure QEMU is killed and DriverError quotes QEMU's stderr / the console's last lines;
        the dir stays (spawn removes it)."""
        cfg = self._runtime(cfg)
        if not extra_argv:  # a cold start: no saved device state to match, so an old record gets ports
            cfg = netdev.with_spare_ports(cfg)
        # The NICs' taps (netdev.py): a spawn fails without one; a later start leaves out a NIC
        # whose network is gone, and says so in the console log.
        skipped: list[str] = []
        taps = await netdev.open_taps(netdev.recorded(rec), strict=why == "spawn", skipped=skipped)
        try:
            root, others = blockdev.split_root(cfg, blockdev.recorded(rec))
            argv = (process.build_argv(layout, cfg, blockdev.root_argv(cfg, root) if root else None)
                    + blockdev.disk_argv(cfg, others) + netdev.nic_argv(cfg, taps) + list(extra_argv or []))
            for msg in skipped:
                await asyncio.to_thread(note, layout, f"{why}: left out {msg}")
            await asyncio.to_thread(note, layout, f"{why}: starting QEMU ({cfg.accel}, {cfg.machine}, "
                                                  f"{cfg.memory_mb} MB, {cfg.vcpus} vCPU)")
            started = time.monotonic()
            try:
                pid = await process.start(layout, argv, pass_fds=tuple(fd for _e, _b, fd in taps))
                await self._wait_status(layout, pid,
                                        ("running",) if not extra_argv else ("running", "inmigrate", "paused"))
                rec.setdefault("timings", {})["qemu_running_s"] = round(time.monotonic() - started, 3)
            except BaseException:
                await asyncio.shield(process.kill(layout, scan=True))
                raise
        finally:
            netdev.close_fds(taps)  # QEMU holds its own copies
        rec["vm"] = cfg.to_json()
        rec["argv"] = argv
        rec["started_at"] = time.time()
        await self.write_record(layout.dir, rec)

    async def _wait_status(self, layout: Layout, pid: int, wanted: tuple[str, ...]) -> str:
        """QMP answers and shows one of `wanted` (QEMU is up)."""
        deadline = time.monotonic() + 30.0
        last = ""
        delay = 0.005
        while time.monotonic() < deadline:
            if not process.is_ours(pid, layout.uuid):
                raise self._boot_error(layout, 0, "QEMU exited while starting")
            try:
                res = await self._qmp(layout, "query-status", timeout=5.0)
                last = str(res.get("status", "")) if isinstance(res, dict) else ""
                if last in wanted:
                    return last
            except DriverError as exc:
                last = str(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        raise self._boot_error(layout, 0, f"QEMU did not reach {'/'.join(wanted)} over QMP ({last})")

    def _boot_error(self, layout: Layout, offset: int, why: str) -> DriverError:
        console = last_lines(read_tail(layout.console, offset))
        stderr = process.stderr_tail(layout)
        parts = [f"Instance {layout.uuid} did not boot: {why}"]
        if stderr:
            parts.append(f"QEMU: {stderr[-1500:]}")
        if console:
            parts.append(f"console:\n{console[-2500:]}")
        return DriverError("; ".join(parts[:2]) + ("\n" + parts[2] if len(parts) > 2 else ""))

    async def _stop(self, layout: Layout, timeout: float, why: str) -> None:
        """ACPI powerdown (up to timeout), then QMP quit, then SIGKILL; returns once QEMU is gone."""
        pid = process.live_pid(layout)
        if pid is None:
            return
        status = await self._qmp_status(layout)
        graceful = status == "running" and timeout > 0
        if graceful:
            with contextlib.suppress(DriverError):
                await self._qmp(layout, "system_powerdown")
            if await process.wait_exit(pid, layout.uuid, min(timeout, self.stop_timeout)):
                await asyncio.to_thread(note, layout, f"{why}: the guest powered off")
                return
        with contextlib.suppress(DriverError):
            await self._qmp(layout, "quit", timeout=5.0)
        if await process.wait_exit(pid, layout.uuid, 5.0):
            await asyncio.to_thread(note, layout, f"{why}: QEMU quit" + (" (no ACPI power-off)" if graceful else ""))
            return
        await process.kill(layout)
        await asyncio.to_thread(note, layout, f"{why}: QEMU killed")

    async def _remove_dir(self, layout: Layout) -> None:
        """The server's files (its QEMU is gone: the taps went with it; any left are removed)."""
        rec = await asyncio.to_thread(read_json, layout.record)
        if rec and rec.get("nics"):
            await netdev.unplug_all(rec)
        if layout.dir.exists():
            await asyncio.to_thread(shutil.rmtree, layout.dir, True)
        self._qmp_locks.pop(layout.uuid, None)
        self._qga_locks.pop(layout.uuid, None)

    def _argv_text(self, layout: Layout) -> str:
        return shlex.join(self.read_record(layout.dir).get("argv") or [])
