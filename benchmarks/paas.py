"""The PaaS manager (issue 13, acceptance 7): deploy a two-tier environment, then add one node from
the tier's template image against one fresh install, in one run.

On a real `cumulo up` on loopback with the runc driver (the defaults otherwise; the host link to
`public` off, as every benchmark: floating IPs are still allocated on the external network), as
the demo member, through the PaaS API (`/paas/rest/...`, httpx):

- products: `bench-kv` and `bench-web`, copies of the built-in kv-backend and httpd-web releases
  (recipes, metadata, attribute defaults read from the API). bench-web's install first lays down
  `--install-mb` MiB of assets the way a package install does (a stream generated in the node,
  compressed to a file, its checksum recorded, unpacked again), so the install has a realistic
  cost; `--install-mb 0` keeps the built-in recipe as is (an install of a few files).
- environment: `backend` (bench-kv, ALLOW_FROM = MEMBERS(web)) and `web` (bench-web, BACKENDS =
  IPALL(backend), a floating IP, 1..3 nodes: scalable, so its first configured node becomes the
  template image).
- (a) deploy: from sending `POST .../environmentInstance` to the task's SUCCESS, watched in the
  cloud's SQLite DB from a thread of ours (no polling of the API during the run).
- (b) n rounds, the order alternating: scale `web` to 2 with the template (`useTemplate` true) and
  with a fresh install (`useTemplate` false), each from the POST of the scale to its task's
  SUCCESS, the new node removed (untimed) after each. The first template node pays the template
  image's unpack into the node's image cache: it is reported apart (`add_node_template_first_s`).
  Each timed node is checked: from the template with install SKIPPED, or fresh with install run.
- ratio = p50(template) / p50(fresh); target <= 0.5.
The instance is deleted at the end and the run checks no server of it is left.

`--vm`: the same on QEMU VMs (the cloud's local driver `qemu`, both tiers on the `tiny-vm` image,
which runs recipes through the QEMU guest agent; the run waits for its background build first).
Each node first runs the "prepare" step (PAAS_ROOT on its persistent disk), and the template is
the qcow2 of the first web node's disk. `--bootstrap user_data` (with --vm): the web tier's template
nodes configure and start at boot from their user_data (docs/paas.md "Nodes on QEMU VMs").

    .venv/bin/python benchmarks/paas.py [-n 3] [--install-mb 32] [--vm [--bootstrap user_data]] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import _harness as h

TARGET_RATIO = 0.5
DEPLOY_TIMEOUT = 900.0
ORG = "default"
ASSETS = r"""
# bench: lay down {mb} MiB of assets as a package install would (generate, compress, checksum, unpack).
mkdir -p "$PAAS_ROOT/$PAAS_PRODUCT/assets"
busybox dd if=/dev/urandom bs=1048576 count={mb} 2>/dev/null | busybox gzip -1 > "$PAAS_ROOT/$PAAS_PRODUCT/assets/pkg.gz"
busybox sha256sum "$PAAS_ROOT/$PAAS_PRODUCT/assets/pkg.gz" > "$PAAS_ROOT/$PAAS_PRODUCT/assets/pkg.sha256"
busybox gunzip -c "$PAAS_ROOT/$PAAS_PRODUCT/assets/pkg.gz" > "$PAAS_ROOT/$PAAS_PRODUCT/assets/pkg.bin"
echo "assets: $(busybox du -sk "$PAAS_ROOT/$PAAS_PRODUCT/assets" | busybox cut -f1) KiB"
"""


def task_id(task: dict[str, Any]) -> int:
    return int(str(task["href"]).rstrip("/").rsplit("/", 1)[-1])


def watch_task(db_path: Path, tid: int, t0: float, timeout: float = DEPLOY_TIMEOUT) -> tuple[float, str]:
    """(seconds since t0, final status) of a task, read from the SQLite DB (WAL: readers never block)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        status = "?"
        while time.perf_counter() - t0 < timeout:
            try:
                row = conn.execute("SELECT status FROM paas_tasks WHERE id = ?", (tid,)).fetchone()
            except sqlite3.OperationalError:  # a writer holds the file a moment
                row = None
            status = str(row[0]) if row else status
            if status in ("SUCCESS", "ERROR"):
                break
            time.sleep(0.02)
        return time.perf_counter() - t0, status
    finally:
        conn.close()


