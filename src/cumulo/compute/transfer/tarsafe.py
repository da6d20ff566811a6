"""A container's overlay upper dir as a tar stream, and its safe extraction (issue 14).

`build` (sender, blocking: run it in a thread) writes `src` as a POSIX tar, never following a
link, even when the tenant's tree changes under it (directory fds, O_PATH|O_NOFOLLOW: see `build`;
symlinks are stored as symlinks, hard links as links to the first name), with the overlay's
opaque-dir mark (xattr trusted.overlay.opaque) carried as a pax header; sockets, FIFOs and device
nodes other than whiteouts are left out (the destination would refuse them).

`extract` (receiver, blocking) checks every member before a byte is written, then extracts into a
fresh empty directory. The tar is the tenant's data, so it is refused (TarRefused, naming the
member) when any member:

- has an absolute name, a `..` part, an empty or duplicate name (a later member would replace an
  earlier one, e.g. a file over a symlink);
- lies below a symlink member (extraction never follows a tenant's symlink), or below a member that
  is not a directory;
- is a block device, a FIFO, or a char device other than 0:0 (an overlay whiteout);
- is a hard link whose target is not an earlier regular file of the same tar;
- is a symlink whose relative target climbs out of the tree (an absolute target is kept as it is: it
  means the container's own root, and nothing on the host follows it);
- would bring the entries over `max_entries` or the bytes over `max_bytes`.

Kept: owners (numeric: the container's uids), modes without setuid/setgid (the sticky bit stays:
/tmp), mtimes, whiteouts (mknod 0:0) and opaque marks (only the trusted.overlay.opaque xattr).
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import IO

OPAQUE_XATTR = "trusted.overlay.opaque"
_PAX_OPAQUE = "SCHILY.xattr." + OPAQUE_XATTR


class TarRefused(ValueError):
    """The tar breaks one of the rules (the message names the member and the rule); `too_large`:
    it broke a bound (entries or bytes)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def build(src: Path, out: IO[bytes]) -> None:
    """Write the tree at `src` (not followed) as a tar stream to `out`, its root first as "."
    (the upper dir's own owner and mode are the container's "/"). Blocking.

    The tree is the tenant's and may change while it is read: it is walked by directory fds
    (`os.fwalk`, which never follows a link), each entry is opened O_PATH|O_NOFOLLOW relative to its
    directory and described by what that fd is (a file swapped for a symlink after the listing goes
    as that symlink, never as what it points to), and only a regular file is reopened to read its
    bytes (a device node or FIFO is never opened). Sockets, FIFOs and device nodes other than
    overlay whiteouts (0:0) are left out: the destination refuses them, and they are not data."""
    links: dict[tuple[int, int], str] = {}  # (dev, ino) of a regular file with links -> its first name
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        top = os.fspath(src)
        for root, dirs, files, dirfd in os.fwalk(top, follow_symlinks=False):
            rel = os.path.relpath(root, top)
            if rel == ".":  # the first (top-down): the tree's root, as "."
                _add(tar, ".", os.open(".", os.O_PATH | os.O_DIRECTORY, dir_fd=dirfd), links)
            dirs.sort()
            for name in [*dirs, *sorted(files)]:
                try:
                    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
                except FileNotFoundError:
                    continue  # gone since the listing
                _add(tar, name if rel == "." else f"{rel}/{name}", fd, links)


def _add(tar: tarfile.TarFile, arcname: str, fd: int, links: dict[tuple[int, int], str]) -> None:
    """Add the entry open as O_PATH `fd` (closed here) to `tar` by what it is now."""
    try:
        st = os.fstat(fd)
        mode = st.st_mode
        if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode) or stat.S_ISBLK(mode) or (
                stat.S_ISCHR(mode) and st.st_rdev != os.makedev(0, 0)):
            return
        info = tarfile.TarInfo(arcname)
        info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(mode), st.st_uid, st.st_gid, st.st_mtime
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            try:
                if os.getxattr(f"/proc/self/fd/{fd}", OPAQUE_XATTR) == b"y":
                    info.pax_headers = {_PAX_OPAQUE: "y"}
            except OSError:
                pass
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=fd)
        elif stat.S_ISCHR(mode):
            info.type = tarfile.CHRTYPE  # a whiteout (0:0)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info.type, info.linkname = tarfile.LNKTYPE, links[key]
            else:
                if st.st_nlink > 1:
                    links[key] = arcname
                info.size = st.st_size
                # the O_PATH fd reopened: the same inode, whatever the name points to by now
                with open(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC), "rb") as fh:
                    tar.addfile(info, fh)
                return
        else:
            return
        tar.addfile(info)
    finally:
        os.close(fd)


