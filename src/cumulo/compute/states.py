"""Nova's state model: vm_state (stable), task_state (in progress), power_state, and API status."""

from __future__ import annotations

# vm_states
ACTIVE = "active"
BUILDING = "building"
PAUSED = "paused"
SUSPENDED = "suspended"
STOPPED = "stopped"
RESIZED = "resized"
ERROR = "error"
DELETED = "deleted"
SOFT_DELETED = "soft-delete"
RESCUED = "rescued"
SHELVED = "shelved"
SHELVED_OFFLOADED = "shelved_offloaded"

# task_states
SCHEDULING = "scheduling"
BLOCK_DEVICE_MAPPING = "block_device_mapping"
NETWORKING = "networking"
SPAWNING = "spawning"
IMAGE_SNAPSHOT = "image_snapshot"
IMAGE_SNAPSHOT_PENDING = "image_snapshot_pending"
IMAGE_PENDING_UPLOAD = "image_pending_upload"
IMAGE_UPLOADING = "image_uploading"
REBOOTING = "rebooting"
REBOOT_PENDING = "reboot_pending"
REBOOT_STARTED = "reboot_started"
REBOOTING_HARD = "rebooting_hard"
REBOOT_PENDING_HARD = "reboot_pending_hard"
REBOOT_STARTED_HARD = "reboot_started_hard"
PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
POWERING_OFF = "powering-off"
POWERING_ON = "powering-on"
REBUILDING = "rebuilding"
REBUILD_SPAWNING = "rebuild_spawning"
RESIZE_PREP = "resize_prep"
RESIZE_MIGRATING = "resize_migrating"
RESIZE_MIGRATED = "resize_migrated"
RESIZE_FINISH = "resize_finish"
RESIZE_REVERTING = "resize_reverting"
RESIZE_CONFIRMING = "resize_confirming"
DELETING = "deleting"
SOFT_DELETING = "soft-deleting"
RESTORING = "restoring"
IMAGE_BACKUP = "image_backup"
MIGRATING = "migrating"  # a live migration (os-migrateLive)

ALL_VM_STATES = (
    ACTIVE, BUILDING, PAUSED, SUSPENDED, STOPPED, RESIZED, ERROR, DELETED, SOFT_DELETED, RESCUED,
    SHELVED, SHELVED_OFFLOADED,
)

# (vm_state, task_state) -> status; the "default" entry is for any other task_state.
_STATUS_MAP: dict[str, dict[str | None, str]] = {
    ACTIVE: {
        "default": "ACTIVE",
        REBOOTING: "REBOOT",
        REBOOT_PENDING: "REBOOT",
        REBOOT_STARTED: "REBOOT",
        REBOOTING_HARD: "HARD_REBOOT",
        REBOOT_PENDING_HARD: "HARD_REBOOT",
        REBOOT_STARTED_HARD: "HARD_REBOOT",
        REBUILDING: "REBUILD",
        REBUILD_SPAWNING: "REBUILD",
        RESIZE_PREP: "RESIZE",
        RESIZE_MIGRATING: "RESIZE",
        RESIZE_MIGRATED: "RESIZE",
        RESIZE_FINISH: "RESIZE",
        MIGRATING: "MIGRATING",
    },
    BUILDING: {"default": "BUILD"},
    STOPPED: {
        "default": "SHUTOFF",
        RESIZE_PREP: "RESIZE",
        RESIZE_MIGRATING: "RESIZE",
        RESIZE_MIGRATED: "RESIZE",
        RESIZE_FINISH: "RESIZE",
        REBUILDING: "REBUILD",
        REBUILD_SPAWNING: "REBUILD",
    },
    RESIZED: {"default": "VERIFY_RESIZE", RESIZE_REVERTING: "REVERT_RESIZE"},
    PAUSED: {"default": "PAUSED", MIGRATING: "MIGRATING"},
    SUSPENDED: {"default": "SUSPENDED"},
    RESCUED: {"default": "RESCUE"},
    ERROR: {"default": "ERROR", REBUILDING: "REBUILD", REBUILD_SPAWNING: "REBUILD"},
    DELETED: {"default": "DELETED"},
    SOFT_DELETED: {"default": "SOFT_DELETED"},
    SHELVED: {"default": "SHELVED"},
    SHELVED_OFFLOADED: {"default": "SHELVED_OFFLOADED"},
}


def status_of(vm_state: str, task_state: str | None) -> str:
    table = _STATUS_MAP.get(vm_state, {"default": "UNKNOWN"})
    return table.get(task_state, table["default"])


def filters_for_status(status: str) -> list[tuple[str, str | None, bool]]:
    """For a `status=` list filter: (vm_state, task_state, task_state_is_exact) pairs that show it.

    task_state None with exact False means "vm_state matches and task_state maps to the default".
    """
    status = status.upper()
    out: list[tuple[str, str | None, bool]] = []
    for vm_state, table in _STATUS_MAP.items():
        for task_state, shown in table.items():
            if shown != status:
                continue
            if task_state == "default":
                out.append((vm_state, None, False))
            else:
                out.append((vm_state, task_state, True))
    return out


def non_default_task_states(vm_state: str) -> list[str]:
    return [t for t in _STATUS_MAP.get(vm_state, {}) if t != "default" and t is not None]
