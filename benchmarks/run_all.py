"""Run every benchmark and print one summary table with targets and PASS/MISS marks.

Each benchmark starts its own `cumulo up` on a free loopback port in a temp state dir (the fake
driver; boot_container and paas use runc, boot_vm QEMU, volumes both: they need root) and removes it afterwards. Results also go to
benchmarks/results.json (a local artefact: do not commit it). This is a report, not a test: a
missed target is printed, never raised.

    .venv/bin/python benchmarks/run_all.py [--only boot_fake,create_rate,list_detail,boot_container,boot_vm,volumes,paas] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import boot_container
import boot_fake
import boot_vm
import create_rate
import list_detail
import paas
import volumes

BENCHMARKS = {
    "boot_fake": boot_fake,
    "create_rate": create_rate,
    "list_detail": list_detail,
    "boot_container": boot_container,
    "boot_vm": boot_vm,
    "volumes": volumes,
    "paas": paas,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    ap.add_argument("--json", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()

    results: list[dict[str, Any]] = []
    for name in args.only.split(","):
        mod = BENCHMARKS[name.strip()]
        print(f"--- {name} ---", flush=True)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            res = asyncio.run(mod.run())
            mod.print_report(res)
        except Exception as exc:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            res = {
                "name": name,
                "metric": "-",
                "value": None,
                "unit": "",
                "target": "-",
                "passed": False,
                "error": f"{type(exc).__name__}: {exc}",
            }
        res["duration_s"] = round(time.perf_counter() - t0, 1)
        # Other work on the machine skews every figure: keep the 1-minute load next to them.
        res["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        results.append(res)
        print(flush=True)

    print("=" * 96)
    print(f"{'benchmark':13s} {'metric':52s} {'measured':>14s} {'target':>16s}  result")
    print("-" * 96)
    for r in results:
        value = "error" if r.get("error") else f"{r['value']} {r['unit']}"
        mark = "PASS" if r["passed"] else ("ERROR" if r.get("error") else "MISS")
        print(f"{r['name']:13s} {r['metric'][:52]:52s} {value:>14s} {r['target']:>16s}  {mark}")
    print("=" * 96)
    loads = ", ".join(f"{r['name']} {r['loadavg_1m'][0]}->{r['loadavg_1m'][1]}" for r in results)
    print(f"1-minute load average (CPUs: {os.cpu_count()}): {loads}")
    print(
        f"python {platform.python_version()}, {platform.machine()}, {platform.system()} {platform.release()}"
    )

    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0], "results": results}
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
