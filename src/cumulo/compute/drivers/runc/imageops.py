"""The image side of the runc driver: what spawn puts in a server's bundle, rebuild, and snapshot.

- `runtime_config` + `provision`: config.json (joining the server's named netns, with the config
  drive mounted read-only at /mnt/config) and, once the overlay is mounted, the config drive and
  /root/.ssh/authorized_keys.
- `rebuild`: same uuid, hostname, netns and config drive identity; the private upper layer is
  discarded with its root disk, a fresh one of the flavor's size replaces it (Nova's rebuild wipes
  the root disk), the overlay is mounted again on the new image's
  cached root, config.json is rewritten with the new image's process/env/cwd but the server's
  current limits (read from its config.json: a resize may have changed them), then it starts.
- `snapshot`: see snapshot.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cumulo.compute.drivers.base import ImageSpec, InstanceSpec, SnapshotResult
from cumulo.compute.drivers.files import read_json, write_json
from cumulo.compute.drivers.runc import bundle, configdrive, netns, ops, overlay
from cumulo.compute.drivers.runc import snapshot as snap
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import CumuloError, DriverError
from cumulo.oci import ImageConfig
from cumulo.oci.unpack import cached_rootfs, collect_unpacked

if TYPE_CHECKING:
    from cumulo.compute.drivers.runc import RuncDriver

RECORD = "instance.json"
CONFIG = "config.json"
# Image properties a server keeps in its record, for a snapshot to run the same way.
KEPT_PROPERTIES = ("os_command_line",)


def runtime_config(spec: InstanceSpec, image: ImageConfig, lower: Path, idir: Path, pids_limit: int) -> dict[str, Any]:
    return bundle.runtime_config(
        spec, image, lower, cgroups_path=f"/cumulo/{container_id(spec.uuid)}", pids_limit=pids_limit,
        netns_path=str(netns.path_for(spec.uuid)),
        extra_mounts=[configdrive.mount_entry(idir / configdrive.DRIVE_DIR)],
    )


def record(spec: InstanceSpec, image: ImageConfig, created_at: float, lower: Path | None = None) -> dict[str, Any]:
    """instance.json: identity, the image config a snapshot needs, and the cached image root it
    stands on (`rootfs_key`: what the image cache's collection keeps while the server exists)."""
    props = spec.image.properties if spec.image is not None else {}
    return {
        "uuid": spec.uuid, "hostname": spec.hostname, "image_id": spec.image.id if spec.image else None,
        "rootfs_key": lower.parent.name if lower is not None else None,
        "created_at": created_at, "image_config": image.to_json(),
        "image_properties": {k: str(props[k]) for k in KEPT_PROPERTIES if props.get(k)},
    }


def provision_sync(idir: Path, spec: InstanceSpec) -> None:
    """The config drive, and the SSH key in the (mounted) root. Blocking: call it in a thread."""
    configdrive.write_drive(idir, spec)
    configdrive.prepare_mount_point(idir / "rootfs")
    if spec.key_data:
        try:
            configdrive.install_authorized_key(idir / "rootfs", spec.key_data)
        except OSError as exc:
            raise DriverError(f"cannot put the key into /root/.ssh/authorized_keys: {exc}") from exc


async def provision(idir: Path, spec: InstanceSpec) -> None:
    await asyncio.to_thread(provision_sync, idir, spec)


async def image_root(images: Path, image: ImageSpec) -> tuple[Path, ImageConfig]:
    """The image's cached root. The image store names each file by its sha256, which is the cache
    key: passing it saves hashing the whole file on every spawn (cached_rootfs hashes otherwise)."""
    return await cached_rootfs(images, Path(image.path).name, Path(image.path))


async def rebuild(drv: RuncDriver, spec: InstanceSpec) -> None:
    if spec.image is None:
        raise DriverError("The runc driver needs a container image (docker or oci) to rebuild onto")
    idir = drv._existing(spec.uuid)
    cid = container_id(spec.uuid)
    image_id = spec.image.id
    try:
        # Everything that can be checked is checked before the old root goes.
        lower, image_cfg = await image_root(drv.images, spec.image)
        current = json.loads(await asyncio.to_thread((idir / CONFIG).read_text))
        fresh = await asyncio.to_thread(runtime_config, spec, image_cfg, lower, idir, drv.pids_limit)  # reads /etc/passwd
        config = bundle.keep_limits(fresh, current)
        old = json.loads(await asyncio.to_thread((idir / RECORD).read_text))
    except (CumuloError, OSError, ValueError) as exc:
        raise DriverError(f"rebuild of {spec.uuid} onto image {image_id} failed: {exc}") from exc
    try:
        await ops.stop(drv, spec.uuid, drv.stop_grace, "rebuild")
        merged = idir / "rootfs"
        await overlay.unmount_all(merged)
        # A fresh root disk of the flavor's size: the old upper layer goes, the limit stays.
        upper, work = await drv.disks.recreate(idir, spec.flavor.root_gb)
        await asyncio.to_thread(os.chmod, upper, (await asyncio.to_thread(os.stat, lower)).st_mode & 0o7777)
        await overlay.mount(lower, upper, work, merged)
        await provision(idir, spec)
        await asyncio.to_thread(write_json, idir / CONFIG, config)
        await asyncio.to_thread(write_json, idir / RECORD, record(spec, image_cfg, float(old.get("created_at", 0)), lower))
        await drv._start(cid, idir, config["process"]["args"])
    except (CumuloError, OSError) as exc:
        await drv.runc.delete(cid)  # a container that was made but did not start
        raise DriverError(f"rebuild of {spec.uuid} onto image {image_id} failed: {exc}") from exc


async def _lower(drv: RuncDriver, idir: Path) -> Path | None:
    """The image root under a server: its mounted overlay's, else the cached root its record names."""
    lower = await overlay.lower_of(idir / "rootfs")
    if lower is not None:
        return lower
    rec = await asyncio.to_thread(read_json, idir / RECORD) or {}
    key = str(rec.get("rootfs_key") or "")
    if not key:
        return None
    root = drv.images / "rootfs" / key / "rootfs"
    return root if await asyncio.to_thread(root.is_dir) else None


async def resize_disk(drv: RuncDriver, uuid: str, root_gb: int) -> None:
    """A resize to another disk size (rootdisk.py): stop, resize the disk offline, start again if it ran."""
    idir = drv._existing(uuid)
    if not await asyncio.to_thread(drv.disks.resize_needed, idir, root_gb):
        return
    cid = container_id(uuid)
    status = await drv.runc.status(cid)
    if status == "paused":
        raise DriverError(f"Instance {uuid} is paused; its root disk cannot be resized")
    merged = idir / "rootfs"
    was_mounted = await overlay.is_mounted(merged)
    lower = await _lower(drv, idir)
    if was_mounted and lower is None:
        raise DriverError(f"cannot tell the image root of instance {uuid}; its root disk is not resized")
    await ops.stop(drv, uuid, drv.stop_grace, "resize of the root disk")
    await overlay.unmount_strict(merged)
    try:
        line = await drv.disks.resize_offline(idir, root_gb)
    finally:
        if was_mounted and lower is not None:
            upper, work = await drv.disks.ensure_mounted(idir)
            await overlay.mount(lower, upper, work, merged)
    await asyncio.to_thread(ops.note, idir, line)
    if status == "running":
        config = json.loads(await asyncio.to_thread((idir / CONFIG).read_text))
        await drv._start(cid, idir, config["process"]["args"])


def _roots_in_use(instances: Path) -> tuple[set[str], list[str]]:
    """Cache keys of the image roots the servers of this node stand on (from their records, else
    their mounted overlays), and the servers for which neither tells (blocking)."""
    used: set[str] = set()
    unknown: list[str] = []
    if not instances.is_dir():
        return used, unknown
    for idir in instances.iterdir():
        if not idir.is_dir():
            continue
        if not (idir / RECORD).exists():
            continue  # a spawn under way (its root is leased) or one a crash cut short (an orphan)
        key = (read_json(idir / RECORD) or {}).get("rootfs_key")
        if not key:
            lower = overlay.lower_of_sync(idir / "rootfs")
            key = Path(lower).parent.name if lower else None
        if key:
            used.add(str(key))
        else:
            unknown.append(idir.name)
    return used, unknown


async def collect_image_cache(drv: RuncDriver, keep: set[str]) -> list[str]:
    """Remove unpacked image roots (`<state>/images/rootfs/<key>`) that no live image (`keep`) and
    no server of this node uses. A server whose root cannot be told (a record older than
    `rootfs_key`, not mounted) makes it remove nothing."""
    used, unknown = await asyncio.to_thread(_roots_in_use, drv.dir)
    if unknown:
        raise DriverError(f"cannot tell which image root servers {', '.join(sorted(unknown))} use; "
                          "no image root is collected")
    return await collect_unpacked(drv.images, keep | used, grace=drv.conf.image_cache_min_age)


def _config_from_runtime(config: dict[str, Any]) -> ImageConfig:
    """The image config of a server whose record predates image_config: its process as the command."""
    proc = config.get("process") or {}
    user = proc.get("user") or {}
    return ImageConfig(
        cmd=tuple(str(a) for a in proc.get("args") or ()),
        env=tuple(str(e) for e in proc.get("env") or () if not str(e).startswith("HOSTNAME=")),
        working_dir=str(proc.get("cwd") or "/"),
        user=f"{int(user.get('uid', 0))}:{int(user.get('gid', 0))}",
    )


async def snapshot(drv: RuncDriver, uuid: str, workdir: str) -> SnapshotResult:
    idir = drv._existing(uuid)
    merged = idir / "rootfs"
    if not await overlay.is_mounted(merged):
        raise DriverError(f"The root of instance {uuid} is not mounted; cannot snapshot it")
    try:
        rec = json.loads(await asyncio.to_thread((idir / RECORD).read_text))
        if isinstance(rec.get("image_config"), dict):
            image_cfg = ImageConfig.from_json(rec["image_config"])
        else:
            image_cfg = _config_from_runtime(json.loads(await asyncio.to_thread((idir / CONFIG).read_text)))
    except (OSError, ValueError) as exc:
        raise DriverError(f"cannot read the record of instance {uuid}: {exc}") from exc
    props = {str(k): str(v) for k, v in (rec.get("image_properties") or {}).items()}
    doc = snap.image_config_doc(image_cfg, props)
    out = Path(workdir) / f"{uuid}.tar"
    cid = container_id(uuid)
    frozen = False
    if await drv.runc.status(cid) == "running":
        await drv.runc.pause(cid)  # a consistent view; a paused or suspended one stays as it is
        frozen = True
    try:
        await asyncio.to_thread(snap.write_image, merged, out, doc, f"cumulo-snapshot/{uuid}:latest")
    finally:
        if frozen:
            await asyncio.shield(drv.runc.resume(cid))
    return SnapshotResult(path=str(out), disk_format="raw", container_format="docker",
                          properties={"hypervisor_type": "container", **props})
