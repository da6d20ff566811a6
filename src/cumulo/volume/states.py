"""Cinder's status machine for volumes, snapshots, backups and attachments, and the compare-and-swap
that guards every change.

A request first checks that the row's current status allows the action (if not: Cinder's 400,
"Invalid volume: ..."); it then changes the status with `transition`, an
`UPDATE ... WHERE id = :id AND status IN (:allowed)`. Zero rows means another request changed the
row between the two: a lost race, answered 409 (never a double action).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.db import utcnow

# ---- volumes ---------------------------------------------------------------------------------
CREATING = "creating"
AVAILABLE = "available"
RESERVED = "reserved"
ATTACHING = "attaching"
IN_USE = "in-use"
DETACHING = "detaching"
MAINTENANCE = "maintenance"
DELETING = "deleting"
ERROR = "error"
ERROR_DELETING = "error_deleting"
ERROR_EXTENDING = "error_extending"
ERROR_RESTORING = "error_restoring"
ERROR_MANAGING = "error_managing"
EXTENDING = "extending"
BACKING_UP = "backing-up"
RESTORING_BACKUP = "restoring-backup"
DOWNLOADING = "downloading"
UPLOADING = "uploading"
RETYPING = "retyping"
AWAITING_TRANSFER = "awaiting-transfer"

VOLUME_STATUSES = frozenset({
    CREATING, AVAILABLE, RESERVED, ATTACHING, IN_USE, DETACHING, MAINTENANCE, DELETING, ERROR,
    ERROR_DELETING, ERROR_EXTENDING, ERROR_RESTORING, ERROR_MANAGING, EXTENDING, BACKING_UP,
    RESTORING_BACKUP, DOWNLOADING, UPLOADING, RETYPING, AWAITING_TRANSFER,
})

# attach_status of a volume (Cinder's VolumeAttachStatus)
DETACHED = "detached"
ATTACHED = "attached"
ERROR_ATTACHING = "error_attaching"
ERROR_DETACHING = "error_detaching"

# The statuses each volume action starts from (Cinder's conditional updates), and where it goes.
VOLUME_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "delete": (frozenset({AVAILABLE, ERROR, ERROR_RESTORING, ERROR_EXTENDING, ERROR_MANAGING}), DELETING),
    "force_delete": (VOLUME_STATUSES - {DELETING}, DELETING),
    "extend": (frozenset({AVAILABLE}), EXTENDING),
    "extend_attached": (frozenset({IN_USE}), EXTENDING),  # 3.42+: online extend
    "reserve": (frozenset({AVAILABLE}), ATTACHING),  # os-reserve (Cinder sets attaching)
    "reserve_multiattach": (frozenset({AVAILABLE, IN_USE}), ATTACHING),
    "unreserve": (frozenset({ATTACHING, RESERVED}), AVAILABLE),
    "attachment_create": (frozenset({AVAILABLE, DOWNLOADING}), RESERVED),  # 3.27 attachments
    "attachment_create_multiattach": (frozenset({AVAILABLE, DOWNLOADING, IN_USE, RESERVED, ATTACHING}), RESERVED),
    "attachment_update": (frozenset({RESERVED, ATTACHING, IN_USE}), ATTACHING),
    "attachment_complete": (frozenset({RESERVED, ATTACHING, IN_USE}), IN_USE),
    "attach": (frozenset({AVAILABLE, RESERVED, ATTACHING, IN_USE}), IN_USE),
    "begin_detaching": (frozenset({IN_USE}), DETACHING),
    "roll_detaching": (frozenset({DETACHING}), IN_USE),
    "detach": (frozenset({IN_USE, DETACHING, ERROR_DETACHING, RESERVED}), AVAILABLE),
    "snapshot": (frozenset({AVAILABLE}), AVAILABLE),  # the volume keeps its status
    "snapshot_force": (frozenset({AVAILABLE, IN_USE}), AVAILABLE),
    "clone": (frozenset({AVAILABLE, IN_USE}), AVAILABLE),
    "backup": (frozenset({AVAILABLE, IN_USE}), BACKING_UP),
    "restore": (frozenset({AVAILABLE}), RESTORING_BACKUP),
    "retype": (frozenset({AVAILABLE, IN_USE}), RETYPING),
    "upload": (frozenset({AVAILABLE, IN_USE}), UPLOADING),
    "update_readonly": (frozenset({AVAILABLE, IN_USE}), AVAILABLE),
}

# ---- snapshots -------------------------------------------------------------------------------
SNAPSHOT_STATUSES = frozenset({
    CREATING, AVAILABLE, DELETING, ERROR, ERROR_DELETING, "unmanaging", "backing-up", "restoring",
})
SNAPSHOT_DELETABLE = frozenset({AVAILABLE, ERROR})

# ---- backups ---------------------------------------------------------------------------------
BACKUP_STATUSES = frozenset({CREATING, AVAILABLE, DELETING, ERROR, "error_deleting", "restoring"})
BACKUP_DELETABLE = frozenset({AVAILABLE, ERROR})
BACKUP_RESTORABLE = frozenset({AVAILABLE})

# ---- attachments (3.27+) -----------------------------------------------------------------------
ATTACHMENT_RESERVED = "reserved"
ATTACHMENT_ATTACHING = "attaching"
ATTACHMENT_ATTACHED = "attached"
ATTACHMENT_DETACHING = "detaching"
ATTACHMENT_DETACHED = "detached"
ATTACHMENT_ERROR = "error_attaching"


def allowed_from(action: str) -> frozenset[str]:
    return VOLUME_TRANSITIONS[action][0]


def target_of(action: str) -> str:
    return VOLUME_TRANSITIONS[action][1]


async def transition(
    conn: AsyncConnection,
    table: sa.Table,
    row_id: str,
    expected: Iterable[str],
    values: dict[str, Any],
    *,
    what: str = "volume",
    stamp: bool = True,
) -> None:
    """UPDATE table SET values WHERE id = row_id AND status IN expected; Conflict (409) when no row
    matched (another request changed the status first, or the row is gone)."""
    allowed = sorted(set(expected))
    q = sa.update(table).where(table.c.id == row_id, table.c.status.in_(allowed))
    if stamp:
        values = {**values, "updated_at": utcnow()}
    res = await conn.execute(q.values(**values))
    if not res.rowcount:
        raise errors.Conflict(
            f"The {what} {row_id} changed status while the request ran (expected one of "
            f"{', '.join(allowed)}); try again"
        )


def check_status(status: str, allowed: Iterable[str], *, what: str = "volume", action: str = "") -> None:
    """Cinder's 400 when the current status does not allow the action."""
    ok = sorted(set(allowed))
    if status not in ok:
        doing = f" to {action}" if action else ""
        raise errors.Invalid(
            f"Invalid {what}: {what.capitalize()} status must be {' or '.join(ok)}{doing}, but current status is: {status}."
        )
