"""Snapshot of a QEMU server: `qemu-img convert -f qcow2 -O qcow2` of the overlay, flattening the
backing chain into one standalone qcow2 in the work dir. A running guest is paused (QMP `stop`,
which also flushes QEMU's caches to the file) for the length of the copy, so the copy is
consistent, then resumes. The image properties that make it boot the same way (kernel_id,
ramdisk_id, os_command_line, the boot banner, the machine type) come from the server's record,
plus hypervisor_type=qemu.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from cumulo import host
from cumulo.compute.drivers.base import PowerState, SnapshotResult
from cumulo.compute.drivers.qemu import process
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.compute.drivers.qemu.files import note
from cumulo.errors import DriverError, HostError

# Image properties a snapshot carries over from the server's record (so it boots the same way).
SNAPSHOT_PROPERTIES = ("kernel_id", "ramdisk_id", "os_command_line", "cumulo_boot_banner", "hw_machine_type",
                       "hw_qemu_guest_agent")


async def _convert(src: Path, dst: Path, *, force_share: bool) -> None:
    """A standalone qcow2 of the overlay and its (verified, ours) backing chain. Not under
    disks' prlimit: copying a big disk may take more CPU time than its 30 s; every format is
    named and the chain is our overlay over a base that passed disks.verify."""
    args = ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2"]
    if force_share:  # QEMU holds the image's lock while it runs (paused: its caches flushed)
        args.append("-U")
    try:
        await host.run([*args, str(src), str(dst)], timeout=3600.0)
    except HostError as exc:
        raise DriverError(str(exc)) from exc


class Snapshot(QemuCore):
    async def snapshot(self, uuid: str, workdir: str) -> SnapshotResult:
        layout = self._existing(uuid)
        out = Path(workdir) / f"{uuid}.qcow2"
        async with self._op_lock(uuid):
            rec = self.read_record(layout.dir)
            if self._vm_config(layout).root_volume:
                raise DriverError(f"snapshot of {uuid}: the server boots from a volume; its snapshot is a snapshot "
                                  "of the volume (the compute API makes it), not of a local disk")
            power = await self._state(layout)
            paused = False
            if power == PowerState.RUNNING:
                await self._qmp(layout, "stop")
                paused = True
            try:
                # A file already there may be a hard link of something (a base made from an earlier
                # snapshot): replace it, never write through it.
                await asyncio.to_thread(out.unlink, missing_ok=True)
                await _convert(layout.disk, out, force_share=process.live_pid(layout) is not None)
            except BaseException as exc:
                await asyncio.shield(asyncio.to_thread(out.unlink, missing_ok=True))
                if isinstance(exc, DriverError):
                    raise DriverError(f"snapshot of {uuid} failed: {exc}") from exc
                raise
            finally:
                if paused:
                    with contextlib.suppress(DriverError):
                        await asyncio.shield(self._qmp(layout, "cont"))
        kept: dict[str, Any] = rec.get("image_properties") or {}
        props = {k: str(kept[k]) for k in SNAPSHOT_PROPERTIES if kept.get(k)}
        await asyncio.to_thread(note, layout, f"disk snapshot taken ({'guest paused meanwhile' if paused else 'guest not running'})")
        return SnapshotResult(path=str(out), disk_format="qcow2", container_format="bare",
                              properties={**props, "hypervisor_type": "qemu"})
