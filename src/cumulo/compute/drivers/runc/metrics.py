"""What a runc container uses: one reading of its cgroup (v1) and /proc, behind both its Nova
diagnostics and its Prometheus series, so the two always agree.

`read_sample` is the sampling function: plain file reads (cgroup.usage, /proc/<pid>/net/dev,
config.json), run in a thread. `sample_instances` (the Metrics capability) takes runc's state of
every container from one `runc list` and samples them all in one thread; `diagnostics` takes one
`runc state` and renders the sample in Nova's 2.48 shape.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import files
from cumulo.compute.drivers.base import DIAGNOSTICS_STATE, DiskSample, InstanceSample, NicSample
from cumulo.compute.drivers.runc import cgroup
from cumulo.compute.drivers.runc.bundle import CPU_PERIOD_US
from cumulo.compute.drivers.runc.core import CONFIG, RuncCore
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import DriverError

MIB = 1024 * 1024


def _uptime(created: Any) -> int:
    """Seconds since runc's `created` stamp (RFC 3339 with nanoseconds)."""
    raw = str(created or "")
    if not raw:
        return 0
    head, dot, frac = raw.partition(".")
    if dot:  # fromisoformat takes at most microseconds: cut the fraction, keep the zone
        digits = "".join(c for c in frac if c.isdigit())
        raw = f"{head}.{digits[:6]}{frac[len(digits):]}"
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return max(0, int(time.time() - when.timestamp()))


def _nics(pid: int) -> tuple[NicSample, ...]:
    """Counters of the container's own interfaces (loopback aside), from its /proc/<pid>/net/dev."""
    out: list[NicSample] = []
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return ()
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        f = rest.split()
        if name == "lo" or len(f) < 12 or "/" in name:
            continue
        try:
            mac: str | None = Path(f"/proc/{pid}/root/sys/class/net/{name}/address").read_text().strip()
        except OSError:
            mac = None
        try:
            out.append(NicSample(
                mac_address=mac,
                rx_octets=int(f[0]), rx_packets=int(f[1]), rx_errors=int(f[2]), rx_drop=int(f[3]),
                tx_octets=int(f[8]), tx_packets=int(f[9]), tx_errors=int(f[10]), tx_drop=int(f[11]),
            ))
        except ValueError:
            continue
    return tuple(out)


def has_config_drive(config: dict[str, Any], idir: Path) -> bool:
    """A bind mount of something inside the instance dir is the config drive."""
    for m in config.get("mounts", []):
        src = str(m.get("source", ""))
        is_bind = m.get("type") == "bind" or {"bind", "rbind"} & set(m.get("options") or [])
        if is_bind and src.startswith(str(idir) + "/"):
            return True
    return False


@dataclass(frozen=True)
class Reading:
    sample: InstanceSample
    config: dict[str, Any]  # the bundle's config.json (limits, mounts)
    quota: int  # CFS quota and period (µs) of the flavor
    period: int


