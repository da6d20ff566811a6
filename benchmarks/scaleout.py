"""API-to-ACTIVE on the scaled-out configuration against the embedded mode (issue 14, acceptance 4).

Two clouds run side by side, for each driver (`--drivers`, default fake then runc):

- embedded: `cumulo up` as it comes (SQLite, the in-process bus, one process), the local host on
  the driver (`CUMULO_LOCAL_DRIVER`), host link off;
- scaled: PostgreSQL + RabbitMQ, separate processes: `cumulo api`, `cumulo conductor`,
  `cumulo scheduler`, a network-only L3 host (`cumulo compute` in the root namespace, its
  nova-compute disabled) and `--hosts` (1) dev hosts, each a `cumulo compute --host NAME --driver D`
  in a network namespace of its own on an underlay bridge (tests/system/cluster.py's ClusterCloud:
  a database and a vhost of its own, its processes stopped by pid, the dev hosts torn down by name).

PostgreSQL and RabbitMQ are private instances this script starts (scripts/services.py, on free
ports, in a temp dir) and stops at the end: never the system's. Needs root (namespaces; runc).

Each round boots one server on each cloud, the order alternating (so a load swing of the shared
machine hits both alike), each timed from sending `POST /compute/v2.1/servers` to the first
`GET /servers/{id}` showing ACTIVE (polled every `--poll` s, 2 ms: as boot_fake/boot_container),
then deleted (untimed). The project keeps its default quotas (the create's quota-locked write: an
unlimited project's create skips the lock and the count). Fake: the smallest flavor and a tiny
uploaded image; runc: m1.nano and the busybox demo image (the dev host downloads it into its image
cache during the warm-up boots).
`networks: none`. p50, p95 of each, the ratios scaled / embedded, the 1-minute load average.

    .venv/bin/python benchmarks/scaleout.py [-n 20] [--drivers fake,runc] [--hosts 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import _harness as h
import yaml

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3
# Same settings on both sides: no periodic power sync while measuring, no tiny-vm build.
COMMON_ENV = {"CUMULO_POWER_SYNC_INTERVAL": "3600", "CUMULO_TINY_VM_IMAGE": "off"}


def _port_block() -> int:
    """A base port B with B, B+1, B+2 free (RabbitMQ's AMQP, epmd and distribution ports)."""
    for _ in range(200):
        base = random.randrange(20000, 60000)  # noqa: S311 - a port, not a secret
        try:
            for p in (base, base + 1, base + 2):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("0.0.0.0", p))  # noqa: S104 - only probing that the port is free
        except OSError:
            continue
        return base
    raise RuntimeError("no free port block")


