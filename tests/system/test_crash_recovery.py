"""Crash recovery (acceptance item 5): kill -9 `cumulo up` and start it again on the same state dir.

The fake driver is slowed down (CUMULO_FAKE_SPAWN_DELAY) so builds are really in flight when the
process dies. After the restart nothing may stay in BUILD or in a transitional task_state: every
server ends ACTIVE or ERROR (ERROR with a fault), placement holds exactly the live placed servers,
and the fake driver keeps exactly one guest per placed server (nothing leaks). Running servers
are adopted as they are, and interrupted deletes are finished.

The moment to kill is taken from the cloud's SQLite file, read read-only, so the test never waits
on an HTTP round trip while the builds it wants to interrupt run to completion.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from _util_resilience import (
    check_guests_match_servers,
    check_placement,
    create_servers,
    delete_servers,
    fake_guest_record,
    fake_guests,
    get_server,
    host_of,
    instance_rows,
    osc_json,
    parallel,
    placement_view,
    post_actions,
    quota_limits,
    statuses,
    unlimited_quotas,
    upload_image,
    wait_gone,
    wait_settled,
)

if TYPE_CHECKING:
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

SPAWN_DELAY = 2.0
FLAVOR = "42"  # m1.nano, one of the default flavors
SETTLE_TIMEOUT = 60.0
RUNNING = 1  # power_state

cumulo_options = {"fake_hosts": 3, "env": {"CUMULO_FAKE_SPAWN_DELAY": str(SPAWN_DELAY)}}


@pytest.fixture(scope="module")
def image(cumulo: CumuloCloud) -> str:
    _, image_id = parallel(lambda: unlimited_quotas(cumulo), lambda: upload_image(cumulo, "crash-image"))
    assert quota_limits(cumulo)["instances"] == -1
    return str(image_id)


def _rows(cloud: CumuloCloud, uuids: list[str]) -> list[dict[str, Any]]:
    want = set(uuids)
    return [r for r in instance_rows(cloud) if r["uuid"] in want]


def _wait_rows(
    cloud: CumuloCloud, uuids: list[str], ready: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll the DB (read-only, every 20 ms) until `ready(rows)`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(cloud, uuids)
        if ready(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {[(r['vm_state'], r['task_state']) for r in rows]}")
        time.sleep(0.02)


def _spawning(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["vm_state"] == "building" and r["task_state"] == "spawning" and not r["deleted"]]


def _shape(rows: list[dict[str, Any]]) -> Counter[str]:
    """How a crash left the rows: vm_state/task_state(+host) counts, for messages."""
    return Counter(f"{r['vm_state']}/{r['task_state']}{'@host' if r['host'] else ''}" for r in rows)


def _kill(cloud: CumuloCloud) -> None:
    pid = cloud.pid
    cloud.kill()
    assert not cloud.running and cloud.proc is not None and cloud.proc.returncode == -9, (pid, cloud.proc)


def _check_settled(cloud: CumuloCloud, servers: dict[str, dict[str, Any]]) -> None:
    for uuid, s in servers.items():
        assert s["status"] in ("ACTIVE", "ERROR"), (uuid, s["status"], s.get("OS-EXT-STS:task_state"))
        assert s.get("OS-EXT-STS:task_state") is None
        if s["status"] == "ERROR":
            assert (s.get("fault") or {}).get("message"), f"{uuid} is ERROR without a fault"
        else:
            assert s["OS-EXT-STS:power_state"] == RUNNING and host_of(s), s
    _, everything = check_placement(cloud)
    check_guests_match_servers(cloud, everything)


def test_kill_during_ten_concurrent_builds(cumulo: CumuloCloud, image: str) -> None:
    uuids = create_servers(cumulo, 10, image, FLAVOR, "crash-build")
    # Kill as soon as guests are being spawned: the others are still being scheduled or queued.
    _wait_rows(cumulo, uuids, lambda rows: len(_spawning(rows)) >= 1, "a build to reach spawning")
    _kill(cumulo)
    at_kill = _rows(cumulo, uuids)
    building = [r for r in at_kill if r["vm_state"] == "building"]
    assert building, f"every build finished before the kill; nothing was in flight: {_shape(at_kill)}"

    cumulo.start()
    servers = wait_settled(cumulo, uuids, timeout=SETTLE_TIMEOUT)
    _check_settled(cumulo, servers)
    counts = statuses(servers.values())
    assert sum(counts.values()) == 10
    print(f"kill during builds: at kill {dict(_shape(at_kill))}; after restart {dict(counts)}")


def test_second_kill_during_retried_builds(cumulo: CumuloCloud, image: str) -> None:
    """A build that a restart retried and that a second crash interrupts again still ends
    ACTIVE or ERROR-with-fault: no crash loop leaves a server in BUILD."""
    uuids = create_servers(cumulo, 6, image, FLAVOR, "crash-twice")
    _wait_rows(cumulo, uuids, lambda rows: len(_spawning(rows)) >= 1, "a build to reach spawning")
    _kill(cumulo)
    cumulo.start()

    def retrying(rows: list[dict[str, Any]]) -> bool:
        return any(json.loads(r["system_metadata"] or "{}").get("build_attempts") for r in _spawning(rows)) or all(
            r["vm_state"] != "building" for r in rows
        )

    # Kill again while the restarted cloud re-runs an interrupted build (or once all are done).
    _wait_rows(cumulo, uuids, retrying, "a retried build to be spawning")
    _kill(cumulo)
    second = _rows(cumulo, uuids)
    cumulo.start()
    servers = wait_settled(cumulo, uuids, timeout=SETTLE_TIMEOUT)
    _check_settled(cumulo, servers)
    interrupted_twice = [
        r["uuid"] for r in _spawning(second) if json.loads(r["system_metadata"] or "{}").get("build_attempts")
    ]
    for uuid in interrupted_twice:
        s = servers[uuid]
        if s["status"] == "ERROR":
            assert "restart" in s["fault"]["message"] or "interrupt" in s["fault"]["message"], s["fault"]
    print(
        f"second kill: at kill {dict(_shape(second))}; interrupted twice {len(interrupted_twice)}; "
        f"after restart {dict(statuses(servers.values()))}"
    )


def test_running_servers_survive_kill(cumulo: CumuloCloud, image: str) -> None:
    uuids = create_servers(cumulo, 4, image, FLAVOR, "crash-running")
    assert statuses(wait_settled(cumulo, uuids, timeout=SETTLE_TIMEOUT).values()) == {"ACTIVE": 4}
    stopped, paused = uuids[0], uuids[1]
    # Two servers in other stable states, through the real CLI.
    parallel(
        lambda: cumulo.osc("server", "stop", stopped, json=False),
        lambda: cumulo.osc("server", "pause", paused, json=False),
    )
    before = wait_settled(cumulo, uuids, timeout=SETTLE_TIMEOUT)
    assert before[stopped]["status"] == "SHUTOFF"
    assert before[paused]["status"] == "PAUSED"
    placed = {u: host_of(s) for u, s in before.items()}
    records = {u: fake_guest_record(cumulo, str(placed[u]), u) for u in uuids}
    allocations = placement_view(cumulo).allocations

    _kill(cumulo)
    cumulo.start()

    after = {u: get_server(cumulo, u) for u in uuids}  # at once, before any sync could repair things
    for u in uuids:
        s, b = after[u], before[u]
        assert s is not None, f"{u} disappeared"
        assert (s["status"], s["OS-EXT-STS:power_state"], host_of(s)) == (
            b["status"], b["OS-EXT-STS:power_state"], host_of(b),
        ), u
        assert s.get("OS-EXT-STS:task_state") is None
        # Adopted, not rebuilt: the guest the driver persisted is the same one.
        rec = fake_guest_record(cumulo, str(placed[u]), u)
        assert rec["created_at"] == records[u]["created_at"] and rec["power"] == records[u]["power"], u
    assert {u: a for u, a in placement_view(cumulo).allocations.items() if u in uuids} == {
        u: a for u, a in allocations.items() if u in uuids
    }

    # And they still answer to the CLI.
    started, log = parallel(
        lambda: cumulo.osc("server", "start", stopped, json=False),
        lambda: cumulo.osc("console", "log", "show", uuids[2], json=False),
    )
    assert "login:" in log, log
    cumulo.osc("server", "unpause", paused, json=False)
    final = wait_settled(cumulo, uuids, timeout=SETTLE_TIMEOUT)
    assert statuses(final.values()) == {"ACTIVE": 4}
    _, everything = check_placement(cumulo)
    check_guests_match_servers(cumulo, everything)


# Nova's power_state numbers, and the status each one settles to once no task is running.
POWER_STATUS = {1: "ACTIVE", 3: "PAUSED", 4: "SHUTOFF", 7: "SUSPENDED"}


def test_kill_during_power_actions(cumulo: CumuloCloud, image: str) -> None:
    """Actions cut short by a crash are finished or rolled back from the guest's real power
    state: no task_state survives, and status, power_state and the guest agree."""
    uuids = create_servers(cumulo, 6, image, FLAVOR, "crash-power")
    assert statuses(wait_settled(cumulo, uuids, timeout=SETTLE_TIMEOUT).values()) == {"ACTIVE": 6}
    bodies: list[dict[str, Any]] = [{"os-stop": None}, {"pause": None}, {"suspend": None}, {"reboot": {"type": "HARD"}}]
    actions = [(u, bodies[i % len(bodies)]) for i, u in enumerate(uuids)]
    post_actions(cumulo, actions)
    _kill(cumulo)
    at_kill = _rows(cumulo, uuids)
    cumulo.start()
    servers = wait_settled(cumulo, uuids, timeout=SETTLE_TIMEOUT)
    for u, s in servers.items():
        power = s["OS-EXT-STS:power_state"]
        assert s["status"] == POWER_STATUS.get(power), (u, s["status"], power)
        host = host_of(s)
        assert host is not None
        assert fake_guest_record(cumulo, host, u)["power"] == power, u
    _, everything = check_placement(cumulo)
    check_guests_match_servers(cumulo, everything)
    print(f"kill during power actions: at kill {dict(_shape(at_kill))}; after {dict(statuses(servers.values()))}")


def test_kill_during_deletes(cumulo: CumuloCloud, image: str) -> None:
    active = create_servers(cumulo, 4, image, FLAVOR, "crash-del-active")
    assert statuses(wait_settled(cumulo, active, timeout=SETTLE_TIMEOUT).values()) == {"ACTIVE": 4}
    building = create_servers(cumulo, 4, image, FLAVOR, "crash-del-building")
    _wait_rows(cumulo, building, lambda rows: len(_spawning(rows)) >= 2, "builds to reach spawning")
    doomed = active + building
    delete_servers(cumulo, doomed)
    _kill(cumulo)
    at_kill = _rows(cumulo, doomed)
    in_flight = [r for r in at_kill if not r["deleted"] and r["task_state"] == "deleting"]
    # A delete of a spawning server waits for the spawn, so some deletes are surely unfinished.
    assert in_flight, f"every delete finished before the kill: {_shape(at_kill)}"

    cumulo.start()
    wait_gone(cumulo, doomed, timeout=SETTLE_TIMEOUT)
    view, everything = check_placement(cumulo)
    assert not set(view.allocations) & set(doomed)
    guests = set().union(*fake_guests(cumulo).values())
    assert not guests & set(doomed), guests & set(doomed)
    check_guests_match_servers(cumulo, everything)
    # The other servers of this module are untouched.
    assert all(s["id"] not in doomed for s in everything)
    shown = osc_json(cumulo, "server", "list", "--all-projects")
    assert {r["ID"] for r in shown} == {s["id"] for s in everything}
    print(f"kill during deletes: at kill {dict(_shape(at_kill))}; {len(in_flight)} deletes in flight")
