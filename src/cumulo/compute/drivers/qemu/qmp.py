"""An asyncio QMP client over QEMU's unix socket: greeting, capabilities negotiation, commands with
timeouts, and events.

QEMU's QMP socket (`-qmp unix:...,server=on,wait=off`) serves one client at a time; others wait in
the listen backlog. So the driver opens a session per operation (`session()` / `call()`), keeps it
short, and serialises sessions per server (a lock in the driver). A reader task splits the stream
into messages: replies go to the command waiting on their `id`, events to `events` (and wake
`wait_event`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Self

from cumulo.errors import DriverError

_LIMIT = 16 << 20  # query replies (e.g. query-blockstats) are one line each
_SUN_PATH_MAX = 108


class QmpError(DriverError):
    """QEMU answered a command with an error (`class` is QMP's error class, e.g. GenericError)."""

    speaker = "QMP"  # who answered, as the message names it

    def __init__(self, command: str, klass: str, desc: str) -> None:
        super().__init__(f"{self.speaker} {command} failed: {klass}: {desc}")
        self.command = command
        self.klass = klass
        self.desc = desc


class QmpClosed(DriverError):
    """The connection ended (QEMU exited or closed it) before an answer came."""


class Qmp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._greeting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.events: list[dict[str, Any]] = []
        self._event_seen = asyncio.Event()
        self.closed = False
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: Path | str, timeout: float = 5.0) -> Qmp:
        """Connect, read the greeting and leave capabilities negotiation mode."""
        reader, writer, _sock = await open_stream(path, timeout)
        return await cls(reader, writer)._handshake(path, timeout)

    async def _handshake(self, path: Path | str, timeout: float) -> Self:
        """Read the greeting and leave capabilities negotiation mode (closed on failure)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._greeting), timeout)
            await self.execute("qmp_capabilities", timeout=timeout)
        except BaseException as exc:
            await self.close()
            if isinstance(exc, TimeoutError):
                raise QmpClosed(f"QMP at {path} did not greet within {timeout:.0f}s") from exc
            raise
        return self

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if "QMP" in msg and not self._greeting.done():
                    self._greeting.set_result(msg)
                elif "event" in msg:
                    self.events.append(msg)
                    self._event_seen.set()
                elif "id" in msg:
                    fut = self._pending.pop(str(msg["id"]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except (OSError, ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed = True
            self._event_seen.set()
            err = QmpClosed("QMP connection closed")
            if not self._greeting.done():
                self._greeting.set_exception(err)
                self._greeting.exception()  # retrieved: no "never retrieved" warning
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self._pending.clear()

    async def execute(self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float = 10.0) -> Any:
        """Run one command; its `return` value, or QmpError / QmpClosed / DriverError on timeout."""
        if self.closed:
            raise QmpClosed(f"QMP connection closed before {command}")
        ident = str(next(self._ids))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        msg: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            msg["arguments"] = arguments
        try:
            self._writer.write(json.dumps(msg).encode() + b"\n")
            await self._writer.drain()
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DriverError(f"QMP {command} got no answer within {timeout:.0f}s") from None
        except (OSError, ConnectionError) as exc:
            raise QmpClosed(f"QMP connection lost during {command}: {exc}") from exc
        finally:
            self._pending.pop(ident, None)
        if "error" in reply:
            err = reply["error"] or {}
            raise QmpError(command, str(err.get("class", "")), str(err.get("desc", "")))
        return reply.get("return")

    async def wait_event(self, names: Iterable[str], timeout: float, *, since: int = 0) -> dict[str, Any] | None:
        """The first event named in `names` at index >= since in `events`; None on timeout or close."""
        wanted = set(names)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        idx = since
        while True:
            while idx < len(self.events):
                ev = self.events[idx]
                idx += 1
                if ev.get("event") in wanted:
                    return ev
            if self.closed:
                return None
            left = deadline - loop.time()
            if left <= 0:
                return None
            self._event_seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_seen.wait(), left)

    async def wait_device_deleted(self, dev: str, since: int, timeout: float) -> bool:
        """The DEVICE_DELETED event of device `dev` itself (not of its inner parts, such as the virtio
        backend) at index >= since in `events`, within timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            ev = await self.wait_event(["DEVICE_DELETED"], left, since=since)
            if ev is None:
                return False
            if (ev.get("data") or {}).get("device") == dev:
                return True
            since = self.events.index(ev) + 1
        return False

    async def wait_closed(self, timeout: float) -> bool:
        """True once QEMU closes the connection (it exited) within timeout."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.closed

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class FdQmp(Qmp):
    """A QMP session over a socket we hold, so that a command can carry a descriptor (SCM_RIGHTS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock: socket.socket) -> None:
        super().__init__(reader, writer)
        self.sock = sock

    @classmethod
    async def open(cls, path: Path, timeout: float = 5.0) -> FdQmp:
        reader, writer, sock = await open_stream(path, timeout)  # any path length (qemu-core)
        return await cls(reader, writer, sock)._handshake(path, timeout)

    async def execute_with_fd(self, command: str, arguments: dict[str, Any], fd: int, *,
                              timeout: float = 10.0) -> Any:
        """Like execute, with `fd` attached to the command's bytes (for getfd / add-fd)."""
        if self.closed:
            raise QmpClosed(f"QMP connection closed before {command}")
        ident = str(next(self._ids))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        data = json.dumps({"execute": command, "id": ident, "arguments": arguments}).encode() + b"\n"
        try:
            # Straight onto the socket, so the descriptor rides with these very bytes: first let
            # the transport flush anything it still holds (nothing, in practice: commands are tiny).
            while self._writer.transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
            if socket.send_fds(self.sock, [data], [fd]) != len(data):
                raise QmpClosed(f"QMP {command}: short write")
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DriverError(f"QMP {command} got no answer within {timeout:.0f}s") from None
        except OSError as exc:
            raise QmpClosed(f"QMP connection lost during {command}: {exc}") from exc
        finally:
            self._pending.pop(ident, None)
        if "error" in reply:
            err = reply["error"] or {}
            raise QmpError(command, str(err.get("class", "")), str(err.get("desc", "")))
        return reply.get("return")

    async def close(self) -> None:
        await super().close()
        self.sock.close()


