"""The QEMU driver: each server is a `qemu-system-x86_64` process, controlled over QMP.

hypervisor_type is "QEMU" (what Nova's libvirt driver reports); instance_types ("qemu",), plus
"kvm" when a KVM guest really runs here (accel.py probes it once per process; else TCG).

Per server, `<state_dir>/qemu/<uuid>/` (process.Layout) holds:
    disk.qcow2       qcow2 overlay on the verified, cached base image (`<state_dir>/qemu-base/`)
    ephemeral.qcow2  when the flavor has ephemeral_gb
    config.iso       the config drive (ISO9660, label config-2), configdrive.py
    kernel, initrd   direct kernel boot: hard links of the AKI/ARI image files
    console.log      the serial console (bounded: trimmed in place by list_instances)
    qmp.sock         QMP; qemu.pid the pidfile; qemu.log QEMU's own stderr
    instance.json    written last: identity, the VmConfig and the argv of the last start
A dir without instance.json is a spawn that never finished (NOSTATE).

QEMU is daemonized (process.py): it outlives the agent, and a restarted agent adopts it when the
pidfile names a live QEMU whose -name is cumulo-<uuid> and whose QMP answers. Power, pause and the
console live here; suspend/resume and resize in ops.py, diagnostics and metrics in metrics.py,
rebuild and snapshot in imageops.py; qemu-img in disks.py, QMP in qmp.py, the process and its argv in process.py, the
KVM probe in accel.py, small file helpers in files.py.

spawn returns once QEMU runs the guest (QMP query-status "running"), as Nova's libvirt driver
reports a domain ACTIVE once it runs: what the guest then does (boot, print a banner, or nothing
at all, as a 1 KB blob image) is the guest's business. A guest that dies later (a kernel panic
with panic=-1 ends QEMU through -no-reboot) shows as SHUTDOWN to the power sync, its console
kept. The image's `cumulo_boot_banner` is a benchmark and diagnostic signal only
(benchmarks/boot_vm.py). QEMU failing to start or to reach "running" fails the spawn, quoting
QEMU's stderr and the console's last lines.

The machine type is chosen per image (boot.py): microvm with a PVH kernel entry for direct-kernel
(AKI/ARI) images whose kernel has one (the fast path), else q35 with SeaBIOS.

Settings (conf.extra): qemu_accel ("auto" | "kvm" | "tcg"), qemu_boot_timeout (s, default 90:
how long a hard reboot waits for the firmware's own reset), qemu_stop_timeout (ACPI grace cap,
s), qemu_console_max_bytes, qemu_machine ("q35": disk images), qemu_direct_kernel_machine
("microvm" | "q35": PVH kernels), qemu_tsc_khz (0: measure the host TSC), qemu_spawn_delay (test
hook: a cancellable spawn).
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

from cumulo.compute.drivers import hostres
from cumulo.compute.drivers.base import (
    Capability,
    DriverInfo,
    FlavorSpec,
    HostResources,
    InstanceSample,
    InstanceSpec,
    InstanceStatus,
    PowerState,
    SnapshotResult,
)
from cumulo.compute.drivers.qemu import accel, boot, configdrive, disks, imageops, metrics, ops, process, qmp
from cumulo.compute.drivers.qemu.files import (
    last_lines,
    note,
    read_json,
    read_tail,
    tail_bytes,
    trim_in_place,
    write_json,
)
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.conf import Settings
from cumulo.errors import CumuloError, DriverError

CONSOLE_MAX_BYTES = 1 << 20
DEFAULT_BOOT_TIMEOUT = 90.0
BANNER_PROPERTY = "cumulo_boot_banner"
# Image properties a server keeps in its record (a snapshot boots the same way).
KEPT_PROPERTIES = ("os_command_line", BANNER_PROPERTY, "hw_machine_type", "kernel_id", "ramdisk_id")
SUSPENDED_MARKER = "suspended.json"  # written by suspend (ops module): no process, state saved

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


class QemuDriver:
    def __init__(self, conf: Settings, host_name: str, *, local: bool = True) -> None:
        self.conf = conf
        self.host_name = host_name
        self.local = local
        state = Path(conf.state_dir).absolute()
        self.dir = state / "qemu"
        self.base_dir = state / "qemu-base"  # verified base images, shared by servers
        extra = conf.extra
        self.accel_setting = str(extra.get("qemu_accel", "auto"))
        self.boot_timeout = float(extra.get("qemu_boot_timeout", DEFAULT_BOOT_TIMEOUT))
        self.stop_timeout = float(extra.get("qemu_stop_timeout", 60.0))
        self.console_max = int(extra.get("qemu_console_max_bytes", CONSOLE_MAX_BYTES))
        self.machine = str(extra.get("qemu_machine", "q35"))
        self.kernel_machine = str(extra.get("qemu_direct_kernel_machine", boot.MICROVM))
        self.tsc_setting = int(extra.get("qemu_tsc_khz", 0) or 0)
        self.tsc_khz = 0  # the host TSC rate, for microvm guests under TCG (init_host)
        self.spawn_delay = float(extra.get("qemu_spawn_delay", 0.0))
        self.accel = "tcg"
        self._qmp_locks: dict[str, asyncio.Lock] = {}
        self._op_locks: dict[str, asyncio.Lock] = {}
        self.info = DriverInfo(
            name="qemu",
            hypervisor_type="QEMU",
            instance_types=("qemu",),
            version=1,
            capabilities=frozenset({Capability.POWER, Capability.PAUSE, Capability.CONSOLE, Capability.SUSPEND,
                                    Capability.RESIZE, Capability.REBUILD, Capability.SNAPSHOT,
                                    Capability.DIAGNOSTICS, Capability.METRICS}),
            details={"accel": "tcg", "accel_reason": "not probed yet", "machine": self.machine,
                     "suspend": "migrate-to-file", "resize": "cold"},
        )

    # -- helpers shared with the sibling modules --------------------------------------------------

    def _layout(self, uuid: str) -> Layout:
        if not uuid or "/" in uuid or uuid in (".", "..") or "," in uuid:
            raise DriverError(f"bad instance uuid {uuid!r}")
        return Layout(self.dir / uuid)

    def _existing(self, uuid: str) -> Layout:
        layout = self._layout(uuid)
        if not layout.record.is_file():
            raise DriverError(f"Instance {uuid} does not exist on QEMU host {self.host_name}")
        return layout

    def _op_lock(self, uuid: str) -> asyncio.Lock:
        """Serialises operations on one server (start/stop/pause/... never interleave)."""
        return self._op_locks.setdefault(uuid, asyncio.Lock())

    def _record(self, layout: Layout) -> dict[str, Any]:
        rec = read_json(layout.record)
        if rec is None:
            raise DriverError(f"the record of instance {layout.uuid} is missing or unreadable")
        return rec

    def _vm_config(self, layout: Layout) -> VmConfig:
        return VmConfig.from_json(self._record(layout).get("vm") or {})

    async def _save_record(self, layout: Layout, rec: dict[str, Any]) -> None:
        await asyncio.to_thread(write_json, layout.record, rec)

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
        if not layout.record.is_file():
            return PowerState.NOSTATE  # a spawn under way, or one a crash cut short
        if status is None:
            return PowerState.SUSPENDED if self._suspended(layout) else PowerState.SHUTDOWN
        return _STATUS_POWER.get(status, PowerState.NOSTATE)

    async def _state(self, layout: Layout) -> PowerState:
        return self._power(layout, await self._qmp_status(layout))

    # -- Host -----------------------------------------------------------------------------------

    async def init_host(self) -> None:
        await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self.base_dir.mkdir, parents=True, exist_ok=True)
        self.accel, reason = await accel.choose(self.accel_setting)
        if self.kernel_machine == boot.MICROVM and self.accel != "kvm":
            measured: int | None = self.tsc_setting or await asyncio.to_thread(boot.host_tsc_khz)
            self.tsc_khz = measured or 0
        types = ("qemu", "kvm") if self.accel == "kvm" else ("qemu",)
        self.info = dataclasses.replace(
            self.info, instance_types=types,
            details={**self.info.details, "accel": self.accel, "accel_reason": reason, "machine": self.machine,
                     "direct_kernel_machine": self.kernel_machine if self._fast_ok() else self.machine},
        )

    def _fast_ok(self) -> bool:
        """microvm can run here: KVM (kvmclock), or TCG with a known host TSC rate."""
        return self.accel == "kvm" or self.tsc_khz > 0

    def choose_machine(self, props: dict[str, Any], kernel: Path | None) -> tuple[str, str]:
        """(machine, why) for an image whose kernel file (direct boot) is `kernel`. Blocking."""
        pvh = kernel is not None and boot.has_pvh_entry(kernel)
        return boot.choose_machine(props, kernel=kernel is not None, pvh=pvh, default=self.machine,
                                   fast=self.kernel_machine, fast_ok=self._fast_ok())

    async def get_host_resources(self) -> HostResources:
        return hostres.local_host_resources(self.dir, model="qemu64" if self.accel == "tcg" else "host",
                                            vendor="QEMU")

    async def _dirs(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in await asyncio.to_thread(lambda: list(self.dir.iterdir())) if p.is_dir())

    async def list_instances(self) -> list[InstanceStatus]:
        out = []
        for uuid in await self._dirs():
            layout = Layout(self.dir / uuid)
            out.append(InstanceStatus(uuid, await self._state(layout)))
            if layout.record.is_file():  # the power sync calls this every few seconds
                await asyncio.to_thread(trim_in_place, layout.console, self.console_max)
        return out

    async def collect_image_cache(self, keep: set[str]) -> list[str]:
        """Verified bases no live image (`keep`) and no server disk here uses (disks.collect_bases)."""
        return await disks.collect_bases(self.base_dir, self.dir, keep, grace=self.conf.image_cache_min_age)

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        removed: list[str] = []
        for uuid in await self._dirs():
            if uuid in known_uuids:
                continue
            with contextlib.suppress(DriverError):
                layout = self._layout(uuid)
                await process.kill(layout, scan=True)  # only a QEMU named for this very dir
                await self._remove_dir(layout)
                removed.append(uuid)
        return removed

    # -- Lifecycle ------------------------------------------------------------------------------

    async def spawn(self, spec: InstanceSpec) -> None:
        if spec.image is None:
            raise DriverError("The QEMU driver needs an image to boot (boot from volume is not supported)")
        layout = self._layout(spec.uuid)
        await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(layout.dir.mkdir)
        except FileExistsError:
            raise DriverError(f"Instance {spec.uuid} already exists on QEMU host {self.host_name}") from None
        try:
            async with self._op_lock(spec.uuid):
                if self.spawn_delay > 0:
                    await asyncio.sleep(self.spawn_delay)
                cfg = await self._provision(layout, spec)
                rec = self._new_record(spec, cfg)
                await self._start(layout, cfg, rec, why="spawn")
        except BaseException as exc:
            # Contract: a failed (or cancelled) spawn leaves nothing behind.
            await asyncio.shield(self._undo(layout))
            if isinstance(exc, DriverError) or not isinstance(exc, Exception):
                raise
            if isinstance(exc, CumuloError | OSError):
                raise DriverError(f"spawn of {spec.uuid} failed: {exc}") from exc
            raise

    async def _provision(self, layout: Layout, spec: InstanceSpec) -> VmConfig:
        """Disks, config drive and kernel files of a new server; returns its VmConfig."""
        assert spec.image is not None
        image = spec.image
        props = image.properties
        base = await disks.cached_base(self.base_dir, image)
        await disks.create_overlay(layout.disk, base, spec.flavor.root_gb)
        if spec.flavor.ephemeral_gb > 0:
            await disks.create_blank(layout.ephemeral, spec.flavor.ephemeral_gb)
        await asyncio.to_thread(configdrive.build_iso, layout.config_iso, spec)
        kernel = bool(image.kernel_path)
        if kernel:
            await asyncio.to_thread(disks.link_or_copy, Path(image.kernel_path), layout.kernel)
            if image.ramdisk_path:
                await asyncio.to_thread(disks.link_or_copy, Path(image.ramdisk_path), layout.initrd)
        elif image.ramdisk_path:
            raise DriverError(f"image {image.id} names a ramdisk but no kernel")
        await asyncio.to_thread(layout.console.touch)
        machine, why = await asyncio.to_thread(self.choose_machine, props, layout.kernel if kernel else None)
        await asyncio.to_thread(note, layout, f"boot path: {machine} ({why})")
        return VmConfig(
            memory_mb=spec.flavor.memory_mb, vcpus=spec.flavor.vcpus, accel=self.accel, machine=machine,
            kernel=kernel, initrd=kernel and bool(image.ramdisk_path),
            append=str(props.get("os_command_line") or "") if kernel else "",
            root_format="qcow2", ephemeral=spec.flavor.ephemeral_gb > 0, config_drive=True,
        )

    def _new_record(self, spec: InstanceSpec, cfg: VmConfig) -> dict[str, Any]:
        props = spec.image.properties if spec.image is not None else {}
        f = spec.flavor
        return {
            "uuid": spec.uuid, "name": spec.name, "hostname": spec.hostname,
            "image_id": spec.image.id if spec.image else None, "created_at": time.time(),
            "flavor": {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb,
                       "ephemeral_gb": f.ephemeral_gb, "swap": f.swap},
            "image_properties": {k: str(props[k]) for k in KEPT_PROPERTIES if props.get(k)},
            "vm": cfg.to_json(), "argv": [],
        }

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
        argv = process.build_argv(layout, cfg) + list(extra_argv or [])
        await asyncio.to_thread(note, layout, f"{why}: starting QEMU ({cfg.accel}, {cfg.machine}, "
                                              f"{cfg.memory_mb} MB, {cfg.vcpus} vCPU)")
        started = time.monotonic()
        try:
            pid = await process.start(layout, argv)
            await self._wait_status(layout, pid, ("running",) if not extra_argv else ("running", "inmigrate", "paused"))
            rec.setdefault("timings", {})["qemu_running_s"] = round(time.monotonic() - started, 3)
        except BaseException:
            await asyncio.shield(process.kill(layout, scan=True))
            raise
        rec["vm"] = cfg.to_json()
        rec["argv"] = argv
        rec["started_at"] = time.time()
        await self._save_record(layout, rec)

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

    async def _undo(self, layout: Layout) -> None:
        await process.kill(layout, scan=True)
        await self._remove_dir(layout)

    async def _remove_dir(self, layout: Layout) -> None:
        if layout.dir.exists():
            await asyncio.to_thread(shutil.rmtree, layout.dir, True)
        self._qmp_locks.pop(layout.uuid, None)

    async def destroy(self, uuid: str) -> None:
        layout = self._layout(uuid)
        await self._undo(layout)
        self._op_locks.pop(uuid, None)

    async def get_power_state(self, uuid: str) -> PowerState:
        layout = self._layout(uuid)
        if not layout.dir.is_dir():
            return PowerState.NOSTATE
        return await self._state(layout)

    # -- Power ----------------------------------------------------------------------------------

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

    async def power_off(self, uuid: str, timeout: float = 10.0) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            await self._stop(layout, timeout, "power off")
            await asyncio.to_thread(self._forget_suspend, layout)

    async def power_on(self, spec: InstanceSpec) -> None:
        layout = self._existing(spec.uuid)
        async with self._op_lock(spec.uuid):
            await self._power_on(layout, spec)

    async def _power_on(self, layout: Layout, spec: InstanceSpec) -> None:
        power = await self._state(layout)
        if power == PowerState.RUNNING:
            return
        if power != PowerState.SHUTDOWN:
            raise DriverError(f"Instance {spec.uuid} is {power.name.lower()}, not shut down")
        await asyncio.to_thread(trim_in_place, layout.console, self.console_max)
        rec = self._record(layout)
        await self._start(layout, self._vm_config(layout), rec, why="power on")

    async def reboot(self, spec: InstanceSpec, hard: bool) -> None:
        layout = self._existing(spec.uuid)
        async with self._op_lock(spec.uuid):
            power = await self._state(layout)
            if not hard:
                if power != PowerState.RUNNING:
                    raise DriverError(f"Instance {spec.uuid} is not running; a soft reboot needs a running guest")
                pid = process.live_pid(layout)
                with contextlib.suppress(DriverError):
                    await self._qmp(layout, "system_powerdown")
                if pid is not None and await process.wait_exit(pid, layout.uuid, min(self.stop_timeout, 60.0)):
                    await asyncio.to_thread(note, layout, "reboot: the guest powered off")
                    await self._power_on(layout, spec)
                    return
                await asyncio.to_thread(note, layout, "reboot: no ACPI power-off; resetting")
            if power in (PowerState.RUNNING, PowerState.PAUSED, PowerState.CRASHED) and process.live_pid(layout):
                await self._reset(layout)
                return
            await self._stop(layout, 0, "hard reboot")
            await asyncio.to_thread(self._forget_suspend, layout)
            await self._power_on(layout, spec)

    async def _reset(self, layout: Layout) -> None:
        """QMP system_reset. -no-reboot turns every reset into an exit, and SeaBIOS (q35, pc)
        resets the machine once more itself after a warm reset; so the reboot action is "reset"
        until that second reset came (a QMP RESET event from the guest) or the guest writes to its
        console again, then back to "shutdown". microvm has no firmware step of that kind. The
        guest's boot is not waited for, as at spawn."""
        await asyncio.to_thread(note, layout, "hard reboot: system_reset")
        offset = layout.console.stat().st_size if layout.console.exists() else 0
        firmware = self._vm_config(layout).machine != boot.MICROVM
        async with self._qmp_locks.setdefault(layout.uuid, asyncio.Lock()), qmp.session(layout.qmp) as conn:
            await conn.execute("set-action", {"reboot": "reset"})
            try:
                mark = len(conn.events)
                await conn.execute("system_reset")
                if str((await conn.execute("query-status") or {}).get("status", "")) in ("paused", "suspended"):
                    await conn.execute("cont")
                if firmware:
                    await self._wait_firmware_reset(layout, conn, mark, offset)
            finally:
                with contextlib.suppress(DriverError):
                    await conn.execute("set-action", {"reboot": "shutdown"})

    async def _wait_firmware_reset(self, layout: Layout, conn: qmp.Qmp, mark: int, offset: int) -> None:
        """Until SeaBIOS's own reset after a system_reset, the guest's console output, QEMU's exit
        or qemu_boot_timeout, whichever comes first."""
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline and not conn.closed:
            ev = await conn.wait_event(["RESET"], timeout=0.05, since=mark)
            if ev is not None:
                if (ev.get("data") or {}).get("guest"):
                    return
                mark = conn.events.index(ev) + 1
            if layout.console.exists() and layout.console.stat().st_size > offset:
                return

    # -- Pause ----------------------------------------------------------------------------------

    async def pause(self, uuid: str) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            power = await self._state(layout)
            if power == PowerState.PAUSED:
                return
            if power != PowerState.RUNNING:
                raise DriverError(f"Cannot pause instance {uuid} in power state {power.name}")
            await self._qmp(layout, "stop")
            await asyncio.to_thread(note, layout, "paused (QMP stop)")

    async def unpause(self, uuid: str) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            power = await self._state(layout)
            if power == PowerState.RUNNING:
                return
            if power != PowerState.PAUSED:
                raise DriverError(f"Cannot unpause instance {uuid} in power state {power.name}")
            await self._qmp(layout, "cont")
            await asyncio.to_thread(note, layout, "unpaused (QMP cont)")

    # -- Suspend / Resize (ops.py), Diagnostics (metrics.py), Rebuild / Snapshot (imageops.py) ---------------

    async def suspend(self, uuid: str) -> None:
        await ops.suspend(self, uuid)

    async def resume(self, spec: InstanceSpec) -> None:
        await ops.resume(self, spec)

    async def resize(self, spec: InstanceSpec, old_flavor: FlavorSpec) -> None:
        await ops.resize(self, spec, old_flavor)

    async def confirm_resize(self, uuid: str) -> None:
        await ops.confirm_resize(self, uuid)

    async def revert_resize(self, spec: InstanceSpec) -> None:
        await ops.revert_resize(self, spec)

    async def get_diagnostics(self, uuid: str) -> dict[str, Any]:
        return await metrics.diagnostics(self, uuid)

    async def sample_instances(self, uuids: list[str]) -> list[InstanceSample]:
        return await metrics.sample_instances(self, uuids)

    async def rebuild(self, spec: InstanceSpec) -> None:
        await imageops.rebuild(self, spec)

    async def snapshot(self, uuid: str, workdir: str) -> SnapshotResult:
        return await imageops.snapshot(self, uuid, workdir)

    # -- Console --------------------------------------------------------------------------------

    async def get_console_output(self, uuid: str, max_bytes: int = 65536) -> str:
        layout = self._existing(uuid)
        if max_bytes <= 0:
            return ""
        text = (await asyncio.to_thread(tail_bytes, layout.console, max_bytes)).decode(errors="ignore")
        while len(text.encode()) > max_bytes:
            text = text[1:]
        return text

    def _argv_text(self, layout: Layout) -> str:
        return shlex.join(self._record(layout).get("argv") or [])


__all__ = ["QemuDriver", "note", "read_json", "tail_bytes", "trim_in_place", "write_json"]
