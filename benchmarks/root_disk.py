"""What a container's root disk (issue 8, 1.6) costs per boot, against the alternatives.

No cloud: the driver's own code (`compute/drivers/runc/rootdisk.py`) on a temporary dir, as root.

a) ours: per server, copy the formatted ext4 template (its data extents only), attach a loop
   device (LOOP_CONFIGURE, autoclear) and mount it (mount(2)), from a thread: what spawn awaits
   (`RootDisks.create`, including making upper/ and work/). Wall time, and the CPU time of the
   thread that does it. Teardown (umount, unlink) timed separately: it is on the delete path.
b) mkfs per server: `mkfs.ext4` (no journal, lazy inode tables, the same options as our
   template) of a fresh sparse file, then the same attach and mount.
c) mkfs.xfs per server (when xfsprogs is installed): the same with XFS.
d) one-time: formatting the template (once per disk size per state dir) and the driver's probe.
e) in the boot path (root and runc): `RuncDriver.spawn` of the busybox image, alternately with
   `runc_root_disk: ext4` and `none` on two drivers of one state dir, each destroyed right after;
   p50 of each and the difference, which is what a boot pays for its disk under the load of the run.

XFS or ext4 project quotas (one filesystem per node, one ioctl + quotactl per server) would cost
less still, but this kernel has neither (CONFIG_XFS_QUOTA and CONFIG_QFMT_V2 unset): see
docs/architecture.md. Prints p50/p90 in ms and writes --json.

    .venv/bin/python benchmarks/root_disk.py [-n 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.runc import rootdisk


def pcts(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50_ms": round(1000 * statistics.median(s), 2), "p90_ms": round(1000 * s[int(0.9 * (len(s) - 1))], 2)}


def timed_thread(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall, CPU of this thread) of fn, in seconds."""
    w0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w0, time.thread_time() - c0


def teardown(idir: Path) -> float:
    t0 = time.perf_counter()
    rootdisk._unmount(idir / rootdisk.DISK_DIR)
    shutil.rmtree(idir)
    return time.perf_counter() - t0


def mkfs_per_server(base: Path, n: int, argv: list[str]) -> dict[str, Any]:
    walls, downs = [], []
    for i in range(n):
        idir = base / f"m{i}"
        idir.mkdir()
        image, mnt = idir / rootdisk.DISK_FILE, idir / rootdisk.DISK_DIR

        def make(image: Path = image, mnt: Path = mnt) -> None:
            with open(image, "wb") as fh:
                fh.truncate(rootdisk.GIB)
            subprocess.run([*argv, str(image)], check=True, capture_output=True)  # noqa: S603  # fixed argv
            mnt.mkdir()
            fstype = "xfs" if "xfs" in argv[0] else "ext4"
            lfd, dev = rootdisk._attach(image)
            try:
                import ctypes

                if rootdisk._LIBC.mount(dev.encode(), os.fsencode(mnt), fstype.encode(), ctypes.c_ulong(6), None) != 0:
                    raise OSError(ctypes.get_errno(), "mount")
            finally:
                os.close(lfd)

        wall, _cpu = timed_thread(make)
        walls.append(wall)
        downs.append(teardown(idir))
    return {**pcts(walls), "teardown": pcts(downs)}


async def run(n: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="cumulo-rootdisk-bench-"))
    out: dict[str, Any] = {"n": n, "loadavg_1m_start": os.getloadavg()[0]}
    try:
        disks = rootdisk.RootDisks(base, "ext4")
        t0 = time.perf_counter()
        await disks.template(1)
        out["template_mkfs_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        t0 = time.perf_counter()
        await disks.probe()
        out["probe_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        walls, cpus, downs = [], [], []
        for i in range(n):
            idir = base / f"s{i}"
            idir.mkdir()
            c0 = time.process_time()
            w0 = time.perf_counter()
            await disks.create(idir, 1)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            downs.append(await asyncio.to_thread(teardown, idir))
        out["ours"] = {**pcts(walls), "cpu": pcts(cpus), "teardown": pcts(downs)}
        ext4 = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-O", "^has_journal",
                "-E", "lazy_itable_init=1,nodiscard"]
        out["mkfs_ext4_per_server"] = await asyncio.to_thread(mkfs_per_server, base, n, ext4)
        if shutil.which("mkfs.xfs"):
            out["mkfs_xfs_per_server"] = await asyncio.to_thread(mkfs_per_server, base, n, ["mkfs.xfs", "-q", "-f"])
    finally:
        for idir in base.iterdir():
            if (idir / rootdisk.DISK_DIR).is_dir():
                try:
                    rootdisk._unmount(idir / rootdisk.DISK_DIR)
                except OSError:
                    pass
        shutil.rmtree(base, ignore_errors=True)
    if os.geteuid() == 0 and shutil.which("runc"):
        out["spawn"] = await spawn_pair(n)
    out["loadavg_1m_end"] = os.getloadavg()[0]
    return out


async def spawn_pair(n: int) -> dict[str, Any]:
    import uuid as uuidlib

    from cumulo import conf as conf_mod
    from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec
    from cumulo.compute.drivers.runc import RuncDriver
    from cumulo.image.demo.busybox import build_busybox

    base = Path(tempfile.mkdtemp(prefix="cumulo-rootdisk-spawn-"))
    try:
        image_file = base / "busybox.tar"
        build_busybox(image_file)
        image = ImageSpec(id="busybox", path=str(image_file), disk_format="raw", container_format="docker")
        settings = conf_mod.load(env={}, state_dir=base / "state")
        drivers = {mode: RuncDriver(settings.replace(extra={"runc_stop_grace": 0.2, "runc_root_disk": mode}), "bench")
                   for mode in ("ext4", "none")}
        for drv in drivers.values():
            await drv.init_host()
        times: dict[str, list[float]] = {mode: [] for mode in drivers}
        for i in range(n + 2):
            for mode, drv in drivers.items():
                spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name="b", hostname="b", project_id="p",
                                    flavor=FlavorSpec(vcpus=1, memory_mb=64, root_gb=1), image=image)
                t0 = time.perf_counter()
                await drv.spawn(spec)
                if i >= 2:  # the first two unpack the image and warm up
                    times[mode].append(time.perf_counter() - t0)
                await drv.destroy(spec.uuid)
        res: dict[str, Any] = {mode: pcts(v) for mode, v in times.items()}
        res["disk_costs_p50_ms"] = round(res["ext4"]["p50_ms"] - res["none"]["p50_ms"], 2)
        return res
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()
    res = asyncio.run(run(args.n))
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
