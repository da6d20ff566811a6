"""A q35 tiny VM's boot with and without the 4 spare PCIe root ports every q35 server now gets.

Since issue 11 (Q35PORTS) a q35 server booted with neither NICs nor volumes gets 4 empty
`pcie-root-port` devices, so a volume or NIC can be hot plugged into it later. This measures what
they cost at boot: the QEMU driver (no cloud) spawns one q35 tiny VM without NICs or volumes whose
user_data echoes a marker; its recorded argv is then replayed (boot_vm.Replay: private copies of
its files, a fresh overlay on the same base) as it is ("ports", 4 root ports) and with the root
ports taken out ("none", the argv such a server had before), alternating, n rounds each, timed
from spawning QEMU to the marker on the console. No target: the figure is reported.

    .venv/bin/python benchmarks/q35_ports.py [-n 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid as uuidlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from boot_vm import USER_DATA, Replay  # noqa: E402

from cumulo import conf as conf_mod  # noqa: E402
from cumulo.compute.drivers import load_driver  # noqa: E402
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec  # noqa: E402
from cumulo.compute.drivers.qemu import QemuDriver  # noqa: E402
from cumulo.image.demo import tinyvm  # noqa: E402


def without_root_ports(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for k, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "-device" and k + 1 < len(argv) and argv[k + 1].startswith("pcie-root-port,"):
            skip = True
            continue
        out.append(a)
    return out


async def run(n: int) -> dict[str, Any]:
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("q35_ports needs QEMU (apt-get install qemu-system-x86 qemu-utils)")
    base = Path(tempfile.mkdtemp(prefix="cumulo-bench-q35-"))
    res: dict[str, Any] = {"name": "q35_ports", "load": [round(os.getloadavg()[0], 2)]}
    replay: Replay | None = None
    try:
        cache = Path(os.environ.get("CUMULO_TEST_BUILD_CACHE") or tinyvm.default_cache())
        out = cache / "tiny-vm-artifacts"
        out.mkdir(parents=True, exist_ok=True)
        art = await tinyvm.build_tiny_vm(out, cache)
        image = ImageSpec(
            id=str(uuidlib.uuid4()), path=str(art.disk), disk_format="qcow2", container_format="bare",
            properties={"kernel_id": "aki-tiny", "ramdisk_id": "ari-tiny", "os_command_line": art.cmdline,
                        "hypervisor_type": "qemu", "hw_machine_type": "q35"},
            kernel_path=str(art.kernel), ramdisk_path=str(art.ramdisk))
        settings = conf_mod.load(env={}, state_dir=base / "state")
        drv = load_driver("qemu", settings, "q35-bench", local=True)
        assert isinstance(drv, QemuDriver)
        await drv.init_host()
        spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name="q35-bench", hostname="q35-bench", project_id="p",
                            flavor=FlavorSpec(vcpus=1, memory_mb=256, root_gb=1), image=image, user_data=USER_DATA)
        await drv.spawn(spec)
        try:
            server_dir = drv.dir / spec.uuid
            rec = json.loads((server_dir / "instance.json").read_text())
            if rec["vm"]["machine"] != "q35":
                raise RuntimeError(f"the tiny VM booted on {rec['vm']['machine']}, not q35")
            await drv.power_off(spec.uuid, timeout=0)
            replay = Replay(base, server_dir)
            with_ports = list(replay.argv)
            bare = without_root_ports(with_ports)
            res["root_ports"] = sum(1 for a in with_ports if a.startswith("pcie-root-port,"))
            times: dict[str, list[float]] = {"ports": [], "none": []}
            for i in range(n):
                order = ("ports", "none") if i % 2 == 0 else ("none", "ports")
                for which in order:
                    replay.argv = with_ports if which == "ports" else bare
                    times[which].append(await asyncio.to_thread(replay.boot, len(replay.made)))
        finally:
            await drv.destroy(spec.uuid)
        for which, ts in times.items():
            res[f"{which}_marker_ms"] = {"p50_ms": round(statistics.median(ts) * 1000), "all_ms": [round(t * 1000) for t in ts]}
        res["delta_p50_ms"] = res["ports_marker_ms"]["p50_ms"] - res["none_marker_ms"]["p50_ms"]
        res["load"].append(round(os.getloadavg()[0], 2))
        return res
    finally:
        if replay is not None:
            replay.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    res = asyncio.run(run(args.n))
    print(f"q35_ports: q35 tiny VM (no NICs, no volumes), QEMU spawn -> user_data marker, n={args.n} each, "
          f"load {res['load']}")
    print(f"  with {res['root_ports']} root ports  p50 {res['ports_marker_ms']['p50_ms']} ms  {res['ports_marker_ms']['all_ms']}")
    print(f"  without root ports  p50 {res['none_marker_ms']['p50_ms']} ms  {res['none_marker_ms']['all_ms']}")
    print(f"  delta p50 {res['delta_p50_ms']:+d} ms")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
