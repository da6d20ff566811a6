"""Creating a compute through OCCI against the same server through the Nova API, in one run.

On a real `cumulo up` on loopback (by default as `cumulo up` comes: its own driver choice, runc
as root, with the busybox demo image and flavor m1.nano; `--driver fake` for the fake driver, which
isolates the API paths' own cost), as the demo member (a tenant: its servers get its `private`
network by default; `--user admin` for the admin's, on `public`), N rounds, each creating one
server both ways, the order alternating from round to round:

- OCCI: `POST /occi/compute/` (text/occi: the compute kind, the image's os_tpl and the flavor's
  resource_tpl mixins, occi.core.title), then `GET /occi/compute/<id>` (text/plain) every 2 ms until
  occi.compute.state is active;
- Nova: `POST /compute/v2.1/servers` (microversion 2.1: no `networks`, so both get the network
  Nova picks by default, as an OCCI create without a networkinterface does), then
  `GET /compute/v2.1/servers/<id>` every 2 ms until ACTIVE.

Each from sending the POST to the first GET showing the state; and, in the same rounds, the same
two creates watched in the cloud's SQLite DB from a thread of ours until the row is active
(boot_container.py's way: a 2 ms GET poll competes with the boot for the cloud's one event loop,
and an OCCI compute's GET, which renders its links, is the heavier of the two). p50/p90 of each,
the ratio of the p50s (target <= 1.1x) and the median of each round's own ratio (other work on
the machine drifts less within a round). The POSTs alone, and one GET of an active server each
way, are reported too. Every server is deleted (through Nova)
outside the timed sections, and the run checks none is left.

    .venv/bin/python benchmarks/occi.py [-n 30] [--driver auto|fake] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import _harness as h

TARGET_RATIO = 1.1
POLL_INTERVAL = 0.002
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
OS_TPL = "http://schemas.openstack.org/template/os#"
RESOURCE_TPL = "http://schemas.openstack.org/template/resource#"
_STATE = re.compile(r'occi\.compute\.state="?(active|inactive|suspended|error)"?')


async def find_image(client: Any, s: h.Session, driver: str) -> str:
    if driver == "fake":
        return await h.ensure_image(client, s)
    r = h.expect(await client.get("/image/v2/images", params={"name": "busybox"}, headers={"X-Auth-Token": s.token}), 200)
    for img in r.json().get("images", []):
        if img.get("status") == "active" and img.get("container_format") == "docker":
            return str(img["id"])
    raise RuntimeError("no active busybox demo image (is busybox-static installed?)")


async def flavor_named(client: Any, s: h.Session, name: str) -> dict[str, Any]:
    r = h.expect(await client.get("/compute/v2.1/flavors/detail", headers=s.headers()), 200)
    for f in r.json()["flavors"]:
        if f["name"] == name:
            return dict(f)
    raise RuntimeError(f"no flavor {name}")


def occi_headers(s: h.Session, image_id: str, flavor_id: str, title: str) -> list[tuple[str, str]]:
    return [
        ("X-Auth-Token", s.token),
        ("Content-Type", "text/occi"),
        ("Accept", "text/plain"),
        ("Category", f'compute; scheme="{INFRA}"; class="kind"'),
        ("Category", f'{image_id}; scheme="{OS_TPL}"; class="mixin"'),
        ("Category", f'{flavor_id}; scheme="{RESOURCE_TPL}"; class="mixin"'),
        ("X-OCCI-Attribute", f'occi.core.title="{title}"'),
    ]


def created_id(r: Any) -> str:
    """The new compute's id: from Location, else the rendered X-OCCI-Location / occi.core.id."""
    where = r.headers.get("location") or r.headers.get("x-occi-location") or ""
    if not where:
        m = re.search(r"X-OCCI-Location:\s*(\S+)", r.text) or re.search(r'occi\.core\.id="([^"]+)"', r.text)
        where = m.group(1) if m else ""
    if not where:
        raise RuntimeError(f"no location in the create answer: {r.status_code} {r.text[:300]}")
    return where.rstrip("/").rsplit("/", 1)[-1]


def occi_state(r: Any) -> str:
    text = r.text + "\n" + "\n".join(v for k, v in r.headers.multi_items() if k.lower() == "x-occi-attribute")
    m = _STATE.search(text)
    return m.group(1) if m else "?"


