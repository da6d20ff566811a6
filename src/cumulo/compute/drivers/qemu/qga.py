"""An asyncio client of the QEMU guest agent (qemu-ga in the guest, reached through the server's
`qga.sock` chardev: process.py) and `run`, one command run inside the guest with guest-exec.

QGA speaks QMP-style JSON on a byte stream, one client at a time, with no greeting and no
capabilities negotiation. The stream outlives our connections (the guest sees one virtio-serial
port), so a new session may first read answers meant for an earlier client: each session starts
with a 0xFF byte (qemu-ga's parser drops any half-read command on it) and guest-sync-delimited
with a random id; qemu-ga answers with a 0xFF sentinel then `{"return": id}`, and everything
before that is discarded. A sync that gets no answer is sent again with a new id (qemu-ga may not
run yet: the guest is booting) until the sync deadline.

`run`: guest-exec {path, arg, env, input-data (base64 stdin), capture-output: true} -> pid, then
guest-exec-status {pid} polled with a backoff (0.1 s growing to 1 s) until `exited` (qemu-ga fills
out-data/err-data only then, once the process exited and its pipes closed). QGA has no kill: at
the deadline a second guest-exec runs KILL_TREE (a fixed script, the pid its only argument) that
stops the process and its descendants, then SIGKILLs them; then the status is collected (the
output so far, and qemu-ga forgets the pid). qemu-ga keeps at most 16 MiB of each stream (its
`*-truncated` flags); execspec.bound_output then keeps the head and tail the Exec contract names.
An exec cancelled while its command runs leaves it running (as runc's does): the PaaS manager's
recipes take a lock in the guest and resume by it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.execspec import ExecRequest, ExecResult, bound_output
from cumulo.compute.drivers.qemu.qmp import QmpClosed, QmpError, open_stream
from cumulo.errors import DriverError

SENTINEL = b"\xff"
# A guest-exec-status answer holds both streams base64'd (qemu-ga keeps up to 16 MiB of each).
_LIMIT = 48 << 20
POLL_FIRST, POLL_MAX = 0.1, 1.0
SYNC_TRY = 3.0  # seconds one guest-sync-delimited waits before it is sent again
KILL_WAIT = 10.0  # after the kill, how long the status of the killed process may take
# The timeout's kill, run by qemu-ga as /bin/sh -c KILL_TREE kill-tree <pid>: SIGSTOP the process
# and, level by level, its children (so none forks away meanwhile), then SIGKILL them all.
KILL_TREE = (
    'all=$1; new=$1; kill -STOP "$1" 2>/dev/null\n'
    'while [ -n "$new" ]; do\n'
    '  next=""\n'
    '  for p in $new; do\n'
    '    for c in $(cat /proc/$p/task/*/children 2>/dev/null); do kill -STOP "$c" 2>/dev/null; next="$next $c"; done\n'
    '  done\n'
    '  all="$all $next"; new=$next\n'
    'done\n'
    'kill -KILL $all 2>/dev/null\n'
    'exit 0\n'
)
GUEST_PATH = "PATH=/bin:/usr/bin:/sbin:/usr/sbin"


class QgaError(QmpError):
    """The guest agent answered a command with an error (QGA speaks QMP's error shape)."""

    speaker = "guest agent"


class QgaUnavailable(DriverError):
    """No guest agent answers on the channel (the guest is booting, or runs no qemu-ga)."""


class Qga:
    """One session on the channel. Commands are sent one at a time (the caller holds the server's
    lock), and each answer is the next JSON object qemu-ga writes after the sync."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, path: Path | str, timeout: float = 5.0) -> Qga:
        reader, writer, _sock = await open_stream(path, timeout, limit=_LIMIT, what="the guest agent")
        return cls(reader, writer)

    async def _send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, ConnectionError) as exc:
            raise QmpClosed(f"guest agent channel lost: {exc}") from exc

    async def sync(self, deadline: float) -> None:
        """guest-sync-delimited until qemu-ga answers with our id (see the module docstring);
        QgaUnavailable when it does not before `deadline` (time.monotonic())."""
        while True:
            ident = random.randrange(1, 1 << 31)  # noqa: S311  # a session tag, not a secret
            msg = {"execute": "guest-sync-delimited", "arguments": {"id": ident}}
            await self._send(SENTINEL + json.dumps(msg).encode() + b"\n")
            try_until = min(deadline, time.monotonic() + SYNC_TRY)
            while (left := try_until - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(self._reader.readuntil(SENTINEL), left)
                    line = await asyncio.wait_for(self._reader.readline(), max(left, 0.5))
                except TimeoutError:
                    break
                except asyncio.LimitOverrunError as exc:  # stale output beyond the buffer: drop it
                    await self._reader.readexactly(exc.consumed)
                    continue
                except ValueError:  # a stale line beyond the buffer
                    continue
                except (asyncio.IncompleteReadError, OSError) as exc:
                    raise QmpClosed(f"guest agent channel closed during sync: {exc}") from exc
                reply = _json(line)
                if reply is not None and reply.get("return") == ident:
                    return
            if time.monotonic() >= deadline:
                raise QgaUnavailable("the guest agent does not answer (the guest may still be booting, "
                                     "or runs no qemu-ga)")

    async def execute(self, command: str, arguments: dict[str, Any] | None = None, *,
                      timeout: float = 30.0) -> Any:
        """One command (after sync); its `return` value, or QgaError / DriverError on timeout."""
        msg: dict[str, Any] = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        await self._send(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DriverError(f"guest agent {command} got no answer within {timeout:.0f}s")
            try:
                line = await asyncio.wait_for(self._reader.readline(), left)
            except TimeoutError:
                continue
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError) as exc:
                raise QmpClosed(f"guest agent channel lost during {command}: {exc}") from exc
            if not line:
                raise QmpClosed(f"guest agent channel closed during {command}")
            reply = _json(line.lstrip(SENTINEL))
            if reply is None:
                continue
            if "error" in reply:
                err = reply["error"] if isinstance(reply["error"], dict) else {}
                raise QgaError(command, str(err.get("class", "")), str(err.get("desc", "")))
            if "return" in reply:
                return reply["return"]

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def _json(line: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@contextlib.asynccontextmanager
async def session(path: Path | str, sync_timeout: float) -> AsyncIterator[Qga]:
    """A synced session; QgaUnavailable when the agent does not answer within sync_timeout."""
    qga = await Qga.connect(path)
    try:
        await qga.sync(time.monotonic() + sync_timeout)
        yield qga
    finally:
        await asyncio.shield(qga.close())


def _decode(status: dict[str, Any], key: str) -> bytes:
    data = status.get(key)
    if not isinstance(data, str) or not data:
        return b""
    try:
        return base64.b64decode(data)
    except (binascii.Error, ValueError):
        raise DriverError(f"the guest agent sent {key} that is not base64") from None


def _int_or_none(status: dict[str, Any], key: str) -> int | None:
    """A status field that must be a whole number (the guest is the tenant's: its agent may lie)."""
    value = status.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 31) <= value < (1 << 31):
        raise DriverError(f"the guest agent sent {key} {str(value)[:40]!r}, not a whole number")
    return value


def _result(status: dict[str, Any], req: ExecRequest, *, timed_out: bool, seconds: float) -> ExecResult:
    out, out_cut = bound_output(_decode(status, "out-data"), req.output_limit)
    err, err_cut = bound_output(_decode(status, "err-data"), req.output_limit)
    sig, code = _int_or_none(status, "signal"), _int_or_none(status, "exitcode")
    if timed_out:
        code, sig = None, int(signal.SIGKILL)
    elif sig is not None:
        code = None
    return ExecResult(exit_code=code, signal=sig,
                      stdout=out, stderr=err,
                      stdout_truncated=out_cut or bool(status.get("out-truncated")),
                      stderr_truncated=err_cut or bool(status.get("err-truncated")),
                      timed_out=timed_out, seconds=round(seconds, 3))


async def _wait_exited(qga: Qga, pid: int, until: float) -> dict[str, Any] | None:
    """guest-exec-status of `pid` polled with a backoff until it exited; None at `until`."""
    delay = POLL_FIRST
    while True:
        status = await qga.execute("guest-exec-status", {"pid": pid})
        if not isinstance(status, dict):
            raise DriverError(f"the guest agent's guest-exec-status answer is not an object: {status!r}")
        if status.get("exited"):
            return status
        left = until - time.monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 1.5, POLL_MAX)


