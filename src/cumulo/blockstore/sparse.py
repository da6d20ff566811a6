"""Blocking file helpers of the file backend, run in threads: sparse copies, safe opens, temp files.

Untrusted sources are opened by fd and checked as regular files; temporary files are published
without clobbering, and those of a crashed process reaped.

A copy tries FICLONE first (a reflink: instant, shared extents, on btrfs/XFS), then copies only
the data extents (SEEK_DATA/SEEK_HOLE, each through copy_file_range, in the kernel): holes stay
holes, so a 1 TiB volume holding 10 MiB copies 10 MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from cumulo import host
from cumulo.blockstore.base import ShrinkRefused, UnsafeSource, VolumeExists

T = TypeVar("T")
FICLONE = 0x40049409
_CHUNK = 1 << 30  # copy_file_range length per call (a huge extent in several calls)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


async def whole(aw: Awaitable[T]) -> T:
    """Await `aw` to its end even when the caller is cancelled, then re-raise the cancel: a thread
    or a child process writing a file cannot be stopped midway, and the caller's cleanup (removing
    that file) must come after it, or the file could be made again behind it."""
    job = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await job
        raise


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """fn(*args) in a thread, whole (see `whole`)."""
    return await whole(asyncio.to_thread(fn, *args))


def open_source(path: Path) -> int:
    """An fd of `path` opened for reading, refusing anything but a regular file: a symlink (in
    the last component), FIFO, socket, device or directory raises UnsafeSource. O_NONBLOCK keeps
    the open of a FIFO from waiting for a writer; the check is on the fd, so no swap after it counts."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeSource(f"{path.name} is a symbolic link; refused") from None
        raise UnsafeSource(f"{path.name} cannot be opened: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISBLK(mode) or stat.S_ISCHR(mode)
                else "a directory" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise UnsafeSource(f"{path.name} is {kind}, not a regular file; refused")
    os.set_blocking(fd, True)
    return fd


def fd_path(fd: int) -> str:
    """A path naming the open file `fd` of this process for a child (qemu-img): the child opens the
    very file this process checked, whatever the name points at by then."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def copy_fd(fi: int, fo: int) -> None:
    """fo (empty, writable) becomes a copy of fi: a reflink where the filesystem has them, else the
    data extents only, the holes left as holes."""
    size = os.fstat(fi).st_size
    try:
        fcntl.ioctl(fo, FICLONE, fi)
        return
    except OSError:
        pass  # EOPNOTSUPP/EXDEV/EINVAL: no reflinks here; copy the extents
    os.ftruncate(fo, size)
    off = 0
    while off < size:
        try:
            start = os.lseek(fi, off, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole is left
            raise
        end = min(os.lseek(fi, start, os.SEEK_HOLE), size)
        pos = start
        while pos < end:
            want = min(end - pos, _CHUNK)
            try:
                n = os.copy_file_range(fi, fo, want, pos, pos)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                n = os.pwrite(fo, os.pread(fi, min(want, 1 << 20), pos), pos)
            if n <= 0:
                raise OSError(errno.EIO, "short copy")
            pos += n
        off = end


def copy_sparse(src: Path, dst: Path) -> None:
    """dst (must not exist; created 0600) as a sparse copy of the regular file src."""
    fi = open_source(src)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            copy_fd(fi, fo)
            os.fsync(fo)
        finally:
            os.close(fo)
    finally:
        os.close(fi)


def create_sparse(path: Path, size: int) -> None:
    """A new file (must not exist) of `size` bytes, all hole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def file_size(path: Path) -> int:
    """The size of a regular file (UnsafeSource for anything else)."""
    fd = open_source(path)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def usage(path: Path) -> tuple[int, int]:
    """(size, bytes allocated) of a regular file."""
    fd = open_source(path)
    try:
        st = os.fstat(fd)
        return st.st_size, st.st_blocks * 512
    finally:
        os.close(fd)


def grow(path: Path, size: int) -> int:
    """Grow a file to `size` bytes (holes); ShrinkRefused below its size. Returns the old size."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        old = os.fstat(fd).st_size
        if size < old:
            raise ShrinkRefused(f"cannot shrink a volume: {size} bytes is below its size of {old} bytes")
        if size > old:
            os.ftruncate(fd, size)
        return old
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """A temporary name beside `final`, naming this process (so a crashed one's can be reaped)."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def publish(tmp: Path, final: Path, *, replace: bool = False) -> None:
    """Give the finished file `tmp` its name `final`, atomically. Without replace, an existing
    `final` raises VolumeExists and stays as it was (link, never rename over it)."""
    if replace:
        os.replace(tmp, final)
    else:
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise VolumeExists(f"{final.name} already exists") from None
        os.unlink(tmp)
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    """Make a name's creation durable (the volume is reported made after this)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def started_after(pid: int, when: float) -> bool:
    """Whether process `pid` started after the wall-clock time `when` (more than the second
    /proc/stat's boot time is rounded to): then it cannot have written a file last changed at `when`."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return boot + ticks / os.sysconf("SC_CLK_TCK") > when + 1.0


def reap_temps(directory: Path) -> list[str]:
    """Remove the temporary files in `directory` whose process is gone (a crash mid-operation).
    A live process that started after the file last changed is not its writer: the pid was reused
    (a cloud restarted in a fresh container often gets the dead one's pid, even this process's).
    Returns their names."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        m = _TEMP.match(name)
        if not m:
            continue
        pid = int(m["pid"])
        try:
            changed = os.lstat(directory / name).st_mtime
        except FileNotFoundError:
            continue
        if not host.pid_alive(pid) or started_after(pid, changed):
            unlink(directory / name)
            removed.append(name)
    return removed
