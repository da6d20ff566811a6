"""The runc driver's ColdMigration (drivers.base): a stopped container's root disk to another host.

migration_files: the container must be stopped (no runc container); its overlay and root disk are
unmounted (the loop device goes), its volumes released here, its network namespace
`cumulo-<uuid>` (a host-wide name) is deleted, so a destination on the same machine can make its own; what goes is the root disk
`disk.ext4` (the overlay's upper and work dirs: everything the tenant wrote), or the `upper` dir
as a tree for a server without a root disk (runc_root_disk none). power_on on the source later
(a revert) mounts it all again and makes the netns anew (core._start).
finish_migration: the server is made here by spawn (bundle, config drive, netns, NICs, volumes,
from this host's image cache), stopped at once, and its fresh disk (or upper dir) is replaced by
the received one; a disk of another size than the flavor's is resized offline (rootdisk.py). It
starts again when `power_on`. A failure destroys it.
cleanup_migration_source: the server's dir, mounts and loop devices go, never its netns name
(which the destination may hold on the same machine) nor a runc container (it has none).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from cumulo.compute.drivers.base import InstanceSpec, MigrationFile
from cumulo.compute.drivers.runc import netns, overlay, rootdisk, volhost
from cumulo.compute.drivers.runc.core import CONFIG, note
from cumulo.compute.drivers.runc.resize import Resize
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import CumuloError, DriverError

UPPER = "upper"


async def _unmount_root(idir: Path) -> None:
    """The overlay, then the root disk under it, for real (never lazily: the disk file moves)."""
    await overlay.unmount_strict(idir / "rootfs")
    await overlay.unmount_strict(idir / rootdisk.DISK_DIR)


class ColdMigrate(Resize):
    # RuncDriver's (its own methods win in the MRO).
    async def spawn(self, spec: InstanceSpec) -> None:
        raise NotImplementedError

    async def destroy(self, uuid: str) -> None:
        raise NotImplementedError

    async def migration_files(self, uuid: str) -> list[MigrationFile]:
        idir = self.existing_dir(uuid)
        status = await self.runc.status(container_id(uuid))
        if status not in (None, "stopped"):
            raise DriverError(f"Instance {uuid} is {status}: power it off before migrating it")
        await self._stop(uuid, 0, "cold migration")  # a stopped container's leftover record goes
        await _unmount_root(idir)
        await netns.delete(uuid)
        # Its volumes' mounts and loop devices go: the destination brings them up (a second mount
        # of one ext4 would corrupt it); a revert's power_on brings them back here (core._start).
        await volhost.release_all(idir.parent.parent, idir)
        await asyncio.to_thread(note, idir, "cold migration: root disk sent to another host")
        if await asyncio.to_thread((idir / rootdisk.DISK_FILE).is_file):
            return [MigrationFile(rootdisk.DISK_FILE, str(idir / rootdisk.DISK_FILE))]
        return [MigrationFile(UPPER, str(idir / UPPER), tree=True)]

    async def finish_migration(self, spec: InstanceSpec, received: str, power_on: bool) -> None:
        incoming = Path(received)
        disk = await asyncio.to_thread((incoming / rootdisk.DISK_FILE).is_file)
        if not disk and not await asyncio.to_thread((incoming / UPPER).is_dir):
            raise DriverError(f"the root disk of {spec.uuid} did not arrive")
        await self.spawn(spec)
        idir = self.existing_dir(spec.uuid)
        cid = container_id(spec.uuid)
        try:
            lower = await self._lower(idir)
            if lower is None:
                raise DriverError(f"cannot tell the image root of {spec.uuid}")
            await self._stop(spec.uuid, 0, "cold migration: the server's own disk arrives")
            await _unmount_root(idir)
            if disk:
                if not await asyncio.to_thread((idir / rootdisk.DISK_FILE).is_file):
                    raise DriverError(f"{spec.uuid} was made without a root disk here; its disk cannot be used")
                await self.disks._wait_released(idir)
                await asyncio.to_thread(os.replace, incoming / rootdisk.DISK_FILE, idir / rootdisk.DISK_FILE)
                if await asyncio.to_thread(self.disks.resize_needed, idir, spec.flavor.root_gb):
                    await asyncio.to_thread(note, idir, await self.disks.resize_offline(idir, spec.flavor.root_gb))
            else:
                await asyncio.to_thread(shutil.rmtree, idir / UPPER)
                await asyncio.to_thread(os.replace, incoming / UPPER, idir / UPPER)
            upper, work = await self.disks.ensure_mounted(idir)
            await overlay.mount(lower, upper, work, idir / "rootfs")
            await volhost.before_start(idir.parent.parent, idir, CONFIG, lambda line: note(idir, line))
            await asyncio.to_thread(note, idir, "cold migration: root disk received")
            if power_on:
                config = json.loads(await asyncio.to_thread((idir / CONFIG).read_text))
                await self._start(cid, idir, config["process"]["args"])
        except BaseException as exc:
            await asyncio.shield(self.destroy(spec.uuid))
            if isinstance(exc, CumuloError | OSError) and not isinstance(exc, DriverError):
                raise DriverError(f"finishing the migration of {spec.uuid} failed: {exc}") from exc
            raise

    async def cleanup_migration_source(self, uuid: str) -> None:
        idir = self.instance_dir(uuid)
        await self.consoles.wait(uuid, timeout=2.0)
        await volhost.release_all(idir.parent.parent, idir)
        await overlay.unmount_all(idir)
        if await asyncio.to_thread(idir.exists):
            await asyncio.to_thread(shutil.rmtree, idir)
        self._nic_locks.pop(uuid, None)
