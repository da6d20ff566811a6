"""The QEMU driver's state operations: suspend/resume, cold resize (diagnostics: metrics.py).

Functions here take the QemuDriver; its methods delegate to them. What they keep lives in the
instance dir, so a restarted agent sees the same thing:

- `state.bin` + `suspended.json` {"state_file": "state.bin", ...}: the server is SUSPENDED. Its
  guest state (RAM and devices) was saved with a QMP migration into state.bin and QEMU quit, so
  no process runs. Resume starts the same argv with `-incoming defer` and loads the file; the
  guest carries on where it stopped (its uptime continues, no boot). The marker counts only while
  no QEMU runs (QemuDriver._power); a stop or hard reboot drops both (_forget_suspend).
  The file travels as a descriptor passed over the QMP socket (`getfd`, SCM_RIGHTS) and the
  migration URI is `fd:<name>`: never `exec:`, which runs a shell.
- `resize-old.json`, `disk.pre-resize.qcow2` (+ `ephemeral.pre-resize.qcow2`): the flavor,
  VmConfig and disks from before a resize, kept until confirm_resize or revert_resize. Resize is
  cold (Nova's): stop, grow the disks (never shrink), start with the new -m/-smp.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.files import read_json
from cumulo.compute.drivers.qemu import disks, process, qmp
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import CumuloError, DriverError

if TYPE_CHECKING:
    from cumulo.compute.drivers.qemu import QemuDriver

MIB = 1 << 20
STATE_FILE = "state.bin"
SUSPENDED = "suspended.json"  # QemuDriver's SUSPENDED_MARKER
FD_NAME = "cumulo-state"
# Saving a stopped guest has nothing to converge: let it write as fast as the disk takes it
# (QEMU's default cap is 128 MiB/s).
MAX_BANDWIDTH = 64 << 30
OLD = "resize-old.json"
PRE_DISK = "disk.pre-resize.qcow2"
PRE_EPHEMERAL = "ephemeral.pre-resize.qcow2"
STOP_GRACE = 30.0  # ACPI powerdown before a resize or rebuild (then quit)


def _cannot(op: str, uuid: str, power: PowerState) -> DriverError:
    return DriverError(f"Cannot {op} instance {uuid} in power state {power.name}")


async def _note(layout: Layout, line: str) -> None:
    from cumulo.compute.drivers.qemu import note  # here: the package imports this module first

    await asyncio.to_thread(note, layout, line)


def _qmp_lock(drv: QemuDriver, uuid: str) -> asyncio.Lock:
    """The driver's per-server QMP lock (QEMU serves one QMP client at a time)."""
    return drv._qmp_locks.setdefault(uuid, asyncio.Lock())


# -- a QMP session that can pass a file descriptor ---------------------------------------------


class FdQmp(qmp.Qmp):
    """A QMP session over a socket we hold, so that a command can carry a descriptor (SCM_RIGHTS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock: socket.socket) -> None:
        super().__init__(reader, writer)
        self.sock = sock

    @classmethod
    async def open(cls, path: Path, timeout: float = 5.0) -> FdQmp:
        sock = await qmp.open_socket(path, timeout)  # any path length (qemu-core)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=qmp._LIMIT)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise qmp.QmpClosed(f"cannot connect to QMP at {path}: {exc or 'timed out'}") from exc
        conn = cls(reader, writer, sock)
        try:
            await asyncio.wait_for(asyncio.shield(conn._greeting), timeout)
            await conn.execute("qmp_capabilities", timeout=timeout)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, TimeoutError):
                raise qmp.QmpClosed(f"QMP at {path} did not greet within {timeout:.0f}s") from exc
            raise
        return conn

    async def execute_with_fd(self, command: str, arguments: dict[str, Any], fd: int, *,
                              timeout: float = 10.0) -> Any:
        """Like execute, with `fd` attached to the command's bytes (for getfd / add-fd)."""
        if self.closed:
            raise qmp.QmpClosed(f"QMP connection closed before {command}")
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
                raise qmp.QmpClosed(f"QMP {command}: short write")
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DriverError(f"QMP {command} got no answer within {timeout:.0f}s") from None
        except OSError as exc:
            raise qmp.QmpClosed(f"QMP connection lost during {command}: {exc}") from exc
        finally:
            self._pending.pop(ident, None)
        if "error" in reply:
            err = reply["error"] or {}
            raise qmp.QmpError(command, str(err.get("class", "")), str(err.get("desc", "")))
        return reply.get("return")

    async def close(self) -> None:
        await super().close()
        self.sock.close()


@contextlib.asynccontextmanager
async def fd_session(drv: QemuDriver, layout: Layout) -> AsyncIterator[FdQmp]:
    """An FdQmp session holding the driver's QMP lock for this server."""
    async with _qmp_lock(drv, layout.uuid):
        conn = await FdQmp.open(layout.qmp)
        try:
            yield conn
        finally:
            await asyncio.shield(conn.close())


