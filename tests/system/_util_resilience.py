"""Helpers for the scheduler and crash-recovery system tests (tests/system/test_scheduler_fake_hosts.py,
tests/system/test_crash_recovery.py).

They talk to a running `cumulo up` (a `CumuloCloud` from tests/system/conftest.py) over raw HTTP,
because a test fires tens of concurrent requests and polls quickly; the real `openstack` CLI is used
by the tests themselves for the admin steps a person would take. Placement is read from the cloud's
SQLite file strictly read-only (`mode=ro`), so a check never changes what it checks.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from conftest import CumuloCloud

COMPUTE = "/compute/v2.1"
# The newest microversion the clients use: embedded flavor in server views, networks "none".
MICROVERSION = {"OpenStack-API-Version": "compute 2.79"}
SETTLED = {"ACTIVE", "ERROR", "SHUTOFF", "PAUSED", "SUSPENDED"}
RESOURCE_CLASSES = ("VCPU", "MEMORY_MB", "DISK_GB")

Resources = dict[str, int]


# ---------------------------------------------------------------------------------------------
# Compute API over HTTP


def _headers(cloud: CumuloCloud, name: str = "cumulo") -> dict[str, str]:
    return {"X-Auth-Token": cloud.token(name), **MICROVERSION}


def api(cloud: CumuloCloud, method: str, path: str, *, ok: Iterable[int] = (200, 202, 204), **kw: Any) -> httpx.Response:
    """One compute request as admin; a status outside `ok` fails the test with the body."""
    resp = httpx.request(method, cloud.base_url + COMPUTE + path, headers=_headers(cloud), timeout=60, **kw)
    assert resp.status_code in set(ok), f"{method} {path} -> {resp.status_code}: {resp.text[:500]}"
    return resp


def server_body(name: str, image: str, flavor: str, **extra: Any) -> dict[str, Any]:
    return {"server": {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none", **extra}}


async def _create_many(cloud: CumuloCloud, bodies: Sequence[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies) or 1)
    async with httpx.AsyncClient(base_url=cloud.base_url, headers=_headers(cloud), timeout=60, limits=limits) as http:
        return list(await asyncio.gather(*(http.post(COMPUTE + "/servers", json=b) for b in bodies)))


def post_servers(cloud: CumuloCloud, bodies: Sequence[dict[str, Any]]) -> list[str]:
    """POST every body at once (one request each, concurrently); every one must get 202."""
    responses = asyncio.run(_create_many(cloud, bodies))
    bad = [(r.status_code, r.text[:300]) for r in responses if r.status_code != 202]
    assert not bad, f"{len(bad)} of {len(bodies)} creates were refused: {bad[:3]}"
    return [r.json()["server"]["id"] for r in responses]


def create_servers(
    cloud: CumuloCloud, count: int, image: str, flavor: str, prefix: str, **extra: Any
) -> list[str]:
    """`count` servers of one flavor, created concurrently."""
    return post_servers(cloud, [server_body(f"{prefix}-{i}", image, flavor, **extra) for i in range(count)])


async def _delete_many(cloud: CumuloCloud, uuids: Sequence[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=cloud.base_url, headers=_headers(cloud), timeout=60) as http:
        return list(await asyncio.gather(*(http.delete(f"{COMPUTE}/servers/{u}") for u in uuids)))


def delete_servers(cloud: CumuloCloud, uuids: Sequence[str]) -> None:
    """DELETE every server concurrently (204, or 404 for one that is already gone)."""
    responses = asyncio.run(_delete_many(cloud, uuids))
    bad = [(r.status_code, r.text[:300]) for r in responses if r.status_code not in (204, 404)]
    assert not bad, f"deletes failed: {bad[:3]}"


async def _actions(cloud: CumuloCloud, actions: Sequence[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=cloud.base_url, headers=_headers(cloud), timeout=60) as http:
        return list(await asyncio.gather(*(http.post(f"{COMPUTE}/servers/{u}/action", json=b) for u, b in actions)))


def post_actions(cloud: CumuloCloud, actions: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """POST every (server, action body) concurrently; each must be accepted (202)."""
    responses = asyncio.run(_actions(cloud, actions))
    bad = [(r.status_code, r.text[:300]) for r in responses if r.status_code != 202]
    assert not bad, f"actions refused: {bad[:3]}"


def get_server(cloud: CumuloCloud, uuid: str) -> dict[str, Any] | None:
    resp = api(cloud, "GET", f"/servers/{uuid}", ok=(200, 404))
    return None if resp.status_code == 404 else dict(resp.json()["server"])


def all_servers(cloud: CumuloCloud) -> list[dict[str, Any]]:
    """Every non-deleted server of every project (admin, all_tenants), following the pages."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"all_tenants": "1", "limit": 1000}
    while True:
        page = api(cloud, "GET", "/servers/detail", params=params).json()["servers"]
        out += page
        if len(page) < 1000:
            return out
        params["marker"] = page[-1]["id"]


