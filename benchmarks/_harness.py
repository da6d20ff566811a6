"""Shared plumbing for the benchmarks: a real `cumulo up` subprocess on loopback, and API helpers.

Benchmarks are scripts, never tests: they print figures and never assert timings. Each one starts
its own cloud in a temporary state dir, authenticates through Keystone with the admin password from
clouds.yaml, drives the HTTP APIs with httpx, and tears the cloud down by PID at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
# The cumulo entry point next to the interpreter running the benchmark (the project venv).
CUMULO = Path(sys.executable).parent / "cumulo"
READY_LINE = "Cumulo is ready"
# Microversion used for compute calls; 2.37+ needs an explicit `networks`, we send "none".
MICROVERSION = "2.79"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_row_active(db_path: Path, sid: str, t0: float, timeout: float = 60.0) -> tuple[float, str]:
    """(seconds since t0, vm_state) once the server's row in the cloud's SQLite DB is active or
    error, read from the caller's thread (WAL: readers never block the writer), so watching costs
    the cloud's event loop nothing where a GET poll would compete with the boot. Run it in a thread."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        state = "?"
        while time.perf_counter() - t0 < timeout:
            row = conn.execute("SELECT vm_state FROM instances WHERE uuid = ?", (sid,)).fetchone()
            state = str(row[0]) if row else "?"
            if state in ("active", "error"):
                break
            time.sleep(0.0005)
        return time.perf_counter() - t0, state
    finally:
        conn.close()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/min/max/mean of durations given in seconds, reported in milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p90_ms": round(percentile(values, 90) * 1000, 2),
        "p95_ms": round(percentile(values, 95) * 1000, 2),
        "min_ms": round(min(values) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


@dataclass
class CloudProcess:
    """A running `cumulo up`. Start with `start()`, stop with `stop()` (by PID, never by name)."""

    state_dir: Path
    port: int
    fake_hosts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> float:
        """Start the cloud and wait for its ready line. Returns the start-up time in seconds."""
        # BENCH_LAUNCHER (e.g. "python instrument.py") runs the cloud through a wrapper, for diagnosis.
        launcher = os.environ.get("BENCH_LAUNCHER", "").split() or [str(CUMULO)]
        argv = [
            *launcher,
            "up",
            "--state-dir",
            str(self.state_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if self.fake_hosts:
            argv += ["--fake-hosts", str(self.fake_hosts)]
        env = dict(os.environ)
        # No periodic power sync while measuring: it is background noise, not what is measured.
        env.setdefault("CUMULO_POWER_SYNC_INTERVAL", "3600")
        # The fake driver unless a benchmark asks for another (`up` may default to runc as root).
        env.setdefault("CUMULO_LOCAL_DRIVER", "fake")
        # The metrics endpoint stays on (as by default) on a port of its own: runs side by side never clash on 9180.
        env.setdefault("CUMULO_METRICS_PORT", str(free_port()))
        # No host link to the external network (what `--no-external` does): another cloud on this host
        # (a developer's, a test's) may hold 172.24.4.1 on its own link. Nothing else of the data plane
        # changes: the networks, their namespaces, DHCP, routers and security groups are the defaults.
        env.setdefault("CUMULO_EXTERNAL_LINK", "false")
        env.update(self.env)
        self.log_path = self.state_dir.parent / f"cumulo-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        t0 = time.perf_counter()
        # argv list, no shell: this starts our own entry point.
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))  # noqa: S603
        log.close()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cumulo up exited with {self.proc.returncode}:\n{self.log_tail()}")
            if READY_LINE in self.log_path.read_text(errors="replace"):
                return time.perf_counter() - t0
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"cumulo up not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User+system CPU the cloud process has used so far (Linux /proc), all threads."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")

    def profile_start(self, label: str) -> None:
        """The measured section starts. If BENCH_PROFILE_DIR is set, sample the cloud with py-spy
        (collapsed stacks) until profile_stop(); under BENCH_LAUNCHER, SIGUSR1 resets its counters."""
        if os.environ.get("BENCH_LAUNCHER") and self.proc is not None:
            self.proc.send_signal(signal.SIGUSR1)
        out_dir = os.environ.get("BENCH_PROFILE_DIR")
        spy = Path(sys.executable).parent / "py-spy"
        if not out_dir or self.proc is None or not spy.exists():
            return
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        out = Path(out_dir) / f"{label}.txt"
        argv = [
            str(spy),
            "record",
            "--pid",
            str(self.proc.pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--gil",  # only samples holding the GIL: the CPU the event loop spends, not idle threads
            "-o",
            str(out),
        ]
        # argv list, no shell: the profiler from the same venv.
        self.profiler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        time.sleep(0.5)  # let it attach before the measured section starts

    def profile_stop(self) -> None:
        spy, self.profiler = self.profiler, None
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        self.profile_stop()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.remove_data_plane()

    def remove_data_plane(self) -> None:
        """The network data plane the cloud registered on the host (namespaces, dnsmasq, host
        link), which `cumulo up` leaves serving when it stops; none on a tree without networking."""
        try:
            from cumulo.network.agent.plumbing import remove_registered
        except ImportError:
            return
        asyncio.run(remove_registered(str(self.state_dir.resolve())))

    def credentials(self, cloud: str = "cumulo") -> dict[str, str]:
        data = yaml.safe_load((self.state_dir / "clouds.yaml").read_text())
        return dict(data["clouds"][cloud]["auth"])


@dataclass
class Session:
    """A Keystone token scoped to a project, and the ids that came with it."""

    token: str
    project_id: str
    user_id: str
    roles: list[str]

    def headers(self, microversion: str = MICROVERSION) -> dict[str, str]:
        return {"X-Auth-Token": self.token, "OpenStack-API-Version": f"compute {microversion}"}


async def login(client: httpx.AsyncClient, auth: dict[str, str]) -> Session:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": auth["username"],
                        "domain": {"name": auth.get("user_domain_name", "Default")},
                        "password": auth["password"],
                    }
                },
            },
            "scope": {
                "project": {
                    "name": auth["project_name"],
                    "domain": {"name": auth.get("project_domain_name", "Default")},
                }
            },
        }
    }
    r = await client.post("/identity/v3/auth/tokens", json=body)
    expect(r, 201)
    tok = r.json()["token"]
    return Session(
        token=r.headers["X-Subject-Token"],
        project_id=tok["project"]["id"],
        user_id=tok["user"]["id"],
        roles=[role["name"] for role in tok.get("roles", [])],
    )