async def _pass_file(conn: FdQmp, path: Path, flags: int) -> None:
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


async def _save_state(conn: FdQmp, tmp: Path, timeout: float) -> dict[str, Any]:
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


async def suspend(drv: QemuDriver, uuid: str) -> None:
    layout = drv._existing(uuid)
    async with drv._op_lock(uuid):
        power = await drv._state(layout)
        if power == PowerState.SUSPENDED:
            return
        if power != PowerState.RUNNING:
            raise _cannot("suspend", uuid, power)
        await asyncio.to_thread(drv._forget_suspend, layout)  # stale: a suspend that never finished
        pid = process.live_pid(layout)
        cfg = drv._vm_config(layout)
        tmp = layout.dir / f".{STATE_FILE}.tmp"
        started = time.monotonic()
        committed = False
        try:
            async with fd_session(drv, layout) as conn:
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
        await _note(layout, f"suspended: guest state saved to {STATE_FILE} ({size // MIB} MiB, "
                                 f"{time.monotonic() - started:.2f}s); QEMU quit")


async def resume(drv: QemuDriver, spec: InstanceSpec) -> None:
    layout = drv._existing(spec.uuid)
    async with drv._op_lock(spec.uuid):
        power = await drv._state(layout)
        if power == PowerState.RUNNING:
            return
        if power != PowerState.SUSPENDED:
            raise _cannot("resume", spec.uuid, power)
        marker = await asyncio.to_thread(read_json, _marker(layout)) or {}
        name = str(marker.get("state_file") or STATE_FILE)
        state = layout.dir / name
        if "/" in name or not state.is_file():
            raise DriverError(f"The saved state of suspended instance {spec.uuid} is missing; "
                              "stop and start it to boot it afresh")
        rec = drv._record(layout)
        cfg = drv._vm_config(layout)
        started = time.monotonic()
        await drv._start(layout, cfg, rec, why="resume", extra_argv=["-incoming", "defer"])
        try:
            async with fd_session(drv, layout) as conn:
                await _pass_file(conn, state, os.O_RDONLY)
                await conn.execute("migrate-incoming", {"uri": f"fd:{FD_NAME}"})
                await _wait_incoming(drv, layout, conn, _migration_timeout(cfg))
                await conn.execute("cont")
        except BaseException as exc:
            # QEMU goes; the state file stays, so the server is still SUSPENDED and may try again.
            await asyncio.shield(process.kill(layout, scan=True))
            if isinstance(exc, DriverError):
                tail = process.stderr_tail(layout)[-800:]
                raise DriverError(f"resume of {spec.uuid} failed: {exc}" + (f"; QEMU: {tail}" if tail else "")) from exc
            raise
        await asyncio.to_thread(drv._forget_suspend, layout)
        # _start recorded the argv with -incoming; a later start boots with the plain one.
        rec["argv"] = process.build_argv(layout, dataclasses.replace(cfg, accel=drv.accel))
        await drv._save_record(layout, rec)
        await _note(layout, f"resumed from the saved state ({time.monotonic() - started:.2f}s)")


async def _wait_incoming(drv: QemuDriver, layout: Layout, conn: FdQmp, timeout: float) -> None:
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


# -- resize -------------------------------------------------------------------------------------


def flavor_dict(f: FlavorSpec) -> dict[str, Any]:
    return {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb,
            "ephemeral_gb": f.ephemeral_gb, "swap": f.swap}


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _keep_pre_resize(layout: Layout, old: dict[str, Any]) -> None:
    """Copies of the disks and the old settings, for revert_resize (blocking)."""
    _copy(layout.disk, layout.dir / PRE_DISK)
    if layout.ephemeral.exists():
        _copy(layout.ephemeral, layout.dir / PRE_EPHEMERAL)
    tmp = layout.dir / f".{OLD}.tmp"
    tmp.write_text(json.dumps(old, indent=1))
    os.replace(tmp, layout.dir / OLD)


def _restore_pre_resize(layout: Layout, old: dict[str, Any]) -> None:
    """The disks from before the resize back in place, and the kept copies gone (blocking)."""
    if (layout.dir / PRE_DISK).exists():
        os.replace(layout.dir / PRE_DISK, layout.disk)
    if (layout.dir / PRE_EPHEMERAL).exists():
        os.replace(layout.dir / PRE_EPHEMERAL, layout.ephemeral)
    elif not old.get("ephemeral_existed", True):
        layout.ephemeral.unlink(missing_ok=True)
    (layout.dir / OLD).unlink(missing_ok=True)


def _drop_pre_resize(layout: Layout) -> None:
    for name in (PRE_DISK, PRE_EPHEMERAL, OLD):
        (layout.dir / name).unlink(missing_ok=True)


async def _grow(path: Path, size: int) -> None:
    """Grow a qcow2 disk to `size` bytes; never shrink it."""
    if size > await disks.virtual_size(path, "qcow2"):
        await disks.resize(path, "qcow2", size)


