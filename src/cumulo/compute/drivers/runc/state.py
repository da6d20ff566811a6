"""runc's command line, with one state root (`--root`) per cloud: list, state, run, kill, delete,
pause/resume (the freezer), update (live cgroup limits) and checkpoint/restore (CRIU).

Container ids are `cumulo-<instance uuid>`, so a container's owner is known from its id alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from cumulo import host
from cumulo.errors import DriverError, HostError

PREFIX = "cumulo-"
Flush = Callable[[], Awaitable[None]]
RUNC = "runc"


def container_id(uuid: str) -> str:
    return PREFIX + uuid


def uuid_of(cid: str) -> str | None:
    return cid[len(PREFIX):] if cid.startswith(PREFIX) else None


class Runc:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _argv(self, *args: str) -> list[str]:
        return [RUNC, "--root", str(self.root), *args]

    async def list_full(self) -> dict[str, dict[str, Any]]:
        """container id -> runc's listing entry (id, pid, status, bundle, created, ...)."""
        if not self.root.is_dir():
            return {}
        res = await host.run(self._argv("list", "--format", "json"), timeout=30)
        items: list[dict[str, Any]] = json.loads(res.stdout or b"null") or []
        return {str(c["id"]): c for c in items}

    async def list(self) -> dict[str, str]:
        """container id -> status ("created", "running", "paused", "stopped")."""
        return {cid: str(c.get("status")) for cid, c in (await self.list_full()).items()}

    async def state(self, cid: str) -> dict[str, Any] | None:
        """`runc state` (id, pid, status, created, ...), or None when runc does not know the container."""
        res = await host.run(self._argv("state", cid), timeout=30, check=False)
        if res.returncode != 0:
            return None
        data = json.loads(res.stdout or b"null")
        return data if isinstance(data, dict) else None

    async def status(self, cid: str) -> str | None:
        """The container's status, or None when runc does not know it.

        Read in-process from runc's state dir by runc's own rule (a `runc state` process costs
        4-10 ms, on the boot path and in every stop/delete poll); `runc state` decides when unsure."""
        try:
            return _status_from_state_dir(self.root, cid)
        except _Unsure:
            st = await self.state(cid)
            return None if st is None else str(st.get("status"))

    async def _checked(self, what: str, cid: str, *args: str, timeout: float = 30) -> None:
        try:
            await host.run(self._argv(*args), timeout=timeout)
        except HostError as exc:
            raise DriverError(f"runc {what} of {cid} failed: {exc}") from exc

    async def pause(self, cid: str) -> None:
        """Freeze every process of the container (cgroup freezer)."""
        await self._checked("pause", cid, "pause", cid)

    async def resume(self, cid: str) -> None:
        await self._checked("resume", cid, "resume", cid)

    async def update(self, cid: str, *, memory: int, cpu_quota: int, cpu_period: int, pids: int) -> None:
        """Live cgroup limits; memory+swap = memory, so a resize never grants swap."""
        await self._checked(
            "update", cid, "update", "--memory", str(memory), "--memory-swap", str(memory),
            "--cpu-quota", str(cpu_quota), "--cpu-period", str(cpu_period), "--pids-limit", str(pids), cid,
        )

    async def checkpoint(self, cid: str, image_dir: Path, work_dir: Path) -> None:
        """CRIU dump; the container is gone afterwards (restore brings it back)."""
        await self._checked("checkpoint", cid, "checkpoint", "--image-path", str(image_dir),
                            "--work-path", str(work_dir), cid, timeout=120)

    async def restore(self, cid: str, bundle: Path, image_dir: Path, work_dir: Path, log: Path,
                      stdio: int | None = None, flush: Flush | None = None) -> None:
        """CRIU restore, detached, with the container's stdio on `stdio` (see run_detached) or `log`."""
        argv = self._argv("restore", "--detach", "--bundle", str(bundle), "--image-path", str(image_dir),
                          "--work-path", str(work_dir), "--pid-file", str(bundle / "pid"), cid)
        await self._detached("restore", cid, argv, log, stdio, flush, 120)

    async def run_detached(self, cid: str, bundle: Path, log: Path, stdio: int | None = None,
                           flush: Flush | None = None) -> None:
        """`runc run -d`; the container's stdout/stderr (and runc's errors) go to the fd `stdio` (the
        console FIFO, drained into `log`; `flush` waits for that on a failure) or else to the file `log`
        (a file or our own fd, never an asyncio pipe: runc's init would keep it open forever)."""
        argv = self._argv("run", "--detach", "--bundle", str(bundle), "--pid-file", str(bundle / "pid"), cid)
        await self._detached("run", cid, argv, log, stdio, flush, 60)

    async def _detached(self, what: str, cid: str, argv: Sequence[str], log: Path, stdio: int | None,
                        flush: Flush | None, timeout: float) -> None:
        start = await asyncio.to_thread(lambda: log.stat().st_size if log.exists() else 0)
        code = await host.run_to_file([*argv], str(log) if stdio is None else stdio, timeout=timeout)
        if code != 0:
            if flush is not None:
                await flush()  # runc's error is on its way through the FIFO
            msg = await asyncio.to_thread(_read_from, log, start)
            raise DriverError(f"runc {what} of {cid} failed ({code}): {msg.strip()[-2000:] or 'no output'}")

    async def kill(self, cid: str, signal: str) -> None:
        await host.run(self._argv("kill", cid, signal), timeout=30, check=False)

    async def wait_stopped(self, cid: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            status = await self.status(cid)
            if status in (None, "stopped"):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def stop(self, cid: str, grace: float) -> None:
        """SIGTERM, up to `grace` seconds, then SIGKILL; returns once the container is stopped."""
        status = await self.status(cid)
        if status in (None, "stopped"):
            return
        if status == "paused":
            await host.run(self._argv("resume", cid), timeout=30, check=False)
        if grace > 0:
            await self.kill(cid, "TERM")
            if await self.wait_stopped(cid, grace):
                return
        await self.kill(cid, "KILL")
        if not await self.wait_stopped(cid, 10):
            raise DriverError(f"container {cid} did not stop after SIGKILL")

    async def delete(self, cid: str) -> None:
        """Stop (hard) and delete a container; a missing one is fine. Kill+poll+delete beats --force."""
        status = await self.status(cid)
        if status is None:
            return
        if status != "stopped":
            await self.stop(cid, 0)
        try:
            await host.run(self._argv("delete", cid), timeout=30)
        except HostError:
            await host.run(self._argv("delete", "--force", cid), timeout=30)


class _Unsure(Exception):
    pass


def _status_from_state_dir(root: Path, cid: str) -> str | None:
    """runc 1.1's status rule (libcontainer refreshState/runType) on `<root>/<cid>/state.json`,
    which runc writes by rename: no state.json → unknown; a self-frozen freezer → paused; the
    init pid gone, a zombie or started at another time → stopped; exec.fifo still there → created
    (`runc create` not yet started); else running. Small reads, no process; raises _Unsure if odd."""
    if not cid or "/" in cid or cid.startswith("."):
        raise _Unsure
    cdir = root / cid
    try:
        with open(cdir / "state.json", "rb") as fh:
            st = json.load(fh)
        pid, started = int(st["init_process_pid"]), int(st["init_process_start"])
        cgroups = st.get("cgroup_paths") or {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise _Unsure from None
    try:
        if "freezer" in cgroups:  # cgroup v1
            freezer = Path(cgroups["freezer"])
            state = _read_or_none(freezer / "freezer.state")
            if state == "FREEZING":
                raise _Unsure
            if state == "FROZEN" and _read_or_none(freezer / "freezer.self_freezing") == "1":
                return "paused"
        elif "" in cgroups:  # cgroup v2
            if _read_or_none(Path(cgroups[""]) / "cgroup.freeze") == "1":
                return "paused"
        else:
            raise _Unsure
        stat = _read_or_none(Path(f"/proc/{pid}/stat"))
        if stat is None:
            return "stopped"
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X", "x") or int(fields[19]) != started:
            return "stopped"
        return "created" if (cdir / "exec.fifo").exists() else "running"
    except (OSError, ValueError, IndexError, TypeError):
        raise _Unsure from None


def _read_or_none(path: Path) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return None


def _read_from(path: Path, offset: int) -> str:
    """From `offset` on (or the last 64 KiB, when the log was cut meanwhile)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(offset if offset <= size else max(0, size - 65536))
            return fh.read(65536).decode(errors="replace")
    except OSError:
        return ""
