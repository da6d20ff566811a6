"""Exec in a runc server (the Exec Protocol of drivers/base.py): `runc exec` into its container.

`runc --root R exec --pid-file <inst dir>/exec-<n>.pid --cwd / [--env K=V ...] cumulo-<uuid> argv...`
with our pipes as the process's stdio (no tty): runc 1.1 starts it from the container's config.json
process (capabilities, noNewPrivileges, user), appends `--env` to the image's Env, and the process
joins the container's namespaces and cgroup (it counts in the server's metrics). runc finishes when
the process exits and its output pipes close.

Timeout: the exec'd process and every descendant of it (read from /proc, each checked to be in the
container's cgroup, so a reused pid is never hit) are stopped, then SIGKILLed; then host.run_bounded's
own kill of runc. The pid file is removed when the exec ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid as uuidlib
from pathlib import Path

from cumulo import host
from cumulo.compute.drivers.base import PowerState
from cumulo.compute.drivers.execspec import ExecRequest, ExecResult
from cumulo.compute.drivers.local import RECORD
from cumulo.compute.drivers.runc import cgroup
from cumulo.compute.drivers.runc.core import RuncCore
from cumulo.errors import DriverError, InvalidState


def in_cgroup(pid: int, cid: str) -> bool:
    """Whether process `pid` is in the container's cgroup (any controller's path /cumulo/<cid>)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    want = f"/{cgroup.PARENT}/{cid}"
    return any(line.rsplit(":", 1)[-1] in (want, want + "/") for line in text.splitlines())


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/*/stat."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out.setdefault(int(fields[1]), []).append(int(entry))
    return out


def _tree(root: int, cid: str) -> list[int]:
    """`root` and its descendants that are in the container's cgroup."""
    kids = _children()
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in found or not in_cgroup(pid, cid):
            continue
        found.append(pid)
        todo.extend(kids.get(pid, []))
    return found


def kill_tree(root: int, cid: str) -> list[int]:
    """Stop the exec'd process and its descendants (so none forks away meanwhile), then SIGKILL
    them all; only processes in the container's cgroup are touched. Returns the pids killed."""
    seen: list[int] = []
    for _ in range(5):  # stop until the tree no longer grows
        grown = [p for p in _tree(root, cid) if p not in seen]
        if not grown:
            break
        for pid in grown:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            seen.append(pid)
    for pid in seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return seen


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


class Exec(RuncCore):
    async def exec_in(self, uuid: str, req: ExecRequest) -> ExecResult:
        req.check()
        idir = self.instance_dir(uuid)
        if not await asyncio.to_thread((idir / RECORD).is_file):
            raise InvalidState(f"Instance {uuid} does not exist on runc host {self.host_name}")
        _, cid, _, power = await self._current(uuid)
        if power != PowerState.RUNNING:
            raise InvalidState(f"Instance {uuid} is not running (power state {power.name}): cannot exec")
        pidfile = idir / f"exec-{uuidlib.uuid4().hex[:12]}.pid"
        argv = self.runc._argv("exec", "--pid-file", str(pidfile), "--cwd", "/")
        for key, value in req.env.items():
            argv += ["--env", f"{key}={value}"]
        argv += [cid, *req.argv]

        async def kill() -> None:
            pid = await asyncio.to_thread(_read_pid, pidfile)
            if pid is not None:
                await asyncio.to_thread(kill_tree, pid, cid)

        try:
            res = await host.run_bounded(argv, stdin=req.stdin, timeout=req.timeout, limit=req.output_limit,
                                         on_timeout=kill)
            if res.timed_out:
                await kill()  # a process whose pid file runc wrote only after the first kill
            started = await asyncio.to_thread(pidfile.exists)
        finally:
            await asyncio.to_thread(pidfile.unlink, missing_ok=True)
        if res.timed_out:
            return ExecResult(exit_code=None, signal=int(signal.SIGKILL), stdout=res.stdout, stderr=res.stderr,
                              stdout_truncated=res.stdout_truncated, stderr_truncated=res.stderr_truncated,
                              timed_out=True, seconds=res.seconds)
        if not started:  # runc never started the process: runc's own error, not the command's
            msg = res.stderr.decode(errors="replace").strip()
            raise DriverError(f"runc exec in {cid} failed ({res.returncode}): {msg[-2000:] or 'no output'}")
        code: int | None = res.returncode
        sig: int | None = None
        if res.returncode is not None and res.returncode < 0:  # runc itself was killed
            code, sig = None, -res.returncode
        return ExecResult(exit_code=code, signal=sig, stdout=res.stdout, stderr=res.stderr,
                          stdout_truncated=res.stdout_truncated, stderr_truncated=res.stderr_truncated,
                          timed_out=False, seconds=res.seconds)
