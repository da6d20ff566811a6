"""What this machine offers (CPUs, memory, disk), for drivers that run on it.

Shared by every driver that reports the real host; drivers never import each other, so this lives
beside them rather than in one of them.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.base import HostResources


def meminfo_mb() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 1024


def cpu_info(vcpus: int, model: str, vendor: str) -> dict[str, Any]:
    return {
        "arch": platform.machine() or "x86_64",
        "model": model,
        "vendor": vendor,
        "topology": {"sockets": 1, "cores": vcpus, "threads": 1},
        "features": [],
    }


def local_host_resources(disk_dir: Path, *, model: str = "host", vendor: str = "linux") -> HostResources:
    """The real host: all CPUs, MemTotal, and the size of the filesystem holding `disk_dir`."""
    vcpus = os.cpu_count() or 1
    disk_dir.mkdir(parents=True, exist_ok=True)
    disk_gb = shutil.disk_usage(disk_dir).total // (1 << 30)
    return HostResources(vcpus=vcpus, memory_mb=meminfo_mb(), local_gb=int(disk_gb), cpu_info=cpu_info(vcpus, model, vendor))
