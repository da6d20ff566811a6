"""The QEMU driver: each server is a `qemu-system-x86_64` process, controlled over QMP.

hypervisor_type is "QEMU" (what Nova's libvirt driver reports); instance_types ("qemu",), plus
"kvm" when a KVM guest really runs here (accel.py probes it once per process; else TCG).

Per server, `<state_dir>/qemu/<uuid>/` (process.Layout) holds:
    disk.qcow2       qcow2 overlay on the verified, cached base image (`<state_dir>/qemu-base/`);
                     none for a server booted from a volume (its root is the volume's raw file)
    ephemeral.qcow2  when the flavor has ephemeral_gb (or ephemeral block device mappings)
    swap.raw         when the flavor has swap (or a swap mapping): raw, made with mkswap
    config.iso       the config drive (ISO9660, label config-2), configdrive.py
    kernel, initrd   direct kernel boot: hard links of the AKI/ARI image files
    console.log      the serial console (bounded: trimmed in place by list_instances)
    qmp.sock         QMP; qemu.pid the pidfile; qemu.log QEMU's own stderr
    qga.sock         the guest agent's channel, when the image sets hw_qemu_guest_agent=yes
    instance.json    written last: identity, the VmConfig and the argv of the last start
A dir without instance.json is a spawn that never finished (NOSTATE).

QEMU is daemonized (process.py): it outlives the agent, and a restarted agent adopts it when the
pidfile names a live QEMU whose -name is cumulo-<uuid> and whose QMP answers. The driver is one
class made of facets, one module each (Incus's driver_qemu_*.go): what they stand on (settings,
record, QMP, power state, start and stop) in core.py; pause in freeze.py; suspend/resume in
suspend.py; resize in resize.py; rebuild in rebuild.py; snapshot in snapshot.py; diagnostics and
metrics in metrics.py; NIC hot plug in nics.py (netdev.py); volumes in volumes.py (blockdev.py);
exec in the guest through the QEMU guest agent in exec.py (qga.py); live migration in migrate.py.
Lifecycle, power and the console live here; qemu-img in disks.py, QMP in
qmp.py, the process and its argv in process.py, the KVM probe in accel.py, small file helpers in
files.py.

spawn returns once QEMU runs the guest (QMP query-status "running"), as Nova's libvirt driver
reports a domain ACTIVE once it runs: what the guest then does (boot, print a banner, or nothing
at all, as a 1 KB blob image) is the guest's business. A guest that dies later (a kernel panic
with panic=-1 ends QEMU through -no-reboot) shows as SHUTDOWN to the power sync, its console
kept. The image's `cumulo_boot_banner` is a benchmark and diagnostic signal only
(benchmarks/boot_vm.py). QEMU failing to start or to reach "running" fails the spawn, quoting
QEMU's stderr and the console's last lines.

The machine type is chosen per image (boot.py): microvm with a PVH kernel entry for direct-kernel
(AKI/ARI) images whose kernel has one (the fast path), else q35 with SeaBIOS.

Settings (conf.qemu, parsed from these extra keys): qemu_accel ("auto" | "kvm" | "tcg"), qemu_boot_timeout (s, default 90:
how long a hard reboot waits for the firmware's own reset), qemu_stop_timeout (ACPI grace cap,
s), qemu_console_max_bytes, qemu_machine ("q35": disk images), qemu_direct_kernel_machine
("microvm" | "q35": PVH kernels), qemu_tsc_khz (0: measure the host TSC), qemu_spawn_delay (test
hook: a cancellable spawn).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import hostres
from cumulo.compute.drivers.base import (
    HostResources,
    InstanceSpec,
    InstanceStatus,
    PowerState,
)
from cumulo.compute.drivers.probe import HostFacts, missing_programs
from cumulo.compute.drivers.qemu import accel, blockdev, boot, configdrive, disks, netdev, process, qmp
from cumulo.compute.drivers.qemu.coldmigrate import ColdMigrate
from cumulo.compute.drivers.qemu.core import KEPT_PROPERTIES, wants_guest_agent
from cumulo.compute.drivers.qemu.exec import Exec
from cumulo.compute.drivers.qemu.files import note
from cumulo.compute.drivers.qemu.freeze import Freeze
from cumulo.compute.drivers.qemu.metrics import Metrics
from cumulo.compute.drivers.qemu.migrate import LiveMigration
from cumulo.compute.drivers.qemu.nics import Nics
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.compute.drivers.qemu.rebuild import Rebuild
from cumulo.compute.drivers.qemu.resize import Resize
from cumulo.compute.drivers.qemu.snapshot import Snapshot
from cumulo.compute.drivers.qemu.suspend import Suspend
from cumulo.compute.drivers.qemu.volumes import Volumes
from cumulo.errors import CumuloError, DriverError
from cumulo.host.revert import Reverter


class QemuDriver(Freeze, Suspend, Resize, Rebuild, Snapshot, Metrics, Nics, Volumes, Exec, LiveMigration, ColdMigrate):
    BINARIES = (process.QEMU, "qemu-img")

    @classmethod
    def probe(cls, host: HostFacts) -> list[str]:
        """QEMU needs its two binaries, not root (KVM or TCG is chosen at init_host: accel.py)."""
        return missing_programs(host, cls.BINARIES, "qemu-system-x86 qemu-utils")

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

    async def get_host_resources(self) -> HostResources:
        return hostres.local_host_resources(self.dir, model="qemu64" if self.accel == "tcg" else "host",
                                            vendor="QEMU")

    async def list_instances(self) -> list[InstanceStatus]:
        out = []
        for uuid in await self.instance_uuids():
            layout = Layout(self.dir / uuid)
            out.append(InstanceStatus(uuid, await self._state(layout)))
            if self.has_record(layout.dir):  # the power sync calls this every few seconds
                await asyncio.to_thread(self.trim_console, layout.dir)
        return out

    async def collect_image_cache(self, keep: set[str]) -> list[str]:
        """Verified bases no live image (`keep`) and no server disk here uses (disks.collect_bases)."""
        return await disks.collect_bases(self.base_dir, self.dir, keep, grace=self.conf.image_cache_min_age)

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        async def remove(uuid: str) -> bool:
            with contextlib.suppress(DriverError):
                layout = self._layout(uuid)
                await process.kill(layout, scan=True)  # only a QEMU named for this very dir
                await self._remove_dir(layout)
                return True
            return False

        return await self.sweep_dirs(known_uuids, remove)

    # -- Lifecycle ------------------------------------------------------------------------------

    async def spawn(self, spec: InstanceSpec) -> None:
        if spec.image is None and spec.root_disk is None:
            raise DriverError("The QEMU driver needs an image or a root volume to boot")
        layout = Layout(await self.make_instance_dir(spec.uuid))
        try:
            # Contract: a failed (or cancelled) spawn leaves nothing behind.
            async with Reverter() as revert:
                revert.add(self._remove_dir, layout)  # the disks, config drive and kernel files are in it
                revert.add(process.kill, layout, scan=True)  # only a QEMU named for this very dir
                async with self._op_lock(spec.uuid):
                    if self.spawn_delay > 0:
                        await asyncio.sleep(self.spawn_delay)
                    cfg = await self._provision(layout, spec)
                    rec = self._new_record(spec, cfg)
                    await self._start(layout, cfg, rec, why="spawn")
                revert.commit()
        except DriverError:
            raise
        except (CumuloError, OSError) as exc:
            raise DriverError(f"spawn of {spec.uuid} failed: {exc}") from exc

    async def _provision(self, layout: Layout, spec: InstanceSpec) -> VmConfig:
        """Disks, config drive and kernel files of a new server; returns its VmConfig.

        Booted from a volume (spec.root_disk), the root is the volume's raw file (no overlay) and
        `spec.image`, when given, is the volume's image metadata: its properties and kernel and
        ramdisk files boot the server as its image would."""
        root = spec.root_disk
        image = spec.image
        props = image.properties if image is not None else {}
        if root is not None:
            blockdev.check(root)
        else:
            assert image is not None
            base = await disks.cached_base(self.base_dir, image)
            await disks.create_overlay(layout.disk, base, spec.flavor.root_gb)
        if spec.flavor.ephemeral_gb > 0:
            await disks.create_blank(layout.ephemeral, spec.flavor.ephemeral_gb)
        if spec.flavor.swap > 0:
            await disks.create_swap(layout.swap, spec.flavor.swap)
        drive = configdrive.required_by(spec, force=self.conf.force_config_drive)
        if drive:
            await asyncio.to_thread(configdrive.build_iso, layout.config_iso, spec)
        kernel = image is not None and bool(image.kernel_path)
        if image is not None and kernel:
            await asyncio.to_thread(disks.link_or_copy, Path(image.kernel_path), layout.kernel)
            if image.ramdisk_path:
                await asyncio.to_thread(disks.link_or_copy, Path(image.ramdisk_path), layout.initrd)
        elif image is not None and image.ramdisk_path:
            raise DriverError(f"image {image.id} names a ramdisk but no kernel")
        await asyncio.to_thread(layout.console.touch)
        machine, why = await asyncio.to_thread(self.choose_machine, props, layout.kernel if kernel else None)
        await asyncio.to_thread(note, layout, f"boot path: {machine} ({why})")
        return VmConfig(
            memory_mb=spec.flavor.memory_mb, vcpus=spec.flavor.vcpus, accel=self.accel, machine=machine,
            kernel=kernel, initrd=kernel and image is not None and bool(image.ramdisk_path),
            append=str(props.get("os_command_line") or "") if kernel else "",
            root_format="raw" if root is not None else "qcow2", ephemeral=spec.flavor.ephemeral_gb > 0,
            swap=spec.flavor.swap > 0, config_drive=drive, root_volume=root.volume_id if root is not None else "",
            guest_agent=wants_guest_agent(props),
            # Every q35 server: a root port per boot NIC and volume (a root volume sits on the root
            # complex: blockdev.boot_disks), and spare ones for hot plug.
            hotplug_ports=netdev.hotplug_ports(machine, len(spec.nics) + sum(not d.is_root for d in spec.disks)),
        )

    def _new_record(self, spec: InstanceSpec, cfg: VmConfig) -> dict[str, Any]:
        props = spec.image.properties if spec.image is not None else {}
        f = spec.flavor
        nics = {"nics": netdev.record_docs(netdev.boot_nics(cfg, spec.nics))} if spec.nics else {}
        for disk in spec.disks:
            blockdev.check(disk)
        vols = {"disks": blockdev.record_docs(blockdev.boot_disks(cfg, spec.disks, len(spec.nics)))} if spec.disks else {}
        return {**nics, **vols,
            "uuid": spec.uuid, "name": spec.name, "hostname": spec.hostname,
            "image_id": spec.image.id if spec.image else None, "created_at": time.time(),
            "flavor": {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb,
                       "ephemeral_gb": f.ephemeral_gb, "swap": f.swap},
            "image_properties": {k: str(props[k]) for k in KEPT_PROPERTIES if props.get(k)},
            "vm": cfg.to_json(), "argv": [],
        }

    async def destroy(self, uuid: str) -> None:
        layout = self._layout(uuid)
        await process.kill(layout, scan=True)
        await self._remove_dir(layout)
        self._op_locks.pop(uuid, None)

    async def get_power_state(self, uuid: str) -> PowerState:
        layout = self._layout(uuid)
        if not layout.dir.is_dir():
            return PowerState.NOSTATE
        return await self._state(layout)

    # -- Power ----------------------------------------------------------------------------------

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
        await asyncio.to_thread(self.trim_console, layout.dir)
        rec = self.read_record(layout.dir)
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


__all__ = ["QemuDriver"]
