"""The reading the PaaS autoscaler takes (drivers' sample_instances, behind the agent's
sample_instances) on a real busybox container: a CPU burner started by exec raises the container's
cgroup CPU time while it runs, and it stops rising once the burner is killed; memory used and the
flavor's limit are there."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from test_runc_driver import (  # noqa: F401  # runc_driver: a fixture
    RUNC_MISSING,
    runc_driver,
    spec_for,
)

from cumulo.compute.drivers.base import Capability, InstanceSample, driver_for
from cumulo.compute.drivers.execspec import ExecRequest
from cumulo.compute.drivers.runc import RuncDriver

pytestmark = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")

BURN = ("busybox sh -c 'echo $$ > /tmp/burn.pid; while :; do :; done' </dev/null >/dev/null 2>&1 &\n")


async def read(drv: RuncDriver, uuid: str) -> tuple[float, InstanceSample]:
    [sample] = await driver_for(drv, Capability.METRICS).sample_instances([uuid])
    return time.monotonic(), sample


def cpu(sample: InstanceSample) -> int:
    [ns] = sample.cpu_ns
    assert ns is not None
    return ns


async def test_a_burner_raises_the_cpu_time_until_it_is_killed(runc_driver: RuncDriver, tmp_path: Path) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "burn", memory_mb=64)
    await runc_driver.spawn(spec)
    ex = driver_for(runc_driver, Capability.EXEC)
    t0, idle = await read(runc_driver, spec.uuid)
    assert idle.memory_limit == 64 << 20 and idle.memory_used is not None and idle.memory_used > 0

    started = await ex.exec_in(spec.uuid, ExecRequest(argv=("/bin/sh", "-s"), stdin=BURN.encode(),
                                                      env={"PATH": "/bin"}, timeout=30))
    assert started.exit_code == 0
    deadline = time.monotonic() + 60
    while True:  # the burner runs on after the exec returned: the cgroup's CPU time climbs
        t1, busy = await read(runc_driver, spec.uuid)
        if cpu(busy) - cpu(idle) >= 500_000_000:
            break
        assert time.monotonic() < deadline, f"CPU time rose only {cpu(busy) - cpu(idle)} ns in {t1 - t0:.1f} s"
        await asyncio.sleep(0.2)
    assert busy.uptime >= 0

    stopped = await ex.exec_in(spec.uuid, ExecRequest(
        argv=("/bin/sh", "-c", "busybox kill $(busybox cat /tmp/burn.pid)"), env={"PATH": "/bin"}, timeout=30))
    assert stopped.exit_code == 0, stopped.stderr
    deadline = time.monotonic() + 60
    last_t, last = await read(runc_driver, spec.uuid)
    while True:  # once killed, a second's CPU time is a small fraction of a second
        await asyncio.sleep(1.0)
        now_t, now = await read(runc_driver, spec.uuid)
        if (cpu(now) - cpu(last)) / ((now_t - last_t) * 1e9) < 0.2:
            break
        assert time.monotonic() < deadline, "the container's CPU time still climbs after the burner was killed"
        last_t, last = now_t, now
