"""Private PostgreSQL and RabbitMQ instances for the test run (Debian's packages, never the
system's own clusters or services).

    .venv/bin/python scripts/services.py start DIR   # prints shell `export` lines (the URLs)
    .venv/bin/python scripts/services.py stop DIR

`start` makes DIR (0700), a PostgreSQL cluster in DIR/pg (owned by `postgres`: initdb refuses
root) on PG_PORT with scram passwords, a database `cumulo`, and a RabbitMQ node in DIR/rabbit on
AMQP_PORT with its own epmd port and a `cumulo` user (guest may only log in over loopback; hosts in
namespaces come over the underlay bridge). Both listen on every address of the machine, behind a
random password kept in DIR/env (0600). `stop` stops both (by their pid files, never by name) and
removes DIR. scripts/test.sh starts them before pytest and stops them after; tests read
CUMULO_TEST_DATABASE_URL and CUMULO_TEST_TRANSPORT_URL (tests/conftest.py), and start their own
instance (this module, `ensure`) when those are unset.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

PG_PORT = int(os.environ.get("CUMULO_TEST_PG_PORT", "55432"))
AMQP_PORT = int(os.environ.get("CUMULO_TEST_AMQP_PORT", "55672"))
EPMD_PORT = AMQP_PORT + 1
DIST_PORT = AMQP_PORT + 2


def _pg_bin(name: str) -> str:
    base = Path("/usr/lib/postgresql")
    versions = sorted((p for p in base.iterdir() if (p / "bin" / name).exists()), key=lambda p: int(p.name))
    if not versions:
        raise SystemExit(f"PostgreSQL's {name} not found under {base}: apt-get install postgresql")
    return str(versions[-1] / "bin" / name)


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, check=True, text=True, capture_output=True, timeout=120, **kw)  # type: ignore[call-overload,no-any-return]  # noqa: S603
    except subprocess.CalledProcessError as exc:  # say why: the output, not only the exit status
        exc.add_note(f"stdout: {exc.stdout[-2000:]}\nstderr: {exc.stderr[-2000:]}")
        raise


def _as(user: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    return _run(["runuser", "-u", user, "--", "env", *extra, *argv])


def start_postgres(root: Path, password: str) -> str:
    data, sock = root / "pg", root / "pg-sock"
    data.mkdir(mode=0o700)
    sock.mkdir(mode=0o700)
    pwfile = root / "pg-pw"
    pwfile.write_text(password + "\n")
    for p in (data, sock, pwfile):
        shutil.chown(p, "postgres", "postgres")
    _as("postgres", [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                     f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"])
    pwfile.unlink()
    with open(data / "pg_hba.conf", "a") as fh:  # initdb's lines cover loopback; add the underlay
        fh.write("host all all 0.0.0.0/0 scram-sha-256\n")
    opts = f"-p {PG_PORT} -k {sock} -c listen_addresses=* -c max_connections=400 -c fsync=off " \
           "-c synchronous_commit=off -c full_page_writes=off"
    try:
        _as("postgres", [_pg_bin("pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-o", opts, "-w", "-t", "60",
                         "start"])
    except subprocess.CalledProcessError as exc:
        exc.add_note("server log: " + (data / "log").read_text(errors="replace")[-3000:] if (data / "log").exists() else "")
        raise
    _as("postgres", [_pg_bin("createdb"), "-h", str(sock), "-p", str(PG_PORT), "cumulo"],
        env={"PGPASSWORD": password})
    return f"postgresql+asyncpg://postgres:{password}@127.0.0.1:{PG_PORT}/cumulo"


def _amqp_port(root: Path) -> int:
    """The AMQP port of the node under `root`: the one `start` recorded there (a `stop` or a
    `rabbitmqctl` from another environment still finds its node), else this process's."""
    try:
        return int((root / "amqp-port").read_text())
    except (FileNotFoundError, ValueError):
        return AMQP_PORT


def _rabbit_env(root: Path) -> dict[str, str]:
    base = root / "rabbit"
    port = _amqp_port(root)
    return {
        "HOME": str(base),
        "RABBITMQ_NODENAME": f"cumulo-test-{port}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(port + 2),
        "ERL_EPMD_PORT": str(port + 1),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_USE_LONGNAME": "false",
    }


