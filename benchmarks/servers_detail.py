"""GET /compute/v2.1/servers/detail?limit=1000 among 10,000 servers on PostgreSQL, with SQLite as the
baseline in the same run (issue 14, acceptance 4: <= 0.5 s p50 on PostgreSQL).

For each database a real `cumulo up` (fake driver) makes a few template servers through the API, is
stopped, gets clones of their rows inserted in bulk until 10,000 live servers exist over 12 projects
(benchmarks/list_detail.py's seeding: flavors, metadata, tags, allocations, actions, fake driver
records), is started again, and the page is timed `--repeat` times as admin with all_tenants=1 and
as a member of one project (p50/p95).

    .venv/bin/python benchmarks/servers_detail.py [--servers 10000] [--repeat 20] [--json out.json]

PostgreSQL: the server of CUMULO_TEST_DATABASE_URL (scripts/services.py start exports it), else a
private cluster this run starts (scripts/services.py, own ports) and removes at the end. The run
makes its own database there (cumulo_bench_<random>) and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h
import list_detail as ld
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

TARGET_S = 0.5
PAGE = 1000


def _services() -> Any:
    # A port of this run's own unless one is asked for: a test run's PostgreSQL may hold the default.
    os.environ.setdefault("CUMULO_TEST_PG_PORT", str(h.free_port()))
    spec = importlib.util.spec_from_file_location("cumulo_services", h.ROOT / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def _admin_sql(base_url: str, statement: str) -> None:
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def one_database(kind: str, url: str, total: int, repeat: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f"cumulo-bench-detail-{kind}-"))
    env = {"CUMULO_DATABASE": url} if url else {}
    cloud = h.CloudProcess(state_dir=tmp / "state", port=h.free_port(), env=env)
    db_url = url or f"sqlite+aiosqlite:///{cloud.state_dir / 'cumulo.sqlite'}"
    try:
        await asyncio.to_thread(cloud.start)
        seeded = await ld.seed_templates(cloud)
        await asyncio.to_thread(cloud.stop)

        t0 = time.perf_counter()
        engine = create_async_engine(db_url)
        async with engine.begin() as conn:
            counts = await conn.run_sync(lambda sync: ld.clone_into(sync, cloud.state_dir / "fake", seeded, total, rng))
        if kind == "postgresql":
            async with engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql("ANALYZE")
        await engine.dispose()
        t_seed = time.perf_counter() - t0

        cloud.port = h.free_port()
        t_restart = await asyncio.to_thread(cloud.start)
        scenarios: dict[str, Any] = {}
        async with h.make_client(cloud.url) as client:
            admin = await h.login(client, cloud.credentials("cumulo"))
            demo = await h.login(client, cloud.credentials("cumulo-demo"))
            cloud.profile_start(f"servers_detail_{kind}")
            scenarios["admin all_tenants=1"] = await ld.time_page(
                client, admin.headers(), {"limit": str(PAGE), "all_tenants": "1"}, repeat)
            scenarios["member (demo project)"] = await ld.time_page(
                client, demo.headers(), {"limit": str(PAGE)}, repeat)
            cloud.profile_stop()
    finally:
        await asyncio.to_thread(cloud.stop)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"seed_insert_s": round(t_seed, 2), "restart_s": round(t_restart, 2),
            "servers_per_project": sorted(counts.values(), reverse=True), "scenarios": scenarios}


async def run(total: int = 10_000, repeat: int = 20, seed: int = 1) -> dict[str, Any]:
    services_dir: Path | None = None
    base = os.environ.get("CUMULO_TEST_DATABASE_URL", "")
    if not base:
        services = _services()
        services_dir = Path(tempfile.mkdtemp(prefix="cumulo-bench-pg-"))
        shutil.rmtree(services_dir)
        password = secrets.token_urlsafe(18)
        services_dir.mkdir(mode=0o711)
        base = services.start_postgres(services_dir, password)
    name = f"cumulo_bench_{secrets.token_hex(6)}"
    await _admin_sql(base, f"CREATE DATABASE {name}")
    pg_url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    results: dict[str, Any] = {}
    try:
        results["sqlite"] = await one_database("sqlite", "", total, repeat, seed)
        results["postgresql"] = await one_database("postgresql", pg_url, total, repeat, seed)
    finally:
        await _admin_sql(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if services_dir is not None:
            _services().stop(services_dir)
    pg = results["postgresql"]["scenarios"]
    worst_p50 = max(s["p50_ms"] for s in pg.values()) / 1000
    return {
        "name": "servers_detail",
        "metric": f"detail page limit={PAGE} of {total:,} servers on PostgreSQL, worst p50",
        "value": round(worst_p50 * 1000, 1),
        "unit": "ms",
        "target": f"<= {TARGET_S * 1000:.0f} ms",
        "passed": worst_p50 <= TARGET_S and all(s["servers_returned"] == PAGE for s in pg.values()),
        "databases": results,
    }


def print_report(res: dict[str, Any]) -> None:
    for kind, r in res["databases"].items():
        print(f"servers_detail on {kind}: {sum(r['servers_per_project'])} cloned servers "
              f"(inserted in {r['seed_insert_s']} s; restart {r['restart_s']} s)")
        for name, s in r["scenarios"].items():
            print(f"  {name:24s} p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f} ms  "
                  f"({s['servers_returned']} servers, {s['bytes'] / 1e6:.2f} MB, n={s['n']})")
    sq = max(s["p50_ms"] for s in res["databases"]["sqlite"]["scenarios"].values())
    print(f"  PostgreSQL worst p50 {res['value']} ms vs SQLite {sq} ms; target {res['target']}: "
          f"{'PASS' if res['passed'] else 'MISS'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    res = asyncio.run(run(total=args.servers, repeat=args.repeat))
    print_report(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
