"""qemu-img wrappers: verify an untrusted image, cache it as a base, make overlays and blank disks.

User images are untrusted. A qcow2 may name a backing file or an external data file anywhere on
the host (`/etc/shadow`), and a format left to probing lets a raw image pass itself off as qcow2.
So every qemu-img call names its format (-f / -F), a qcow2 that names any backing or data file is
refused, a qcow2 must pass `qemu-img check`, and qemu-img runs under prlimit (CPU seconds and
address space), as Nova does, so a crafted header cannot exhaust the host.

A verified image is hard-linked (copied across filesystems) to `<state>/qemu-base/<key>.<fmt>`,
keyed by the store file's name (its sha256; other files by path, inode, size and mtime): later
spawns of the same image skip the checks, and the base outlives the image's deletion from the
store while overlays still need it. `collect_bases` removes bases that no live image and no
server's disk uses (the image cache collection of the compute agent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import time
import weakref
from pathlib import Path
from typing import Any

from cumulo import host
from cumulo.compute.drivers.base import ImageSpec
from cumulo.errors import DriverError, HostError

QEMU_IMG = "qemu-img"
GIB = 1 << 30
# Glance disk formats we boot, and the qemu format each is read as.
FORMATS = {"qcow2": "qcow2", "raw": "raw", "ami": "raw"}
_LIMITS = ["--cpu=30", f"--as={1 << 30}"]  # Nova's QEMU_IMG_LIMITS: 30 s CPU, 1 GiB address space


def _limited(argv: list[str]) -> list[str]:
    prlimit = shutil.which("prlimit")
    return [prlimit, *_LIMITS, "--", *argv] if prlimit else argv


async def _qemu_img(*args: str, timeout: float = 120.0, check: bool = True) -> host.Result:
    try:
        res = await host.run(_limited([QEMU_IMG, *args]), timeout=timeout, check=False)
    except HostError as exc:
        raise DriverError(f"qemu-img {args[0]}: {exc}") from exc
    if check and res.returncode != 0:
        msg = (res.stderr.decode(errors="replace").strip() or res.text.strip())[-2000:]
        raise DriverError(f"qemu-img {args[0]} failed ({res.returncode}): {msg or 'no output'}")
    return res


async def info(path: Path, fmt: str) -> dict[str, Any]:
    """`qemu-img info --output=json -f fmt` (never probing the format, not following backings)."""
    res = await _qemu_img("info", "--output=json", "-f", fmt, str(path), timeout=60.0)
    try:
        doc = json.loads(res.stdout)
    except ValueError as exc:
        raise DriverError(f"qemu-img info of {path.name} gave no JSON: {res.text[:200]}") from exc
    if not isinstance(doc, dict):
        raise DriverError(f"qemu-img info of {path.name} gave no JSON object")
    return doc


def _data_file(doc: dict[str, Any]) -> str | None:
    spec = doc.get("format-specific") or {}
    data = spec.get("data") if isinstance(spec, dict) else None
    return str(data["data-file"]) if isinstance(data, dict) and data.get("data-file") else None


async def verify(path: Path, disk_format: str, image_id: str = "") -> tuple[str, int]:
    """Check an untrusted image file; return (qemu format, virtual size in bytes)."""
    what = f"image {image_id}" if image_id else path.name
    fmt = FORMATS.get(disk_format)
    if fmt is None:
        raise DriverError(f"{what} has disk_format {disk_format!r}; the QEMU driver boots {', '.join(FORMATS)}")
    try:
        doc = await info(path, fmt)
    except DriverError as exc:
        raise DriverError(f"{what} is not a valid {disk_format} image: {exc}") from exc
    if doc.get("format") != fmt:
        raise DriverError(f"{what} is {doc.get('format')!r}, not {fmt!r}")
    if doc.get("backing-filename") or doc.get("full-backing-filename") or doc.get("backing-filename-format"):
        raise DriverError(f"{what} names a backing file ({doc.get('backing-filename')!r}); "
                          "images with a backing file are refused")
    if _data_file(doc):
        raise DriverError(f"{what} names an external data file ({_data_file(doc)!r}); refused")
    size = int(doc.get("virtual-size") or 0)
    if size <= 0:
        raise DriverError(f"{what} has no virtual size")
    if fmt == "qcow2":
        res = await _qemu_img("check", "--output=json", "-f", "qcow2", str(path), timeout=300.0, check=False)
        # 0: clean, 3: only leaked clusters (harmless); 1: could not check, 2: corrupt.
        if res.returncode not in (0, 3):
            msg = (res.stderr.decode(errors="replace") or res.text).strip()
            raise DriverError(f"{what} failed qemu-img check ({res.returncode}): {msg[-1500:] or 'corrupt image'}")
    return fmt, size


def link_or_copy(src: Path, dst: Path) -> None:
    """dst as a hard link of src (a copy across filesystems); blocking."""
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def _cache_key(src: Path) -> str:
    """The store names files by their sha256 (immutable): that name is the key. Any other file
    (tests, a hand-made ImageSpec) is keyed by where it is and which inode/version it is."""
    name = src.name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    try:
        st = src.stat()
        ident = f"{src.absolute()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        ident = str(src.absolute())
    return "f-" + hashlib.sha256(ident.encode()).hexdigest()[:32]


def _meta_path(base: Path) -> Path:
    return base.with_name(base.name + ".json")


async def cached_base(base_dir: Path, image: ImageSpec) -> tuple[Path, str, int]:
    """The verified base of an image: (path, qemu format, virtual size).

    Under the base's lock, which `collect_bases` takes too, and leased: the spawn holds the base
    between here and creating its overlay, which no disk shows yet."""
    name = f"{_cache_key(Path(image.path))}.{FORMATS.get(image.disk_format)}"
    async with _lock(name):
        _LEASES[name] = time.monotonic()
        return await _cached_base(base_dir, image)


async def _cached_base(base_dir: Path, image: ImageSpec) -> tuple[Path, str, int]:
    fmt = FORMATS.get(image.disk_format)
    src = Path(image.path)
    if fmt is None:
        await verify(src, image.disk_format, image.id)  # raises with the reason
        raise DriverError(f"image {image.id} cannot be used as a base")
    base = base_dir / f"{_cache_key(src)}.{fmt}"
    meta = _meta_path(base)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        doc = json.loads(meta.read_text())
        if base.is_file():
            return base, str(doc["format"]), int(doc["virtual_size"])
    if not src.is_file():
        raise DriverError(f"the file of image {image.id} is missing on this host")
    fmt, size = await verify(src, image.disk_format, image.id)
    await asyncio.to_thread(base_dir.mkdir, parents=True, exist_ok=True)
    if not base.is_file():
        tmp = base.with_name(f".{base.name}.{os.getpid()}.tmp")
        await asyncio.to_thread(link_or_copy, src, tmp)
        await asyncio.to_thread(os.replace, tmp, base)
    mtmp = meta.with_name(f".{meta.name}.tmp")
    await asyncio.to_thread(mtmp.write_text, json.dumps({"format": fmt, "virtual_size": size, "image_id": image.id}))
    await asyncio.to_thread(os.replace, mtmp, meta)
    return base, fmt, size


def overlay_size(base_size: int, root_gb: int) -> int:
    """The flavor's root disk when it has one, never smaller than the base."""
    return max(base_size, root_gb * GIB) if root_gb > 0 else base_size


