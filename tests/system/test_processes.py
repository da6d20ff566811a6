"""A cloud split into processes (issue 14, PROC): two `cumulo api` (one on its own port, one with
two uvicorn workers on another), one `cumulo conductor`, one `cumulo scheduler` and one
`cumulo compute --host h1 --fake-hosts 3`, over PostgreSQL and RabbitMQ (a database and a vhost of
the module's own). The fake driver is enough here: this proves the process split (quota and
placement claims correct under writers in separate processes, service rows of every process),
not the drivers (test_processes_runc.py boots a real container through a split cloud).

Capacity is made small and known: the fake hosts have 2 vCPUs at ratio 1.0, and h1's own node is
disabled, so 6 m1.nano servers fit.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _leftovers
import pytest
from _procs_util import SplitCloud, statuses

START = 240.0  # seconds a process may take to be ready (2 shared cores, other clouds running)
QUOTA = 4  # the project's instances quota: 2 * QUOTA creates race for it
CAPACITY = 6  # VCPU of fake-host-1..3 (2 each, ratio 1.0); m1.nano takes 1


@pytest.fixture(scope="module")
def split(scale_services: dict[str, str]) -> Iterator[SplitCloud]:
    if not scale_services.get("dir"):
        pytest.skip("needs the run's RabbitMQ node dir (scripts/test.sh exports CUMULO_TEST_SERVICES_DIR)")
    root = Path(tempfile.mkdtemp(prefix=_leftovers.cloud_root_prefix() + "procs-"))
    settings = {"host_name": "h1", "l3_host": "h1", "volume_host": "h1", "external_link": False,
                "fake_host_vcpus": 2, "cpu_allocation_ratio": 1.0, "metrics_port": 0}
    with SplitCloud(root, scale_services, settings) as cloud:
        try:
            # all at once on an empty database: three API processes (api1 and api2's two workers) race
            # for the bootstrap (migrations, users, flavors, demo images, networks); the others wait
            first, _ = cloud.start_api(name="api1")
            second, _ = cloud.start_api(name="api2", workers=2)
            others = [cloud.start("conductor", "--host", "ctl-a"), cloud.start("scheduler", "--host", "sched-a"),
                      cloud.start_compute("h1", "--driver", "fake", "--fake-hosts", "3")]
            first.wait_ready(START)
            cloud.wait_api_workers(second, 2, START)
            for proc in others:
                proc.wait_ready(START)
        except BaseException:
            print(cloud.logs())
            raise
        yield cloud


def ports(cloud: SplitCloud) -> list[int]:
    return [port for _, port in cloud.apis]


def admin(cloud: SplitCloud, port: int) -> Any:
    auth = cloud.auth()
    return cloud.connect(port, username=auth["username"], password=auth["password"], project=auth["project_name"])


def wait_final(conn: Any, names: list[str], timeout: float = 240.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        now = statuses(conn, names)
        if all(s in ("ACTIVE", "ERROR") for s in now.values()):
            return now
        assert time.monotonic() < deadline, f"servers not final after {timeout:.0f} s: {now}"
        time.sleep(1.0)


def create_all(cloud: SplitCloud, names: list[str], login: dict[str, str]) -> dict[str, int]:
    """Create the servers at once, alternating the two API processes (each thread its own client);
    name -> HTTP status of the create (202, or the error's)."""
    image = admin(cloud, ports(cloud)[0]).image.find_image("busybox", ignore_missing=False).id
    barrier = threading.Barrier(len(names))
    out: dict[str, int] = {}

    def one(i: int, name: str) -> None:
        conn = cloud.connect(ports(cloud)[i % 2], **login)
        conn.authorize()
        barrier.wait(timeout=120)
        try:
            conn.compute.create_server(name=name, image_id=image, flavor_id="42", networks="none")
            out[name] = 202
        except Exception as exc:  # noqa: BLE001 - the status is what is asserted
            out[name] = int(getattr(exc, "status_code", 0) or 0)
            if out[name] not in (403, 202):
                out[name] = -1
                print(f"{name}: {exc!r}")
        finally:
            conn.close()

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda a: one(*a), enumerate(names)))
    return out


