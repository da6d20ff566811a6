"""Issue 8, acceptance 4: the Prometheus endpoint of a real `cumulo up` while a runc container and
a QEMU VM run and work.

The cloud runs both local nodes (runc and QEMU). The container's command and the VM's user_data
each loop over a little arithmetic and a sleep, so both really use CPU. The test scrapes the
metrics port as the admin and checks that each server has its CPU and memory series with exactly
the labels server_id, project_id and node, that CPU seconds increase between scrapes (waited for
with a deadline), that `openstack server show --diagnostics` reads the same counters (between two
scrapes, so it must fall between them), and that a member's token, no token and the API port do
not get the metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _runc_util import (
    demo_image_file,
    kill_our_qemus,
    server,
    wait_for,
    wait_gone,
    wait_status,
    wait_tiny_vm,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())
WORK = "while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 1; done"
USER_DATA = f"#!/bin/sh\n( {WORK} ) &\necho metered-vm-working\n"
LABELS = {"server_id", "project_id", "node"}
MIB = 1 << 20

Samples = dict[str, list[tuple[dict[str, str], float]]]


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.servers: dict[str, str] = {}

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.cloud.metrics_port}/metrics"

    def get(self, headers: dict[str, str] | None = None, url: str | None = None) -> httpx.Response:
        return httpx.get(url or self.metrics_url, headers=headers or {}, timeout=60)

    def scrape(self) -> Samples:
        resp = self.get({"X-Auth-Token": self.cloud.token("cumulo")})
        assert resp.status_code == 200, resp.text
        out: Samples = {}
        for fam in text_string_to_metric_families(resp.text):
            for s in fam.samples:
                out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
        return out


def series(samples: Samples, name: str, sid: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, v) for labels, v in samples.get(name, []) if labels.get("server_id") == sid]


def one(samples: Samples, name: str, sid: str) -> float:
    found = series(samples, name, sid)
    assert len(found) == 1, f"{name} of {sid}: {found}"
    return found[0][1]




@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("metrics")
    config = write_config(tmp, {"power_sync_interval": 3.0}, image_build_cache=BUILD_CACHE, qemu_stop_timeout=15)
    cloud = cumulo_launcher(driver="runc,qemu", args=["--config", str(config)])
    w = World(cloud, tmp)
    (tmp / "user-data.sh").write_text(USER_DATA)
    try:
        cloud.osc("image", "create", "--container-format", "docker", "--disk-format", "raw",
                  "--property", "hypervisor_type=container", "--property", f"os_command_line=/bin/sh -c '{WORK}'",
                  "--file", str(demo_image_file(cloud)), "busy-box")
        wait_tiny_vm(cloud)
        yield w
    finally:
        for uuid in w.servers.values():
            if server(cloud, uuid) is not None:
                cloud.osc_run("server", "delete", uuid)
        for uuid in w.servers.values():
            with contextlib.suppress(AssertionError):
                wait_gone(cloud, uuid, timeout=60)
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        cloud.close()


def diagnostics(w: World, sid: str) -> dict[str, Any]:
    """`openstack server show --diagnostics` at the 2.48 shape, as a dict."""
    shown = w.cloud.osc("server", "show", "--diagnostics", sid, microversion="2.48")
    assert isinstance(shown, dict), shown
    return {k: json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v for k, v in shown.items()}


def cpu_seconds(diag: dict[str, Any]) -> float:
    return sum(int(c["time"] or 0) for c in diag["cpu_details"]) / 1e9


def test_a_container_and_a_vm_are_metered_and_only_admins_see_it(world: World) -> None:
    cloud = world.cloud
    made = {
        "ct": cloud.osc("server", "create", "--image", "busy-box", "--flavor", "m1.nano", "metered-ct"),
        "vm": cloud.osc("server", "create", "--image", "tiny-vm", "--flavor", "m1.tiny",
                        "--user-data", str(world.files / "user-data.sh"), "metered-vm"),
    }
    world.servers.update({k: str(v["id"]) for k, v in made.items()})
    shown = {k: wait_status(cloud, sid, "ACTIVE", timeout=180) and cloud.osc("server", "show", sid)
             for k, sid in world.servers.items()}
    ct, vm = world.servers["ct"], world.servers["vm"]
    nodes = {k: s["OS-EXT-SRV-ATTR:hypervisor_hostname"] for k, s in shown.items()}
    assert nodes == {"ct": "cumulo-local", "vm": "cumulo-local-qemu"}

    # Each server: its CPU and memory series, labelled with its id, its project and its node.
    first = world.scrape()
    for k, sid in world.servers.items():
        want = {"server_id": sid, "project_id": shown[k]["project_id"], "node": nodes[k]}
        for name in ("cumulo_server_cpu_seconds_total", "cumulo_server_memory_used_bytes",
                     "cumulo_server_memory_limit_bytes"):
            found = series(first, name, sid)
            assert [labels for labels, _ in found] == [want], (name, found)
        used, limit = one(first, "cumulo_server_memory_used_bytes", sid), one(first, "cumulo_server_memory_limit_bytes", sid)
        assert 0 < used <= limit, (k, used, limit)
    assert one(first, "cumulo_server_memory_limit_bytes", ct) == 64 * MIB  # m1.nano, the cgroup's limit
    assert one(first, "cumulo_server_memory_limit_bytes", vm) == 512 * MIB  # m1.tiny, the guest's RAM
    assert one(first, "cumulo_server_pids", ct) >= 1
    assert one(first, "cumulo_server_disk_read_requests_total", vm) > 0  # the guest read its disks
    assert one(first, "cumulo_server_power_state", ct) == one(first, "cumulo_server_power_state", vm) == 1

    # The series move: both guests keep working, so their CPU seconds grow from scrape to scrape.
    start = {sid: one(first, "cumulo_server_cpu_seconds_total", sid) for sid in (ct, vm)}

    def moved() -> Samples | None:
        now = world.scrape()
        return now if all(one(now, "cumulo_server_cpu_seconds_total", s) > start[s] for s in (ct, vm)) else None

    wait_for(moved, timeout=90, interval=1.0, what="CPU seconds of both servers to increase")

    # Diagnostics and metrics are one reading: a diagnostics taken between two scrapes falls
    # between them (the counters only grow); the limits are equal.
    for sid in (ct, vm):
        before = world.scrape()
        diag = diagnostics(world, sid)
        after = world.scrape()
        low, high = (one(s, "cumulo_server_cpu_seconds_total", sid) for s in (before, after))
        assert low <= cpu_seconds(diag) <= high, (sid, low, cpu_seconds(diag), high)
        assert diag["memory_details"]["maximum"] * MIB == one(after, "cumulo_server_memory_limit_bytes", sid)
        assert diag["uptime"] > 0 and diag["state"] == "running"

    # Control-plane series of this very run.
    samples = world.scrape()
    routes = {labels["route"] for labels, _ in samples["cumulo_http_request_duration_seconds_count"]}
    assert "/compute/v2.1/servers" in routes and "/compute/v2.1/servers/{server_id}" in routes
    assert not any(ct in r or vm in r for r in routes)
    builds = {labels["method"]: v for labels, v in samples["cumulo_bus_messages_total"] if labels["topic"] == "conductor"}
    assert builds.get("build_instances", 0) >= 2
    assert sum(v for labels, v in samples["cumulo_scheduler_decisions_total"] if labels["outcome"] == "selected") >= 2

    # Not for tenants: a member's token is refused, no token is refused, the API port has no /metrics.
    member = cloud.token("cumulo-demo")
    for headers in ({"X-Auth-Token": member}, {"Authorization": f"Bearer {member}"}):
        resp = world.get(headers)
        assert resp.status_code == 403 and "cumulo_server" not in resp.text
    resp = world.get()
    assert resp.status_code == 401 and "cumulo_server" not in resp.text
    resp = world.get({"X-Auth-Token": member}, url=f"{cloud.base_url}/metrics")
    assert resp.status_code == 404 and "cumulo_server" not in resp.text
    # The start banner names the endpoint; the scrape secret in the state dir (0600) is what a
    # Prometheus on this host would use.
    assert f"metrics (admins only): {world.metrics_url}" in cloud.log()
    secret_file = cloud.state_dir / "metrics-token"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    resp = world.get({"Authorization": f"Bearer {secret_file.read_text().strip()}"})
    assert resp.status_code == 200 and f'server_id="{ct}"' in resp.text


def test_a_taken_metrics_port_stops_the_start_and_port_0_turns_metrics_off(
        cumulo_launcher: Callable[..., CumuloCloud], tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cumulo = Path(sys.executable).parent / "cumulo"
        done = subprocess.run(  # noqa: S603 - fixed argv
            [str(cumulo), "up", "--state-dir", str(tmp_path / "state"), "--port", "0", "--metrics-port", str(port)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "CUMULO_LOCAL_DRIVER": "fake"}, check=False)
    assert done.returncode == 2, done
    assert f"cannot listen for metrics on 127.0.0.1:{port}" in done.stderr and "--metrics-port" in done.stderr
    assert not (tmp_path / "state" / "cumulo.sqlite").exists()  # nothing started
    off = cumulo_launcher(driver="fake", args=["--metrics-port", "0"])
    try:
        out = off.log()
        assert "Cumulo is ready" in out and "metrics (admins only)" not in out
        assert not (off.state_dir / "metrics-token").exists()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{off.metrics_port}/metrics", timeout=5)
    finally:
        off.close()