def services_module() -> ModuleType:
    """scripts/services.py with ports of this run's own (its ports are read at import)."""
    os.environ["CUMULO_TEST_PG_PORT"] = str(h.free_port())
    os.environ["CUMULO_TEST_AMQP_PORT"] = str(_port_block())
    spec = importlib.util.spec_from_file_location("bench_scaleout_services", ROOT / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cluster_class() -> Any:
    """tests/system/cluster.py's ClusterCloud (the scaled configuration the system tests run)."""
    for sub in ("tests", "tests/system"):
        path = str(ROOT / sub)
        if path not in sys.path:
            sys.path.insert(0, path)
    from cluster import ClusterCloud

    return ClusterCloud


class Side:
    """One cloud of the comparison: its URL, credentials, and what it boots."""

    def __init__(self, name: str, url: str, clouds_yaml: Path) -> None:
        self.name, self.url = name, url
        auth = yaml.safe_load(clouds_yaml.read_text())["clouds"]["cumulo"]["auth"]
        self.auth = dict(auth)
        self.client: Any = None
        self.s: h.Session | None = None
        self.body: dict[str, Any] = {}
        self.times: list[float] = []
        self.posts: list[float] = []
        self.failures: dict[str, int] = {}

    async def open(self, driver: str) -> None:
        self.client = h.make_client(self.url, connections=4)
        self.s = await h.login(self.client, self.auth)
        # The project's default quotas, as a user gets them (one server at a time fits): a project
        # without instance, core or ram limits takes a shorter create (no lock, no count), which
        # would flatter the split's figure.
        if driver == "fake":
            image = await h.ensure_image(self.client, self.s)
            flavor = (await h.smallest_flavor(self.client, self.s))["id"]
        else:
            image = await self._image("busybox")
            flavor = await self._flavor("m1.nano")
        self.body = h.server_body("scaleout", image, flavor)

    async def _image(self, name: str, timeout: float = 300.0) -> str:
        assert self.s is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = h.expect(await self.client.get("/image/v2/images", params={"name": name},
                                               headers={"X-Auth-Token": self.s.token}), 200)
            for img in r.json().get("images", []):
                if img.get("status") == "active":
                    return str(img["id"])
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.name}: no active {name} image (is busybox-static installed?)")

    async def _flavor(self, name: str) -> str:
        assert self.s is not None
        r = h.expect(await self.client.get("/compute/v2.1/flavors/detail", headers=self.s.headers()), 200)
        for f in r.json()["flavors"]:
            if f["name"] == name:
                return str(f["id"])
        raise RuntimeError(f"{self.name}: no flavor {name}")

    async def boot(self, poll: float, timeout: float = 120.0, record: bool = True) -> None:
        assert self.s is not None
        headers = self.s.headers()
        t0 = time.perf_counter()
        r = h.expect(await self.client.post("/compute/v2.1/servers", json=self.body, headers=headers), 202)
        t_post = time.perf_counter() - t0
        sid = r.json()["server"]["id"]
        status = "?"
        while time.perf_counter() - t0 < timeout:
            g = h.expect(await self.client.get(f"/compute/v2.1/servers/{sid}", headers=headers), 200)
            status = g.json()["server"]["status"]
            if status in ("ACTIVE", "ERROR"):
                break
            await asyncio.sleep(poll)
        took = time.perf_counter() - t0
        if record:
            if status == "ACTIVE":
                self.times.append(took)
                self.posts.append(t_post)
            else:
                self.failures[status] = self.failures.get(status, 0) + 1
        await self.delete(sid)

    async def delete(self, sid: str, timeout: float = 120.0) -> None:
        assert self.s is not None
        h.expect(await self.client.delete(f"/compute/v2.1/servers/{sid}", headers=self.s.headers()), 204)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            g = await self.client.get(f"/compute/v2.1/servers/{sid}", headers=self.s.headers())
            if g.status_code == 404:
                return
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{self.name}: server {sid} not deleted after {timeout:.0f} s")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def summary(self) -> dict[str, Any]:
        return {"active": h.summary_ms(self.times), "post_only": h.summary_ms(self.posts), "failures": self.failures}


async def compare(driver: str, services: dict[str, str], n: int, warmup: int, poll: float, hosts: int,
                  tmp: Path) -> dict[str, Any]:
    ClusterCloud = cluster_class()
    load: list[float] = [os.getloadavg()[0]]
    emb_env = {**COMMON_ENV, "CUMULO_LOCAL_DRIVER": driver}
    embedded = h.CloudProcess(state_dir=tmp / f"embedded-{driver}" / "state", port=h.free_port(), env=emb_env)
    embedded.state_dir.parent.mkdir(parents=True)
    vni = random.randrange(1000, 1600) * 10000  # noqa: S311 - a VNI block apart from other clouds'
    scaled = ClusterCloud(tmp / f"scaled-{driver}", services, drivers=driver, hosts=hosts, external=False,
                          env=COMMON_ENV, settings={"vni_ranges": f"{vni + 1}:{vni + 10000}"})
    sides: list[Side] = []
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(embedded.start, 300.0)
        start_embedded = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.to_thread(scaled.start)
        start_scaled = time.perf_counter() - t0
        emb = Side("embedded", embedded.url, embedded.state_dir / "clouds.yaml")
        sc = Side("scaled", scaled.base_url, scaled.clouds_yaml)
        sides = [emb, sc]
        for side in sides:
            await side.open(driver)
            for _ in range(warmup):
                await side.boot(poll, timeout=300.0, record=False)
        load.append(os.getloadavg()[0])
        for i in range(n):
            for side in (sides if i % 2 == 0 else sides[::-1]):
                await side.boot(poll)
            load.append(os.getloadavg()[0])
    finally:
        for side in sides:
            await side.close()
        await asyncio.to_thread(embedded.stop)
        await asyncio.to_thread(scaled.close)
    e, s = emb.summary(), sc.summary()

    def ratio(key: str) -> float | None:
        a, b = e["active"].get(key), s["active"].get(key)
        return round(b / a, 2) if a and b else None

    return {
        "driver": driver, "n": n, "hosts": hosts, "poll_s": poll,
        "start_s": {"embedded": round(start_embedded, 1), "scaled": round(start_scaled, 1)},
        "embedded": e, "scaled": s,
        "ratio_p50": ratio("p50_ms"), "ratio_p95": ratio("p95_ms"),
        "passed": (ratio("p50_ms") or 99.0) <= TARGET_RATIO,
        "loadavg_1m": {"min": min(load), "max": max(load), "mean": round(sum(load) / len(load), 2)},
    }


