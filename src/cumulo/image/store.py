"""Content-addressed image bytes under `<state_dir>/images`.

    images/data/<sha256[:2]>/<sha256>   the bytes, named by their sha256 (read-only once placed)
    images/tmp/upload-*                 uploads in progress (same filesystem, so rename is atomic)

Bytes are hashed (md5, sha256, sha512) while they stream to a temp file, then renamed into place.
Identical content is stored once. The store knows nothing about images: callers decide when a
key is no longer referenced and call `remove`. All file work runs in threads so the event loop
never blocks on disk.

`ContentStore` and `StoreUpload` are the seam the image service uses; `ImageStore` and
`StoreWriter` are its implementation on the local filesystem. Every implementation passes
tests/contract/test_image_store_contract.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cumulo import errors
from cumulo.image.inspector import INSPECT_BYTES

CHUNK = 1 << 20  # 1 MiB: large enough that thread hops are cheap, small enough to bound memory
HEAD_BYTES = INSPECT_BYTES  # the start of the file the format inspector reads (cumulo.image.inspector)
_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Digest:
    size: int
    md5: str
    sha256: str
    sha512: str
    head: bytes  # the first HEAD_BYTES bytes, for the format inspector


@runtime_checkable
class StoreUpload(Protocol):
    """One upload in progress: `write` chunks, then `finish` (the Digest) or `abort` (nothing left)."""

    path: Path  # a local file with the bytes written so far (the container check reads it)

    @property
    def size(self) -> int: ...

    async def write(self, data: bytes) -> None: ...

    async def finish(self) -> Digest: ...

    async def abort(self) -> None: ...


@runtime_checkable
class ContentStore(Protocol):
    """Bytes by content key (the sha256 of the bytes, 64 lowercase hex digits), as the image service
    uses them. Anything that is not a key is refused (ValueError) before any storage is touched."""

    root: Path  # a local directory the image service and the drivers keep derived files under

    async def ensure_dirs(self) -> None: ...

    def path_for(self, key: str) -> Path:
        """A local file with the bytes of `key` (the drivers read images from local files)."""
        ...

    async def open_writer(self, limit: int | None = None) -> StoreUpload:
        """A new upload; writing past `limit` bytes raises PayloadTooLarge."""
        ...

    async def import_file(
        self, source: str | os.PathLike[str], limit: int | None = None
    ) -> tuple[StoreUpload, Digest]:
        """A local file copied into a finished upload, for the caller to commit or abort."""
        ...

    async def commit(self, writer: StoreUpload, digest: Digest) -> Path:
        """Place a finished upload under its key; bytes already stored are kept once."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def remove(self, key: str) -> None:
        """Drop the bytes of `key` (nothing when they are not there)."""
        ...

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (all when None) of `key` from `offset`."""
        ...

    async def keys(self) -> list[str]: ...

    async def sweep_tmp(self) -> int:
        """Drop uploads a crash interrupted (only when none runs); how many."""
        ...

    async def remove_unreferenced(self, referenced: Iterable[str]) -> list[str]:
        """Drop every key not in `referenced`; the keys dropped."""
        ...


class StoreWriter:
    """One upload in progress: `write` chunks, then `finish` (→ Digest) or `abort`."""

    def __init__(self, store: ImageStore, path: Path, fd: int, limit: int | None) -> None:
        self._store = store
        self.path = path
        self._fh = os.fdopen(fd, "wb")
        self._limit = limit
        self._buf = bytearray()
        self._size = 0
        self._head = b""
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._sha512 = hashlib.sha512()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size + len(self._buf)

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if self._limit is not None and self.size + len(data) > self._limit:
            raise errors.PayloadTooLarge(f"The incoming image is too large: it exceeds {self._limit} bytes.")
        self._buf += data
        if len(self._buf) >= CHUNK:
            block, self._buf = bytes(self._buf), bytearray()
            await asyncio.to_thread(self._write_block, block)

    def _write_block(self, block: bytes) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += block[: HEAD_BYTES - len(self._head)]
        self._fh.write(block)
        self._md5.update(block)
        self._sha256.update(block)
        self._sha512.update(block)
        self._size += len(block)

    def _finish_sync(self) -> Digest:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._closed = True
        return Digest(self._size, self._md5.hexdigest(), self._sha256.hexdigest(), self._sha512.hexdigest(), self._head)

    async def finish(self) -> Digest:
        block, self._buf = bytes(self._buf), bytearray()

        def run() -> Digest:
            if block:
                self._write_block(block)
            return self._finish_sync()

        return await asyncio.to_thread(run)

    async def abort(self) -> None:
        def run() -> None:
            if not self._closed:
                self._fh.close()
                self._closed = True
            self.path.unlink(missing_ok=True)

        await asyncio.to_thread(run)


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.data_dir = self.root / "data"
        self.tmp_dir = self.root / "tmp"

    async def ensure_dirs(self) -> None:
        def run() -> None:
            for d in (self.root, self.data_dir, self.tmp_dir):
                d.mkdir(parents=True, exist_ok=True, mode=0o700)

        await asyncio.to_thread(run)

    def path_for(self, key: str) -> Path:
        """Where the bytes of `key` live. Only a 64-hex-digit key is accepted, so no path escapes."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"not a content key: {key!r}")
        path = self.data_dir / key[:2] / key
        # Defence in depth: the regex already rules out separators and dots.
        if not path.resolve().is_relative_to(self.data_dir):
            raise ValueError(f"content key escapes the store: {key!r}")
        return path

    async def open_writer(self, limit: int | None = None) -> StoreWriter:
        def run() -> tuple[int, str]:
            self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return tempfile.mkstemp(prefix="upload-", dir=self.tmp_dir)

        fd, name = await asyncio.to_thread(run)
        return StoreWriter(self, Path(name), fd, limit)

    async def import_file(self, source: str | os.PathLike[str], limit: int | None = None) -> tuple[StoreWriter, Digest]:
        """Copy a local file into a temp upload, hashing it; the caller commits or aborts it."""
        writer = await self.open_writer(limit)

        def run() -> Digest:
            with open(source, "rb") as src:
                while block := src.read(CHUNK):
                    if writer._limit is not None and writer._size + len(block) > writer._limit:
                        raise errors.PayloadTooLarge(
                            f"The incoming image is too large: it exceeds {writer._limit} bytes."
                        )
                    writer._write_block(block)
            return writer._finish_sync()

        try:
            digest = await asyncio.to_thread(run)
        except BaseException:
            await writer.abort()
            raise
        return writer, digest

    async def commit(self, writer: StoreUpload, digest: Digest) -> Path:
        """Move a finished upload to its content address; if those bytes are already stored, keep one copy."""
        target = self.path_for(digest.sha256)

        def run() -> Path:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if target.exists() and target.stat().st_size == digest.size:
                writer.path.unlink(missing_ok=True)
            else:
                os.chmod(writer.path, 0o600)  # private to the cloud's user, as the whole state dir
                os.replace(writer.path, target)
            return target

        return await asyncio.to_thread(run)

    async def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return await asyncio.to_thread(path.is_file)

    async def remove(self, key: str) -> None:
        path = self.path_for(key)

        def run() -> None:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # only succeeds when the fan-out directory is empty
            except OSError:
                pass

        await asyncio.to_thread(run)

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (all when None) of `key` from `offset`, one chunk per thread hop."""
        path = self.path_for(key)
        fh: Any = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(fh.seek, offset)
            remaining = length
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                block: bytes = await asyncio.to_thread(fh.read, want)
                if not block:
                    break
                if remaining is not None:
                    remaining -= len(block)
                yield block
        finally:
            await asyncio.to_thread(fh.close)

    async def keys(self) -> list[str]:
        """Every content key present on disk (for garbage collection)."""

        def run() -> list[str]:
            out: list[str] = []
            if not self.data_dir.is_dir():
                return out
            for sub in self.data_dir.iterdir():
                if not sub.is_dir():
                    continue
                out.extend(p.name for p in sub.iterdir() if _KEY.fullmatch(p.name) and p.name[:2] == sub.name)
            return out

        return await asyncio.to_thread(run)

    async def sweep_tmp(self) -> int:
        """Remove leftovers of uploads interrupted by a crash. Call only when no upload runs."""

        def run() -> int:
            n = 0
            if self.tmp_dir.is_dir():
                for p in self.tmp_dir.iterdir():
                    if p.is_file() and p.name.startswith("upload-"):
                        p.unlink(missing_ok=True)
                        n += 1
            return n

        return await asyncio.to_thread(run)

    async def remove_unreferenced(self, referenced: Iterable[str]) -> list[str]:
        """Delete stored bytes whose key is not in `referenced`; returns the keys removed."""
        keep = set(referenced)
        removed = [k for k in await self.keys() if k not in keep]
        for k in removed:
            await self.remove(k)
        return removed
