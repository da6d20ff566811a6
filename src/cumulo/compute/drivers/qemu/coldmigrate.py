"""The QEMU driver's ColdMigration (drivers.base): a stopped VM's disks to another host.

migration_files: the VM must be shut down; its root overlay (`disk.qcow2`) and its ephemeral disk
go (swap and the config drive are made again on the destination, as Nova's libvirt driver does).
finish_migration: the server is provisioned here as a spawn would (base image from this host's
cache, config drive, kernel files, VmConfig), then the received overlay replaces the fresh one and
is rebased (`qemu-img rebase -u`) onto this host's copy of the same base: the overlay names the
source's base path, which does not exist here. A larger flavor grows the overlay. The VM starts
when `power_on`; otherwise its record is written and it is SHUTDOWN. A failure removes everything.
cleanup_migration_source: destroy (a VM holds no host-wide name).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.base import InstanceSpec, MigrationFile, PowerState
from cumulo.compute.drivers.qemu import disks
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.compute.drivers.qemu.files import note
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import CumuloError, DriverError

ROOT = "disk.qcow2"
EPHEMERAL = "ephemeral.qcow2"


class ColdMigrate(QemuCore):
    # QemuDriver's (its own methods win in the MRO).
    async def _provision(self, layout: Layout, spec: InstanceSpec) -> VmConfig:
        raise NotImplementedError

    def _new_record(self, spec: InstanceSpec, cfg: VmConfig) -> dict[str, Any]:
        raise NotImplementedError

    async def destroy(self, uuid: str) -> None:
        raise NotImplementedError

    async def migration_files(self, uuid: str) -> list[MigrationFile]:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            power = await self._state(layout)
            if power != PowerState.SHUTDOWN:
                raise DriverError(f"Instance {uuid} is {power.name.lower()}: power it off before migrating it")
            out = [MigrationFile(name, str(layout.dir / name)) for name in (ROOT, EPHEMERAL)
                   if await asyncio.to_thread((layout.dir / name).is_file)]
            await asyncio.to_thread(note, layout, "cold migration: disks sent to another host")
        return out

    async def finish_migration(self, spec: InstanceSpec, received: str, power_on: bool) -> None:
        if spec.image is None or spec.root_disk is not None:
            raise DriverError("cold migration of a VM booted from a volume is not supported by the QEMU driver")
        incoming = Path(received)
        if not await asyncio.to_thread((incoming / ROOT).is_file):
            raise DriverError(f"the root disk of {spec.uuid} did not arrive")
        layout = Layout(await self.make_instance_dir(spec.uuid))
        try:
            async with self._op_lock(spec.uuid):
                cfg = await self._provision(layout, spec)
                base_path, base_fmt, base_size = await disks.cached_base(self.base_dir, spec.image)
                await asyncio.to_thread(os.replace, incoming / ROOT, layout.disk)
                # The overlay names the source's base: point it at this host's copy of the same image.
                await disks._qemu_img("rebase", "-u", "-f", "qcow2", "-b", str(base_path), "-F", base_fmt,
                                      str(layout.disk))
                want = disks.overlay_size(base_size, spec.flavor.root_gb)
                if await disks.virtual_size(layout.disk, "qcow2") < want:
                    await disks.resize(layout.disk, "qcow2", want)
                if await asyncio.to_thread((incoming / EPHEMERAL).is_file) and cfg.ephemeral:
                    await asyncio.to_thread(os.replace, incoming / EPHEMERAL, layout.ephemeral)
                rec = self._new_record(spec, cfg)
                await asyncio.to_thread(note, layout, "cold migration: disks received")
                if power_on:
                    await self._start(layout, cfg, rec, why="migration")
                else:
                    await self.write_record(layout.dir, rec)
        except BaseException as exc:
            await asyncio.shield(self.destroy(spec.uuid))
            if isinstance(exc, CumuloError | OSError) and not isinstance(exc, DriverError):
                raise DriverError(f"finishing the migration of {spec.uuid} failed: {exc}") from exc
            raise

    async def cleanup_migration_source(self, uuid: str) -> None:
        await self.destroy(uuid)
