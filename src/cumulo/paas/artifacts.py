"""Application artifacts: an ArtifactDto's inline `path` ("data:application/gzip;base64,...", within
the 1 MiB JSON body limit) decoded, checked to be a gzip tarball whose members stay inside the
product's directory, and kept content-addressed at `<state_dir>/paas/artifacts/<sha256>` (0600,
written atomically) for the engine to send to the nodes. Everything here runs in a thread: nothing
a tenant sends is decoded, unpacked or written on the event loop, and nothing is ever extracted on
the host (the tarball is only listed).

`collect(conf, db)` deletes the files no paas_applications row references any more (the engine
calls it after a destroy or an undeploy, and once at start). A file younger than GRACE seconds is
left alone: its upload may still be on its way to the row that will reference it (the API stores
the file, then the engine writes the row); a sweep renames a file aside before its last look at the
mtime, so an upload that touched it meanwhile keeps it, and one that comes later writes it anew."""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hashlib
import io
import os
import tarfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.paas.models import paas_applications

PREFIXES = ("data:application/gzip;base64,", "data:application/x-gzip;base64,",
            "data:application/x-compressed-tar;base64,")
MAX_UNPACKED = 64 << 20  # bytes the tarball's members may hold in all
MAX_MEMBERS = 10_000
GRACE = 600.0  # seconds an unreferenced artifact file is kept after its last upload


def artifact_dir(conf: Settings) -> Path:
    return conf.state_dir / "paas" / "artifacts"