def check(tar_path: Path, max_entries: int, max_bytes: int) -> list[tarfile.TarInfo]:
    """Every member of the tar at `tar_path`, or TarRefused on the first that breaks a rule."""
    kinds: dict[str, str] = {}  # name -> "dir" | "file" | "link" | "other"
    members: list[tarfile.TarInfo] = []
    total = 0
    with tarfile.open(tar_path, mode="r:") as tar:
        for m in tar:
            if len(members) >= max_entries:
                raise TarRefused(f"more than {max_entries} entries", too_large=True)
            if m.name in (".", "./"):  # the tree's root: its owner and mode, first or not at all
                if members or not m.isdir():
                    raise TarRefused("'.' must be the first member and a directory")
                m.name = "."
                members.append(m)
                continue
            name = _normal(m.name)
            total += max(m.size, 0)
            if total > max_bytes:
                raise TarRefused(f"{name}: the contents exceed {max_bytes} bytes", too_large=True)
            if name in kinds and not (kinds[name] == "implied" and m.isdir()):
                raise TarRefused(f"{name}: appears twice, or after members below it")
            parent = posixpath.dirname(name)
            while parent:
                kind = kinds.get(parent)
                if kind == "link":
                    raise TarRefused(f"{name}: lies below the symlink {parent}")
                if kind is not None and kind not in ("dir", "implied"):
                    raise TarRefused(f"{name}: lies below {parent}, which is not a directory")
                kinds.setdefault(parent, "implied")  # made as a dir by the extraction
                parent = posixpath.dirname(parent)
            if m.isdir():
                kinds[name] = "dir"
            elif m.isreg():
                kinds[name] = "file"
            elif m.issym():
                _check_symlink(name, m.linkname)
                kinds[name] = "link"
            elif m.islnk():
                target = _normal(m.linkname)
                if kinds.get(target) != "file":
                    raise TarRefused(f"{name}: a hard link to {m.linkname!r}, not an earlier file of this tar")
                kinds[name] = "file"
            elif m.ischr() and m.devmajor == 0 and m.devminor == 0:
                kinds[name] = "other"  # an overlay whiteout
            elif m.ischr() or m.isblk():
                raise TarRefused(f"{name}: a device node ({m.devmajor}:{m.devminor})")
            elif m.isfifo():
                raise TarRefused(f"{name}: a FIFO")
            else:
                raise TarRefused(f"{name}: an unsupported member type {m.type!r}")
            m.name = name
            members.append(m)
    return members


def _normal(raw: str) -> str:
    name = raw.removeprefix("./") if raw != "./" else raw
    name = name.rstrip("/")
    if not name or name in (".", "./"):
        raise TarRefused(f"{raw!r}: an empty name")
    if name.startswith("/") or "\0" in name:
        raise TarRefused(f"{raw!r}: an absolute name")
    parts = name.split("/")
    if any(p in ("..", "") for p in parts):
        raise TarRefused(f"{raw!r}: a '..' or empty path part")
    return "/".join(p for p in parts if p != ".")


def _check_symlink(name: str, target: str) -> None:
    if not target or "\0" in target:
        raise TarRefused(f"{name}: an empty symlink target")
    if target.startswith("/"):
        return  # the container's own root: nothing here follows it
    depth = name.count("/")  # the link's dir depth below the tree's root
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise TarRefused(f"{name}: a symlink out of the tree ({target!r})")
        elif part not in ("", "."):
            depth += 1


def extract(tar_path: Path, dest: Path, max_entries: int, max_bytes: int) -> int:
    """Check the tar (`check`), then extract it into `dest`, which must not exist (made 0700 here,
    then given the owner, mode and mtime of the tar's "." member, if any). Returns the member
    count. Blocking."""
    members = check(tar_path, max_entries, max_bytes)
    dest.mkdir(mode=0o700)
    opaque: list[str] = []
    root: tarfile.TarInfo | None = None
    with tarfile.open(tar_path, mode="r:") as tar:
        checked = {m.offset: m for m in members}
        for m in tar:
            ok = checked.get(m.offset)
            if ok is None:  # the second read disagrees with the first: refuse
                raise TarRefused(f"{m.name}: changed between the check and the extraction")
            m.name = ok.name
            m.mode &= ~(stat.S_ISUID | stat.S_ISGID)
            if m.islnk():
                m.linkname = _normal(m.linkname)
            if m.isdir() and m.pax_headers.get(_PAX_OPAQUE) == "y":
                opaque.append(m.name)
            if m.name == ".":
                root = m
                continue
            if m.ischr():
                _whiteout(dest, m)
                continue
            tar.extract(m, dest, set_attrs=True, numeric_owner=True, filter="fully_trusted")
    for name in opaque:
        os.setxattr(dest / name, OPAQUE_XATTR, b"y", follow_symlinks=False)
    if root is not None:
        if os.geteuid() == 0:
            os.chown(dest, root.uid, root.gid)
        os.chmod(dest, stat.S_IMODE(root.mode))
        os.utime(dest, (root.mtime, root.mtime))
    return len(members)


def _whiteout(dest: Path, m: tarfile.TarInfo) -> None:
    path = dest / m.name
    os.mknod(path, stat.S_IFCHR | (m.mode & 0o777), os.makedev(0, 0))
    os.chown(path, m.uid, m.gid, follow_symlinks=False)
