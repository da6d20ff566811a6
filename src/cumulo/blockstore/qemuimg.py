"""qemu-img for the block store, and the inspection of untrusted images before qemu-img reads them.

A qcow2 may name a backing file or an external data file anywhere on the host (`/etc/shadow`,
`/dev/sda`), and a format left to probing lets a raw image pass itself off as a qcow2. So:
- every call names its formats (`-f`, `-O`); no call ever passes `-b`, `-B` or a `data_file` option;
- a tenant's qcow2 is refused from its header first (pure Python, before qemu-img opens it: opening
  a qcow2 opens its data file), then from `qemu-img info --output=json -f qcow2` (a backing file, a
  data file, another format, a virtual size over the limit), and `qemu-img check` must pass;
- a volume from an image: once the header passed (so nothing but the file itself is ever opened),
  the convert runs while info and check inspect the image (their ~10 ms of process starts are the
  fixed cost of a volume from an image); a refusal kills the convert, and nothing is published
  before both passed (`convert_verified`);
- info and check run under prlimit (30 s of CPU, 1 GiB of address space), as Nova runs them, so a
  crafted header cannot exhaust the host.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
from collections.abc import Coroutine
from typing import Any

from cumulo import host
from cumulo.blockstore.base import IMAGE_FORMATS, BadImage, StoreError, TooLarge
from cumulo.blockstore.sparse import fd_path, whole
from cumulo.errors import HostError

QEMU_IMG = "qemu-img"
_LIMITS = ["--cpu=30", f"--as={1 << 30}"]
QCOW2_MAGIC = b"QFI\xfb"
_INCOMPAT_DATA_FILE = 1 << 2
_INCOMPAT_KNOWN = 0x1F  # dirty, corrupt, data file, compression type, extended L2
HEAD = 104  # the qcow2 v3 header up to compression_type


def qcow2_header_problem(head: bytes) -> str | None:
    """Why a qcow2 header is refused (None when it is acceptable): not a qcow2, an unknown version,
    a backing file, an external data file, or incompatible features qemu-img would reject."""
    if len(head) < 72 or head[:4] != QCOW2_MAGIC:
        return "it is not a qcow2 image (no QFI\\xfb header)"
    version, backing_offset, backing_size = struct.unpack_from(">IQI", head, 4)
    if version not in (2, 3):
        return f"its qcow2 version {version} is not 2 or 3"
    if backing_offset or backing_size:
        return "it names a backing file"
    if version == 3:
        if len(head) < 80:
            return "its qcow2 v3 header is cut short"
        (incompatible,) = struct.unpack_from(">Q", head, 72)
        if incompatible & _INCOMPAT_DATA_FILE:
            return "it names an external data file"
        if incompatible & ~_INCOMPAT_KNOWN:
            return f"it has unknown incompatible features {incompatible:#x}"
    return None


def qcow2_virtual_size(head: bytes) -> int:
    """The virtual size a qcow2 header claims (bytes 24..32)."""
    return int(struct.unpack_from(">Q", head, 24)[0]) if len(head) >= 32 else 0


def info_problem(doc: dict[str, Any], fmt: str) -> str | None:
    """Why `qemu-img info` output refuses an image (None when acceptable)."""
    if doc.get("format") != fmt:
        return f"it reads as {doc.get('format')!r}, not {fmt!r}"
    backing = doc.get("backing-filename") or doc.get("full-backing-filename") or doc.get("backing-filename-format")
    if backing:
        return f"it names a backing file ({backing!r})"
    spec = doc.get("format-specific") or {}
    data = spec.get("data") if isinstance(spec, dict) else None
    if isinstance(data, dict) and data.get("data-file"):
        return f"it names an external data file ({data['data-file']!r})"
    if not isinstance(doc.get("virtual-size"), int) or doc["virtual-size"] <= 0:
        return "it has no virtual size"
    return None


def _limited(argv: list[str]) -> list[str]:
    prlimit = shutil.which("prlimit")
    return [prlimit, *_LIMITS, "--", *argv] if prlimit else argv


def _tied(argv: list[str]) -> list[str]:
    """argv killed when this process dies (`setpriv --pdeathsig KILL`): a worker killed mid-convert
    leaves no qemu-img writing a temporary file after the restart reaped it."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


async def run(args: list[str], *, timeout: float, limited: bool = False, check: bool = True,
              abortable: bool = False) -> host.Result:
    """qemu-img with `args`; StoreError quoting its stderr when it fails (and check is set).
    A cancelled caller waits for qemu-img to end (shielded), so nothing writes a file after the
    caller's cleanup removed it; `abortable`: cancelling kills it instead (host.run kills and
    reaps its command before the cancellation goes on: nothing writes after that either)."""
    argv = [QEMU_IMG, *args]
    job = host.run(_tied(_limited(argv) if limited else argv), timeout=timeout, check=False)
    try:
        res = await (job if abortable else whole(job))
    except HostError as exc:
        raise StoreError(f"qemu-img {args[0]}: {exc.message}") from exc
    if check and res.returncode != 0:
        msg = (res.stderr.decode(errors="replace").strip() or res.text.strip())[-1500:]
        raise StoreError(f"qemu-img {args[0]} failed ({res.returncode}): {msg or 'no output'}")
    return res


async def info(path: str, fmt: str) -> dict[str, Any]:
    """`qemu-img info --output=json -f fmt path` (the format given, backings not followed)."""
    res = await run(["info", "--output=json", "-f", fmt, path], timeout=60.0, limited=True, check=False)
    if res.returncode != 0:
        msg = (res.stderr.decode(errors="replace").strip() or res.text.strip())[-500:]
        raise BadImage(f"not a valid {fmt} image: {msg or 'qemu-img info failed'}")
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        raise BadImage(f"qemu-img info of the {fmt} image gave no JSON") from None
    if not isinstance(doc, dict):
        raise BadImage(f"qemu-img info of the {fmt} image gave no JSON object")
    return doc