async def _kill(qga: Qga, pid: int) -> None:
    reply = await qga.execute("guest-exec", {"path": "/bin/sh", "arg": ["-c", KILL_TREE, "kill-tree", str(pid)],
                                             "env": [GUEST_PATH]})
    killer = reply.get("pid") if isinstance(reply, dict) else None
    if isinstance(killer, int):  # its status read once it ended, so that qemu-ga forgets it too
        with contextlib.suppress(DriverError):
            await _wait_exited(qga, killer, time.monotonic() + KILL_WAIT)


async def run(path: Path | str, req: ExecRequest, *, sync_timeout: float = 30.0) -> ExecResult:
    """req.argv inside the guest through the agent at `path` (the Exec contract of drivers/base.py)."""
    async with session(path, sync_timeout) as qga:
        args: dict[str, Any] = {"path": req.argv[0], "arg": list(req.argv[1:]), "capture-output": True}
        if req.env:
            args["env"] = [f"{k}={v}" for k, v in req.env.items()]
        if req.stdin:
            args["input-data"] = base64.b64encode(req.stdin).decode()
        started = time.monotonic()
        reply = await qga.execute("guest-exec", args, timeout=max(30.0, len(req.stdin) / (256 << 10)))
        pid = reply.get("pid") if isinstance(reply, dict) else None
        if not isinstance(pid, int):
            raise DriverError(f"the guest agent's guest-exec answer holds no pid: {reply!r}")
        # Cancelled here (the caller gave up, Cumulo stops), the command goes on in the guest, as a
        # cancelled `runc exec` leaves it in the container: PaaS recipes resume by their own markers.
        status = await _wait_exited(qga, pid, started + req.timeout)
        if status is not None:
            return _result(status, req, timed_out=False, seconds=time.monotonic() - started)
        await _kill(qga, pid)
        status = await _wait_exited(qga, pid, time.monotonic() + KILL_WAIT)
        if status is None:
            raise DriverError(f"guest process {pid} still runs after its timeout and a SIGKILL")
        return _result(status, req, timed_out=True, seconds=time.monotonic() - started)
