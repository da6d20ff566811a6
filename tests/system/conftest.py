"""System-test harness: the real `cumulo up` as a subprocess on loopback, driven by real clients.

Fixtures (every test under tests/system/ is marked `system` automatically):

- `cumulo` (module scope): a running `CumuloCloud` with its own temp state dir and a free port.
  A test module may set `cumulo_options = {"fake_hosts": 4, "env": {...}, "args": [...]}` to
  change how its cloud starts (default: two fake hosts besides the local one). The local host
  runs the fake driver unless the module asks for `"driver": "runc"` (real containers), "qemu"
  (real VMs) or a comma list such as "runc,qemu" (one compute node per driver); such modules skip
  when root, runc or QEMU is missing. API tests stay deterministic.
  A module may also set `cumulo_configs = ("embedded", "scaled")`: its cloud (and each test) then
  runs once per configuration, "scaled" being the cloud of tests/system/cluster.py (PostgreSQL +
  RabbitMQ, separate processes, 3 dev hosts); a module fixture of its own asks for `cumulo_config`
  and passes `config=cumulo_config` to `cumulo_launcher`. A test or a `pytest.param` marked
  `@pytest.mark.configs("embedded", reason="...")` runs only on the configurations named (the
  others' variants are deselected): for a scaled variant kept to its cross-host essence.
- `osc` (module): `cumulo.osc`, which runs the real `openstack` CLI from this venv.
- `sdk`, `sdk_demo` (module): openstacksdk Connections for the `cumulo` and `cumulo-demo` clouds.
- `cumulo_launcher` (session): a factory for more clouds, e.g. for crash and scheduler tests:
  `c = cumulo_launcher(fake_hosts=3, env={"CUMULO_FAKE_SPAWN_DELAY": "0.5"}, driver="fake")`; `c.kill()`
  (kill -9), `c.restart()` (same state dir and port); `c.close()` when done (or at session end).

`cumulo.osc("server", "list")` adds `--os-cloud`, and `-f json` when the command is a display
command (list/show/create...), and returns the parsed JSON; commands without formatter output
(delete, set, console log show...) return their text. A failure raises `CumuloCloud.OscError`
carrying the command's stderr.
"""

from __future__ import annotations

import atexit
import functools
import json as jsonlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import _leftovers
import httpx
import pytest
import yaml

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
READY_LINE = "Cumulo is ready"
START_TIMEOUT = float(os.environ.get("CUMULO_TEST_START_TIMEOUT", "90"))
STOP_TIMEOUT = 30.0
# Set CUMULO_TEST_KEEP=1 to keep state dirs and logs of system-test clouds for a post-mortem.
KEEP = os.environ.get("CUMULO_TEST_KEEP", "") not in ("", "0")

# Still argon2id, at a test-sized cost (tests/unit/identity's cheap_argon2; Keystone's own tests
# lower password_hash_rounds too): every `openstack` command logs in with a password, and the
# default cost (~0.1 s of CPU, 0.15-0.4 s on a busy 2-core host, a login) adds up to minutes.
CHEAP_PASSWORD_HASH = {"CUMULO_PASSWORD_HASH_TIME_COST": "1", "CUMULO_PASSWORD_HASH_MEMORY_KIB": "1024",
                       "CUMULO_PASSWORD_HASH_PARALLELISM": "1"}
# Processes still alive if pytest dies without running teardown; killed by their own PID at exit.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_leftovers() -> None:
    for proc in list(_LIVE.values()):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


atexit.register(_kill_leftovers)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# Handed out by free_external_cidr in this process (a cloud may not have made its host link yet).
_CIDRS_GIVEN: set[str] = set()


