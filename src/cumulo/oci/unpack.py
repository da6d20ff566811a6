"""Unpacking image layers into a root directory, safely, and a cache of unpacked roots.

`unpack_rootfs(image_file, dest)` makes `dest/` holding `rootfs/` (the merged layers) and
`config.json` (the parsed `ImageConfig`). It builds everything in a temp dir next to `dest` and
renames it into place, so `dest` is either complete or absent. Rules while applying a layer:

- Member names must be relative and free of `..`; anything else is refused (`errors.Invalid`).
- Symlinks are created as they are (an absolute target means "inside the root", as in a chroot).
  When a later member's path goes *through* a symlink, the link is followed inside the root; a
  link that leads above the root is refused. Hard links must name a regular file already unpacked.
- An existing path is replaced, never written through: a file member never opens an old symlink.
- `.wh.<name>` deletes `<name>` from lower layers; `.wh..wh..opq` empties its directory of
  everything lower layers put there (containerd's rule: only paths this layer unpacked survive).
- Character and block devices are skipped (runc provides /dev; an unprivileged agent could not
  create them anyway). FIFOs are created. Owners are applied only when running as root.
- Directories stay owner-writable while unpacking; their image modes are applied at the end.

Any error removes the temp dir, so nothing is left behind; nothing is written outside dest's parent.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cumulo import errors
from cumulo.oci import _archive, read_parsed
from cumulo.oci.config import ImageConfig

ROOTFS = "rootfs"
CONFIG = "config.json"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40
_HOST_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EROFS)
UNPACK_PREFIX = ".unpack-"
_KEY = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


def _bad(msg: str) -> errors.Invalid:
    return errors.Invalid(f"Refusing the image: {msg}")


def _clean_name(name: str, what: str = "layer member") -> str:
    """A member name as root-relative parts joined by '/'; refuse absolute names and '..'."""
    if name.startswith("/"):
        raise _bad(f"{what} {name!r} has an absolute path.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _bad(f"{what} {name!r} climbs out of the root with '..'.")
    if "\x00" in name:
        raise _bad(f"{what} {name!r} has a NUL byte in its name.")
    return "/".join(parts)


class _Layerer:
    """Applies layer tars, one after another, to `root` (a directory we created and own)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.as_root = os.geteuid() == 0
        self.dir_modes: dict[str, int] = {}
        self.unpacked: set[str] = set()  # real paths this layer created (and their ancestors)

    # -- path resolution inside the root -------------------------------------------------------

    def resolve(self, rel: str, *, create: bool) -> str:
        """The real path of directory `rel`, following symlinks inside the root; mkdir if `create`."""
        done: list[str] = []
        pending = [p for p in rel.split("/") if p]
        hops = 0
        while pending:
            comp = pending.pop(0)
            if comp in ("", "."):
                continue
            if comp == "..":
                if not done:
                    raise _bad(f"a symlink on the path {rel!r} leads outside the image root.")
                done.pop()
                continue
            cur = os.path.join(self.root, *done, comp)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                if not create:
                    # Keep walking lexically: a later '..' must not climb above the root.
                    done.append(comp)
                    continue
                os.mkdir(cur, 0o755)
                self.dir_modes.setdefault(cur, 0o755)
                done.append(comp)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise _bad(f"too many symlinks on the path {rel!r}.")
                target = os.readlink(cur)
                if target.startswith("/"):
                    done = []
                pending = [p for p in target.split("/") if p] + pending
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise _bad(f"the path {rel!r} goes through {'/'.join([*done, comp])!r}, which is not a directory.")
            done.append(comp)
        return os.path.join(self.root, *done)

    def mark(self, path: str) -> None:
        while path.startswith(self.root) and path not in self.unpacked and path != self.root:
            self.unpacked.add(path)
            path = os.path.dirname(path)

    # -- applying members ------------------------------------------------------------------------

    def apply(self, layer: tarfile.TarFile) -> None:
        self.unpacked = set()
        try:
            for info in layer:
                self.member(layer, info)
        except OSError as exc:
            if exc.errno in _HOST_ERRNOS:
                raise  # the host is out of space or failing: not the image's fault
            # Otherwise the layer data is inconsistent (a name too long, a link over a dir...):
            # the root is a fresh dir we own, so nothing else can be in the way.
            raise _bad(f"a layer cannot be applied: {exc}") from None
        except (tarfile.TarError, EOFError, UnicodeError) as exc:
            raise _bad(f"a layer is corrupt: {exc}") from None

    def member(self, layer: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        rel = _clean_name(info.name)
        if not rel:
            return  # the layer's own root entry
        parent_rel, _, base = rel.rpartition("/")
        if base == OPAQUE:
            self.opaque(self.resolve(parent_rel, create=True))
            return
        if base.startswith(WHITEOUT):
            self.whiteout(parent_rel, base[len(WHITEOUT):])
            return
        if info.ischr() or info.isblk():
            return  # documented above: devices are skipped
        parent = self.resolve(parent_rel, create=True)
        path = os.path.join(parent, base)
        self.replace(path, keep_dir=info.isdir())
        if info.isdir():
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
            os.chmod(path, (info.mode & 0o7777) | 0o700)
            self.dir_modes[path] = info.mode & 0o7777
        elif info.issym():
            os.symlink(info.linkname, path)
        elif info.islnk():
            self.hardlink(info, path)
        elif info.isfile():
            self.regular(layer, info, path)
        elif info.isfifo():
            os.mkfifo(path, info.mode & 0o777)
        else:
            raise _bad(f"layer member {info.name!r} has an unsupported type {info.type!r}.")
        self.finish(info, path)
        self.mark(path)

    def replace(self, path: str, *, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                _rmtree(path)
        else:
            os.unlink(path)

    def regular(self, layer: tarfile.TarFile, info: tarfile.TarInfo, path: str) -> None:
        src = layer.extractfile(info)
        if src is None:
            raise _bad(f"layer member {info.name!r} has no data.")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as dst, src:
            shutil.copyfileobj(src, dst, 1 << 20)

    def hardlink(self, info: tarfile.TarInfo, path: str) -> None:
        target_rel = _clean_name(info.linkname, f"the target of hard link {info.name!r},")
        t_parent, _, t_base = target_rel.rpartition("/")
        target = os.path.join(self.resolve(t_parent, create=False), t_base)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise _bad(f"hard link {info.name!r} names {info.linkname!r}, which is not in the image.") from None
        if not target.startswith(self.root + os.sep) or stat.S_ISDIR(st.st_mode):
            raise _bad(f"hard link {info.name!r} must name a file inside the image, not {info.linkname!r}.")
        os.link(target, path, follow_symlinks=False)

    def finish(self, info: tarfile.TarInfo, path: str) -> None:
        if self.as_root:
            os.lchown(path, info.uid, info.gid)
        if info.isfile() or info.isfifo():
            os.chmod(path, info.mode & 0o7777)  # after chown, which clears set-id bits
        if not info.isdir() and not info.islnk():
            os.utime(path, (info.mtime, info.mtime), follow_symlinks=False)
        elif info.isdir() and self.as_root:
            os.chmod(path, (info.mode & 0o7777) | 0o700)

    def whiteout(self, parent_rel: str, name: str) -> None:
        if not name or name in (".", ".."):
            raise _bad(f"whiteout for {name!r} in {parent_rel!r} is malformed.")
        parent = self.resolve(parent_rel, create=False)
        target = os.path.join(parent, name)
        if not target.startswith(self.root + os.sep):
            raise _bad(f"whiteout {parent_rel}/{WHITEOUT}{name} leads outside the image root.")
        self.replace(target, keep_dir=False)

    def opaque(self, directory: str) -> None:
        for dirpath, dirnames, filenames in os.walk(directory):
            for name in filenames:
                p = os.path.join(dirpath, name)
                if p not in self.unpacked:
                    os.unlink(p)
            for name in list(dirnames):
                p = os.path.join(dirpath, name)
                if p not in self.unpacked:
                    dirnames.remove(name)
                    self.replace(p, keep_dir=False)
        self.mark(directory)

    def apply_dir_modes(self) -> None:
        for path in sorted(self.dir_modes, key=len, reverse=True):
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, self.dir_modes[path])


def _rmtree(path: str) -> None:
    def onerror(func: Callable[..., Any], p: str, exc: Any) -> None:
        # Image dirs may be read-only (mode 0555); make the parent writable and retry once.
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
            shutil.rmtree(p, ignore_errors=True)
        else:
            func(p)

    shutil.rmtree(path, onerror=onerror)


def _open_layer(tf: tarfile.TarFile, name: str) -> tuple[IO[bytes], tarfile.TarFile]:
    try:
        raw = tf.extractfile(name)
        if raw is None:
            raise _bad(f"layer {name!r} is not a file.")
        return raw, tarfile.open(fileobj=raw, mode="r|*")
    except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
        raise _bad(f"layer {name!r} is not a readable tar archive: {exc}") from None


def unpack_rootfs_sync(image_file: Path, dest_dir: Path) -> ImageConfig:
    """Blocking body of `unpack_rootfs`."""
    dest_dir = Path(dest_dir)
    if dest_dir.exists():
        raise FileExistsError(str(dest_dir))
    dest_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = tempfile.mkdtemp(prefix=f"{UNPACK_PREFIX}{dest_dir.name}-", dir=dest_dir.parent)
    try:
        rootfs = os.path.join(os.path.realpath(tmp), ROOTFS)
        os.mkdir(rootfs, 0o755)
        with _archive.open_archive(image_file) as tf:
            parsed = read_parsed(tf)
            layerer = _Layerer(rootfs)
            for name in parsed.layers:
                raw, layer = _open_layer(tf, name)
                with raw, layer:
                    layerer.apply(layer)
            layerer.apply_dir_modes()
        os.chmod(rootfs, 0o755)
        with open(os.path.join(tmp, CONFIG), "w") as fh:
            json.dump({"format": parsed.format, **parsed.config.to_json()}, fh, indent=1)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, dest_dir)
        except OSError as exc:
            if os.path.lexists(dest_dir):  # another unpack placed dest meanwhile (ENOTEMPTY/EEXIST)
                raise FileExistsError(str(dest_dir)) from exc
            raise
    except BaseException:
        _rmtree(tmp)
        raise
    return parsed.config


