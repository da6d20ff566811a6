"""The writing side of Cinder's user messages (read through /messages: cumulo.volume.messages):
why an asynchronous operation on a volume, snapshot or backup failed, told to its owner.

The volume worker (and the API when it cannot reach the worker) writes one message wherever it
puts a row in error, error_deleting, error_extending, error_restoring (a backup or snapshot in
error too), in the same transaction as the status change: `post`. The message's `event_id` is
Cinder's `VOLUME_<resource type>_<action id>_<detail id>` from Cinder's own action and detail ids
(cinder/message/message_field.py), and its `user_message` is Cinder's "<action>: <detail>" where
the detail is the reason the row's error_message (a backup's fail_reason) holds, more telling
than Cinder's fixed detail texts. A message is kept at least 30 days (`guaranteed_until`, Cinder's
message_ttl 2592000 s); the volume worker removes expired ones when it starts (`purge_expired`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.db import new_uuid, utcnow
from cumulo.volume.models import backups, snapshots, volume_messages, volumes

TTL = dt.timedelta(days=30)  # Cinder's message_ttl
LEVEL_ERROR = "ERROR"

# Cinder's resource types (message_field.Resource), by the table the row lives in.
VOLUME, SNAPSHOT, BACKUP = "VOLUME", "VOLUME_SNAPSHOT", "VOLUME_BACKUP"
RESOURCE_OF = {volumes.name: VOLUME, snapshots.name: SNAPSHOT, backups.name: BACKUP}


class Field(NamedTuple):
    id: str
    text: str


# Cinder's actions (message_field.Action) this cloud reports.
SCHEDULE_ALLOCATE_VOLUME = Field("001", "schedule allocate volume")
COPY_VOLUME_TO_IMAGE = Field("003", "copy volume to image")
COPY_IMAGE_TO_VOLUME = Field("005", "copy image to volume")
EXTEND_VOLUME = Field("007", "extend volume")
CREATE_VOLUME_FROM_BACKEND = Field("008", "create volume from backend storage")
SNAPSHOT_CREATE = Field("009", "create snapshot")
SNAPSHOT_DELETE = Field("010", "delete snapshot")
BACKUP_CREATE = Field("013", "create backup")
BACKUP_DELETE = Field("014", "delete backup")
BACKUP_RESTORE = Field("015", "restore backup")
# Cinder reports no message when a volume's delete fails (it goes to error_deleting silently);
# Cumulo does, under an action id of its own above Cinder's range.
DELETE_VOLUME = Field("901", "delete volume")
OFFLINE_VOLUME = Field("902", "take volume offline")
ONLINE_VOLUME = Field("903", "bring volume online")

# Cinder's details (message_field.Detail) that classify a failure.
UNKNOWN_ERROR = Field("001", "An unknown error occurred.")
NO_BACKEND_AVAILABLE = Field("003", "Could not find any available weighted backend.")
FAILED_TO_UPLOAD_VOLUME = Field("004", "Failed to upload volume to image at backend.")
DRIVER_FAILED_EXTEND = Field("010", "Volume Driver failed to extend volume.")
DRIVER_FAILED_CREATE = Field("012", "Driver failed to create the volume.")
SNAPSHOT_CREATE_ERROR = Field("013", "Snapshot failed to create.")
SNAPSHOT_DELETE_ERROR = Field("016", "Snapshot failed to delete.")
BACKUP_CREATE_DRIVER_ERROR = Field("020", "Backup driver failed to create backup.")
BACKUP_DELETE_DRIVER_ERROR = Field("025", "Backup driver failed to delete backup.")
BACKUP_RESTORE_ERROR = Field("026", "Backup driver failed to restore backup.")


class Event(NamedTuple):
    """What failed (Cinder's action and detail) and why (the reason the row records)."""

    action: Field
    detail: Field
    reason: str


def event_id(resource_type: str, action: Field, detail: Field) -> str:
    return f"VOLUME_{resource_type}_{action.id}_{detail.id}"


async def post(conn: AsyncConnection, table: sa.Table, row_id: str, event: Event, *,
               request_id: str | None = None) -> str | None:
    """Record `event` for the owner of the row `row_id` of `table` (volumes, snapshots, backups),
    in the caller's transaction; the new message's id (None when the row is gone)."""
    project = await conn.scalar(sa.select(table.c.project_id).where(table.c.id == row_id))
    if project is None:
        return None
    resource_type = RESOURCE_OF[table.name]
    now = utcnow()
    message_id = new_uuid()
    await conn.execute(volume_messages.insert().values(
        id=message_id, project_id=project, request_id=request_id or f"req-{uuid.uuid4()}",
        resource_type=resource_type, resource_uuid=row_id,
        event_id=event_id(resource_type, event.action, event.detail), message_level=LEVEL_ERROR,
        user_message=f"{event.action.text}: {event.reason or event.detail.text}"[:1024],
        created_at=now, expires_at=now + TTL))
    return message_id


async def purge_expired(conn: AsyncConnection) -> int:
    """Remove messages past their guaranteed_until; how many went."""
    result = await conn.execute(volume_messages.delete().where(volume_messages.c.expires_at < utcnow()))
    return int(result.rowcount or 0)


