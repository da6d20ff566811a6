"""The scaled-out cloud as a system-test configuration (issue 14, acceptance 1): PostgreSQL +
RabbitMQ, `cumulo api|conductor|scheduler` and one `cumulo compute` per dev host in namespaces.

    from cluster import ClusterCloud
    cloud = ClusterCloud(root, scale_services, drivers="runc", external=False).start()
    cloud.osc("server", "create", ...)       # as CumuloCloud: base_url, auth_url, clouds_yaml,
    cloud.sdk / cloud.connect("cumulo")      # state_dir (the API's), osc(), osc_run(), connect(),
    cloud.client(), cloud.token(), log()     # token(), client(), log(), external_cidr
    cloud.close()                            # everything gone (see below)

`ClusterCloud` is a `CumuloCloud` (tests/system/conftest.py) whose lifecycle starts, instead of
one `cumulo up`:

- a fresh database `cumulo_cluster_<hex>` on the run's PostgreSQL and a vhost `cumulo-cluster-<hex>`
  on its RabbitMQ (the `scale_services` fixture), dropped and deleted at close;
- an underlay of its own: a bridge `cucl<N>` with 198.18.N.1/24 (N from 20..99, taken with a lock
  file /tmp/cumulo-cluster-underlay-<N>.lock, so parallel clusters of xdist workers never share a
  bridge or addresses; `cumulo dev hosts`' own cumulo-ul0/198.18.0.0/24 is left to developers),
  `cloud.gateway` its address;
- `cumulo api` on 0.0.0.0:<free port> (the hosts reach it at the gateway, `api_url`; the clients
  at 127.0.0.1, `base_url`), `cumulo conductor`, `cumulo scheduler` (root namespace);
- the L3 host `cloud.l3_host` = `c<tag>-l3`: a `cumulo compute --driver runc` in the root
  namespace (underlay_ip = the gateway) whose nova-compute service is disabled at start, so it
  only carries routers, floating IPs, the external network and its host link (in the root
  namespace, as in `cumulo up`: the machine reaches floating IPs as in the embedded mode) and the
  scheduler never picks it; its VXLAN devices are made in the root namespace, shared by every
  cluster's L3 host, so each cluster's networks take VNIs of their own (`vni_ranges` N*10000 + 0..9999);
- `cloud.hosts` = ["c<tag>-host1", "c<tag>-host2", "c<tag>-host3"]: dev hosts (cumulo.dev.hosts:
  netns `cumulo-host-<name>`, 198.18.N.2..4, a private mount namespace each) each running
  `cumulo compute --host <name> --driver <drivers>` with `underlay_ip` its address; new volumes go
  to host1 (`volume_host`);
- the external network's wire: a bridge `cucl<N>px` in the root namespace (no address) with each
  dev host's `ex0` and the L3 host's `cp...` on it, each host's `physical_interface_mappings`
  "public:<it>": a server on the flat network `public` lands on any dev host, reaches the L3
  host's routers and host link over the wire, and its security groups apply on its own host
  (netplane/physnet.py, DevHosts' physnet).

All processes share one settings file (`cloud.config`: database, transport, api_url, l3_host,
volume_host, external_link/external_cidr, metrics_port 0, ...; `settings=` adds keys) and the
module's `env` (CUMULO_* values, as `cumulo up` gets them). Per process (names: "api",
"conductor", "scheduler", the L3 host's and the dev hosts' names):

    cloud.stop_process(name)    # SIGTERM by pid (a dev host: its compute process; servers go on)
    cloud.kill_process(name)    # SIGKILL by pid (a dev host: `DevHosts.kill`, the whole host dies:
                                #   agent, QEMU, dnsmasq, its containers)
    cloud.start_process(name)   # start it again (same state dir) and wait for its ready line
    cloud.start_extra(role, name)  # one more conductor/scheduler/api process (e.g. a peer conductor)
    cloud.pid(name), cloud.process_log(name), cloud.host_ip(name), cloud.host_state_dir(name)
    cloud.in_host(name, argv)   # argv run inside a dev host's namespaces (nsenter), as a list
    cloud.dev                   # the DevHosts (cumulo.dev.hosts) of the cluster

`close()` stops every process by its pid, tears the dev hosts down by name (`DevHosts.down`:
processes, runc containers, loop devices, namespaces, veths, the bridge), removes the L3 host's
data plane (its registry), drops the database, deletes the vhost and removes the root dir; the
servers it had and its dev hosts are recorded for the run's leftover check (tests/_leftovers.py).

The `cumulo` fixture (conftest.py) builds one for a module that opts in with
`cumulo_configs = ("embedded", "scaled")` (each test runs on both; `cumulo.config` says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit, urlunsplit

import _leftovers
import httpx
import pytest
import yaml
from _procs_util import Proc, _admin_dsn, _pg
from _services import services_for
from conftest import (
    BIN,
    CHEAP_PASSWORD_HASH,
    KEEP,
    CumuloCloud,
    CumuloStartError,
    _clean_env,
    _external_cidr,
    free_external_cidr,
    free_port,
    skip_unless_drivers,
)

from cumulo.dev.hosts import DevHosts

START_TIMEOUT = float(os.environ.get("CUMULO_TEST_CLUSTER_START_TIMEOUT", "300"))
HOSTS = 3
PUBLIC_PHYSNET = "public"  # the physical network of `public` (network/topology.py)
_SLOTS = range(20, 100)


def _underlay_slot() -> tuple[int, IO[str]]:
    """A third octet N for 198.18.N.0/24 that no other cluster on the machine holds (a lock file,
    held for the cluster's life) and no address of the machine is in."""
    used = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=30, check=True)  # noqa: S603, S607
    nets = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
            for item in json.loads(used.stdout or "[]") for a in item.get("addr_info", [])]
    for n in _SLOTS:
        net = ipaddress.ip_network(f"198.18.{n}.0/24")
        if any(net.overlaps(u) for u in nets):
            continue
        path = f"/tmp/cumulo-cluster-underlay-{n}.lock"
        fh = open(path, "w")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the holder before us unlinks the file when it lets go: a lock on an unlinked file holds nothing
            if os.fstat(fh.fileno()).st_ino != os.stat(path).st_ino:
                raise OSError("stale lock file")
        except OSError:
            fh.close()
            continue
        return n, fh
    raise AssertionError("no free 198.18.N.0/24 underlay for a cluster")


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{netloc[0]}@{host}{port}" if len(netloc) == 2 else f"{host}{port}",
                       parts.path, parts.query, parts.fragment))