class Paas:
    def __init__(self, client: Any, s: h.Session, db: Path) -> None:
        self.client, self.s, self.db = client, s, db
        self.hdr = {"X-Auth-Token": s.token}
        self.inst = f"/paas/rest/envInst/org/{ORG}/vdc/{s.project_id}/environmentInstance"

    async def get(self, path: str, **params: Any) -> Any:
        return h.expect(await self.client.get(path, headers=self.hdr, params=params), 200).json()

    async def post(self, path: str, body: Any, *codes: int) -> Any:
        r = h.expect(await self.client.post(path, json=body, headers=self.hdr), *codes)
        return r.json() if r.content else None

    async def timed(self, path: str, body: Any) -> tuple[float, int]:
        """Seconds from sending the POST to the task's SUCCESS in the DB (ERROR raises)."""
        t0 = time.perf_counter()
        task = await self.post(path, body, 202)
        tid = task_id(task)
        took, status = await asyncio.to_thread(watch_task, self.db, tid, t0)
        if status != "SUCCESS":
            shown = await self.get(f"/paas/rest/vdc/{self.s.project_id}/task/{tid}")
            raise RuntimeError(f"task {tid} ended {status}: {shown.get('error')}")
        return took, tid

    async def web_nodes(self, name: str) -> list[dict[str, Any]]:
        nodes = await self.get(f"{self.inst}/{name}/tierInstance", tier="web")
        return sorted(nodes, key=lambda n: int(n["replicaNumber"]))

    async def install_step(self, name: str, node: str, product: str) -> dict[str, Any]:
        pi = await self.get(f"{self.inst}/{name}/tierInstance/{node}/productInstance/{product}")
        steps = [s for s in pi.get("steps") or [] if s["step"] == "install"]
        return dict(steps[-1]) if steps else {}


async def copy_product(p: Paas, builtin: str, name: str, install_mb: int) -> None:
    src = await p.get(f"/paas/rest/catalog/productRelease/{builtin}")
    recipes = dict(src["recipes"])
    if install_mb and "install" in recipes:
        recipes["install"] = recipes["install"] + ASSETS.format(mb=install_mb)
    body = {"productName": name, "version": "1.0", "productDescription": f"benchmark copy of {builtin}",
            "metadatas": src.get("metadatas") or [], "attributes": src.get("attributes") or [], "recipes": recipes}
    await p.post("/paas/rest/catalog/productRelease", body, 204)


def environment(image: str = "busybox", bootstrap: str | None = None) -> dict[str, Any]:
    def tier(name: str, product: str, key: str, value: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "image": image, "flavour": "m1.tiny", "minimumNumberInstances": 1,
                "initialNumberInstances": 1, "productReleaseDtos": [{"productName": product, "version": "1.0",
                "attributes": [{"key": key, "value": value, "type": value.split("(")[0]}]}], **extra}

    return {"name": "bench-env", "description": "benchmarks/paas.py", "tierDtos": [
        tier("backend", "bench-kv", "ALLOW_FROM", "MEMBERS(web)", maximumNumberInstances=1),
        tier("web", "bench-web", "BACKENDS", "IPALL(backend)", maximumNumberInstances=3, floatingip="true",
             **({"metadatas": [{"key": "bootstrap", "value": bootstrap}]} if bootstrap else {})),
    ]}


async def wait_image(p: Paas, name: str, timeout: float = 600.0) -> None:
    """Until the image `name` is active (the tiny-vm image is built in the background at first start)."""
    deadline = time.monotonic() + timeout
    while True:
        images = (await p.get("/image/v2/images", name=name)).get("images") or []
        if any(i.get("status") == "active" for i in images):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no active {name} image after {timeout:.0f} s")
        await asyncio.sleep(1.0)


async def add_node(p: Paas, name: str, template: bool) -> tuple[float, dict[str, Any], dict[str, Any]]:
    took, _ = await p.timed(f"{p.inst}/{name}/tier/web/scale", {"count": 2, "useTemplate": template})
    nodes = await p.web_nodes(name)
    new = nodes[-1]
    install = await p.install_step(name, new["tierInstanceName"], "bench-web")
    await p.timed(f"{p.inst}/{name}/tier/web/scale", {"remove": new["tierInstanceName"]})
    return took, new, install


