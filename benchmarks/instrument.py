"""`cumulo up` with counters for a diagnosis: write-lock wait/hold per caller and SQL statements.

Use as the launcher of any benchmark:

    BENCH_LAUNCHER=".venv/bin/python benchmarks/instrument.py" BENCH_INSTRUMENT_OUT=/tmp/inst.json \
        .venv/bin/python benchmarks/create_rate.py
    .venv/bin/python benchmarks/instrument.py --report /tmp/inst.json

Counters are written to BENCH_INSTRUMENT_OUT once a second; SIGUSR1 resets them (so a benchmark can
count only its measured section). Nothing here changes behaviour, only timing by a little.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import types
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

OUT = os.environ.get("BENCH_INSTRUMENT_OUT", "/tmp/cumulo-instrument.json")

# caller -> [transactions, seconds waiting for the lock, seconds holding it]
lock_stats: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
statements: Counter[str] = Counter()
started = time.perf_counter()


def _caller() -> str:
    f: types.FrameType | None = sys._getframe(2)
    while f is not None and (
        f.f_code.co_filename.endswith(("contextlib.py", "db/__init__.py", "instrument.py"))
    ):
        f = f.f_back
    if f is None:
        return "?"
    path = f.f_code.co_filename
    path = path.split("/src/", 1)[1] if "/src/" in path else os.path.basename(path)
    return f"{path}:{f.f_code.co_name}"


def install() -> None:
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncConnection

    from cumulo import db as dbmod

    @contextlib.asynccontextmanager
    async def write(self: Any) -> AsyncIterator[AsyncConnection]:
        key = _caller()
        t0 = time.perf_counter()
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            t1 = time.perf_counter()
            try:
                async with self.engine.begin() as conn:
                    yield conn
            finally:
                st = lock_stats[key]
                st[0] += 1
                st[1] += t1 - t0
                st[2] += time.perf_counter() - t1

    dbmod.Database.write = write  # type: ignore[method-assign]

    original_init = dbmod.Database.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements[" ".join(statement.split())[:120]] += 1

        event.listen(self.engine.sync_engine, "before_cursor_execute", count)

    dbmod.Database.__init__ = init  # type: ignore[method-assign]


def dump() -> None:
    data = {
        "seconds": round(time.perf_counter() - started, 3),
        "write_lock": {
            k: {"n": int(v[0]), "wait_s": round(v[1], 4), "hold_s": round(v[2], 4)}
            for k, v in lock_stats.items()
        },
        "statements": dict(statements.most_common()),
    }
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, OUT)


def reset(*_: Any) -> None:
    global started
    lock_stats.clear()
    statements.clear()
    started = time.perf_counter()


def report(path: str) -> None:
    with open(path) as fh:
        data = json.load(fh)
    locks = data["write_lock"]
    held = sum(v["hold_s"] for v in locks.values())
    print(
        f"window {data['seconds']} s; write lock held {held:.2f} s ({100 * held / max(data['seconds'], 1e-9):.0f}%)"
    )
    for k, v in sorted(locks.items(), key=lambda kv: -kv[1]["hold_s"]):
        n = max(v["n"], 1)
        print(
            f"  {k:60s} n={v['n']:6d} hold {v['hold_s']:7.3f} s ({1000 * v['hold_s'] / n:6.2f} ms each) "
            f"wait {v['wait_s']:8.2f} s"
        )
    total = sum(data["statements"].values())
    print(f"\n{total} SQL statements")
    for text, n in list(data["statements"].items())[:40]:
        print(f"  {n:7d}  {text}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        report(sys.argv[2])
        return
    install()
    signal.signal(signal.SIGUSR1, reset)

    def loop() -> None:
        while True:
            time.sleep(1.0)
            with contextlib.suppress(Exception):
                dump()

    threading.Thread(target=loop, daemon=True).start()
    from cumulo.cli.main import main as cumulo_main

    try:
        code = cumulo_main(sys.argv[1:])
    finally:
        dump()
    sys.exit(code)


if __name__ == "__main__":
    main()