def free_external_cidr() -> str:
    """A 172.24.X.0/24 for a cloud's external network that no address or route of the host overlaps
    (never DevStack's 172.24.4.0/24). Two clouds on one external CIDR would each put its gateway
    address on a host link, and the host would reach one cloud's floating IPs through the other's
    link. Each pytest-xdist worker draws X from its own band (gw0 5-28, gw1 29-52, gw2 53-76,
    gw3 77-100), so two workers never pick the same CIDR at the same time."""
    import ipaddress
    import random

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % 4 if worker[2:].isdigit() else 0
    band = list(range(5 + 24 * index, 5 + 24 * (index + 1)))
    random.shuffle(band)
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    addrs = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=30, check=True)  # noqa: S603, S607
    for item in jsonlib.loads(addrs.stdout or "[]"):
        used += [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network for a in item.get("addr_info", [])]
    routes = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True,  # noqa: S603, S607
                            timeout=30, check=True)
    for r in jsonlib.loads(routes.stdout or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default" and not dst.startswith("127."):
            used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    free = [c for c in (ipaddress.ip_network(f"172.24.{x}.0/24") for x in band) if not any(c.overlaps(u) for u in used)]
    if not free:
        raise AssertionError(f"no free 172.24.X.0/24 on this host in {worker}'s band")
    cidr = str(next((c for c in free if str(c) not in _CIDRS_GIVEN), free[0]))
    _CIDRS_GIVEN.add(cidr)
    return cidr


def _external_cidr(driver: str, args: Sequence[str], env: Mapping[str, str]) -> tuple[str | None, bool]:
    """(the external CIDR the cloud is set to, whether it was set), from `--config` or the env;
    (None, True) when the cloud makes no host link (fake driver, `--no-external`)."""
    if driver == "fake" or "--no-external" in args:
        return None, True
    if "CUMULO_EXTERNAL_CIDR" in env:
        return env["CUMULO_EXTERNAL_CIDR"], True
    if "--config" in args:
        config = yaml.safe_load(Path(args[list(args).index("--config") + 1]).read_text()) or {}
        if config.get("external_link") is False:
            return None, True
        if config.get("external_cidr"):
            return str(config["external_cidr"]), True
    return None, False


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; return that, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate!r}")
        time.sleep(interval)


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without OS_* / CUMULO_* settings that would leak into a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "CUMULO_"))}
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------------------------
# Which `openstack` commands take `-f json`: those whose cliff class is a display command.

_SKIP_GROUPS = {"openstack.identity.v2", "openstack.image.v1", "openstack.volume.v2"}
# Global options of `openstack` that take no value (all others before the command take one).
_GLOBAL_FLAGS = {"--debug", "-v", "--verbose", "-q", "--quiet", "--insecure", "--no-cache", "--os-beta-command"}


@functools.cache
def _command_table() -> dict[str, str]:
    table: dict[str, str] = {}
    eps = entry_points()
    for group in sorted(eps.groups):
        if not group.startswith("openstack.") or group in _SKIP_GROUPS:
            continue
        for ep in eps.select(group=group):
            table.setdefault(ep.name, ep.value)
    return table


# Importing openstackclient modules from several osc() threads at once races inside the import
# system ("partially initialized module"); one lock serialises the first imports.
_IMPORT_LOCK = threading.Lock()


def _is_display_command(name: str) -> bool:
    with _IMPORT_LOCK:
        return _is_display_command_locked(name)


@functools.cache
def _is_display_command_locked(name: str) -> bool:
    import importlib

    from cliff.display import DisplayCommandBase

    module, _, attr = _command_table()[name].partition(":")
    with warnings.catch_warnings():  # osc_lib's own deprecation noise on import
        warnings.simplefilter("ignore", DeprecationWarning)
        cls = getattr(importlib.import_module(module), attr)
    return isinstance(cls, type) and issubclass(cls, DisplayCommandBase)


