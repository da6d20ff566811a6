"""Resize of a QEMU server: cold, as Nova's. Stop, grow the disks (never shrink), start with the
new -m/-smp.

`resize-old.json`, `disk.pre-resize.qcow2` (+ `ephemeral.pre-resize.qcow2`): the flavor, VmConfig
and disks from before a resize, kept until confirm_resize or revert_resize.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.files import read_json
from cumulo.compute.drivers.local import guard
from cumulo.compute.drivers.qemu import disks, process
from cumulo.compute.drivers.qemu.core import STOP_GRACE, QemuCore
from cumulo.compute.drivers.qemu.files import note
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import CumuloError, DriverError
from cumulo.host.revert import Reverter

OLD = "resize-old.json"
PRE_DISK = "disk.pre-resize.qcow2"
PRE_EPHEMERAL = "ephemeral.pre-resize.qcow2"


def flavor_dict(f: FlavorSpec) -> dict[str, Any]:
    return {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb,
            "ephemeral_gb": f.ephemeral_gb, "swap": f.swap}


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _keep_pre_resize(layout: Layout, old: dict[str, Any]) -> None:
    """Copies of the disks and the old settings, for revert_resize (blocking). A server booted
    from a volume has no local root disk (its volume is left as it is, as Nova does)."""
    if layout.disk.exists():
        _copy(layout.disk, layout.dir / PRE_DISK)
    if layout.ephemeral.exists():
        _copy(layout.ephemeral, layout.dir / PRE_EPHEMERAL)
    tmp = layout.dir / f".{OLD}.tmp"
    tmp.write_text(json.dumps(old, indent=1))
    os.replace(tmp, layout.dir / OLD)


def _restore_pre_resize(layout: Layout, old: dict[str, Any]) -> None:
    """The disks from before the resize back in place, and the kept copies gone (blocking)."""
    if (layout.dir / PRE_DISK).exists():
        os.replace(layout.dir / PRE_DISK, layout.disk)
    if (layout.dir / PRE_EPHEMERAL).exists():
        os.replace(layout.dir / PRE_EPHEMERAL, layout.ephemeral)
    elif not old.get("ephemeral_existed", True):
        layout.ephemeral.unlink(missing_ok=True)
    (layout.dir / OLD).unlink(missing_ok=True)


def _drop_pre_resize(layout: Layout) -> None:
    for name in (PRE_DISK, PRE_EPHEMERAL, OLD):
        (layout.dir / name).unlink(missing_ok=True)


async def _grow(path: Path, size: int) -> None:
    """Grow a qcow2 disk to `size` bytes; never shrink it."""
    if size > await disks.virtual_size(path, "qcow2"):
        await disks.resize(path, "qcow2", size)


async def _apply(drv: QemuCore, layout: Layout, rec: dict[str, Any], cfg: VmConfig, flavor: dict[str, Any],
                 running: bool, why: str) -> None:
    """Record cfg and flavor (and the argv they make), and start the server again if it ran."""
    cfg = dataclasses.replace(cfg, accel=drv.accel)
    rec["flavor"] = flavor
    rec["vm"] = cfg.to_json()
    rec["argv"] = process.build_argv(layout, cfg)
    if running:
        await drv._start(layout, cfg, rec, why=why)  # saves the record
    else:
        await drv.write_record(layout.dir, rec)


def _restore_kept(layout: Layout) -> None:
    """The disks kept at the start of a failed resize back in place (blocking)."""
    _restore_pre_resize(layout, read_json(layout.dir / OLD) or {})


class Resize(QemuCore):
    async def resize(self, spec: InstanceSpec, old_flavor: FlavorSpec) -> None:
        layout = self._existing(spec.uuid)
        new = spec.flavor
        async with self._op_lock(spec.uuid):
            power = await self._state(layout)
            guard("resize", spec.uuid, power, done=None, allowed=(PowerState.RUNNING, PowerState.SHUTDOWN))
            running = power == PowerState.RUNNING
            rec = self.read_record(layout.dir)
            old_rec = json.loads(json.dumps(rec))
            old_cfg = self._vm_config(layout)
            cfg = dataclasses.replace(old_cfg, memory_mb=new.memory_mb, vcpus=new.vcpus,
                                      ephemeral=old_cfg.ephemeral or new.ephemeral_gb > 0)
            if running:
                await self._stop(layout, STOP_GRACE, "resize")
            first = not (layout.dir / OLD).exists()  # a retried resize keeps the first copies
            try:
                # A failed resize puts the old disks, record and power state back.
                async with Reverter() as revert:
                    if running:
                        revert.add(self._start, layout, old_cfg, old_rec, why="resize failed; old size")
                    revert.add(self.write_record, layout.dir, old_rec)
                    if first:
                        revert.add(asyncio.to_thread, _restore_kept, layout)
                        old = {"flavor": flavor_dict(old_flavor), "vm": old_cfg.to_json(),
                               "ephemeral_existed": layout.ephemeral.exists(), "was_running": running}
                        await asyncio.to_thread(_keep_pre_resize, layout, old)
                    if not old_cfg.root_volume:  # a root volume keeps its size (Cinder extends it)
                        await _grow(layout.disk, new.root_gb * disks.GIB)
                    if new.ephemeral_gb > 0:
                        if layout.ephemeral.exists():
                            await _grow(layout.ephemeral, new.ephemeral_gb * disks.GIB)
                        else:
                            await disks.create_blank(layout.ephemeral, new.ephemeral_gb)
                    revert.add(process.kill, layout, scan=True)
                    await _apply(self, layout, rec, cfg, flavor_dict(new), running, "resize")
                    revert.commit()
            except (CumuloError, OSError) as exc:
                raise DriverError(f"resize of {spec.uuid} to {new.vcpus} vCPUs, {new.memory_mb} MB, "
                                  f"{new.root_gb} GB failed (the old size is back): {exc}") from exc
            await asyncio.to_thread(note, layout, f"resized to {new.vcpus} vCPUs, {new.memory_mb} MB, {new.root_gb} GB root disk "
                                     f"({'restarted' if running else 'applies at the next start'})")

    async def confirm_resize(self, uuid: str) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            await asyncio.to_thread(_drop_pre_resize, layout)

    async def revert_resize(self, spec: InstanceSpec) -> None:
        """Back to spec.flavor (the old one) and the disks kept at resize; running stays running."""
        layout = self._existing(spec.uuid)
        async with self._op_lock(spec.uuid):
            power = await self._state(layout)
            running = power in (PowerState.RUNNING, PowerState.PAUSED)
            rec = self.read_record(layout.dir)
            old = await asyncio.to_thread(read_json, layout.dir / OLD)
            base = VmConfig.from_json(old["vm"]) if old and isinstance(old.get("vm"), dict) else self._vm_config(layout)
            cfg = dataclasses.replace(base, memory_mb=spec.flavor.memory_mb, vcpus=spec.flavor.vcpus)
            await self._stop(layout, STOP_GRACE if power == PowerState.RUNNING else 0, "revert resize")
            await asyncio.to_thread(self._forget_suspend, layout)
            if old is not None:
                await asyncio.to_thread(_restore_pre_resize, layout, old)
            await _apply(self, layout, rec, cfg, flavor_dict(spec.flavor), running, "revert resize")
            await asyncio.to_thread(note, layout, f"resize reverted to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB")
