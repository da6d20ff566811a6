"""Compute hosts on one machine, each in network namespaces of its own (issue 14, `cumulo dev hosts`).

The underlay is a bridge (`cumulo-ul0`, 198.18.0.1/24: RFC 2544's benchmark range, never the
machine's own networks) in the root namespace. Dev host i is the named network namespace
`cumulo-host-<name>` with loopback up and a veth `ul0` on the bridge holding 198.18.0.(i+1)/24,
and a state dir `<base>/<name>/`. `start` runs `cumulo compute --host <name> --state-dir ...
[--config ...]` in it with `CUMULO_UNDERLAY_IP` set to its address (and the database and transport
URLs in CUMULO_DATABASE / CUMULO_TRANSPORT, never in its argv: `secret_env`),
so PostgreSQL, RabbitMQ and the API are reached at 198.18.0.1 (the bridge's address).

Isolation: each host has a private mount namespace, with a fresh tmpfs on /run/netns and on
/run/cumulo, held by a process of its own (`sleep infinity`, the host's "machine") for as long as
the host lives; its compute process runs in it, so a restarted one finds what the last one made. What the data plane names globally (the network namespaces
`cnet-<network uuid>`, `crtr-<router uuid>`, the containers' `cumulo-<uuid>`, dnsmasq's files in
/run/cumulo/dhcp, the orphan registry /run/cumulo/netplane-owners) is then the host's own: two
hosts carrying one network each have their `cnet-<uuid>`, and neither sees, nor reaps, the other's
(the root namespace's cloud, `cumulo up`, sees neither). runc's state root and QEMU's pidfiles are
in the host's state dir already. Every namespace the host made is pinned only in its mount
namespace, so when the host's last process is gone the kernel frees them (and their links).

`kill NAME` is a host's sudden death: SIGKILL to every process of its mount namespace (the agent,
QEMU, dnsmasq, anything it spawned) and to its runc containers (by its runc root); `down` kills
every host, deletes its runc containers (their cgroups), detaches loop devices backed by files in
its state dir, deletes its namespace (and so its veth) and the bridge, all by name, never by
pattern. Processes are only ever signalled by pid, after checking the pid is still the one
recorded (its start time) or is in the host's mount namespace.

The external network's wire (`physnet="public"`): a second bridge in the root namespace
(`phys_bridge_name(bridge)`, no address: a physical network the machine itself is not on), and
in each host a veth `ex0` on it, the host's interface on physical network "public": `start`
gives the compute process `CUMULO_PHYSICAL_INTERFACE_MAPPINGS=public:ex0`, so its network agent
bridges the flat network `public` to it (netplane/physnet.py) and the scheduler may put servers on
`public` there. `l3_port(name)` makes such an interface in the root namespace for the L3 host (a
`cumulo compute` there, carrying the external network and its host link). The veth is made again
by `start` after a kill (it went with the namespaces of the host's mount namespace) and removed by
`down`, by name.

The state (hosts, pids) is `<base>/hosts.json`; `DevHosts(base)` is the API (the CLI wraps it).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cumulo import host
from cumulo.errors import HostError, Invalid

BRIDGE = "cumulo-ul0"
CIDR = "198.18.0.0/24"
NS_PREFIX = "cumulo-host-"
NAME_PREFIX = "host"
HOST_DEV = "ul0"
PHYS_DEV = "ex0"  # a host's interface on the external network's physical network
RUNC_ROOT = "runc-state"  # under a host's state dir (compute/drivers/runc/core.py)
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
# The host's "machine": a process holding its private mount namespace (its own /run/netns and
# /run/cumulo) for as long as the host lives; compute processes come and go inside it.
# The host's mount namespace starts as a copy of the machine's: a copy of a loop-backed mount
# (another cloud's container root disk or attached volume, mounted at that moment) would keep its
# filesystem open, hence its loop device busy, for as long as the host lives: that cloud's resize,
# detach or delete then waits in vain. The copies go first (lazily, in this namespace only), and so
# do the copies of overlays (a container's rootfs, whose upper dir lives on its loop-backed root
# disk: the copy of the overlay alone kept that disk's filesystem, hence its loop device, busy).
_HOLD = ('findmnt -rn -o TARGET,SOURCE,FSTYPE | while read -r t s f; do case "$s:$f" in /dev/loop*|*:overlay) '
         '[ "$t" = / ] || umount -l "$t" 2>/dev/null;; esac; done; '
         'mount -t tmpfs -o mode=0755 cumulo-netns /run/netns && '
         'mount -t tmpfs -o mode=0755 cumulo-run /run/cumulo && exec sleep infinity')


@dataclass
class DevHost:
    name: str
    index: int
    ip: str
    state_dir: str
    pid: int = 0  # the compute process, 0: not started (or killed)
    start_time: int = 0  # its start time (/proc/<pid>/stat field 22): the pid is still ours
    mnt_ns: int = 0  # the inode of its mount namespace
    holder: int = 0  # the process holding that mount namespace (the host "machine")
    holder_start: int = 0

    @property
    def ns(self) -> str:
        return NS_PREFIX + self.name

    @property
    def log(self) -> Path:
        return Path(self.state_dir) / "compute.log"


def root_veth(bridge: str, name: str) -> str:
    """The bridge end of a host's veth: short (IFNAMSIZ) and derived from the names."""
    return "cu" + hashlib.sha256(f"{bridge}/{name}".encode()).hexdigest()[:10]


