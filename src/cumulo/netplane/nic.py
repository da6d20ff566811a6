"""A server's NIC on its network's bridge, plugged the way each kind of server needs it.

- a container: a veth pair made in one step, its bridge end `tap<port hex[:11]>` in the network's
  namespace on `br0`, its other end made straight in the container's namespace as `eth<i>` with the
  port's MAC; then address, routes and MTU set there directly (what a CNI bridge plugin does). No
  DHCP is needed, and nothing passes through the host's root namespace.
- a VM: a tap `tap<port hex[:11]>` made inside the network's namespace (TUNSETIFF from a thread
  that joined it), on `br0`; its fd goes to QEMU (`-netdev tap,fd=N` or QMP getfd). The tap is
  not persistent: it goes away with the last fd, so a QEMU that dies takes its taps with it.

The bridge end of either gets the port's MAC with its first byte set to 0xfe (as libvirt does),
so the bridge, whose own MAC is fixed (bridge.py), never adopts it. Every function takes
anything shaped like the compute drivers' NicSpec (the `Nic` Protocol).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import struct
from typing import Protocol

from cumulo import host
from cumulo.errors import HostError, Invalid
from cumulo.host.revert import Reverter
from cumulo.netplane import bridge, netns
from cumulo.netplane.netns import IP

TUN = "/dev/net/tun"
_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI, _IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")


class Nic(Protocol):
    @property
    def mac(self) -> str: ...
    @property
    def netns(self) -> str: ...
    @property
    def bridge(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def addresses(self) -> tuple[str, ...]: ...
    @property
    def gateway(self) -> str | None: ...
    @property
    def routes(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def mtu(self) -> int: ...


def check(nic: Nic) -> None:
    """Raise Invalid unless every field is what the host commands may carry."""
    if not _MAC.match(nic.mac.lower()) or int(nic.mac[:2], 16) & 1:
        raise Invalid(f"bad unicast MAC address {nic.mac!r}")
    netns.check_name(nic.netns)
    for name in (nic.bridge, nic.device):
        ifname(name)
    if not 68 <= int(nic.mtu) <= 65535:
        raise Invalid(f"bad MTU {nic.mtu!r}")
    try:
        for a in nic.addresses:
            ipaddress.ip_interface(a)
        if nic.gateway:
            ipaddress.ip_address(nic.gateway)
        for dest, hop in nic.routes:
            ipaddress.ip_network(dest, strict=False)
            ipaddress.ip_address(hop)
    except ValueError as exc:
        raise Invalid(f"bad NIC address or route: {exc}") from None


def ifname(name: str) -> str:
    if not _IFNAME.match(name or ""):
        raise Invalid(f"bad interface name {name!r}")
    return name


def host_mac(mac: str) -> str:
    """The bridge end's MAC: the port's with its first byte 0xfe."""
    return "fe" + mac.lower()[2:]


def _config_lines(nic: Nic, dev: str) -> list[str]:
    """`ip -batch` lines that give `dev` (in its namespace) the NIC's addresses and routes."""
    lines = [f"link set dev {dev} mtu {int(nic.mtu)} up"]
    for a in nic.addresses:
        iface = ipaddress.ip_interface(a)
        lines.append(f"addr replace {iface.with_prefixlen} dev {dev}" + (" nodad" if iface.version == 6 else ""))
    for dest, hop in nic.routes:
        lines.append(f"route replace {ipaddress.ip_network(dest, strict=False)} via {ipaddress.ip_address(hop)} dev {dev}")
    if nic.gateway:
        gw = ipaddress.ip_address(nic.gateway)
        lines.append(f"{'-6 ' if gw.version == 6 else ''}route replace default via {gw} dev {dev}")
    return lines


async def configure(nic: Nic, target_ns: str, dev: str) -> None:
    """Address, routes, MTU and link up for `dev` in `target_ns`, in one `ip -batch` (idempotent)."""
    script = "\n".join(_config_lines(nic, dev)) + "\n"
    await host.run([IP, "-n", netns.check_name(target_ns), "-batch", "-"], stdin=script.encode(), timeout=30)


async def plug_veth(nic: Nic, target_ns: str, dev: str) -> None:
    """The container end `dev` (eth<i>) in `target_ns`, the bridge end nic.device on nic.bridge in
    nic.netns, configured (a stale pair of the same name is replaced). Undone on failure."""
    check(nic)
    netns.check_name(target_ns)
    ifname(dev)
    if not netns.exists(nic.netns):
        raise HostError(f"network namespace {nic.netns} does not exist")
    async with Reverter() as revert:
        mtu = str(int(nic.mtu))
        # One command: both ends made, the bridge end enslaved and up (two processes per NIC in all).
        add = [IP, "-n", nic.netns, "link", "add", "dev", nic.device, "address", host_mac(nic.mac),
               "mtu", mtu, "master", nic.bridge, "up", "type", "veth", "peer", "name", dev,
               "address", nic.mac.lower(), "mtu", mtu, "netns", target_ns]
        res = await host.run(add, timeout=30, check=False)
        if res.returncode != 0:  # a stale pair of that name (a crash): replaced, else the error
            if await bridge.link(nic.netns, nic.device) is None:
                raise HostError(f"ip link add {nic.device} failed: {res.stderr.decode(errors='replace').strip()}")
            await bridge.delete_link(nic.netns, nic.device)
            await host.run(add, timeout=30)
        revert.add(bridge.delete_link, nic.netns, nic.device)
        await configure(nic, target_ns, dev)
        revert.commit()


async def unplug(nic_netns: str, device: str) -> bool:
    """Remove a NIC's bridge end (a veth takes its container end along); idempotent."""
    return await bridge.delete_link(nic_netns, ifname(device))


def _open_tap_here(device: str) -> int:
    """In the thread's namespace: a new (non-persistent) tap `device`; its fd (close-on-exec)."""
    fd = os.open(TUN, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", device.encode(), _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR))
    except OSError:
        os.close(fd)
        raise
    return fd


async def open_tap(nic: Nic) -> int:
    """A tap nic.device inside nic.netns, up on nic.bridge; returns its fd (the caller hands it to
    QEMU and closes its own copy). The tap goes away once every fd of it is closed."""
    check(nic)
    try:
        fd = await netns.run_in(nic.netns, lambda: _open_tap_here(nic.device))
    except OSError as exc:
        raise HostError(f"cannot create tap {nic.device} in {nic.netns}: {exc}") from exc
    try:
        await host.run([IP, "-n", nic.netns, "link", "set", "dev", nic.device, "address", host_mac(nic.mac),
                        "mtu", str(int(nic.mtu)), "master", nic.bridge, "up"], timeout=30)
    except BaseException:
        os.close(fd)
        raise
    return fd
