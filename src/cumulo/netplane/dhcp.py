"""DHCP for a network, as Neutron's DHCP agent does it: one dnsmasq per network namespace,
serving every subnet of the network that has DHCP enabled, each port's fixed IP by its MAC.

dnsmasq listens on an interface of its own on the network's bridge: a veth pair in `cnet-<net>`,
`tap<port hex[:11]>` on `br0` and `ns-<port hex[:11]>` holding the DHCP port's addresses (the
network:dhcp port's MAC and fixed IPs). Its files live in `<run_dir>/<network id>/`:

- `host`: one line per fixed IP, `mac,host-10-0-0-5,10.0.0.5[,set:port-<id>]` (the tag only for a
  port with extra_dhcp_opts);
- `opts`: per subnet `tag:subnet-<id>,option:router,<gateway>`, DNS servers, host routes as
  classless static routes (option 121 and Microsoft's 249, the default route appended); per
  port its extra_dhcp_opts, `tag:port-<id>,option:<name>,<value>` (`option6:` for IPv6);
- `leases`, `pid` and `log` (dnsmasq's own output at start).

A change to hosts or options is a SIGHUP (dnsmasq re-reads both files); a change to the subnets
(the command line) is a restart. dnsmasq is stopped by the pid in its pid file, after checking
that the process is the dnsmasq of that file (a pid can be reused). Its DNS is off (`--port=0`):
servers get the subnet's dns_nameservers, as Neutron does when they are set.

dnsmasq drops root for `nobody` before it reads the hosts and options files (at start and at
each SIGHUP), so `run_dir` must be reachable by `nobody`: not under the cloud's private (0700)
state dir. The default is `RUN_DIR` (/run/cumulo/dhcp, made 0755; the files in it are 0644 and
hold only what DHCP hands out anyway), as libvirt keeps its dnsmasq files in a world-readable dir.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import signal
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from cumulo import host
from cumulo.errors import HostError, Invalid
from cumulo.host.revert import Reverter
from cumulo.netplane import bridge, netns, nft
from cumulo.netplane.netns import IP

DNSMASQ = "dnsmasq"
NSENTER = "nsenter"
RUN_DIR = Path("/run/cumulo/dhcp")
DOMAIN = "openstacklocal"
_OPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_BAD_VALUE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Subnet:
    id: str
    cidr: str
    gateway_ip: str | None = None
    enable_dhcp: bool = True
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination, nexthop)
    ipv6_address_mode: str | None = None
    metadata_nexthop: str | None = None  # 169.254.169.254/32 via this address (Neutron: the router, or the DHCP port)


@dataclass(frozen=True)
class Host:
    """A port dnsmasq serves: its MAC, its (subnet id, ip) pairs, its extra DHCP options."""

    port_id: str
    mac: str
    fixed_ips: tuple[tuple[str, str], ...]
    extra_dhcp_opts: tuple[tuple[str, str, int], ...] = ()  # (opt_name, opt_value, ip_version)


@dataclass(frozen=True)
class Config:
    network_id: str
    subnets: tuple[Subnet, ...]
    hosts: tuple[Host, ...] = ()
    mtu: int = 1500
    lease_seconds: int = 86400
    domain: str = DOMAIN


@dataclass(frozen=True)
class Interface:
    """dnsmasq's own port: the network:dhcp port's id, MAC and addresses in CIDR form."""

    port_id: str
    mac: str
    addresses: tuple[str, ...]

    @property
    def bridge_end(self) -> str:
        return "tap" + _hex(self.port_id)[:11]

    @property
    def device(self) -> str:
        return "ns-" + _hex(self.port_id)[:11]


@dataclass(frozen=True)
class Paths:
    dir: Path

    @classmethod
    def of(cls, run_dir: Path, network_id: str) -> Paths:
        return cls(Path(run_dir) / str(uuidlib.UUID(_hex(network_id))))

    @property
    def hosts(self) -> Path:
        return self.dir / "host"

    @property
    def opts(self) -> Path:
        return self.dir / "opts"

    @property
    def leases(self) -> Path:
        return self.dir / "leases"

    @property
    def pid(self) -> Path:
        return self.dir / "pid"

    @property
    def log(self) -> Path:
        return self.dir / "log"


def _hex(ident: str) -> str:
    try:
        return uuidlib.UUID(str(ident)).hex
    except ValueError:
        raise Invalid(f"not a uuid: {ident!r}") from None


def _served(cfg: Config) -> list[Subnet]:
    """The subnets dnsmasq hands addresses for (IPv6 SLAAC is the router's advertisement)."""
    return [s for s in cfg.subnets if s.enable_dhcp and not (nft.network(s.cidr).version == 6
                                                            and s.ipv6_address_mode == "slaac")]


def _literal(ip: str) -> str:
    addr = nft.address(ip)
    return f"[{addr}]" if addr.version == 6 else str(addr)


def hostname(ip: str) -> str:
    return "host-" + str(nft.address(ip)).replace(".", "-").replace(":", "-")


def render_hosts(cfg: Config) -> str:
    served = {s.id for s in _served(cfg)}
    lines = []
    for h in sorted(cfg.hosts, key=lambda h: h.port_id):
        tag = f",set:port-{_hex(h.port_id)}" if h.extra_dhcp_opts else ""
        for subnet_id, ip in h.fixed_ips:
            if subnet_id in served:
                lines.append(f"{nft.mac(h.mac)},{hostname(ip)},{_literal(ip)}{tag}\n")
    return "".join(lines)


def _option(version: int, tag: str, name: str, *values: str) -> str:
    opt = f"option6:{name}" if version == 6 else (name if name.isdigit() else f"option:{name}")
    return ",".join([f"tag:{tag}", opt, *values])


def render_opts(cfg: Config) -> str:
    lines: list[str] = []
    for s in _served(cfg):
        version = nft.network(s.cidr).version
        tag = f"subnet-{_hex(s.id)}"
        if s.dns_nameservers:
            lines.append(_option(version, tag, "dns-server", *(_literal(d) for d in s.dns_nameservers)))
        if version != 4:
            continue
        gateway = str(nft.address(s.gateway_ip)) if s.gateway_ip else None
        routes = []
        for dest, nexthop in s.host_routes:
            net, hop = nft.network(dest), nft.address(nexthop)
            if net.version != 4:
                continue
            if net.prefixlen == 0:
                gateway = gateway or str(hop)
            else:
                routes.append(f"{net},{hop}")
        if s.metadata_nexthop:
            routes.append(f"169.254.169.254/32,{nft.address(s.metadata_nexthop)}")
        if routes:
            if gateway:
                routes.append(f"0.0.0.0/0,{gateway}")
            lines.append(_option(4, tag, "classless-static-route", ",".join(routes)))
            lines.append(_option(4, tag, "249", ",".join(routes)))
        lines.append(_option(4, tag, "router", gateway) if gateway else _option(4, tag, "router"))
    for h in sorted(cfg.hosts, key=lambda h: h.port_id):
        versions: set[int] = {nft.address(ip).version for _, ip in h.fixed_ips}
        for name, value, opt_version in h.extra_dhcp_opts:
            if opt_version not in versions or not _OPT_NAME.match(name) or _BAD_VALUE.search(value):
                continue  # the API refuses these; a stale row never reaches dnsmasq's parser
            lines.append(_option(opt_version, f"port-{_hex(h.port_id)}", name, value))
    return "".join(line + "\n" for line in lines)


def argv(cfg: Config, paths: Paths, iface: Interface) -> list[str]:
    """dnsmasq's command line (after `ip netns exec <ns>`)."""
    cmd = [DNSMASQ, "--no-hosts", "--no-resolv", "--port=0", "--conf-file=/dev/null",
           f"--pid-file={paths.pid}", f"--dhcp-hostsfile={paths.hosts}", f"--dhcp-optsfile={paths.opts}",
           f"--dhcp-leasefile={paths.leases}", "--bind-interfaces", f"--interface={iface.device}",
           "--except-interface=lo", f"--domain={cfg.domain}"]
    leases = 0
    for s in _served(cfg):
        net = nft.network(s.cidr)
        tag = f"set:subnet-{_hex(s.id)}"
        if net.version == 4:
            cmd.append(f"--dhcp-range={tag},{net.network_address},static,{net.netmask},{int(cfg.lease_seconds)}s")
        elif net.prefixlen <= 64:
            cmd.append(f"--dhcp-range={tag},{net.network_address},static,{net.prefixlen},{int(cfg.lease_seconds)}s")
        leases += min(net.num_addresses, 1 << 24)
    if cfg.mtu > 0:
        cmd.append(f"--dhcp-option-force=option:mtu,{int(cfg.mtu)}")
    cmd.append(f"--dhcp-lease-max={max(1, min(leases, 1 << 24))}")
    return cmd


def _write(path: Path, text: str) -> bool:
    """Write text if it differs (tmp + rename, readable by dnsmasq's unprivileged user)."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def _make_dirs(path: Path) -> None:
    """path and any missing parent, 0755 whatever the umask (`cumulo up` runs with 077)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)


