"""Creates per second with 200 concurrent creates, against a real `cumulo up --fake-hosts 4`.

All POST /servers are fired at once (asyncio.gather over one httpx.AsyncClient with a connection
pool big enough for all of them). Reported: creates/s over the POSTs (all must be 202), and the time
from the first POST until every server is ACTIVE (polled through GET /servers/detail).

    .venv/bin/python benchmarks/create_rate.py [-n 200] [--fake-hosts 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

import _harness as h

TARGET_RATE = 100.0
# Polling the list competes with the builds for the cloud's one event loop: keep it sparse.
POLL_INTERVAL = 0.25
# Fake hosts big enough that capacity never limits the run (the scheduler still does its work).
BIG_HOSTS = {
    "CUMULO_FAKE_HOST_VCPUS": "4096",
    "CUMULO_FAKE_HOST_RAM_MB": "16777216",
    "CUMULO_FAKE_HOST_DISK_GB": "1000000",
}


async def post_one(client: Any, s: h.Session, body: dict[str, Any]) -> tuple[int, float, str | None, str]:
    t0 = time.perf_counter()
    r = await client.post("/compute/v2.1/servers", json=body, headers=s.headers())
    done = time.perf_counter()
    sid = r.json()["server"]["id"] if r.status_code == 202 else None
    return r.status_code, done - t0, sid, "" if r.status_code == 202 else r.text[:300]


async def wait_all_active(
    client: Any, s: h.Session, ids: set[str], timeout: float
) -> tuple[float, Counter[str]]:
    """Poll the admin's server list until every id is ACTIVE or ERROR; returns (time, final statuses)."""
    t0 = time.perf_counter()
    statuses: Counter[str] = Counter()
    while time.perf_counter() - t0 < timeout:
        seen: dict[str, str] = {}
        marker: str | None = None
        while True:
            params = {"limit": "1000", **({"marker": marker} if marker else {})}
            r = h.expect(
                await client.get("/compute/v2.1/servers/detail", params=params, headers=s.headers()), 200
            )
            page = r.json()["servers"]
            seen.update({srv["id"]: srv["status"] for srv in page})
            if len(page) < 1000:
                break
            marker = page[-1]["id"]
        statuses = Counter(seen.get(i, "MISSING") for i in ids)
        if statuses["ACTIVE"] + statuses["ERROR"] == len(ids):
            break
        await asyncio.sleep(POLL_INTERVAL)
    return time.perf_counter() - t0, statuses


async def run(n: int = 200, fake_hosts: int = 4, timeout: float = 300.0) -> dict[str, Any]:
    async with h.running_cloud(fake_hosts=fake_hosts, env=BIG_HOSTS) as cloud:
        async with h.make_client(cloud.url, connections=n + 8, timeout=timeout) as client:
            s = await h.login(client, cloud.credentials())
            await h.unlimited_quota(client, s, s.project_id)
            image_id = await h.ensure_image(client, s)
            flavor = await h.smallest_flavor(client, s)
            # Warm-up: one create through the whole path, and open the pool's connections.
            h.expect(
                await client.post(
                    "/compute/v2.1/servers",
                    json=h.server_body("warmup", image_id, flavor["id"]),
                    headers=s.headers(),
                ),
                202,
            )
            await asyncio.gather(
                *(client.get("/compute/v2.1/flavors", headers=s.headers()) for _ in range(n))
            )

            bodies = [h.server_body(f"rate-{i}", image_id, flavor["id"]) for i in range(n)]
            cloud.profile_start("create_rate")
            cpu0 = cloud.cpu_seconds()
            client_cpu0 = time.process_time()
            t0 = time.perf_counter()
            results = await asyncio.gather(*(post_one(client, s, b) for b in bodies))
            t_posts = time.perf_counter() - t0
            client_cpu_posts = time.process_time() - client_cpu0
            cpu_posts = cloud.cpu_seconds() - cpu0
            cloud.profile_stop()
            ids = {sid for _, _, sid, _ in results if sid}
            t_wait, statuses = await wait_all_active(client, s, ids, timeout)
            t_all_active = time.perf_counter() - t0
            cpu_all = cloud.cpu_seconds() - cpu0

    codes = Counter(code for code, _, _, _ in results)
    errors = [text for code, _, _, text in results if code != 202][:3]
    rate = codes[202] / t_posts if t_posts > 0 else 0.0
    all_ok = codes[202] == n
    return {
        "name": "create_rate",
        "metric": f"creates/s ({n} concurrent)",
        "value": round(rate, 1),
        "unit": "creates/s",
        "target": f">= {TARGET_RATE:.0f} creates/s",
        "passed": all_ok and rate >= TARGET_RATE,
        "concurrent": n,
        "fake_hosts": fake_hosts,
        "status_codes": dict(codes),
        "sample_errors": errors,
        "posts_wall_s": round(t_posts, 3),
        "post_latency": h.summary_ms([lat for code, lat, _, _ in results if code == 202]),
        "all_active_s": round(t_all_active, 3),
        "cloud_cpu_s_during_posts": round(cpu_posts, 2),
        # The load generator shares the 2 cores: when it is near the wall time, it is the limit.
        "client_cpu_s_during_posts": round(client_cpu_posts, 2),
        "cloud_cpu_s_until_all_active": round(cpu_all, 2),
        "wait_after_posts_s": round(t_wait, 3),
        "final_statuses": dict(statuses),
    }


def print_report(res: dict[str, Any]) -> None:
    lat = res["post_latency"]
    print(f"create_rate: {res['concurrent']} concurrent creates, --fake-hosts {res['fake_hosts']}")
    print(f"  POST status codes: {res['status_codes']}")
    print(f"  all POSTs answered in {res['posts_wall_s']} s  ->  {res['value']} creates/s")
    print(
        f"  POST latency p50 {lat.get('p50_ms')} ms  p90 {lat.get('p90_ms')} ms  max {lat.get('max_ms')} ms"
    )
    print(
        f"  all servers ACTIVE {res['all_active_s']} s after the first POST; final statuses {res['final_statuses']}"
    )
    print(
        f"  cloud CPU: {res['cloud_cpu_s_during_posts']} s while the POSTs ran, "
        f"{res['cloud_cpu_s_until_all_active']} s until all ACTIVE; "
        f"load generator CPU {res['client_cpu_s_during_posts']} s while the POSTs ran"
    )
    print(f"  target {res['target']}: {'PASS' if res['passed'] else 'MISS'}")
    for e in res["sample_errors"]:
        print(f"  error: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="concurrent creates")
    ap.add_argument("--fake-hosts", type=int, default=4)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    res = asyncio.run(run(n=args.n, fake_hosts=args.fake_hosts))
    print_report(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