def check_format(fmt: str) -> str:
    if fmt not in IMAGE_FORMATS:
        raise BadImage(f"disk format {fmt!r} is not supported; use one of {', '.join(IMAGE_FORMATS)}")
    return fmt


def precheck(fd: int, fmt: str, limit: int, what: str = "the image") -> int:
    """What is checked before any qemu-img opens an untrusted image, open as `fd` (a regular file:
    sparse.open_source; blocking, run it in a thread): a qcow2's header (it names no backing or data
    file, so nothing but this file is ever opened; a known version) and the virtual size it claims,
    a raw file's size, against `limit`. Returns that size; BadImage or TooLarge say why not."""
    check_format(fmt)
    if fmt == "raw":
        size = os.fstat(fd).st_size
    else:
        head = os.pread(fd, HEAD, 0)
        problem = qcow2_header_problem(head)
        if problem:
            raise BadImage(f"{what} is refused: {problem}")
        size = qcow2_virtual_size(head)
    if size > limit:
        raise TooLarge(f"{what} is refused: its virtual size {size} is over {limit} bytes")
    return size


async def verify(fd: int, fmt: str, limit: int, what: str = "the image") -> int:
    """qemu-img's view of an image that passed `precheck`: `info` (the format, no backing or data
    file, the virtual size within `limit`) and, for qcow2, `check` (no corruption), side by side.
    Returns the virtual size; BadImage (or TooLarge) says why it is refused."""
    jobs: list[Coroutine[Any, Any, object]] = [info(fd_path(fd), fmt)]
    if fmt == "qcow2":
        jobs.append(run(["check", "--output=json", "-f", "qcow2", fd_path(fd)], timeout=300.0, limited=True,
                        check=False))
    done = await asyncio.gather(*jobs, return_exceptions=True)
    for outcome in done:  # info's refusal first: it names the cause (a backing file, the format)
        if isinstance(outcome, BaseException):
            raise outcome
    doc = done[0]
    assert isinstance(doc, dict)
    problem = info_problem(doc, fmt)
    if problem:
        raise BadImage(f"{what} is refused: {problem}")
    size = int(doc["virtual-size"])
    if size > limit:
        raise TooLarge(f"{what} is refused: its virtual size {size} is over {limit} bytes")
    if fmt == "qcow2":
        res = done[1]
        assert isinstance(res, host.Result)
        if res.returncode not in (0, 3):  # 3: leaked clusters only (harmless); 1: unreadable, 2: corrupt
            msg = (res.stderr.decode(errors="replace") or res.text).strip()[-500:]
            raise BadImage(f"{what} is refused: qemu-img check failed ({res.returncode}): {msg or 'corrupt'}")
    return size


async def inspect(fd: int, fmt: str, limit: int, what: str = "the image") -> int:
    """Check an untrusted image, open as `fd` (a regular file: sparse.open_source), read as `fmt`;
    return its virtual size. BadImage (or TooLarge) says why it is refused."""
    await asyncio.to_thread(precheck, fd, fmt, limit, what)
    return await verify(fd, fmt, limit, what)


async def convert_verified(fd: int, fmt: str, dst: str, limit: int, what: str = "the image",
                           timeout: float = 3 * 3600.0) -> int:
    """An untrusted image that passed `precheck` (so it opens no other file) converted to raw into
    `dst` (a new file of ours) WHILE `verify` inspects it: the copy no longer waits for qemu-img
    info and check (~10 ms of process starts, the fixed cost of a volume from an image). Returns
    the virtual size once both are done. A refusal (or a cancel) kills the convert, reaped before
    this raises, so the caller's cleanup of `dst` races no writer; nothing of a refused image is
    ever published (the caller links `dst` to its name only after this returns)."""
    copy = asyncio.ensure_future(run(["convert", "-q", "-f", check_format(fmt), "-O", "raw", fd_path(fd), dst],
                                     timeout=timeout, abortable=True))
    try:
        size = await verify(fd, fmt, limit, what)
    except BaseException:
        copy.cancel()
        await asyncio.gather(copy, return_exceptions=True)
        raise
    await copy
    return size


async def convert(src: str, src_fmt: str, dst: str, dst_fmt: str, *, compress: bool = False,
                  timeout: float = 3 * 3600.0) -> None:
    """`qemu-img convert -f src_fmt -O dst_fmt [-c] src dst` (dst: a new file of ours; zeros
    written as holes). Compressed clusters use zstd where qemu-img has it: about 5x faster than
    zlib both ways for the same size (1 GiB volume, 16 MiB written: 0.12 s against 0.7 s to back
    up, 0.06 s against 0.26 s to restore); a qcow2 reader older than QEMU 5.1 cannot read it."""
    args = ["convert", "-q", "-f", check_format(src_fmt), "-O", check_format(dst_fmt)]
    if not compress or dst_fmt != "qcow2":
        await run([*args, src, dst], timeout=timeout)
        return
    global _ZSTD
    if _ZSTD is not False:
        try:
            await run([*args, "-c", "-o", "compression_type=zstd", src, dst], timeout=timeout)
            _ZSTD = True
            return
        except StoreError as exc:
            if _ZSTD or "compression" not in exc.message:
                raise
            _ZSTD = False  # built without zstd: zlib from now on
    await run([*args, "-c", src, dst], timeout=timeout)


_ZSTD: bool | None = None  # whether this qemu-img writes zstd-compressed qcow2 (None: not tried yet)