async def run(n: int = 3, install_mb: int = 32, vm: bool = False, bootstrap: str | None = None) -> dict[str, Any]:
    env = {"CUMULO_LOCAL_DRIVER": "qemu" if vm else "runc"}
    async with h.running_cloud(env=env) as cloud, h.make_client(cloud.url) as client:
        s = await h.login(client, cloud.credentials("cumulo-demo"))
        p = Paas(client, s, cloud.state_dir / "cumulo.sqlite")
        await copy_product(p, "kv-backend-1.0", "bench-kv", 0)
        await copy_product(p, "httpd-web-1.0", "bench-web", install_mb)
        if vm:
            await wait_image(p, "tiny-vm")
        await p.post(f"/paas/rest/catalog/org/{ORG}/environment",
                     environment("tiny-vm" if vm else "busybox", bootstrap if vm else None), 204)
        name = "bench"
        load = [os.getloadavg()[0]]
        body = {"blueprintName": name, "description": "benchmark", "environmentDto": {"name": "bench-env"}}
        deploy_s, _ = await p.timed(p.inst, body)
        [first] = await p.web_nodes(name)
        first_install = await p.install_step(name, first["tierInstanceName"], "bench-web")
        times: dict[str, list[float]] = {"template": [], "fresh": []}
        checks: list[str] = []
        template_first: float | None = None
        for i in range(n):
            order = (True, False) if i % 2 == 0 else (False, True)
            for use_template in order:
                took, node, install = await add_node(p, name, use_template)
                key = "template" if use_template else "fresh"
                if use_template and not node.get("fromTemplate"):
                    checks.append(f"{node['tierInstanceName']}: asked for the template, booted without it")
                if not use_template and node.get("fromTemplate"):
                    checks.append(f"{node['tierInstanceName']}: asked for a fresh install, booted from the template")
                if use_template and install.get("status") != "SKIPPED":
                    checks.append(f"{node['tierInstanceName']}: install {install.get('status')} on a template node")
                if use_template and template_first is None:
                    template_first = took  # the template image's first unpack on this host
                    continue
                times[key].append(took)
        load.append(os.getloadavg()[0])
        t_del = time.perf_counter()
        task = h.expect(await client.delete(f"{p.inst}/{name}", headers=p.hdr), 202).json()
        delete_s, status = await asyncio.to_thread(watch_task, p.db, task_id(task), t_del)
        r = h.expect(await client.get("/compute/v2.1/servers", headers=s.headers()), 200)
        left = [x["name"] for x in r.json()["servers"] if x["name"].startswith("paas-")]
    tpl = h.percentile(times["template"], 50) if times["template"] else None
    fresh = h.percentile(times["fresh"], 50) if times["fresh"] else None
    ratio = round(tpl / fresh, 3) if tpl and fresh else None
    return {
        "name": "paas",
        "metric": "add one node: template / fresh install (p50)",
        "value": ratio,
        "unit": "x",
        "target": f"<= {TARGET_RATIO}x",
        "passed": ratio is not None and ratio <= TARGET_RATIO and not checks,
        "n": n,
        "install_mb": install_mb,
        "nodes": f"tiny-vm (qemu){', bootstrap ' + bootstrap if bootstrap else ''}" if vm else "busybox (runc)",
        "first_install_output": (first_install.get("output") or "")[-200:],
        "deploy_two_tier_s": round(deploy_s, 2),
        "add_node_template_first_s": round(template_first, 2) if template_first else None,
        "add_node_template_s": [round(x, 2) for x in times["template"]],
        "add_node_fresh_s": [round(x, 2) for x in times["fresh"]],
        "add_node_template_p50_s": round(tpl, 2) if tpl else None,
        "add_node_fresh_p50_s": round(fresh, 2) if fresh else None,
        "ratio": ratio,
        "checks": checks,
        "delete_s": round(delete_s, 2),
        "delete_status": status,
        "servers_left": left,
        "load_average": [round(x, 1) for x in load],
    }


def print_report(r: dict[str, Any]) -> None:
    print(f"paas: {r['nodes']}, n = {r['n']} rounds, bench-web install lays down {r['install_mb']} MiB of assets")
    print(f"  (a) deploy of the two-tier environment (POST to task SUCCESS): {r['deploy_two_tier_s']} s")
    print(f"  (b) one web node from the template image: p50 {r['add_node_template_p50_s']} s {r['add_node_template_s']}"
          f" (the first, with the template image's unpack: {r['add_node_template_first_s']} s)")
    print(f"      one web node with a fresh install:     p50 {r['add_node_fresh_p50_s']} s {r['add_node_fresh_s']}")
    verdict = "meets" if r["passed"] else "MISSES"
    print(f"  ratio template / fresh (p50): {r['ratio']}x ({verdict} the target <= {TARGET_RATIO}x)")
    print(f"  load average {r['load_average'][0]} -> {r['load_average'][-1]}; delete {r['delete_s']} s "
          f"({r['delete_status']}), servers left {r['servers_left']}")
    for c in r["checks"]:
        print(f"  CHECK FAILED: {c}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3, help="rounds (one template and one fresh node each)")
    ap.add_argument("--install-mb", type=int, default=32,
                    help="MiB of assets bench-web's install lays down (0: the built-in recipe as is)")
    ap.add_argument("--vm", action="store_true", help="nodes on QEMU VMs (tiny-vm) instead of runc containers")
    ap.add_argument("--bootstrap", choices=("exec", "user_data"),
                    help="with --vm: the web tier's metadata bootstrap (user_data: template nodes start at boot)")
    ap.add_argument("--json", help="write the result here as well")
    args = ap.parse_args()
    result = asyncio.run(run(args.n, args.install_mb, args.vm, args.bootstrap))
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
