"""A network's VXLAN port (issue 14): how its bridge `br0` reaches the same network on other hosts.

One kernel VXLAN device per network and host, `vxlan-<vni>` (learning on, UDP port 4789, local =
the host's underlay address), is made in the host's own (underlay) namespace and then moved into
the network's namespace `cnet-<uuid>` and enslaved to br0 there: a VXLAN device keeps the UDP
socket of the namespace it was made in, so the tunnel runs over the underlay while the frames it
carries stay in the network's namespace. Broadcast, unknown unicast and multicast go to every
peer by head-end replication: one all-zeros FDB entry (`00:00:00:00:00:00 dst <peer>`) per other
host carrying the network; unicast is learnt from what arrives. The device and its entries go
with the namespace when the host stops carrying the network.

As Neutron's l2population, the MACs of the network's ports bound on other hosts are also written
(`Tunnel.macs`: `bridge fdb replace <mac> dst <their host> dynamic`), so a port that moved to another
host (cold or live migration, evacuation) is reached at its new host as soon as this host's agent
syncs, not only after the MAC's learnt entry towards the old host ages out (300 s) or a frame from
it arrives: an evacuated VM that sends nothing until asked was unreachable across hosts, its
peers' learnt entry pointing at the dead host's VTEP, where the frames were dropped. The entries
stay `dynamic`, so learning still repoints them first when a live-migrated guest announces itself.
A unicast entry towards an address that is no longer a peer (a host that left the network) goes.

`ensure` makes the device and its FDB match a `Tunnel` (idempotent: a device with another VNI or
local address is made again; peer entries added and deleted one by one). `underlay_ns` names the
namespace to make the device in (None: the calling process's own, which is the host's underlay
namespace when each host is a process in its own network namespace; tests name one).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from cumulo import host
from cumulo.errors import HostError, Invalid
from cumulo.host.revert import Reverter
from cumulo.netplane import netns
from cumulo.netplane.bridge import BRIDGE
from cumulo.netplane.netns import IP

PORT = 4789
OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
MTU = 1500 - OVERHEAD
BRIDGE_CMD = "bridge"
ZERO_MAC = "00:00:00:00:00:00"
PREFIX = "vxlan-"
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True)
class Tunnel:
    vni: int
    local: str  # this host's underlay address
    peers: tuple[str, ...] = ()  # the underlay addresses of the other hosts carrying the network, sorted
    macs: tuple[tuple[str, str], ...] = ()  # (MAC, its host's underlay address) of ports on other hosts, sorted

    def __post_init__(self) -> None:
        if not 1 <= int(self.vni) < (1 << 24):
            raise Invalid(f"bad VXLAN VNI {self.vni!r}")
        for a in (self.local, *self.peers, *(dst for _, dst in self.macs)):
            ipaddress.IPv4Address(a)  # raises ValueError for anything else
        for mac, _ in self.macs:
            if not _MAC.fullmatch(mac):
                raise Invalid(f"bad MAC {mac!r}")

    @property
    def device(self) -> str:
        return device(self.vni)


def device(vni: int) -> str:
    return f"{PREFIX}{int(vni)}"


def _ip(ns: str | None) -> list[str]:
    return [IP] if ns is None else [IP, "-n", netns.check_name(ns)]


async def details(ns: str, dev: str) -> dict[str, Any] | None:
    """`ip -d -j link show dev` in the namespace: the link with its linkinfo, None when absent."""
    if not netns.exists(ns):
        return None
    res = await host.run([IP, "-n", ns, "-d", "-j", "link", "show", "dev", dev], timeout=30, check=False)
    if res.returncode != 0:
        return None
    data = json.loads(res.text or "[]")
    return data[0] if data and isinstance(data[0], dict) else None


def _matches(link: dict[str, Any], tun: Tunnel) -> bool:
    info = (link.get("linkinfo") or {})
    data = info.get("info_data") or {}
    return (info.get("info_kind") == "vxlan" and data.get("id") == tun.vni and data.get("local") == tun.local
            and data.get("port") == PORT)


async def fdb_peers(ns: str, dev: str) -> set[str]:
    """The destinations of the device's all-zeros (head-end replication) FDB entries."""
    res = await host.run([BRIDGE_CMD, "-n", ns, "-j", "fdb", "show", "dev", dev], timeout=30)
    out = set()
    for e in json.loads(res.text or "[]"):
        if isinstance(e, dict) and e.get("mac") == ZERO_MAC and e.get("dst"):
            out.add(str(e["dst"]))
    return out


