"""The cgroup (v1) side of one runc container: what it uses, and removing what runc leaves behind.

runc puts container `cid` at cgroupsPath "/cumulo/<cid>", i.e. `/sys/fs/cgroup/<controller>/cumulo/<cid>`
for every mounted v1 hierarchy. Reads here are plain file reads (no runc call): cheap enough for
diagnostics. Removal is rmdir only, never recursive: the kernel refuses to remove a cgroup that
still has tasks or children, which is the safety we want on a host shared with other clouds.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "cumulo"  # the "/cumulo" of cgroupsPath


def path_of(controller: str, cid: str) -> Path:
    return ROOT / controller / PARENT / cid


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def read_int(controller: str, cid: str, name: str) -> int | None:
    """An integer cgroup file ("max" reads as None: no limit)."""
    raw = _read(path_of(controller, cid) / name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def _blkio(cid: str, name: str) -> tuple[int, int]:
    """(read, write) totals from a blkio.throttle.* file ("<maj:min> Read <n>" lines)."""
    raw = _read(path_of("blkio", cid) / name) or ""
    read = write = 0
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
    return read, write


@dataclass(frozen=True)
class Usage:
    cpu_ns: int | None  # cpuacct.usage: CPU time of every task, all CPUs
    memory_used: int | None  # memory.usage_in_bytes (page cache included, as the kernel counts it)
    memory_limit: int | None  # memory.limit_in_bytes
    pids: int | None  # pids.current
    pids_limit: int | None  # pids.max
    read_bytes: int = 0
    write_bytes: int = 0
    read_requests: int = 0
    write_requests: int = 0


def usage(cid: str) -> Usage:
    """What the container uses now (None where a controller has no dir: e.g. the container is gone)."""
    rb, wb = _blkio(cid, "blkio.throttle.io_service_bytes")
    rr, wr = _blkio(cid, "blkio.throttle.io_serviced")
    return Usage(
        cpu_ns=read_int("cpuacct", cid, "cpuacct.usage"),
        memory_used=read_int("memory", cid, "memory.usage_in_bytes"),
        memory_limit=read_int("memory", cid, "memory.limit_in_bytes"),
        pids=read_int("pids", cid, "pids.current"),
        pids_limit=read_int("pids", cid, "pids.max"),
        read_bytes=rb, write_bytes=wb, read_requests=rr, write_requests=wr,
    )


def _controllers() -> list[Path]:
    try:
        return sorted(p for p in ROOT.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def leftovers(cid: str) -> list[Path]:
    """Every `/sys/fs/cgroup/*/cumulo/<cid>` that exists."""
    return [d / PARENT / cid for d in _controllers() if (d / PARENT / cid).is_dir()]


def remove(cid: str) -> list[Path]:
    """rmdir the container's cgroups (after runc delete, normally none are left); return those removed."""
    gone = []
    for path in leftovers(cid):
        with contextlib.suppress(OSError):  # busy (tasks left) or gone meanwhile: leave it
            os.rmdir(path)
            gone.append(path)
    return gone


def missing_parents() -> set[Path]:
    """The `/sys/fs/cgroup/*/cumulo` dirs that do not exist yet (runc will create them for us)."""
    return {d / PARENT for d in _controllers() if not (d / PARENT).exists()}


def remove_empty_parents(ours: set[Path]) -> None:
    """rmdir those of `ours` (parents this driver saw created) that hold no container cgroup now."""
    for parent in ours:
        try:
            if any(p.is_dir() for p in parent.iterdir()):
                continue
            os.rmdir(parent)
        except OSError:
            continue  # gone, or a container appeared meanwhile: the kernel refuses, which is right