async def open_socket(path: Path | str, timeout: float = 5.0, *, what: str = "QMP") -> socket.socket:
    """A non-blocking unix socket connected to `path`, however long the path is.

    sun_path holds 107 bytes and state dirs (pytest's tmp dirs) can be longer; the socket is
    reached through /proc/self/fd/<fd of its directory>/<name> instead (QEMU binds it relative to
    its working directory, process.py)."""
    path = Path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    dir_fd = -1
    try:
        target = str(path)
        if len(os.fsencode(target)) >= _SUN_PATH_MAX:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            target = f"/proc/self/fd/{dir_fd}/{path.name}"
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, target), timeout)
    except (OSError, TimeoutError) as exc:
        sock.close()
        raise QmpClosed(f"cannot connect to {what} at {path}: {exc or 'timed out'}") from exc
    except BaseException:
        sock.close()
        raise
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    return sock


async def open_stream(path: Path | str, timeout: float = 5.0, *, limit: int = _LIMIT, what: str = "QMP"
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, socket.socket]:
    """Streams over a unix socket connected to `path` (open_socket: any path length), and the
    socket; QmpClosed naming `what` when it cannot be reached."""
    sock = await open_socket(path, timeout, what=what)
    try:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=limit)
    except OSError as exc:
        sock.close()
        raise QmpClosed(f"cannot connect to {what} at {path}: {exc}") from exc
    return reader, writer, sock


@contextlib.asynccontextmanager
async def session(path: Path | str, timeout: float = 5.0) -> AsyncIterator[Qmp]:
    qmp = await Qmp.connect(path, timeout)
    try:
        yield qmp
    finally:
        await asyncio.shield(qmp.close())


async def call(path: Path | str, command: str, arguments: dict[str, Any] | None = None, *, timeout: float = 5.0) -> Any:
    """One command in a session of its own."""
    async with session(path, timeout) as qmp:
        return await qmp.execute(command, arguments, timeout=timeout)