async def run(n: int, drivers: list[str], warmup: int, poll: float, hosts: int) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise SystemExit("scaleout.py needs root (dev hosts in namespaces, private PostgreSQL/RabbitMQ)")
    services = services_module()
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-bench-scaleout-"))
    tmp.chmod(0o711)  # the postgres and rabbitmq users reach their dirs under it
    svc_dir = tmp / "services"
    results: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        urls = await asyncio.to_thread(services.start, svc_dir)
        print(f"private PostgreSQL and RabbitMQ up in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        svc = {"database_url": urls["CUMULO_TEST_DATABASE_URL"], "transport_url": urls["CUMULO_TEST_TRANSPORT_URL"],
               "dir": urls["CUMULO_TEST_SERVICES_DIR"]}
        for driver in drivers:
            res = await compare(driver, svc, n, warmup, poll, hosts, tmp)
            print_one(res)
            results.append(res)
    finally:
        await asyncio.to_thread(services.stop, svc_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"name": "scaleout", "metric": "API-to-ACTIVE p50 scaled / embedded", "target": f"<= {TARGET_RATIO}x",
            "results": results, "passed": all(r["passed"] for r in results)}


def print_one(r: dict[str, Any]) -> None:
    e, s = r["embedded"]["active"], r["scaled"]["active"]
    print(f"scaleout [{r['driver']}]: n = {r['n']} each, alternating; scaled = PostgreSQL + RabbitMQ, api/conductor/"
          f"scheduler + {r['hosts']} dev host(s); start-up embedded {r['start_s']['embedded']} s, "
          f"scaled {r['start_s']['scaled']} s")
    for name, x, p in (("embedded", e, r["embedded"]["post_only"]), ("scaled", s, r["scaled"]["post_only"])):
        print(f"  {name:9} API-to-ACTIVE p50 {x.get('p50_ms')} ms  p95 {x.get('p95_ms')} ms  "
              f"(min {x.get('min_ms')}, max {x.get('max_ms')}); POST alone p50 {p.get('p50_ms')} ms")
    print(f"  ratio scaled/embedded: p50 {r['ratio_p50']}x  p95 {r['ratio_p95']}x   target <= {TARGET_RATIO}x: "
          f"{'PASS' if r['passed'] else 'MISS'}")
    la = r["loadavg_1m"]
    print(f"  load average (1 min) during the run: {la['min']:.2f}..{la['max']:.2f} (mean {la['mean']})")
    for name in ("embedded", "scaled"):
        if r[name]["failures"]:
            print(f"  {name} failures: {r[name]['failures']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20, help="timed boots per cloud and driver (>= 10)")
    ap.add_argument("--drivers", default="fake,runc", help="comma list: fake, runc")
    ap.add_argument("--warmup", type=int, default=3, help="untimed boots per cloud first")
    ap.add_argument("--poll", type=float, default=0.002, help="GET poll interval, seconds")
    ap.add_argument("--hosts", type=int, default=1, help="dev hosts of the scaled cloud")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    res = asyncio.run(run(args.n, [d.strip() for d in args.drivers.split(",") if d.strip()], args.warmup,
                          args.poll, args.hosts))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
