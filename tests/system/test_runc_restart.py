"""kill -9 of `cumulo up` with real containers (issue 3, acceptance item 4).

5 running containers, 3 builds caught in the middle of their spawn (the driver's test hook
`runc_spawn_delay` holds each spawn 2 s), one delete in flight, and two orphans made behind the
cloud's back while it is down (a running runc container and a bundle dir of servers the cloud
never had). After the restart: the 5 are adopted untouched (same pid, same creation time), the
3 end ACTIVE or ERROR, the delete is finished and no orphan remains.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import (
    launch_runc,
    leftovers,
    runc,
    runc_state,
    server,
    wait_for,
    wait_gone,
    wait_status,
)

if TYPE_CHECKING:
    from conftest import CumuloCloud

SPAWN_DELAY = 2.0
COMPUTE = "/compute/v2.1"


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CumuloCloud]:
    # 9 one-vCPU servers on a 2-CPU machine: more overcommit than Nova's default 4.0.
    c = launch_runc(cumulo_launcher, tmp_path_factory.mktemp("runc-restart"), settings={"cpu_allocation_ratio": 16.0},
                    runc_spawn_delay=SPAWN_DELAY)
    yield c
    # A test that failed between kill and restart leaves real containers: bring the cloud back
    # (it reconciles) and delete every server, so nothing outlives the test.
    if not c.running:
        c.start()
    if c.running:
        for row in _rows(c):
            if not row["deleted"]:
                c.osc_run("server", "delete", row["uuid"])
        for row in _rows(c):
            try:
                wait_gone(c, row["uuid"], timeout=30)
            except AssertionError:
                pass
    c.close()


def _rows(cloud: CumuloCloud) -> list[dict[str, Any]]:
    db = sqlite3.connect(cloud.state_dir / "cumulo.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT uuid, display_name, vm_state, task_state, deleted FROM instances")]
    finally:
        db.close()


def _create(cloud: CumuloCloud, name: str, count: int = 1) -> list[str]:
    """POST /servers straight to the API (the CLI's start-up is slower than a spawn)."""
    with cloud.client("cumulo") as c:
        image = c.get("/image/v2/images", params={"name": "busybox"}).json()["images"][0]["id"]
        body = {"server": {"name": name, "imageRef": image, "flavorRef": "1", "networks": "none",
                           "min_count": count, "max_count": count}}
        r = c.post(f"{COMPUTE}/servers", json=body, headers={"X-OpenStack-Nova-API-Version": "2.37"})
        assert r.status_code == 202, r.text
        listed = c.get(f"{COMPUTE}/servers", params={"name": f"^{name}"}).json()["servers"]
    return [s["id"] for s in listed]


def _fake_orphan(cloud: CumuloCloud, template: str) -> str:
    """A running container of a server the cloud never had: the template server's bundle copied
    under a new uuid (own overlay upper, own cgroup, anonymous netns), run with the cloud's runc root."""
    orphan = str(uuidlib.uuid4())
    src, dst = cloud.state_dir / "runc" / template, cloud.state_dir / "runc" / orphan
    for sub in ("upper", "work", "rootfs"):
        (dst / sub).mkdir(parents=True)
    config = json.loads((src / "config.json").read_text())
    config["hostname"] = "orphan"
    config["linux"]["cgroupsPath"] = f"/cumulo/cumulo-{orphan}"
    config["linux"]["namespaces"] = [{"type": n["type"]} for n in config["linux"]["namespaces"]]
    config["mounts"] = [m for m in config["mounts"] if template not in str(m.get("source", ""))]
    (dst / "config.json").write_text(json.dumps(config))
    lower = ""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            if str(src / "rootfs") in line and "lowerdir=" in line:
                lower = line.split("lowerdir=")[1].split(",")[0]
    assert lower, "the template's overlay mount was not found"
    subprocess.run(  # noqa: S603 - fixed argv
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lower},upperdir={dst / 'upper'},workdir={dst / 'work'}", str(dst / "rootfs")],
        check=True, capture_output=True,
    )
    with open(dst / "console.log", "wb") as log:
        done = subprocess.run(  # noqa: S603 - output to a file: runc create hangs on a pipe
            ["runc", "--root", str(cloud.state_dir / "runc-state"), "run", "--detach", "--bundle", str(dst),
             f"cumulo-{orphan}"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, timeout=30, check=False,
        )
    assert done.returncode == 0, (dst / "console.log").read_text()
    return orphan


def test_kill_9_with_running_and_in_flight_containers(cloud: CumuloCloud) -> None:
    # 5 running containers (their spawns overlap, so this takes one spawn delay).
    keep = _create(cloud, "keep", 5)
    assert len(keep) == 5
    for u in keep:
        wait_status(cloud, u, "ACTIVE", timeout=60)
    before = {}
    for u in keep:
        state = runc_state(cloud, u)
        assert state is not None and state["status"] == "running", state
        before[u] = (state["pid"], state["created"])
    doomed = _create(cloud, "doomed")[0]
    wait_status(cloud, doomed, "ACTIVE", timeout=60)

    # 3 builds held in their spawn, and a delete sent just before the crash.
    flying = _create(cloud, "flying", 3)
    assert len(flying) == 3

    def spawning() -> bool:
        shown = [server(cloud, u) or {} for u in flying]
        tasks = [s.get("OS-EXT-STS:task_state") for s in shown]
        return all(s.get("status") == "BUILD" for s in shown) and "spawning" in tasks

    wait_for(spawning, timeout=20, interval=0.05, what="the 3 builds under way, one spawning")
    with cloud.client("cumulo") as c:
        assert c.delete(f"{COMPUTE}/servers/{doomed}").status_code == 204
    cloud.kill()

    rows = {r["uuid"]: r for r in _rows(cloud)}
    print("at the kill:", [(rows[u]["vm_state"], rows[u]["task_state"]) for u in flying])
    assert all(rows[u]["vm_state"] == "building" for u in flying), [rows[u] for u in flying]
    # Orphans made while the cloud is down: a running container, and a bundle dir with a mount.
    orphan = _fake_orphan(cloud, keep[0])
    assert (runc_state(cloud, orphan) or {}).get("status") == "running"
    stray = str(uuidlib.uuid4())
    (cloud.state_dir / "runc" / stray / "rootfs").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(cloud.state_dir / "runc" / stray / "rootfs")],  # noqa: S603,S607
                   check=True, capture_output=True)

    t0 = time.monotonic()
    cloud.start()
    restart_s = time.monotonic() - t0

    # The 5 were adopted: still ACTIVE, and the very same containers (not restarted).
    for u in keep:
        s = wait_status(cloud, u, "ACTIVE", timeout=10)
        assert s["OS-EXT-STS:power_state"] == 1
        state = runc_state(cloud, u)
        assert state is not None and state["status"] == "running"
        assert (state["pid"], state["created"]) == before[u], u
    # The 3 builds in flight end ACTIVE (built again) or ERROR (with a fault), not stuck.
    ends = {u: wait_status(cloud, u, "ACTIVE", "ERROR", timeout=30) for u in flying}
    for u, s in ends.items():
        if s["status"] == "ERROR":
            assert "interrupted" in str(s.get("fault")), s
            assert not leftovers(cloud, u), leftovers(cloud, u)
        else:
            assert (runc_state(cloud, u) or {}).get("status") == "running"
    # The delete was finished; no orphan remains.
    wait_gone(cloud, doomed, timeout=10)
    for u in (doomed, orphan, stray):
        assert not leftovers(cloud, u), (u, leftovers(cloud, u))
    live = keep + [u for u, s in ends.items() if s["status"] == "ACTIVE"]
    assert sorted(p.name for p in (cloud.state_dir / "runc").iterdir()) == sorted(live)
    listed = runc(cloud, "list", "--format", "json")
    assert sorted(c["id"] for c in json.loads(listed.stdout or "null") or []) == sorted(f"cumulo-{u}" for u in live)
    assert restart_s < 30, restart_s

    # And they all go away cleanly.
    for u in keep + list(flying):
        cloud.osc_run("server", "delete", u)
    for u in keep + list(flying):
        wait_gone(cloud, u, timeout=30)
        assert not leftovers(cloud, u), (u, leftovers(cloud, u))