class ClusterCloud(CumuloCloud):
    """The scaled-out cloud; see the module's docstring."""

    config_name = "scaled"

    def __init__(self, root: Path, services: Mapping[str, str], *, drivers: str = "runc", hosts: int = HOSTS,
                 fake_hosts: int = 0,
                 external: bool = False, external_cidr: str | None = None, env: Mapping[str, str] | None = None,
                 settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(root, env=env, host="127.0.0.1", driver=drivers, fake_hosts=fake_hosts)
        self.config = root / "cumulo.yaml"
        self.state_dir = root / "api"
        self.services = dict(services)
        self.tag = secrets.token_hex(2)
        self.db_name = f"cumulo_cluster_{self.tag}{secrets.token_hex(3)}"
        self.vhost = f"cumulo-cluster-{self.tag}{secrets.token_hex(3)}"
        self.l3_host = f"c{self.tag}-l3"
        self.hosts = [f"c{self.tag}-host{i}" for i in range(1, hosts + 1)]
        self.volume_host = self.hosts[0]
        self.external = external
        self.external_cidr = external_cidr if external else None
        self.settings = dict(settings or {})
        self.procs: dict[str, Proc] = {}
        self._server_hosts: dict[str, str] = {}
        self._roles: dict[str, str] = {}  # extra processes' names -> their role (start_extra)
        self._closed = False
        self.slot = 0
        self._slot_lock: IO[str] | None = None
        self.dev: DevHosts | None = None
        self.l3_uplink = ""  # the L3 host's interface on the external network's wire (DevHosts.l3_port)
        self._made_db = self._made_vhost = False
        amqp = urlsplit(self.services["transport_url"])
        assert amqp.port is not None
        self._ctl = services_for(amqp.port)

    # -- addresses ----------------------------------------------------------------------------

    @property
    def gateway(self) -> str:
        return f"198.18.{self.slot}.1"

    @property
    def database_url(self) -> str:
        return _with_host(_admin_dsn(self.services["database_url"], self.db_name), self.gateway)

    @property
    def transport_url(self) -> str:
        url = urlsplit(_with_host(self.services["transport_url"], self.gateway))
        return urlunsplit((url.scheme, url.netloc, "/" + quote(self.vhost, safe=""), "", ""))

    def host_ip(self, name: str) -> str:
        if name == self.l3_host:
            return self.gateway
        assert self.dev is not None
        return self.dev.host(name).ip

    def host_state_dir(self, name: str) -> Path:
        return self.root / name

    def in_host(self, name: str, argv: Sequence[str]) -> list[str]:
        """argv as run inside dev host `name` (its network and mount namespaces)."""
        assert self.dev is not None
        h = self.dev.host(name)
        return ["nsenter", f"--net=/run/netns/{h.ns}", f"--mount=/proc/{h.holder}/ns/mnt", "--", *argv]

    def server_host(self, uuid: str) -> str:
        """The host of server `uuid` (OS-EXT-SRV-ATTR:host); the last one seen once it is deleted."""
        r = httpx.get(f"{self.base_url}/compute/v2.1/servers/{uuid}", headers={"X-Auth-Token": self.token()},
                      timeout=60)
        if r.status_code == 200:
            host = r.json()["server"].get("OS-EXT-SRV-ATTR:host")
            if host:
                self._server_hosts[uuid] = str(host)
        elif r.status_code != 404:
            raise AssertionError(f"GET server {uuid}: {r.status_code} {r.text}")
        elif uuid not in self._server_hosts:  # deleted before we saw it: Nova's deleted listing
            r = httpx.get(f"{self.base_url}/compute/v2.1/servers/detail", timeout=60,
                          params={"all_tenants": "1", "deleted": "true"}, headers={"X-Auth-Token": self.token()})
            for srv in r.json().get("servers", []) if r.status_code == 200 else []:
                if srv["id"] == uuid and srv.get("OS-EXT-SRV-ATTR:host"):
                    self._server_hosts[uuid] = str(srv["OS-EXT-SRV-ATTR:host"])
        return self._server_hosts.get(uuid, "")

    def server_host_dir(self, uuid: str) -> Path:
        host = self.server_host(uuid)
        assert host, f"server {uuid} has no host"
        return self.host_state_dir(host)

    def host_argv(self, uuid: str, argv: Sequence[str]) -> list[str]:
        host = self.server_host(uuid)
        return self.in_host(host, argv) if host in self.hosts else list(argv)

    def host_path(self, uuid: str, path: str) -> Path:
        host = self.server_host(uuid)
        if host not in self.hosts or self.dev is None:
            return Path(path)
        return Path(f"/proc/{self.dev.host(host).holder}/root") / path.lstrip("/")

    def host_mountinfo(self, uuid: str) -> Path:
        return self.mountinfo_of(self.server_host(uuid))

    def host_dir(self, host: str | None) -> Path:
        assert host, "a cluster has several hosts: name one"
        return self.host_state_dir(host)

    def mountinfo_of(self, host: str | None) -> Path:
        if host not in self.hosts or self.dev is None:
            return Path("/proc/self/mountinfo")
        return Path(f"/proc/{self.dev.host(host).holder}/mountinfo")

    # -- lifecycle ----------------------------------------------------------------------------

    def _write_config(self) -> None:
        extra: dict[str, Any] = dict(self.settings.pop("extra", {}))
        if "qemu" not in self.driver.split(","):
            extra.setdefault("tiny_vm_image", "off")
        data = {
            "database": self.database_url, "transport": self.transport_url,
            "api_url": f"http://{self.gateway}:{self.port}", "l3_host": self.l3_host, "volume_host": self.hosts[0],
            "external_link": self.external, "metrics_port": 0,
            # VXLAN devices of every cluster's L3 host are made in the root namespace, where a VNI
            # (on UDP 4789) can be one device only: each cluster's networks get VNIs of their own
            "vni_ranges": f"{self.slot * 10000}:{self.slot * 10000 + 9999}",
            **({"external_cidr": self.external_cidr} if self.external_cidr else {}),
            **self.settings, "extra": extra,
        }
        self.config.write_text(yaml.safe_dump(data))

    def _env(self) -> dict[str, str]:
        return _clean_env({"PYTHONUNBUFFERED": "1", **CHEAP_PASSWORD_HASH, **self.env})

    def _argv(self, role: str, state: Path, *args: str) -> list[str]:
        prog = [str(BIN / "cumulo")] if (BIN / "cumulo").exists() else [sys.executable, "-m", "cumulo.cli.main"]
        return [*prog, role, "--config", str(self.config), "--state-dir", str(state), "--log-level", "info", *args]

    def _spawn(self, name: str) -> Proc:
        role = self._roles.get(name)
        if role is not None:  # an extra process (start_extra)
            host = f"c{self.tag}-{name}" if role != "api" else ""
            extra = ["--host", "0.0.0.0", "--port", str(free_port("0.0.0.0"))] if role == "api" else ["--host", host]  # noqa: S104
            argv = self._argv(role, self.root / name, *extra)
            ready = f"cumulo {role} is ready"
        elif name == "api":
            argv = self._argv("api", self.state_dir, "--host", "0.0.0.0", "--port", str(self.port))  # noqa: S104
            ready = "cumulo api is ready"
        elif name in ("conductor", "scheduler"):
            argv = self._argv(name, self.root / name, "--host", f"c{self.tag}-ctl")
            ready = f"cumulo {name} is ready"
        else:
            assert name == self.l3_host, name
            real = any(d in ("runc", "qemu") for d in self.driver.split(","))
            argv = self._argv("compute", self.root / name, "--host", name, "--driver", "runc" if real else "fake",
                              *(["--fake-hosts", str(self.fake_hosts)] if self.fake_hosts else []))
            ready = "cumulo compute is ready"
        env = self._env()
        if name == self.l3_host:
            env["CUMULO_UNDERLAY_IP"] = self.gateway
            env["CUMULO_PHYSICAL_INTERFACE_MAPPINGS"] = f"{PUBLIC_PHYSNET}:{self.l3_uplink}"
        self.runs += 1
        proc = Proc(name, argv, self.root / f"{name}.{self.runs}.log", env, ready)
        self.procs[name] = proc
        return proc

    def _start_host(self, name: str) -> None:
        assert self.dev is not None
        asyncio.run(self.dev.start(name, database=self.database_url, transport=self.transport_url,
                                   config=str(self.config), extra=["--driver", self.driver, "--log-level", "info"],
                                   env={k: v for k, v in self._env().items() if k.startswith("CUMULO_")}))

    def _wait_host(self, name: str, timeout: float, since: int = 0) -> None:
        assert self.dev is not None
        h = self.dev.host(name)
        deadline = time.monotonic() + timeout
        while True:
            text = self.process_log(name)
            if "cumulo compute is ready" in text[since:]:
                return
            if not self.dev.running(h):
                raise CumuloStartError(f"dev host {name}'s compute process ended\n{text[-6000:]}")
            if time.monotonic() > deadline:
                raise CumuloStartError(f"dev host {name} not ready after {timeout:.0f}s\n{text[-6000:]}")
            time.sleep(0.2)

    def start(self, timeout: float = START_TIMEOUT) -> ClusterCloud:
        try:
            self._start(timeout)
        except BaseException:
            print(self.log()[-30000:])
            self.close()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.slot, self._slot_lock = _underlay_slot()
        asyncio.run(_pg(_admin_dsn(self.services["database_url"]), f'CREATE DATABASE "{self.db_name}"'))
        self._made_db = True
        services_dir = Path(self.services["dir"])
        self._ctl.rabbitmqctl(services_dir, "add_vhost", self.vhost)
        self._made_vhost = True
        user = urlsplit(self.services["transport_url"]).username or "cumulo"
        self._ctl.rabbitmqctl(services_dir, "set_permissions", "-p", self.vhost, user, ".*", ".*", ".*")
        self.port = free_port("0.0.0.0")  # noqa: S104 - the hosts come over the underlay
        self._write_config()
        for state in [self.root / self.l3_host, *(self.root / h for h in self.hosts)]:
            _leftovers.SESSION_STATE_DIRS.add(str(state.resolve()))
        self.dev = DevHosts(self.root, bridge=f"cucl{self.slot}", cidr=f"198.18.{self.slot}.0/24",
                            name_prefix=f"c{self.tag}-host", physnet=PUBLIC_PHYSNET)
        _leftovers.record_dev_hosts(self.hosts, f"cucl{self.slot}")
        _leftovers.record_dev_hosts([], self.dev.phys_bridge)  # the external wire: the run's too
        asyncio.run(self.dev.up(len(self.hosts), names=self.hosts))
        self.l3_uplink = asyncio.run(self.dev.l3_port(self.l3_host))
        procs = [self._spawn(n) for n in ("api", "conductor", "scheduler", self.l3_host)]
        for name in self.hosts:
            self._start_host(name)
        for proc in procs:
            proc.wait_ready(timeout)
        for name in self.hosts:
            self._wait_host(name, timeout)
        self._disable_l3()

    def _disable_l3(self) -> None:
        """The L3 host carries routers only: its nova-compute service disabled (Nova's os-services)."""
        headers = {"X-Auth-Token": self.token(), "OpenStack-API-Version": "compute 2.53"}
        with httpx.Client(base_url=self.base_url + "/compute/v2.1", headers=headers, timeout=60) as http:
            services: list[dict[str, Any]] = []
            deadline = time.monotonic() + 60
            while not services:
                r = http.get("/os-services", params={"host": self.l3_host, "binary": "nova-compute"})
                assert r.status_code == 200, r.text
                services = r.json()["services"]
                if time.monotonic() > deadline:
                    raise CumuloStartError(f"no nova-compute service row of {self.l3_host}")
                if not services:
                    time.sleep(0.5)
            r = http.put(f"/os-services/{services[0]['id']}",
                         json={"status": "disabled", "disabled_reason": "network-only L3 host"})
            assert r.status_code == 200, r.text

    @property
    def running(self) -> bool:
        return any(p.popen.poll() is None for p in self.procs.values())

    @property
    def pid(self) -> int | None:  # the API process's (CumuloCloud's pid)
        proc = self.procs.get("api")
        return proc.pid if proc else None

    def process_pid(self, name: str) -> int:
        if name in self.procs:
            return self.procs[name].pid
        assert self.dev is not None
        return self.dev.host(name).pid

    def process_log(self, name: str) -> str:
        if name in self.procs:
            return self.procs[name].log()
        try:
            return (self.root / name / "compute.log").read_text(errors="replace")
        except OSError:
            return ""

    def start_extra(self, role: str, name: str, timeout: float = START_TIMEOUT) -> Proc:
        """One more `cumulo <role>` (conductor, scheduler, api) in the root namespace, named `name`
        (its state dir, its log, its service host c<tag>-<name>; an API on a free port of its own,
        in its log): e.g. a second conductor sharing the "conductor" queue. Stopped at close;
        stop_process/kill_process/start_process take its name."""
        assert role in ("api", "conductor", "scheduler") and name not in self.procs and name not in self.hosts, name
        self._roles[name] = role
        proc = self._spawn(name)
        proc.wait_ready(timeout)
        return proc

    def log(self) -> str:
        names = ["api", "conductor", "scheduler", self.l3_host, *self.hosts, *self._roles]
        return "\n".join(f"--- {n} ---\n{self.process_log(n)[-8000:]}" for n in names)

    def stop_process(self, name: str, timeout: float = 60.0) -> None:
        if name in self.procs:
            self.procs[name].stop(timeout)
        else:
            assert self.dev is not None
            asyncio.run(self.dev.stop(name, grace=timeout))

    def kill_process(self, name: str) -> None:
        if name in self.procs:
            proc = self.procs[name]
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(timeout=30)
        else:
            assert self.dev is not None
            asyncio.run(self.dev.kill(name))

    def start_process(self, name: str, timeout: float = START_TIMEOUT) -> None:
        if name in ("api", "conductor", "scheduler", self.l3_host) or name in self._roles:
            self._spawn(name).wait_ready(timeout)
        else:
            since = len(self.process_log(name))
            self._start_host(name)
            self._wait_host(name, timeout, since)

    def stop(self, timeout: float = 60.0) -> int | None:
        """Every process stopped, all at once (SIGTERM by pid, SIGKILL after `timeout`); the dev
        hosts' namespaces (and the servers in them) stay."""
        dev = self.dev
        if dev is not None:
            for h in dev.hosts():
                if dev.running(h):
                    os.kill(h.pid, signal.SIGTERM)
        with ThreadPoolExecutor(max(1, len(self.procs))) as pool:
            list(pool.map(lambda p: p.stop(timeout), list(self.procs.values())))
        if dev is not None:
            for name in self.hosts:
                with contextlib.suppress(Exception):
                    asyncio.run(dev.stop(name, grace=timeout))
        return 0

    def kill(self) -> None:
        for name in list(self.procs):
            self.kill_process(name)
        if self.dev is not None:
            for name in self.hosts:
                asyncio.run(self.dev.kill(name))

    def restart(self, *, crash: bool = False, timeout: float = START_TIMEOUT) -> CumuloCloud:
        raise NotImplementedError("restart single processes: stop_process/kill_process + start_process")

    def close(self) -> None:
        if self._closed:  # once: a second stop would signal pids recorded long ago
            return
        self._closed = True
        errors: list[str] = []
        try:
            self.stop()
        except Exception as exc:  # the teardown goes on
            errors.append(f"stop: {exc!r}")
        if self.dev is not None:
            try:
                asyncio.run(self.dev.down())
            except Exception as exc:
                errors.append(f"dev hosts down: {exc!r}")
            self.dev = None
        from cumulo.network.agent.plumbing import remove_registered

        asyncio.run(remove_registered(str((self.root / self.l3_host).resolve())))
        if self._made_db:
            with contextlib.suppress(Exception):
                _leftovers.record_instances(asyncio.run(self._instances()))
            asyncio.run(_pg(_admin_dsn(self.services["database_url"]),
                            f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            self._made_db = False
        if self._made_vhost:
            self._ctl.rabbitmqctl(Path(self.services["dir"]), "delete_vhost", self.vhost)
            self._made_vhost = False
        if self._slot_lock is not None:
            with contextlib.suppress(FileNotFoundError):  # unlinked while held: the next taker checks the inode
                os.unlink(self._slot_lock.name)
            self._slot_lock.close()
            self._slot_lock = None
        if not KEEP:
            shutil.rmtree(self.root, ignore_errors=True)
        assert not errors, errors

    async def _instances(self) -> set[str]:
        import asyncpg

        conn = await asyncpg.connect(_admin_dsn(self.services["database_url"], self.db_name))
        try:
            return {str(r[0]) for r in await conn.fetch("SELECT uuid FROM instances")}
        finally:
            await conn.close()


def scaled_cloud(options: Mapping[str, Any], services: Mapping[str, str]) -> ClusterCloud:
    """A started cluster.ClusterCloud from a module's `cumulo_options` (driver: the dev hosts'
    drivers; args: --no-external and --config FILE understood, the rest ignored; env: every
    process's; fake_hosts ignored: the hosts are the 3 dev hosts; cluster_fake_hosts: N fake hosts
    `fake-host-1..N` in the L3 host's process, `cumulo compute --fake-hosts N`, e.g. a host offering
    only VM instance types as a module's embedded cloud has)."""
    if not services.get("dir"):
        pytest.skip("the scaled configuration needs the run's RabbitMQ node dir (CUMULO_TEST_SERVICES_DIR)")
    if os.geteuid() != 0 or shutil.which("nsenter") is None or shutil.which("unshare") is None:
        pytest.skip("the scaled configuration needs root, nsenter and unshare (dev hosts in namespaces)")
    driver = str(options.get("driver", "fake"))
    skip_unless_drivers(driver)
    args = list(options.get("args", ()))
    env = dict(options.get("env", {}))
    settings: dict[str, Any] = {}
    if "--config" in args:
        settings.update(yaml.safe_load(Path(args[args.index("--config") + 1]).read_text()) or {})
    cidr, chosen = _external_cidr("runc", args, env)
    external = driver != "fake" and not (chosen and cidr is None) and settings.get("external_link", True) is not False
    if external and not cidr:
        cidr = free_external_cidr()
    root = Path(tempfile.mkdtemp(prefix=_leftovers.cloud_root_prefix() + "cluster-"))
    cloud = ClusterCloud(root, services, drivers=driver, external=external, external_cidr=cidr, env=env,
                         settings=settings, fake_hosts=int(options.get("cluster_fake_hosts", 0)))
    return cloud.start()
