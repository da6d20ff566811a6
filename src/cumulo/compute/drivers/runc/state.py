"""runc's command line, with one state root (`--root`) per cloud: list, state, run, kill, delete.

Container ids are `cumulo-<instance uuid>`, so a container's owner is known from its id alone.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from cumulo import host
from cumulo.errors import DriverError, HostError

PREFIX = "cumulo-"
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

    async def list(self) -> dict[str, str]:
        """container id -> status ("created", "running", "paused", "stopped")."""
        if not self.root.is_dir():
            return {}
        res = await host.run(self._argv("list", "--format", "json"), timeout=30)
        items: list[dict[str, Any]] = json.loads(res.stdout or b"null") or []
        return {str(c["id"]): str(c["status"]) for c in items}

    async def status(self, cid: str) -> str | None:
        """The container's status, or None when runc does not know it."""
        res = await host.run(self._argv("state", cid), timeout=30, check=False)
        if res.returncode != 0:
            return None
        return str(json.loads(res.stdout).get("status"))

    async def run_detached(self, cid: str, bundle: Path, log: Path) -> None:
        """`runc run -d`; the container's stdout/stderr (and runc's errors) go to `log`."""
        start = log.stat().st_size if log.exists() else 0
        argv = self._argv("run", "--detach", "--bundle", str(bundle), "--pid-file", str(bundle / "pid"), cid)
        code = await host.run_to_file(argv, str(log), timeout=60)
        if code != 0:
            msg = await asyncio.to_thread(_read_from, log, start)
            raise DriverError(f"runc run of {cid} failed ({code}): {msg.strip()[-2000:] or 'no output'}")

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


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(65536).decode(errors="replace")
    except OSError:
        return ""