async def unpack_rootfs(image_file: Path, dest_dir: Path) -> ImageConfig:
    """Unpack a docker-save or OCI tarball to `dest_dir/rootfs` + `dest_dir/config.json`.

    `dest_dir` must not exist. Raises `errors.Invalid` naming the problem for a malformed or
    escaping image (and leaves nothing behind), FileExistsError if `dest_dir` appeared meanwhile.
    """
    return await asyncio.to_thread(unpack_rootfs_sync, Path(image_file), Path(dest_dir))


def remove_stale_unpacks(store_root: Path) -> list[str]:
    """Delete temp dirs of unpacks a crash interrupted. Call at start-up, before any unpack runs."""
    base = Path(store_root) / "rootfs"
    removed = []
    if base.is_dir():
        for p in base.iterdir():
            if p.name.startswith(UNPACK_PREFIX) and p.is_dir() and not p.is_symlink():
                _rmtree(str(p))
                removed.append(p.name)
    return removed


def load_config(dest_dir: Path) -> ImageConfig:
    with open(Path(dest_dir) / CONFIG) as fh:
        return ImageConfig.from_json(json.load(fh))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _lock(key: str) -> asyncio.Lock:
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(key, asyncio.Lock())


# When each cached root was last handed out (time.monotonic()), per process: a spawn holds its
# root between cached_rootfs and mounting it, which no record or mount shows yet.
_LEASES: dict[str, float] = {}


