"""Resize of a runc server: the flavor's limits live (`runc update`) and in config.json for later
starts; another root disk size is an offline resize of its disk (rootdisk.py), with a restart.

`resize-old-flavor.json` keeps the flavor before a resize until confirm_resize or revert_resize.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import files
from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec
from cumulo.compute.drivers.local import RECORD
from cumulo.compute.drivers.runc import overlay
from cumulo.compute.drivers.runc.bundle import CPU_PERIOD_US
from cumulo.compute.drivers.runc.core import CONFIG, RuncCore, note
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import DriverError

MIB = 1024 * 1024
OLD_FLAVOR = "resize-old-flavor.json"


def _flavor_dict(f: FlavorSpec) -> dict[str, Any]:
    return {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb,
            "ephemeral_gb": f.ephemeral_gb, "swap": f.swap, "extra_specs": dict(f.extra_specs)}


class Resize(RuncCore):
    async def resize(self, spec: InstanceSpec, old_flavor: FlavorSpec) -> None:
        idir = self.existing_dir(spec.uuid)
        if not (idir / OLD_FLAVOR).exists():  # a retried resize keeps the first old flavor
            await asyncio.to_thread(files.write_json, idir / OLD_FLAVOR, _flavor_dict(old_flavor))
        await self._apply_flavor(spec.uuid, spec.flavor)
        await asyncio.to_thread(
            note, idir, f"resized to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB (live cgroup update)")

    async def confirm_resize(self, uuid: str) -> None:
        idir = self.existing_dir(uuid)
        await asyncio.to_thread((idir / OLD_FLAVOR).unlink, missing_ok=True)

    async def revert_resize(self, spec: InstanceSpec) -> None:
        """Back to spec.flavor (the manager passes the old one; the kept copy is what we had saved)."""
        idir = self.existing_dir(spec.uuid)
        await self._apply_flavor(spec.uuid, spec.flavor)
        await asyncio.to_thread((idir / OLD_FLAVOR).unlink, missing_ok=True)
        await asyncio.to_thread(
            note, idir, f"resize reverted to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB")

    async def _apply_flavor(self, uuid: str, flavor: FlavorSpec) -> None:
        """The flavor's limits, live (`runc update`) when a container exists, and in config.json for later starts."""
        idir = self.existing_dir(uuid)
        cid = container_id(uuid)
        config = await asyncio.to_thread(files.read_json, idir / CONFIG)
        if config is None:
            raise DriverError(f"The config.json of instance {uuid} is missing or unreadable")
        res = config.setdefault("linux", {}).setdefault("resources", {})
        memory = flavor.memory_mb * MIB
        period = int(res.get("cpu", {}).get("period") or CPU_PERIOD_US)
        pids = int(res.get("pids", {}).get("limit") or self.pids_limit)
        res["memory"] = {**res.get("memory", {}), "limit": memory, "swap": memory}
        res["cpu"] = {**res.get("cpu", {}), "quota": flavor.vcpus * period, "period": period}
        res["pids"] = {"limit": pids}
        if await self.runc.status(cid) in ("running", "paused", "created"):
            # Live first: a limit the kernel refuses (memory below usage) leaves config.json as it was.
            await self.runc.update(cid, memory=memory, cpu_quota=flavor.vcpus * period, cpu_period=period, pids=pids)
        await asyncio.to_thread(files.write_json, idir / CONFIG, config)
        await self.resize_root_disk(uuid, flavor.root_gb)  # another disk size: a restart (rootdisk.py)

    async def resize_root_disk(self, uuid: str, root_gb: int) -> None:
        """A resize to another disk size (rootdisk.py): stop, resize the disk offline, start again if it ran."""
        idir = self.existing_dir(uuid)
        if not await asyncio.to_thread(self.disks.resize_needed, idir, root_gb):
            return
        cid = container_id(uuid)
        status = await self.runc.status(cid)
        if status == "paused":
            raise DriverError(f"Instance {uuid} is paused; its root disk cannot be resized")
        merged = idir / "rootfs"
        was_mounted = await overlay.is_mounted(merged)
        lower = await self._lower(idir)
        if was_mounted and lower is None:
            raise DriverError(f"cannot tell the image root of instance {uuid}; its root disk is not resized")
        await self._stop(uuid, self.stop_grace, "resize of the root disk")
        await overlay.unmount_strict(merged)
        try:
            line = await self.disks.resize_offline(idir, root_gb)
        finally:
            if was_mounted and lower is not None:
                upper, work = await self.disks.ensure_mounted(idir)
                await overlay.mount(lower, upper, work, merged)
        await asyncio.to_thread(note, idir, line)
        if status == "running":
            config = json.loads(await asyncio.to_thread((idir / CONFIG).read_text))
            await self._start(cid, idir, config["process"]["args"])

    async def _lower(self, idir: Path) -> Path | None:
        """The image root under a server: its mounted overlay's, else the cached root its record names."""
        lower = await overlay.lower_of(idir / "rootfs")
        if lower is not None:
            return lower
        rec = await asyncio.to_thread(files.read_json, idir / RECORD) or {}
        key = str(rec.get("rootfs_key") or "")
        if not key:
            return None
        root = self.images / "rootfs" / key / "rootfs"
        return root if await asyncio.to_thread(root.is_dir) else None
