"""The second demo image, `tiny-vm`: registered at start-up, built in the background.

Three public images owned by the admin project, the OpenStack AKI/ARI way:

    tiny-vm-kernel   aki/aki    the Debian cloud kernel
    tiny-vm-ramdisk  ari/ari    the busybox initramfs
    tiny-vm          qcow2/bare an empty root disk; kernel_id, ramdisk_id, os_command_line,
                                hypervisor_type=qemu, hw_qemu_guest_agent=yes

Why in the background rather than at boot or on first use: the first build downloads the
kernel .deb (~26 MB) and unpacks it (seconds), which must not hold `cumulo up` back; and Nova
only boots an active image, so building "on first use" would mean a first boot that waits on a
hidden download. The records are made at once (queued, so `image list` shows them), and go
active when the bytes land. A failure (no network, no busybox) kills the images that are not
active, with the cause in their `cumulo_error` property; the next start tries again. Nothing
here ever raises into start-up. Records are found by name and owner, so restarts never
duplicate them.

Settings (conf.demo_images, from the extra keys): `tiny_vm_image` = auto (when the local host is not fake and QEMU is
installed; the default) | on | off; `image_build_cache` = where the kernel .deb is cached
(default ~/.cache/cumulo/build, or under $XDG_CACHE_HOME: shared by every cloud on the host).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.image.data import ERROR_PROPERTY
from cumulo.image.demo import tinyvm
from cumulo.image.models import image_properties, images
from cumulo.image.service import ImageService

LOG = logging.getLogger(__name__)
BANNER_PROPERTY = "cumulo_boot_banner"  # a boot signal for benchmarks and diagnostics (not a build condition)
# (name, disk_format, container_format) in creation order: the disk names the other two.
RECORDS = (
    (tinyvm.KERNEL_NAME, "aki", "aki"),
    (tinyvm.RAMDISK_NAME, "ari", "ari"),
    (tinyvm.NAME, "qcow2", "bare"),
)


def wanted(conf: Any) -> bool:
    """Whether this cloud registers the tiny VM (see the module docstring)."""
    mode = str(conf.demo_images.tiny_vm_image).strip().lower()
    if mode in ("off", "false", "no", "0"):
        return False
    if mode in ("on", "true", "yes", "1"):
        return True
    return str(conf.local_driver).lower() != "fake" and shutil.which("qemu-system-x86_64") is not None


def build_cache(conf: Any) -> Path:
    configured = conf.demo_images.image_build_cache
    return Path(configured) if configured else tinyvm.default_cache()


async def _find(svc: ImageService, owner: str) -> dict[str, dict[str, Any]]:
    """name -> oldest live row of each tiny-vm record owned by `owner`."""
    names = [r[0] for r in RECORDS]
    async with svc.db.read() as conn:
        q = (sa.select(images.c.id, images.c.name, images.c.status)
             .where(images.c.name.in_(names), images.c.owner == owner, images.c.deleted.is_(False))
             .order_by(images.c.created_at))
        found: dict[str, dict[str, Any]] = {}
        for row in (await conn.execute(q)).mappings():
            found.setdefault(row["name"], dict(row))
    return found


async def _requeue(svc: ImageService, image_id: str) -> None:
    """A killed record from an earlier failed build gets another chance (the network may be back)."""
    async with svc.db.write() as conn:
        await conn.execute(
            sa.update(images).where(images.c.id == image_id, images.c.status == "killed")
            .values(status="queued", updated_at=utcnow())
        )
        await conn.execute(sa.delete(image_properties).where(
            image_properties.c.image_id == image_id, image_properties.c.name == ERROR_PROPERTY))


async def register(svc: ImageService, admin_project_id: str) -> dict[str, str] | None:
    """Make sure the three records exist; returns name -> id of those that still need bytes
    (None when all are active)."""
    found = await _find(svc, admin_project_id)
    admin = RequestContext(user_id=None, project_id=admin_project_id, roles=frozenset({"admin", "member", "reader"}))
    ids: dict[str, str] = {}
    for name, disk_format, container_format in RECORDS:
        row = found.get(name)
        if row is None:
            core = {"name": name, "visibility": "public", "disk_format": disk_format,
                    "container_format": container_format}
            props: dict[str, str] = {"hypervisor_type": "qemu"}
            if name == tinyvm.NAME:
                props.update({
                    "kernel_id": ids[tinyvm.KERNEL_NAME], "ramdisk_id": ids[tinyvm.RAMDISK_NAME],
                    "os_command_line": tinyvm.KERNEL_CMDLINE, "os_distro": "cumulo-tiny-vm",
                    BANNER_PROPERTY: tinyvm.BANNER,
                    "hw_qemu_guest_agent": "yes",  # its initramfs runs qemu-ga: the QEMU driver's exec
                })
            row = {"id": (await svc.insert(admin, core, props, []))["id"], "status": "queued"}
        elif row["status"] == "killed":
            await _requeue(svc, row["id"])
            row["status"] = "queued"
        ids[name] = row["id"]
        found[name] = row
    pending = {n: ids[n] for n, _d, _c in RECORDS if found[n]["status"] != "active"}
    return pending or None


async def _kill(svc: ImageService, image_id: str, reason: str) -> None:
    async with svc.db.write() as conn:
        res = await conn.execute(
            sa.update(images)
            .where(images.c.id == image_id, images.c.deleted.is_(False), images.c.status.in_(("queued", "saving")))
            .values(status="killed", updated_at=utcnow())
        )
        if res.rowcount:
            await conn.execute(sa.delete(image_properties).where(
                image_properties.c.image_id == image_id, image_properties.c.name == ERROR_PROPERTY))
            await conn.execute(sa.insert(image_properties).values(
                image_id=image_id, name=ERROR_PROPERTY, value=reason[:65535]))


async def build_and_upload(svc: ImageService, pending: dict[str, str]) -> None:
    """Build the image files and store them as the pending records' data; on failure kill them."""
    cache = build_cache(svc.conf)
    out: Path | None = None
    try:
        await asyncio.to_thread(cache.mkdir, parents=True, exist_ok=True)
        # A private output dir: clouds sharing one cache may build at the same time.
        out = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".tiny-vm-", dir=cache))
        art = await tinyvm.build_tiny_vm(out, cache)
        files = {tinyvm.KERNEL_NAME: art.kernel, tinyvm.RAMDISK_NAME: art.ramdisk, tinyvm.NAME: art.disk}
        for name, image_id in pending.items():
            await svc.upload_from_path(image_id, str(files[name]))
        LOG.info("tiny-vm demo image ready (kernel %s)", art.kernel_release)
    except asyncio.CancelledError:
        raise  # the cloud stops: the records stay queued and the next start builds again
    except Exception as exc:  # a convenience image: record why, never fail the cloud over it
        reason = str(exc) if isinstance(exc, tinyvm.BuildFailed) else f"{type(exc).__name__}: {exc}"
        LOG.warning("no tiny-vm demo image: %s", reason)
        for image_id in pending.values():
            try:
                await _kill(svc, image_id, reason)
            except Exception:
                LOG.exception("could not mark image %s killed", image_id)
    finally:
        if out is not None:
            await asyncio.to_thread(shutil.rmtree, out, True)


async def ensure(svc: ImageService, admin_project_id: str) -> asyncio.Task[None] | None:
    """Register the tiny VM (when wanted) and start its build in the background; the task or None."""
    if not wanted(svc.conf):
        return None
    pending = await register(svc, admin_project_id)
    if pending is None:
        return None
    return asyncio.create_task(build_and_upload(svc, pending), name="tiny-vm-image-build")
