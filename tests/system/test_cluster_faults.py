"""Reliability under faults (issue 14, acceptance item 3) on a scaled-out cloud.

One cluster for the module (tests/system/cluster.py: `cumulo api|conductor|scheduler`, a
network-only L3 host and 3 dev hosts in namespaces running `cumulo compute --driver runc`), on a
PostgreSQL cluster and a RabbitMQ node of the module's own (scripts/services.py on free ports, in a
directory of its own): the outage tests stop and restart them, which the run's shared instances
must never see. Servers are busybox containers (`m1.nano`, no NIC) unless the fault is about the
data plane; each test deletes what it made and checks that nothing is left:

- no server in a task state, and placement's allocations are exactly the live servers' flavors
  (`consistent`);
- each dev host's runc containers are exactly its live servers (`containers_match`).

Faults:
1. kill -9 a conductor holding builds (two conductors; the builds' casts unacknowledged while the
   scheduler is stopped): the peer gets them from RabbitMQ and finishes them (control plane: the
   containers only prove the builds reached a host);
2. kill -9 the scheduler holding select calls: restarted, it answers them within the callers'
   timeout and the builds finish;
3. kill -9 a compute agent while it spawns a container: restarted, its reconcile finishes the
   build on the same host (the message RabbitMQ redelivers to it is left to the reconcile);
   a create whose cast to the conductor was lost (purged while no conductor ran) is driven again
   by a conductor (the sweep, compute/conductor/sweep.py, here after STUCK seconds), and a resize
   whose prep message was purged with it settles (compute/conductor/stuck.py: its host puts the
   server back as it was, the record error, no claim left, a fault naming the task; here after
   STUCK seconds, the product's conductor_task_timeout_seconds is 600);
4. RabbitMQ stopped for 30 s during a burst of creates (`rabbitmqctl stop_app`/`start_app`): each
   create answers 202 or Nova's 503 `serviceUnavailable`, never a 500 or a hang; once it is back,
   every accepted server becomes ACTIVE and no refused one exists (docs/operations.md);
5. PostgreSQL restarted (`pg_ctl stop`, requests answered 503 meanwhile, `pg_ctl start`): requests
   answer 200 or 503, never a 500 or a hang; every process reconnects by itself (heartbeats after
   the restart) and a create works;
6. the data plane: two containers on different dev hosts (anti-affinity) on the demo's tenant
   network ping each other across VXLAN while one host's `cumulo compute` (compute, network and
   volume agents) is killed with SIGKILL and started again: at most LOSS_BUDGET echoes lost
   (tests/system/test_network_restart_cli.py's budget for the embedded cloud).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import random
import secrets
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from _procs_util import Proc, _admin_dsn
from _runc_util import wait_for
from cluster import ClusterCloud
from conftest import skip_unless_runc

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "services.py"
LOSS_BUDGET = 2
PING_INTERVAL = 0.2
OUTAGE = 30.0
DEMO = "cumulo-demo"
STUCK = 15  # conductor_stuck_build_seconds and _task_timeout_seconds of the module's cluster (120, 600)


# -- the module's own PostgreSQL and RabbitMQ ----------------------------------------------------


def _free(n: int) -> int:
    """The first of n consecutive free TCP ports."""
    for _ in range(200):
        base = random.randrange(20000, 60000)  # noqa: S311
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("0.0.0.0", p))  # noqa: S104
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise AssertionError("no free ports")


def _load_services(pg_port: int, amqp_port: int) -> ModuleType:
    saved = {k: os.environ.get(k) for k in ("CUMULO_TEST_PG_PORT", "CUMULO_TEST_AMQP_PORT")}
    os.environ.update({"CUMULO_TEST_PG_PORT": str(pg_port), "CUMULO_TEST_AMQP_PORT": str(amqp_port)})
    try:
        spec = importlib.util.spec_from_file_location(f"cumulo_fault_services_{amqp_port}", SCRIPTS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class World:
    def __init__(self, cloud: ClusterCloud, services: ModuleType, services_dir: Path) -> None:
        self.cloud, self.services, self.services_dir = cloud, services, services_dir
        self.tag = secrets.token_hex(2)
        self.http = httpx.Client(base_url=cloud.base_url + "/compute/v2.1", timeout=60,
                                 headers={"OpenStack-API-Version": "compute 2.37"})
        self.image = cloud.osc("image", "show", "busybox")["id"]
        self.flavor = cloud.osc("flavor", "show", "m1.nano")["id"]
        # Room beyond the default quota (10 instances): the burst goes on creating while
        # `rabbitmqctl stop_app` runs, which under load takes long enough for ten creates, and a
        # full quota then answers 403 before the broker is even asked (a trial CI saw exactly that).
        cloud.osc("quota", "set", "--instances", "100", "--cores", "200", "--ram", "204800", "admin", json=False)

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.cloud.token()}

    def rabbitmqctl(self, *args: str) -> Any:
        return self.services.rabbitmqctl(self.services_dir, *args)

    def queue(self, name: str) -> dict[str, int]:
        out = self.rabbitmqctl("list_queues", "-p", self.cloud.vhost, "name", "messages_ready",
                               "messages_unacknowledged", "consumers", "--formatter", "json").stdout
        for q in json.loads(out[out.index("["):]):
            if q["name"] == name:
                return {k: int(v) for k, v in q.items() if k != "name"}
        return {"messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0}

    def create(self, name: str, *, host: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"name": name, "imageRef": self.image, "flavorRef": self.flavor, "networks": "none"}
        if host:
            body["availability_zone"] = f"nova:{host}"
        return self.http.post("/servers", json={"server": body}, headers=self.headers())

    def server(self, uuid: str) -> dict[str, Any] | None:
        r = self.http.get(f"/servers/{uuid}", headers=self.headers())
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return dict(r.json()["server"])

    def settled(self, uuids: list[str], timeout: float = 180) -> dict[str, dict[str, Any]]:
        def done() -> dict[str, dict[str, Any]] | None:
            rows = {u: self.server(u) for u in uuids}
            if all(r and r["status"] in ("ACTIVE", "ERROR") and not r["OS-EXT-STS:task_state"]
                   for r in rows.values()):
                return {u: r for u, r in rows.items() if r}
            return None
        return dict(wait_for(done, timeout=timeout, interval=0.5, what=f"{uuids} settled"))

    def delete(self, uuids: list[str]) -> None:
        for u in uuids:
            r = self.http.delete(f"/servers/{u}", headers=self.headers())
            assert r.status_code in (204, 404), r.text
        wait_for(lambda: all(self.server(u) is None for u in uuids), timeout=120, interval=0.5,
                 what=f"{uuids} deleted")

    # -- the end state ------------------------------------------------------------------------

    def sql(self, query: str, *args: Any) -> list[Any]:
        import asyncpg  # type: ignore[import-untyped]

        async def run() -> list[Any]:
            conn = await asyncpg.connect(_admin_dsn(self.cloud.services["database_url"], self.cloud.db_name))
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()
        return asyncio.run(run())

    def wait_spawning(self, uuid: str, timeout: float = 120) -> tuple[str, str]:
        """(task_state, vm_state) as soon as the build is spawning (or past it): one connection,
        polled every few ms (a cached busybox spawns in well under a second)."""
        import asyncpg

        async def run() -> tuple[str, str]:
            conn = await asyncpg.connect(_admin_dsn(self.cloud.services["database_url"], self.cloud.db_name))
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    row = await conn.fetchrow("SELECT task_state, vm_state FROM instances WHERE uuid = $1", uuid)
                    if row["task_state"] == "spawning" or row["vm_state"] != "building":
                        return str(row["task_state"]), str(row["vm_state"])
                    await asyncio.sleep(0.003)
            finally:
                await conn.close()
            raise AssertionError(f"{uuid} never reached its agent")
        return asyncio.run(run())

    def consistent(self) -> None:
        """No server in a task state; the allocations are exactly the live placed servers' flavors."""
        busy = self.sql("SELECT uuid, vm_state, task_state FROM instances WHERE NOT deleted AND task_state IS NOT NULL")
        assert not busy, f"servers in a task state: {busy}"
        live = {r["uuid"]: {"VCPU": r["vcpus"], "MEMORY_MB": r["memory_mb"], "DISK_GB": r["root_gb"]}
                for r in self.sql("SELECT uuid, vcpus, memory_mb, root_gb FROM instances "
                                  "WHERE NOT deleted AND host IS NOT NULL")}
        claims: dict[str, dict[str, int]] = {}
        for r in self.sql("SELECT consumer_id, resource_class, used FROM allocations"):
            claims.setdefault(r["consumer_id"], {})[r["resource_class"]] = r["used"]
        assert claims.keys() == live.keys(), f"claims {sorted(claims)} != live servers {sorted(live)}"
        for uuid, want in live.items():
            got = {k: v for k, v in claims[uuid].items() if k in want}
            assert got == {k: v for k, v in want.items() if v}, (uuid, got, want)

    def containers_match(self) -> None:
        """Each dev host's runc containers are exactly its live servers."""
        live: dict[str, set[str]] = {h: set() for h in self.cloud.hosts}
        for r in self.sql("SELECT uuid, host FROM instances WHERE NOT deleted AND host IS NOT NULL"):
            live.setdefault(r["host"], set()).add(f"cumulo-{r['uuid']}")
        assert self.cloud.dev is not None
        for name in self.cloud.hosts:
            got = set(asyncio.run(self.cloud.dev.containers(self.cloud.dev.host(name))))
            assert got == live[name], f"{name}: containers {sorted(got)} != servers {sorted(live[name])}"

    def clean(self, uuids: list[str]) -> None:
        self.delete(uuids)
        self.consistent()
        self.containers_match()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    skip_unless_runc()
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() or not Path("/usr/lib/postgresql").is_dir():
        pytest.skip("needs Debian's postgresql and rabbitmq-server (scripts/services.py)")
    pg_port, amqp_port = _free(1), _free(3)
    services = _load_services(pg_port, amqp_port)
    # not under pytest's 0700 temp root: the postgres and rabbitmq users reach their own dirs
    services_dir = Path(f"/tmp/cumulo-fault-services-{os.getpid()}-{secrets.token_hex(3)}")
    urls = services.start(services_dir)
    cloud: ClusterCloud | None = None
    try:
        cloud = ClusterCloud(tmp_path_factory.mktemp("faults"),
                             {"database_url": urls["CUMULO_TEST_DATABASE_URL"],
                              "transport_url": urls["CUMULO_TEST_TRANSPORT_URL"], "dir": str(services_dir)},
                             drivers="runc", settings={"extra": {
                                 # the conductor's sweep of lost casts (compute/conductor/sweep.py), soon
                                 "conductor_stuck_build_seconds": STUCK, "conductor_sweep_interval": 2,
                                 "conductor_task_timeout_seconds": STUCK}}).start()
        w = World(cloud, services, services_dir)
        yield w
        w.http.close()
    finally:
        try:
            if cloud is not None:
                cloud.close()
        finally:
            services.stop(services_dir)


