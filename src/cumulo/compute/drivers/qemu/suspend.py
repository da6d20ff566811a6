"""Suspend and resume of a QEMU server.

`state.bin` + `suspended.json` {"state_file": "state.bin", ...}: the server is SUSPENDED. Its guest
state (RAM and devices) was saved with a QMP migration into state.bin and QEMU quit, so no process
runs. Resume starts the same argv with `-incoming defer` and loads the file; the guest carries on
where it stopped (its uptime continues, no boot). The marker counts only while no QEMU runs
(QemuCore._power); a stop or hard reboot drops both (_forget_suspend). The file travels as a
descriptor passed over the QMP socket (`getfd`, SCM_RIGHTS) and the migration URI is `fd:<name>`:
never `exec:`, which runs a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.base import InstanceSpec, PowerState
from cumulo.compute.drivers.files import read_json
from cumulo.compute.drivers.local import guard
from cumulo.compute.drivers.qemu import process, qmp
from cumulo.compute.drivers.qemu.core import SUSPENDED_MARKER, QemuCore
from cumulo.compute.drivers.qemu.files import note
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import DriverError

MIB = 1 << 20
STATE_FILE = "state.bin"
SUSPENDED = SUSPENDED_MARKER
FD_NAME = "cumulo-state"
# Saving a stopped guest has nothing to converge: let it write as fast as the disk takes it
# (QEMU's default cap is 128 MiB/s).
MAX_BANDWIDTH = 64 << 30


def _qmp_lock(drv: QemuCore, uuid: str) -> asyncio.Lock:
    """The driver's per-server QMP lock (QEMU serves one QMP client at a time)."""
    return drv._qmp_locks.setdefault(uuid, asyncio.Lock())


# -- a QMP session that can pass a file descriptor (qmp.FdQmp) --------------------------------


@contextlib.asynccontextmanager
async def fd_session(drv: QemuCore, layout: Layout) -> AsyncIterator[qmp.FdQmp]:
    """A qmp.FdQmp session holding the driver's QMP lock for this server."""
    async with _qmp_lock(drv, layout.uuid):
        conn = await qmp.FdQmp.open(layout.qmp)
        try:
            yield conn
        finally:
            await asyncio.shield(conn.close())


