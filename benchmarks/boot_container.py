"""Container boots on the runc driver, against the DEFAULT `cumulo up` (local driver auto: a runc node and,
with QEMU installed, a QEMU node, sharing one pool of the machine; no ratio or share overrides), in one run:

a) baseline: a bare `runc run --detach` of the very root the cloud boots (the demo busybox image,
   unpacked by the cloud's cached_rootfs), with the cloud's own config.json (but namespaces made
   fresh by runc, where the cloud joins the netns it made) and an overlay like the driver's, mounted
   before the clock starts: only `runc run -d` is timed, until it returns with the container
   running. Each one is then killed, polled until stopped and deleted (no --force).
b) API-to-ACTIVE: N sequential boots of the demo image on flavor m1.nano, each timed from sending
   `POST /servers` in two ways, alternately: until the instance row is committed `active` (read
   from the cloud's SQLite DB by a thread of ours, which costs the cloud nothing), and until the
   first `GET /servers/{id}` that shows ACTIVE (polled every 2 ms: the polling competes with the
   boot for the cloud's one event loop, so this one is the pessimistic figure). One bare runc run
   precedes each pair, so all see the same machine load. Ratios of the p50s to the bare runc p50.
   With one NIC: alternating with those, N more boots watched in the DB, each with one port on the
   demo project's `private` tenant network that `cumulo up` makes at first start (`networks:
   [{"uuid": <private>}]`: the API allocates the port, the host's network agent binds and plugs it
   (bridge, DHCP, security groups) and the runc driver plumbs its veth into the container's netns).
   The no-NIC figure is the DB-watched one above (`networks: "none"`); p50 and p95 of each and the
   difference of the p50s (issue 10's target: a NIC adds <= 30 ms).
c) 50 concurrent boots: all POSTs at once; boots/s = 50 / time from the first POST until every
   server is ACTIVE (polled through GET /servers/detail).
d) memory: RSS (and PSS) of the cloud process, and of any process it leaves behind per container,
   before and with the 50 running, per container; the containers' own memory (their memory cgroup's
   usage) separately.

Everything it made is deleted at the end, and it checks (by its own ids) that no runc container,
mount or cgroup is left. Needs root and runc.

    .venv/bin/python benchmarks/boot_container.py [-n 30] [--concurrent 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid as uuidlib
from collections import Counter
from pathlib import Path
from typing import Any

import _harness as h

TARGET_P50_MS = 250.0
TARGET_RATIO = 5.0
TARGET_RATE = 10.0
TARGET_NIC_ADDS_MS = 30.0
NIC_NETWORK = "private"  # the demo project's network, made by `cumulo up` at first start
POLL_INTERVAL = 0.002
LIST_POLL_INTERVAL = 0.1
RUNC = "runc"
FLAVOR = "m1.nano"  # 64 MB, 1 vCPU: 50 of them fit this host's memory
# What a user gets by default: `cumulo up`'s own driver choice and allocation ratios (the runc node
# overcommits CPU 50:1 on the host's shared pool, so 50 one-vCPU containers fit a 2-core host).
CLOUD_ENV = {"CUMULO_LOCAL_DRIVER": "auto"}
BACKGROUND_IMAGES = ("tiny-vm",)  # built by `cumulo up` in the background when QEMU is there
CGROUP_ROOT = Path("/sys/fs/cgroup")


# -- small host helpers ----------------------------------------------------------------------------


async def run_cmd(argv: list[str], *, check: bool = True) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {out.decode(errors='replace')[-500:]}")
    return proc.returncode or 0, out


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh]


def proc_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and Pss (kB) of one process; empty when it is gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_kb"] = int(line.split()[1])
    except OSError:
        return {}
    return out


def descendants(pid: int) -> list[int]:
    """Live processes whose parent chain leads to `pid` (helpers the cloud keeps per container)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def cgroup_usage_bytes(cgroups_path: str) -> int | None:
    try:
        return int((CGROUP_ROOT / "memory" / cgroups_path.lstrip("/") / "memory.usage_in_bytes").read_text())
    except (OSError, ValueError):
        return None


def leftover_cgroups(cgroups_paths: list[str]) -> list[str]:
    left = []
    for ctrl in CGROUP_ROOT.iterdir():
        for cg in cgroups_paths:
            p = ctrl / cg.lstrip("/")
            if p.is_dir():
                left.append(str(p))
    return left


