"""Live migration of a QEMU server to another host (the LiveMigration facet).

The steps, as Nova's libvirt driver with non-shared storage (VIR_MIGRATE_NON_SHARED_DISK over NBD):

destination `prepare_incoming(spec, source, listen, ports)`:
    the instance dir, the record of the source (same VmConfig, so the same machine and devices),
    kernel/initrd from the destination's image copy, the config drive rebuilt from the spec, empty
    target disks of the source's virtual sizes for its local disks (root overlay, ephemeral, swap);
    QEMU started with the same argv plus `-S -incoming defer`; an NBD server on `listen:<port>`
    exporting each target disk (block-export-add, writable), then `migrate-incoming tcp:listen:<port>`.
    Volumes (the block store's files, recorded under "disks") are not copied: the destination opens
    the same paths (shared storage: on one machine the files are visible to both hosts; across
    machines the block store's directory must be shared storage, e.g. NFS, mounted at the same path).
source `live_migrate(uuid, target)`:
    per local disk an NBD client node and `blockdev-mirror` (sync full) into it; once every job is
    ready, `migrate tcp:...` with the capabilities events + pause-before-switchover; at the
    switchover (status pre-switchover, vCPUs stopped) the mirrors are completed (`block-job-cancel`
    of a ready mirror: the target is consistent) and `migrate-continue` ends the migration. The
    downtime QEMU measured (query-migrate "downtime", ms) is returned with the other figures.
    Any failure or cancellation: migrate_cancel, the mirrors cancelled, the NBD nodes removed, the
    guest continued: the source runs on.
destination `finish_incoming(uuid, resume)`: waits for the migration's end, stops the NBD server,
    `cont` (unless the server is PAUSED: it stays paused here).
destination `abort_incoming(uuid)`: its QEMU killed and its files removed (destroy).
source `drop_migrated(uuid)`: the source's QEMU (stopped, its state gone) quits, its files go.

The ports come from a range (conf.live_migration_ports) and are bound to the given (underlay)
address only. QMP is used in short sessions (each poll one command) so that the power sync and the
agent's other QMP users are never locked out for the length of a migration.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.base import InstanceSpec, PowerState
from cumulo.compute.drivers.qemu import blockdev, configdrive, disks, netdev, process
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.compute.drivers.qemu.files import note
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import DriverError
from cumulo.host.revert import Reverter

LOG = logging.getLogger(__name__)
DEFAULT_PORTS = (49152, 49215)  # libvirt's migration port range
DOWNTIME_LIMIT_MS = 500  # Nova's live_migration_downtime
MAX_BANDWIDTH = 1 << 30  # bytes/s: the underlay, not QEMU's 128 MiB/s default, is the limit
MIRROR_PREFIX = "mig-"
PROGRESS_EVERY = 1.0  # s between two progress reports

Progress = Callable[[dict[str, Any]], Awaitable[None]]


def parse_ports(text: str) -> tuple[int, int]:
    """'49152-49215' -> (49152, 49215); ValueError when malformed."""
    lo, _, hi = text.partition("-")
    first, last = int(lo), int(hi or lo)
    if not 1024 <= first <= last <= 65535:
        raise ValueError(f"port range {text!r} is not within 1024-65535")
    return first, last


def free_ports(listen: str, count: int, first: int, last: int) -> list[int]:
    """`count` ports of first..last free on `listen` (bind-tested; QEMU binds them right after)."""
    found: list[int] = []
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    for port in range(first, last + 1):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((listen, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise DriverError(f"cannot bind the migration address {listen}: {exc}") from exc
        found.append(port)
        if len(found) == count:
            return found
    raise DriverError(f"no free live migration port in {first}-{last} on {listen}")


def local_disks(cfg: VmConfig) -> list[tuple[str, str, Path]]:
    """(node, format, path) of the server's local disks, which a live migration copies."""
    out: list[tuple[str, str, Path]] = []
    if not cfg.root_volume:
        out.append(("root", cfg.root_format, Path("disk.qcow2")))
    if cfg.ephemeral:
        out.append(("ephemeral", "qcow2", Path("ephemeral.qcow2")))
    if cfg.swap:
        out.append(("swap", "raw", Path("swap.raw")))
    return out


def _inet(host: str, port: int) -> dict[str, str]:
    return {"host": host, "port": str(port)}


