"""The block store contract: what every volume backend does (a Protocol), its errors and config.

A backend keeps volumes, their snapshots and their backups, named by UUID only: a caller never
names a host path, so nothing a tenant supplies becomes one. Sizes are bytes (the API's GiB times
GIB, or a few MiB in tests); a backend may require an alignment (SECTOR for files). Every method is
async and never blocks the event loop. A method that fails leaves nothing behind (no partial file,
no half-made volume), and a delete of something missing succeeds.

Errors: the Invalid subclasses (BadImage, UnsafeSource, ShrinkRefused, TooLarge) are the caller's
fault and map to a 400; VolumeExists / OnlineResizeUnavailable to a 409; anything else the store
raises (HostError, StoreError) is ours and puts the volume in error.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

from cumulo.errors import Conflict, HostError, Invalid, NotFound

GIB = 1 << 30
MIB = 1 << 20
SECTOR = 512
IMAGE_FORMATS = ("raw", "qcow2")
DEFAULT_MAX_BYTES = 16 << 40  # 16 TiB: the largest virtual size an image or volume may claim


class BadImage(Invalid):
    """An image or backup file refused: hostile (backing or data file), corrupt, too big, wrong format."""


class UnsafeSource(BadImage):
    """A source that is not a regular file (a symlink, FIFO, device, directory) or is missing."""


class ShrinkRefused(Invalid):
    """A volume never shrinks: extend to a size below the current one."""


class TooLarge(Invalid):
    """A size over the store's limit, or an image that does not fit the volume asked for."""


class VolumeExists(Conflict):
    """A volume, snapshot or backup of that id is already in the store."""


class VolumeMissing(NotFound):
    """No volume, snapshot or backup of that id in the store."""


class OnlineResizeUnavailable(Conflict):
    """A mounted ext4 cannot grow here (the process lacks CAP_SYS_RESOURCE): grow it unmounted."""


class StoreError(HostError):
    """The store itself failed (a qemu-img run, a copy): the volume goes to error with this message."""


def check_id(value: str, what: str = "volume") -> str:
    """The canonical form of a UUID (lower-case, hyphenated), or Invalid: ids name the files."""
    try:
        parsed = uuidlib.UUID(value) if isinstance(value, str) and len(value) in (32, 36) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise Invalid(f"{what} id {value!r} is not a UUID")
    return str(parsed)


def check_size(size: int, *, limit: int = DEFAULT_MAX_BYTES, align: int = SECTOR) -> int:
    """A volume size in bytes: positive, a multiple of `align`, at most `limit`."""
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise Invalid(f"size must be a positive number of bytes, not {size!r}")
    if size % align:
        raise Invalid(f"size {size} is not a multiple of {align} bytes")
    if size > limit:
        raise TooLarge(f"size {size} bytes is over the limit of {limit} bytes")
    return size


def round_up(size: int, unit: int = GIB) -> int:
    """size rounded up to a whole unit (an image's virtual size to the volume's GiB)."""
    return -(-size // unit) * unit


@dataclass(frozen=True)
class StoreConfig:
    """Where a store keeps things, and its limits. `options`: backend-specific settings (an LVM
    volume group, later)."""

    root: Path  # volumes (and snapshots/ under it)
    backup_dir: Path  # backups, apart from the volumes
    run_dir: Path  # records of host state to reap after a crash (loop devices)
    max_bytes: int = DEFAULT_MAX_BYTES
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def under(cls, state_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> StoreConfig:
        """The layout inside a cloud's state dir: volumes/, backups/, volumes/.run/."""
        root = Path(state_dir) / "volumes"
        return cls(root=root, backup_dir=Path(state_dir) / "backups", run_dir=root / ".run", max_bytes=max_bytes)


@dataclass(frozen=True)
class Usage:
    size: int  # the volume's size (virtual), bytes
    allocated: int  # bytes the host really holds for it


@dataclass(frozen=True)
class Location:
    """How a hypervisor opens a volume: QEMU's node driver ("file" or "host_device") over `path`,
    read as `format`."""

    path: str
    kind: Literal["file", "host_device"]
    format: Literal["raw"] = "raw"


@runtime_checkable
class BlockStore(Protocol):
    """A volume backend. Ids are UUIDs (check_id); sizes are bytes (check_size)."""

    name: ClassVar[str]
    config: StoreConfig

    async def ensure_dirs(self) -> None:
        """Make the store's directories; reap temporary files a crashed process left."""

    async def create(self, volume_id: str, size: int) -> None:
        """A blank volume of `size` bytes (reads as zeros, takes no space until written)."""

    async def delete(self, volume_id: str) -> None:
        """Remove a volume; a missing one is no error."""

    async def exists(self, volume_id: str) -> bool: ...

    async def list_volumes(self) -> list[str]:
        """The ids of every volume in the store (for reconciling with the DB)."""

    async def list_snapshots(self) -> list[str]: ...

    async def list_backups(self) -> list[str]: ...

    async def usage(self, volume_id: str) -> Usage: ...

    def location(self, volume_id: str) -> Location:
        """Where the volume's data is, for a hypervisor or a loop device."""

    async def extend(self, volume_id: str, size: int) -> None:
        """Grow to `size` bytes (the same size is a no-op); ShrinkRefused below the current size."""

    async def clone(self, source_id: str, volume_id: str, size: int | None = None) -> None:
        """A new volume with the source's data, grown to `size` when given (never below the source's)."""

    async def create_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """A point-in-time copy of the volume, independent of it (the volume may be deleted after)."""

    async def delete_snapshot(self, snapshot_id: str) -> None: ...

    async def snapshot_exists(self, snapshot_id: str) -> bool: ...

    async def create_from_snapshot(self, snapshot_id: str, volume_id: str, size: int | None = None) -> None: ...

    async def backup(self, volume_id: str, backup_id: str) -> Usage:
        """A compressed copy into the backup dir; returns (volume size, bytes the backup takes)."""

    async def delete_backup(self, backup_id: str) -> None: ...

    async def backup_exists(self, backup_id: str) -> bool: ...

    async def restore(self, backup_id: str, volume_id: str, size: int | None = None, *,
                      overwrite: bool = False) -> None:
        """The backup's data into a new volume (or over an existing, detached one with overwrite,
        which must be at least the backup's size): the old data stays whole if it fails."""

    async def create_from_image(self, volume_id: str, source: Path, fmt: str, size: int | None = None) -> int:
        """A volume from an untrusted image file (raw or qcow2, named by the caller's record, never
        probed), inspected first; `size` defaults to the image's virtual size. Returns the size."""

    async def export(self, volume_id: str, dest: Path, fmt: str) -> int:
        """The volume's data written to `dest` (which must not exist) as raw or qcow2; returns the
        bytes written."""
