"""createImage on the agent: driver.snapshot into a work dir, then hand the file to the image service.

task_state goes image_snapshot(_pending) → image_pending_upload → image_uploading → None; the
vm_state never changes. The image id is kept in system_metadata while the upload runs, so a
restart can mark an interrupted snapshot's image as failed instead of leaving it queued.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cumulo.compute import actions
from cumulo.compute import states as s
from cumulo.compute.drivers.base import Capability, driver_for

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

SNAPSHOT_TASK_STATES = frozenset(
    {s.IMAGE_SNAPSHOT, s.IMAGE_SNAPSHOT_PENDING, s.IMAGE_PENDING_UPLOAD, s.IMAGE_UPLOADING, s.IMAGE_BACKUP}
)
SNAPSHOT_IMAGE_KEY = "snapshot_image_id"


async def snapshot(node: Node, uuid: str, image_id: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] not in SNAPSHOT_TASK_STATES:
            LOG.info("snapshot of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            await mark_failed(node, image_id)
            return
        req = await node.request_id_for(uuid, request_id, actions.CREATE_IMAGE)
        sysmeta = dict(inst["system_metadata"] or {})
        sysmeta[SNAPSHOT_IMAGE_KEY] = image_id
        if not await node.set_state(
            uuid, {"task_state": s.IMAGE_PENDING_UPLOAD, "system_metadata": sysmeta},
            expected_task_state=inst["task_state"],
        ):
            await mark_failed(node, image_id)
            return
        task = s.IMAGE_PENDING_UPLOAD
        workdir = await asyncio.to_thread(_make_workdir, node.conf.state_dir)
        try:
            async with actions.event(node.db, uuid, req, "compute_snapshot_instance", node.host):
                if node.images is None:
                    raise RuntimeError("no image service to upload the snapshot to")
                result = await driver_for(node.driver, Capability.SNAPSHOT, node=node.name).snapshot(uuid, workdir)
                if await node.set_state(uuid, {"task_state": s.IMAGE_UPLOADING}, expected_task_state=task):
                    task = s.IMAGE_UPLOADING
                await node.images.describe_snapshot(
                    image_id, result.disk_format, result.container_format, result.properties
                )
                await node.images.upload_from_path(image_id, result.path)
        except Exception as exc:
            LOG.warning("snapshot of %s failed: %s", uuid, exc)
            await mark_failed(node, image_id)
            sysmeta.pop(SNAPSHOT_IMAGE_KEY, None)
            await node.set_state(
                uuid, {"task_state": None, "system_metadata": sysmeta}, expected_task_state=task, fault=exc
            )
            return
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        sysmeta.pop(SNAPSHOT_IMAGE_KEY, None)
        await node.set_state(uuid, {"task_state": None, "system_metadata": sysmeta}, expected_task_state=task)


def _make_workdir(state_dir: Path) -> str:
    base = Path(state_dir) / "snapshots"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="snap-", dir=base)


async def mark_failed(node: Node, image_id: str | None) -> None:
    if not image_id or node.images is None:
        return
    try:
        await node.images.mark_failed(image_id)
    except Exception:
        LOG.exception("could not mark image %s as failed", image_id)
