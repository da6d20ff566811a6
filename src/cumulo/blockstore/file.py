"""The `file` backend: each volume a sparse raw file `<root>/<volume uuid>.raw`.

Raw, not qcow2: a container attaches a plain ext4 on the raw file through a loop device, a VM
attaches the same file as virtio-blk (QEMU's raw driver over a file node), and data moves between
the two kinds unchanged; qcow2 would need qemu-nbd for containers. Sparse: a blank 100 GiB volume
takes no space until written.

- snapshots: sparse copies (a reflink where the filesystem has them) under `<root>/snapshots/`,
  independent of their volume;
- backups: `qemu-img convert -f raw -O qcow2 -c` into the backup dir (compressed, holes skipped),
  restored with `qemu-img convert -f qcow2 -O raw` after the same inspection a tenant's image gets;
- images in: `qemu-img convert -f raw|qcow2 -O raw`, run beside qemu-img's inspection once the
  qcow2 header passed, published only when both succeeded; images out: raw or qcow2.

Every file is written under a temporary name (naming this process) and linked to its final name
only when whole, inside a Reverter: a failure, a cancel or a refusal leaves nothing, and
`ensure_dirs` reaps the temporary files of a process that crashed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar

from cumulo.blockstore import qemuimg, sparse
from cumulo.blockstore.base import (
    SECTOR,
    Location,
    ShrinkRefused,
    StoreConfig,
    TooLarge,
    UnsafeSource,
    Usage,
    VolumeExists,
    VolumeMissing,
    check_id,
    check_size,
    round_up,
)
from cumulo.blockstore.loop import devices_of
from cumulo.errors import Conflict
from cumulo.host.revert import Reverter

SUFFIX = ".raw"
BACKUP_SUFFIX = ".qcow2"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_NAME = re.compile(rf"^({_UUID})\.raw$")
_BACKUP_NAME = re.compile(rf"^({_UUID})\.qcow2$")


def _ids_in(directory: Path, pattern: re.Pattern[str]) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(m[1] for m in map(pattern.match, names) if m)


def _finish(tmp: Path, final: Path, *, size: int | None, replace: bool) -> None:
    """A finished temporary file grown to `size` (when given) and given its name."""
    if size is not None:
        sparse.grow(tmp, size)
    sparse.publish(tmp, final, replace=replace)


def _open_image(final: Path, source: Path, fmt: str, limit: int) -> tuple[int, int]:
    """(an fd on the image, the size its header claims) once no volume `final` exists and the image
    passed `qemuimg.precheck`: one thread hop for the steps before the convert."""
    if os.path.lexists(final):
        raise VolumeExists(f"{final.name} already exists")
    fd = sparse.open_source(source)
    try:
        return fd, qemuimg.precheck(fd, fmt, limit)
    except BaseException:
        os.close(fd)
        raise


class FileStore:
    """Volumes as sparse raw files (see the module docstring)."""

    name: ClassVar[str] = "file"

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.root = Path(config.root)
        self.snapshots = self.root / "snapshots"
        self.backups = Path(config.backup_dir)

    @classmethod
    def probe(cls) -> list[str]:
        """Why the backend cannot run here (none when it can)."""
        import shutil

        return [] if shutil.which(qemuimg.QEMU_IMG) else ["qemu-img is not installed"]

    # -- paths: from ids only ---------------------------------------------------------------------

    def _volume(self, volume_id: str) -> Path:
        return self.root / f"{check_id(volume_id)}{SUFFIX}"

    def _snapshot(self, snapshot_id: str) -> Path:
        return self.snapshots / f"{check_id(snapshot_id, 'snapshot')}{SUFFIX}"

    def _backup(self, backup_id: str) -> Path:
        return self.backups / f"{check_id(backup_id, 'backup')}{BACKUP_SUFFIX}"

    def location(self, volume_id: str) -> Location:
        return Location(str(self._volume(volume_id)), "file")

    # -- building a file whole or not at all ------------------------------------------------------

    async def _build(self, final: Path, make: Callable[[Path], Awaitable[int | None]], *, replace: bool = False,
                     checked: bool = False) -> None:
        """Run make(tmp) on a temporary name beside `final`, then give it that name; when make
        returns a size, the file grows to it first (in the same thread hop as the naming).
        `checked`: the caller found no `final` already (a link never overwrites one anyway)."""
        if not replace and not checked and await asyncio.to_thread(os.path.lexists, final):
            raise VolumeExists(f"{final.name} already exists")
        tmp = sparse.temp_path(final)
        async with Reverter() as r:
            r.add(asyncio.to_thread, sparse.unlink, tmp)
            size = await make(tmp)
            await sparse.in_thread(functools.partial(_finish, size=size, replace=replace), tmp, final)
            r.commit()

    async def _size_of(self, path: Path, what: str) -> int:
        try:
            return await asyncio.to_thread(sparse.file_size, path)
        except UnsafeSource as exc:
            if not await asyncio.to_thread(os.path.lexists, path):
                raise VolumeMissing(f"{what} not found") from None
            raise Conflict(f"{what}: {exc.message}") from None

    def _grown(self, size: int | None, floor: int, what: str) -> int:
        if size is None:
            return floor
        check_size(size, limit=self.config.max_bytes)
        if size < floor:
            raise ShrinkRefused(f"a volume of {size} bytes is smaller than {what} ({floor} bytes)")
        return size

    async def _copy_to(self, src: Path, final: Path, size: int) -> None:
        async def make(tmp: Path) -> int:
            await sparse.in_thread(sparse.copy_sparse, src, tmp)
            return size

        await self._build(final, make)

    async def _convert_in(self, fd: int, fmt: str, final: Path, size: int, *, replace: bool = False) -> None:
        async def make(tmp: Path) -> int:
            await qemuimg.convert(sparse.fd_path(fd), fmt, str(tmp), "raw")
            return size

        await self._build(final, make, replace=replace)

    # -- volumes ----------------------------------------------------------------------------------

    async def ensure_dirs(self) -> None:
        def make() -> None:
            for d in (self.root, self.snapshots, self.backups, Path(self.config.run_dir)):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            # the run dir too: an export (upload to image) is built there
            for d in (self.root, self.snapshots, self.backups, Path(self.config.run_dir)):
                sparse.reap_temps(d)

        await asyncio.to_thread(make)

    async def create(self, volume_id: str, size: int) -> None:
        final = self._volume(volume_id)
        check_size(size, limit=self.config.max_bytes)

        async def make(tmp: Path) -> None:
            await sparse.in_thread(sparse.create_sparse, tmp, size)

        await self._build(final, make)

    async def delete(self, volume_id: str) -> None:
        path = self._volume(volume_id)
        held = await asyncio.to_thread(devices_of, path)
        if held:
            raise Conflict(f"volume {volume_id} is attached to {', '.join(held)}; detach it first")
        await asyncio.to_thread(sparse.unlink, path)

    async def exists(self, volume_id: str) -> bool:
        return await asyncio.to_thread(os.path.lexists, self._volume(volume_id))

    async def list_volumes(self) -> list[str]:
        return await asyncio.to_thread(_ids_in, self.root, _NAME)

    async def list_snapshots(self) -> list[str]:
        return await asyncio.to_thread(_ids_in, self.snapshots, _NAME)

    async def list_backups(self) -> list[str]:
        return await asyncio.to_thread(_ids_in, self.backups, _BACKUP_NAME)

    async def usage(self, volume_id: str) -> Usage:
        path = self._volume(volume_id)
        await self._size_of(path, f"volume {volume_id}")
        size, allocated = await asyncio.to_thread(sparse.usage, path)
        return Usage(size, allocated)

    async def extend(self, volume_id: str, size: int) -> None:
        path = self._volume(volume_id)
        check_size(size, limit=self.config.max_bytes)
        await self._size_of(path, f"volume {volume_id}")
        await asyncio.to_thread(sparse.grow, path, size)

    async def clone(self, source_id: str, volume_id: str, size: int | None = None) -> None:
        src, final = self._volume(source_id), self._volume(volume_id)
        floor = await self._size_of(src, f"volume {source_id}")
        await self._copy_to(src, final, self._grown(size, floor, f"volume {source_id}"))

    # -- snapshots --------------------------------------------------------------------------------

    async def create_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        src, final = self._volume(volume_id), self._snapshot(snapshot_id)
        size = await self._size_of(src, f"volume {volume_id}")
        await self._copy_to(src, final, size)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await asyncio.to_thread(sparse.unlink, self._snapshot(snapshot_id))

    async def snapshot_exists(self, snapshot_id: str) -> bool:
        return await asyncio.to_thread(os.path.lexists, self._snapshot(snapshot_id))

    async def create_from_snapshot(self, snapshot_id: str, volume_id: str, size: int | None = None) -> None:
        src, final = self._snapshot(snapshot_id), self._volume(volume_id)
        floor = await self._size_of(src, f"snapshot {snapshot_id}")
        await self._copy_to(src, final, self._grown(size, floor, f"snapshot {snapshot_id}"))

    # -- backups ----------------------------------------------------------------------------------

    async def backup(self, volume_id: str, backup_id: str) -> Usage:
        src, final = self._volume(volume_id), self._backup(backup_id)
        await self._size_of(src, f"volume {volume_id}")
        fd = await asyncio.to_thread(sparse.open_source, src)
        try:
            size = os.fstat(fd).st_size

            async def make(tmp: Path) -> None:
                await qemuimg.convert(sparse.fd_path(fd), "raw", str(tmp), "qcow2", compress=True)

            await self._build(final, make)
        finally:
            os.close(fd)
        return Usage(size, await asyncio.to_thread(sparse.file_size, final))

    async def delete_backup(self, backup_id: str) -> None:
        await asyncio.to_thread(sparse.unlink, self._backup(backup_id))

    async def backup_exists(self, backup_id: str) -> bool:
        return await asyncio.to_thread(os.path.lexists, self._backup(backup_id))

    async def restore(self, backup_id: str, volume_id: str, size: int | None = None, *,
                      overwrite: bool = False) -> None:
        src, final = self._backup(backup_id), self._volume(volume_id)
        await self._size_of(src, f"backup {backup_id}")
        if overwrite:
            current = await self._size_of(final, f"volume {volume_id}")
            held = await asyncio.to_thread(devices_of, final)
            if held:
                raise Conflict(f"volume {volume_id} is attached to {', '.join(held)}; detach it first")
            size = max(size or 0, current)
        fd = await asyncio.to_thread(sparse.open_source, src)
        try:
            vsize = await qemuimg.inspect(fd, "qcow2", self.config.max_bytes, f"backup {backup_id}")
            target = self._grown(size, round_up(vsize, SECTOR), f"backup {backup_id}")
            await self._convert_in(fd, "qcow2", final, target, replace=overwrite)
        finally:
            os.close(fd)

    # -- images -----------------------------------------------------------------------------------

    async def create_from_image(self, volume_id: str, source: Path, fmt: str, size: int | None = None) -> int:
        final = self._volume(volume_id)
        qemuimg.check_format(fmt)
        limit = self.config.max_bytes
        fd, claimed = await asyncio.to_thread(_open_image, final, Path(source), fmt, limit)
        try:
            self._image_target(size, claimed)
            made: list[int] = []

            async def make(tmp: Path) -> int:
                # The convert runs while qemu-img info and check inspect the image (a refusal kills it).
                target = self._image_target(size, await qemuimg.convert_verified(fd, fmt, str(tmp), limit))
                made.append(target)
                return target

            await self._build(final, make, checked=True)
        finally:
            os.close(fd)
        return made[0]

    def _image_target(self, size: int | None, vsize: int) -> int:
        """The volume's size for an image of virtual size `vsize` (TooLarge when `size` is smaller)."""
        floor = round_up(vsize, SECTOR)
        if size is not None and size < floor:
            raise TooLarge(f"the image's virtual size ({vsize} bytes) does not fit a volume of {size} bytes")
        return self._grown(size, floor, "the image")

    async def export(self, volume_id: str, dest: Path, fmt: str) -> int:
        src, dest = self._volume(volume_id), Path(dest)
        qemuimg.check_format(fmt)
        await self._size_of(src, f"volume {volume_id}")
        fd = await asyncio.to_thread(sparse.open_source, src)
        try:
            async def make(tmp: Path) -> None:
                await qemuimg.convert(sparse.fd_path(fd), "raw", str(tmp), fmt)

            await self._build(dest, make)
        finally:
            os.close(fd)
        return await asyncio.to_thread(sparse.file_size, dest)
