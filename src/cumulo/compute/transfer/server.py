"""The destination agent's transfer endpoint (see the package doc for the routes and rules).

    server = TransferServer(db, conf, host_name)        # listens on conf.underlay_ip:conf.transfer_port
    TransferServer(db, conf, host_name, incoming=lambda uuid: migrate_files.incoming_dir(conf.state_dir,
                   host_name, uuid))                    # where the cold migration's agent reads them
    await server.start(); ...; await server.stop()
    TransferServer(db, conf, host, address="127.0.0.1", port=0)   # tests: any free loopback port

Bodies: a file's PUT is `application/octet-stream` (the bytes, all-zero blocks left as holes) or
`application/x-cumulo-extents` (what `client.send_file` sends: the file's size in
X-Cumulo-File-Size and its data extents, each a 16-byte header of big-endian offset and length then
the bytes, in increasing order; what is between extents stays a hole). A tree's PUT is
`application/x-tar`, spooled to a temp file (bounded), then checked and extracted by `tarsafe`.
Every write and the extraction run in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets as _secrets
import shutil
import socket
import struct
import tarfile
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors
from cumulo.compute.drivers.files import private_dir
from cumulo.compute.migration_records import MIGRATING
from cumulo.compute.models import migrations
from cumulo.compute.transfer import (
    PURPOSE,
    SECRET,
    TOKEN_HEADER,
    incoming_dir,
    subject,
    tarsafe,
    valid_name,
    valid_uuid,
)
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.hosts.secrets import secret, verify
from cumulo.web.http import empty, family_app, json_response

LOG = logging.getLogger(__name__)

EXTENTS = "application/x-cumulo-extents"
SIZE_HEADER = "X-Cumulo-File-Size"
EXTENT = struct.Struct(">QQ")
_BATCH = 4 << 20  # bytes handed to the writer thread at once
_BLOCK = 64 << 10  # all-zero blocks of this size are left as holes
_MAX_EXTENTS = 1 << 20


def _fault(status: int, message: str, request: Request) -> Response:
    return json_response({"error": {"code": status, "message": message}}, status=status)


class _Sink:
    """A temp file written at offsets, zero blocks skipped (holes). Every method blocks."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        # 0600 whatever the process's umask: a tenant's disk is no other local user's to read
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self.fh: IO[bytes] = open(fd, "wb")  # noqa: SIM115  # closed in finish/abort

    def write(self, pieces: list[tuple[int, bytes]]) -> None:
        fd = self.fh.fileno()
        for offset, data in pieces:
            view = memoryview(data)
            for at in range(0, len(data), _BLOCK):
                end = min(at + _BLOCK, len(data))
                if end - at == _BLOCK and data.count(0, at, end) == _BLOCK:
                    continue  # leave a hole
                os.pwrite(fd, view[at:end], offset + at)

    def finish(self, size: int, dest: Path) -> None:
        os.ftruncate(self.fh.fileno(), size)
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, dest)
        _fsync_dir(dest.parent)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_tree(tmp: Path, dest: Path) -> None:
    """`tmp` becomes `dest` at once; an earlier `dest` (a retried PUT) is moved aside first."""
    old = dest.with_name(f".{dest.name}.{_secrets.token_hex(4)}.old")
    with contextlib.suppress(FileNotFoundError):
        os.rename(dest, old)
    os.rename(tmp, dest)
    _fsync_dir(dest.parent)
    shutil.rmtree(old, ignore_errors=True)