def phys_bridge_name(bridge: str) -> str:
    """The external network's wire next to underlay bridge `bridge`."""
    return bridge[:13] + "px"


def l3_dev(bridge: str, name: str) -> str:
    """The root-namespace end a root-namespace host (the L3 host) maps to the physical network."""
    return "cp" + hashlib.sha256(f"{phys_bridge_name(bridge)}/{name}/in".encode()).hexdigest()[:10]


async def _not_an_endpoint(dev: str) -> None:
    """The root namespace's `dev` on the wire answers no ARP and has no IPv6: with Linux's default
    arp_ignore 0 the machine answers a server's ARP for the host link's address (the external
    gateway) on the wire bridge too, with the bridge's MAC, and that server's packets then go to
    an interface without the address and die (an ARP flux, seen as a first ping lost now and then)."""
    await host.run(["sysctl", "-qw", f"net.ipv4.conf.{dev}.arp_ignore=8", f"net.ipv6.conf.{dev}.disable_ipv6=1"],
                   timeout=30)


def _stat(pid: int) -> tuple[int, int] | None:
    """(start time, ppid) of a live process, None when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19]), int(fields[1])


def _mnt_of(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return 0


def _in_mnt(inode: int) -> list[int]:
    """The live processes in the mount namespace with that inode (never this process, never pid 1)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (1, os.getpid()):
            continue
        if _mnt_of(int(entry)) == inode and _stat(int(entry)) is not None:
            out.append(int(entry))
    return sorted(out)


def secret_env(database: str = "", transport: str = "") -> dict[str, str]:
    """The database and transport URLs (passwords in them) as the environment a process reads them
    from (CUMULO_DATABASE, CUMULO_TRANSPORT: /proc/<pid>/environ is its owner's only, unlike the
    cmdline); an empty URL is left to the settings file."""
    return {**({"CUMULO_DATABASE": database} if database else {}),
            **({"CUMULO_TRANSPORT": transport} if transport else {})}


def _cumulo_bin() -> str:
    here = Path(sys.executable).parent / "cumulo"
    return str(here) if here.exists() else (shutil.which("cumulo") or "cumulo")