def start_rabbitmq(root: Path, password: str) -> str:
    base = root / "rabbit"
    base.mkdir(mode=0o700)
    (base / "enabled_plugins").write_text("[].\n")
    (base / "rabbitmq.conf").write_text("loopback_users = none\nlog.console = false\n")
    cookie = base / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16))
    cookie.chmod(0o400)
    _run(["chown", "-R", "rabbitmq:rabbitmq", str(base)])
    env = _rabbit_env(root)
    _as("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server", "-detached"], env=env)
    ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl"
    deadline = time.monotonic() + 120
    while True:
        try:
            _as("rabbitmq", [ctl, "-n", env["RABBITMQ_NODENAME"], "await_startup", "--timeout", "10"], env=env)
            break
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
    _as("rabbitmq", [ctl, "-n", env["RABBITMQ_NODENAME"], "add_user", "cumulo", password], env=env)
    _as("rabbitmq", [ctl, "-n", env["RABBITMQ_NODENAME"], "set_permissions", "-p", "/", "cumulo", ".*", ".*", ".*"],
        env=env)
    _as("rabbitmq", [ctl, "-n", env["RABBITMQ_NODENAME"], "delete_user", "guest"], env=env)
    return f"amqp://cumulo:{password}@127.0.0.1:{AMQP_PORT}/"


def rabbitmqctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """rabbitmqctl against the test node (fault tests: stop_app / start_app)."""
    env = _rabbit_env(root)
    return _as("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", env["RABBITMQ_NODENAME"], *args], env=env)


def pg_ctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pg_ctl against the test cluster (fault tests: restart). A (re)start logs to the cluster's
    log file: a server started without -l inherits the captured pipe, and the call would wait
    for it to close (its whole timeout)."""
    extra = ["-l", str(root / "pg" / "log")] if ("start" in args or "restart" in args) and "-l" not in args else []
    return _as("postgres", [_pg_bin("pg_ctl"), "-D", str(root / "pg"), *extra, *args])


def start(root: Path) -> dict[str, str]:
    if root.exists():
        stop(root)
    root.mkdir(mode=0o711, parents=True)
    root.chmod(0o711)  # the services' users reach their own subdirectories, whatever the umask
    (root / "amqp-port").write_text(str(AMQP_PORT))
    # hex: a urlsafe token starting with '-' (1 in 64) is an option to rabbitmqctl add_user
    password = secrets.token_hex(18)
    urls: dict[str, str] = {}
    try:
        urls["CUMULO_TEST_DATABASE_URL"] = start_postgres(root, password)
        urls["CUMULO_TEST_TRANSPORT_URL"] = start_rabbitmq(root, password)
    except BaseException:
        stop(root)
        raise
    urls["CUMULO_TEST_SERVICES_DIR"] = str(root)
    env = root / "env"
    env.write_text("".join(f"export {k}='{v}'\n" for k, v in urls.items()))
    env.chmod(0o600)
    return urls


def _kill_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)


def stop(root: Path) -> None:
    if (root / "pg" / "postmaster.pid").exists():
        try:
            pg_ctl(root, "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            _kill_pidfile(root / "pg" / "postmaster.pid")
    if (root / "rabbit").exists():
        env = _rabbit_env(root)
        try:
            _as("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", env["RABBITMQ_NODENAME"], "stop"], env=env)
        except subprocess.CalledProcessError:
            _kill_pidfile(root / "rabbit" / "rabbit.pid")
        # The private epmd this node started (its own port: never the system's). It refuses to die
        # ("Killing not allowed - living nodes in database", exit 1) while the node is still
        # registered, which it is for a moment after `stop` returns.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                out = _run(["epmd", "-port", env["ERL_EPMD_PORT"], "-kill"])
                if "not allowed" not in out.stdout.lower():
                    break  # "Killed"
            except FileNotFoundError:
                break
            except subprocess.CalledProcessError as exc:
                said = f"{exc.stdout} {exc.stderr}".lower()
                if "not allowed" not in said:
                    break  # "Cannot connect to local epmd": none left on that port
            time.sleep(0.2)
    shutil.rmtree(root, ignore_errors=True)


def ensure(root: Path) -> dict[str, str]:
    """The URLs of the running instance under `root`, starting it when needed."""
    env = root / "env"
    if env.exists():
        out = {}
        for line in env.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            out[key] = value.strip("'")
        return out
    return start(root)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[2]).resolve()
    if argv[1] == "start":
        for key, value in start(root).items():
            print(f"export {key}='{value}'")
    else:
        stop(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