# -- (a) bare runc ---------------------------------------------------------------------------------


class BareRunc:
    """Our own runc state root, bundles and cgroup parent, all under a temp dir we delete."""

    def __init__(self, base: Path, lower: Path, template: dict[str, Any]) -> None:
        self.base = base
        self.state = base / "runc-state"
        self.lower = lower
        self.template = template
        self.cg_parent = f"/cumulo-bench-{os.getpid()}"
        self.made: list[str] = []

    def argv(self, *args: str) -> list[str]:
        return [RUNC, "--root", str(self.state), *args]

    async def prepare(self) -> tuple[str, Path, float]:
        """A bundle with an overlay root over the cloud's image root (not timed as the runc run)."""
        cid = f"bench-{uuidlib.uuid4()}"
        b = self.base / cid
        for sub in ("upper", "work", "rootfs"):
            (b / sub).mkdir(parents=True)
        cfg = json.loads(json.dumps(self.template))
        cfg["linux"]["cgroupsPath"] = f"{self.cg_parent}/{cid}"
        cfg["hostname"] = "bench"
        (b / "config.json").write_text(json.dumps(cfg))
        t0 = time.perf_counter()
        opts = f"lowerdir={self.lower},upperdir={b / 'upper'},workdir={b / 'work'}"
        await run_cmd(["mount", "-t", "overlay", "overlay", "-o", opts, str(b / "rootfs")])
        self.made.append(cid)
        return cid, b, time.perf_counter() - t0

    async def run(self, cid: str, b: Path) -> float:
        """Seconds for `runc run --detach` (stdio to a file: runc init keeps a pipe open)."""
        fd = os.open(b / "console.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        t0 = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv("run", "--detach", "--bundle", str(b), cid),
                stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd,
            )
        finally:
            os.close(fd)
        code = await proc.wait()
        took = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"bare runc run failed ({code}): {(b / 'console.log').read_text()[-500:]}")
        return took

    async def status(self, cid: str) -> str | None:
        code, out = await run_cmd(self.argv("state", cid), check=False)
        return str(json.loads(out).get("status")) if code == 0 else None

    async def remove(self, cid: str, b: Path) -> None:
        """kill, poll until stopped, delete (no --force: it sleeps 100 ms), unmount, rm."""
        if await self.status(cid) is not None:
            await run_cmd(self.argv("kill", cid, "KILL"), check=False)
            deadline = time.monotonic() + 10
            while await self.status(cid) not in (None, "stopped") and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            await run_cmd(self.argv("delete", cid), check=False)
        if str(b / "rootfs") in mount_points():
            await run_cmd(["umount", str(b / "rootfs")], check=False)
        shutil.rmtree(b, ignore_errors=True)

    async def close(self) -> list[str]:
        """Remove our cgroup parent dirs; return what is left of ours (containers, mounts, cgroups)."""
        for ctrl in CGROUP_ROOT.iterdir():
            p = ctrl / self.cg_parent.lstrip("/")
            if p.is_dir():
                try:
                    p.rmdir()
                except OSError:
                    pass
        left = []
        if self.state.is_dir():
            _, out = await run_cmd(self.argv("list", "--format", "json"), check=False)
            left += [f"runc container {c['id']}" for c in (json.loads(out or b"null") or [])]
        left += [f"mount {m}" for m in mount_points() if m.startswith(str(self.base))]
        left += [f"cgroup {c}" for c in leftover_cgroups([self.cg_parent])]
        return left


def bare_template(cloud_config: dict[str, Any], server_dir: Path, bundle_copy: Path) -> dict[str, Any]:
    """The cloud's config.json for one server, with bind mounts sourced in its dir copied to ours."""
    cfg: dict[str, Any] = json.loads(json.dumps(cloud_config))
    # The cloud joins a network namespace it made per server (ip netns); ours get a fresh one from runc.
    for ns in cfg.get("linux", {}).get("namespaces", []):
        ns.pop("path", None)
    for m in cfg.get("mounts", []):
        src = Path(str(m.get("source", "")))
        if src.is_absolute() and src.is_relative_to(server_dir) and src.exists():
            dst = bundle_copy / "shared" / src.relative_to(server_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)
            m["source"] = str(dst)
    return cfg


