"""An offline volume on the host: its file sealed with the immutable attribute (`chattr +i`).

While the flag is set the kernel refuses, to every process, root's included, an open for writing,
a truncate, a rename and an unlink of the file: QEMU cannot open it read-write, a loop device
cannot be bound read-write over it, and nothing moves or removes it. Reads still work (a snapshot
being copied, a backup). The volume service keeps the volume `maintenance` meanwhile, so nothing
asks for it anyway; the seal is what makes "offline" true on the host and not only in the DB.

Only file-backed volumes can be sealed (the `file` block store); another kind is refused. The path
comes from the block store by the volume's id, never from a request.
"""

from __future__ import annotations

from pathlib import Path

from cumulo import errors, host
from cumulo.blockstore.base import BlockStore

CHATTR_TIMEOUT = 30.0


async def _file_of(store: BlockStore, volume_id: str) -> Path:
    if not await store.exists(volume_id):
        raise errors.NotFound(f"volume {volume_id} has no storage on this host")
    location = store.location(volume_id)
    if location.kind != "file":
        raise errors.Conflict(f"volume {volume_id} is a {location.kind}: only a file-backed volume can go offline")
    return Path(location.path)


async def sealed(path: Path) -> bool:
    """Whether the file carries the immutable attribute."""
    res = await host.run(["lsattr", "-d", "--", str(path)], timeout=CHATTR_TIMEOUT)
    flags = res.text.split(maxsplit=1)[0] if res.text.strip() else ""
    return "i" in flags


async def seal(store: BlockStore, volume_id: str) -> Path:
    """Set the immutable attribute on the volume's file (idempotent); its path."""
    path = await _file_of(store, volume_id)
    await host.run(["chattr", "+i", "--", str(path)], timeout=CHATTR_TIMEOUT)
    return path


async def unseal(store: BlockStore, volume_id: str) -> Path | None:
    """Clear the immutable attribute (idempotent); the path, None when the store has no file."""
    try:
        path = await _file_of(store, volume_id)
    except errors.NotFound:
        return None
    await host.run(["chattr", "-i", "--", str(path)], timeout=CHATTR_TIMEOUT)
    return path
