"""What a Prometheus scrape costs on a runc cloud with N running containers, in one run:

a) scrape latency: K sequential `GET /metrics` on the metrics port (with the scrape secret), each
   timed to the last byte; within it, the node's own sampling time (its
   cumulo_node_scrape_duration_seconds); the body size and the number of per-server CPU series
   (must be N);
b) what a scrape does to the API: p50/p90 of `GET /compute/v2.1/flavors` (sequential) with no
   scrape running, then while a scraper loops scrapes back to back. Scrapes render in a worker
   thread and the drivers read files in threads, so the API should barely notice.

Everything it boots is deleted at the end. Needs root and runc.

    .venv/bin/python benchmarks/metrics_scrape.py [-n 20] [--scrapes 30] [--requests 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import _harness as h
import httpx

FLAVOR = "m1.nano"


async def wait_all(client: httpx.AsyncClient, s: h.Session, ids: set[str], status: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = h.expect(await client.get("/compute/v2.1/servers/detail", headers=s.headers()), 200)
        seen = {x["id"]: x["status"] for x in r.json()["servers"]}
        if status == "GONE":
            if not ids & set(seen):
                return
        else:
            bad = [i for i in ids if seen.get(i) == "ERROR"]
            if bad:
                raise RuntimeError(f"servers in ERROR: {bad}")
            if all(seen.get(i) == status for i in ids):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {status}")
        await asyncio.sleep(0.5)


async def api_latency(client: httpx.AsyncClient, s: h.Session, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        h.expect(await client.get("/compute/v2.1/flavors", headers=s.headers()), 200)
        out.append(time.perf_counter() - t0)
    return out


async def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20, help="running containers")
    ap.add_argument("--scrapes", type=int, default=30)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    mport = h.free_port()
    env = {"CUMULO_LOCAL_DRIVER": "runc", "CUMULO_METRICS_PORT": str(mport), "CUMULO_POWER_SYNC_INTERVAL": "3600"}
    async with h.running_cloud(env=env) as cloud, h.make_client(cloud.url) as client:
        s = await h.login(client, cloud.credentials())
        await h.unlimited_quota(client, s, s.project_id)
        images = h.expect(await client.get("/image/v2/images", params={"name": "busybox"},
                                           headers={"X-Auth-Token": s.token}), 200).json()["images"]
        flavors = h.expect(await client.get("/compute/v2.1/flavors", headers=s.headers()), 200).json()["flavors"]
        flavor = next(f["id"] for f in flavors if f["name"] == FLAVOR)
        ids: set[str] = set()
        for i in range(args.n):
            r = h.expect(await client.post("/compute/v2.1/servers", headers=s.headers(),
                                           json=h.server_body(f"metered-{i}", images[0]["id"], flavor)), 202)
            ids.add(r.json()["server"]["id"])
        try:
            await wait_all(client, s, ids, "ACTIVE", timeout=300)
            secret = (cloud.state_dir / "metrics-token").read_text().strip()
            murl = f"http://127.0.0.1:{mport}/metrics"
            async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {secret}"}) as scraper:
                times: list[float] = []
                node_times: list[float] = []
                size = series = 0
                for _ in range(args.scrapes):
                    t0 = time.perf_counter()
                    resp = await scraper.get(murl)
                    times.append(time.perf_counter() - t0)
                    h.expect(resp, 200)
                    size = len(resp.content)
                    series = sum(1 for line in resp.text.splitlines()
                                 if line.startswith("cumulo_server_cpu_seconds_total{"))
                    node_times += [float(line.rsplit(" ", 1)[1]) for line in resp.text.splitlines()
                                   if line.startswith("cumulo_node_scrape_duration_seconds{")]
                idle = await api_latency(client, s, args.requests)
                stop = asyncio.Event()
                busy_scrapes = 0

                async def scrape_loop() -> None:
                    nonlocal busy_scrapes
                    while not stop.is_set():
                        h.expect(await scraper.get(murl), 200)
                        busy_scrapes += 1

                task = asyncio.create_task(scrape_loop())
                busy = await api_latency(client, s, args.requests)
                stop.set()
                await task
        finally:
            for sid in ids:
                await client.delete(f"/compute/v2.1/servers/{sid}", headers=s.headers())
            await wait_all(client, s, ids, "GONE", timeout=300)
    result = {
        "containers": args.n,
        "scrape": h.summary_ms(times),
        "node_sampling": h.summary_ms(node_times),
        "scrape_body_bytes": size,
        "server_cpu_series": series,
        "api_flavors_idle": h.summary_ms(idle),
        "api_flavors_while_scraping": h.summary_ms(busy),
        "scrapes_during_api_run": busy_scrapes,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    asyncio.run(main())
