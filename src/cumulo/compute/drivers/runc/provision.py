"""What spawn and rebuild put in a server's bundle: config.json (joining the server's named netns,
with the config drive mounted read-only at /mnt/config), the record, the image's cached root and,
once the overlay is mounted, the config drive and /root/.ssh/authorized_keys."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.base import ImageSpec, InstanceSpec
from cumulo.compute.drivers.runc import bundle, configdrive, netns
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import DriverError
from cumulo.oci import ImageConfig
from cumulo.oci.unpack import cached_rootfs

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
