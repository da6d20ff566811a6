"""The sending side of a migration's files (see the package doc for the whole picture).

    t = await target(db, migration_uuid, dest_host, dest_underlay_ip, conf.transfer_port)
    await send_file(t, "disk", path)        # only the file's data extents travel (SEEK_DATA/SEEK_HOLE)
    await send_tree(t, "upper", upper_dir)  # a tar stream built in a thread, links not followed
    await send(t, name, path)               # either, by what `path` is
    await discard(t)                        # the destination drops the migration's incoming dir

Each call retries on connection errors (a refused connection, a reset mid-body), sending the
whole file or tree again (the destination replaces it atomically); an answer of the endpoint
that is an error raises TransferError (its status code and message) without a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from cumulo import errors
from cumulo.compute.transfer import PURPOSE, SECRET, TOKEN_HEADER, TOKEN_TTL, subject, tarsafe, valid_name
from cumulo.compute.transfer.server import EXTENT, EXTENTS, SIZE_HEADER
from cumulo.db import Database
from cumulo.hosts.secrets import secret, sign

ATTEMPTS = 5
BACKOFF = 0.25  # seconds before the 2nd try, doubled each time (0.5 ... 4 s: ~7.5 s in all)
_READ = 4 << 20
_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


class TransferError(errors.CumuloError):
    """The endpoint refused a transfer, or could not be reached after the retries."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    """Where one migration's files go, and the token that lets them in."""

    base_url: str  # http://<destination underlay ip>:<transfer port>
    migration_uuid: str
    dest_host: str
    token: str
    transport: httpx.AsyncBaseTransport | None = None  # httpx's seam (tests)


async def target(
    db: Database, migration_uuid: str, dest_host: str, address: str, port: int = 8790, *, ttl: float = TOKEN_TTL
) -> Target:
    """A Target for the migration, with a token signed by the cluster secret "transfer"."""
    key = await secret(db, SECRET)
    host = f"[{address}]" if ":" in address else address
    return Target(f"http://{host}:{port}", migration_uuid.lower(), dest_host,
                  sign(key, PURPOSE, subject(migration_uuid.lower(), dest_host), ttl))


def _extents(path: str) -> tuple[int, list[tuple[int, int]]]:
    """The file's size and its data extents (offset, length). Blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        out: list[tuple[int, int]] = []
        at = 0
        while at < size:
            try:
                start = os.lseek(fd, at, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole after `at`
                    break
                if exc.errno == errno.EINVAL:  # no SEEK_DATA here: all of it is data
                    return size, [(0, size)] if size else []
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end - start))
            at = end
        return size, out
    finally:
        os.close(fd)


async def _extent_body(path: str, extents: list[tuple[int, int]]) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        for offset, length in extents:
            yield EXTENT.pack(offset, length)
            await asyncio.to_thread(fh.seek, offset)
            left = length
            while left:
                chunk = await asyncio.to_thread(fh.read, min(left, _READ))
                if not chunk:
                    raise TransferError(f"{path} shrank while it was sent")
                left -= len(chunk)
                yield chunk
    finally:
        await asyncio.to_thread(fh.close)


async def _tar_body(src: Path) -> AsyncIterator[bytes]:
    """The tar stream of `src`, built by `tarsafe.build` in a thread writing into a pipe."""
    r, w = os.pipe()

    def produce() -> None:
        with os.fdopen(w, "wb") as out, contextlib.suppress(BrokenPipeError):
            tarsafe.build(src, out)

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    try:
        while chunk := await asyncio.to_thread(os.read, r, 1 << 20):
            yield chunk
        await task  # a build error (an unreadable file) ends the body with it
    finally:
        os.close(r)
        with contextlib.suppress(Exception):
            await task


async def _request(
    t: Target, method: str, what: str, body: Callable[[], AsyncIterator[bytes]] | None, headers: dict[str, str]
) -> None:
    url = f"{t.base_url}/v1/migrations/{t.migration_uuid}" + (f"/{what}" if what else "")
    async with httpx.AsyncClient(timeout=_TIMEOUT, transport=t.transport) as http:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                resp = await http.request(method, url, headers={TOKEN_HEADER: t.token, **headers},
                                          content=body() if body is not None else None)
            except httpx.TransportError as exc:
                if attempt == ATTEMPTS:
                    raise TransferError(f"transfer to {t.dest_host} ({t.base_url}) failed: {exc!r}") from exc
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
                continue
            if resp.status_code >= 400:
                try:
                    message = str(resp.json()["error"]["message"])
                except (ValueError, KeyError, TypeError):
                    message = resp.text[:512]
                raise TransferError(f"{t.dest_host} refused {method} {what or 'migration'} ({resp.status_code}): "
                                    f"{message}", resp.status_code)
            return


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise errors.Invalid(f"bad transfer name {name!r}")


async def send_file(t: Target, name: str, path: str | Path) -> int:
    """Send a file as incoming/<uuid>/<name>; its holes stay holes. Returns the data bytes sent."""
    _check_name(name)
    size, extents = await asyncio.to_thread(_extents, str(path))
    headers = {"Content-Type": EXTENTS, SIZE_HEADER: str(size),
               "Content-Length": str(sum(n for _, n in extents) + EXTENT.size * len(extents))}
    await _request(t, "PUT", f"files/{name}", lambda: _extent_body(str(path), extents), headers)
    return sum(n for _, n in extents)


async def send_tree(t: Target, name: str, src: str | Path) -> None:
    """Send a directory (not followed: links travel as links) as incoming/<uuid>/<name>/."""
    _check_name(name)
    await _request(t, "PUT", f"trees/{name}", lambda: _tar_body(Path(src)), {"Content-Type": "application/x-tar"})


async def send(t: Target, name: str, path: str | Path) -> None:
    """send_tree for a directory, send_file for anything else."""
    if await asyncio.to_thread(os.path.isdir, path) and not await asyncio.to_thread(os.path.islink, path):
        await send_tree(t, name, path)
    else:
        await send_file(t, name, path)


async def discard(t: Target) -> None:
    """The destination removes everything it received for the migration."""
    await _request(t, "DELETE", "", None, {})
