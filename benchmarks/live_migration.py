"""Live migration of the tiny VM between two QEMU drivers on this machine (each its own state dir,
the "underlay" 127.0.0.1): the QEMU move itself, the steps the agents run (compute/agent/live.py),
without the control plane around them.

One guest (TCG, 128 MB, a 1 GB root disk and a 1 GB ephemeral disk, both mirrored over NBD) boots
on host A, then moves A -> B -> A ... `-n` times. Per move: the downtime QEMU measured (ms), QEMU's
total migration time, and the wall time of prepare (destination files and waiting QEMU) + move +
finish + drop (what the conductor waits for), as p50/max; the guest's uptime must keep growing
(no reboot), else the run says so. Figures only: nothing is asserted.

    .venv/bin/python benchmarks/live_migration.py [-n 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec
from cumulo.compute.drivers.qemu import QemuDriver, process
from cumulo.image.demo import tinyvm

USER_DATA = b"""#!/bin/sh
(while :; do echo "tick $(cut -d' ' -f1 /proc/uptime)"; sleep 1; done) &
"""
PORTS = (49500, 49560)


async def _driver(root: Path, host: str) -> QemuDriver:
    conf = conf_mod.load(env={}, state_dir=root / host / "state")
    conf = conf.replace(extra={**conf.extra, "qemu_accel": "tcg", "qemu_boot_timeout": 120, "qemu_stop_timeout": 5})
    drv = load_driver("qemu", conf, host, local=False)
    assert isinstance(drv, QemuDriver)
    await drv.init_host()
    return drv


def _last_tick(drv: QemuDriver, uid: str) -> float:
    path = drv.dir / uid / "console.log"
    ticks = re.findall(r"tick ([0-9.]+)", path.read_text(errors="replace")) if path.exists() else []
    return float(ticks[-1]) if ticks else 0.0


async def _wait_tick(drv: QemuDriver, uid: str, above: float, timeout: float = 300.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = _last_tick(drv, uid)
        if t > above:
            return t
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no tick above {above} on {drv.host_name}")


async def run(moves: int) -> dict[str, Any]:
    cache = Path(os.environ.get("CUMULO_TEST_BUILD_CACHE") or tinyvm.default_cache())
    art = await tinyvm.build_tiny_vm(cache / "tiny-vm-artifacts", cache)
    image = ImageSpec(id=str(uuidlib.uuid4()), path=str(art.disk), disk_format="qcow2", container_format="bare",
                      properties={"kernel_id": "aki", "ramdisk_id": "ari", "os_command_line": art.cmdline},
                      kernel_path=str(art.kernel), ramdisk_path=str(art.ramdisk))
    uid = str(uuidlib.uuid4())
    spec = InstanceSpec(uuid=uid, name="lm-bench", hostname="lm-bench", project_id="p", image=image,
                        flavor=FlavorSpec(vcpus=1, memory_mb=128, root_gb=1, ephemeral_gb=1), user_data=USER_DATA)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cumulo-lm-bench-") as tmp:
        a, b = await _driver(Path(tmp), "bench-a"), await _driver(Path(tmp), "bench-b")
        try:
            await a.spawn(spec)
            last = await _wait_tick(a, uid, 0.0)
            src, dst = a, b
            for _ in range(moves):
                started = time.monotonic()
                target = await dst.prepare_incoming(spec, await src.live_migration_source(uid), "127.0.0.1", PORTS)
                prepared = time.monotonic()
                figures = await src.live_migrate(uid, target)
                await dst.finish_incoming(uid)
                await src.drop_migrated(uid)
                done = time.monotonic()
                tick = await _wait_tick(dst, uid, last)
                rows.append({"from": src.host_name, "to": dst.host_name, "downtime_ms": figures["downtime_ms"],
                             "qemu_total_ms": figures["total_time_ms"], "prepare_s": round(prepared - started, 3),
                             "wall_s": round(done - started, 3), "uptime_went_on": tick > last})
                last = tick
                src, dst = dst, src
        finally:
            for drv in (a, b):
                await drv.destroy(uid)
            for drv in (a, b):  # by pid, whatever a failed move left
                for pid in process.scan_pids(uid, drv._layout(uid).pidfile):
                    os.kill(pid, 9)

    def p50(key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    return {"moves": rows, "downtime_ms_p50": p50("downtime_ms"), "downtime_ms_max": max(r["downtime_ms"] for r in rows),
            "wall_s_p50": p50("wall_s"), "prepare_s_p50": p50("prepare_s"),
            "uptime_went_on": all(r["uptime_went_on"] for r in rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=6, help="moves (default 6)")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.n)), indent=2))


if __name__ == "__main__":
    main()
