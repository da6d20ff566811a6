"""Shared fixtures: an in-process cloud on a temp SQLite DB, and API clients acting as a given caller.

`cloud` runs the real services and workers (fake driver) in the test's event loop. `as_ctx(ctx)`
returns an httpx client whose requests carry that RequestContext without a token round-trip, for
fast API tests; `token_client(...)` goes through real Keystone authentication.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import _leftovers
import httpx
import pytest

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles


class ContextInjector:
    """ASGI wrapper: every request is made as `ctx` (authenticate() picks it up from the scope)."""

    def __init__(self, app: Any, ctx: RequestContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["cumulo.context"] = self.ctx
        await self.app(scope, receive, send)


def make_ctx(project_id: str | None = None, roles: tuple[str, ...] = ("member",), user_id: str | None = None) -> RequestContext:
    return RequestContext(
        user_id=user_id or uuid.uuid4().hex,
        project_id=project_id or uuid.uuid4().hex,
        roles=expand_roles(list(roles)),
    )


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, at a test-sized cost (as tests/unit/identity and the system-test clouds,
    tests/system/conftest.py's CHEAP_PASSWORD_HASH): every in-process cloud hashes its admin's and
    demo user's passwords at start, ~0.1 s of CPU each at the default cost."""
    from argon2 import PasswordHasher

    from cumulo.identity import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


# PG test mode (issue 14): CUMULO_TEST_DB=postgresql gives every `settings`/`cloud` a fresh
# PostgreSQL database on the run's server (a copy of one migrated template per session) instead of
# SQLite; scripts/test.sh runs a subset of the suite this way.
TEST_DB = os.environ.get("CUMULO_TEST_DB", "sqlite")


@pytest.fixture(scope="session")
def pg_template(scale_services: dict[str, str]) -> Iterator[str]:
    """The name of a database migrated to head on the run's PostgreSQL, copied by each PG-mode test
    (CREATE DATABASE ... TEMPLATE: a few ms, where migrating takes seconds)."""
    import _pg
    import sqlalchemy as sa

    from cumulo.db import Database

    base = scale_services["database_url"]
    url = _pg.create_database(base, prefix="cumulo_tpl_")

    async def migrate() -> None:
        db = Database(url)
        await db.create_all()
        await db.dispose()

    _pg._in_thread(migrate)
    try:
        yield sa.engine.make_url(url).database or ""
    finally:
        _pg.drop_database(base, url)


@pytest.fixture(autouse=True)
def pg_test_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """PG test mode: every Settings without an explicit `database` (the `settings` fixture and the
    modules' own settings fixtures alike) gets one fresh PostgreSQL database per test, made on
    first use as a copy of the migrated template and dropped at teardown (after the test's clouds
    stopped: autouse fixtures are set up first and torn down last)."""
    if TEST_DB != "postgresql":
        yield
        return
    import _pg

    base = request.getfixturevalue("scale_services")["database_url"]
    template = request.getfixturevalue("pg_template")
    made: list[str] = []

    def database_url(self: conf_mod.Settings) -> str:
        if self.database:
            return self.database
        if not made:
            made.append(_pg.create_database(base, template=template))
        return made[0]

    monkeypatch.setattr(conf_mod.Settings, "database_url", property(database_url))
    try:
        yield
    finally:
        for url in made:
            _pg.drop_database(base, url)


@pytest.fixture
def settings(tmp_path: Path) -> conf_mod.Settings:
    # The fake local driver: in-process tests must not depend on root or runc ("auto" would pick runc).
    return conf_mod.load(env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0, local_driver="fake")