async def fdb_unicast(ns: str, dev: str) -> dict[str, str]:
    """The device's unicast FDB entries that have a destination: MAC -> underlay address."""
    res = await host.run([BRIDGE_CMD, "-n", ns, "-j", "fdb", "show", "dev", dev], timeout=30)
    out = {}
    for e in json.loads(res.text or "[]"):
        if isinstance(e, dict) and e.get("mac") and e.get("mac") != ZERO_MAC and e.get("dst"):
            out[str(e["mac"]).lower()] = str(e["dst"])
    return out


async def _sync_macs(ns: str, dev: str, tun: Tunnel) -> None:
    want = dict(tun.macs)
    have = await fdb_unicast(ns, dev)
    for mac, dst in sorted(want.items()):
        if have.get(mac) != dst:
            await host.run([BRIDGE_CMD, "-n", ns, "fdb", "replace", mac, "dev", dev, "dst", dst, "self", "dynamic"],
                           timeout=30)
    for mac, dst in sorted(have.items()):
        if mac not in want and dst not in tun.peers:  # towards a host that left the network
            await host.run([BRIDGE_CMD, "-n", ns, "fdb", "del", mac, "dev", dev, "dst", dst, "self"],
                           timeout=30, check=False)


async def ensure(ns: str, tun: Tunnel, *, mtu: int = MTU, bridge: str = BRIDGE, underlay_ns: str | None = None) -> bool:
    """The VXLAN port of the network in `ns` (whose bridge exists) as `tun` says; returns whether
    the device was made now."""
    dev = tun.device
    current = await details(ns, dev)
    made = False
    async with Reverter() as revert:
        if current is not None and not _matches(current, tun):
            await host.run([IP, "-n", ns, "link", "del", "dev", dev], timeout=30)
            current = None
        if current is None:
            # a leftover of a crash between the two steps below, in the underlay namespace
            await host.run([*_ip(underlay_ns), "link", "del", "dev", dev], timeout=30, check=False)
            await host.run([*_ip(underlay_ns), "link", "add", dev, "type", "vxlan", "id", str(tun.vni), "dstport",
                            str(PORT), "local", tun.local, "learning"], timeout=30)
            revert.add(host.run, [*_ip(underlay_ns), "link", "del", "dev", dev], timeout=30, check=False)
            await host.run([*_ip(underlay_ns), "link", "set", "dev", dev, "netns", netns.check_name(ns)], timeout=30)
            revert.add(host.run, [IP, "-n", ns, "link", "del", "dev", dev], timeout=30, check=False)
            made = True
        if (made or current is None or current.get("master") != bridge or current.get("mtu") != int(mtu)
                or "UP" not in (current.get("flags") or [])):
            await host.run([IP, "-n", ns, "link", "set", "dev", dev, "master", bridge, "mtu", str(int(mtu)), "up"],
                           timeout=30)
        have = await fdb_peers(ns, dev)
        for peer in sorted(set(tun.peers) - have):
            await host.run([BRIDGE_CMD, "-n", ns, "fdb", "append", ZERO_MAC, "dev", dev, "dst", peer, "self",
                            "permanent"], timeout=30)
        for peer in sorted(have - set(tun.peers)):
            res = await host.run([BRIDGE_CMD, "-n", ns, "fdb", "del", ZERO_MAC, "dev", dev, "dst", peer, "self"],
                                 timeout=30, check=False)
            if res.returncode != 0 and peer in await fdb_peers(ns, dev):
                raise HostError(f"cannot delete the FDB entry to {peer} of {dev} in {ns}: "
                                f"{res.stderr.decode(errors='replace').strip()}")
        await _sync_macs(ns, dev, tun)
        revert.commit()
    return made


async def devices(ns: str) -> list[str]:
    """The VXLAN devices in the namespace (by name)."""
    if not netns.exists(ns):
        return []
    res = await host.run([IP, "-n", ns, "-j", "link", "show", "type", "vxlan"], timeout=30, check=False)
    if res.returncode != 0:
        return []
    return sorted(str(d["ifname"]) for d in json.loads(res.text or "[]")
                  if isinstance(d, dict) and str(d.get("ifname", "")).startswith(PREFIX))


async def remove(ns: str, keep: str | None = None) -> list[str]:
    """The namespace's VXLAN devices other than `keep`, deleted (their FDB goes with them)."""
    gone = []
    for dev in await devices(ns):
        if dev != keep:
            await host.run([IP, "-n", ns, "link", "del", "dev", dev], timeout=30, check=False)
            gone.append(dev)
    return gone
