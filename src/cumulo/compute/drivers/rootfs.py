"""Reading and writing files inside an untrusted root (an unpacked image, a container's merged root).

Every file a driver touches inside a tenant's root goes through here. The root is ours (a
directory the cloud made); everything below it comes from the image or the running container, so
any component may be a symlink (absolute, or `../../..`), a FIFO, a device or a huge file.

- Paths are resolved INSIDE the root, as a chroot would: an absolute symlink starts again at the
  root, `..` stops at the root. Where the kernel has it, `openat2(RESOLVE_IN_ROOT |
  RESOLVE_NO_MAGICLINKS)` does this atomically; else a walk from the root's fd, one component at a
  time with O_NOFOLLOW, reading each symlink and resolving it the same way (40 hops at most).
- The final object is opened O_PATH first and fstat'ed: anything but a regular file (a FIFO, a
  socket, a device, a directory) is refused BEFORE it is opened for reading, so nothing blocks
  and no device is touched. It is then reopened read-only and non-blocking through
  /proc/self/fd, the same inode. At most `max_bytes` are read; a larger file is refused.
- Writers (`ensure_dir_at`, `replace_file_at`) never follow a link: a component that is a link or
  not a directory is replaced by a real directory; files are written to a temp name and renamed.

Everything here blocks: callers run it in `asyncio.to_thread` (`read_file_async` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import shutil
import stat
from collections import deque
from pathlib import Path

MAX_SYMLINK_HOPS = 40
DEFAULT_MAX_BYTES = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

# openat2(2): the syscall number is 437 on every architecture (new syscalls share one table).
_SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class UnsafeFile(OSError):
    """A path inside a root that is not a regular file, is too large, or cannot be resolved inside it."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_LIBC: list[ctypes.CDLL] = []
_OPENAT2_MISSING: list[bool] = []  # set once openat2 answered ENOSYS (or seccomp said EPERM)


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _openat2(dir_fd: int, rel: str, flags: int, resolve: int) -> int:
    """openat2(2); raises OSError (ENOSYS where the kernel lacks it)."""
    how = _OpenHow(flags, 0, resolve)
    syscall = _libc().syscall
    syscall.restype = ctypes.c_long
    fd = int(syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(os.fsencode(rel)),
                     ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: {rel!r}")
    return fd


def _walk_in_root(root_fd: int, rel: str) -> int:
    """An O_PATH fd of `rel` resolved inside root_fd, symlinks included (the fallback of openat2)."""
    todo = deque(p for p in rel.split("/") if p not in ("", "."))
    stack = [os.dup(root_fd)]  # dir fds from the root down; ".." pops, never past the root
    hops = 0
    try:
        while todo:
            name = todo.popleft()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=stack[-1])
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                os.close(fd)
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise UnsafeFile(errno.ELOOP, f"too many symbolic links resolving {rel!r}")
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):  # absolute: from the root again, as in a chroot
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if not todo:
                return fd
            if not stat.S_ISDIR(mode):
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, f"{name!r} in {rel!r} is not a directory")
            stack.append(fd)
        return os.dup(stack[-1])  # rel named the root itself (or only "..")
    finally:
        for d in stack:
            os.close(d)


