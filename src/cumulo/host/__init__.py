"""The only place that runs host commands: argv lists, a timeout, stderr captured into the error.

A command outlives neither its timeout nor its caller: when the awaiting task is cancelled, the
command is killed and reaped before the cancellation goes on, so a cancelled operation's reverter
never races a command still writing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cumulo.errors import HostError

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


async def run(
    argv: list[str],
    *,
    timeout: float = 60.0,
    check: bool = True,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Result:
    """Run argv (never through a shell). Raise HostError quoting stderr when it fails and check is set."""
    if not argv or not all(isinstance(a, str) for a in argv):
        raise HostError(f"bad argv: {argv!r}")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env} if env else None,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        await _kill(proc)
        raise HostError(f"{argv[0]} timed out after {timeout:.0f}s") from None
    except asyncio.CancelledError:
        await _kill(proc)
        raise
    result = Result(tuple(argv), proc.returncode or 0, out, err)
    if check and result.returncode != 0:
        msg = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise HostError(f"{' '.join(argv[:3])} failed ({result.returncode}): {msg[-2000:]}")
    return result


@dataclass(frozen=True)
class BoundedResult:
    """What run_bounded saw: a negative returncode is the signal that ended the command (asyncio's
    convention), e.g. -9 when it was killed for its timeout."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    seconds: float


class _Bounded:
    """A stream kept to `limit` bytes: the first `head` and the last limit - head bytes (half and
    half when limit <= head), however much goes through it."""

    def __init__(self, limit: int, head: int) -> None:
        limit = max(0, limit)
        self.head_n = head if limit > head else limit // 2
        self.tail_n = limit - self.head_n
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(self.head) < self.head_n:
            take = self.head_n - len(self.head)
            self.head += chunk[:take]
            chunk = chunk[take:]
        self.tail += chunk
        if len(self.tail) > self.tail_n:
            del self.tail[: len(self.tail) - self.tail_n]

    def value(self) -> tuple[bytes, bool]:
        return bytes(self.head + self.tail), self.total > self.head_n + self.tail_n


async def _drain(stream: asyncio.StreamReader | None, into: _Bounded) -> None:
    while stream is not None:
        chunk = await stream.read(65536)
        if not chunk:
            return
        into.feed(chunk)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    if proc.stdin is None:
        return
    try:
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command did not read all of its input: its exit code tells
    finally:
        proc.stdin.close()


async def run_bounded(
    argv: list[str],
    *,
    stdin: bytes = b"",
    timeout: float = 60.0,
    limit: int = 65536,
    head: int = 4096,
    on_timeout: Callable[[], Awaitable[None]] | None = None,
    grace: float = 5.0,
) -> BoundedResult:
    """Run argv (never through a shell) with `stdin` then EOF, reading stdout and stderr in chunks
    and keeping each to `limit` bytes (the first `head` and the last limit - head bytes).

    As `run`: a bad argv is HostError, and a cancelled caller's command is killed and reaped. Unlike
    `run`, a non-zero exit and a timeout are results, not errors, so the caller keeps the output: on
    timeout `on_timeout` runs first (e.g. to kill what the command started elsewhere), the command
    gets `grace` seconds to end by itself, then it is SIGKILLed and reaped; timed_out is set.
    """
    if not argv or not all(isinstance(a, str) for a in argv):
        raise HostError(f"bad argv: {argv!r}")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = _Bounded(limit, head), _Bounded(limit, head)
    tasks = [asyncio.ensure_future(_feed(proc, stdin)), asyncio.ensure_future(_drain(proc.stdout, out)),
             asyncio.ensure_future(_drain(proc.stderr, err))]
    everything = asyncio.gather(proc.wait(), *tasks)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(everything), timeout)
        except TimeoutError:
            timed_out = True
            if on_timeout is not None:
                try:
                    await on_timeout()
                except Exception:  # the command is killed below all the same
                    _LOG.exception("on_timeout of %s failed", argv[0])
            try:
                await asyncio.wait_for(asyncio.shield(everything), grace)
            except TimeoutError:
                await _kill(proc)
    except asyncio.CancelledError:
        await _kill(proc)
        raise
    finally:
        for task in tasks:
            task.cancel()  # pipes another process still holds after the command ended
        everything.cancel()
        await asyncio.gather(everything, return_exceptions=True)
    stdout, out_cut = out.value()
    stderr, err_cut = err.value()
    return BoundedResult(tuple(argv), proc.returncode, stdout, stderr, out_cut, err_cut, timed_out,
                         time.monotonic() - started)


async def run_to_file(argv: list[str], output: str | int, *, timeout: float = 60.0, cwd: str | None = None,
                      pass_fds: tuple[int, ...] = ()) -> int:
    """Run argv with stdout and stderr appended to the file `output`; return the exit code.

    For commands whose children inherit stdio and outlive them (`runc run -d`): runc's init
    keeps a pipe open forever, so its stdio must be a file. The caller reads errors from the file.
    `output` may also be an open fd (the caller's, left open), e.g. a FIFO the caller drains.
    `pass_fds` are inherited by the command under the same numbers (a tap's fd for QEMU).
    """
    if not argv or not all(isinstance(a, str) for a in argv):
        raise HostError(f"bad argv: {argv!r}")
    fd = output if isinstance(output, int) else os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd, cwd=cwd, pass_fds=pass_fds
        )
    finally:
        if not isinstance(output, int):
            os.close(fd)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        await _kill(proc)
        raise HostError(f"{argv[0]} timed out after {timeout:.0f}s") from None
    except asyncio.CancelledError:
        await _kill(proc)
        raise


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the command and reap it, even if the caller is cancelled again meanwhile."""
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    reaped = asyncio.ensure_future(proc.wait())
    while not reaped.done():
        try:
            await asyncio.shield(reaped)
        except asyncio.CancelledError:
            continue


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (signal 0; one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