def artifact_path(conf: Settings, sha256: str) -> Path:
    """Where the artifact with this digest is kept (the engine reads it from there)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise errors.Invalid("not a sha256 digest")
    return artifact_dir(conf) / sha256


class _Bounded:
    """The decompressed tarball as a file, never read (decompressed) past `limit` bytes: tarfile
    reads some members whole (pax and GNU long-name headers, whatever size they declare), and a
    gzip bomb of 1 MiB declares a gigabyte. A seek past the bound is refused as well (gzip would
    decompress up to it)."""

    def __init__(self, raw: bytes, limit: int) -> None:
        self._gz = gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb")
        self._limit = limit

    def _over(self) -> errors.Invalid:
        return errors.Invalid(f"the artifact unpacks to more than {self._limit >> 20} MiB")

    def read(self, size: int | None = -1) -> bytes:
        left = self._limit - self._gz.tell()
        want = left + 1 if size is None or size < 0 else min(size, left + 1)
        data = self._gz.read(want)
        if self._gz.tell() > self._limit:
            raise self._over()
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR):
            raise ValueError("the artifact's stream seeks from its start or from here only")
        target = offset + (self._gz.tell() if whence == io.SEEK_CUR else 0)
        if target > self._limit:
            raise self._over()
        return self._gz.seek(target)

    def tell(self) -> int:
        return self._gz.tell()


# What the decompressed tarball may hold besides its members' data: a header and padding a member,
# and the archive's end.
_TAR_OVERHEAD = MAX_MEMBERS * 2048 + (1 << 20)


def _check_tarball(raw: bytes) -> None:
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=_Bounded(raw, MAX_UNPACKED + _TAR_OVERHEAD), mode="r:") as tar:  # type: ignore[call-overload]  # a duck-typed file
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise errors.Invalid(f"the artifact holds more than {MAX_MEMBERS} entries")
                name = member.name
                parts = name.replace("\\", "/").split("/")
                if name.startswith("/") or ".." in parts or "\x00" in name:
                    raise errors.Invalid(f"the artifact's entry {name[:120]!r} points outside the product's directory")
                if not (member.isfile() or member.isdir() or member.issym()):
                    raise errors.Invalid(f"the artifact's entry {name[:120]!r} is not a file, a directory or a symlink")
                if member.issym():
                    target = member.linkname
                    if target.startswith("/") or ".." in target.split("/"):
                        raise errors.Invalid(f"the artifact's symlink {name[:120]!r} points outside the product's directory")
                total += max(member.size, 0)
                if total > MAX_UNPACKED:
                    raise errors.Invalid(f"the artifact unpacks to more than {MAX_UNPACKED >> 20} MiB")
    except errors.Invalid:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise errors.Invalid(f"the artifact is not a gzip tarball ({type(exc).__name__})") from None
    if count == 0:
        raise errors.Invalid("the artifact is an empty tarball")


def _store(conf: Settings, text: str) -> dict[str, Any]:
    encoded = text.split(",", 1)[1]
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.Invalid("the artifact's data URL is not valid base64") from None
    if raw[:2] != b"\x1f\x8b":
        raise errors.Invalid("the artifact is not a gzip tarball (no gzip header)")
    _check_tarball(raw)
    digest = hashlib.sha256(raw).hexdigest()
    folder = artifact_dir(conf)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = folder / digest
    try:
        os.utime(final)  # a fresh mtime: the sweep (collect) leaves the file to the row about to be written
    except FileNotFoundError:
        tmp = folder / f".{digest}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return {"sha256": digest, "size": len(raw), "source": "inline"}


async def store_inline(conf: Settings, path: str) -> dict[str, Any]:
    """Decode, check and keep an inline artifact; {sha256, size, source: "inline"}. Invalid names
    what is wrong (not a data URL, not base64, not a gzip tarball, an entry outside the directory)."""
    if not isinstance(path, str) or not path.startswith(PREFIXES):
        raise errors.Invalid("an artifact's path must be an inline data URL: data:application/gzip;base64,<data>")
    return await asyncio.to_thread(_store, conf, path)


def _sweep(folder: Path, keep: set[str], grace: float) -> list[str]:
    """Delete the digests in `folder` not in `keep` whose file is older than `grace` s."""
    removed = []
    try:
        names = [n for n in os.listdir(folder) if len(n) == 64 and n not in keep]
    except FileNotFoundError:
        return []
    for name in names:
        if any(c not in "0123456789abcdef" for c in name):
            continue
        path = folder / name
        aside = folder / f".{name}.{uuid.uuid4().hex}.gc"
        try:
            if time.time() - path.stat().st_mtime < grace:
                continue
            os.rename(path, aside)  # from here an upload finds no file and writes a new one
        except FileNotFoundError:
            continue
        if time.time() - aside.stat().st_mtime < grace:  # touched by an upload just before the rename
            os.replace(aside, path)
            continue
        aside.unlink(missing_ok=True)
        removed.append(name)
    return removed


async def discard(conf: Settings, db: Database, sha256: str) -> bool:
    """Delete the file of an upload the engine refused (a busy instance, a name already deployed),
    unless an application row references its digest: a refused request leaves nothing behind, and
    repeated refused uploads cannot fill the disk until the next sweep. Whether it was deleted. (An
    identical upload racing this one, between its store and its row, would lose the file and fail
    its deploy step, naming it: a retry stores it again.)"""
    path = artifact_path(conf, sha256)
    async with db.read() as conn:
        refs = (await conn.execute(sa.select(paas_applications.c.artifact))).scalars().all()
    if any(isinstance(a, dict) and a.get("sha256") == sha256 for a in refs):
        return False
    try:
        await asyncio.to_thread(path.unlink)
    except FileNotFoundError:
        return False
    return True


async def collect(conf: Settings, db: Database, *, grace: float = GRACE) -> list[str]:
    """Delete the artifact files no application row (of any project: files are shared by content)
    references and that no upload touched in the last `grace` seconds; the digests deleted."""
    async with db.read() as conn:
        refs = (await conn.execute(sa.select(paas_applications.c.artifact))).scalars().all()
    keep = {str(a.get("sha256")) for a in refs if isinstance(a, dict) and a.get("sha256")}
    return await asyncio.to_thread(_sweep, artifact_dir(conf), keep, grace)