async def _pass_file(conn: qmp.FdQmp, path: Path, flags: int) -> None:
    """Open `path` and hand the descriptor to QEMU as FD_NAME (QEMU keeps its own copy)."""
    with contextlib.suppress(DriverError):
        await conn.execute("closefd", {"fdname": FD_NAME})  # one a failed attempt left behind
    fd = await asyncio.to_thread(os.open, path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        await conn.execute_with_fd("getfd", {"fdname": FD_NAME}, fd)
    finally:
        os.close(fd)


def _migration_timeout(cfg: VmConfig) -> float:
    return 60.0 + cfg.memory_mb / 20  # the RAM at >= 20 MB/s, and a minute to spare


# -- suspend / resume ---------------------------------------------------------------------------


def _marker(layout: Layout) -> Path:
    return layout.dir / SUSPENDED


def _commit_state(layout: Layout, tmp: Path) -> int:
    """The saved state made durable under its name, then the marker that says SUSPENDED (blocking)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
        size = fh.seek(0, os.SEEK_END)
    os.replace(tmp, layout.dir / STATE_FILE)
    doc = {"state_file": STATE_FILE, "at": time.time(), "bytes": size}
    marker_tmp = layout.dir / f".{SUSPENDED}.tmp"
    marker_tmp.write_text(json.dumps(doc))
    os.replace(marker_tmp, _marker(layout))
    dfd = os.open(layout.dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return size


async def _save_state(conn: qmp.FdQmp, tmp: Path, timeout: float) -> dict[str, Any]:
    """Stop the vCPUs and migrate the guest into `tmp`; the query-migrate result once completed."""
    await conn.execute("stop")
    await conn.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
    await _pass_file(conn, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    await conn.execute("migrate", {"uri": f"fd:{FD_NAME}"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    while True:
        info = await conn.execute("query-migrate")
        status = str((info or {}).get("status", ""))
        if status == "completed":
            return dict(info)
        if status in ("failed", "cancelled"):
            raise DriverError(f"saving the guest state failed: {(info or {}).get('error-desc') or status}")
        if loop.time() >= deadline:
            with contextlib.suppress(DriverError):
                await conn.execute("migrate_cancel")
            raise DriverError(f"saving the guest state did not finish within {timeout:.0f}s ({status})")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.2)


async def _wait_incoming(drv: QemuCore, layout: Layout, conn: qmp.FdQmp, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    while True:
        status = str((await conn.execute("query-status") or {}).get("status", ""))
        if status != "inmigrate":
            info = await conn.execute("query-migrate") or {}
            if info.get("status") not in (None, "completed"):
                raise DriverError(f"loading the guest state failed: {info.get('error-desc') or info.get('status')}")
            return
        if loop.time() >= deadline:
            raise DriverError(f"loading the guest state did not finish within {timeout:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.2)


class Suspend(QemuCore):
    async def suspend(self, uuid: str) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            power = await self._state(layout)
            if not guard("suspend", uuid, power, done=PowerState.SUSPENDED, allowed=(PowerState.RUNNING,)):
                return
            await asyncio.to_thread(self._forget_suspend, layout)  # stale: a suspend that never finished
            pid = process.live_pid(layout)
            cfg = self._vm_config(layout)
            tmp = layout.dir / f".{STATE_FILE}.tmp"
            started = time.monotonic()
            committed = False
            try:
                async with fd_session(self, layout) as conn:
                    try:
                        await _save_state(conn, tmp, _migration_timeout(cfg))
                        size = await asyncio.to_thread(_commit_state, layout, tmp)
                        committed = True
                    except BaseException:
                        if not committed:  # the guest runs on as if nothing happened
                            with contextlib.suppress(DriverError):
                                await asyncio.shield(conn.execute("cont"))
                        raise
                    # Saved: QEMU may go. Whatever happens now, the state file is what resumes.
                    with contextlib.suppress(DriverError):
                        await conn.execute("quit", timeout=5.0)
            except BaseException as exc:
                if committed:  # saved, but QEMU still holds on: it goes, the state file resumes
                    await asyncio.shield(process.kill(layout))
                    raise
                await asyncio.shield(asyncio.to_thread(tmp.unlink, missing_ok=True))
                if isinstance(exc, DriverError):
                    tail = process.stderr_tail(layout)[-500:]
                    raise DriverError(f"suspend of {uuid} failed: {exc}" + (f"; QEMU: {tail}" if tail else "")) from exc
                raise
            if pid is not None and not await process.wait_exit(pid, uuid, 10.0):
                await process.kill(layout)
            await asyncio.to_thread(note, layout, f"suspended: guest state saved to {STATE_FILE} ({size // MIB} MiB, "
                                     f"{time.monotonic() - started:.2f}s); QEMU quit")

    async def resume(self, spec: InstanceSpec) -> None:
        layout = self._existing(spec.uuid)
        async with self._op_lock(spec.uuid):
            power = await self._state(layout)
            if not guard("resume", spec.uuid, power, done=PowerState.RUNNING, allowed=(PowerState.SUSPENDED,)):
                return
            marker = await asyncio.to_thread(read_json, _marker(layout)) or {}
            name = str(marker.get("state_file") or STATE_FILE)
            state = layout.dir / name
            if "/" in name or not state.is_file():
                raise DriverError(f"The saved state of suspended instance {spec.uuid} is missing; "
                                  "stop and start it to boot it afresh")
            rec = self.read_record(layout.dir)
            cfg = self._vm_config(layout)
            started = time.monotonic()
            await self._start(layout, cfg, rec, why="resume", extra_argv=["-incoming", "defer"])
            try:
                async with fd_session(self, layout) as conn:
                    await _pass_file(conn, state, os.O_RDONLY)
                    await conn.execute("migrate-incoming", {"uri": f"fd:{FD_NAME}"})
                    await _wait_incoming(self, layout, conn, _migration_timeout(cfg))
                    await conn.execute("cont")
            except BaseException as exc:
                # QEMU goes; the state file stays, so the server is still SUSPENDED and may try again.
                await asyncio.shield(process.kill(layout, scan=True))
                if isinstance(exc, DriverError):
                    tail = process.stderr_tail(layout)[-800:]
                    raise DriverError(f"resume of {spec.uuid} failed: {exc}" + (f"; QEMU: {tail}" if tail else "")) from exc
                raise
            await asyncio.to_thread(self._forget_suspend, layout)
            # _start recorded the argv with -incoming; a later start boots with the plain one.
            rec["argv"] = process.build_argv(layout, dataclasses.replace(cfg, accel=self.accel))
            await self.write_record(layout.dir, rec)
            await asyncio.to_thread(note, layout, f"resumed from the saved state ({time.monotonic() - started:.2f}s)")