def is_settled(server: Mapping[str, Any]) -> bool:
    return server["status"] in SETTLED and server.get("OS-EXT-STS:task_state") is None


def wait_settled_or_gone(
    cloud: CumuloCloud, uuids: Sequence[str], timeout: float = 30.0, *, gone_ok: bool = True
) -> dict[str, dict[str, Any] | None]:
    """Poll until every server is in a stable status with no task_state, or gone (when
    `gone_ok`). Returns uuid → server (None for gone). Fails naming the stragglers."""
    deadline = time.monotonic() + timeout
    want = set(uuids)
    while True:
        found = {s["id"]: s for s in all_servers(cloud) if s["id"] in want}
        seen: dict[str, dict[str, Any] | None] = {u: found.get(u) for u in uuids}
        pending = {
            u: (s and (s["status"], s.get("OS-EXT-STS:task_state")))
            for u, s in seen.items()
            if (s is None and not gone_ok) or (s is not None and not is_settled(s))
        }
        if not pending:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} servers not settled after {timeout:.0f}s: {pending}")
        time.sleep(0.2)


def wait_settled(cloud: CumuloCloud, uuids: Sequence[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Poll until every server (all must still exist) is stable with no task_state."""
    seen = wait_settled_or_gone(cloud, uuids, timeout, gone_ok=False)
    return {u: s for u, s in seen.items() if s is not None}


def wait_gone(cloud: CumuloCloud, uuids: Sequence[str], timeout: float = 30.0) -> None:
    """Poll until GET of every server answers 404."""
    deadline = time.monotonic() + timeout
    left = list(uuids)
    while left:
        left = [u for u in left if get_server(cloud, u) is not None]
        if not left:
            return
        if time.monotonic() > deadline:
            states = {u: (s or {}).get("status") for u in left for s in [get_server(cloud, u)]}
            raise AssertionError(f"{len(left)} servers still exist {timeout:.0f}s after delete: {states}")
        time.sleep(0.2)


def delete_all_servers(cloud: CumuloCloud, timeout: float = 30.0) -> None:
    uuids = [s["id"] for s in all_servers(cloud)]
    if uuids:
        delete_servers(cloud, uuids)
        wait_gone(cloud, uuids, timeout)


def statuses(servers: Iterable[Mapping[str, Any] | None]) -> Counter[str]:
    return Counter("GONE" if s is None else s["status"] for s in servers)


def flavor_resources(flavor: Mapping[str, Any]) -> Resources:
    """What a server of this (2.47+ embedded) flavor should hold in placement, worked out here
    independently of the server code: VCPU, MEMORY_MB, and DISK_GB = root + ephemeral + swap."""
    swap_mb = int(flavor.get("swap") or 0)
    out = {
        "VCPU": int(flavor["vcpus"]),
        "MEMORY_MB": int(flavor["ram"]),
        "DISK_GB": int(flavor["disk"]) + int(flavor.get("ephemeral") or 0) + (swap_mb + 1023) // 1024,
    }
    return {rc: n for rc, n in out.items() if n > 0}


def host_of(server: Mapping[str, Any]) -> str | None:
    host = server.get("OS-EXT-SRV-ATTR:host")
    return str(host) if host else None


# ---------------------------------------------------------------------------------------------
# Placement, read straight from the DB (read-only)


@dataclass
class Provider:
    name: str
    uuid: str
    inventory: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # rc → (total, reserved, ratio)
    usage: Resources = field(default_factory=dict)

    def capacity(self, rc: str) -> int:
        total, reserved, ratio = self.inventory[rc]
        return int((total - reserved) * ratio)

    def free(self, rc: str) -> int:
        return self.capacity(rc) - self.usage.get(rc, 0) if rc in self.inventory else 0


@dataclass
class PlacementView:
    providers: dict[str, Provider]  # by name (= compute host name here)
    allocations: dict[str, dict[str, Resources]]  # consumer → provider name → rc → used

    def totals(self) -> Resources:
        out: Counter[str] = Counter()
        for per_provider in self.allocations.values():
            for res in per_provider.values():
                out.update(res)
        return dict(out)


def db_path(cloud: CumuloCloud) -> Path:
    return cloud.state_dir / "cumulo.sqlite"


def read_only(cloud: CumuloCloud) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{db_path(cloud)}?mode=ro", uri=True, timeout=30)
    con.row_factory = sqlite3.Row
    return con


def placement_view(cloud: CumuloCloud) -> PlacementView:
    con = read_only(cloud)
    try:
        names = {r["id"]: (r["name"], r["uuid"]) for r in con.execute("SELECT id, name, uuid FROM resource_providers")}
        providers = {name: Provider(name, uuid) for name, uuid in names.values()}
        for r in con.execute("SELECT provider_id, resource_class, total, reserved, allocation_ratio FROM inventories"):
            name = names[r["provider_id"]][0]
            providers[name].inventory[r["resource_class"]] = (r["total"], r["reserved"], r["allocation_ratio"])
        allocations: dict[str, dict[str, Resources]] = {}
        for r in con.execute("SELECT provider_id, consumer_id, resource_class, used FROM allocations"):
            name = names[r["provider_id"]][0]
            per = allocations.setdefault(r["consumer_id"], {}).setdefault(name, {})
            per[r["resource_class"]] = per.get(r["resource_class"], 0) + int(r["used"])
            providers[name].usage[r["resource_class"]] = providers[name].usage.get(r["resource_class"], 0) + int(r["used"])
    finally:
        con.close()
    return PlacementView(providers, allocations)


class UsageSampler:
    """Samples every provider's usage from the DB in a background thread (every `interval` s)
    while a burst runs, so "never over capacity" is checked during the race, not only after."""

    def __init__(self, cloud: CumuloCloud, interval: float = 0.02) -> None:
        self.cloud, self.interval = cloud, interval
        self.samples = 0
        self.peak: dict[str, Resources] = {}
        self.over: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            view = placement_view(self.cloud)
            self.samples += 1
            for p in view.providers.values():
                peak = self.peak.setdefault(p.name, {})
                for rc, used in p.usage.items():
                    peak[rc] = max(peak.get(rc, 0), used)
                    if used > p.capacity(rc):
                        self.over.append(f"{p.name} {rc} {used} > {p.capacity(rc)}")
            self._stop.wait(self.interval)

    def __enter__(self) -> UsageSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def instance_rows(cloud: CumuloCloud) -> list[dict[str, Any]]:
    """Every instances row (deleted ones too), read-only: what a crash left in the DB."""
    con = read_only(cloud)
    try:
        return [
            dict(r)
            for r in con.execute(
                "SELECT uuid, vm_state, task_state, host, deleted, system_metadata FROM instances ORDER BY id"
            )
        ]
    finally:
        con.close()


def expected_allocations(servers: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Resources]]:
    """consumer → host → resources, for every live server that has a host."""
    out: dict[str, dict[str, Resources]] = {}
    for s in servers:
        host = host_of(s)
        if host is None:
            continue
        res = flavor_resources(s["flavor"])
        if res:
            out[s["id"]] = {host: res}
    return out


def check_placement(cloud: CumuloCloud) -> tuple[PlacementView, list[dict[str, Any]]]:
    """The invariant after everything settled: placement holds exactly the live placed servers
    (per consumer, and so in sum), and no provider is used beyond capacity × ratio."""
    servers = all_servers(cloud)
    view = placement_view(cloud)
    want = expected_allocations(servers)
    assert view.allocations == want, _diff(view.allocations, want)
    want_totals: Counter[str] = Counter()
    for per in want.values():
        for res in per.values():
            want_totals.update(res)
    assert view.totals() == dict(want_totals)
    for p in view.providers.values():
        for rc, used in p.usage.items():
            assert used <= p.capacity(rc), f"{p.name} overcommitted: {rc} used {used} > capacity {p.capacity(rc)}"
    return view, servers


def _diff(have: Mapping[str, Any], want: Mapping[str, Any]) -> str:
    extra = {k: have[k] for k in have if k not in want}
    missing = {k: want[k] for k in want if k not in have}
    wrong = {k: (have[k], want[k]) for k in have if k in want and have[k] != want[k]}
    return (
        f"placement allocations differ from the live servers: stale consumers {extra}; "
        f"servers without allocation {missing}; wrong amounts (have, want) {wrong}"
    )


# ---------------------------------------------------------------------------------------------
# The fake driver's persisted guests (what a restarted agent adopts)


def fake_guests(cloud: CumuloCloud) -> dict[str, set[str]]:
    """host → uuids of the guests the fake driver keeps on disk (<state>/fake/<host>/<uuid>.json)."""
    root = cloud.state_dir / "fake"
    out: dict[str, set[str]] = {}
    if not root.exists():
        return out
    for host_dir in root.iterdir():
        if host_dir.is_dir():
            out[host_dir.name] = {p.name[: -len(".json")] for p in host_dir.glob("*.json")}
    return out


def fake_guest_record(cloud: CumuloCloud, host: str, uuid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cloud.state_dir / "fake" / host / f"{uuid}.json").read_text())
    return data


def check_guests_match_servers(cloud: CumuloCloud, servers: Iterable[Mapping[str, Any]]) -> None:
    """Every placed server has exactly one guest, on its host, and no guest is left over."""
    want: dict[str, set[str]] = {}
    for s in servers:
        host = host_of(s)
        if host is not None:
            want.setdefault(host, set()).add(s["id"])
    have = {h: g for h, g in fake_guests(cloud).items() if g}
    assert have == want, f"fake guests on disk {have} != placed servers {want}"


# ---------------------------------------------------------------------------------------------
# Setup through the real CLI


def osc_json(cloud: CumuloCloud, *args: str) -> Any:
    """`openstack ARGS -f json`, parsed. Safe from threads: passing `-f` ourselves skips the
    harness's lazy look-up of display commands, whose first use imports OSC modules (and
    concurrent first imports from several threads race inside importlib)."""
    return json.loads(cloud.osc(*args, "-f", "json"))


def upload_image(cloud: CumuloCloud, name: str, *properties: str) -> str:
    """`openstack image create --file` a tiny raw image (public), with `--property k=v` each."""
    path = cloud.root / f"{name}.raw"
    path.write_bytes(b"\0" * 4096)
    args = ["image", "create", "--file", str(path), "--disk-format", "raw", "--container-format", "bare", "--public"]
    for prop in properties:
        args += ["--property", prop]
    image = osc_json(cloud, *args, name)
    assert image["status"] == "active", image
    return str(image["id"])


def upload_image_http(cloud: CumuloCloud, name: str, **properties: str) -> str:
    """The same through the Glance v2 API directly (create, then PUT the bytes to /file)."""
    headers = {"X-Auth-Token": cloud.token()}
    body = {"name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public", **properties}
    with httpx.Client(base_url=cloud.base_url + "/image/v2", headers=headers, timeout=60) as http:
        resp = http.post("/images", json=body)
        assert resp.status_code == 201, resp.text
        image_id = str(resp.json()["id"])
        put = http.put(f"/images/{image_id}/file", content=b"\0" * 4096,
                       headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 204, put.text
        assert http.get(f"/images/{image_id}").json()["status"] == "active"
    return image_id


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run slow independent steps (CLI processes take ~1.5 s each) side by side; results in order."""
    with ThreadPoolExecutor(max_workers=len(calls) or 1) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def create_flavor(cloud: CumuloCloud, name: str, vcpus: int, ram: int, disk: int) -> str:
    """A public flavor through the compute API (fast; the CLI path is covered elsewhere)."""
    body = {"flavor": {"name": name, "vcpus": vcpus, "ram": ram, "disk": disk, "id": name}}
    resp = api(cloud, "POST", "/flavors", json=body)
    return str(resp.json()["flavor"]["id"])


def admin_project(cloud: CumuloCloud) -> str:
    return str(cloud.clouds()["cumulo"]["auth"]["project_name"])


def unlimited_quotas(cloud: CumuloCloud, project: str | None = None) -> None:
    """`openstack quota set --instances -1 --cores -1 --ram -1 PROJECT` (admin's own by default)."""
    cloud.osc("quota", "set", "--instances", "-1", "--cores", "-1", "--ram", "-1", project or admin_project(cloud),
              json=False)


def quota_limits(cloud: CumuloCloud, project: str | None = None) -> dict[str, Any]:
    quota = osc_json(cloud, "quota", "show", project or admin_project(cloud))
    return {r["Resource"]: r["Limit"] for r in quota} if isinstance(quota, list) else dict(quota)