def open_path_in_root(root: Path | int, rel: str, *, use_openat2: bool = True) -> int:
    """An O_PATH fd of `rel` (relative or absolute: both mean inside the root), resolved inside `root`.

    `root` is a path (opened here, O_NOFOLLOW: the root itself must be a real directory) or a
    directory fd. The caller closes the returned fd.
    """
    root_fd = os.open(root, _DIR_FLAGS) if not isinstance(root, int) else root
    try:
        clean = rel.lstrip("/") or "."
        for _ in range(3 if use_openat2 and not _OPENAT2_MISSING else 0):
            try:
                return _openat2(root_fd, clean, _PATH_FLAGS, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:  # a rename raced the lookup: the kernel asks to retry
                    continue
                if exc.errno in (errno.EXDEV, errno.ELOOP):
                    raise UnsafeFile(exc.errno, f"{rel!r} cannot be resolved inside the root") from None
                if exc.errno not in (errno.ENOSYS, errno.EPERM):
                    raise
                _OPENAT2_MISSING.append(True)
                break
        return _walk_in_root(root_fd, clean)
    finally:
        if not isinstance(root, int):
            os.close(root_fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _read_regular(path_fd: int, what: str, max_bytes: int) -> bytes:
    """Read the regular file behind an O_PATH fd (refusing anything else, or more than max_bytes)."""
    st = os.fstat(path_fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(errno.EINVAL, f"{what} is {_kind(st.st_mode)}, not a regular file")
    if st.st_size > max_bytes:
        raise UnsafeFile(errno.EFBIG, f"{what} is larger than {max_bytes} bytes")
    # The same inode, now readable; non-blocking in case it was swapped for something odd meanwhile.
    fd = os.open(f"/proc/self/fd/{path_fd}", _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFile(errno.EINVAL, f"{what} is not a regular file")
        chunks, left = [], max_bytes + 1
        while left > 0:
            data = os.read(fd, min(left, 1 << 16))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
    finally:
        os.close(fd)
    out = b"".join(chunks)
    if len(out) > max_bytes:
        raise UnsafeFile(errno.EFBIG, f"{what} is larger than {max_bytes} bytes")
    return out


def read_file(root: Path | int, rel: str, *, max_bytes: int = DEFAULT_MAX_BYTES, use_openat2: bool = True) -> bytes:
    """The bytes of the regular file `rel` inside `root` (blocking). Missing: FileNotFoundError;
    not a regular file, too large, or unresolvable inside the root: UnsafeFile."""
    fd = open_path_in_root(root, rel, use_openat2=use_openat2)
    try:
        return _read_regular(fd, "/" + rel.lstrip("/"), max_bytes)
    finally:
        os.close(fd)


async def read_file_async(root: Path, rel: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """read_file, off the event loop."""
    return await asyncio.to_thread(read_file, root, rel, max_bytes=max_bytes)


def read_file_at(dir_fd: int, name: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
    """The regular file `name` directly in dir_fd, NOT following a link; None when it is missing,
    a link, or not a regular file (callers replace such a thing rather than read it)."""
    try:
        fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        return _read_regular(fd, name, max_bytes)
    except UnsafeFile as exc:
        if exc.errno == errno.EFBIG:
            raise
        return None
    finally:
        os.close(fd)


# -- writers (never follow a link) -------------------------------------------------------------


def open_dir(path: Path) -> int:
    """A directory fd of `path` itself, which must be a real directory (ours: a root)."""
    return os.open(path, _DIR_FLAGS)


def ensure_dir_at(parent_fd: int, name: str, mode: int) -> tuple[int, bool]:
    """A real directory `name` in parent_fd, made if missing, replacing a symlink or a non-dir.

    Returns (fd, created). Unlinking a link in an overlay only whites it out in the private upper
    layer: nothing outside the root is touched.
    """
    for _ in range(3):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd), False
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            os.unlink(name, dir_fd=parent_fd)  # a symlink (ELOOP under O_NOFOLLOW) or a file
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=parent_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            return fd, True
    raise OSError(errno.EAGAIN, f"{name!r} keeps changing under us")


def replace_file_at(dir_fd: int, name: str, data: bytes, *, mode: int, uid: int | None = None,
                    gid: int | None = None) -> None:
    """Write `name` in dir_fd atomically (temp file + rename); whatever `name` was (a link, a
    FIFO, a directory) is replaced, never written through."""
    tmp = f".{name}.cumulo"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    with os.fdopen(out, "wb") as fh:
        fh.write(data)
        if uid is not None:
            os.fchown(fh.fileno(), uid, -1 if gid is None else gid)
        os.fchmod(fh.fileno(), mode)  # after chown; not narrowed by the umask
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:  # a directory of that name
        if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: never follows a link
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
