"""The image side of the QEMU driver: rebuild and snapshot.

- `rebuild`: same uuid, dir, flavor and (resized) settings; the root disk is replaced by a new
  overlay on the new image (Nova's rebuild wipes the root disk), the kernel/ramdisk files follow
  the new image, and the config drive is written again (name, hostname, keys, user_data may have
  changed). The new image is verified and its overlay made beside the old disk before anything of
  the old server is touched, so a bad image fails the rebuild with the old disk intact. The
  ephemeral disk stays.
- `snapshot`: `qemu-img convert -f qcow2 -O qcow2` of the overlay, flattening the backing chain
  into one standalone qcow2 in the work dir. A running guest is paused (QMP `stop`, which also
  flushes QEMU's caches to the file) for the length of the copy, so the copy is consistent, then
  resumes. The image properties that make it boot the same way (kernel_id, ramdisk_id,
  os_command_line, the boot banner, the machine type) come from the server's record, plus
  hypervisor_type=qemu.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cumulo import host
from cumulo.compute.drivers.base import ImageSpec, InstanceSpec, PowerState, SnapshotResult
from cumulo.compute.drivers.qemu import configdrive, disks, process
from cumulo.compute.drivers.qemu.ops import STOP_GRACE
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import CumuloError, DriverError, HostError

if TYPE_CHECKING:
    from cumulo.compute.drivers.qemu import QemuDriver

# Image properties a snapshot carries over from the server's record (so it boots the same way).
SNAPSHOT_PROPERTIES = ("kernel_id", "ramdisk_id", "os_command_line", "cumulo_boot_banner", "hw_machine_type")
NEW_DISK = ".disk.rebuild.qcow2"


async def _note(layout: Layout, line: str) -> None:
    from cumulo.compute.drivers.qemu import note  # here: the package imports this module first

    await asyncio.to_thread(note, layout, line)


# -- rebuild ------------------------------------------------------------------------------------


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


def _vm_config(drv: QemuDriver, layout: Layout, current: VmConfig, image: ImageSpec) -> VmConfig:
    """The server's settings (size, ephemeral disk) with the new image's boot method (blocking:
    reads the new kernel's headers, swapped in already)."""
    props = image.properties
    kernel = bool(image.kernel_path)
    machine, _why = drv.choose_machine(props, layout.kernel if kernel else None)
    return VmConfig(
        memory_mb=current.memory_mb, vcpus=current.vcpus, accel=drv.accel, machine=machine,
        kernel=kernel, initrd=kernel and bool(image.ramdisk_path),
        append=str(props.get("os_command_line") or "") if kernel else "",
        root_format="qcow2", ephemeral=current.ephemeral, config_drive=True,
    )


async def rebuild(drv: QemuDriver, spec: InstanceSpec) -> None:
    from cumulo.compute.drivers.qemu import KEPT_PROPERTIES

    if spec.image is None:
        raise DriverError("The QEMU driver needs an image to rebuild onto")
    image = spec.image
    layout = drv._existing(spec.uuid)

    def failed(exc: BaseException) -> DriverError:
        return DriverError(f"rebuild of {spec.uuid} onto image {image.id} failed: {exc}")

    async with drv._op_lock(spec.uuid):
        rec = drv._record(layout)
        current = drv._vm_config(layout)
        try:
            # Everything that can be checked and made is, before the old server is touched.
            _check_kernel_files(image)
            base = await disks.cached_base(drv.base_dir, image)
            await asyncio.to_thread(_drop_staged, layout)
            await disks.create_overlay(layout.dir / NEW_DISK, base, spec.flavor.root_gb)
            await asyncio.to_thread(_stage_kernel_files, layout, image)
        except (CumuloError, OSError) as exc:
            await asyncio.to_thread(_drop_staged, layout)
            raise failed(exc) from exc
        try:
            await drv._stop(layout, STOP_GRACE, "rebuild")
            await asyncio.to_thread(drv._forget_suspend, layout)
            await asyncio.to_thread(_swap_in, layout)
            await asyncio.to_thread(configdrive.build_iso, layout.config_iso, spec)
            cfg = await asyncio.to_thread(_vm_config, drv, layout, current, image)
            props = image.properties
            rec.update({
                "name": spec.name, "hostname": spec.hostname, "image_id": image.id,
                "image_properties": {k: str(props[k]) for k in KEPT_PROPERTIES if props.get(k)},
                "vm": cfg.to_json(), "argv": process.build_argv(layout, cfg),
            })
            await drv._save_record(layout, rec)
            await drv._start(layout, cfg, rec, why=f"rebuild onto image {image.id}")
        except (CumuloError, OSError) as exc:
            await asyncio.to_thread(_drop_staged, layout)
            raise failed(exc) from exc


# -- snapshot -----------------------------------------------------------------------------------


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


async def snapshot(drv: QemuDriver, uuid: str, workdir: str) -> SnapshotResult:
    layout = drv._existing(uuid)
    out = Path(workdir) / f"{uuid}.qcow2"
    async with drv._op_lock(uuid):
        rec = drv._record(layout)
        power = await drv._state(layout)
        paused = False
        if power == PowerState.RUNNING:
            await drv._qmp(layout, "stop")
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
                    await asyncio.shield(drv._qmp(layout, "cont"))
    kept: dict[str, Any] = rec.get("image_properties") or {}
    props = {k: str(kept[k]) for k in SNAPSHOT_PROPERTIES if kept.get(k)}
    await _note(layout, f"disk snapshot taken ({'guest paused meanwhile' if paused else 'guest not running'})")
    return SnapshotResult(path=str(out), disk_format="qcow2", container_format="bare",
                          properties={**props, "hypervisor_type": "qemu"})