class LiveMigration(QemuCore):
    """The live migration steps of both ends (module docstring)."""

    def migration_timeout(self, cfg: VmConfig, disk_bytes: int) -> float:
        return 120.0 + (cfg.memory_mb << 20) / (10 << 20) + disk_bytes / (20 << 20)

    # -- source ---------------------------------------------------------------------------------

    async def live_migration_source(self, uuid: str) -> dict[str, Any]:
        """What the destination needs: the record and the virtual size of each local disk."""
        layout = self._existing(uuid)
        power = await self._state(layout)
        if power not in (PowerState.RUNNING, PowerState.PAUSED):
            raise DriverError(f"Instance {uuid} is {power.name.lower()}; only a running or paused server live-migrates")
        rec = self.read_record(layout.dir)
        cfg = self._vm_config(layout)
        nodes = await self._qmp(layout, "query-named-block-nodes", {"flat": True})
        sizes = {str(n.get("node-name")): int((n.get("image") or {}).get("virtual-size") or 0)
                 for n in nodes or [] if isinstance(n, dict)}
        copied = {node: sizes.get(node, 0) for node, _fmt, _p in local_disks(cfg)}
        missing = [n for n, s in copied.items() if s <= 0]
        if missing:
            raise DriverError(f"Instance {uuid}: QEMU does not report the size of disk(s) {', '.join(missing)}")
        return {"record": rec, "disks": copied}

    async def live_migrate(self, uuid: str, target: dict[str, Any], *, downtime_ms: int = DOWNTIME_LIMIT_MS,
                           timeout: float | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """Mirror the local disks to the target's NBD exports, migrate the memory over TCP, and
        return QEMU's figures ({"downtime_ms", "total_time_ms", "ram_bytes", "disk_bytes"}).
        The source stays stopped (postmigrate) on success; on any failure it runs on. `progress`
        gets Nova's progress columns (memory_*/disk_* bytes) about once a second."""
        layout = self._existing(uuid)
        cfg = self._vm_config(layout)
        host = str(target["host"])
        exports = [str(e) for e in target.get("exports") or []]
        disk_bytes = sum(int(v) for v in (target.get("disk_sizes") or {}).values())
        limit = timeout or self.migration_timeout(cfg, disk_bytes)
        started = time.monotonic()
        jobs: list[str] = []
        migrating = False
        reporter = _Reporter(progress, disk_bytes)
        was_running = await self._qmp_status(layout) == "running"
        try:
            for node in exports:
                await self._qmp(layout, "blockdev-add", {
                    "driver": "nbd", "node-name": MIRROR_PREFIX + node, "export": node,
                    "server": {"type": "inet", **_inet(host, int(target["nbd_port"]))},
                })
                jobs.append(MIRROR_PREFIX + node)
                await self._qmp(layout, "blockdev-mirror", {
                    "job-id": MIRROR_PREFIX + node, "device": node, "target": MIRROR_PREFIX + node,
                    "sync": "full", "copy-mode": "write-blocking",
                })
            await self._wait_mirrors_ready(layout, jobs, started + limit, reporter)
            caps = [{"capability": "events", "state": True},
                    {"capability": "pause-before-switchover", "state": bool(jobs)}]
            await self._qmp(layout, "migrate-set-capabilities", {"capabilities": caps})
            await self._qmp(layout, "migrate-set-parameters",
                            {"downtime-limit": int(downtime_ms), "max-bandwidth": MAX_BANDWIDTH})
            migrating = True
            await self._qmp(layout, "migrate", {"uri": f"tcp:{_uri_host(host)}:{int(target['migrate_port'])}"})
            info = await self._wait_migration(layout, jobs, started + limit, reporter)
            migrating = False
        except BaseException as exc:
            await asyncio.shield(self._undo_source(layout, jobs, migrating, was_running))
            if isinstance(exc, DriverError):
                raise DriverError(f"live migration of {uuid} to {host} failed: {exc}") from exc
            raise
        ram = info.get("ram") or {}
        reporter.sink = None
        await reporter.memory(info)
        figures = {
            **reporter.values,
            "downtime_ms": int(info.get("downtime") or 0),
            "total_time_ms": int(info.get("total-time") or 0),
            "ram_bytes": int(ram.get("transferred") or 0),
            "disk_bytes": disk_bytes,
        }
        await asyncio.to_thread(note, layout, f"live migration to {host}: done in {figures['total_time_ms']} ms, "
                                              f"downtime {figures['downtime_ms']} ms")
        return figures

    async def _wait_mirrors_ready(self, layout: Layout, jobs: list[str], deadline: float,
                                  reporter: _Reporter) -> None:
        delay = 0.05
        while jobs:
            found = {str(j.get("device")): j for j in await self._qmp(layout, "query-block-jobs") or []}
            lost = [j for j in jobs if j not in found]
            if lost:
                raise DriverError(f"the disk copy {', '.join(lost)} ended before it was ready (NBD target lost?)")
            await reporter.disks(found[j] for j in jobs)
            if all(found[j].get("ready") for j in jobs):
                return
            if time.monotonic() > deadline:
                raise DriverError("the disk copy did not get ready in time")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def _wait_migration(self, layout: Layout, jobs: list[str], deadline: float,
                              reporter: _Reporter) -> dict[str, Any]:
        delay = 0.02
        while True:
            info = await self._qmp(layout, "query-migrate") or {}
            status = str(info.get("status", ""))
            await reporter.memory(info)
            if status == "completed":
                return dict(info)
            if status == "pre-switchover":
                # vCPUs stopped: complete the disk copies, then let the switchover go on.
                for job in jobs:
                    await self._qmp(layout, "block-job-cancel", {"device": job})
                await self._wait_jobs_gone(layout, jobs, deadline)
                jobs.clear()
                await self._qmp(layout, "migrate-continue", {"state": "pre-switchover"})
            elif status in ("failed", "cancelled", "cancelling"):
                raise DriverError(f"QEMU's migration {status}: {info.get('error-desc') or 'no reason given'}")
            if time.monotonic() > deadline:
                raise DriverError(f"the migration did not complete in time ({status})")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    async def _wait_jobs_gone(self, layout: Layout, jobs: list[str], deadline: float) -> None:
        while True:
            left = {str(j.get("device")) for j in await self._qmp(layout, "query-block-jobs") or []} & set(jobs)
            if not left:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"the disk copies {', '.join(sorted(left))} did not complete")
            await asyncio.sleep(0.05)

    async def _undo_source(self, layout: Layout, jobs: list[str], migrating: bool, was_running: bool) -> None:
        """Back to a source that runs alone: migration and disk copies cancelled, NBD nodes gone."""
        with contextlib.suppress(DriverError):
            if migrating:
                await self._qmp(layout, "migrate_cancel")
        for job in jobs:
            with contextlib.suppress(DriverError):
                await self._qmp(layout, "block-job-cancel", {"device": job, "force": True})
        with contextlib.suppress(DriverError):
            await self._wait_jobs_gone(layout, jobs, time.monotonic() + 30)
        for job in jobs:
            with contextlib.suppress(DriverError):
                await self._qmp(layout, "blockdev-del", {"node-name": job})
        with contextlib.suppress(DriverError):
            if was_running and await self._qmp_status(layout) in ("paused", "postmigrate"):
                await self._qmp(layout, "cont")

    async def recover_source(self, uuid: str, resume: bool) -> None:
        """A source whose move was cut short elsewhere (the conductor or the destination died):
        any migration and disk copy cancelled, the NBD nodes gone, the guest continued when
        `resume` (it ran before). Idempotent; nothing to do for a guest that runs alone."""
        layout = self._existing(uuid)
        jobs = [str(j.get("device")) for j in await self._qmp(layout, "query-block-jobs") or []
                if str(j.get("device", "")).startswith(MIRROR_PREFIX)]
        await self._undo_source(layout, jobs, True, resume)
        nodes = [str(n.get("node-name")) for n in await self._qmp(layout, "query-named-block-nodes", {"flat": True}) or []
                 if str(n.get("node-name", "")).startswith(MIRROR_PREFIX)]
        for name in nodes:
            with contextlib.suppress(DriverError):
                await self._qmp(layout, "blockdev-del", {"node-name": name})
        await asyncio.to_thread(note, layout, "live migration rolled back: the guest runs here")

    async def force_complete(self, uuid: str) -> None:
        """Nova's force_complete without post-copy: pause the guest, so the migration converges."""
        layout = self._existing(uuid)
        if await self._qmp_status(layout) == "running":
            await self._qmp(layout, "stop")

    async def drop_migrated(self, uuid: str) -> None:
        """The source once the destination runs the guest: QEMU goes, the files go (NICs are the
        network agent's: the record's taps went with QEMU)."""
        layout = self._layout(uuid)
        with contextlib.suppress(DriverError):
            await self._qmp(layout, "quit", timeout=5.0)
        await process.kill(layout, scan=True)
        await self._remove_dir(layout)
        self._op_locks.pop(uuid, None)

    # -- destination ----------------------------------------------------------------------------

    async def prepare_incoming(self, spec: InstanceSpec, source: dict[str, Any], listen: str,
                               ports: tuple[int, int] = DEFAULT_PORTS) -> dict[str, Any]:
        """Files and a waiting QEMU for an incoming server; the target for live_migrate."""
        rec = dict(source["record"])
        cfg = VmConfig.from_json(rec.get("vm") or {})
        sizes = {str(k): int(v) for k, v in (source.get("disks") or {}).items()}
        layout = Layout(await self.make_instance_dir(spec.uuid))
        async with Reverter() as revert:
            revert.add(self._remove_dir, layout)
            revert.add(process.kill, layout, scan=True)
            image = spec.image
            if cfg.kernel:
                if image is None or not image.kernel_path:
                    raise DriverError(f"Instance {spec.uuid} boots a kernel the destination has no copy of")
                await asyncio.to_thread(disks.link_or_copy, Path(image.kernel_path), layout.kernel)
                if cfg.initrd and image.ramdisk_path:
                    await asyncio.to_thread(disks.link_or_copy, Path(image.ramdisk_path), layout.initrd)
            if cfg.config_drive:
                await asyncio.to_thread(configdrive.build_iso, layout.config_iso, spec)
            for node, fmt, name in local_disks(cfg):
                if node not in sizes:
                    raise DriverError(f"the source did not give the size of disk {node}")
                await disks._qemu_img("create", "-q", "-f", fmt, str(layout.dir / name), str(sizes[node]))
            if rec.get("disks"):
                rec["disks"] = _volumes_here(rec, spec)
            for disk, _bus in blockdev.recorded(rec):
                blockdev.check(disk)  # the shared volumes: the same paths, which must exist here
                if disk.kind == "nbd":  # another host's volume: the same export, opened from here too
                    continue
                if not await asyncio.to_thread(os.path.exists, disk.path):
                    raise DriverError(f"volume {disk.volume_id} ({disk.path}) is not visible on this host: a live "
                                      "migration needs the block store on shared storage")
            if rec.get("nics"):
                rec["nics"] = _nics_here(rec, spec)
            await asyncio.to_thread(layout.console.touch)
            rec["created_at"] = rec.get("created_at") or time.time()
            first, last = ports
            cfg = dataclasses.replace(cfg, accel=self.accel)
            await self._start(layout, cfg, rec, why="incoming live migration", extra_argv=["-S", "-incoming", "defer"])
            exports = [node for node, _f, _p in local_disks(cfg)]
            await self._qmp(layout, "migrate-set-capabilities",
                            {"capabilities": [{"capability": "events", "state": True}]})
            # Two incoming moves at once must not pick the same free ports: QEMU binds them here.
            async with _ports_lock(self):
                mig_port, nbd_port = await asyncio.to_thread(free_ports, listen, 2, first, last)
                if exports:
                    await self._qmp(layout, "nbd-server-start",
                                    {"addr": {"type": "inet", "data": _inet(listen, nbd_port)}})
                await self._qmp(layout, "migrate-incoming", {"uri": f"tcp:{_uri_host(listen)}:{mig_port}"})
            for node in exports:
                await self._qmp(layout, "block-export-add", {
                    "type": "nbd", "id": MIRROR_PREFIX + node, "node-name": node, "name": node, "writable": True,
                })
            revert.commit()
        await asyncio.to_thread(note, layout, f"incoming live migration on {listen}:{mig_port} (NBD {nbd_port})")
        return {"host": listen, "migrate_port": mig_port, "nbd_port": nbd_port, "exports": exports,
                "disk_sizes": {n: sizes[n] for n in exports}}

    async def finish_incoming(self, uuid: str, resume: bool = True, timeout: float = 60.0) -> None:
        """The migration has ended on the source: the guest is here, running when `resume` (the
        server is ACTIVE; a PAUSED one stays paused)."""
        layout = self._existing(uuid)
        deadline = time.monotonic() + timeout
        while True:
            status = await self._qmp_status(layout)
            if status is None:
                raise DriverError(f"the incoming QEMU of {uuid} exited: {process.stderr_tail(layout)[-800:]}")
            if status not in ("inmigrate", ""):
                break
            if time.monotonic() > deadline:
                raise DriverError(f"the incoming migration of {uuid} did not end in time")
            await asyncio.sleep(0.05)
        info = await self._qmp(layout, "query-migrate") or {}
        if info.get("status") not in (None, "completed"):
            raise DriverError(f"the incoming migration of {uuid} failed: {info.get('error-desc') or info.get('status')}")
        with contextlib.suppress(DriverError):
            await self._qmp(layout, "nbd-server-stop")
        if resume:
            await self._qmp(layout, "cont")
        rec = self.read_record(layout.dir)
        rec["argv"] = process.build_argv(layout, self._vm_config(layout))  # a later start boots plainly
        await self.write_record(layout.dir, rec)
        await asyncio.to_thread(note, layout, "incoming live migration: the guest runs here")

    async def abort_incoming(self, uuid: str) -> None:
        """Nothing of the incoming server stays here (idempotent)."""
        layout = self._layout(uuid)
        await process.kill(layout, scan=True)
        await self._remove_dir(layout)
        self._op_locks.pop(uuid, None)


