"""createBackup on the agent: the snapshot (compute.agent.snapshot), then rotation.

Once the new image is active, the oldest backups of that server and type beyond `rotation` are
deleted (0 deletes them all, the new one included), as Nova's _rotate_backups does. Rotation runs
with the rights of the server's project: an image that project may not delete (protected, or not
its own) is kept and logged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, cast

from cumulo import errors
from cumulo.compute.agent import snapshot
from cumulo.compute.backups import BACKUP_IMAGE_TYPE
from cumulo.context import RequestContext, expand_roles

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

_PAGE = 1000


class BackupImages(Protocol):
    """What rotation needs of the image service (ImageService has it)."""

    async def get_internal(self, image_id: str) -> dict[str, Any] | None: ...

    async def list_images(
        self, ctx: RequestContext, params: Sequence[tuple[str, str]]
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def delete(self, ctx: RequestContext, image_id: str) -> None: ...



async def backup(
    node: Node, uuid: str, image_id: str, backup_type: str, rotation: int, request_id: str | None
) -> None:
    await snapshot.snapshot(node, uuid, image_id, request_id)
    if node.images is None:
        return
    images = cast(BackupImages, node.images)
    made = await images.get_internal(image_id)
    if made is None or made.get("status") != "active":
        LOG.info("backup %s of %s did not complete: no rotation", image_id, uuid)
        return
    inst = await node.load(uuid)
    owner = (inst or {}).get("project_id") or made.get("owner")
    user = (inst or {}).get("user_id")
    await rotate(images, RequestContext(user_id=user, project_id=owner, roles=expand_roles(["member"])),
                 uuid, backup_type, rotation)


async def rotate(images: BackupImages, ctx: RequestContext, uuid: str, backup_type: str, rotation: int) -> list[str]:
    """Delete the backups of `uuid` and `backup_type` beyond the newest `rotation`; their ids."""
    found: list[str] = []
    params: list[tuple[str, str]] = [
        ("image_type", BACKUP_IMAGE_TYPE), ("backup_type", backup_type), ("instance_uuid", uuid),
        ("sort_key", "created_at"), ("sort_dir", "desc"), ("limit", str(_PAGE)),
    ]
    marker: str | None = None
    while True:
        page, marker = await images.list_images(ctx, params + ([("marker", marker)] if marker else []))
        found += [str(i["id"]) for i in page]
        if marker is None:
            break
    excess = found[max(rotation, 0):]
    deleted: list[str] = []
    for image_id in reversed(excess):  # oldest first, as Nova pops them
        try:
            await images.delete(ctx, image_id)
            deleted.append(image_id)
        except errors.NotFound:
            LOG.info("backup %s of %s was already gone", image_id, uuid)
        except errors.CumuloError as exc:
            LOG.warning("could not rotate out backup %s of %s: %s", image_id, uuid, exc)
    return deleted