class DevHosts:
    def __init__(self, base: Path | str, *, bridge: str = BRIDGE, cidr: str = CIDR, name_prefix: str = NAME_PREFIX,
                 ns_prefix: str = NS_PREFIX, physnet: str = "") -> None:
        self.base = Path(base).absolute()
        self.bridge = bridge
        self.physnet = physnet  # "": no external wire (see the module's docstring)
        self.phys_bridge = phys_bridge_name(bridge)
        self.net = ipaddress.IPv4Network(cidr)
        self.name_prefix = name_prefix
        if ns_prefix != NS_PREFIX:
            raise Invalid("dev host namespaces are always cumulo-host-<name>")
        if not re.fullmatch(r"[a-z0-9-]{1,15}", bridge):
            raise Invalid(f"bad bridge name {bridge!r}")

    # ---- state ------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.base / "hosts.json"

    @property
    def gateway(self) -> str:
        """The bridge's address: where hosts reach PostgreSQL, RabbitMQ and the API."""
        return str(self.net.network_address + 1)

    def hosts(self) -> list[DevHost]:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return []
        return [DevHost(**h) for h in data.get("hosts", [])]

    def host(self, name: str) -> DevHost:
        for h in self.hosts():
            if h.name == name:
                return h
        raise Invalid(f"no dev host {name!r} (known: {', '.join(h.name for h in self.hosts()) or 'none'})")

    def _save(self, hosts: list[DevHost]) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"bridge": self.bridge, "cidr": str(self.net), "hosts": [asdict(h) for h in hosts]},
                                  indent=1))
        tmp.replace(self.state_file)

    def _update(self, h: DevHost) -> None:
        self._save([h if x.name == h.name else x for x in self.hosts()])

    # ---- the underlay and the hosts ---------------------------------------------------------

    async def _link(self, dev: str, ns: str | None = None) -> dict[str, Any] | None:
        argv = ["ip", *(["-n", ns] if ns else []), "-j", "link", "show", "dev", dev]
        res = await host.run(argv, timeout=30, check=False)
        if res.returncode != 0:
            return None
        data = json.loads(res.text or "[]")
        return data[0] if data else None

    async def _bridge(self) -> None:
        if await self._link(self.bridge) is None:
            await host.run(["ip", "link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"],
                           timeout=30)
        res = await host.run(["ip", "-j", "addr", "show", "dev", self.bridge], timeout=30)
        have = {f"{a['local']}/{a['prefixlen']}" for d in json.loads(res.text or "[]") for a in d.get("addr_info", [])}
        want = f"{self.gateway}/{self.net.prefixlen}"
        if want not in have:
            await host.run(["ip", "addr", "add", want, "dev", self.bridge], timeout=30)
        await host.run(["ip", "link", "set", self.bridge, "up"], timeout=30)

    async def up(self, count: int, names: list[str] | None = None) -> list[DevHost]:
        """The bridge and hosts 1..count (named <prefix><i>, or `names`), each with its namespace,
        veth and state dir; idempotent (a host already there is checked and completed, none removed)."""
        names = names or [f"{self.name_prefix}{i}" for i in range(1, count + 1)]
        if len(names) > self.net.num_addresses - 3:
            raise Invalid(f"at most {self.net.num_addresses - 3} dev hosts fit in {self.net}")
        for n in names:
            if not _NAME.fullmatch(n):  # fullmatch: "$" would let a trailing newline in
                raise Invalid(f"bad dev host name {n!r} (lower case letters, digits and '-', up to 31)")
        await self._bridge()
        if self.physnet:
            await self._wire()
        known = {h.name: h for h in self.hosts()}
        out = []
        for i, name in enumerate(names, start=1):
            h = known.get(name) or DevHost(name=name, index=i, ip=str(self.net.network_address + 1 + i),
                                           state_dir=str(self.base / name))
            known[name] = h
            self._save(list(known.values()))
            await self._plumb(h)
            out.append(h)
        return out

    async def _plumb(self, h: DevHost) -> None:
        Path(h.state_dir).mkdir(parents=True, exist_ok=True)
        if not Path("/run/netns", h.ns).exists():
            await host.run(["ip", "netns", "add", h.ns], timeout=30)
        await host.run(["ip", "-n", h.ns, "link", "set", "lo", "up"], timeout=30)
        outer = root_veth(self.bridge, h.name)
        if await self._link(HOST_DEV, h.ns) is None:
            await host.run(["ip", "link", "del", "dev", outer], timeout=30, check=False)  # a half-made one
            await host.run(["ip", "link", "add", outer, "type", "veth", "peer", "name", HOST_DEV, "netns", h.ns],
                           timeout=30)
        await host.run(["ip", "link", "set", outer, "master", self.bridge, "up"], timeout=30)
        res = await host.run(["ip", "-n", h.ns, "-j", "addr", "show", "dev", HOST_DEV], timeout=30)
        have = {a["local"] for d in json.loads(res.text or "[]") for a in d.get("addr_info", [])}
        if h.ip not in have:
            await host.run(["ip", "-n", h.ns, "addr", "add", f"{h.ip}/{self.net.prefixlen}", "dev", HOST_DEV],
                           timeout=30)
        await host.run(["ip", "-n", h.ns, "link", "set", HOST_DEV, "up"], timeout=30)
        await self._plumb_physnet(h)

    async def _wire(self) -> None:
        if await self._link(self.phys_bridge) is None:
            await host.run(["ip", "link", "add", self.phys_bridge, "type", "bridge", "stp_state", "0",
                            "forward_delay", "0"], timeout=30)
        await _not_an_endpoint(self.phys_bridge)
        await host.run(["ip", "link", "set", self.phys_bridge, "up"], timeout=30)

    async def _plumb_physnet(self, h: DevHost) -> None:
        """Host h's `ex0` on the wire, unless its pair is there (`ex0` may be inside a network's
        namespace of the host then, where its network agent moved it)."""
        if not self.physnet:
            return
        outer = root_veth(self.phys_bridge, h.name)
        if await self._link(outer) is None:
            await host.run(["ip", "-n", h.ns, "link", "del", "dev", PHYS_DEV], timeout=30, check=False)  # a half-made one
            await host.run(["ip", "link", "add", outer, "type", "veth", "peer", "name", PHYS_DEV, "netns", h.ns],
                           timeout=30)
            await host.run(["ip", "-n", h.ns, "link", "set", PHYS_DEV, "up"], timeout=30)
        await host.run(["ip", "link", "set", outer, "master", self.phys_bridge, "up"], timeout=30)

    async def l3_port(self, name: str) -> str:
        """An interface on the wire for a host in the root namespace (the L3 host `name`): the
        end to map (`public:<it>`); its other end is a port of the wire."""
        if not self.physnet:
            raise Invalid("these dev hosts have no external wire (physnet)")
        await self._wire()
        outer, inner = root_veth(self.phys_bridge, f"l3/{name}"), l3_dev(self.bridge, name)
        if await self._link(outer) is None:
            await host.run(["ip", "link", "del", "dev", inner], timeout=30, check=False)
            await host.run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner], timeout=30)
            await _not_an_endpoint(inner)  # until the L3 host's agent moves it into its namespace
            await host.run(["ip", "link", "set", inner, "up"], timeout=30)
        await host.run(["ip", "link", "set", outer, "master", self.phys_bridge, "up"], timeout=30)
        return inner

    # ---- the compute processes --------------------------------------------------------------

    def running(self, h: DevHost) -> bool:
        st = _stat(h.pid) if h.pid else None
        return st is not None and st[0] == h.start_time

    def holding(self, h: DevHost) -> bool:
        st = _stat(h.holder) if h.holder else None
        return st is not None and st[0] == h.holder_start and _mnt_of(h.holder) == h.mnt_ns

    async def _hold(self, h: DevHost) -> DevHost:
        """The host's mount namespace, made once (a new one after a kill) and held by a process of
        its own, so a compute process that restarts finds the namespaces, dnsmasq and containers
        its previous run made, as on a real machine. nsenter, not `ip netns exec`: that one
        remounts /sys, and the cgroup mounts under it (which runc needs) would be gone."""
        if self.holding(h):
            return h
        for d in ("/run/netns", "/run/cumulo"):
            Path(d).mkdir(parents=True, exist_ok=True)  # the mount points (in the root namespace, as iproute2 makes them)
        proc = subprocess.Popen(  # noqa: S603
            ["nsenter", f"--net=/run/netns/{h.ns}", "--", "unshare", "--mount", "--propagation", "private", "--",
             "/bin/sh", "-c", _HOLD], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        mine = _mnt_of(os.getpid())
        deadline = time.monotonic() + 30
        while True:
            st = _stat(proc.pid)
            if proc.poll() is not None or st is None:
                raise HostError(f"dev host {h.name}: its mount namespace could not be made")
            try:
                exe = Path(os.readlink(f"/proc/{proc.pid}/exe")).name
            except OSError:
                exe = ""
            if exe == "sleep" and _mnt_of(proc.pid) not in (0, mine):
                break
            if time.monotonic() > deadline:
                raise HostError(f"dev host {h.name}: its mount namespace holder did not start")
            await asyncio.sleep(0.02)
        h.holder, h.holder_start, h.mnt_ns = proc.pid, st[0], _mnt_of(proc.pid)
        self._update(h)
        return h

    def command(self, h: DevHost, *, config: str | None = None, extra: list[str] | None = None,
                program: list[str] | None = None) -> list[str]:
        """The argv that runs host h's `cumulo compute` (or `program`, a Python one: tests) in its
        namespaces (the host's network namespace and the mount namespace its holder keeps). The
        database and transport URLs are not in it (`secret_env`): an argv is every local user's to
        read in /proc/<pid>/cmdline, and those URLs carry passwords."""
        prog = program or [_cumulo_bin(), "compute", "--host", h.name, "--state-dir", h.state_dir,
                           *(["--config", config] if config else []), *(extra or [])]
        return ["nsenter", f"--net=/run/netns/{h.ns}", f"--mount=/proc/{h.holder}/ns/mnt", "--", *prog]

    async def start(self, name: str, *, database: str = "", transport: str = "", config: str | None = None,
                    extra: list[str] | None = None, env: dict[str, str] | None = None,
                    program: list[str] | None = None) -> DevHost:
        """Start host `name`'s compute process (idempotent: a running one stays); returns the host
        once the process runs in its own mount namespace. Its output goes to <state dir>/compute.log."""
        h = self.host(name)
        if self.running(h):
            return h
        h = await self._hold(h)
        await self._plumb_physnet(h)  # after a kill: ex0 went with the host's network namespaces
        argv = self.command(h, config=config, extra=extra, program=program)
        mapping = {"CUMULO_PHYSICAL_INTERFACE_MAPPINGS": f"{self.physnet}:{PHYS_DEV}"} if self.physnet else {}
        environ = {**os.environ, "CUMULO_UNDERLAY_IP": h.ip, **mapping, **secret_env(database, transport), **(env or {})}
        with open(h.log, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environ,  # noqa: S603
                                    start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            st = _stat(proc.pid)
            if proc.poll() is not None or st is None:
                raise HostError(f"dev host {name}'s compute process ended at once: {self._tail(h)}")
            mnt = _mnt_of(proc.pid)
            try:
                exe = os.readlink(f"/proc/{proc.pid}/exe")
            except OSError:
                exe = ""
            if mnt == h.mnt_ns and "python" in Path(exe).name:
                break
            if time.monotonic() > deadline:
                raise HostError(f"dev host {name}'s compute process did not start: {self._tail(h)}")
            await asyncio.sleep(0.05)
        h.pid, h.start_time = proc.pid, st[0]
        self._update(h)
        return h

    @staticmethod
    def _tail(h: DevHost) -> str:
        try:
            return h.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def containers(self, h: DevHost) -> dict[str, int]:
        """The host's runc containers: id -> init pid (0 when not running)."""
        root = Path(h.state_dir) / RUNC_ROOT
        if not root.is_dir():
            return {}
        res = await host.run(["runc", "--root", str(root), "list", "--format", "json"], timeout=30, check=False)
        if res.returncode != 0:
            return {}
        return {str(c["id"]): int(c.get("pid") or 0) for c in json.loads(res.stdout or b"null") or []}

    async def kill(self, name: str) -> list[int]:
        """Host `name` dies at once: SIGKILL to its compute process, everything in its mount
        namespace (QEMU, dnsmasq, ...) and its runc containers' processes. Returns the pids."""
        h = self.host(name)
        mnt = h.mnt_ns
        pids = set(_in_mnt(mnt)) if mnt and mnt != _mnt_of(os.getpid()) else set()
        for pid, started in ((h.pid, h.start_time), (h.holder, h.holder_start)):
            st = _stat(pid) if pid else None
            if st is not None and st[0] == started:
                pids.add(pid)
        pids |= {p for p in (await self.containers(h)).values() if p > 1}
        for pid in sorted(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while any(_stat(p) is not None for p in pids):
            if time.monotonic() > deadline:
                raise HostError(f"dev host {name}: processes {sorted(p for p in pids if _stat(p))} survived SIGKILL")
            await asyncio.sleep(0.05)
        h.pid, h.start_time, h.holder, h.holder_start, h.mnt_ns = 0, 0, 0, 0, 0
        self._update(h)
        return sorted(pids)

    async def stop(self, name: str, grace: float = 10.0) -> None:
        """Stop host `name`'s compute process gently (SIGTERM, then SIGKILL after `grace`); the
        servers it runs go on (as an agent restart leaves them)."""
        h = self.host(name)
        if self.running(h):
            os.kill(h.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.running(h) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.running(h):
                os.kill(h.pid, signal.SIGKILL)
            while _stat(h.pid) is not None and time.monotonic() < deadline + 10:
                await asyncio.sleep(0.05)
        h.pid, h.start_time = 0, 0
        self._update(h)

    async def down(self, *, purge: bool = False) -> None:
        """Every host killed and removed (containers, loop devices of its state dir, namespace,
        veth), then the bridge; `purge` also removes the base dir (state dirs, logs)."""
        for h in self.hosts():
            await self.kill(h.name)
            root = Path(h.state_dir) / RUNC_ROOT
            for cid in await self.containers(h):
                await host.run(["runc", "--root", str(root), "delete", "--force", cid], timeout=60, check=False)
            await self._detach_loops(Path(h.state_dir))
            if os.path.lexists(Path("/run/netns", h.ns)):
                await host.run(["ip", "netns", "delete", h.ns], timeout=30)
            await host.run(["ip", "link", "del", "dev", root_veth(self.bridge, h.name)], timeout=30, check=False)
        if await self._link(self.phys_bridge) is not None:
            # its ports by name (the hosts' and l3_port's ends: each pair goes with its end here)
            res = await host.run(["ip", "-j", "link", "show", "master", self.phys_bridge], timeout=30, check=False)
            for d in json.loads(res.text or "[]") if res.returncode == 0 else []:
                await host.run(["ip", "link", "del", "dev", str(d["ifname"])], timeout=30, check=False)
            await host.run(["ip", "link", "del", "dev", self.phys_bridge], timeout=30)
        if await self._link(self.bridge) is not None:
            await host.run(["ip", "link", "del", "dev", self.bridge], timeout=30)
        if purge:
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            self.state_file.unlink(missing_ok=True)

    @staticmethod
    async def _detach_loops(state_dir: Path) -> None:
        res = await host.run(["losetup", "-J", "-l"], timeout=30, check=False)
        if res.returncode != 0 or not res.stdout.strip():
            return
        prefix = str(state_dir.absolute()) + "/"
        for d in json.loads(res.text).get("loopdevices", []):
            if str(d.get("back-file") or "").startswith(prefix):
                await host.run(["losetup", "-d", str(d["name"])], timeout=30, check=False)


def leftovers(hosts: DevHosts, names: list[str]) -> list[str]:
    """What of the dev hosts `names` and the bridge is still on the machine (for tests): namespaces,
    links, processes in their mount namespaces. Empty when `down` left nothing."""
    out = [f"netns {NS_PREFIX}{n}" for n in names if os.path.lexists(Path("/run/netns", NS_PREFIX + n))]
    for n in [hosts.bridge, *(root_veth(hosts.bridge, n) for n in names), hosts.phys_bridge,
              *(root_veth(hosts.phys_bridge, n) for n in names)]:
        if Path("/sys/class/net", n).exists():
            out.append(f"link {n}")
    return out
