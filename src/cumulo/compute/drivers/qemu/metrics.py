"""What a QEMU guest uses: one reading from QMP and /proc, behind both its Nova diagnostics and
its Prometheus series, so the two always agree.

`read_sample` is the sampling function: QMP query-status, query-cpus-fast (the vCPU threads),
query-blockstats and query-memory-size-summary on the server's socket; then, in a thread, the
CPU time of each vCPU thread and the RSS of the guest's RAM mapping from /proc/<pid>. There is no
balloon device, so "used" is what the host really holds of the guest's RAM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from typing import Any

from cumulo.compute.drivers.base import DIAGNOSTICS_STATE, DiskSample, InstanceSample
from cumulo.compute.drivers.qemu import process, qmp
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import DriverError

MIB = 1 << 20
_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: str) -> list[str]:
    """Fields of a /proc stat file after the command name (field 3 of proc(5) is index 0)."""
    with open(path) as fh:
        return fh.read().rsplit(")", 1)[1].split()


def _uptime(pid: int) -> int:
    """Seconds since the QEMU process started (field 22 of /proc/<pid>/stat)."""
    try:
        start = int(_stat_fields(f"/proc/{pid}/stat")[19]) / _TICK
        with open("/proc/uptime") as fh:
            now = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, int(now - start))


def _thread_cpu_ns(pid: int, tid: int) -> int | None:
    """utime + stime of one vCPU thread, in ns."""
    try:
        f = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        return (int(f[11]) + int(f[12])) * 10**9 // _TICK
    except (OSError, ValueError, IndexError):
        return None


def _guest_ram_used(pid: int, memory_mb: int) -> int:
    """Bytes of guest RAM the host really holds: the RSS of QEMU's anonymous mapping of the RAM
    (the one of exactly -m size); the process RSS (which also counts QEMU's own and TCG's buffers)
    bounded by -m when no such mapping shows."""
    want_kb = memory_mb * 1024
    best = -1
    size_kb = 0
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            for line in fh:
                if line.startswith("Size:"):
                    size_kb = int(line.split()[1])
                elif line.startswith("Rss:") and size_kb == want_kb:
                    best = max(best, int(line.split()[1]))
    except (OSError, ValueError, IndexError):
        pass
    if best >= 0:
        return min(want_kb, best) * 1024
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return min(want_kb, int(line.split()[1])) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _disk(stats: dict[str, Any] | None) -> DiskSample:
    s = stats or {}
    return DiskSample(
        read_bytes=int(s.get("rd_bytes") or 0), read_requests=int(s.get("rd_operations") or 0),
        write_bytes=int(s.get("wr_bytes") or 0), write_requests=int(s.get("wr_operations") or 0),
        errors=int(s.get("failed_rd_operations") or 0) + int(s.get("failed_wr_operations") or 0)
        + int(s.get("failed_flush_operations") or 0),
    )


@dataclass(frozen=True)
class Reading:
    sample: InstanceSample
    config: VmConfig
    cpu_ids: tuple[int, ...]  # QMP cpu-index of each entry of sample.cpu_ns


class Metrics(QemuCore):
    async def read_sample(self, layout: Layout) -> Reading:
        """THE sampling function of the QEMU driver: QMP on the loop, /proc reads in a thread."""
        cfg = await asyncio.to_thread(self._vm_config, layout)
        pid = await asyncio.to_thread(process.live_pid, layout)
        status: str | None = None  # QMP's run state; None: no QEMU; "": QEMU runs but QMP is silent
        cpus: list[dict[str, Any]] = []
        blocks: list[dict[str, Any]] = []
        memory_mb = cfg.memory_mb
        if pid is not None:
            status = ""
            # One QMP session for the four queries, under the driver's per-server QMP lock.
            with contextlib.suppress(DriverError, OSError, asyncio.TimeoutError):
                async with self._qmp_locks.setdefault(layout.uuid, asyncio.Lock()), qmp.session(layout.qmp) as q:
                    res = await q.execute("query-status")
                    status = str(res.get("status", "")) if isinstance(res, dict) else ""
                    cpus = [c for c in await q.execute("query-cpus-fast") or [] if isinstance(c, dict)]
                    blocks = [b for b in await q.execute("query-blockstats") or []
                              if isinstance(b, dict) and b.get("qdev")]
                    summary = await q.execute("query-memory-size-summary") or {}
                memory_mb = int(summary.get("base-memory") or memory_mb * MIB) // MIB
            if not status:  # QMP failed: QEMU quit meanwhile (None), or runs without answering ("")
                status = "" if await asyncio.to_thread(process.live_pid, layout) is not None else None
                pid = None
        power = await asyncio.to_thread(self._power, layout, status)

        def host_side() -> tuple[int, list[int | None], int]:
            assert pid is not None
            times = [_thread_cpu_ns(pid, int(c.get("thread-id") or 0)) for c in cpus]
            return _uptime(pid), times, _guest_ram_used(pid, memory_mb)

        uptime, times, used = (await asyncio.to_thread(host_side)) if pid is not None else (0, [], 0)
        if cpus:
            cpu_ns: tuple[int | None, ...] = tuple(times)
            ids = tuple(int(c.get("cpu-index", i)) for i, c in enumerate(cpus))
        else:
            cpu_ns, ids = (None,) * cfg.vcpus, tuple(range(cfg.vcpus))
        if blocks:
            disk_samples = tuple(_disk(b.get("stats")) for b in blocks)
        else:  # no QEMU: the disks it would have, with nothing counted
            disk_samples = tuple(_disk(None) for _ in range(1 + int(cfg.ephemeral) + int(cfg.swap) + int(cfg.config_drive)))
        sample = InstanceSample(
            uuid=layout.uuid, power_state=power, uptime=uptime, cpu_ns=cpu_ns,
            memory_used=used if pid is not None else None, memory_limit=memory_mb * MIB,
            disks=disk_samples,
        )
        return Reading(sample, cfg, ids)

    async def sample_instances(self, uuids: list[str]) -> list[InstanceSample]:
        """Samples of those of `uuids` with a finished instance dir here (one QMP round per guest)."""
        out = []
        for uuid in uuids:
            try:
                layout = self._layout(uuid)
            except DriverError:
                continue
            if not await asyncio.to_thread(layout.record.is_file):
                continue
            with contextlib.suppress(DriverError):  # removed meanwhile
                out.append((await self.read_sample(layout)).sample)
        return out

    async def get_diagnostics(self, uuid: str) -> dict[str, Any]:
        """Nova's 2.48 shape, rendered from read_sample.

        cpu_details: one entry per vCPU (QMP query-cpus-fast): `id` its index, `time` the ns its
        thread ran (/proc/<pid>/task/<tid>/stat), `utilisation` its average % since QEMU started.
        memory_details in MiB: `maximum` the guest's RAM (-m), `used` what the host holds of it.
        disk_details: QMP query-blockstats of each attached disk (root, ephemeral, config drive).
        uptime: seconds since the QEMU process started (0 when no guest runs).
        """
        layout = self._existing(uuid)
        reading = await self.read_sample(layout)
        s, cfg = reading.sample, reading.config
        cpu_details = [
            {"id": i, "time": t,
             "utilisation": min(100, int(100 * t / (s.uptime * 1e9))) if t is not None and s.uptime > 0 else None}
            for i, t in zip(reading.cpu_ids, s.cpu_ns, strict=True)
        ]
        return {
            "state": DIAGNOSTICS_STATE.get(s.power_state, "pending"),
            "driver": self.info.name,
            "hypervisor": "kvm" if cfg.accel == "kvm" else "qemu",
            "hypervisor_os": "linux",
            "uptime": s.uptime,
            "config_drive": bool(cfg.config_drive),
            "num_cpus": len(s.cpu_ns) or cfg.vcpus,
            "num_nics": 0,
            "num_disks": len(s.disks),
            "memory_details": {"maximum": (s.memory_limit or 0) // MIB, "used": (s.memory_used or 0) // MIB},
            "cpu_details": cpu_details,
            "nic_details": [],
            "disk_details": [{
                "read_bytes": d.read_bytes, "read_requests": d.read_requests,
                "write_bytes": d.write_bytes, "write_requests": d.write_requests, "errors_count": d.errors,
            } for d in s.disks],
        }
