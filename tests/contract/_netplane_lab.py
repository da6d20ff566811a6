"""A small lab for the data plane's contract tests: networks (`cnet-<uuid>` with br0, made by
netplane.bridge) and stand-in servers, each a namespace `cdpt-<8 hex>` with a veth `eth0` whose
other end `tap<port hex[:11]>` sits on a network's bridge, made with plain `ip` commands.

Packets are real: listeners and clients are TCP sockets opened inside a namespace (a socket stays
in the namespace of the thread that made it), and busybox's udhcpc asks dnsmasq for a lease.
Everything the lab makes is removed by its own name at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from cumulo.netplane import bridge, dhcp, external, netns
from cumulo.network.agent import plumbing

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
MISSING = (
    "the data plane needs root" if os.geteuid() != 0
    else "iproute2's ip is missing" if shutil.which("ip") is None
    else "nftables' nft is missing (apt-get install nftables)" if shutil.which("nft") is None
    else "busybox is missing (apt-get install busybox-static)" if not os.path.exists(BUSYBOX)
    else ""
)
DNSMASQ_MISSING = "" if shutil.which("dnsmasq") else "dnsmasq is missing (apt-get install dnsmasq-base)"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30).stdout  # noqa: S603,S607


def new_mac() -> str:
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in os.urandom(3))


@dataclass
class Server:
    ns: str
    port_id: str
    device: str
    mac: str
    address: str  # without prefix

    def listen(self, port: int, address: str = "0.0.0.0") -> socket.socket:  # noqa: S104
        return listen_in(self.ns, port, address)

    def connect(self, address: str, port: int, source: str | None = None, timeout: float = 1.0) -> str | None:
        return connect_from(self.ns, address, port, source, timeout)


def listen_in(ns: str | None, port: int, address: str = "0.0.0.0") -> socket.socket:  # noqa: S104
    def make() -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.create_server((address, port), family=family, reuse_port=False)
        sock.settimeout(5)
        return sock

    return make() if ns is None else netns.run_in_sync(ns, make)


def connect_from(ns: str | None, address: str, port: int, source: str | None = None,
                 timeout: float = 1.0) -> str | None:
    """Connect from namespace `ns` (None: the host) and read one line; None when it fails.
    The listener side answers with the peer address it saw (see `serve_peer`)."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        if source:
            s.bind((source, 0))
        return s

    sock = make() if ns is None else netns.run_in_sync(ns, make)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        return sock.recv(100).decode().strip()
    except OSError:
        return None
    finally:
        sock.close()


def serve_peer(listener: socket.socket, count: int = 1) -> None:
    """Accept `count` connections, answering each with the address it came from (run in a thread)."""
    for _ in range(count):
        try:
            conn, peer = listener.accept()
        except OSError:
            return
        with conn:
            conn.sendall(f"{peer[0]}\n".encode())


@dataclass
class Lab:
    namespaces: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    dhcp_networks: list[str] = field(default_factory=list)
    state_dir: Path | None = None
    network_ids: list[str] = field(default_factory=list)
    owner: str = field(default_factory=lambda: f"/nonexistent/netplane-lab-{uuidlib.uuid4().hex}")

    async def network(self) -> tuple[str, str]:
        """(network id, its namespace) with br0 up."""
        net_id = str(uuidlib.uuid4())
        ns = netns.network_ns(net_id)
        self.namespaces.append(ns)
        self.network_ids.append(net_id)
        # A cloud running on the host meanwhile (another test run) must not reap it as an orphan.
        plumbing.register(plumbing.REGISTRY, self.owner, set(self.network_ids))
        await bridge.ensure(ns)
        return net_id, ns

    def router_ns(self, router_id: str) -> str:
        ns = netns.router_ns(router_id)
        self.namespaces.append(ns)
        self.network_ids.append(router_id)  # recorded as the lab's, like its networks
        plumbing.register(plumbing.REGISTRY, self.owner, set(self.network_ids))
        return ns

    def server(self, net_ns: str, cidr: str, gateway: str | None = None, mac: str | None = None,
               port_id: str | None = None) -> Server:
        port_id = port_id or str(uuidlib.uuid4())
        name = "cdpt-" + port_id[:8]
        self.namespaces.append(name)
        device, mac = netns.port_device(port_id), mac or new_mac()
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", net_ns, "link", "add", device, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("-n", net_ns, "link", "set", device, "master", bridge.BRIDGE, "up")
        ip("-n", name, "link", "set", "eth0", "address", mac, "up")
        if cidr:
            ip("-n", name, "addr", "add", cidr, "dev", "eth0", *(["nodad"] if ":" in cidr else []))
        if gateway:
            ip("-n", name, "route", "add", "default", "via", gateway)
        return Server(name, port_id, device, mac, cidr.split("/")[0])

    async def cleanup(self) -> None:
        if self.state_dir is not None:
            for n in self.dhcp_networks:
                await dhcp.stop(self.state_dir, n)
        for h in self.host_links:
            await external.delete_host_device(h)
        for name in reversed(self.namespaces):
            if os.path.lexists(netns.NETNS_DIR / name):
                subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)  # noqa: S603,S607
        if self.network_ids:
            plumbing._entry(plumbing.REGISTRY, self.owner).unlink(missing_ok=True)
        left = set(os.listdir(netns.NETNS_DIR)) if netns.NETNS_DIR.is_dir() else set()
        assert not left & set(self.namespaces), f"namespaces left: {left & set(self.namespaces)}"