async def _apply(drv: QemuDriver, layout: Layout, rec: dict[str, Any], cfg: VmConfig, flavor: dict[str, Any],
                 running: bool, why: str) -> None:
    """Record cfg and flavor (and the argv they make), and start the server again if it ran."""
    cfg = dataclasses.replace(cfg, accel=drv.accel)
    rec["flavor"] = flavor
    rec["vm"] = cfg.to_json()
    rec["argv"] = process.build_argv(layout, cfg)
    if running:
        await drv._start(layout, cfg, rec, why=why)  # saves the record
    else:
        await drv._save_record(layout, rec)


async def resize(drv: QemuDriver, spec: InstanceSpec, old_flavor: FlavorSpec) -> None:
    layout = drv._existing(spec.uuid)
    new = spec.flavor
    async with drv._op_lock(spec.uuid):
        power = await drv._state(layout)
        if power not in (PowerState.RUNNING, PowerState.SHUTDOWN):
            raise _cannot("resize", spec.uuid, power)
        running = power == PowerState.RUNNING
        rec = drv._record(layout)
        old_rec = json.loads(json.dumps(rec))
        old_cfg = drv._vm_config(layout)
        cfg = dataclasses.replace(old_cfg, memory_mb=new.memory_mb, vcpus=new.vcpus,
                                  ephemeral=old_cfg.ephemeral or new.ephemeral_gb > 0)
        if running:
            await drv._stop(layout, STOP_GRACE, "resize")
        first = not (layout.dir / OLD).exists()  # a retried resize keeps the first copies
        try:
            if first:
                old = {"flavor": flavor_dict(old_flavor), "vm": old_cfg.to_json(),
                       "ephemeral_existed": layout.ephemeral.exists(), "was_running": running}
                await asyncio.to_thread(_keep_pre_resize, layout, old)
            await _grow(layout.disk, new.root_gb * disks.GIB)
            if new.ephemeral_gb > 0:
                if layout.ephemeral.exists():
                    await _grow(layout.ephemeral, new.ephemeral_gb * disks.GIB)
                else:
                    await disks.create_blank(layout.ephemeral, new.ephemeral_gb)
            await _apply(drv, layout, rec, cfg, flavor_dict(new), running, "resize")
        except (CumuloError, OSError) as exc:
            await _undo_resize(drv, layout, old_rec, old_cfg, running, first)
            raise DriverError(f"resize of {spec.uuid} to {new.vcpus} vCPUs, {new.memory_mb} MB, "
                              f"{new.root_gb} GB failed (the old size is back): {exc}") from exc
        await _note(layout, f"resized to {new.vcpus} vCPUs, {new.memory_mb} MB, {new.root_gb} GB root disk "
                                 f"({'restarted' if running else 'applies at the next start'})")


async def _undo_resize(drv: QemuDriver, layout: Layout, old_rec: dict[str, Any], old_cfg: VmConfig,
                       running: bool, first: bool) -> None:
    """Best effort after a failed resize: the old disks, record and power state."""
    await process.kill(layout, scan=True)
    with contextlib.suppress(OSError):
        if first:
            old = await asyncio.to_thread(read_json, layout.dir / OLD) or {}
            await asyncio.to_thread(_restore_pre_resize, layout, old)
        await drv._save_record(layout, old_rec)
    if running:
        with contextlib.suppress(CumuloError, OSError):
            await drv._start(layout, old_cfg, old_rec, why="resize failed; old size")


async def confirm_resize(drv: QemuDriver, uuid: str) -> None:
    layout = drv._existing(uuid)
    async with drv._op_lock(uuid):
        await asyncio.to_thread(_drop_pre_resize, layout)


async def revert_resize(drv: QemuDriver, spec: InstanceSpec) -> None:
    """Back to spec.flavor (the old one) and the disks kept at resize; running stays running."""
    layout = drv._existing(spec.uuid)
    async with drv._op_lock(spec.uuid):
        power = await drv._state(layout)
        running = power in (PowerState.RUNNING, PowerState.PAUSED)
        rec = drv._record(layout)
        old = await asyncio.to_thread(read_json, layout.dir / OLD)
        base = VmConfig.from_json(old["vm"]) if old and isinstance(old.get("vm"), dict) else drv._vm_config(layout)
        cfg = dataclasses.replace(base, memory_mb=spec.flavor.memory_mb, vcpus=spec.flavor.vcpus)
        await drv._stop(layout, STOP_GRACE if power == PowerState.RUNNING else 0, "revert resize")
        await asyncio.to_thread(drv._forget_suspend, layout)
        if old is not None:
            await asyncio.to_thread(_restore_pre_resize, layout, old)
        await _apply(drv, layout, rec, cfg, flavor_dict(spec.flavor), running, "revert resize")
        await _note(layout, f"resize reverted to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB")
