"""Rebuild of a QEMU server onto another image.

Same uuid, dir, flavor and (resized) settings; the root disk is replaced by a new overlay on the new
image (Nova's rebuild wipes the root disk), the kernel/ramdisk files follow the new image, and the
config drive is written again (name, hostname, keys, user_data may have changed). The new image is
verified and its overlay made beside the old disk before anything of the old server is touched, so
a bad image fails the rebuild with the old disk intact. The ephemeral disk stays.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cumulo.compute.drivers.base import ImageSpec, InstanceSpec
from cumulo.compute.drivers.qemu import configdrive, disks, process
from cumulo.compute.drivers.qemu.core import KEPT_PROPERTIES, STOP_GRACE, QemuCore, wants_guest_agent
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import CumuloError, DriverError
from cumulo.host.revert import Reverter

NEW_DISK = ".disk.rebuild.qcow2"


def _check_kernel_files(image: ImageSpec) -> None:
    if image.ramdisk_path and not image.kernel_path:
        raise DriverError(f"image {image.id} names a ramdisk but no kernel")
    for what, path in (("kernel", image.kernel_path), ("ramdisk", image.ramdisk_path)):
        if path and not Path(path).is_file():
            raise DriverError(f"the {what} file of image {image.id} is missing on this host")


def _stage_kernel_files(layout: Layout, image: ImageSpec) -> None:
    """The new kernel/initrd linked beside the current ones (blocking)."""
    for src, dst in ((image.kernel_path, layout.kernel), (image.ramdisk_path, layout.initrd)):
        staged = dst.with_name(f".{dst.name}.rebuild")
        staged.unlink(missing_ok=True)
        if src:
            disks.link_or_copy(Path(src), staged)


def _swap_in(layout: Layout) -> None:
    """The staged disk and kernel files replace the old ones (blocking)."""
    os.replace(layout.dir / NEW_DISK, layout.disk)
    for dst in (layout.kernel, layout.initrd):
        staged = dst.with_name(f".{dst.name}.rebuild")
        if staged.exists():
            os.replace(staged, dst)
        else:
            dst.unlink(missing_ok=True)


def _drop_staged(layout: Layout) -> None:
    for path in (layout.dir / NEW_DISK, layout.kernel.with_name(f".{layout.kernel.name}.rebuild"),
                 layout.initrd.with_name(f".{layout.initrd.name}.rebuild")):
        path.unlink(missing_ok=True)


def _vm_config(drv: QemuCore, layout: Layout, current: VmConfig, image: ImageSpec) -> VmConfig:
    """The server's settings (size, ephemeral disk) with the new image's boot method (blocking:
    reads the new kernel's headers, swapped in already)."""
    props = image.properties
    kernel = bool(image.kernel_path)
    machine, _why = drv.choose_machine(props, layout.kernel if kernel else None)
    return VmConfig(
        memory_mb=current.memory_mb, vcpus=current.vcpus, accel=drv.accel, machine=machine,
        kernel=kernel, initrd=kernel and bool(image.ramdisk_path),
        append=str(props.get("os_command_line") or "") if kernel else "",
        root_format="qcow2", ephemeral=current.ephemeral, config_drive=current.config_drive,
        hotplug_ports=current.hotplug_ports,  # the NICs' root ports stay (netdev.py)
        guest_agent=wants_guest_agent(props),
    )


class Rebuild(QemuCore):
    async def rebuild(self, spec: InstanceSpec) -> None:
        if spec.image is None:
            raise DriverError("The QEMU driver needs an image to rebuild onto")
        image = spec.image
        layout = self._existing(spec.uuid)
        if self._vm_config(layout).root_volume:
            raise DriverError(f"rebuild of {spec.uuid}: the server boots from a volume, which a rebuild does not "
                              "re-image here (Nova's reimage of a root volume, 2.93, is not implemented)")

        def failed(exc: BaseException) -> DriverError:
            return DriverError(f"rebuild of {spec.uuid} onto image {image.id} failed: {exc}")

        async with self._op_lock(spec.uuid):
            rec = self.read_record(layout.dir)
            current = self._vm_config(layout)
            try:
                async with Reverter() as revert:
                    revert.add(asyncio.to_thread, _drop_staged, layout)  # a failed rebuild leaves no staged files
                    # Everything that can be checked and made is, before the old server is touched.
                    _check_kernel_files(image)
                    base = await disks.cached_base(self.base_dir, image)
                    await asyncio.to_thread(_drop_staged, layout)
                    await disks.create_overlay(layout.dir / NEW_DISK, base, spec.flavor.root_gb)
                    await asyncio.to_thread(_stage_kernel_files, layout, image)
                    await self._stop(layout, STOP_GRACE, "rebuild")
                    await asyncio.to_thread(self._forget_suspend, layout)
                    await asyncio.to_thread(_swap_in, layout)
                    if current.config_drive:  # a server keeps a config drive it has, as in Nova
                        await asyncio.to_thread(configdrive.build_iso, layout.config_iso, spec)
                    cfg = await asyncio.to_thread(_vm_config, self, layout, current, image)
                    props = image.properties
                    rec.update({
                        "name": spec.name, "hostname": spec.hostname, "image_id": image.id,
                        "image_properties": {k: str(props[k]) for k in KEPT_PROPERTIES if props.get(k)},
                        "vm": cfg.to_json(), "argv": process.build_argv(layout, cfg),
                    })
                    await self.write_record(layout.dir, rec)
                    await self._start(layout, cfg, rec, why=f"rebuild onto image {image.id}")
                    revert.commit()
            except (CumuloError, OSError) as exc:
                raise failed(exc) from exc
