"""GET /servers/detail?limit=1000 with 10,000 servers in the DB, against a real `cumulo up`.

Seeding: a first start of the cloud creates a few real servers through the API (one per flavor, in
the admin and the demo project). The cloud is stopped, and those rows are cloned straight into its
SQLite DB (SQLAlchemy Core, the models in cumulo.compute.models) until there are 10,000 ACTIVE
servers spread over several projects, flavors and metadata. The cloud is started again and the page
is timed 20 times as admin (own project), as admin with all_tenants=1, and as a member of one
project. Nova's published figure: 14.4 s median to list 10,000 servers.

    .venv/bin/python benchmarks/list_detail.py [--servers 10000] [--repeat 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _harness as h
import sqlalchemy as sa

from cumulo.compute.models import instance_actions, instances
from cumulo.placement.models import allocations

TARGET_S = 0.5
NOVA_MEDIAN_S = 14.4
PAGE = 1000


async def seed_templates(cloud: h.CloudProcess) -> dict[str, Any]:
    """Real servers made through the API, to clone: whatever the services store, the clones match."""
    async with h.make_client(cloud.url) as client:
        admin = await h.login(client, cloud.credentials("cumulo"))
        demo = await h.login(client, cloud.credentials("cumulo-demo"))
        await h.unlimited_quota(client, admin, admin.project_id)
        await h.unlimited_quota(client, admin, demo.project_id)
        image_id = await h.ensure_image(client, admin)
        r = h.expect(await client.get("/compute/v2.1/flavors/detail", headers=admin.headers()), 200)
        flavors = sorted(r.json()["flavors"], key=lambda f: f["ram"])[:4]
        ids: list[str] = []
        for who in (admin, demo):
            for f in flavors:
                body = h.server_body(f"tmpl-{f['name']}", image_id, f["id"], metadata={"role": "template"})
                r = h.expect(
                    await client.post("/compute/v2.1/servers", json=body, headers=who.headers()), 202
                )
                ids.append(r.json()["server"]["id"])
        deadline = time.perf_counter() + 60
        pending = set(ids)
        while pending and time.perf_counter() < deadline:
            for sid in list(pending):
                g = h.expect(await client.get(f"/compute/v2.1/servers/{sid}", headers=admin.headers()), 200)
                if g.json()["server"]["status"] in ("ACTIVE", "ERROR"):
                    pending.discard(sid)
            await asyncio.sleep(0.05)
        if pending:
            raise RuntimeError(f"template servers not ACTIVE: {pending}")
    return {"admin_project": admin.project_id, "demo_project": demo.project_id, "ids": ids}


def clone_rows(db_path: Path, seeded: dict[str, Any], total: int, rng: random.Random) -> dict[str, int]:
    """Insert clones of the ACTIVE template rows until `total` live servers exist. Returns per-project counts.

    The fake driver keeps a record per instance (<state>/fake/<host>/<uuid>.json); each clone gets a
    copy of its template's record so the restarted agents re-adopt it instead of reconciling it away.
    """
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        counts = clone_into(conn, db_path.parent / "fake", seeded, total, rng)
    engine.dispose()
    return counts


def clone_into(conn: Any, fake_dir: Path, seeded: dict[str, Any], total: int, rng: random.Random) -> dict[str, int]:
    """clone_rows on an open (sync) connection of any dialect: benchmarks/servers_detail.py runs it on
    PostgreSQL through AsyncConnection.run_sync."""
    fake_records = {p.stem: p for p in fake_dir.glob("*/*.json")} if fake_dir.exists() else {}
    rows = [
        dict(r._mapping)
        for r in conn.execute(sa.select(instances).where(instances.c.uuid.in_(seeded["ids"])))
    ]
    templates = [r for r in rows if r["vm_state"] == "active"]
    if not templates:
        raise RuntimeError(f"no ACTIVE template rows (states: {[r['vm_state'] for r in rows]})")
    allocs: dict[str, list[dict[str, Any]]] = {}
    for a in conn.execute(sa.select(allocations).where(allocations.c.consumer_id.in_(seeded["ids"]))):
        allocs.setdefault(a.consumer_id, []).append(dict(a._mapping))
    action = conn.execute(
        sa.select(instance_actions).where(instance_actions.c.instance_uuid == templates[0]["uuid"])
    ).first()

    # Projects: admin and demo hold a quarter each, ten other projects share the rest.
    others = [uuid.uuid4().hex for _ in range(10)]
    n_new = total - len(rows)
    weights = {seeded["admin_project"]: 0.25, seeded["demo_project"]: 0.25, **{p: 0.05 for p in others}}
    projects = rng.choices(list(weights), weights=list(weights.values()), k=n_new)
    users = {p: uuid.uuid4().hex for p in others}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    new_instances: list[dict[str, Any]] = []
    new_allocs: list[dict[str, Any]] = []
    new_actions: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for i, project in enumerate(projects):
        t = dict(rng.choice(templates))
        src_uuid = t["uuid"]
        counts[project] = counts.get(project, 0) + 1
        created = now - dt.timedelta(seconds=rng.randint(60, 30 * 86400))
        new_uuid = str(uuid.uuid4())
        t.pop("id")
        same_owner = (
            project in (seeded["admin_project"], seeded["demo_project"]) and t["project_id"] == project
        )
        name = f"srv-{i:05d}"
        t.update(
            uuid=new_uuid,
            project_id=project,
            user_id=t["user_id"] if same_owner else users.get(project, t["user_id"]),
            display_name=name,
            hostname=name,
            reservation_id=f"r-{uuid.uuid4().hex[:8]}",
            metadata={
                "env": rng.choice(["prod", "dev", "test"]),
                "team": f"team-{rng.randint(1, 20)}",
                "idx": str(i),
            },
            tags=rng.sample(["web", "db", "cache", "batch", "gpu"], k=rng.randint(0, 2)),
            created_at=created,
            updated_at=created + dt.timedelta(seconds=5),
            launched_at=created + dt.timedelta(seconds=2),
        )
        new_instances.append(t)
        record = fake_records.get(src_uuid)
        if record is not None:
            text = record.read_text().replace(src_uuid, new_uuid)
            (record.parent / f"{new_uuid}.json").write_text(text)
        for src_alloc in allocs.get(src_uuid, []):
            alloc = {k: v for k, v in src_alloc.items() if k != "id"}
            alloc["consumer_id"] = new_uuid
            new_allocs.append(alloc)
        if action is not None:
            act = dict(action._mapping)
            act.pop("id")
            act.update(
                instance_uuid=new_uuid,
                project_id=project,
                request_id=f"req-{uuid.uuid4()}",
                start_time=created,
                finish_time=created + dt.timedelta(seconds=2),
                updated_at=created,
            )
            new_actions.append(act)
    conn.execute(sa.insert(instances), new_instances)
    if new_allocs:
        conn.execute(sa.insert(allocations), new_allocs)
    if new_actions:
        conn.execute(sa.insert(instance_actions), new_actions)
    return counts


def vm_states(db_path: Path) -> dict[str, int]:
    """Live servers by vm_state, read from the DB (shows whether start-up reconciliation touched them)."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        q = sa.select(instances.c.vm_state, sa.func.count()).where(instances.c.deleted.is_(False))
        out = {str(s): int(n) for s, n in conn.execute(q.group_by(instances.c.vm_state))}
    engine.dispose()
    return out