def _write_files(paths: Paths, hosts_text: str, opts_text: str) -> bool:
    _make_dirs(paths.dir)
    os.chmod(paths.dir.parent, 0o755)
    changed = _write(paths.hosts, hosts_text)
    return _write(paths.opts, opts_text) or changed


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def running_pid(paths: Paths) -> int | None:
    """The pid of the dnsmasq of this pid file, if it runs (a reused pid is not ours)."""
    try:
        pid = int(paths.pid.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    args = _cmdline(pid) if pid > 0 else []
    if args and os.path.basename(args[0]) == DNSMASQ and f"--pid-file={paths.pid}" in args:
        return pid
    return None


async def ensure_interface(ns: str, iface: Interface) -> None:
    """dnsmasq's veth in the namespace: one end on br0, the other with the DHCP port's MAC and addresses."""
    nft.mac(iface.mac)
    addrs = [ipaddress.ip_interface(a) for a in iface.addresses]
    async with Reverter() as revert:
        if await bridge.link(ns, iface.device) is None:
            await host.run([IP, "-n", ns, "link", "add", iface.device, "address", iface.mac, "type", "veth",
                            "peer", "name", iface.bridge_end], timeout=30)
            revert.add(bridge.delete_link, ns, iface.device)
        await host.run([IP, "-n", ns, "link", "set", iface.bridge_end, "master", bridge.BRIDGE, "up"], timeout=30)
        await host.run([IP, "-n", ns, "link", "set", iface.device, "address", iface.mac, "up"], timeout=30)
        have = await _addresses(ns, iface.device)
        for a in addrs:
            if a not in have:
                await host.run([IP, "-n", ns, "addr", "replace", str(a), "dev", iface.device], timeout=30)
        for a in have - set(addrs):
            await host.run([IP, "-n", ns, "addr", "del", str(a), "dev", iface.device], timeout=30, check=False)
        revert.commit()


async def _addresses(ns: str, dev: str) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    res = await host.run([IP, "-n", ns, "-j", "addr", "show", "dev", dev], timeout=30)
    out: set[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = set()
    for link in json.loads(res.text or "[]"):
        for info in link.get("addr_info", []):
            if info.get("scope") == "global" and info.get("local"):
                out.add(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
    return out


async def _wait_pid(paths: Paths, deadline: float) -> int:
    while True:
        pid = await asyncio.to_thread(running_pid, paths)
        if pid is not None:
            return pid
        if time.monotonic() > deadline:
            raise HostError(f"dnsmasq did not write {paths.pid}")
        await asyncio.sleep(0.02)


async def ensure(run_dir: Path, ns: str, cfg: Config, iface: Interface, *, interface_known: bool = False) -> int:
    """dnsmasq serving `cfg` in `ns` on `iface`: started, reloaded (SIGHUP) or restarted as needed.
    Returns its pid. With no subnet to serve it is stopped instead (and 0 returned).
    `interface_known`: the caller made sure of `iface` in this very namespace already (the agent
    between two syncs), so its links and addresses are not read again (four `ip` runs)."""
    paths = Paths.of(run_dir, cfg.network_id)
    if not _served(cfg):
        await stop(run_dir, cfg.network_id)
        return 0
    if not interface_known:
        await ensure_interface(ns, iface)
    changed = await asyncio.to_thread(_write_files, paths, render_hosts(cfg), render_opts(cfg))
    want = argv(cfg, paths, iface)
    pid = await asyncio.to_thread(running_pid, paths)
    if pid is not None and _cmdline(pid) == want:
        if changed:
            os.kill(pid, signal.SIGHUP)
        return pid
    if pid is not None:
        await stop(run_dir, cfg.network_id, keep_files=True)
    # nsenter joins only the network namespace. `ip netns exec` would also give dnsmasq a mount
    # namespace of its own, a copy of every mount on the host at that moment (the host's root is
    # often private: nothing propagates), and a long-lived copy pins other servers' root disks,
    # volumes and overlays (on this cloud or another): their loop devices never let go.
    rc = await host.run_to_file([NSENTER, f"--net={netns.NETNS_DIR / netns.check_name(ns)}", "--", *want],
                                str(paths.log), timeout=30)
    if rc != 0:
        text = await asyncio.to_thread(lambda: paths.log.read_text(errors="replace") if paths.log.exists() else "")
        raise HostError(f"dnsmasq for {ns} failed to start ({rc}): {text.strip()[-1000:]}")
    return await _wait_pid(paths, time.monotonic() + 10)


async def stop(run_dir: Path, network_id: str, *, keep_files: bool = False) -> bool:
    """Stop the network's dnsmasq (SIGTERM, then SIGKILL after 5 s) and drop its files. Returns
    whether one was running."""
    paths = Paths.of(run_dir, network_id)
    pid = await asyncio.to_thread(running_pid, paths)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _cmdline(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if _cmdline(pid):
            os.kill(pid, signal.SIGKILL)
    if not keep_files:
        await asyncio.to_thread(_remove_dir, paths.dir)
    return pid is not None


def _remove_dir(path: Path) -> None:
    if not path.is_dir():
        return
    for child in path.iterdir():
        child.unlink(missing_ok=True)
    path.rmdir()


async def list_running(run_dir: Path) -> dict[str, int]:
    """network id -> pid of every dnsmasq Cumulo runs (by the pid files under the state dir)."""
    def scan() -> dict[str, int]:
        root = Path(run_dir)
        out: dict[str, int] = {}
        if not root.is_dir():
            return out
        for d in root.iterdir():
            pid = running_pid(Paths(d))
            if pid is not None:
                out[d.name] = pid
        return out

    return await asyncio.to_thread(scan)


async def list_dirs(run_dir: Path) -> list[str]:
    """network ids with a DHCP directory under the state dir, running or not."""
    def scan() -> list[str]:
        root = Path(run_dir)
        return sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []

    return await asyncio.to_thread(scan)