# -- (b, c) the API --------------------------------------------------------------------------------


async def boot_active(client: Any, s: h.Session, body: dict[str, Any], timeout: float = 60.0) -> tuple[float, float, str, str]:
    """(seconds to ACTIVE, seconds for the POST, final status, server id)."""
    headers = s.headers()
    t0 = time.perf_counter()
    r = h.expect(await client.post("/compute/v2.1/servers", json=body, headers=headers), 202)
    t_post = time.perf_counter() - t0
    sid = str(r.json()["server"]["id"])
    status = "?"
    while time.perf_counter() - t0 < timeout:
        g = h.expect(await client.get(f"/compute/v2.1/servers/{sid}", headers=headers), 200)
        status = g.json()["server"]["status"]
        if status in ("ACTIVE", "ERROR"):
            break
        await asyncio.sleep(POLL_INTERVAL)
    return time.perf_counter() - t0, t_post, status, sid


class DbWatch:
    """Reads the cloud's SQLite DB (WAL: readers never block its writer) from a thread of ours, so
    watching for ACTIVE costs the cloud's event loop nothing (GET polling competes with the boot)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _wait(self, sid: str, t0: float, timeout: float) -> tuple[float, str]:
        return h.wait_row_active(self.path, sid, t0, timeout)

    async def boot(self, client: Any, s: h.Session, body: dict[str, Any], timeout: float = 60.0) -> tuple[float, float, str, str]:
        """(seconds from POST until the row says active, POST seconds, API status, server id)."""
        t0 = time.perf_counter()
        r = h.expect(await client.post("/compute/v2.1/servers", json=body, headers=s.headers()), 202)
        t_post = time.perf_counter() - t0
        sid = str(r.json()["server"]["id"])
        took, _ = await asyncio.to_thread(self._wait, sid, t0, timeout)
        g = h.expect(await client.get(f"/compute/v2.1/servers/{sid}", headers=s.headers()), 200)
        return took, t_post, str(g.json()["server"]["status"]), sid


async def delete_servers(client: Any, s: h.Session, ids: list[str], timeout: float = 120.0) -> list[str]:
    """DELETE each and wait for 404; returns the ids still there after `timeout`."""
    for sid in ids:
        r = await client.delete(f"/compute/v2.1/servers/{sid}", headers=s.headers())
        if r.status_code not in (204, 404):
            h.expect(r, 204)
    pending = set(ids)
    deadline = time.perf_counter() + timeout
    while pending and time.perf_counter() < deadline:
        for sid in list(pending):
            g = await client.get(f"/compute/v2.1/servers/{sid}", headers=s.headers())
            if g.status_code == 404:
                pending.discard(sid)
        if pending:
            await asyncio.sleep(0.05)
    return sorted(pending)


async def statuses_of(client: Any, s: h.Session, ids: set[str]) -> Counter[str]:
    r = h.expect(await client.get("/compute/v2.1/servers/detail", params={"limit": "1000"}, headers=s.headers()), 200)
    seen = {srv["id"]: srv["status"] for srv in r.json()["servers"]}
    return Counter(seen.get(i, "MISSING") for i in ids)


async def find_demo_image(client: Any, s: h.Session) -> str:
    r = h.expect(await client.get("/image/v2/images", params={"name": "busybox"}, headers={"X-Auth-Token": s.token}), 200)
    for img in r.json().get("images", []):
        if img.get("status") == "active" and img.get("container_format") == "docker":
            return str(img["id"])
    raise RuntimeError("no active busybox demo image (is busybox-static installed?)")


async def wait_background_images(client: Any, s: h.Session, timeout: float = 600.0) -> None:
    """Let the cloud finish what it builds at first start (the tiny-vm image) before measuring."""
    deadline = time.monotonic() + timeout
    for name in BACKGROUND_IMAGES:
        while True:
            r = h.expect(await client.get("/image/v2/images", params={"name": name},
                                          headers={"X-Auth-Token": s.token}), 200)
            states = {img.get("status") for img in r.json().get("images", [])}
            if not states & {"queued", "saving", "importing"}:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {name} image was still being built after {timeout:.0f}s")
            await asyncio.sleep(1.0)


async def find_network(client: Any, s: h.Session, name: str) -> str:
    r = h.expect(await client.get("/networking/v2.0/networks", params={"name": name},
                                  headers={"X-Auth-Token": s.token}), 200)
    nets = r.json()["networks"]
    if not nets:
        raise RuntimeError(f"no network {name!r} (cumulo up makes it at first start)")
    return str(nets[0]["id"])


async def find_flavor(client: Any, s: h.Session, name: str) -> dict[str, Any]:
    r = h.expect(await client.get("/compute/v2.1/flavors/detail", headers=s.headers()), 200)
    for f in r.json()["flavors"]:
        if f["name"] == name:
            return dict(f)
    return await h.smallest_flavor(client, s)


async def cloud_leftovers(cloud: h.CloudProcess, ids: list[str]) -> list[str]:
    """What is left on the host of the given servers: runc containers, mounts, dirs, cgroups."""
    state = cloud.state_dir.absolute()
    left: list[str] = []
    runc_root = state / "runc-state"
    if runc_root.is_dir():
        _, out = await run_cmd([RUNC, "--root", str(runc_root), "list", "--format", "json"], check=False)
        live = {str(c["id"]) for c in (json.loads(out or b"null") or [])}
        left += [f"runc container cumulo-{i}" for i in ids if f"cumulo-{i}" in live]
    points = mount_points()
    left += [f"mount {p}" for p in points for i in ids if i in p]
    left += [f"dir {state / 'runc' / i}" for i in ids if (state / "runc" / i).exists()]
    left += [f"cgroup {c}" for c in leftover_cgroups([f"/cumulo/cumulo-{i}" for i in ids])]
    left += [f"netns cumulo-{i}" for i in ids if os.path.lexists(f"/var/run/netns/cumulo-{i}")]
    return left


# -- the run ---------------------------------------------------------------------------------------


async def run(n: int = 30, concurrent: int = 50, warmup: int = 3) -> dict[str, Any]:
    if os.geteuid() != 0 or shutil.which(RUNC) is None:
        raise RuntimeError("boot_container needs root and runc (Debian package runc)")
    load = [round(os.getloadavg()[0], 2)]
    made: list[str] = []  # every server id this run created
    res: dict[str, Any] = {"name": "boot_container"}
    bare_base = Path(tempfile.mkdtemp(prefix="cumulo-bench-runc-"))
    bare: BareRunc | None = None
    s: h.Session | None = None
    async with h.running_cloud(env=CLOUD_ENV) as cloud, h.make_client(
        cloud.url, connections=concurrent + 8
    ) as client:
        try:
            s = await h.login(client, cloud.credentials())
            await h.unlimited_quota(client, s, s.project_id)
            await wait_background_images(client, s)
            image_id = await find_demo_image(client, s)
            flavor = await find_flavor(client, s, FLAVOR)
            nic_net = await find_network(client, s, NIC_NETWORK)
            res["flavor"] = {k: flavor[k] for k in ("name", "ram", "vcpus", "disk")}
            hyp = h.expect(await client.get("/compute/v2.1/os-hypervisors/detail", headers=s.headers()), 200)
            res["nodes"] = {
                n["hypervisor_hostname"]: {
                    "vcpus": n["vcpus"],
                    "cpu_allocation_ratio": (json.loads(n["cpu_info"]) if isinstance(n["cpu_info"], str)
                                             else n["cpu_info"]).get("driver_details", {})
                    .get("allocation_ratios", {}).get("VCPU"),
                }
                for n in hyp.json()["hypervisors"]
            }

            # Warm-up: the first boot unpacks the image root (cached_rootfs); keep one running to
            # copy its config.json and find that root for the bare runc baseline.
            warm_ids = []
            for i in range(warmup):
                took, _, status, sid = await boot_active(client, s, h.server_body(f"warmup-{i}", image_id, flavor["id"]))
                made.append(sid)
                warm_ids.append(sid)
                if status != "ACTIVE":
                    raise RuntimeError(f"warm-up boot ended {status}")
                if i == 0:
                    res["first_boot_with_unpack_ms"] = round(took * 1000, 1)
            sdir = cloud.state_dir.absolute() / "runc" / warm_ids[0]
            cloud_cfg = json.loads((sdir / "config.json").read_text())
            roots = [p / "rootfs" for p in (cloud.state_dir.absolute() / "images" / "rootfs").iterdir() if (p / "rootfs").is_dir()]
            if len(roots) != 1:
                raise RuntimeError(f"expected one unpacked image root, found {roots}")
            bare = BareRunc(bare_base, roots[0], bare_template(cloud_cfg, sdir, bare_base))
            res["bare_root"] = (
                "overlay (lower = the cloud's cached image root, private upper), the cloud's config.json "
                "(namespaces new, made by runc)"
            )
            if await delete_servers(client, s, warm_ids):
                raise RuntimeError("warm-up servers not deleted")
            for _ in range(3):  # warm runc's binary and our cgroup parent
                cid, b, _ = await bare.prepare()
                await bare.run(cid, b)
                await bare.remove(cid, b)

            # (a) + (b), alternating: a bare runc run, a boot watched in the DB, a boot polled by GET.
            watch = DbWatch(cloud.state_dir.absolute() / "cumulo.sqlite")
            cloud.profile_start("boot_container")
            bare_runs: list[float] = []
            mounts: list[float] = []
            active: list[float] = []
            active_get: list[float] = []
            active_nic: list[float] = []
            posts: list[float] = []
            failures: Counter[str] = Counter()
            for i in range(n):
                cid, b, t_mount = await bare.prepare()
                bare_runs.append(await bare.run(cid, b))
                mounts.append(t_mount)
                await bare.remove(cid, b)
                modes = [("db", active), ("nic", active_nic), ("get", active_get)]
                if i % 2:  # the NIC boot and its no-NIC twin take turns going first
                    modes[0], modes[1] = modes[1], modes[0]
                for mode, times in modes:
                    body = h.server_body(f"boot-{mode}-{i}", image_id, flavor["id"])
                    if mode == "nic":
                        body["server"]["networks"] = [{"uuid": nic_net}]
                    boot = boot_active if mode == "get" else watch.boot
                    took, t_post, status, sid = await boot(client, s, body)
                    made.append(sid)
                    if status == "ACTIVE":
                        times.append(took)
                        posts.append(t_post)
                    else:
                        failures[status] += 1
                    if await delete_servers(client, s, [sid]):
                        raise RuntimeError(f"server {sid} not deleted")
            cloud.profile_stop()
            load.append(round(os.getloadavg()[0], 2))

            # (d) before
            await asyncio.sleep(0.5)
            pid = cloud.proc.pid if cloud.proc else 0
            mem_before = proc_memory_kb(pid)
            helpers_before = set(descendants(pid))

            # (c) concurrent boots
            bodies = [h.server_body(f"conc-{i}", image_id, flavor["id"]) for i in range(concurrent)]
            t0 = time.perf_counter()
            cpu0 = cloud.cpu_seconds()
            rs = await asyncio.gather(*(client.post("/compute/v2.1/servers", json=b, headers=s.headers()) for b in bodies))
            t_posts = time.perf_counter() - t0
            ids = {str(r.json()["server"]["id"]) for r in rs if r.status_code == 202}
            made += sorted(ids)
            codes = Counter(r.status_code for r in rs)
            st: Counter[str] = Counter()
            while time.perf_counter() - t0 < 300:
                st = await statuses_of(client, s, ids)
                if st["ACTIVE"] + st["ERROR"] >= len(ids):
                    break
                await asyncio.sleep(LIST_POLL_INTERVAL)
            t_all = time.perf_counter() - t0
            cpu_all = cloud.cpu_seconds() - cpu0
            load.append(round(os.getloadavg()[0], 2))

            # (d) with them running
            await asyncio.sleep(1.0)
            mem_after = proc_memory_kb(pid)
            helpers = [p for p in descendants(pid) if p not in helpers_before]
            helper_kb = sum(proc_memory_kb(p).get("rss_kb", 0) for p in helpers)
            usages = [cgroup_usage_bytes(f"/cumulo/cumulo-{i}") for i in ids]
            known = [u for u in usages if u is not None]
            running = st["ACTIVE"]
            per = max(running, 1)

            res.update(
                {
                    "bare_runc_run": h.summary_ms(bare_runs),
                    "bare_overlay_mount": h.summary_ms(mounts),
                    "api_to_active": h.summary_ms(active),
                    "api_to_active_get_polled": h.summary_ms(active_get),
                    "api_to_active_one_nic": h.summary_ms(active_nic),
                    "nic_network": NIC_NETWORK,
                    "post_only": h.summary_ms(posts),
                    "failures": dict(failures),
                    "concurrent": {
                        "n": concurrent,
                        "status_codes": dict(codes),
                        "final_statuses": dict(st),
                        "posts_wall_s": round(t_posts, 3),
                        "all_active_s": round(t_all, 3),
                        "boots_per_s": round(st["ACTIVE"] / t_all, 1) if t_all > 0 else 0.0,
                        "cloud_cpu_s": round(cpu_all, 2),
                    },
                    "memory": {
                        "running_containers": running,
                        "cloud_rss_kb_before": mem_before.get("rss_kb"),
                        "cloud_rss_kb_after": mem_after.get("rss_kb"),
                        "cloud_pss_kb_before": mem_before.get("pss_kb"),
                        "cloud_pss_kb_after": mem_after.get("pss_kb"),
                        "cloud_rss_kb_per_container": round(
                            (mem_after.get("rss_kb", 0) - mem_before.get("rss_kb", 0)) / per, 1
                        ),
                        "helper_processes": len(helpers),
                        "helper_rss_kb_per_container": round(helper_kb / per, 1),
                        "container_cgroup_kb_per_container": round(sum(known) / 1024 / len(known), 1) if known else None,
                    },
                }
            )
        finally:
            # Cleanup: every server this run made, then check nothing of them (or of bare runc) is left.
            leftovers: list[str] = []
            try:
                if s is not None:
                    leftovers += [f"server {i}" for i in await delete_servers(client, s, made)]
            except Exception as exc:  # noqa: BLE001 - report, the checks below still run
                leftovers.append(f"delete failed: {exc}")
            leftovers += await cloud_leftovers(cloud, made)
            if bare is not None:
                for cid in bare.made:
                    await bare.remove(cid, bare.base / cid)
                leftovers += await bare.close()
            shutil.rmtree(bare_base, ignore_errors=True)
            res["servers_made"] = len(made)
            res["leftovers"] = leftovers
    load.append(round(os.getloadavg()[0], 2))
    res["loadavg_1m"] = load
    p50 = res.get("api_to_active", {}).get("p50_ms")
    p50_get = res.get("api_to_active_get_polled", {}).get("p50_ms")
    base = res.get("bare_runc_run", {}).get("p50_ms")
    ratio = round(p50 / base, 2) if p50 and base else None
    ratio_get = round(p50_get / base, 2) if p50_get and base else None
    rate = res.get("concurrent", {}).get("boots_per_s", 0.0)
    p50_nic = res.get("api_to_active_one_nic", {}).get("p50_ms")
    nic_adds = round(p50_nic - p50, 2) if p50_nic is not None and p50 is not None else None
    all_ok = res.get("concurrent", {}).get("final_statuses", {}).get("ACTIVE") == concurrent
    res.update(
        {
            "metric": "API-to-ACTIVE p50 (runc, demo image; DB-watched)",
            "value": p50,
            "unit": "ms",
            "target": f"<= {TARGET_P50_MS:.0f} ms, <= {TARGET_RATIO:.0f}x runc, >= {TARGET_RATE:.0f} boots/s, "
                      f"a NIC adds <= {TARGET_NIC_ADDS_MS:.0f} ms",
            "ratio_p50_to_bare_runc": ratio,
            "ratio_p50_get_polled_to_bare_runc": ratio_get,
            # Both ways of seeing ACTIVE must meet the targets.
            "passed_p50": p50 is not None and p50_get is not None and max(p50, p50_get) <= TARGET_P50_MS,
            "passed_ratio": ratio is not None and ratio_get is not None and max(ratio, ratio_get) <= TARGET_RATIO,
            "passed_rate": all_ok and rate >= TARGET_RATE,
            "nic_adds_p50_ms": nic_adds,
            "passed_nic": nic_adds is not None and nic_adds <= TARGET_NIC_ADDS_MS,
        }
    )
    res["passed"] = (res["passed_p50"] and res["passed_ratio"] and res["passed_rate"] and res["passed_nic"]
                     and not res["leftovers"])
    return res


def print_report(res: dict[str, Any]) -> None:
    a, m, b, p = res["bare_runc_run"], res["bare_overlay_mount"], res["api_to_active"], res["post_only"]
    c, mem = res["concurrent"], res["memory"]
    f = res["flavor"]
    print(f"boot_container: runc driver, demo busybox image, flavor {f['name']} ({f['ram']} MB, {f['vcpus']} vCPU)")
    print(f"  default cloud, nodes (vCPUs, vCPU allocation ratio): {res.get('nodes')}")
    print(f"  bare `runc run -d`     p50 {a.get('p50_ms')} ms  p90 {a.get('p90_ms')} ms  (n {a.get('n')}; {res['bare_root']})")
    print(f"  (its overlay mount     p50 {m.get('p50_ms')} ms, not in the figure above)")
    g = res["api_to_active_get_polled"]
    print(f"  API-to-ACTIVE (DB)     p50 {b.get('p50_ms')} ms  p90 {b.get('p90_ms')} ms  (min {b.get('min_ms')}, max {b.get('max_ms')}, n {b.get('n')}; POST sent -> row committed active)")
    print(f"  API-to-ACTIVE (GET)    p50 {g.get('p50_ms')} ms  p90 {g.get('p90_ms')} ms  (n {g.get('n')}; POST sent -> first GET showing ACTIVE, polled every {POLL_INTERVAL * 1000:.0f} ms)")
    k = res["api_to_active_one_nic"]
    print(f"  no NIC vs one NIC (DB): p50 {b.get('p50_ms')} vs {k.get('p50_ms')} ms, p95 {b.get('p95_ms')} vs "
          f"{k.get('p95_ms')} ms (n {b.get('n')}/{k.get('n')}; one port on `{res['nic_network']}`): "
          f"a NIC adds {res['nic_adds_p50_ms']} ms at p50")
    print(f"  POST alone             p50 {p.get('p50_ms')} ms  p90 {p.get('p90_ms')} ms")
    print(f"  ratio p50 API/bare runc: {res['ratio_p50_to_bare_runc']}x (GET-polled {res['ratio_p50_get_polled_to_bare_runc']}x)   first boot (unpacks the image): {res.get('first_boot_with_unpack_ms')} ms")
    print(
        f"  {c['n']} concurrent: POSTs {c['status_codes']}, all answered in {c['posts_wall_s']} s; "
        f"final {c['final_statuses']} after {c['all_active_s']} s -> {c['boots_per_s']} boots/s (cloud CPU {c['cloud_cpu_s']} s)"
    )
    print(
        f"  memory: cloud RSS {mem['cloud_rss_kb_before']} -> {mem['cloud_rss_kb_after']} kB with {mem['running_containers']} running "
        f"= {mem['cloud_rss_kb_per_container']} kB per container (PSS {mem['cloud_pss_kb_before']} -> {mem['cloud_pss_kb_after']} kB); "
        f"{mem['helper_processes']} helper processes ({mem['helper_rss_kb_per_container']} kB each container); "
        f"containers' own memory cgroup {mem['container_cgroup_kb_per_container']} kB each"
    )
    if res["failures"]:
        print(f"  failures: {res['failures']}")
    print(f"  cleanup: {len(res['leftovers'])} leftovers {res['leftovers'][:5]} ({res['servers_made']} servers made)")
    print(f"  1-minute load average (start, after sequential, after concurrent, end): {res['loadavg_1m']}")
    marks = {k: "PASS" if res[k] else "MISS" for k in ("passed_p50", "passed_ratio", "passed_rate", "passed_nic")}
    print(
        f"  targets: p50 <= {TARGET_P50_MS:.0f} ms {marks['passed_p50']}, <= {TARGET_RATIO:.0f}x bare runc {marks['passed_ratio']}, "
        f">= {TARGET_RATE:.0f} boots/s {marks['passed_rate']}, a NIC adds <= {TARGET_NIC_ADDS_MS:.0f} ms at p50 "
        f"{marks['passed_nic']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30, help="sequential boots (and bare runc runs) to time")
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    res = asyncio.run(run(n=args.n, concurrent=args.concurrent))
    print_report(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