class DbWatch:
    """Reads the cloud's SQLite DB (WAL: readers never block its writer) from a thread of ours, so
    seeing the row turn active costs the cloud's event loop nothing (boot_container.py's way)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def wait(self, sid: str, t0: float, timeout: float = 60.0) -> tuple[float, str]:
        return h.wait_row_active(self.path, sid, t0, timeout)


async def occi_create(client: Any, s: h.Session, image_id: str, flavor_id: str, title: str,
                      timeout: float = 60.0, watch: DbWatch | None = None) -> tuple[float, float, str, str]:
    """(seconds to active, seconds for the POST, final state, id); `watch`: seen in the DB, not by GET."""
    t0 = time.perf_counter()
    r = h.expect(await client.post("/occi/compute/", headers=occi_headers(s, image_id, flavor_id, title)), 200, 201)
    t_post = time.perf_counter() - t0
    cid = created_id(r)
    if watch is not None:
        took, state = await asyncio.to_thread(watch.wait, cid, t0, timeout)
        return took, t_post, state, cid
    state = "?"
    get_headers = {"X-Auth-Token": s.token, "Accept": "text/plain"}
    while time.perf_counter() - t0 < timeout:
        state = occi_state(h.expect(await client.get(f"/occi/compute/{cid}", headers=get_headers), 200))
        if state in ("active", "error"):
            break
        await asyncio.sleep(POLL_INTERVAL)
    return time.perf_counter() - t0, t_post, state, cid


async def nova_create(client: Any, s: h.Session, image_id: str, flavor_id: str, title: str,
                      timeout: float = 60.0, watch: DbWatch | None = None) -> tuple[float, float, str, str]:
    headers = s.headers("2.1")
    body = {"server": {"name": title, "imageRef": image_id, "flavorRef": flavor_id}}
    t0 = time.perf_counter()
    r = h.expect(await client.post("/compute/v2.1/servers", json=body, headers=headers), 202)
    t_post = time.perf_counter() - t0
    sid = str(r.json()["server"]["id"])
    if watch is not None:
        took, state = await asyncio.to_thread(watch.wait, sid, t0, timeout)
        return took, t_post, state, sid
    status = "?"
    while time.perf_counter() - t0 < timeout:
        status = h.expect(await client.get(f"/compute/v2.1/servers/{sid}", headers=headers), 200).json()["server"]["status"]
        if status in ("ACTIVE", "ERROR"):
            break
        await asyncio.sleep(POLL_INTERVAL)
    return time.perf_counter() - t0, t_post, status.lower(), sid


async def delete_and_wait(client: Any, s: h.Session, sid: str, timeout: float = 60.0) -> None:
    h.expect(await client.delete(f"/compute/v2.1/servers/{sid}", headers=s.headers()), 204)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if (await client.get(f"/compute/v2.1/servers/{sid}", headers=s.headers())).status_code == 404:
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"server {sid} not deleted after {timeout}s")


async def run(n: int = 30, driver: str = "auto", warmup: int = 2, user: str = "demo") -> dict[str, Any]:
    env = {"CUMULO_LOCAL_DRIVER": driver}
    async with h.running_cloud(env=env) as cloud, h.make_client(cloud.url, connections=4) as client:
        admin = await h.login(client, cloud.credentials())
        s = admin if user == "admin" else await h.login(client, cloud.credentials("cumulo-demo"))
        await h.unlimited_quota(client, admin, s.project_id)
        image_id = await find_image(client, admin, driver)  # public (the fake one made by the admin)
        flavor = await flavor_named(client, s, "m1.nano")
        ways = {"occi": occi_create, "nova": nova_create}
        for i in range(warmup):
            for name, create in ways.items():
                _t, _p, state, sid = await create(client, s, image_id, flavor["id"], f"warm-{name}-{i}")
                await delete_and_wait(client, s, sid)
                if state != "active":
                    raise RuntimeError(f"warm-up {name} server ended {state}: {cloud.log_tail()}")
        # One GET of an active server each way (what the polling repeats), 50 each, alternating.
        _t, _p, _st, oid = await occi_create(client, s, image_id, flavor["id"], "get-occi")
        _t, _p, _st, nid = await nova_create(client, s, image_id, flavor["id"], "get-nova")
        gets: dict[str, list[float]] = {"occi": [], "nova": []}
        occi_get = {"X-Auth-Token": s.token, "Accept": "text/plain"}
        for _ in range(50):
            t0 = time.perf_counter()
            h.expect(await client.get(f"/occi/compute/{oid}", headers=occi_get), 200)
            gets["occi"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            h.expect(await client.get(f"/compute/v2.1/servers/{nid}", headers=s.headers("2.1")), 200)
            gets["nova"].append(time.perf_counter() - t0)
        for sid in (oid, nid):
            await delete_and_wait(client, s, sid)
        watch = DbWatch(cloud.state_dir.absolute() / "cumulo.sqlite")
        cloud.profile_start("occi")
        keys = ("occi", "nova", "occi_db", "nova_db")
        times: dict[str, list[float]] = {k: [] for k in keys}
        posts: dict[str, list[float]] = {"occi": [], "nova": []}
        failures: dict[str, int] = {}
        # each round's OCCI time / Nova time, polled and DB-watched (the load drifts less within a round)
        paired: dict[str, list[float]] = {"get": [], "db": []}
        load = [os.getloadavg()[0]]
        for i in range(n):
            order = ["occi", "nova", "occi_db", "nova_db"] if i % 2 == 0 else ["nova", "occi", "nova_db", "occi_db"]
            took_round: dict[str, float] = {}
            for key in order:
                name = key.removesuffix("_db")
                took, t_post, state, sid = await ways[name](
                    client, s, image_id, flavor["id"], f"bench-{key}-{i}", watch=watch if key.endswith("_db") else None)
                await delete_and_wait(client, s, sid)
                if state != "active":
                    failures[f"{key}:{state}"] = failures.get(f"{key}:{state}", 0) + 1
                    continue
                times[key].append(took)
                posts[name].append(t_post)
                took_round[key] = took
            for mode, (a, b) in (("get", ("occi", "nova")), ("db", ("occi_db", "nova_db"))):
                if a in took_round and b in took_round:
                    paired[mode].append(took_round[a] / took_round[b])
        load.append(os.getloadavg()[0])
        cloud.profile_stop()
        left = h.expect(await client.get("/compute/v2.1/servers", headers=s.headers()), 200).json()["servers"]
    occi_p50 = h.percentile(times["occi"], 50)
    nova_p50 = h.percentile(times["nova"], 50)
    db_ratio = h.percentile(times["occi_db"], 50) / h.percentile(times["nova_db"], 50) if times["nova_db"] else None
    return {
        "driver": driver,
        "user": user,
        "image": image_id,
        "flavor": flavor["name"],
        "n": n,
        "occi_to_active": h.summary_ms(times["occi"]),
        "nova_to_active": h.summary_ms(times["nova"]),
        "occi_post": h.summary_ms(posts["occi"]),
        "nova_post": h.summary_ms(posts["nova"]),
        "occi_get": h.summary_ms(gets["occi"]),
        "nova_get": h.summary_ms(gets["nova"]),
        "occi_to_active_db": h.summary_ms(times["occi_db"]),
        "nova_to_active_db": h.summary_ms(times["nova_db"]),
        "ratio_p50": round(occi_p50 / nova_p50, 3) if nova_p50 else None,
        "paired_ratio_p50": round(h.percentile(paired["get"], 50), 3) if paired["get"] else None,
        "db_ratio_p50": round(db_ratio, 3) if db_ratio else None,
        "db_paired_ratio_p50": round(h.percentile(paired["db"], 50), 3) if paired["db"] else None,
        "load_average": [round(x, 1) for x in load],
        "post_ratio_p50": round(h.percentile(posts["occi"], 50) / h.percentile(posts["nova"], 50), 3)
        if posts["nova"] else None,
        "target_ratio": TARGET_RATIO,
        "failures": failures,
        "servers_left": len(left),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--driver", default="auto", help="the cloud's CUMULO_LOCAL_DRIVER (auto: cumulo up's default)")
    ap.add_argument("--user", default="demo", choices=("demo", "admin"),
                    help="whose servers: the demo member's (default: its private network) or the admin's")
    ap.add_argument("--json", help="write the result here as well")
    args = ap.parse_args()
    result = asyncio.run(run(args.n, args.driver, user=args.user))
    o, v = result["occi_to_active"], result["nova_to_active"]
    print(f"occi: driver {result['driver']}, as {result['user']}, image {result['image']}, flavor {result['flavor']}, "
          f"n = {result['n']} each")
    print(f"  OCCI POST /occi/compute/ to active:  p50 {o.get('p50_ms')} ms  p90 {o.get('p90_ms')} ms")
    print(f"  Nova POST /servers to ACTIVE:        p50 {v.get('p50_ms')} ms  p90 {v.get('p90_ms')} ms")
    print(f"  POST alone: OCCI p50 {result['occi_post'].get('p50_ms')} ms, Nova p50 {result['nova_post'].get('p50_ms')} ms"
          f" (ratio {result['post_ratio_p50']})")
    print(f"  GET of an active server: OCCI p50 {result['occi_get'].get('p50_ms')} ms, "
          f"Nova p50 {result['nova_get'].get('p50_ms')} ms")
    od, vd = result["occi_to_active_db"], result["nova_to_active_db"]
    print(f"  ACTIVE seen in the DB (no polling): OCCI p50 {od.get('p50_ms')} ms, Nova p50 {vd.get('p50_ms')} ms: "
          f"{result['db_ratio_p50']}x (rounds' own: {result['db_paired_ratio_p50']}x)")
    print(f"  load average {result['load_average'][0]} -> {result['load_average'][1]}")
    for label, ratio, own in (("polled by GET", result["ratio_p50"], result["paired_ratio_p50"]),
                              ("seen in the DB", result["db_ratio_p50"], result["db_paired_ratio_p50"])):
        verdict = "meets" if ratio is not None and ratio <= TARGET_RATIO else "MISSES"
        print(f"  ratio OCCI/Nova to ACTIVE, {label} (p50): {ratio}x, rounds' own {own}x "
              f"({verdict} the target <= {TARGET_RATIO}x)")
    if result["failures"] or result["servers_left"]:
        print(f"  failures {result['failures']}, servers left {result['servers_left']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
