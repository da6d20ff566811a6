"""createBackup on the API side: a snapshot whose image says it is a backup (the agent side, with
the rotation of older backups, is compute.agent.backup_rotation).

The API side creates the queued image (image_type=backup, backup_type, instance_uuid) and moves the
server to task_state image_backup with a compare-and-swap; the agent takes the snapshot through
the same path as createImage (compute.agent.snapshot) and, once the image is active, deletes the oldest
backups of that server and type beyond `rotation` (0 deletes them all, the new one included), as
Nova's _rotate_backups does. Rotation runs with the rights of the server's project: an image that
project may not delete (protected, or not its own) is kept and logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.compute.backups import BACKUP_IMAGE_TYPE
from cumulo.compute.service import boot_volumes, bus_undo
from cumulo.compute.service import transitions as tr

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.context import RequestContext


def backup_properties(
    inst: dict[str, Any], ctx: RequestContext, backup_type: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """The new image's properties: the base image's, the caller's metadata, then Nova's markers."""
    base = (inst.get("request_spec") or {}).get("image") or {}
    return {
        **{k: val for k, val in (base.get("properties") or {}).items() if isinstance(val, str | int | float | bool)},
        **metadata,
        "backup_type": backup_type,
        "instance_uuid": inst["uuid"],
        "user_id": ctx.user_id,
        "image_type": BACKUP_IMAGE_TYPE,
        "base_image_ref": inst.get("image_ref") or "",
    }


async def create_backup(
    svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], name: str, backup_type: str, rotation: int,
    metadata: dict[str, str],
) -> str:
    """Queue the backup image, CAS the server to image_backup, cast backup_instance; the image id."""
    t = tr.TRANSITIONS["createBackup"]
    tr.check(ctx, inst, t)
    if boot_volumes.is_volume_backed(inst):
        raise errors.Invalid("Backup is not supported for volume-backed instances.")
    base = (inst.get("request_spec") or {}).get("image") or {}
    image = await svc.images.create_snapshot_record(
        ctx, name, backup_properties(inst, ctx, backup_type, metadata),
        base.get("disk_format") or "raw", base.get("container_format") or "bare",
    )
    try:
        # The image named on the row from the start (as a snapshot's: servers.snapshot).
        row = await svc.begin(ctx, inst, "createBackup", {"system_metadata": {
            **(inst["system_metadata"] or {}), "snapshot_image_id": image["id"]}})
    except errors.CumuloError:
        await svc.images.mark_failed(image["id"])
        raise
    async def undo() -> None:
        await bus_undo.revert_begin(svc.db, ctx, inst, row)
        await svc.images.mark_failed(image["id"])

    await bus_undo.cast_or_undo(svc.agents.backup_instance(
        row["host"], row["uuid"], image_id=image["id"], backup_type=backup_type, rotation=rotation,
        request_id=ctx.request_id,
    ), undo)
    return str(image["id"])