async def create_overlay(path: Path, base: tuple[Path, str, int], root_gb: int) -> int:
    """A qcow2 overlay on base (format given with -F); returns its virtual size."""
    base_path, fmt, base_size = base
    size = overlay_size(base_size, root_gb)
    await _qemu_img("create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(base_path), str(path), str(size))
    return size


async def create_blank(path: Path, size_gb: int) -> None:
    await _qemu_img("create", "-q", "-f", "qcow2", str(path), f"{int(size_gb)}G")


async def create_swap(path: Path, size_mb: int) -> None:
    """A raw swap disk of size_mb MiB (sparse), signed by mkswap as Nova's libvirt driver makes one."""
    def sparse() -> None:
        with open(path, "xb") as fh:
            fh.truncate(int(size_mb) << 20)

    await asyncio.to_thread(sparse)
    try:
        await host.run(["mkswap", "-q", str(path)], timeout=60.0)
    except HostError as exc:
        raise DriverError(f"mkswap of the swap disk failed: {exc}") from exc


async def resize(path: Path, fmt: str, size: int) -> None:
    """Grow a disk to `size` bytes (qemu-img refuses to shrink without --shrink)."""
    await _qemu_img("resize", "-q", "-f", fmt, str(path), str(size))


async def convert(src: Path, src_fmt: str, dst: Path, dst_fmt: str = "qcow2", *, compress: bool = False) -> None:
    """A standalone copy of src (with its backing chain flattened) as dst_fmt."""
    args = ["convert", "-q", "-f", src_fmt, "-O", dst_fmt]
    if compress and dst_fmt == "qcow2":
        args.append("-c")
    await _qemu_img(*args, str(src), str(dst), timeout=3600.0)


async def virtual_size(path: Path, fmt: str) -> int:
    return int((await info(path, fmt)).get("virtual-size") or 0)


# -- collecting unused bases ----------------------------------------------------------------------

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()
_LEASES: dict[str, float] = {}  # base name -> when cached_base last handed it out (monotonic)
_QCOW2_MAGIC = b"QFI\xfb"


def _lock(name: str) -> asyncio.Lock:
    return _LOCKS.setdefault(asyncio.get_running_loop(), {}).setdefault(name, asyncio.Lock())


def _backing_name(path: Path) -> str | None:
    """The backing file a qcow2 names in its header (our own files: servers' disks), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
            if len(head) < 20 or head[:4] != _QCOW2_MAGIC:
                return None
            offset = int.from_bytes(head[8:16], "big")
            size = int.from_bytes(head[16:20], "big")
            if not offset or not 0 < size <= 4096:
                return None
            fh.seek(offset)
            return fh.read(size).decode(errors="replace")
    except OSError:
        return None


def bases_in_use(instances_dir: Path) -> set[str]:
    """Names of the files every server disk under `<state>/qemu/<uuid>/` backs onto (blocking)."""
    used: set[str] = set()
    if not instances_dir.is_dir():
        return used
    for idir in instances_dir.iterdir():
        if not idir.is_dir() or idir.is_symlink():
            continue
        for f in idir.iterdir():
            if f.is_file() and not f.is_symlink():
                backing = _backing_name(f)
                if backing:
                    used.add(Path(backing).name)
    return used


def _remove_base(base: Path) -> None:
    _meta_path(base).unlink(missing_ok=True)
    base.unlink(missing_ok=True)


async def collect_bases(base_dir: Path, instances_dir: Path, keep: set[str], *, grace: float = 600.0) -> list[str]:
    """Remove verified bases (and their records) that no live image (`keep`: content keys) and no
    server disk under `instances_dir` uses, and that no spawn was handed in the last `grace`
    seconds; under each base's lock, as cached_base. Returns the base names removed."""
    if not await asyncio.to_thread(base_dir.is_dir):
        return []
    names = await asyncio.to_thread(lambda: sorted(p.name for p in base_dir.iterdir()))
    used = await asyncio.to_thread(bases_in_use, instances_dir)
    removed: list[str] = []
    for name in names:
        key, dot, fmt = name.partition(".")
        if name.startswith(".") or not dot or fmt not in FORMATS.values() or key in keep or name in used:
            continue
        async with _lock(name):
            if time.monotonic() - _LEASES.get(name, float("-inf")) < grace:
                continue
            await asyncio.to_thread(_remove_base, base_dir / name)
            _LEASES.pop(name, None)
        removed.append(name)
    return removed