class Metrics(RuncCore):
    def read_sample(self, uuid: str, st: dict[str, Any] | None) -> Reading:
        """THE sampling function of the runc driver (file reads: call it in a thread). `st` is runc's
        state of the container (`runc state` or its `runc list` entry), None when runc has none."""
        idir = self.dir / uuid
        cid = container_id(uuid)
        status = None if st is None else str(st.get("status"))
        power = self._power(uuid, status)
        config = files.read_json(idir / CONFIG) or {}
        res = config.get("linux", {}).get("resources", {})
        period = int(res.get("cpu", {}).get("period") or CPU_PERIOD_US)
        quota = int(res.get("cpu", {}).get("quota") or period)
        live = st is not None and status in ("running", "paused")
        use = cgroup.usage(cid) if st is not None else None
        pid = int(st.get("pid") or 0) if st is not None else 0
        limit = (use.memory_limit if use else None) or int(res.get("memory", {}).get("limit") or 0) or None
        pids_limit = (use.pids_limit if use else None) or int(res.get("pids", {}).get("limit") or 0) or None
        sample = InstanceSample(
            uuid=uuid,
            power_state=power,
            uptime=_uptime(st.get("created")) if live and st is not None else 0,
            cpu_ns=((use.cpu_ns if use else None) if live else None,),
            memory_used=(use.memory_used if use else None) if live else None,
            memory_limit=limit,
            pids=(use.pids if use else None) if live else None,
            pids_limit=pids_limit,
            disks=(DiskSample(
                read_bytes=use.read_bytes if use else 0, read_requests=use.read_requests if use else 0,
                write_bytes=use.write_bytes if use else 0, write_requests=use.write_requests if use else 0,
            ),),
            nics=_nics(pid) if live and pid > 0 else (),
        )
        return Reading(sample, config, quota, period)

    async def sample_instances(self, uuids: list[str]) -> list[InstanceSample]:
        """Samples of those of `uuids` with a finished bundle here: one `runc list`, one thread."""
        listing = await self.runc.list_full()

        def read_all() -> list[InstanceSample]:
            out = []
            for uuid in uuids:
                try:
                    idir = self.instance_dir(uuid)
                except DriverError:
                    continue
                if not self.has_record(idir):
                    continue
                out.append(self.read_sample(uuid, listing.get(container_id(uuid))).sample)
            return out

        return await asyncio.to_thread(read_all)

    async def get_diagnostics(self, uuid: str) -> dict[str, Any]:
        """Nova's 2.48 shape, rendered from read_sample.

        cpu_details holds one entry for the whole container (a container has no vCPUs of its own):
        `time` is cpuacct.usage in ns, `utilisation` the average % of the flavor's CPU quota since
        the container started, and two extra keys, `pids` (pids.current) and `pids_limit` (pids.max).
        memory_details is in MiB: `used` = memory.usage_in_bytes, `maximum` = memory.limit_in_bytes.
        disk_details has the blkio counters of the container's cgroup.
        """
        idir = self.existing_dir(uuid)
        st = await self.runc.state(container_id(uuid))
        reading = await asyncio.to_thread(self.read_sample, uuid, st)
        s = reading.sample
        cpu_ns = s.cpu_ns[0] if s.cpu_ns else None
        util = None
        if cpu_ns is not None and s.uptime > 0:
            util = min(100, int(100 * cpu_ns / (s.uptime * 1e9 * reading.quota / reading.period)))
        live = st is not None and str(st.get("status")) in ("running", "paused")
        return {
            "state": DIAGNOSTICS_STATE.get(s.power_state, "pending"),
            "driver": "runc",
            "hypervisor": "runc",
            "hypervisor_os": "linux",
            "uptime": s.uptime,
            "config_drive": has_config_drive(reading.config, idir),
            "num_cpus": max(1, -(-reading.quota // reading.period)),
            "num_nics": len(s.nics),
            "num_disks": 1,
            "memory_details": {"maximum": (s.memory_limit or 0) // MIB, "used": (s.memory_used or 0) // MIB},
            "cpu_details": [{
                "id": None, "time": cpu_ns, "utilisation": util,
                "pids": s.pids if live else 0,
                "pids_limit": s.pids_limit,
            }],
            "nic_details": [{
                "mac_address": n.mac_address,
                "rx_octets": n.rx_octets, "rx_packets": n.rx_packets, "rx_errors": n.rx_errors, "rx_drop": n.rx_drop,
                "rx_rate": None,
                "tx_octets": n.tx_octets, "tx_packets": n.tx_packets, "tx_errors": n.tx_errors, "tx_drop": n.tx_drop,
                "tx_rate": None,
            } for n in s.nics],
            "disk_details": [{
                "read_bytes": d.read_bytes, "read_requests": d.read_requests,
                "write_bytes": d.write_bytes, "write_requests": d.write_requests, "errors_count": d.errors,
            } for d in s.disks],
        }
