"""The scheduler at 1,000 hosts (issue 14): placements/s of the scheduler alone, and creates through
the real HTTP API of a `cumulo up --fake-hosts 1000`.

Part 1, the scheduler alone (no HTTP), in this process: the compute workers assembled as `cumulo up`
assembles them (compute/workers.py) with 1,000 fake hosts, on the given database and transport;
reported: the workers' start-up (registration of 1,000 hosts), then
- placements/s: `select_destinations` through the bus (SchedulerAPI, as the conductor calls it)
  followed by the placement claim, one after the other;
- the same with 8 builds at once through the conductor's batched select turns
  (conductor/batching.py: one select_batch message for the builds waiting), their claims in one
  write transaction (Placement.claim_batched, placement/batch.py), as the conductor claims; the
  same with one claim transaction per build (as before), and with 32 builds at once (bigger batches);
- the raw baseline in the same run: as many plain claims (the same claim transaction on a random
  provider, no selection);
- the same select + claim with the host-state cache off (every request reads all 1,000 hosts,
  as before issue 14), fewer of them.
Part 2, the cloud: `cumulo up --fake-hosts 1000` (its start-up time until the ready line), then
500 creates from 16 concurrent clients through the real compute API: creates accepted/s, and the
time until all are ACTIVE (servers/s).

    .venv/bin/python benchmarks/scheduler_scale.py [--hosts 1000] [-n 500] [--clients 16]
        [--database postgresql://user:pw@host/db] [--cloud-database postgresql://.../db2]
        [--transport amqp://user:pw@host/vhost]
        [--skip-cloud] [--json out.json]

`--database` must name an empty database (the run registers its hosts there and leaves them);
without it, SQLite files in a temporary dir. Part 2's cloud gets `--cloud-database` (another empty
one; default: the same as part 1, fine for SQLite's temporary files) and `--transport`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h

from cumulo import conf as conf_mod
from cumulo.bus.transports import make_bus
from cumulo.compute.conductor.batching import SelectTurns
from cumulo.compute.drivers.fake import FakeDriver
from cumulo.compute.rpc import SchedulerAPI
from cumulo.compute.workers import NodeSetup, assemble
from cumulo.db import Database, new_uuid
from cumulo.placement import batch as claim_batch
from cumulo.placement.service import Placement
from cumulo.scheduler.manager import SchedulerManager

TARGET = 500.0
# Fake hosts big enough that capacity never limits the run (the filters still do their work).
BIG_HOSTS = {
    "CUMULO_FAKE_HOST_VCPUS": "4096",
    "CUMULO_FAKE_HOST_RAM_MB": "16777216",
    "CUMULO_FAKE_HOST_DISK_GB": "1000000",
}
REQUEST = {"VCPU": 1, "MEMORY_MB": 64, "DISK_GB": 1}


def _spec() -> dict[str, Any]:
    return {"resources": dict(REQUEST), "instance_uuid": new_uuid()}


async def scheduler_alone(hosts: int, n: int, database: str, transport: str, concurrency: int = 8) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-sched-"))
    try:
        conf = conf_mod.load(env=BIG_HOSTS, state_dir=tmp / "state", fake_hosts=hosts,
                             power_sync_interval=3600.0, database=database, transport=transport)
        conf.state_dir.mkdir(parents=True)
        db = Database(conf.database_url)
        await db.create_all()
        bus = make_bus(conf.transport)
        placement = Placement(db, conf)
        names = [f"fake-host-{i}" for i in range(1, hosts + 1)]
        workers = assemble(db, bus, conf, placement, None,
                           [NodeSetup(x, x, FakeDriver(conf, x, local=False)) for x in names])
        await bus.start()
        t0 = time.perf_counter()
        await workers.start()
        startup = time.perf_counter() - t0
        try:
            api = SchedulerAPI(bus)
            await api.select_destinations(_spec(), 1)  # warm-up: the cache's first read
            lost = 0

            async def place(count: int) -> None:
                nonlocal lost
                for _ in range(count):
                    spec = _spec()
                    dest = (await api.select_destinations(spec, 1))[0]
                    if not await placement.claim(spec["instance_uuid"], dest["provider_uuid"], REQUEST):
                        lost += 1

            t0 = time.perf_counter()
            await place(n)
            select_claim = time.perf_counter() - t0
            # As the conductor runs its builds (build_concurrency at once): the builds waiting for a
            # select turn go to the scheduler in one select_batch message (conductor/batching.py).
            turns = SelectTurns(lambda: api, asyncio.Lock())
            batches = 0

            async def place_batched(count: int, grouped: bool = True) -> None:
                nonlocal lost
                # grouped: the claims of a turn in one transaction, as the conductor claims
                # (Placement.claim_batched); else one transaction per claim (before SCHED2).
                claim = placement.claim_batched if grouped else placement.claim
                for _ in range(count):
                    spec = _spec()
                    async with turns.select(spec) as dests:
                        if not await claim(spec["instance_uuid"], dests[0]["provider_uuid"], REQUEST):
                            lost += 1

            real_batch = api.select_batch

            spent = {"select_batch": 0.0, "claim_batches": 0.0}

            async def counted(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
                nonlocal batches
                batches += 1
                t = time.perf_counter()
                try:
                    return await real_batch(requests)
                finally:
                    spent["select_batch"] += time.perf_counter() - t

            real_claim_many = claim_batch.claim_many

            async def timed_claims(*args: Any, **kw: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await real_claim_many(*args, **kw)
                finally:
                    spent["claim_batches"] += time.perf_counter() - t

            claim_batch.claim_many = timed_claims  # type: ignore[assignment]

            api.select_batch = counted  # type: ignore[method-assign]
            per = n // concurrency
            t0 = time.perf_counter()
            await asyncio.gather(*(place_batched(per, grouped=False) for _ in range(concurrency)))
            concurrent_single = time.perf_counter() - t0
            batches = 0
            flushes0 = placement.batcher.flushes
            spent = dict.fromkeys(spent, 0.0)
            t0 = time.perf_counter()
            await asyncio.gather(*(place_batched(per) for _ in range(concurrency)))
            concurrent = time.perf_counter() - t0
            split = {k: round(v / concurrent, 2) for k, v in spent.items()}
            claim_batch.claim_many = real_claim_many  # type: ignore[assignment]
            flushes = placement.batcher.flushes - flushes0
            # Larger batches: more builds at once (a conductor's build_concurrency, or several conductors).
            wide = concurrency * 4
            t0 = time.perf_counter()
            await asyncio.gather(*(place_batched(max(1, n // wide)) for _ in range(wide)))
            concurrent_wide = time.perf_counter() - t0
            wide_n = max(1, n // wide) * wide
            cache = workers.scheduler.cache
            reloads = cache.reloads

            providers = [s.provider_uuid for s in cache.states_now()]
            t0 = time.perf_counter()
            for _ in range(n):
                await placement.claim(new_uuid(), random.choice(providers), REQUEST)
            raw = time.perf_counter() - t0

            # As before issue 14: every request reads every host (cache below its threshold).
            old = SchedulerManager(db, conf.replace(extra={**conf.extra, "host_cache_min_hosts": 10**9}), placement)
            m = max(10, n // 10)
            t0 = time.perf_counter()
            for _ in range(m):
                spec = _spec()
                dest = (await old.select_destinations(spec, 1))[0]
                await placement.claim(spec["instance_uuid"], dest["provider_uuid"], REQUEST)
            uncached = time.perf_counter() - t0
        finally:
            await workers.stop()
            await bus.stop()
            await db.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = n / select_claim
    return {
        "hosts": hosts,
        "database": "sqlite" if not database else database.split("://", 1)[0],
        "transport": transport.split("://", 1)[0],
        "workers_startup_s": round(startup, 2),
        "placements": n,
        "placements_per_s": round(rate, 1),
        "placement_ms": round(select_claim / n * 1000, 2),
        "claims_lost": lost,
        "cache_reloads": reloads,
        "concurrency": concurrency,
        "batched_placements_per_s": round(per * concurrency / concurrent, 1),
        "batched_ms": round(concurrent / (per * concurrency) * 1000, 2),
        "select_batch_messages": batches,
        "claim_transactions": flushes,
        "batched_time_share": split,  # of the batched run's wall time: in select_batch, in batched claims
        "batched_single_claims_per_s": round(per * concurrency / concurrent_single, 1),
        "wide_concurrency": wide,
        "wide_batched_placements_per_s": round(wide_n / concurrent_wide, 1),
        "claim_batch_largest": placement.batcher.largest,
        "raw_claims_per_s": round(n / raw, 1),
        "raw_claim_ms": round(raw / n * 1000, 2),
        "uncached_placements_per_s": round(m / uncached, 1),
        "uncached_placement_ms": round(uncached / m * 1000, 2),
        "target": f">= {TARGET:.0f} placements/s",
        "passed": max(rate, per * concurrency / concurrent, wide_n / concurrent_wide) >= TARGET,
    }


async def cloud_creates(hosts: int, n: int, clients: int, database: str, transport: str,
                        timeout: float = 900.0) -> dict[str, Any]:
    env = dict(BIG_HOSTS)
    if database:
        env["CUMULO_DATABASE"] = database
    if transport != "inproc":
        env["CUMULO_TRANSPORT"] = transport
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-bench-"))
    cloud = h.CloudProcess(state_dir=tmp / "state", port=h.free_port(), fake_hosts=hosts, env=env)
    try:
        startup = await asyncio.to_thread(cloud.start, 300.0)
        async with h.make_client(cloud.url, connections=clients + 4, timeout=timeout) as client:
            s = await h.login(client, cloud.credentials())
            await h.unlimited_quota(client, s, s.project_id)
            image_id = await h.ensure_image(client, s)
            flavor = await h.smallest_flavor(client, s)
            queue = [h.server_body(f"sched-{i}", image_id, flavor["id"]) for i in range(n)]
            codes: dict[int, int] = {}
            ids: set[str] = set()

            async def worker() -> None:
                while queue:
                    body = queue.pop()
                    r = await client.post("/compute/v2.1/servers", json=body, headers=s.headers())
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 202:
                        ids.add(r.json()["server"]["id"])

            cpu0 = cloud.cpu_seconds()
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            posts = time.perf_counter() - t0
            from create_rate import wait_all_active

            _, statuses = await wait_all_active(client, s, ids, timeout)
            all_active = time.perf_counter() - t0
            cpu = cloud.cpu_seconds() - cpu0
    finally:
        await asyncio.to_thread(cloud.stop)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "cloud_startup_s": round(startup, 2),
        "creates": n,
        "clients": clients,
        "status_codes": codes,
        "creates_accepted_per_s": round(codes.get(202, 0) / posts, 1),
        "all_active_s": round(all_active, 2),
        "servers_per_s": round(len(ids) / all_active, 1),
        "ms_per_server_until_active": round(all_active / max(1, len(ids)) * 1000, 1),
        "cloud_cpu_ms_per_server": round(cpu / max(1, len(ids)) * 1000, 1),
        "final_statuses": dict(statuses),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("-n", type=int, default=500, help="placements (part 1) and creates (part 2)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--database", default=os.environ.get("CUMULO_BENCH_DATABASE", ""))
    ap.add_argument("--cloud-database", default=None,
                    help="part 2's database (default: --database; give another empty one on PostgreSQL)")
    ap.add_argument("--transport", default="inproc")
    ap.add_argument("--skip-cloud", action="store_true", help="part 1 only")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    res: dict[str, Any] = {"name": "scheduler_scale"}
    res["scheduler"] = asyncio.run(scheduler_alone(args.hosts, args.n, args.database, args.transport))
    sched = res["scheduler"]
    print(f"scheduler alone, {sched['hosts']} fake hosts, {sched['database']} + {sched['transport']}:")
    print(f"  workers start-up (register {sched['hosts']} hosts): {sched['workers_startup_s']} s")
    print(f"  select + claim: {sched['placements_per_s']} placements/s ({sched['placement_ms']} ms each, "
          f"{sched['claims_lost']} claims lost, {sched['cache_reloads']} cache reads)")
    print(f"  select + claim, {sched['concurrency']} builds at once, batched as the conductor does: "
          f"{sched['batched_placements_per_s']} placements/s ({sched['batched_ms']} ms each; "
          f"{sched['select_batch_messages']} select_batch messages, the rest single selects; "
          f"{sched['claim_transactions']} claim transactions; share of the time in select_batch and in "
          f"batched claims: {sched['batched_time_share']})")
    print(f"  the same, one claim transaction per build (before): {sched['batched_single_claims_per_s']} placements/s")
    print(f"  select + claim, {sched['wide_concurrency']} builds at once, batched: "
          f"{sched['wide_batched_placements_per_s']} placements/s (largest claim batch {sched['claim_batch_largest']})")
    print(f"  raw claims (no selection): {sched['raw_claims_per_s']}/s ({sched['raw_claim_ms']} ms each)")
    print(f"  host cache off (every host read per request): {sched['uncached_placements_per_s']} placements/s "
          f"({sched['uncached_placement_ms']} ms each)")
    print(f"  target {sched['target']}: {'PASS' if sched['passed'] else 'MISS'}")
    if not args.skip_cloud:
        cloud_db = args.database if args.cloud_database is None else args.cloud_database
        res["cloud"] = asyncio.run(cloud_creates(args.hosts, args.n, args.clients, cloud_db, args.transport))
        c = res["cloud"]
        print(f"cloud, cumulo up --fake-hosts {args.hosts}: start-up {c['cloud_startup_s']} s")
        print(f"  {c['creates']} creates from {c['clients']} clients: {c['creates_accepted_per_s']} accepted/s "
              f"{c['status_codes']}")
        print(f"  all ACTIVE after {c['all_active_s']} s: {c['servers_per_s']} servers/s "
              f"({c['ms_per_server_until_active']} ms each, cloud CPU {c['cloud_cpu_ms_per_server']} ms each); "
              f"{c['final_statuses']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