async def cached_rootfs(store_root: Path, image_id_or_digest: str, image_file: Path) -> tuple[Path, ImageConfig]:
    """The unpacked root of an image, unpacking it on first use: `(…/rootfs, config)`.

    Roots live in `<store_root>/rootfs/<sha256 of the image bytes>/` (store_root is the image
    store's root, `<state_dir>/images`) and are shared read-only by every user. Pass the image's
    store key (its sha256, optionally `sha256:`-prefixed) as `image_id_or_digest` to skip hashing;
    anything else (an image id) makes us hash `image_file`. Concurrent callers share one unpack.
    """
    m = _KEY.fullmatch(image_id_or_digest)
    key = m.group(1) if m else await asyncio.to_thread(_sha256_file, Path(image_file))
    dest = Path(store_root) / "rootfs" / key
    async with _lock(key):
        _LEASES[key] = time.monotonic()
        if not (dest / CONFIG).is_file():
            try:
                config = await unpack_rootfs(image_file, dest)
                return dest / ROOTFS, config
            except FileExistsError:
                if not (dest / CONFIG).is_file():
                    raise  # a stray dir that is not a finished unpack; leave it to the operator
        return dest / ROOTFS, await asyncio.to_thread(load_config, dest)


def remove_unpacked(store_root: Path, key: str) -> bool:
    """Delete the unpacked root of the image bytes `key` (their sha256), if there is one.

    Blocking: call in a thread. Returns whether something was removed. Only a 64-hex-digit key
    is accepted, so nothing outside `<store_root>/rootfs` can be named.
    """
    m = _KEY.fullmatch(key)
    if m is None:
        raise ValueError(f"not a content key: {key!r}")
    dest = Path(store_root) / "rootfs" / m.group(1)
    if not dest.is_dir() or dest.is_symlink():
        return False
    _rmtree(str(dest))
    return True


