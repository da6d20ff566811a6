"""`cumulo up` with wall-clock spans around the boot path, to see where the milliseconds go.

Use as the launcher of boot_container.py (or any benchmark), then report:

    BENCH_LAUNCHER=".venv/bin/python benchmarks/trace_boot.py" BENCH_TRACE_OUT=/tmp/trace.json \
        .venv/bin/python benchmarks/boot_container.py -n 30
    .venv/bin/python benchmarks/trace_boot.py --report /tmp/trace.json

Spans (label, start, end) are recorded around the API's create, the bus dispatch of each message,
the conductor, the scheduler, the agent's build steps, the runc driver's steps, every host command
(`runc state`, `runc run`, `mount`, ...) and every `asyncio.to_thread`. SIGUSR1 (sent by the harness
when the measured section starts) clears them. The report cuts the trace into boots: each starts at
an `api.create_servers` span and ends when the agent's ACTIVE `set_state` ends; it prints, per
label, the median time per boot and the median offset from the start of the boot. Only meaningful
for sequential boots. Nothing here changes behaviour, only timing by a little.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict
from typing import Any

OUT = os.environ.get("BENCH_TRACE_OUT", "/tmp/cumulo-trace.json")
spans: list[tuple[str, float, float]] = []


def _wrap_async(owner: Any, attr: str, label: str | None = None, labeler: Any = None) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            name = labeler(*args, **kwargs) if labeler else label
            spans.append((str(name), t0, time.perf_counter()))

    setattr(owner, attr, wrapper)


def install() -> None:
    import asyncio

    if os.environ.get("BENCH_TRACE_PATCH"):  # a prototype to measure: a module with install_host()
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_patch", os.environ["BENCH_TRACE_PATCH"])
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.install_host()

    from cumulo import host
    from cumulo.bus import inproc
    from cumulo.compute.agent import build, node
    from cumulo.compute.conductor import manager as conductor
    from cumulo.compute.drivers import runc as runc_driver
    from cumulo.compute.drivers.runc import overlay, provision, rootdisk, state
    from cumulo.compute.service import server_create
    from cumulo.scheduler import manager as sched

    _wrap_async(server_create, "create_servers", "api.create_servers")
    _wrap_async(inproc.InprocBus, "_dispatch", labeler=lambda _self, topic, msg, fut: f"bus.{msg.get('method')}")
    _wrap_async(conductor.Conductor, "_build_one", "conductor.build_one")
    _wrap_async(conductor.Conductor, "_select_and_claim", "conductor.select_and_claim")
    _wrap_async(conductor.Conductor, "_set_host", "conductor.set_host")
    _wrap_async(sched.SchedulerManager, "select_destinations", "scheduler.select_destinations")
    _wrap_async(build, "build_and_run", "agent.build_and_run")
    for name in ("load", "request_id_for", "spec", "power_of"):
        _wrap_async(node.Node, name, f"agent.{name}")
    _wrap_async(
        node.Node, "set_state",
        labeler=lambda _self, uuid, values, **kw: f"agent.set_state({values.get('vm_state', '-')})",
    )
    _wrap_async(runc_driver.RuncDriver, "spawn", "runc.spawn")
    _wrap_async(runc_driver.RuncDriver, "get_power_state", "runc.get_power_state")
    _wrap_async(provision, "cached_rootfs", "runc.cached_rootfs")
    _wrap_async(rootdisk.RootDisks, "create", "runc.root_disk")
    _wrap_async(overlay, "mount", "runc.overlay_mount")
    _wrap_async(state.Runc, "run_detached", "runc.run_detached")
    _wrap_async(state.Runc, "status", "runc.status")
    # The network side of a boot with a NIC: the API's port allocation, the network agent's
    # plug_ports and its steps, the runc driver's veth plumbing.
    from cumulo.compute.agent import nics as agent_nics
    from cumulo.compute.drivers.runc import nics as runc_nics
    from cumulo.netplane import bridge as np_bridge
    from cumulo.netplane import dhcp as np_dhcp
    from cumulo.netplane import nft as np_nft
    from cumulo.netplane import nic as np_nic
    from cumulo.network import ports_sys
    from cumulo.network.agent import manager as net_agent
    from cumulo.network.agent import plumbing as net_plumbing
    from cumulo.network.metadata import MetadataService

    _wrap_async(ports_sys.PortsForServers, "allocate_ports_for_server", "api.allocate_ports")
    _wrap_async(agent_nics, "with_nics", "agent.with_nics (plug_ports round trip)")
    for name in ("plug_ports", "unplug_ports", "_plan", "_set_status", "_ensure_dhcp_ports", "_sync"):
        _wrap_async(net_agent.NetworkAgent, name, f"netagent.{name}")
    for name in ("ensure_network",):
        _wrap_async(net_plumbing.RealPlumbing, name, f"netagent.plumbing.{name}")
    _wrap_async(np_bridge, "ensure", "netplane.bridge.ensure")
    _wrap_async(np_dhcp, "ensure", "netplane.dhcp.ensure")
    _wrap_async(np_dhcp, "ensure_interface", "netplane.dhcp.ensure_interface")
    _wrap_async(np_nft, "apply", "netplane.nft.apply")
    _wrap_async(MetadataService, "serve", "netagent.metadata.serve")
    _wrap_async(runc_nics, "plug_all", "runc.nics.plug_all")
    _wrap_async(np_nic, "plug_veth", "netplane.nic.plug_veth")
    _wrap_async(np_nic, "configure", "netplane.nic.configure")
    _wrap_async(
        host, "run",
        labeler=lambda argv, **kw: "host " + " ".join(a for a in argv[:5] if not a.startswith(("/", "cumulo-", "lowerdir")) and a != "--root"),
    )
    _wrap_async(host, "run_to_file", labeler=lambda argv, output, **kw: "host(file) " + " ".join(
        a for a in argv[:4] if not a.startswith(("/", "cumulo-", "lowerdir")) and a != "--root"))
    _wrap_async(asyncio, "create_subprocess_exec", labeler=lambda *argv, **kw: f"subprocess start {argv[0]}")
    _wrap_async(asyncio.subprocess.Process, "communicate", "subprocess communicate")
    _wrap_async(asyncio.subprocess.Process, "wait", "subprocess wait")
    _wrap_async(asyncio, "to_thread", labeler=lambda func, *a, **kw: f"to_thread {getattr(func, '__qualname__', func)}")

    # The write lock: wait and hold per transaction.
    from cumulo import db as dbmod

    original_write = dbmod.Database.write

    @contextlib.asynccontextmanager
    async def write(self: Any) -> Any:
        t0 = time.perf_counter()
        async with original_write(self) as conn:
            t1 = time.perf_counter()
            try:
                yield conn
            finally:
                t2 = time.perf_counter()
        spans.append(("db.write wait", t0, t1))
        spans.append(("db.write hold+commit", t1, time.perf_counter()))
        del t2

    dbmod.Database.write = write  # type: ignore[method-assign]


def dump() -> None:
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(list(spans), fh)
    os.replace(tmp, OUT)


def reset(*_: Any) -> None:
    spans.clear()


def report(path: str, limit: int | None = None) -> None:
    with open(path) as fh:
        data = sorted((str(a), float(b), float(c)) for a, b, c in json.load(fh))
    data.sort(key=lambda s: s[1])
    starts = [s for s in data if s[0] == "api.create_servers"]
    ends = [s for s in data if s[0] == "agent.set_state(active)"]
    boots: list[tuple[float, float]] = []
    for st in starts:
        end = next((e[2] for e in ends if e[2] > st[1]), None)
        if end is not None and not any(b[0] < st[1] < b[1] for b in boots):
            boots.append((st[1], end))
    if limit:
        boots = boots[:limit]
    per_label: dict[str, list[float]] = defaultdict(list)
    offsets: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, list[int]] = defaultdict(list)
    for b0, b1 in boots:
        total: dict[str, float] = defaultdict(float)
        first: dict[str, float] = {}
        n: dict[str, int] = defaultdict(int)
        for label, s0, s1 in data:
            if s0 >= b0 and s1 <= b1 + 1e-6:
                total[label] += s1 - s0
                n[label] += 1
                first.setdefault(label, s0 - b0)
        for label in total:
            per_label[label].append(total[label])
            offsets[label].append(first[label])
            counts[label].append(n[label])
    walls = [b1 - b0 for b0, b1 in boots]
    print(f"{len(boots)} boots; create start -> ACTIVE written: median {1000 * statistics.median(walls):.1f} ms")
    print(f"  {'label':58s} {'n/boot':>6s} {'ms/boot':>8s} {'starts at':>9s}")
    for label in sorted(per_label, key=lambda k: statistics.median(offsets[k])):
        print(
            f"  {label[:58]:58s} {statistics.median(counts[label]):6.0f} {1000 * statistics.median(per_label[label]):8.2f} "
            f"{1000 * statistics.median(offsets[label]):8.1f}"
        )


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--report":
        report(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
        return
    if os.environ.get("BENCH_TRACE_SPANS", "1") != "0":  # 0: only the loop/patch switches, no spans
        install()
    signal.signal(signal.SIGUSR1, reset)

    def loop() -> None:
        while True:
            time.sleep(1.0)
            with contextlib.suppress(Exception):
                dump()

    threading.Thread(target=loop, daemon=True).start()
    from cumulo.cli import main as cli_main

    if os.environ.get("BENCH_TRACE_NO_UVLOOP"):  # compare with the stdlib event loop
        cli_main._loop_factory = lambda: None
    cumulo_main = cli_main.main

    try:
        code = cumulo_main(sys.argv[1:])
    finally:
        dump()
    sys.exit(code)


if __name__ == "__main__":
    main()