def _volumes_here(rec: dict[str, Any], spec: InstanceSpec) -> list[dict[str, Any]]:
    """The source's recorded volumes, those reached over NBD with this host's own key dir (the
    spec's DiskSpec: the agent wrote the attachment's key here); the same export, node names and
    buses, so the device state matches."""
    here = {d.volume_id: d for d in spec.disks if d.kind == "nbd"}
    return blockdev.record_docs([(here.get(d.volume_id, d) if d.kind == "nbd" else d, bus)
                                 for d, bus in blockdev.recorded(rec)])


def _nics_here(rec: dict[str, Any], spec: InstanceSpec) -> list[dict[str, Any]]:
    """The source's NICs (slots and buses: the device state must match) with this host's plumbing
    (the NicSpecs the destination's network agent plugged, by port)."""
    here = {n.port_id: n for n in spec.nics}
    out = []
    for entry, bus in netdev.recorded(rec):
        nic = here.get(entry.nic.port_id)
        if nic is None:
            raise DriverError(f"port {entry.nic.port_id} of instance {spec.uuid} is not plugged on this host")
        out.append((dataclasses.replace(entry, nic=nic), bus))
    return netdev.record_docs(out)


class _Reporter:
    """Progress reports at most every PROGRESS_EVERY seconds (a failing report is only logged)."""

    def __init__(self, sink: Progress | None, disk_total: int) -> None:
        self.sink = sink
        self.last = 0.0
        self.values: dict[str, Any] = {"disk_total": disk_total, "disk_processed": 0, "disk_remaining": disk_total}

    async def disks(self, jobs: Any) -> None:
        done = sum(int(j.get("offset") or 0) for j in jobs)
        total = int(self.values["disk_total"])
        self.values.update(disk_processed=min(done, total), disk_remaining=max(total - done, 0))
        await self._send()

    async def memory(self, info: dict[str, Any]) -> None:
        ram = info.get("ram") or {}
        if ram:
            self.values.update(memory_total=int(ram.get("total") or 0), memory_processed=int(ram.get("transferred") or 0),
                               memory_remaining=int(ram.get("remaining") or 0),
                               disk_processed=self.values["disk_total"], disk_remaining=0)
        await self._send()

    async def _send(self) -> None:
        now = time.monotonic()
        if self.sink is None or now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        try:
            await self.sink(dict(self.values))
        except Exception as exc:  # progress is informative: never the reason a migration fails
            LOG.warning("live migration progress not recorded: %s", exc)


def _ports_lock(drv: QemuCore) -> asyncio.Lock:
    lock = drv.__dict__.get("_live_ports_lock")
    if not isinstance(lock, asyncio.Lock):
        lock = drv.__dict__["_live_ports_lock"] = asyncio.Lock()
    return lock


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
