"""A cloud split into processes for the system tests (issue 14, PROC): `cumulo api` (one or more),
`cumulo conductor`, `cumulo scheduler` and `cumulo compute` as real OS processes over the run's
PostgreSQL and RabbitMQ (the `scale_services` fixture), on a database and a vhost of their own
(made here, dropped at close). Processes are stopped by their own pids (and a uvicorn parent's
workers by theirs)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import _leftovers
import yaml
from _services import services_for as _services_module  # the name cluster.py imports
from conftest import BIN, CHEAP_PASSWORD_HASH, KEEP, _clean_env, free_port


def _admin_dsn(database_url: str, name: str = "cumulo") -> str:
    parts = urlsplit(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


async def _pg(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Proc:
    """One `cumulo <role>` process, its log, its pid (and, for `api --workers N`, its workers')."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str], ready: str) -> None:
        self.name, self.argv, self.log_path, self.ready = name, argv, log, ready
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                          env=env, start_new_session=True)
        self.children: set[int] = set()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.ready not in self.log():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.popen.returncode} before it was ready\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout:.0f} s\n{self.log()}")
            time.sleep(0.1)
        self.children |= _children(self.pid)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM by pid, then SIGKILL; workers it started (their pids, read while it ran) too."""
        self.children |= _children(self.pid)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        for pid in self.children:
            _kill_if_ours(pid, self.argv[0])


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def _kill_if_ours(pid: int, program: str) -> None:
    """SIGKILL a worker pid left behind, unless the pid is now another program's."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"cumulo" not in cmdline and program.encode() not in cmdline:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class SplitCloud:
    """A database `cumulo_procs_<hex>` and a vhost of its own, a settings file, and the processes."""

    def __init__(self, root: Path, services: dict[str, str], settings: dict[str, Any] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.services = services
        tag = secrets.token_hex(4)
        self.db_name = f"cumulo_procs_{tag}"
        self.vhost = f"cumulo-procs-{tag}"
        url = urlsplit(services["transport_url"])
        assert url.port is not None
        self._ctl = _services_module(url.port)
        self.database_url = _admin_dsn(services["database_url"], self.db_name)
        self.transport_url = urlunsplit((url.scheme, url.netloc, "/" + quote(self.vhost, safe=""), "", ""))
        self.config = root / "cumulo.yaml"
        settings = dict(settings or {})
        extra = {"tiny_vm_image": "off", **settings.pop("extra", {})}
        self.config.touch(mode=0o600)  # the URLs carry the run's passwords: the file, not argv, and private
        self.config.write_text(yaml.safe_dump({
            "database": self.database_url, "transport": self.transport_url, **settings, "extra": extra,
        }))
        self.procs: list[Proc] = []
        self.compute_dirs: list[Path] = []
        self.apis: list[tuple[Proc, int]] = []
        self.made = False

    def __enter__(self) -> SplitCloud:
        asyncio.run(_pg(_admin_dsn(self.services["database_url"]), f'CREATE DATABASE "{self.db_name}"'))
        self.made = True
        services_dir = Path(self.services["dir"])
        self._ctl.rabbitmqctl(services_dir, "add_vhost", self.vhost)
        user = urlsplit(self.services["transport_url"]).username or "cumulo"
        self._ctl.rabbitmqctl(services_dir, "set_permissions", "-p", self.vhost, user, ".*", ".*", ".*")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def env(self) -> dict[str, str]:
        return _clean_env({"PYTHONUNBUFFERED": "1", **CHEAP_PASSWORD_HASH})

    def start(self, role: str, *args: str, name: str | None = None, ready: str | None = None) -> Proc:
        """`cumulo ROLE --config ... ARGS` in the background (not waited for)."""
        name = name or role
        state = self.root / name
        prog = [str(BIN / "cumulo")] if (BIN / "cumulo").exists() else [sys.executable, "-m", "cumulo.cli.main"]
        argv = [*prog, role, "--config", str(self.config), "--state-dir", str(state), "--log-level", "info", *args]
        proc = Proc(name, argv, self.root / f"{name}.log", self.env(), ready or f"cumulo {role} is ready")
        self.procs.append(proc)
        return proc

    def start_compute(self, host: str, *args: str) -> Proc:
        """`cumulo compute --host HOST ARGS` on a state dir of its own (its data plane is the run's)."""
        state = (self.root / host).resolve()
        _leftovers.SESSION_STATE_DIRS.add(str(state))
        self.compute_dirs.append(state)
        return self.start("compute", "--host", host, *args, name=host)

    def start_api(self, *args: str, name: str = "api", workers: int = 1, port: int | None = None) -> tuple[Proc, int]:
        port = port or free_port()
        extra = ["--workers", str(workers)] if workers > 1 else []
        ready = "Application startup complete" if workers > 1 else "cumulo api is ready"
        proc = self.start("api", "--port", str(port), *extra, *args, name=name, ready=ready)
        self.apis.append((proc, port))
        return proc, port

    def wait_api_workers(self, proc: Proc, workers: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while proc.log().count("Application startup complete") < workers:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{proc.name}: {workers} workers not up\n{proc.log()}")
            time.sleep(0.1)
        proc.children |= _children(proc.pid)

    def clouds_yaml(self) -> Path:
        """The clouds.yaml with the passwords: the API process that ran the first bootstrap wrote it."""
        for proc, _port in self.apis:
            path = self.root / proc.name / "clouds.yaml"
            if path.exists() and (yaml.safe_load(path.read_text()) or {}).get("clouds", {}).get("cumulo"):
                return path
        raise AssertionError("no API process wrote a clouds.yaml with the admin's password")

    def auth(self, user: str = "admin") -> dict[str, str]:
        clouds = yaml.safe_load(self.clouds_yaml().read_text())["clouds"]
        return dict(clouds["cumulo" if user == "admin" else "cumulo-demo"]["auth"])

    def connect(self, port: int, *, username: str, password: str, project: str) -> Any:
        from openstack import connection

        return connection.Connection(
            auth_url=f"http://127.0.0.1:{port}/identity/v3", username=username, password=password,
            project_name=project, user_domain_name="Default", project_domain_name="Default",
            region_name="RegionOne", identity_api_version="3", interface="public")

    def osc(self, port: int, *args: str, timeout: float = 180.0) -> str:
        auth = self.auth()
        env = {**_clean_env(), "PYTHONWARNINGS": "ignore", "OS_AUTH_URL": f"http://127.0.0.1:{port}/identity/v3",
               "OS_USERNAME": auth["username"], "OS_PASSWORD": auth["password"], "OS_PROJECT_NAME": auth["project_name"],
               "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
               "OS_REGION_NAME": "RegionOne"}
        done = subprocess.run([str(BIN / "openstack"), *args], env=env, capture_output=True, text=True,  # noqa: S603
                              timeout=timeout, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-6000:]}" for p in self.procs)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.compute_dirs:  # the data plane the hosts made (it outlives a stop), and their servers
            from cumulo.network.agent.plumbing import remove_registered

            for state in self.compute_dirs:
                asyncio.run(remove_registered(str(state)))
            if self.made:
                _leftovers.record_instances(asyncio.run(self._instances()))
        if self.made:
            services_dir = Path(self.services["dir"])
            try:
                self._ctl.rabbitmqctl(services_dir, "delete_vhost", self.vhost)
            finally:
                asyncio.run(_pg(_admin_dsn(self.services["database_url"]),
                                f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            self.made = False
        if not KEEP:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _instances(self) -> set[str]:
        import asyncpg

        conn = await asyncpg.connect(self.database_url)
        try:
            return {str(r[0]) for r in await conn.fetch("SELECT uuid FROM instances")}
        finally:
            await conn.close()

    def check_placement(self) -> list[str]:
        """Every provider's usage per class within its capacity ((total - reserved) * ratio); the
        over-committed ones, named."""
        async def read() -> list[Any]:
            import asyncpg

            conn = await asyncpg.connect(self.database_url)
            try:
                return list(await conn.fetch(
                    "SELECT p.name, i.resource_class, i.total, i.reserved, i.allocation_ratio, "
                    "COALESCE((SELECT SUM(a.used) FROM allocations a WHERE a.provider_id = p.id "
                    "AND a.resource_class = i.resource_class), 0) AS used "
                    "FROM resource_providers p JOIN inventories i ON i.provider_id = p.id"))
            finally:
                await conn.close()

        return [f"{r['name']} {r['resource_class']}: {r['used']} used of {r['total']}-{r['reserved']} x "
                f"{r['allocation_ratio']}" for r in asyncio.run(read())
                if r["used"] > (r["total"] - r["reserved"]) * r["allocation_ratio"] + 1e-9]


def statuses(conn: Any, names: Sequence[str]) -> dict[str, str]:
    by_name = {s.name: s.status for s in conn.compute.servers(all_projects=True)}
    return {n: by_name.get(n, "MISSING") for n in names}
