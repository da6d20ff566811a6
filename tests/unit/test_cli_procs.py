"""`cumulo api|conductor|scheduler|compute` (issue 14, PROC): flags and the settings they make,
the refusals, the schema wait, the API process as an ASGI lifespan, and PaaS engine owners that
name their kernel."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from cumulo import conf as conf_mod
from cumulo.cli.main import _parser, main
from cumulo.cli.procs import api_ready_lines, settings_of
from cumulo.db import Database
from cumulo.paas.engine import tasks
from cumulo.runtime_procs import ApiProcess, Lifespan, schema_at_head, wait_for_schema


def parse(*argv: str) -> Any:
    return _parser().parse_args(list(argv))


def test_every_role_takes_the_shared_flags(tmp_path: Path) -> None:
    for role in ("api", "conductor", "scheduler"):
        args = parse(role, "--database", "postgresql://u:p@db:5432/c", "--transport", "amqp://u:p@mq:5672/v",
                     "--state-dir", str(tmp_path))
        s = settings_of(args)
        assert (s.database, s.transport, s.state_dir) == ("postgresql://u:p@db:5432/c", "amqp://u:p@mq:5672/v", tmp_path)
    s = settings_of(parse("compute", "--host", "h7", "--fake-hosts", "3", "--driver", "fake", "--metrics-port", "0"))
    assert (s.host_name, s.fake_hosts, s.local_driver, s.metrics_port) == ("h7", 3, "fake", 0)
    s = settings_of(parse("api", "--host", "0.0.0.0", "--port", "8081", "--workers", "2"))
    assert (s.host, s.port) == ("0.0.0.0", 8081)  # api's --host is the listen address, as `cumulo up`'s
    with pytest.raises(SystemExit):
        parse("compute")  # compute needs --host NAME


def test_the_api_process_says_how_to_connect(tmp_path: Path) -> None:
    """As `cumulo up` does: the auth URL (a wildcard bind reached on loopback) and the clouds.yaml
    its bootstrap writes, for `OS_CLIENT_CONFIG_FILE` (before, only the auth URL)."""
    s = settings_of(parse("api", "--host", "0.0.0.0", "--port", "8081", "--state-dir", str(tmp_path)))
    assert api_ready_lines(s) == ["cumulo api is ready. Auth URL: http://127.0.0.1:8081/identity/v3",
                                  f"  export OS_CLIENT_CONFIG_FILE={(tmp_path / 'clouds.yaml').resolve()}"]


def test_a_flag_wins_over_the_environment_and_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cumulo.yaml"
    config.write_text("transport: amqp://file/\nl3_host: h1\nvolume_host: h2\nregion: FileRegion\n")
    monkeypatch.setenv("CUMULO_REGION", "EnvRegion")
    s = settings_of(parse("conductor", "--config", str(config), "--transport", "amqp://flag/"))
    assert (s.transport, s.l3_host, s.volume_host, s.region) == ("amqp://flag/", "h1", "h2", "EnvRegion")
    # the workers of `cumulo api --workers N` find the file by CUMULO_CONFIG
    assert conf_mod.load(env={conf_mod.CONFIG_ENV: str(config)}).volume_host == "h2"


def test_refusals_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scheduler", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["conductor", "--state-dir", str(tmp_path)]) == 2  # the default inproc bus cannot span processes
    assert "--transport amqp://" in capsys.readouterr().err
    assert main(["compute", "--host", "h1", "--fake-hosts", "-1", "--transport", "amqp://x/"]) == 2
    with socket.socket() as taken:  # the metrics port in use: refused before anything starts
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["compute", "--host", "h1", "--driver", "fake", "--transport", "amqp://x/", "--state-dir",
                     str(tmp_path), "--metrics-port", str(port)]) == 2
    assert "cannot listen for metrics" in capsys.readouterr().err


async def test_the_other_processes_wait_for_the_schema(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite'}")
    try:
        assert not await schema_at_head(db)
        with pytest.raises(TimeoutError, match="start `cumulo api`"):
            await wait_for_schema(db, timeout=0.0)
        waiter = asyncio.create_task(wait_for_schema(db, timeout=60))
        await db.create_all()
        await asyncio.wait_for(waiter, 30)
        assert await schema_at_head(db)
    finally:
        await db.dispose()


async def test_an_api_process_that_cannot_start_fails_the_lifespan(tmp_path: Path) -> None:
    settings = conf_mod.Settings(state_dir=tmp_path, database=f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite'}")
    app = Lifespan(ApiProcess(settings))

    async def broken() -> None:
        raise RuntimeError("no database")

    app.process.start = broken  # type: ignore[method-assign]
    sent: list[MutableMapping[str, Any]] = []
    queue = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.failed", "message": "no database"}]
    await app.process.stop()


def test_an_engine_owner_is_judged_by_pid_only_on_its_own_kernel() -> None:
    owner = tasks.make_owner()
    host, pid, _, kernel = owner.split(":")
    assert (host, int(pid), kernel) == (socket.gethostname(), __import__("os").getpid(), tasks.kernel_id())
    # the same host name on another machine (or pid namespace), with a pid that runs nowhere here
    dead_pid = 2**22 + 17
    assert not tasks.owner_is_dead(f"{host}:{dead_pid}:abcd:{'0' * 12}")  # only its lease tells
    assert tasks.owner_is_dead(f"{host}:{dead_pid}:abcd:{kernel}")  # here: no such pid


async def test_api_processes_starting_together_bootstrap_once_on_postgresql(
    scale_services: dict[str, str], tmp_path: Path
) -> None:
    """Three API processes' bootstraps at once on an empty PostgreSQL database (each its own
    Database, so its own connections, as separate processes have): the advisory lock lets one
    migrate and make the users, flavors and first-start networks; the others find them made."""
    import _pg

    from cumulo import runtime_roles as roles
    from cumulo.bus.inproc import InprocBus
    from cumulo.runtime_procs import bootstrap_once, first_start_once

    base = scale_services["database_url"]
    url = _pg.create_database(base)
    dbs: list[Database] = []
    try:
        async def one(i: int) -> dict[str, dict[str, str]]:
            conf = conf_mod.Settings(state_dir=tmp_path / f"api{i}", database=url, extra={"tiny_vm_image": "off"})
            conf.state_dir.mkdir()
            db = Database(conf.database_url)
            dbs.append(db)
            s = roles.make_services(conf, db, InprocBus())
            first = await bootstrap_once(s, reconcile_images=i == 0)
            await first_start_once(s, first.admin_project)
            return first.credentials

        made = await asyncio.gather(*(one(i) for i in range(3)))
        assert sum(1 for c in made if c.get("admin", {}).get("password")) == 1  # one of them made the users
        async with dbs[0].read() as conn:
            counts = {table: (await conn.exec_driver_sql(sql)).scalar_one() for table, sql in {
                "public": "SELECT count(*) FROM networks WHERE name = 'public'",
                "router1": "SELECT count(*) FROM routers WHERE name = 'router1'",
                "admin": "SELECT count(*) FROM identity_users WHERE name = 'admin'",
                "m1.nano": "SELECT count(*) FROM flavors WHERE name = 'm1.nano'",
            }.items()}
        assert counts == {"public": 1, "router1": 1, "admin": 1, "m1.nano": 1}
        assert await schema_at_head(dbs[0])
    finally:
        for db in dbs:
            await db.dispose()
        _pg.drop_database(base, url)


async def test_a_conductor_leaves_recovery_to_nobody_while_a_peer_is_up(tmp_path: Path) -> None:
    """Several conductors (issue 14): one that starts while another is up does not take over
    BUILDING rows (the peer may be building them; a dead one's casts come back from the bus)."""
    import sqlalchemy as sa

    from cumulo.bus.inproc import InprocBus
    from cumulo.compute.conductor.manager import Conductor
    from cumulo.hosts.models import services
    from cumulo.placement.service import Placement

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite'}")
    await db.create_all()
    made = []
    try:
        for host in ("ctl-a", "ctl-b"):
            conf = conf_mod.Settings(state_dir=tmp_path, host_name=host)
            c = Conductor(db, InprocBus(), conf, Placement(db, conf))
            await c.service.start()
            made.append(c)
        a, b = made
        assert await a._peer_conductors_up() and await b._peer_conductors_up()
        async with db.write() as conn:  # ctl-a's heartbeat stops
            await conn.execute(sa.update(services).where(services.c.host == "ctl-a").values(last_seen_up=None,
                                                                                             forced_down=True))
        assert not await b._peer_conductors_up()
        assert await a._peer_conductors_up()  # ctl-b is up
    finally:
        for c in made:
            await c.service.stop()
        await db.dispose()


async def test_sigterm_while_a_process_starts_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conductor still waiting for the schema (or the broker) stops on SIGTERM at once; it waited
    out wait_for_schema's 600 s before, deaf to the signal."""
    import os
    import signal

    from cumulo import runtime_procs
    from cumulo.cli import procs

    started, stopped = asyncio.Event(), asyncio.Event()

    class Waiting:
        def __init__(self, settings: Any) -> None:
            pass

        async def start(self) -> None:
            started.set()
            await asyncio.Event().wait()  # never ready

        async def stop(self) -> None:
            stopped.set()

    monkeypatch.setitem(runtime_procs.ROLES, "conductor", Waiting)
    settings = conf_mod.load(env={}, state_dir=tmp_path)
    serving = asyncio.create_task(procs._serve("conductor", settings, "info"))
    async with asyncio.timeout(10):
        await started.wait()
    os.kill(os.getpid(), signal.SIGTERM)  # the role's loop handler takes it
    async with asyncio.timeout(10):
        await serving
    assert stopped.is_set()
