"""A migration's disk through the transfer endpoint (compute.transfer, issue 14) against a plain `cp`.

No cloud: a migrated SQLite DB in a temp dir (the cluster secret "transfer"), the destination's
`TransferServer` in a child process on loopback (its own event loop, as the destination agent),
and the source's `client.send_file` here. Images, each 512 MiB apparent (--size-mib):

- sparse: a raw disk with --data-mib (64) MiB of random data in 1 MiB extents spread over it,
  holes elsewhere (a VM disk a guest wrote part of);
- dense (--dense): every byte random data (the data path's own throughput).

n rounds (3), the order alternating: `send_file` to its 204 (the file fsynced and renamed at the
destination) against `cp --sparse=always` followed by an fsync of the copy (cp + fsync: the same
durability) and `cp` alone; wall time, MiB/s of the apparent size, p50 of each and the ratio.
The destination's copy is checked equal once per image. Prints a table, writes --json.

    .venv/bin/python benchmarks/transfer.py [-n 3] [--size-mib 512] [--data-mib 64] [--dense] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cumulo import conf as conf_mod
from cumulo.compute.transfer import client, incoming_dir
from cumulo.compute.transfer.server import TransferServer
from cumulo.db import Database

MIB = 1 << 20


def _conf(root: Path) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=root / "dest", database=f"sqlite+aiosqlite:///{root / 'bench.sqlite'}")


async def _serve(root: Path) -> None:
    conf = _conf(root)
    db = Database(conf.database_url)
    server = TransferServer(db, conf, "bench-dest", address="127.0.0.1", port=0)
    await server.start()
    (root / "port").write_text(str(server.port))
    try:
        while (root / "port").exists():
            await asyncio.sleep(0.2)
    finally:
        await server.stop()
        await db.dispose()


def _make(path: Path, size: int, data: int, dense: bool) -> int:
    with open(path, "wb") as fh:
        if dense:
            for _ in range(size // MIB):
                fh.write(os.urandom(MIB))
            return size
        fh.truncate(size)
        extents = max(data // MIB, 1)
        stride = size // extents
        for i in range(extents):
            fh.seek(i * stride)
            fh.write(os.urandom(MIB))
        return extents * MIB


def _cp(src: Path, dst: Path, fsync: bool) -> float:
    t = time.perf_counter()
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)  # noqa: S603, S607
    if fsync:
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    took = time.perf_counter() - t
    dst.unlink()
    return took


async def _bench(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    conf = _conf(root)
    db = Database(conf.database_url)
    await db.create_all()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(root)])  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while not (root / "port").exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the transfer server did not start")
            await asyncio.sleep(0.05)
        port = int((root / "port").read_text())
        out: dict[str, Any] = {}
        kinds = ["sparse"] + (["dense"] if args.dense else [])
        for kind in kinds:
            src = root / f"{kind}.raw"
            data = await asyncio.to_thread(_make, src, args.size_mib * MIB, args.data_mib * MIB, kind == "dense")
            times: dict[str, list[float]] = {"transfer": [], "cp+fsync": [], "cp": []}
            for rnd in range(args.n):
                order = ["transfer", "cp+fsync", "cp"] if rnd % 2 == 0 else ["cp", "cp+fsync", "transfer"]
                for what in order:
                    if what == "transfer":
                        t = await client.target(db, str(uuid.uuid4()), "bench-dest", "127.0.0.1", port)
                        start = time.perf_counter()
                        await client.send_file(t, "disk", src)
                        times[what].append(time.perf_counter() - start)
                        got = incoming_dir(conf.state_dir, t.migration_uuid) / "disk"
                        if rnd == 0 and not await asyncio.to_thread(filecmp.cmp, src, got, False):
                            raise SystemExit(f"{kind}: the copy differs")
                        await client.discard(t)
                    else:
                        times[what].append(await asyncio.to_thread(_cp, src, root / "cp.raw", what == "cp+fsync"))
            p50 = {k: statistics.median(v) for k, v in times.items()}
            out[kind] = {
                "apparent_mib": args.size_mib, "data_mib": data / MIB, "rounds": times, "p50_s": p50,
                "apparent_mib_per_s": {k: args.size_mib / v for k, v in p50.items()},
                "data_mib_per_s": {k: data / MIB / v for k, v in p50.items()},
                "ratio_transfer_vs_cp_fsync": p50["transfer"] / p50["cp+fsync"],
                "ratio_transfer_vs_cp": p50["transfer"] / p50["cp"],
            }
            src.unlink()
        return out
    finally:
        (root / "port").unlink(missing_ok=True)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        await db.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--data-mib", type=int, default=64)
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve(Path(args.serve)))
        return 0
    root = Path(tempfile.mkdtemp(prefix="cumulo-bench-transfer-"))
    try:
        res = asyncio.run(_bench(root, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}")
    for kind, r in res.items():
        print(f"{kind}: {r['apparent_mib']} MiB apparent, {r['data_mib']:.0f} MiB data, n = {args.n}")
        for what, p in r["p50_s"].items():
            print(f"  {what:9s} p50 {p * 1000:8.1f} ms  {r['apparent_mib_per_s'][what]:8.0f} MiB/s apparent  "
                  f"{r['data_mib_per_s'][what]:7.0f} MiB/s of data")
        print(f"  transfer / cp+fsync = {r['ratio_transfer_vs_cp_fsync']:.2f}x, "
              f"transfer / cp = {r['ratio_transfer_vs_cp']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, **res}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
