"""Start-up seeding of the public demo images, owned by the admin project.

`DemoSeeder.start` runs after the image service's bootstrap: it registers the busybox container
image (built here, in a thread, once per state dir) and the tiny VM's records, whose bytes come
from a background build (`vm` explains why). The seeder owns that task: `stop` cancels it. The
demo images are a convenience: nothing here fails start-up.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import sqlalchemy as sa

from cumulo.context import RequestContext
from cumulo.image.demo import busybox, vm
from cumulo.image.models import images
from cumulo.image.service import ImageService

LOG = logging.getLogger(__name__)
DEMO_IMAGE = "busybox"
DEMO_PROPERTIES = {"hypervisor_type": "container", "os_distro": "busybox"}


async def ensure_busybox(svc: ImageService, admin_project_id: str) -> None:
    """Register the public busybox demo image owned by the admin project, unless it exists."""
    async with svc.db.read() as conn:
        q = sa.select(images.c.id, images.c.status).where(
            images.c.name == DEMO_IMAGE, images.c.owner == admin_project_id, images.c.deleted.is_(False)
        )
        found = (await conn.execute(q.order_by(images.c.created_at))).first()
    if found is not None and found.status != "queued":
        return
    cached = svc.store.root / "demo" / "busybox.tar"

    def build() -> Path:
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = cached.with_name(f".{cached.name}.tmp")
            busybox.build_busybox(tmp)
            tmp.replace(cached)
        return cached

    try:
        path = await asyncio.to_thread(build)
    except busybox.BusyboxMissing as exc:
        LOG.warning("no %s demo image: %s", DEMO_IMAGE, exc)
        return
    if found is None:
        admin = RequestContext(user_id=None, project_id=admin_project_id, roles=frozenset({"admin", "member", "reader"}))
        core = {"name": DEMO_IMAGE, "visibility": "public", "disk_format": "raw", "container_format": "docker"}
        image_id = (await svc.insert(admin, core, dict(DEMO_PROPERTIES), []))["id"]
    else:
        image_id = found.id  # a registration cut short by a crash: finish it
    await svc.upload_from_path(image_id, str(path))
    LOG.info("registered the public %s demo image %s", DEMO_IMAGE, image_id)


class DemoSeeder:
    """Seeds the demo images into one image service and owns the tiny VM's background build."""

    def __init__(self, images: ImageService) -> None:
        self.images = images
        self._vm_build: asyncio.Task[None] | None = None

    async def start(self, admin_project_id: str) -> None:
        """Register the demo images (once; each skipped with a log line when it cannot be made)."""
        try:
            await ensure_busybox(self.images, admin_project_id)
        except Exception:  # the demo image is a convenience: never fail start-up over it
            LOG.exception("could not register the %s demo image", DEMO_IMAGE)
        try:  # the tiny VM: records now, bytes from a background build (vm explains why)
            self._vm_build = await vm.ensure(self.images, admin_project_id)
        except Exception:
            LOG.exception("could not register the tiny-vm demo image")

    async def stop(self) -> None:
        """Cancel a tiny-vm build still running (its images stay queued; the next start builds)."""
        task, self._vm_build = self._vm_build, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