def _mount_table() -> str:
    with open("/proc/self/mountinfo") as fh:
        return fh.read()


def _removable(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


async def collect_unpacked(store_root: Path, keep: set[str], *, grace: float = 600.0) -> list[str]:
    """Remove cached roots whose key is not in `keep` and that no caller was handed in the last
    `grace` seconds; returns the keys removed.

    `keep` is the caller's whole truth: the content keys of live images and of every root its
    servers stand on (records, mounts). The lease covers what neither shows yet: a spawn between
    `cached_rootfs` and its mount. Each removal holds the key's lock (the one `cached_rootfs`
    unpacks under), re-checks the lease and renames the dir away atomically before deleting it,
    so a concurrent spawn either sees the whole root or none and unpacks it again.
    """
    base = await asyncio.to_thread(lambda: Path(store_root).resolve() / "rootfs")
    if not await asyncio.to_thread(base.is_dir):
        return []
    names = await asyncio.to_thread(lambda: sorted(p.name for p in base.iterdir()))
    mounts = await asyncio.to_thread(_mount_table)
    removed: list[str] = []
    for name in names:  # trash a crash left mid-delete (ours are removed before we return)
        if name.startswith(f"{UNPACK_PREFIX}gc-") and f"-{os.getpid()}-" not in name:
            await asyncio.to_thread(_rmtree, str(base / name))
    for key in names:
        if f"{base}/{key}/" in mounts:
            continue  # defence in depth: a mounted overlay stands on it, whatever `keep` says
        if _KEY.fullmatch(key) is None or key in keep:
            continue  # temp dirs of unpacks (their own sweep) and anything that is not a cache entry
        async with _lock(key):
            if time.monotonic() - _LEASES.get(key, float("-inf")) < grace:
                continue
            src = base / key
            if not await asyncio.to_thread(_removable, src):
                continue
            trash = base / f"{UNPACK_PREFIX}gc-{key}-{os.getpid()}-{time.monotonic_ns()}"
            await asyncio.to_thread(os.rename, src, trash)
            _LEASES.pop(key, None)
        await asyncio.to_thread(_rmtree, str(trash))
        removed.append(key)
    return removed


def check_image(image_file: Path) -> ImageConfig:
    """Read an image tarball and every layer's member list without writing anything (blocking).

    Refuses (`errors.Invalid`) what `unpack_rootfs` would refuse from names alone: an unreadable
    archive or layer, absolute or `..` member names and hard-link targets, unsupported member
    types. Escapes through symlinks are caught at unpack time, which follows links in the root.
    """
    with _archive.open_archive(Path(image_file)) as tf:
        parsed = read_parsed(tf)
        for name in parsed.layers:
            raw, layer = _open_layer(tf, name)
            with raw, layer:
                try:
                    for info in layer:
                        _clean_name(info.name)
                        if info.islnk():
                            _clean_name(info.linkname, "hard link target")
                        elif not (info.isdir() or info.isfile() or info.issym() or info.ischr()
                                  or info.isblk() or info.isfifo()):
                            raise _bad(f"layer member {info.name!r} has an unsupported type {info.type!r}.")
                except (tarfile.TarError, EOFError, UnicodeError) as exc:
                    raise _bad(f"a layer is corrupt: {exc}") from None
                except OSError as exc:
                    raise _bad(f"a layer cannot be read: {exc}") from None
    return parsed.config