def _kill_agent(cloud: ClusterCloud, host: str) -> None:
    """SIGKILL host's `cumulo compute` only (its containers, dnsmasq and namespaces stay), and wait
    until it is gone (DevHosts.start would take a dying process for a running one)."""
    assert cloud.dev is not None
    os.kill(cloud.dev.host(host).pid, signal.SIGKILL)
    wait_for(lambda: not cloud.dev.running(cloud.dev.host(host)), timeout=30,  # type: ignore[union-attr]
             what=f"{host}'s compute process gone")


def _start_peer(cloud: ClusterCloud) -> None:
    """A second `cumulo conductor` ("conductor2"), stopped by the cluster's close."""
    cloud.runs += 1
    peer = Proc("conductor2", cloud._argv("conductor", cloud.root / "conductor2", "--host", f"c{cloud.tag}-ctl2"),
                cloud.root / f"conductor2.{cloud.runs}.log", cloud._env(), "cumulo conductor is ready")
    cloud.procs["conductor2"] = peer
    peer.wait_ready(120)


def _pause(pid: int) -> Callable[[], None]:
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


# -- 1-3: kill -9 a control-plane process or a compute agent mid-operation --------------------------


def test_a_compute_agent_killed_mid_spawn_settles_on_restart(world: World) -> None:
    cloud = world.cloud
    host = cloud.hosts[1]
    assert cloud.dev is not None
    r = world.create(f"f-agent-{world.tag}", host=host)
    assert r.status_code == 202, r.text
    uuid = r.json()["server"]["id"]
    seen = world.wait_spawning(uuid)
    _kill_agent(cloud, host)  # the agent only: its containers stay
    print(f"agent of {host} killed with the build at task_state {seen!r}")
    cloud.start_process(host)
    rows = world.settled([uuid])
    row = rows[uuid]
    # a restart finishes a build its agent took (reconcile: adopted, or made again on the host)
    assert (row["status"], row["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", host), row.get("fault")
    world.consistent()
    world.containers_match()
    world.clean([uuid])


def test_a_conductor_killed_holding_builds_its_peer_finishes_them(world: World) -> None:
    cloud = world.cloud
    _start_peer(cloud)
    wait_for(lambda: world.queue("conductor")["consumers"] >= 2, timeout=60, what="two conductors consuming")
    made: list[str] = []
    resume = _pause(cloud.process_pid("scheduler"))  # every build waits in its select call
    try:
        for i in range(4):
            r = world.create(f"f-cond-{world.tag}-{i}")
            assert r.status_code == 202, r.text
            made.append(r.json()["server"]["id"])
        # both conductors hold builds, unacknowledged (RabbitMQ spreads the casts over them)
        wait_for(lambda: world.queue("conductor")["messages_unacknowledged"] == len(made), timeout=60,
                 what="the conductors holding every build")
        cloud.kill_process("conductor")
    finally:
        resume()
    rows = world.settled(made)
    assert {u: r["status"] for u, r in rows.items()} == dict.fromkeys(made, "ACTIVE")
    assert all(r["OS-EXT-SRV-ATTR:host"] in cloud.hosts for r in rows.values())
    world.consistent()
    world.containers_match()
    cloud.start_process("conductor")  # the cluster as it was (two conductors from here on)
    world.clean(made)


def test_the_scheduler_killed_holding_selections_restarted_answers_them(world: World) -> None:
    cloud = world.cloud
    made: list[str] = []
    resume = _pause(cloud.process_pid("scheduler"))
    try:
        for i in range(2):
            r = world.create(f"f-sched-{world.tag}-{i}")
            assert r.status_code == 202, r.text
            made.append(r.json()["server"]["id"])
        # the select calls delivered to the (stopped) scheduler, not answered
        wait_for(lambda: world.queue("scheduler")["messages_unacknowledged"] >= 1, timeout=60,
                 what="the scheduler holding a select call")
        cloud.kill_process("scheduler")
    finally:
        with contextlib.suppress(ProcessLookupError):
            resume()
    t0 = time.monotonic()
    cloud.start_process("scheduler")
    print(f"scheduler restarted in {time.monotonic() - t0:.1f}s")
    rows = world.settled(made)
    assert {u: r["status"] for u, r in rows.items()} == dict.fromkeys(made, "ACTIVE"), rows
    world.consistent()
    world.containers_match()
    world.clean(made)


def test_a_lost_cast_does_not_leave_a_server_in_scheduling(world: World) -> None:
    """The API committed a create, and a resize, and their casts to the conductor were lost (purged
    from RabbitMQ while no conductor ran, as a broker that lost them would): neither server stays in
    its task state. A conductor drives the build again (its start-up recovery when it is alone,
    else the periodic sweep once the row has been stuck STUCK seconds); the resize, whose message
    nothing will redeliver, is settled once it made no progress for STUCK seconds: ACTIVE on its
    host with its old flavor, the record error, no claim left, a fault saying its task timed out."""
    cloud = world.cloud
    r = world.create(f"f-resize-{world.tag}", host=cloud.hosts[0])
    assert r.status_code == 202, r.text
    resized = r.json()["server"]["id"]
    world.settled([resized])
    conductors = [n for n in ("conductor", "conductor2") if n in cloud.procs]
    for name in conductors:
        cloud.stop_process(name)
    try:
        r = world.create(f"f-lost-{world.tag}")
        assert r.status_code == 202, r.text
        uuid = r.json()["server"]["id"]
        tiny = cloud.osc("flavor", "show", "m1.tiny")["id"]
        r = world.http.post(f"/servers/{resized}/action", json={"resize": {"flavorRef": tiny}}, headers=world.headers())
        assert r.status_code == 202, r.text
        wait_for(lambda: world.queue("conductor")["messages_ready"] == 2, timeout=30, what="the casts queued")
        world.rabbitmqctl("purge_queue", "-p", cloud.vhost, "conductor")
        assert world.queue("conductor")["messages_ready"] == 0
        assert world.server(resized)["OS-EXT-STS:task_state"] == "resize_prep"  # type: ignore[index]
    finally:
        cloud.start_process("conductor")
        if "conductor2" in conductors:
            _start_peer(cloud)
    t0 = time.monotonic()
    rows = world.settled([uuid, resized], timeout=STUCK + 120)
    assert rows[uuid]["status"] == "ACTIVE", rows[uuid].get("fault")
    logs = cloud.process_log("conductor") + (cloud.process_log("conductor2") if "conductor2" in conductors else "")
    how = "sweep" if f"build of {uuid} lost its cast" in logs else "start-up recovery"
    print(f"lost cast: {uuid} ACTIVE {time.monotonic() - t0:.0f}s after the conductors' start, by the {how}")
    row = rows[resized]
    assert (row["status"], row["OS-EXT-SRV-ATTR:host"], row["flavor"]["id"]) == ("ACTIVE", cloud.hosts[0],
                                                                                 world.flavor), row
    print(f"lost resize: {resized} settled {time.monotonic() - t0:.0f}s after the conductors' start")
    # the record and the fault follow the row's CAS, each in its own write
    wait_for(lambda: [r["status"] for r in world.sql("SELECT status FROM migrations WHERE instance_uuid = $1",
                                                       resized)] == ["error"], timeout=30, what="the record error")
    wait_for(lambda: any("Task resize_prep timed out" in f["message"] for f in world.sql(
        "SELECT message FROM instance_faults WHERE instance_uuid = $1", resized)), timeout=30, what="the fault")
    world.consistent()
    world.containers_match()
    world.clean([uuid, resized])


# -- 4-5: RabbitMQ and PostgreSQL away -------------------------------------------------------------


def test_rabbitmq_stopped_30s_during_a_burst_of_creates(world: World) -> None:
    results: list[tuple[float, str, int, Any]] = []
    took: list[float] = []
    stop = threading.Event()

    def burst() -> None:
        i = 0
        while not stop.is_set():
            name = f"f-burst-{world.tag}-{i}"
            i += 1
            t = time.monotonic()
            try:
                r = world.create(name)
                results.append((t, name, r.status_code, r.json() if r.content else None))
                took.append(time.monotonic() - t)
            except httpx.HTTPError as exc:  # a hang (60 s) or a dropped connection
                results.append((t, name, -1, repr(exc)))
            stop.wait(1.0)

    def accepted_since(t: float) -> int:
        return sum(1 for at, _, code, _ in list(results) if at >= t and code == 202)

    thread = threading.Thread(target=burst, daemon=True)
    thread.start()
    try:
        wait_for(lambda: accepted_since(0) >= 2, timeout=60, what="creates accepted before the outage")
        world.rabbitmqctl("stop_app")
        t_stop = time.monotonic()
        try:
            wait_for(lambda: time.monotonic() - t_stop >= OUTAGE and
                     sum(1 for at, _, c, _ in list(results) if at > t_stop + 6 and c == 503) >= 2,
                     timeout=OUTAGE + 60, interval=0.5, what="refused creates during the outage")
        finally:
            world.rabbitmqctl("start_app")
        t_back = time.monotonic()
        wait_for(lambda: accepted_since(t_back) >= 2, timeout=120, what="creates accepted after the broker returned")
    finally:
        stop.set()
        thread.join(timeout=90)
    codes = [c for _, _, c, _ in results]
    print(f"burst: {len(results)} creates, {codes.count(202)} accepted, {codes.count(503)} refused; "
          f"outage {t_back - t_stop:.0f}s; slowest answer {max(took):.1f}s")
    assert max(took) < 30, "a create hung while the broker was away"
    # nothing was restarted: the same processes reconnected by themselves
    assert all(p.popen.poll() is None for p in world.cloud.procs.values())
    assert world.cloud.dev is not None
    assert all(world.cloud.dev.running(world.cloud.dev.host(h)) for h in world.cloud.hosts)
    assert set(codes) <= {202, 503}, [(n, c, b) for _, n, c, b in results if c not in (202, 503)]
    refused = [(n, b) for _, n, c, b in results if c == 503]
    assert refused
    for _, body in refused:  # Nova's 503 fault shape
        assert set(body) == {"serviceUnavailable"}, body
        assert body["serviceUnavailable"]["code"] == 503 and body["serviceUnavailable"]["message"], body
    accepted = [b["server"]["id"] for _, _, c, b in results if c == 202]
    rows = world.settled(accepted, timeout=240)
    assert {u: r["status"] for u, r in rows.items()} == dict.fromkeys(accepted, "ACTIVE"), rows
    names = {r["name"] for r in world.sql("SELECT display_name AS name FROM instances WHERE NOT deleted "
                                          "AND display_name LIKE $1", f"f-burst-{world.tag}-%")}
    assert names == {n for _, n, c, _ in results if c == 202}, "a refused create left a server"
    limits = world.http.get("/limits", headers=world.headers()).json()["limits"]["absolute"]
    mine = world.http.get("/servers", headers=world.headers()).json()["servers"]
    assert limits["totalInstancesUsed"] == len(mine), (limits, mine)
    world.consistent()
    world.containers_match()
    world.clean(accepted)


def test_postgresql_restart_processes_reconnect_by_themselves(world: World) -> None:
    cloud = world.cloud
    seen: list[tuple[float, int, float, Any]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=world.http.base_url, timeout=60) as http:
            while not stop.is_set():
                t = time.monotonic()
                try:
                    r = http.get("/servers/detail", headers=world.headers())
                    seen.append((t, r.status_code, time.monotonic() - t, r.json() if r.status_code != 200 else None))
                except (httpx.HTTPError, ValueError) as exc:
                    seen.append((t, -1, time.monotonic() - t, repr(exc)))
                stop.wait(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(seen) >= 3, timeout=30, what="requests before the restart")
        wall = time.time()
        t0 = time.monotonic()
        # A restart with a gap that requests see: stop, requests answered 503, start with the options
        # the server ran with (postmaster.opts; -l: its output to its log file, since on pg_ctl's
        # pipe it would keep the call waiting).
        data = world.services_dir / "pg"
        argv = shlex.split((data / "postmaster.opts").read_text())
        opts = shlex.join(argv[3:] if argv[1:2] == ["-D"] else argv[1:])
        world.services.pg_ctl(world.services_dir, "stop", "-m", "fast", "-w", "-t", "60")
        try:
            wait_for(lambda: sum(1 for t, c, _, _ in list(seen) if t > t0 and c == 503) >= 2, timeout=60,
                     what="requests answered while PostgreSQL is down")
        finally:
            world.services.pg_ctl(world.services_dir, "start", "-w", "-t", "60", "-l", str(data / "log"), "-o", opts)
        t_back = time.monotonic()
        wait_for(lambda: sum(1 for t, c, _, _ in list(seen) if t > t_back and c == 200) >= 3, timeout=120,
                 what="requests answered after the restart")
    finally:
        stop.set()
        thread.join(timeout=90)
    codes = [c for _, c, _, _ in seen]
    print(f"PostgreSQL down {t_back - t0:.1f}s: {len(seen)} requests, codes {sorted(set(codes))}, "
          f"slowest {max(d for _, _, d, _ in seen):.1f}s")
    assert set(codes) <= {200, 503}, [(c, b) for _, c, _, b in seen if c not in (200, 503)]
    for _, c, _, body in seen:
        if c == 503:
            assert set(body) == {"serviceUnavailable"} and body["serviceUnavailable"]["code"] == 503, body
    assert max(d for _, _, d, _ in seen) < 30, "a request hung across the restart"
    # every process is the one that ran before, and each heartbeat reached the database again
    assert all(p.popen.poll() is None for p in cloud.procs.values()), {n: p.popen.poll() for n, p in cloud.procs.items()}
    assert cloud.dev is not None
    assert all(cloud.dev.running(cloud.dev.host(h)) for h in cloud.hosts)

    def heartbeats() -> bool:
        rows = world.sql("SELECT host, last_seen_up FROM services WHERE NOT forced_down")
        return bool(rows) and all(r["last_seen_up"] is not None and _utc_ts(r["last_seen_up"]) > wall for r in rows)

    wait_for(heartbeats, timeout=120, interval=1, what="every service's heartbeat after the restart")
    r = world.create(f"f-pg-{world.tag}")
    assert r.status_code == 202, r.text
    uuid = r.json()["server"]["id"]
    assert world.settled([uuid])[uuid]["status"] == "ACTIVE"
    world.consistent()
    world.clean([uuid])


def _utc_ts(value: Any) -> float:
    import datetime as dt

    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return float(value.timestamp())


# -- 6: the data plane across a host's agent restart --------------------------------------------


def test_a_compute_host_restart_drops_no_traffic(world: World) -> None:
    cloud = world.cloud
    osc = cloud.osc
    group = osc("server", "group", "create", "--policy", "anti-affinity", f"f-ping-{world.tag}", cloud=DEMO)
    made: dict[str, dict[str, Any]] = {}
    try:
        for name in ("a", "b"):
            made[name] = osc("server", "create", "--image", "busybox", "--flavor", "m1.nano", "--network", "private",
                             "--hint", f"group={group['id']}", "--wait", f"f-ping-{world.tag}-{name}",
                             cloud=DEMO, timeout=300)
            assert made[name]["status"] == "ACTIVE", made[name]
        hosts = {n: cloud.server_host(s["id"]) for n, s in made.items()}
        assert hosts["a"] != hosts["b"] and set(hosts.values()) <= set(cloud.hosts), hosts
        addr = {n: (world.server(s["id"]) or {})["addresses"]["private"][0]["addr"] for n, s in made.items()}

        def inside(name: str, script: str) -> str:
            import subprocess

            uuid = made[name]["id"]
            argv = cloud.host_argv(uuid, ["runc", "--root", str(cloud.server_host_dir(uuid) / "runc-state"), "exec",
                                          f"cumulo-{uuid}", "/bin/sh", "-c", script])
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
            assert done.returncode == 0, f"{script!r} in {name}: {done.returncode} {done.stderr}{done.stdout}"
            return done.stdout

        inside("a", f"ping -i {PING_INTERVAL} {addr['b']} </dev/null >/tmp/ping.log 2>&1 & echo $! >/tmp/ping.pid")

        def replies() -> list[int]:
            out = inside("a", "cat /tmp/ping.log")
            return [int(line.split("seq=")[1].split()[0]) for line in out.splitlines() if "seq=" in line]

        try:
            wait_for(lambda: len(replies()) >= 5, timeout=60, what="a pinging b across hosts")
            at_kill = len(replies())
            assert cloud.dev is not None
            _kill_agent(cloud, hosts["a"])  # a's host: its agents, not its containers
            wait_for(lambda: len(replies()) >= at_kill + 5, timeout=30, what="pings while the agents are down")
            cloud.start_process(hosts["a"])
            at_ready = len(replies())
            wait_for(lambda: len(replies()) >= at_ready + 10, timeout=60, what="pings after the restart")
        finally:
            inside("a", "kill $(cat /tmp/ping.pid)")
        seqs = sorted(set(replies()))
        lost = (seqs[-1] - seqs[0] + 1) - len(seqs)
        print(f"a -> b across {hosts['a']}'s agent restart: {len(seqs)} replies, {lost} lost")
        assert lost <= LOSS_BUDGET, f"lost {lost} echoes: {sorted(set(range(seqs[0], seqs[-1])) - set(seqs))}"
        for s in made.values():
            assert (world.server(s["id"]) or {}).get("status") == "ACTIVE"
    finally:
        world.clean([s["id"] for s in made.values()])
        osc("server", "group", "delete", group["id"], cloud=DEMO, json=False)