def expect(r: httpx.Response, *codes: int) -> httpx.Response:
    if r.status_code not in codes:
        raise RuntimeError(
            f"{r.request.method} {r.request.url} -> {r.status_code} (wanted {codes}): {r.text[:500]}"
        )
    return r


def make_client(url: str, connections: int = 16, timeout: float = 120.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout)


async def ensure_image(client: httpx.AsyncClient, s: Session, name: str = "bench-image") -> str:
    """A tiny active public-or-private image to boot from (the fake driver never reads it)."""
    h = {"X-Auth-Token": s.token}
    r = expect(await client.get("/image/v2/images", params={"name": name}, headers=h), 200)
    for img in r.json().get("images", []):
        if img.get("status") == "active":
            return str(img["id"])
    body = {"name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public"}
    r = expect(await client.post("/image/v2/images", json=body, headers=h), 201)
    image_id = str(r.json()["id"])
    data = b"cumulo benchmark image\n" * 64
    hdr = {**h, "Content-Type": "application/octet-stream"}
    expect(await client.put(f"/image/v2/images/{image_id}/file", content=data, headers=hdr), 204)
    return image_id


async def smallest_flavor(client: httpx.AsyncClient, s: Session) -> dict[str, Any]:
    r = expect(await client.get("/compute/v2.1/flavors/detail", headers=s.headers()), 200)
    flavors = r.json()["flavors"]
    if not flavors:
        raise RuntimeError("no flavors")
    return dict(min(flavors, key=lambda f: (f["vcpus"], f["ram"], f["disk"])))


def server_body(name: str, image_id: str, flavor_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "server": {"name": name, "imageRef": image_id, "flavorRef": flavor_id, "networks": "none", **extra}
    }


async def unlimited_quota(client: httpx.AsyncClient, s: Session, project_id: str) -> None:
    body = {"quota_set": {"instances": -1, "cores": -1, "ram": -1}}
    expect(await client.put(f"/compute/v2.1/os-quota-sets/{project_id}", json=body, headers=s.headers()), 200)


@contextlib.asynccontextmanager
async def running_cloud(
    fake_hosts: int = 0, env: dict[str, str] | None = None, keep: bool = False
) -> AsyncIterator[CloudProcess]:
    """A fresh cloud in a temp dir; the dir is deleted afterwards unless `keep`."""
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-bench-"))
    cloud = CloudProcess(state_dir=tmp / "state", port=free_port(), fake_hosts=fake_hosts, env=env or {})
    try:
        await asyncio.to_thread(cloud.start)
        yield cloud
    finally:
        await asyncio.to_thread(cloud.stop)
        if keep:
            print(f"(kept {tmp})", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