class TransferServer:
    """The transfer endpoint of one destination host (one per `cumulo compute` process)."""

    def __init__(
        self, db: Database, conf: Settings, host: str, *, address: str | None = None, port: int | None = None,
        incoming: Callable[[str], Path] | None = None, copying_only: bool = False,
    ) -> None:
        """`incoming(uuid)`: where a migration's files land (default `<state_dir>/incoming/<uuid>`;
        the cold migration's agent passes `migrate_files.incoming_dir` for this host).
        `copying_only` (what `cumulo compute` runs): a PUT is taken only while the migration's
        record names this host as its destination and says "migrating" (its copy phase), so a
        token seen on the underlay cannot be replayed once the copy is over (it is valid an hour)."""
        self.incoming = incoming or (lambda mid: incoming_dir(conf.state_dir, mid))
        self.copying_only = copying_only
        self.db = db
        self.conf = conf
        self.host = host
        self.address = address if address is not None else (conf.underlay_ip or "127.0.0.1")
        self.port = conf.transfer_port if port is None else port
        self.max_bytes = int(conf.transfer_max_bytes)
        self.max_entries = int(conf.transfer_max_entries)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self.app = family_app(self, [
            Route("/v1/migrations/{mid}/files/{name}", self._put_file, methods=["PUT"]),
            Route("/v1/migrations/{mid}/trees/{name}", self._put_tree, methods=["PUT"]),
            Route("/v1/migrations/{mid}", self._delete, methods=["DELETE"]),
        ], _fault, lambda _scope: -1)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (the bound port is in `self.port` afterwards) and serve in a background task."""
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield  # the process's own signal handling stays

        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.address, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_keep_alive=30)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise errors.HostError("the transfer endpoint stopped at start")
            await asyncio.sleep(0.01)
        LOG.info("transfer endpoint of host %s on %s:%d", self.host, self.address, self.port)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = self._task = None

    # ---- requests ----------------------------------------------------------------------------

    async def _authorize(self, request: Request, *, write: bool = True) -> Path:
        """The migration's incoming dir, once the token is right for it and this host (and, for a
        write with `copying_only`, the migration is copying to this host)."""
        mid = request.path_params["mid"]
        if not valid_uuid(mid):
            raise errors.Invalid(f"Not a migration uuid: {mid[:64]!r}")
        token = request.headers.get(TOKEN_HEADER)
        if not token:
            raise errors.Unauthorized(f"The transfer endpoint needs a {TOKEN_HEADER} header.")
        if not verify(await secret(self.db, SECRET), PURPOSE, subject(mid.lower(), self.host), token):
            raise errors.Forbidden(f"The transfer token is wrong or expired for migration {mid} to host {self.host}.")
        if write and self.copying_only and not await self._copying(mid.lower()):
            raise errors.Forbidden(f"Migration {mid} is not copying its files to host {self.host}.")
        return self.incoming(mid.lower())

    async def _copying(self, mid: str) -> bool:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(migrations.c.status, migrations.c.dest_compute)
                                      .where(migrations.c.uuid == mid))).first()
        return row is not None and row.status == MIGRATING and row.dest_compute == self.host

    def _name(self, request: Request) -> str:
        name = str(request.path_params["name"])
        if not valid_name(name):
            raise errors.Invalid(f"Bad file name {name[:64]!r}: 1-128 of [A-Za-z0-9._-], not starting with a dot")
        return name

    def _declared(self, request: Request, overhead: int = 0) -> None:
        raw = request.headers.get("content-length")
        if raw is not None and raw.isascii() and raw.isdigit() and int(raw) > self.max_bytes + overhead:
            raise errors.PayloadTooLarge(f"The body exceeds the transfer bound of {self.max_bytes} bytes.")

    async def _put_file(self, request: Request) -> Response:
        where = await self._authorize(request)
        name = self._name(request)
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype not in (EXTENTS, "application/octet-stream"):
            raise errors.UnsupportedMediaType(f"Content type {ctype!r} is not taken here")
        self._declared(request, EXTENT.size * _MAX_EXTENTS if ctype == EXTENTS else 0)
        await asyncio.to_thread(private_dir, where)
        sink = await asyncio.to_thread(_Sink, where / f".{name}.{_secrets.token_hex(4)}.tmp")
        try:
            if ctype == EXTENTS:
                size = _size_header(request, self.max_bytes)
                await _receive_extents(_body(request), sink, size)
            else:
                size = await _receive_plain(_body(request), sink, self.max_bytes)
            await asyncio.to_thread(sink.finish, size, where / name)
        except BaseException as exc:
            await asyncio.to_thread(sink.abort)
            if isinstance(exc, OSError):  # ENOSPC, EIO: said plainly, nothing kept
                raise errors.HostError(f"Cannot store {name} on host {self.host}: {exc.strerror or exc}") from exc
            raise
        LOG.info("transfer: %s/%s received (%d bytes)", where.name, name, size)
        return empty(204)

    async def _put_tree(self, request: Request) -> Response:
        where = await self._authorize(request)
        name = self._name(request)
        self._declared(request)
        await asyncio.to_thread(private_dir, where)
        token = _secrets.token_hex(4)
        spool = where / f".{name}.{token}.tar"
        tmp = where / f".{name}.{token}.tmp"
        sink = await asyncio.to_thread(_Sink, spool)
        try:
            size = await _receive_plain(_body(request), sink, self.max_bytes, holes=False)
            await asyncio.to_thread(sink.finish, size, spool)
            count = await asyncio.to_thread(tarsafe.extract, spool, tmp, self.max_entries, self.max_bytes)
            await asyncio.to_thread(_replace_tree, tmp, where / name)
        except tarsafe.TarRefused as exc:
            if exc.too_large:
                raise errors.PayloadTooLarge(f"Refused tar: {exc}") from exc
            raise errors.Invalid(f"Refused tar: {exc}") from exc
        except tarfile.TarError as exc:
            raise errors.Invalid(f"Not a readable tar: {exc}") from exc
        except OSError as exc:
            raise errors.HostError(f"Cannot store {name} on host {self.host}: {exc.strerror or exc}") from exc
        finally:
            await asyncio.to_thread(sink.abort)  # the spool (already renamed over itself) goes
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        LOG.info("transfer: %s/%s/ received (%d entries)", where.name, name, count)
        return empty(204)

    async def _delete(self, request: Request) -> Response:
        where = await self._authorize(request, write=False)  # a discard is welcome at any step
        await asyncio.to_thread(shutil.rmtree, where, True)
        return empty(204)


def _size_header(request: Request, bound: int) -> int:
    raw = request.headers.get(SIZE_HEADER) or ""
    if not (raw.isascii() and raw.isdigit()):  # "²" passes isdigit() and fails int()
        raise errors.Invalid(f"{SIZE_HEADER} must give the file's size")
    size = int(raw)
    if size > bound:
        raise errors.PayloadTooLarge(f"The file's size {size} exceeds the transfer bound of {bound} bytes.")
    return size


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise errors.Invalid("The sender disconnected before the end of the body.") from None


async def _receive_plain(body: AsyncIterator[bytes], sink: _Sink, bound: int, *, holes: bool = True) -> int:
    """The whole body at offset 0 on; its size. `holes` False: every byte is written."""
    size = 0
    batch: list[tuple[int, bytes]] = []
    pending = 0
    write = sink.write if holes else _write_all(sink)
    async for chunk in body:
        if size + len(chunk) > bound:
            raise errors.PayloadTooLarge(f"The body exceeds the transfer bound of {bound} bytes.")
        batch.append((size, chunk))
        size += len(chunk)
        pending += len(chunk)
        if pending >= _BATCH:
            await asyncio.to_thread(write, batch)
            batch, pending = [], 0
    if batch:
        await asyncio.to_thread(write, batch)
    return size


def _write_all(sink: _Sink) -> Any:
    def write(pieces: list[tuple[int, bytes]]) -> None:
        for offset, data in pieces:
            os.pwrite(sink.fh.fileno(), data, offset)

    return write


async def _receive_extents(body: AsyncIterator[bytes], sink: _Sink, size: int) -> None:
    """Parse the extents framing into `sink`; every extent within `size`, in increasing order.
    Data is sliced out of the chunks as they come (only a header split across chunks is buffered)."""
    head = b""  # a partial extent header
    end = 0  # where the previous extent ended
    left = 0  # bytes of the current extent still to come
    at = 0  # where the next of them goes
    count = 0
    batch: list[tuple[int, bytes]] = []
    pending = 0
    async for chunk in body:
        pos = 0
        while pos < len(chunk):
            if left == 0:
                need = EXTENT.size - len(head)
                head += chunk[pos:pos + need]
                pos += need
                if len(head) < EXTENT.size:
                    break
                offset, length = EXTENT.unpack(head)
                head = b""
                count += 1
                if count > _MAX_EXTENTS:
                    raise errors.Invalid(f"More than {_MAX_EXTENTS} extents")
                if offset < end or offset + length > size:
                    raise errors.Invalid(f"Bad extent ({offset}, {length}) for a file of {size} bytes after {end}")
                left, at, end = length, offset, offset + length
                continue
            take = chunk[pos:pos + left] if pos or left < len(chunk) else chunk
            pos += len(take)
            batch.append((at, take))
            at += len(take)
            left -= len(take)
            pending += len(take)
        if pending >= _BATCH:
            await asyncio.to_thread(sink.write, batch)
            batch, pending = [], 0
    if left or head:
        raise errors.Invalid("The extents body ended inside an extent")
    if batch:
        await asyncio.to_thread(sink.write, batch)
