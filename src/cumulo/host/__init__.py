"""The only place that runs host commands: argv lists, a timeout, stderr captured into the error.

A command outlives neither its timeout nor its caller: when the awaiting task is cancelled, the
command is killed and reaped before the cancellation goes on, so a cancelled operation's reverter
never races a command still writing.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from cumulo.errors import HostError


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