async def all_ids(client: Any, headers: dict[str, str]) -> list[str]:
    """Every server id in the default order, following markers page by page (all_tenants)."""
    ids: list[str] = []
    while True:
        params = {"all_tenants": "1", "limit": str(PAGE), **({"marker": ids[-1]} if ids else {})}
        r = h.expect(await client.get("/compute/v2.1/servers", params=params, headers=headers), 200)
        page = [srv["id"] for srv in r.json()["servers"]]
        ids += page
        if len(page) < PAGE:
            return ids


async def time_page(
    client: Any, headers: dict[str, str], params: dict[str, str], repeat: int
) -> dict[str, Any]:
    for _ in range(2):  # warm-up (caches, connection)
        h.expect(await client.get("/compute/v2.1/servers/detail", params=params, headers=headers), 200)
    took: list[float] = []
    count = size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = h.expect(await client.get("/compute/v2.1/servers/detail", params=params, headers=headers), 200)
        body = r.json()
        took.append(time.perf_counter() - t0)
        count, size = len(body["servers"]), len(r.content)
    return {**h.summary_ms(took), "servers_returned": count, "bytes": size}


async def run(total: int = 10_000, repeat: int = 20, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-bench-"))
    cloud = h.CloudProcess(state_dir=tmp / "state", port=h.free_port())
    try:
        await asyncio.to_thread(cloud.start)
        seeded = await seed_templates(cloud)
        await asyncio.to_thread(cloud.stop)

        t0 = time.perf_counter()
        counts = await asyncio.to_thread(clone_rows, cloud.state_dir / "cumulo.sqlite", seeded, total, rng)
        t_seed = time.perf_counter() - t0

        cloud.port = h.free_port()
        t_restart = await asyncio.to_thread(cloud.start)
        scenarios: dict[str, Any] = {}
        async with h.make_client(cloud.url) as client:
            admin = await h.login(client, cloud.credentials("cumulo"))
            demo = await h.login(client, cloud.credentials("cumulo-demo"))
            cloud.profile_start("list_detail")
            scenarios["admin (own project)"] = await time_page(
                client, admin.headers(), {"limit": str(PAGE)}, repeat
            )
            scenarios["admin all_tenants=1"] = await time_page(
                client, admin.headers(), {"limit": str(PAGE), "all_tenants": "1"}, repeat
            )
            scenarios["member (demo project)"] = await time_page(
                client, demo.headers(), {"limit": str(PAGE)}, repeat
            )
            # A deep page: marker near the end of the whole listing (paged: the API caps limit at 1000).
            listing = await all_ids(client, admin.headers())
            if len(listing) > PAGE:
                scenarios["admin all_tenants=1, deep marker"] = await time_page(
                    client,
                    admin.headers(),
                    {"limit": str(PAGE), "all_tenants": "1", "marker": listing[-PAGE - 1]},
                    repeat,
                )
            live_total = len(listing)
            cloud.profile_stop()
        states = await asyncio.to_thread(vm_states, cloud.state_dir / "cumulo.sqlite")
    finally:
        await asyncio.to_thread(cloud.stop)
        shutil.rmtree(tmp, ignore_errors=True)

    worst_p50 = max(s["p50_ms"] for s in scenarios.values()) / 1000
    return {
        "name": "list_detail",
        "metric": f"detail page limit={PAGE} of {total:,} servers, worst p50",
        "value": round(worst_p50 * 1000, 1),
        "unit": "ms",
        "target": f"<= {TARGET_S * 1000:.0f} ms",
        "passed": worst_p50 <= TARGET_S and all(s["servers_returned"] == PAGE for s in scenarios.values()),
        "servers_listed_all_tenants": live_total,
        "vm_states_after_run": states,
        "servers_per_project": sorted(counts.values(), reverse=True),
        "seed_insert_s": round(t_seed, 2),
        "restart_s": round(t_restart, 2),
        "scenarios": scenarios,
        "nova_median_s": NOVA_MEDIAN_S,
    }


def print_report(res: dict[str, Any]) -> None:
    print(
        f"list_detail: {res['servers_listed_all_tenants']} live servers (inserted in {res['seed_insert_s']} s; "
        f"cloud restart {res['restart_s']} s)"
    )
    for name, s in res["scenarios"].items():
        print(
            f"  {name:34s} p50 {s['p50_ms']:8.1f} ms  p90 {s['p90_ms']:8.1f} ms  "
            f"({s['servers_returned']} servers, {s['bytes'] / 1e6:.2f} MB)"
        )
    print(f"  live servers by vm_state after the run: {res['vm_states_after_run']}")
    print(
        f"  target {res['target']}: {'PASS' if res['passed'] else 'MISS'}   (Nova: {res['nova_median_s']} s median)"
    )


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
