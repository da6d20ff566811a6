"""A deterministic writer (and a small reader, for tests) of cpio "newc" archives: the initramfs format.

Entries are written sorted by path, parents first, with fixed inode numbers, mtimes, owners (root)
and link counts, so the same inputs always give the same bytes. Device nodes are plain headers
(no privilege needed to make /dev/console for the kernel to open before devtmpfs is mounted).
"""

from __future__ import annotations

import gzip
import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z, as the busybox demo image


@dataclass(frozen=True)
class Entry:
    """One archive member. `path` is relative ("bin/sh"); `data` is the content or a symlink's target."""

    path: str
    mode: int  # full st_mode: type bits | permissions
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node

    @staticmethod
    def dir(path: str, perm: int = 0o755) -> Entry:
        return Entry(path, stat.S_IFDIR | perm)

    @staticmethod
    def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
        return Entry(path, stat.S_IFREG | perm, data)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, stat.S_IFLNK | 0o777, target.encode())

    @staticmethod
    def chardev(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        return Entry(path, stat.S_IFCHR | perm, b"", (major, minor))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, e: Entry, name: bytes, nlink: int) -> bytes:
    fields = (ino, e.mode, 0, 0, nlink, FIXED_MTIME, len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name) + 1, 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def _check(path: str) -> str:
    clean = path.strip("/")
    parts = clean.split("/")
    if not clean or any(p in ("", ".", "..") for p in parts) or "\0" in clean:
        raise ValueError(f"bad archive path {path!r}")
    return clean


def write_newc(entries: Iterable[Entry]) -> bytes:
    """The archive (uncompressed) holding `entries`; missing parent directories are added (0755)."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        path = _check(e.path)
        if path in by_path:
            raise ValueError(f"duplicate archive path {path!r}")
        by_path[path] = Entry(path, e.mode, e.data, e.rdev)
    for path in list(by_path):
        parts = path.split("/")
        for i in range(1, len(parts)):
            by_path.setdefault("/".join(parts[:i]), Entry.dir("/".join(parts[:i])))
    out = io.BytesIO()
    # Sort on components so "a/b" follows "a" but precedes "a-c/..." consistently; parents come first.
    for ino, path in enumerate(sorted(by_path, key=lambda p: p.split("/")), start=1):
        e = by_path[path]
        name = path.encode()
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        head = _header(ino, e, name, nlink) + name + b"\0"
        out.write(head + _pad(len(head)))
        out.write(e.data + _pad(len(e.data)))
    trailer = Entry(TRAILER, 0)
    name = TRAILER.encode()
    head = _header(0, trailer, name, 1) + name + b"\0"
    out.write(head + _pad(len(head)))
    return out.getvalue()


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    """gzip without a file name or timestamp, so the output depends on `data` only."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=level) as gz:
        gz.write(data)
    return buf.getvalue()


def read_newc(archive: bytes) -> list[Entry]:
    """Parse a newc archive (gzip'd or not) back into entries, up to the trailer."""
    if archive[:2] == b"\x1f\x8b":
        archive = gzip.decompress(archive)
    entries: list[Entry] = []
    pos = 0
    while True:
        head = archive[pos:pos + 110]
        if len(head) < 110 or head[:6] != MAGIC:
            raise ValueError(f"bad cpio header at offset {pos}")
        f = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = archive[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        data = archive[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == TRAILER:
            return entries
        entries.append(Entry(name, mode, data, (rmaj, rmin)))