def test_service_list_shows_every_process(split: SplitCloud) -> None:
    # through the API process with two workers, with the real CLI
    rows = json.loads(split.osc(ports(split)[1], "compute", "service", "list", "-f", "json"))
    seen = {(r["Binary"], r["Host"]): r["State"] for r in rows}
    want = {("nova-conductor", "ctl-a"), ("nova-scheduler", "sched-a"), ("nova-compute", "h1"),
            *{("nova-compute", f"fake-host-{i}") for i in (1, 2, 3)}}
    assert want <= set(seen), rows
    assert all(seen[k] == "up" for k in want), rows


def test_the_racing_api_processes_bootstrapped_once(split: SplitCloud) -> None:
    conn = admin(split, ports(split)[1])
    try:
        assert [n.name for n in conn.network.networks(name="public")] == ["public"]
        assert [r.name for r in conn.network.routers(name="router1")] == ["router1"]
        assert [i.name for i in conn.image.images(name="busybox")] == ["busybox"]
        flavors = [f.name for f in conn.compute.flavors()]
        assert "m1.nano" in flavors and len(flavors) == len(set(flavors))
        roles = [r.name for r in conn.identity.roles()]
        assert len(roles) == len(set(roles)) and {"admin", "member", "reader"} <= set(roles)
    finally:
        conn.close()


def test_parallel_creates_through_two_api_processes(split: SplitCloud) -> None:
    port1, port2 = ports(split)
    boss = admin(split, port1)
    tag = secrets.token_hex(3)
    project = boss.identity.create_project(name=f"procs-{tag}", domain_id="default")
    password = secrets.token_urlsafe(12)
    user = boss.identity.create_user(name=f"procs-{tag}", password=password, domain_id="default")
    member = boss.identity.find_role("member", ignore_missing=False)
    boss.identity.assign_project_role_to_user(project, user, member)
    boss.compute.put(f"/os-quota-sets/{project.id}", json={"quota_set": {"instances": QUOTA}},
                     microversion="2.1").raise_for_status()
    # h1's own node out of the way: the capacity is the fake hosts' alone
    split.osc(port2, "compute", "service", "set", "--disable", "h1", "nova-compute")
    names: list[str] = []
    try:
        # 2 x QUOTA creates race for QUOTA instances through both processes
        quota_names = [f"q-{tag}-{i}" for i in range(2 * QUOTA)]
        got = create_all(split, quota_names, {"username": user.name, "password": password, "project": project.name})
        names += [n for n, code in got.items() if code == 202]
        assert sorted(got.values()) == [202] * QUOTA + [403] * QUOTA, got
        final = wait_final(boss, [n for n, c in got.items() if c == 202])
        assert set(final.values()) == {"ACTIVE"}, final

        # more creates than the capacity left: exactly the capacity goes ACTIVE, the rest NoValidHost
        auth = split.auth()
        over = [f"c-{tag}-{i}" for i in range(CAPACITY - QUOTA + 3)]
        got = create_all(split, over, {"username": auth["username"], "password": auth["password"],
                                       "project": auth["project_name"]})
        names += [n for n, code in got.items() if code == 202]
        assert set(got.values()) == {202}, got
        final = wait_final(boss, over)
        assert sorted(final.values()) == ["ACTIVE"] * (CAPACITY - QUOTA) + ["ERROR"] * 3, final
        assert split.check_placement() == []
    finally:
        for name in names:
            server = boss.compute.find_server(name, all_projects=True)
            if server is not None:
                boss.compute.delete_server(server)
        deadline = time.monotonic() + 180
        while any(s != "MISSING" for s in statuses(boss, names).values()) and time.monotonic() < deadline:
            time.sleep(1.0)
        split.osc(port2, "compute", "service", "set", "--enable", "h1", "nova-compute")
        boss.identity.delete_user(user)
        boss.identity.delete_project(project)
    assert all(s == "MISSING" for s in statuses(boss, names).values())
