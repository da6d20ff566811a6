"""A compute host's image backend when the image service runs elsewhere (issue 14).

`cumulo up` hands its compute agent the image service itself (`ImageService`: the bytes are in
its local store). A `cumulo compute` process on another host (or in another namespace with its own
state dir) gets `RemoteImages` instead (PROC wires it):

    RemoteImages(db, conf, host_name)          # conf.api_url: an API process this host reaches

It is the same `compute.specs.ImageBackend` (and what backup rotation and the image cache GC use
of it), split by what lives where:

- Records (`get_internal`, `describe_snapshot`, `mark_failed`, `live_content_keys`, and
  `get`/`list_images`/`delete` for shared-image visibility and backup rotation) go to the
  database, which every host of a cloud shares already (its instances, placement and the cluster
  secrets are there): the rules stay the image service's own code (`InternalImages`), with its
  compare-and-swaps on the image status, at the cost of no extra HTTP hop or second auth scheme.
  One limit: a backup rotated out from a remote host is deleted in the DB, and its bytes in the
  API host's store (if no other image uses them) go at that store's next start-up sweep.
- Bytes go over HTTP, since they live in the API host's store: `local_path` downloads
  `GET {api_url}/image/v2/images/{id}/file` into `<state_dir>/image-cache/<sha256>` (the name
  is the store's content key, as the drivers' caches expect), streamed to a temp file off the
  event loop, refused past the image's recorded size, its md5 (`checksum`), sha512
  (`os_hash_value`) and sha256 (the key) checked, fsynced, then renamed into place. Concurrent
  requests for one image share one download; a failed or cancelled one leaves no file. The
  request carries a host token (`image.host_tokens`), short-lived and bound to (host, image).
  `upload_from_path` PUTs a snapshot's file to `/file` the same way, so the image API inspects
  and stores it as any upload.

The copies are collected by the agent's image cache job (`compute/agent/imagecache.py` calls
`collect_cache(keep)`): a file whose key no live image has, not handed out for
`image_cache_min_age` seconds, is removed (the drivers keep their own unpacked roots and bases).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets as _secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import httpx

from cumulo import errors
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.image.host_tokens import host_headers
from cumulo.image.internal import InternalImages
from cumulo.image.records import not_found

LOG = logging.getLogger(__name__)

CACHE_DIR = "image-cache"
_CHUNK = 4 << 20  # bytes handed to the writer thread at once
_ATTEMPTS = 3  # tries of one download or upload on a connection error
_TMP_SUFFIX = ".part"
# A build asks for the image (`get_internal`) then its bytes (`local_path`) right after: the row the
# first read is reused by the second within this many seconds (one read of it per build, not two).
_ROW_REUSE_SECONDS = 2.0
_ROWS_KEPT = 64


class _Download:
    """One file being written and hashed; every method blocks (run in a thread)."""

    def __init__(self, tmp: Path, hash_algo: str) -> None:
        self.tmp = tmp
        self.fh: IO[bytes] = open(tmp, "xb")  # noqa: SIM115  # closed in finish/abort
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.other = hashlib.new(hash_algo) if hash_algo and hash_algo != "sha256" else None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.md5.update(data)
        self.sha256.update(data)
        if self.other is not None:
            self.other.update(data)
        self.size += len(data)

    def finish(self, dest: Path) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.chmod(self.tmp, 0o444)
        os.replace(self.tmp, dest)
        dfd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class RemoteImages(InternalImages):
    """The image backend of a compute host without the image service (see the module doc)."""

    def __init__(
        self, db: Database, conf: Settings, host: str, *, api_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`api_url` overrides conf.api_url; `transport` (httpx's seam) serves tests in process."""
        super().__init__(db, conf)
        self._transport = transport
        self.host = host
        self.api_url = (api_url if api_url is not None else conf.api_url).rstrip("/")
        if not self.api_url:
            raise errors.Invalid("a compute host without the image service needs the api_url setting")
        self.cache_dir = Path(conf.state_dir) / CACHE_DIR
        self._inflight: dict[str, asyncio.Task[Path]] = {}
        self._leases: dict[str, float] = {}
        self._client: httpx.AsyncClient | None = None
        self._swept = False
        self._recent: dict[str, tuple[float, dict[str, Any]]] = {}  # image id -> (when read, row)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), transport=self._transport)
        return self._client

    async def close(self) -> None:
        """Stop: downloads in flight are cancelled (their temp files removed), the client closed."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _url(self, image_id: str) -> str:
        return f"{self.api_url}/image/v2/images/{image_id}/file"

    async def get_internal(self, image_id: str) -> dict[str, Any] | None:
        """As the image service's; the row is kept a moment for the `local_path` that follows."""
        async with self.db.read() as conn:
            row = await self._row(conn, image_id)
            if row is None:
                return None
            if len(self._recent) >= _ROWS_KEPT:
                self._recent.clear()
            self._recent[image_id] = (time.monotonic(), row)
            return await self._render(conn, row)

    def remember_row(self, row: dict[str, Any]) -> None:
        """An image's live row (every column) the caller just read in a statement of its own (the
        agent's build takes it with the instance): the `local_path` that follows uses it."""
        if len(self._recent) >= _ROWS_KEPT:
            self._recent.clear()
        self._recent[str(row["id"])] = (time.monotonic(), dict(row))

    # ---- bytes in ----------------------------------------------------------------------------

    async def local_path(self, image_id: str) -> str:
        """The local copy of the image's bytes, downloaded on first use (read-only)."""
        recent = self._recent.pop(image_id, None)
        if recent is not None and time.monotonic() - recent[0] <= _ROW_REUSE_SECONDS:
            row: dict[str, Any] | None = recent[1]
        else:
            async with self.db.read() as conn:
                row = await self._row(conn, image_id)
        if row is None:
            raise not_found(image_id)
        key = row["store_key"]
        if key is None or row["status"] not in ("active", "deactivated"):
            raise errors.InvalidState(f"Image {image_id} has no data (status {row['status']})")
        dest = self.cache_dir / str(key)
        self._leases[str(key)] = time.monotonic()
        if await asyncio.to_thread(dest.is_file):
            return str(dest)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._download(image_id, row, dest))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(str(key), None))
        return str(await asyncio.shield(task))

    async def local_file(self, image_id: str) -> tuple[str, str | None]:
        """The local copy (downloaded) and the image's disk_format (the volume worker's create-from-image)."""
        path = await self.local_path(image_id)
        info = await self.get_internal(image_id)
        if info is None:
            raise not_found(image_id)
        return path, info.get("disk_format")

    async def _release(self, key: str | None) -> None:
        """Bytes live in the API host's store, not here: a delete from this host (backup rotation)
        leaves them to that store's start-up sweep of unreferenced bytes."""

    async def _download(self, image_id: str, row: dict[str, Any], dest: Path) -> Path:
        if not self._swept:
            await asyncio.to_thread(self.cache_dir.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(_sweep_partials, self.cache_dir)
            self._swept = True
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                await self._fetch(image_id, row, dest)
                return dest
            except httpx.TransportError as exc:
                if attempt == _ATTEMPTS:
                    raise errors.InvalidState(
                        f"Image {image_id}: cannot download its data from {self.api_url}: {exc!r}") from exc
                LOG.info("image %s: download attempt %d failed (%r); retrying", image_id, attempt, exc)
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    async def _fetch(self, image_id: str, row: dict[str, Any], dest: Path) -> None:
        size = int(row["size"] or 0)
        tmp = dest.with_name(f".{dest.name}.{_secrets.token_hex(4)}{_TMP_SUFFIX}")
        dl = await asyncio.to_thread(_Download, tmp, str(row["os_hash_algo"] or ""))
        try:
            headers = await host_headers(self.db, self.host, image_id)
            async with self._http().stream("GET", self._url(image_id), headers=headers) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread())[:512].decode(errors="replace")
                    raise _http_error(resp.status_code, f"Image {image_id}: download refused by the image API "
                                      f"({resp.status_code}): {body}")
                buf = bytearray()
                async for chunk in resp.aiter_bytes():
                    if dl.size + len(buf) + len(chunk) > size:
                        raise errors.InvalidState(f"Image {image_id}: the download is larger than its "
                                                  f"recorded size {size}")
                    buf += chunk
                    if len(buf) >= _CHUNK:
                        await asyncio.to_thread(dl.write, bytes(buf))
                        buf.clear()
                if buf:
                    await asyncio.to_thread(dl.write, bytes(buf))
            _check(image_id, row, dl)
            await asyncio.to_thread(dl.finish, dest)
        except BaseException:
            await asyncio.to_thread(dl.abort)
            raise
        LOG.info("image %s: downloaded %d bytes into %s", image_id, size, dest)

    # ---- bytes out ---------------------------------------------------------------------------

    async def upload_from_path(self, image_id: str, path: str) -> None:
        """A snapshot's file to the image API (PUT /file with a host token): queued → active there."""
        size = (await asyncio.to_thread(os.stat, path)).st_size
        for attempt in range(1, _ATTEMPTS + 1):
            headers = {**await host_headers(self.db, self.host, image_id),
                       "Content-Type": "application/octet-stream", "Content-Length": str(size)}
            try:
                resp = await self._http().put(self._url(image_id), headers=headers, content=_read_chunks(path))
            except httpx.TransportError as exc:
                if attempt == _ATTEMPTS:
                    raise errors.InvalidState(f"Image {image_id}: cannot upload to {self.api_url}: {exc!r}") from exc
                await asyncio.sleep(0.5 * attempt)
                continue
            if resp.status_code >= 400:
                raise _http_error(resp.status_code, f"Image {image_id}: upload refused by the image API "
                                  f"({resp.status_code}): {resp.text[:512]}")
            return

    # ---- the cache's collection --------------------------------------------------------------

    async def collect_cache(self, keep: set[str]) -> list[str]:
        """Remove copies no live image has (`keep`: their content keys), unless handed out within
        image_cache_min_age seconds or being downloaded; interrupted downloads' temp files too."""
        now = time.monotonic()
        busy = {k for k, t in self._leases.items() if now - t < self.conf.image_cache_min_age} | set(self._inflight)
        return await asyncio.to_thread(_collect, self.cache_dir, keep | busy, not self._inflight)


