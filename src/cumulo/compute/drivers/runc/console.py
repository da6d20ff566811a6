"""A container's console: its stdout and stderr, kept in console.log, bounded WHILE it is written.

The container does not write the log itself (a file it appends to can only be trimmed after the
fact: 170 MB in 20 s between two trims). Its stdout and stderr are the FIFO `<idir>/console.fifo`,
and the agent drains that FIFO into console.log with `files.append_bounded`, which never lets the
log pass the bound (1 MiB by default; `runc_console_max_bytes`).

Surviving the agent: the container gets the FIFO opened O_RDWR, so it always holds a reader
itself and never sees EPIPE/SIGPIPE when the agent is gone (killed, restarting). While no agent
drains it, the kernel's pipe buffer (64 KiB) fills and the container's writes block, as on a
serial console with flow control, until an agent adopts it: `adopt` (called by the power sync's
list_instances, and so right after a restart) opens the FIFO again and the output resumes where
it stopped. Nothing is lost, nothing outside the bound is kept.

Cost per running container: one FIFO fd and an idle asyncio task in the agent; the pipe buffer's
pages only while output waits. The copying runs in short worker-thread calls, one per chunk of
up to 256 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from pathlib import Path

from cumulo.compute.drivers import files

LOG = logging.getLogger(__name__)
FIFO = "console.fifo"
LOG_FILE = "console.log"
CHUNK = 1 << 16
BATCH = 4 * CHUNK


def ensure_fifo(idir: Path) -> Path:
    """<idir>/console.fifo, 0600 (blocking)."""
    path = idir / FIFO
    try:
        os.mkfifo(path, files.PRIVATE_FILE)
    except FileExistsError:
        pass
    return path


def open_writer(idir: Path) -> int:
    """The container's end: the FIFO read-write (never blocks, never EPIPE). Blocking; caller closes."""
    return os.open(ensure_fifo(idir), os.O_RDWR | os.O_CLOEXEC)


class Consoles:
    """One drain task per running container of a driver, keyed by instance uuid."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def running(self, uuid: str) -> bool:
        task = self.tasks.get(uuid)
        return task is not None and not task.done()

    async def start(self, idir: Path) -> None:
        """Drain idir's FIFO into its console.log (no-op when a drain already runs). Start it while a
        writer exists (the container, or the caller's own writer fd): with none, it ends at once."""
        uuid = idir.name
        if self.running(uuid):
            return
        if not await asyncio.to_thread((idir / FIFO).exists):
            return  # a container started before consoles were FIFOs: it writes console.log itself
        try:
            fd = await asyncio.to_thread(os.open, idir / FIFO, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            LOG.warning("cannot open the console FIFO of %s: %s", uuid, exc)
            return
        self.tasks[uuid] = asyncio.create_task(self._drain(fd, idir / LOG_FILE), name=f"console-{uuid}")

    async def _drain(self, fd: int, log: Path) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fd, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)
                data, eof = _read_available(fd)
                if data:
                    try:
                        await asyncio.to_thread(files.append_bounded, log, data, self.bound)
                    except OSError as exc:  # the instance dir is being removed
                        LOG.debug("console of %s not written: %s", log.parent.name, exc)
                if eof:
                    return
        finally:
            os.close(fd)

    async def wait(self, uuid: str, timeout: float = 5.0) -> None:
        """Until the drain of uuid ended (its writers are gone), or cancel it after `timeout`."""
        task = self.tasks.pop(uuid, None)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self, uuid: str) -> None:
        """Stop draining now (the output stays in the pipe for the next drain)."""
        task = self.tasks.pop(uuid, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop_all(self) -> None:
        for uuid in list(self.tasks):
            await self.stop(uuid)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _read_available(fd: int) -> tuple[bytes, bool]:
    """What the pipe holds now (up to BATCH bytes; a non-blocking pipe read) and whether it hit EOF."""
    chunks: list[bytes] = []
    size = 0
    while size < BATCH:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return b"".join(chunks), False
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if not data:
            return b"".join(chunks), True
        chunks.append(data)
        size += len(data)
    return b"".join(chunks), False