@pytest.fixture(scope="session", autouse=True)
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SQLite database the migrations brought to their newest revision, once per session. For the
    session, Database.create_all on a new (empty) SQLite file first copies it in, so its migrate()
    finds nothing to do: every in-process cloud and service fixture started with ~0.25 s of DDL.
    The migrations still made the copy (tests/unit/test_migrations.py checks what they make, and
    every `cumulo up` of the system tests migrates its own empty database)."""
    import asyncio
    import shutil

    import sqlalchemy as sa

    from cumulo.db import Database

    template = tmp_path_factory.mktemp("migrated-db") / "cumulo.sqlite"

    async def make() -> None:
        db = Database(f"sqlite+aiosqlite:///{template}")
        await db.create_all()
        async with db.write() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the one file
        await db.dispose()

    asyncio.run(make())
    create_all = Database.create_all

    async def from_template(self: Database) -> None:
        path = sa.engine.make_url(self.url).database if self.is_sqlite else None
        if path and os.path.isfile(path) and os.path.getsize(path) == 0:  # new: made empty by Database()
            shutil.copyfile(template, path)  # into the 0600 file, which keeps its mode
        await create_all(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Database, "create_all", from_template)
        yield template


def _free_ports(count: int) -> int:
    """The first of `count` consecutive TCP ports free on every address now (other runs' services
    on this machine, e.g. another developer's pytest, hold theirs)."""
    import random
    import socket

    for _ in range(200):
        first = random.randrange(20000, 60000 - count)
        try:
            socks = []
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("0.0.0.0", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free ports for the test's PostgreSQL and RabbitMQ")


@pytest.fixture(scope="session")
def scale_services() -> dict[str, str]:
    """The run's PostgreSQL and RabbitMQ (issue 14): {"database_url", "transport_url", "dir"}.
    scripts/test.sh starts private instances and exports their URLs; a run without them (a
    developer's plain pytest) starts its own here, on ports of this worker's, stopped at exit."""
    if os.environ.get("CUMULO_TEST_DATABASE_URL") and os.environ.get("CUMULO_TEST_TRANSPORT_URL"):
        return {"database_url": os.environ["CUMULO_TEST_DATABASE_URL"],
                "transport_url": os.environ["CUMULO_TEST_TRANSPORT_URL"],
                "dir": os.environ.get("CUMULO_TEST_SERVICES_DIR", "")}
    import atexit
    import importlib.util

    spec = importlib.util.spec_from_file_location("cumulo_test_services", Path(__file__).parent.parent / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    services = importlib.util.module_from_spec(spec)
    os.environ["CUMULO_TEST_PG_PORT"] = str(_free_ports(1))
    os.environ["CUMULO_TEST_AMQP_PORT"] = str(_free_ports(3))  # AMQP, its epmd, its distribution port
    spec.loader.exec_module(services)
    # not under pytest's 0700 temp root: the postgres and rabbitmq users must reach their dirs
    root = Path(f"/tmp/cumulo-scale-services-{os.getpid()}")
    urls = services.start(root)
    atexit.register(services.stop, root)
    return {"database_url": urls["CUMULO_TEST_DATABASE_URL"], "transport_url": urls["CUMULO_TEST_TRANSPORT_URL"],
            "dir": str(root)}


@pytest.fixture
async def cloud(settings: conf_mod.Settings) -> AsyncIterator[Any]:
    from cumulo.runtime import Cloud

    c = Cloud(settings)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
def as_ctx(cloud: Any) -> Callable[[RequestContext], httpx.AsyncClient]:
    app = cloud.asgi_app()

    def factory(ctx: RequestContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=ContextInjector(app, ctx)), base_url="http://cumulo.test")

    return factory


@pytest.fixture
def anon_client(cloud: Any) -> httpx.AsyncClient:
    """A client with no injected context: requests must authenticate with X-Auth-Token."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cloud.asgi_app()), base_url="http://cumulo.test")


# -- the data plane leftover check, once per run ------------------------------------------------
#
# Issue 10, acceptance 10: after the run no namespace, host link, dnsmasq process or root nft table
# of the run remains (tests/_leftovers.py says what is the run's). It fails the run otherwise. It
# needs root (else off); CUMULO_TEST_LEFTOVER_CHECK=0 turns it off. Under pytest-xdist it runs in
# the controller only, from before the workers start to after they all finished: a worker never
# sees another worker's live namespaces, links or dnsmasq as leftovers.

_LEFTOVER_SESSION = pytest.StashKey[_leftovers.Session]()


def _leftover_check_active() -> bool:
    return os.geteuid() == 0 and os.environ.get("CUMULO_TEST_LEFTOVER_CHECK", "1") != "0"


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: the controller's tag and run dir
        _leftovers.RUN_TAG = workerinput["cumulo_run_tag"]
        _leftovers.RUN_DIR = Path(workerinput["cumulo_run_dir"])
        return
    import secrets
    import tempfile

    _leftovers.RUN_TAG = secrets.token_hex(3)
    _leftovers.RUN_DIR = Path(tempfile.mkdtemp(prefix=f"cumulo-run-{_leftovers.RUN_TAG}-"))
    if _leftover_check_active():
        session = _leftovers.Session()
        session.start()
        config.stash[_LEFTOVER_SESSION] = session


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist, in the controller, for `--dist loadfile` (scripts/test.sh): whole files per
    worker (a module's shared cloud stays in one worker), except that a system module on both
    configurations (`cumulo_configs`: test ids [embedded] / [scaled]) is two units, so its two
    clouds may run on two workers at once instead of one after the other. (`--dist loadgroup` with
    marks would say the same, but pytest 9 no longer shows xdist's group suffix in the ids it
    reports, so every test became a unit of its own.)"""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileAndConfigScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = nodeid.split("::", 1)[0]
            params = nodeid.rsplit("[", 1)[1].rstrip("]").split("-") if nodeid.endswith("]") else []
            for name in ("embedded", "scaled"):
                if name in params:
                    return f"{scope}[{name}]"
            return scope

    return FileAndConfigScheduling(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, in the controller: every worker gets the run's tag and run dir."""
    node.workerinput["cumulo_run_tag"] = _leftovers.RUN_TAG
    node.workerinput["cumulo_run_dir"] = str(_leftovers.RUN_DIR)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In the controller (or the only process), after every fixture of every worker was torn down."""
    config = session.config
    if getattr(config, "workerinput", None) is not None:
        return
    leftover_session = config.stash.get(_LEFTOVER_SESSION, None)
    run_dir = _leftovers.RUN_DIR
    try:
        if leftover_session is None:
            return
        leftover_session.stop()
        deadline = time.monotonic() + 15  # a dnsmasq or a namespace still going as the last cloud closes
        while True:
            mine, unsure = leftover_session.leftovers()
            if not mine or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        reporter = config.pluginmanager.get_plugin("terminalreporter")

        def say(text: str, **markup: bool) -> None:
            if reporter is not None:
                reporter.write("\n")  # after the progress line's [100%]
                reporter.write_line(text, **markup)
            else:
                print(text)

        if unsure:
            say("data plane items new since the run started, owned by no cloud (another test run's?):\n  "
                + "\n  ".join(map(str, unsure)))
        if mine:
            say("FAILED: the tests left their data plane on the host:\n  " + "\n  ".join(map(str, mine)), red=True,
                bold=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    finally:
        if run_dir is not None:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