def _check(image_id: str, row: dict[str, Any], dl: _Download) -> None:
    size = int(row["size"] or 0)
    problems = []
    if dl.size != size:
        problems.append(f"{dl.size} bytes instead of {size}")
    if row["checksum"] and dl.md5.hexdigest() != row["checksum"]:
        problems.append("its md5 differs from the image's checksum")
    if dl.other is not None and row["os_hash_value"] and dl.other.hexdigest() != row["os_hash_value"]:
        problems.append(f"its {row['os_hash_algo']} differs from the image's os_hash_value")
    if dl.sha256.hexdigest() != row["store_key"]:
        problems.append("its sha256 differs from the image's content key")
    if problems:
        raise errors.InvalidState(f"Image {image_id}: the downloaded data is corrupt: {'; '.join(problems)}")


def _http_error(status: int, message: str) -> errors.CumuloError:
    if status == 404:
        return errors.NotFound(message)
    return errors.InvalidState(message)


async def _read_chunks(path: str) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(fh.read, _CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(fh.close)


def _sweep_partials(cache_dir: Path) -> None:
    for p in cache_dir.glob(f".*{_TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _collect(cache_dir: Path, keep: set[str], sweep: bool) -> list[str]:
    removed: list[str] = []
    try:
        entries = list(os.scandir(cache_dir))
    except FileNotFoundError:
        return removed
    for e in entries:
        if e.name.endswith(_TMP_SUFFIX):
            if sweep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)
            continue
        if e.name in keep or not e.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(e.path)
            removed.append(e.name)
    return removed