def command_name(args: Sequence[str]) -> str | None:
    """The OSC command named by `args` ("server_resize_confirm"), skipping leading global options."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1 if (args[i] in _GLOBAL_FLAGS or "=" in args[i]) else 2
    words: list[str] = []
    for a in args[i:]:
        if a.startswith("-"):
            break
        words.append(a)
    table = _command_table()
    for n in range(len(words), 0, -1):
        name = "_".join(words[:n])
        if name in table:
            return name
    return None


def wants_format(args: Sequence[str]) -> bool:
    if any(a in ("-f", "--format") or a.startswith(("-f=", "--format=")) for a in args):
        return False
    name = command_name(args)
    return name is not None and _is_display_command(name)


class OscError(RuntimeError):
    """An `openstack` CLI command failed; `stderr` has the client's message (e.g. "... (HTTP 409)")."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv, self.returncode, self.stdout, self.stderr = list(argv), returncode, stdout, stderr
        super().__init__(
            f"`{' '.join(argv)}` exited {returncode}\n--- stderr ---\n{stderr.strip()}\n--- stdout ---\n{stdout.strip()}"
        )


class CumuloStartError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------


class CumuloCloud:
    """One `cumulo up` process and its state dir. Start, stop, kill -9 and restart it."""

    OscError = OscError
    config_name = "embedded"  # cluster.ClusterCloud: "scaled"

    def __init__(
        self,
        root: Path,
        *,
        fake_hosts: int = 0,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        driver: str = "fake",
    ) -> None:
        self.root = root
        self.driver = driver
        self.state_dir = root / "state"
        self.host = host
        self.port = free_port(host)
        # Every cloud gets its own metrics port: clouds of parallel test runs never share 9180.
        self.metrics_port = free_port(host)
        self.fake_hosts = fake_hosts
        self.args = list(args)
        self.env = dict(env or {})
        # the external network's CIDR when the cloud makes a host link (see free_external_cidr), else None
        self.external_cidr: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._out: Path | None = None
        self._err: Path | None = None
        self._tokens: dict[str, str] = {}

    # -- addresses and files ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/identity/v3"

    @property
    def clouds_yaml(self) -> Path:
        return self.state_dir / "clouds.yaml"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- where a server's host is (cluster.ClusterCloud: its dev host's) ------------------------

    def server_host_dir(self, uuid: str) -> Path:
        """The state dir of the compute host running server `uuid` (here: the one host's)."""
        return self.state_dir

    def host_argv(self, uuid: str, argv: Sequence[str]) -> list[str]:
        """`argv` as run on server `uuid`'s host (here: as is; a dev host: inside its namespaces)."""
        return list(argv)

    def host_path(self, uuid: str, path: str) -> Path:
        """An absolute path as server `uuid`'s host sees it (a dev host: through its mount namespace)."""
        return Path(path)

    def host_mountinfo(self, uuid: str) -> Path:
        """The mount table of server `uuid`'s host (a dev host's private mount namespace's)."""
        return Path("/proc/self/mountinfo")

    # Where new volumes live: None here (the one host); a cluster's volume_host (its dev host 1),
    # where a server must run to attach them (volumes are files of that host: no remote block).
    volume_host: str | None = None

    def host_dir(self, host: str | None) -> Path:
        """Compute host `host`'s state dir (here: the one host's)."""
        return self.state_dir

    def mountinfo_of(self, host: str | None) -> Path:
        """Compute host `host`'s mount table (here: the machine's)."""
        return Path("/proc/self/mountinfo")

    def clouds(self) -> dict[str, Any]:
        data = yaml.safe_load(self.clouds_yaml.read_text()) or {}
        clouds: dict[str, Any] = data.get("clouds", {})
        return clouds

    def log(self) -> str:
        """stdout and stderr of the current (or last) run."""
        parts = []
        for label, path in (("stdout", self._out), ("stderr", self._err)):
            if path and path.exists():
                parts.append(f"--- {label} ({path.name}) ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    # -- lifecycle ----------------------------------------------------------------------------

    def command(self) -> list[str]:
        script = BIN / "cumulo"
        prog = [str(script)] if script.exists() else [sys.executable, "-m", "cumulo.cli.main"]
        argv = prog + ["up", "--state-dir", str(self.state_dir), "--host", self.host, "--port", str(self.port),
                       "--metrics-port", str(self.metrics_port)]
        if self.fake_hosts:
            argv += ["--fake-hosts", str(self.fake_hosts)]
        return argv + ["--log-level", "info", *self.args]

    def start(self, timeout: float = START_TIMEOUT) -> CumuloCloud:
        """Start `cumulo up` and wait for its ready line. Retries on a port someone else took."""
        assert not self.running, "already running"
        for attempt in range(3):
            try:
                self._spawn_and_wait(timeout)
                return self
            except CumuloStartError as exc:
                if "address already in use" not in str(exc).lower() or attempt == 2:
                    raise
                self.port = free_port(self.host)
                self.metrics_port = free_port(self.host)
        return self

    def _spawn_and_wait(self, timeout: float) -> None:
        self.runs += 1
        self.root.mkdir(parents=True, exist_ok=True)
        self._out = self.root / f"run-{self.runs}.out"
        self._err = self.root / f"run-{self.runs}.err"
        env = _clean_env({"PYTHONUNBUFFERED": "1", "CUMULO_LOCAL_DRIVER": self.driver, **CHEAP_PASSWORD_HASH,
                          **self.env})
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            # Own session: a Ctrl-C at the terminal goes to pytest, which then stops us by PID.
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
            )
        _LIVE[self.proc.pid] = self.proc
        self._tokens.clear()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                _LIVE.pop(self.proc.pid, None)
                raise CumuloStartError(f"cumulo up exited {code} before it was ready\n{self.log()}")
            if READY_LINE in self._out.read_text(errors="replace") and self._root_answers():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise CumuloStartError(f"cumulo up was not ready after {timeout:.0f}s\n{self.log()}")
            time.sleep(0.05)

    def _root_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/", timeout=5) as resp:  # noqa: S310 - loopback
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, then SIGKILL; by this process's own PID. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        _LIVE.pop(proc.pid, None)
        return proc.returncode

    def kill(self) -> None:
        """kill -9 (a crash): no shutdown code runs."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        _LIVE.pop(proc.pid, None)

    def restart(self, *, crash: bool = False, timeout: float = START_TIMEOUT) -> CumuloCloud:
        """Stop (or kill -9 with crash=True) and start again on the same state dir and port."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start(timeout=timeout)

    def close(self) -> None:
        self.stop()
        # the leftover check's idea of the run's (tests/conftest.py): the servers it had
        _leftovers.record_instances(_leftovers.instances_of(self.state_dir))
        if self.driver != "fake":  # the network data plane it made on the host (it outlives a stop)
            import asyncio

            from cumulo.network.agent.plumbing import remove_registered

            asyncio.run(remove_registered(str(self.state_dir.resolve())))
        if not KEEP:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- clients ------------------------------------------------------------------------------

    def osc_env(self) -> dict[str, str]:
        return _clean_env({"OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml), "PYTHONWARNINGS": "ignore"})

    def osc_run(
        self, *args: str, cloud: str = "cumulo", timeout: float = 180.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `openstack --os-cloud CLOUD ARGS...` and return the finished process as is."""
        argv = [str(BIN / "openstack"), "--os-cloud", cloud, *args]
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            argv,
            env=self.osc_env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def osc(
        self,
        *args: str,
        cloud: str = "cumulo",
        json: bool = True,
        microversion: str | None = None,
        timeout: float = 180.0,
        input: str | None = None,
    ) -> Any:
        """Run the real `openstack` CLI. With json=True, display commands get `-f json` and the
        parsed result comes back (dict or list); other commands (and json=False) return stdout."""
        argv = list(args)
        if microversion:
            argv = ["--os-compute-api-version", microversion, *argv]
        as_json = json and wants_format(argv)
        if as_json:
            argv += ["-f", "json"]
        done = self.osc_run(*argv, cloud=cloud, timeout=timeout, input=input)
        if done.returncode != 0:
            raise OscError(["openstack", "--os-cloud", cloud, *argv], done.returncode, done.stdout, done.stderr)
        if as_json:
            try:
                return jsonlib.loads(done.stdout)
            except ValueError:
                return done.stdout  # e.g. `keypair create` prints a generated private key first
        return done.stdout

    def connect(self, cloud: str = "cumulo") -> Any:
        """An openstacksdk Connection from this cloud's clouds.yaml (no other config is read)."""
        from openstack import config as os_config
        from openstack import connection

        none = str(self.root / "absent.yaml")  # empty lists would mean "the default files"
        loader = os_config.OpenStackConfig(
            config_files=[str(self.clouds_yaml)], vendor_files=[none], secure_files=[none], load_envvars=False
        )
        return connection.Connection(config=loader.get_one(cloud=cloud))

    def token(self, cloud: str = "cumulo", *, fresh: bool = False) -> str:
        """A project-scoped token for `cloud`'s user, straight from Keystone's API (cached)."""
        if fresh or cloud not in self._tokens:
            auth = self.clouds()[cloud]["auth"]
            body = {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": auth["username"],
                                "password": auth["password"],
                                "domain": {"name": auth.get("user_domain_name", "Default")},
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
            resp = httpx.post(f"{self.auth_url}/auth/tokens", json=body, timeout=30)
            assert resp.status_code == 201, resp.text
            self._tokens[cloud] = resp.headers["X-Subject-Token"]
        return self._tokens[cloud]

    def client(self, cloud: str | None = "cumulo", **kwargs: Any) -> httpx.Client:
        """A raw HTTP client on the base URL, authenticated as `cloud`'s user (None: anonymous)."""
        headers = dict(kwargs.pop("headers", {}))
        if cloud is not None:
            headers["X-Auth-Token"] = self.token(cloud)
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)


# ---------------------------------------------------------------------------------------------
# pytest wiring


def skip_unless_runc() -> None:
    """Real-container tests need root and Debian's runc."""
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("needs root and runc for the runc driver")


def skip_unless_qemu() -> None:
    """Real-VM tests need QEMU (qemu-system-x86, qemu-utils) and the QEMU driver."""
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        pytest.skip("needs qemu-system-x86_64 and qemu-img for the qemu driver")
    try:
        import cumulo.compute.drivers.qemu  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the QEMU driver is not available: {exc}")


def skip_unless_drivers(driver: str) -> None:
    """`driver` is what CUMULO_LOCAL_DRIVER takes: one name or a comma list ("runc,qemu")."""
    names = {n.strip() for n in driver.split(",")}
    if "runc" in names:
        skip_unless_runc()
    if "qemu" in names:
        skip_unless_qemu()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here is `system`; a test (or a pytest.param) marked `configs("embedded", reason=...)`
    runs only on the configurations it names: its other variants are deselected (a module's scaled
    variant covering the cross-host essence within the run's time budget; the reason says what)."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.system)
        only = item.get_closest_marker("configs")
        callspec = getattr(item, "callspec", None)
        config_param = callspec.params.get("cumulo_config") if callspec is not None else None
        if only is not None:
            bad = [c for c in only.args if c not in CONFIGS]
            assert not bad and only.kwargs.get("reason"), f"{item.nodeid}: configs{only.args} needs known configs and a reason"
        (dropped if only is not None and config_param is not None and config_param not in only.args else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def cumulo_launcher(request: pytest.FixtureRequest) -> Iterator[Callable[..., CumuloCloud]]:
    """Factory: `cumulo_launcher(fake_hosts=0, args=(), env=None, start=True, driver="fake")` → a CumuloCloud
    in its own temp dir. Whatever is still running at the end of the session is closed.
    `config="scaled"` (a module's `cumulo_config`) makes a started cluster.ClusterCloud instead
    (cluster.scaled_cloud; fake_hosts and start are ignored; `cluster_fake_hosts=N` runs N fake hosts
    in its L3 host's process)."""
    made: list[CumuloCloud] = []

    def launch(
        *,
        fake_hosts: int = 0,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        start: bool = True,
        driver: str = "fake",
        config: str = "embedded",
        cluster_fake_hosts: int = 0,
    ) -> CumuloCloud:
        if config == "scaled":
            from cluster import scaled_cloud

            scaled = scaled_cloud({"driver": driver, "args": args, "env": env or {},
                                   "cluster_fake_hosts": cluster_fake_hosts},
                                  request.getfixturevalue("scale_services"))
            made.append(scaled)
            return scaled
        assert config == "embedded", config
        skip_unless_drivers(driver)
        # named by the run's tag: the leftover check (in the xdist controller) knows it as the run's
        root = Path(tempfile.mkdtemp(prefix=_leftovers.cloud_root_prefix()))
        env = dict(env or {})
        cidr, chosen = _external_cidr(driver, args, env)
        if not chosen:  # a host link on the default 172.24.4.0/24 would clash with other clouds' (other workers')
            cidr = env["CUMULO_EXTERNAL_CIDR"] = free_external_cidr()
        cloud = CumuloCloud(root, fake_hosts=fake_hosts, args=args, env=env, driver=driver)
        cloud.external_cidr = cidr
        _leftovers.SESSION_STATE_DIRS.add(str(cloud.state_dir.resolve()))
        made.append(cloud)
        if start:
            cloud.start()
        return cloud

    yield launch
    for cloud in made:
        cloud.close()


CONFIGS = ("embedded", "scaled")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module's `cumulo_configs` (e.g. ("embedded", "scaled")): its module-scoped cloud, and so
    each of its tests, once per configuration (test ids [embedded] / [scaled])."""
    configs = getattr(metafunc.module, "cumulo_configs", None)
    if configs and "cumulo_config" in metafunc.fixturenames:
        bad = [c for c in configs if c not in CONFIGS]
        assert not bad, f"cumulo_configs: unknown {bad} (known: {CONFIGS})"
        metafunc.parametrize("cumulo_config", list(configs), indirect=True, scope="module")


@pytest.fixture(scope="module")
def cumulo_config(request: pytest.FixtureRequest) -> str:
    """Which configuration the module's `cumulo` is: "embedded" (`cumulo up`, the default) or
    "scaled" (tests/system/cluster.py: PostgreSQL + RabbitMQ, separate processes, 3 dev hosts)."""
    return str(getattr(request, "param", "embedded"))


@pytest.fixture(scope="module")
def cumulo(request: pytest.FixtureRequest, cumulo_launcher: Callable[..., CumuloCloud],
           cumulo_config: str) -> Iterator[CumuloCloud]:
    options = {"fake_hosts": 2, **getattr(request.module, "cumulo_options", {})}
    cloud = cumulo_launcher(**options, config=cumulo_config)
    try:
        yield cloud
    finally:
        cloud.close()


@pytest.fixture(scope="module")
def osc(cumulo: CumuloCloud) -> Callable[..., Any]:
    return cumulo.osc


@pytest.fixture(scope="module")
def clouds_yaml(cumulo: CumuloCloud) -> Path:
    return cumulo.clouds_yaml


@pytest.fixture(scope="module")
def base_url(cumulo: CumuloCloud) -> str:
    return cumulo.base_url


@pytest.fixture(scope="module")
def state_dir(cumulo: CumuloCloud) -> Path:
    return cumulo.state_dir


@pytest.fixture(scope="module")
def sdk(cumulo: CumuloCloud) -> Iterator[Any]:
    conn = cumulo.connect("cumulo")
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def sdk_demo(cumulo: CumuloCloud) -> Iterator[Any]:
    conn = cumulo.connect("cumulo-demo")
    yield conn
    conn.close()


# Imported here, while the name "conftest" is this module: cluster.py takes names from it. Imported
# lazily (the launcher's scaled config), it would find whichever directory's conftest pytest
# collected last under that name (pytest drops the previous one from sys.modules), e.g.
# tests/unit/volume/conftest.py, and fail with an ImportError.
import cluster  # noqa: E402,F401
