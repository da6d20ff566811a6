"""API-to-ACTIVE for one server on the fake driver, against a real `cumulo up` on loopback.

Each of N sequential creates is timed from sending POST /servers to the first GET /servers/{id}
that shows ACTIVE (polling every 2 ms). As a baseline in the same run, the time of a trivial
authenticated GET round trip (GET /flavors/{id}) is measured, and the ratio reported.

    .venv/bin/python benchmarks/boot_fake.py [-n 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import _harness as h

TARGET_P50_MS = 50.0
POLL_INTERVAL = 0.002


async def boot_one(
    client: Any, s: h.Session, body: dict[str, Any], timeout: float = 30.0
) -> tuple[float, float, str]:
    """(seconds to ACTIVE, seconds for the POST alone, final status); the server is deleted afterwards."""
    headers = s.headers()
    t0 = time.perf_counter()
    r = h.expect(await client.post("/compute/v2.1/servers", json=body, headers=headers), 202)
    t_post = time.perf_counter() - t0
    sid = r.json()["server"]["id"]
    status = "?"
    while time.perf_counter() - t0 < timeout:
        g = h.expect(await client.get(f"/compute/v2.1/servers/{sid}", headers=headers), 200)
        status = g.json()["server"]["status"]
        if status in ("ACTIVE", "ERROR"):
            break
        await asyncio.sleep(POLL_INTERVAL)
    took = time.perf_counter() - t0
    await delete_and_wait(client, s, sid)
    return took, t_post, status


async def delete_and_wait(client: Any, s: h.Session, sid: str, timeout: float = 30.0) -> None:
    """Free the host again (the local host has few vCPUs), outside the timed section."""
    h.expect(await client.delete(f"/compute/v2.1/servers/{sid}", headers=s.headers()), 204)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        g = await client.get(f"/compute/v2.1/servers/{sid}", headers=s.headers())
        if g.status_code == 404:
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"server {sid} not deleted after {timeout}s")


async def run(n: int = 50, baseline_n: int = 200, warmup: int = 3) -> dict[str, Any]:
    async with h.running_cloud() as cloud, h.make_client(cloud.url, connections=4) as client:
        s = await h.login(client, cloud.credentials())
        await h.unlimited_quota(client, s, s.project_id)
        image_id = await h.ensure_image(client, s)
        flavor = await h.smallest_flavor(client, s)

        # Baseline: the cheapest authenticated compute round trip.
        flavor_url = f"/compute/v2.1/flavors/{flavor['id']}"
        for _ in range(10):
            h.expect(await client.get(flavor_url, headers=s.headers()), 200)
        base: list[float] = []
        for _ in range(baseline_n):
            t0 = time.perf_counter()
            h.expect(await client.get(flavor_url, headers=s.headers()), 200)
            base.append(time.perf_counter() - t0)

        for i in range(warmup):
            await boot_one(client, s, h.server_body(f"warmup-{i}", image_id, flavor["id"]))
        cloud.profile_start("boot_fake")
        active: list[float] = []
        posts: list[float] = []
        failures: dict[str, int] = {}
        for i in range(n):
            took, t_post, status = await boot_one(
                client, s, h.server_body(f"boot-{i}", image_id, flavor["id"])
            )
            if status == "ACTIVE":
                active.append(took)
                posts.append(t_post)
            else:
                failures[status] = failures.get(status, 0) + 1
        cloud.profile_stop()

    boot = h.summary_ms(active)
    baseline = h.summary_ms(base)
    p50 = boot.get("p50_ms")
    return {
        "name": "boot_fake",
        "metric": "API-to-ACTIVE p50",
        "value": p50,
        "unit": "ms",
        "target": f"<= {TARGET_P50_MS:.0f} ms",
        "passed": p50 is not None and p50 <= TARGET_P50_MS,
        "boot": boot,
        "post_only": h.summary_ms(posts),
        "baseline_get_flavor": baseline,
        "ratio_p50_to_baseline": round(p50 / baseline["p50_ms"], 1)
        if p50 and baseline.get("p50_ms")
        else None,
        "failures": failures,
    }


def print_report(res: dict[str, Any]) -> None:
    b, p, base = res["boot"], res["post_only"], res["baseline_get_flavor"]
    print(f"boot_fake: {b.get('n', 0)} sequential creates, fake driver")
    print(
        f"  API-to-ACTIVE   p50 {b.get('p50_ms')} ms  p90 {b.get('p90_ms')} ms  (min {b.get('min_ms')}, max {b.get('max_ms')})"
    )
    print(f"  POST alone      p50 {p.get('p50_ms')} ms  p90 {p.get('p90_ms')} ms")
    print(
        f"  GET flavor      p50 {base.get('p50_ms')} ms  p90 {base.get('p90_ms')} ms  (baseline round trip)"
    )
    print(
        f"  ratio p50/baseline: {res['ratio_p50_to_baseline']}x   target {res['target']}: {'PASS' if res['passed'] else 'MISS'}"
    )
    if res["failures"]:
        print(f"  failures: {res['failures']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50, help="sequential creates to time")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    res = asyncio.run(run(n=args.n))
    print_report(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
