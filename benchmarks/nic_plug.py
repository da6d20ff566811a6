"""What a NIC costs a container's boot, and what plugging one costs by itself (issue 10). No cloud:
the drivers' and netplane's own code, as root, on a network made here (`cnet-<uuid>` + br0).

a) in the boot path: `RuncDriver.spawn` of the busybox image, alternately with no NIC and with one
   NicSpec on the network, each destroyed right after; p50/p90 of each and the difference of the
   p50s (the issue's target: a NIC adds <= 30 ms at p50 to API-to-ACTIVE).
b) the plumbing alone: `netplane.nic.plug_veth` into a fresh namespace then unplug; `open_tap`
   (the VM's tap, made in the network's namespace from a thread) then close.
c) hot attach and detach of a NIC on a running container.

Everything it made (containers, namespaces) is removed by name at the end.

    .venv/bin/python benchmarks/nic_plug.py [-n 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec, NicSpec
from cumulo.compute.drivers.runc import RuncDriver
from cumulo.image.demo.busybox import build_busybox
from cumulo.netplane import bridge, netns, nic


def pcts(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50_ms": round(1000 * statistics.median(s), 2), "p90_ms": round(1000 * s[int(0.9 * (len(s) - 1))], 2)}


def nic_on(net: str, k: int) -> NicSpec:
    port = str(uuidlib.uuid4())
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in os.urandom(3))
    return NicSpec(port_id=port, mac=mac, netns=net, bridge=bridge.BRIDGE, device=netns.port_device(port),
                   addresses=(f"10.{k // 250 % 250}.{k % 250}.5/24",), gateway=None)


async def run(n: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="nic-bench-"))
    net = netns.network_ns(str(uuidlib.uuid4()))
    scratch = f"nicbench-{uuidlib.uuid4().hex[:8]}"
    drv = load_driver("runc", conf_mod.load(env={}, state_dir=tmp / "state").replace(
        extra={"runc_stop_grace": 0.5}), "bench", local=True)
    assert isinstance(drv, RuncDriver)
    made: list[str] = []
    try:
        await drv.init_host()
        await bridge.ensure(net)
        await asyncio.to_thread(build_busybox, tmp / "busybox.tar")
        image = ImageSpec(id=str(uuidlib.uuid4()), path=str(tmp / "busybox.tar"), disk_format="raw",
                          container_format="docker", properties={})
        flavor = FlavorSpec(vcpus=1, memory_mb=128, root_gb=1)

        def spec(nics: tuple[NicSpec, ...]) -> InstanceSpec:
            uid = str(uuidlib.uuid4())
            made.append(uid)
            return InstanceSpec(uuid=uid, name="b", hostname="b", project_id="p", flavor=flavor, image=image,
                                nics=nics)

        boots: dict[str, list[float]] = {"no_nic": [], "one_nic": []}
        for i in range(2 * n + 2):
            key = "one_nic" if i % 2 else "no_nic"
            s = spec((nic_on(net, i),) if key == "one_nic" else ())
            t0 = time.perf_counter()
            await drv.spawn(s)
            if i >= 2:  # the first pair warms the image cache
                boots[key].append(time.perf_counter() - t0)
            await drv.destroy(s.uuid)

        await netns.ensure(scratch)
        veth, tap = [], []
        for i in range(n):
            x = nic_on(net, i)
            t0 = time.perf_counter()
            await nic.plug_veth(x, scratch, "eth0")
            veth.append(time.perf_counter() - t0)
            await nic.unplug(x.netns, x.device)
            t0 = time.perf_counter()
            fd = await nic.open_tap(x)
            tap.append(time.perf_counter() - t0)
            os.close(fd)

        running = spec(())
        await drv.spawn(running)
        attach, detach = [], []
        for i in range(n):
            x = nic_on(net, i)
            t0 = time.perf_counter()
            await drv.attach_nic(running.uuid, x)
            attach.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await drv.detach_nic(running.uuid, x.port_id)
            detach.append(time.perf_counter() - t0)
        out = {
            "spawn_no_nic": pcts(boots["no_nic"]), "spawn_one_nic": pcts(boots["one_nic"]),
            "nic_adds_p50_ms": round(1000 * (statistics.median(boots["one_nic"]) - statistics.median(boots["no_nic"])), 2),
            "plug_veth": pcts(veth), "open_tap": pcts(tap),
            "hot_attach_running_container": pcts(attach), "hot_detach_running_container": pcts(detach),
            "n": n, "load_avg": os.getloadavg()[0],
        }
    finally:
        for uid in made:
            await drv.destroy(uid)
        await netns.delete(scratch)
        await netns.delete(net)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = asyncio.run(run(args.n))
    for k, v in out.items():
        print(f"{k:32} {v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
