"""A flat (provider) network's uplink on a host: the host's interface on that physical network.

As Neutron's Linux bridge agent with `physical_interface_mappings = public:eth1`: each compute
host names, per physical network, the interface that is on it (setting
`physical_interface_mappings`, "physnet:ifname,..."). A host carrying a flat network whose
`provider:physical_network` it maps moves that interface from its own (underlay) namespace into
the network's namespace `cnet-<uuid>` and enslaves it to br0 there, as it does with a VXLAN
device: the network's servers on every host meet on the physical network's wire. The interface is
the host's, never Cumulo's: when the host stops carrying the network the interface goes back to
the host's namespace before `cnet-<uuid>` is deleted (`release`), so it is never destroyed with
the namespace. One flat network per physical network (Neutron's rule too): an interface can be in
one namespace only.

A host that maps no interface for a network's physical network is no candidate for servers on it
(scheduler filter PhysicalNetworkFilter, on the physnets each compute node reports: `reported`).
A single-host cloud (no `underlay_ip`: `cumulo up`) carries every physical network locally, and a
fake host plumbs nothing: both report "*" (any).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from cumulo import host
from cumulo.errors import Invalid
from cumulo.netplane import bridge, netns
from cumulo.netplane.netns import IP

ANY = "*"
_PHYSNET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def mappings(text: str) -> dict[str, str]:
    """The setting `physical_interface_mappings` ("public:eth1,other:eth2") as {physnet: ifname};
    an Invalid names a bad entry."""
    out: dict[str, str] = {}
    for entry in (e.strip() for e in str(text or "").split(",")):
        if not entry:
            continue
        physnet, sep, ifname = (p.strip() for p in entry.partition(":"))
        if not sep or not _PHYSNET.match(physnet) or not _IFNAME.match(ifname):
            raise Invalid(f"physical_interface_mappings: bad entry {entry!r} (physnet:interface)")
        if physnet in out or ifname in out.values():
            raise Invalid(f"physical_interface_mappings: {entry!r} maps a physical network or interface twice")
        out[physnet] = ifname
    return out


def reported(mapped: Mapping[str, str], *, single_host: bool, plumbs: bool) -> list[str]:
    """The physical networks a compute node reports (compute_nodes.details["physnets"])."""
    if single_host or not plumbs:
        return [ANY]
    return sorted(mapped)


def carries(reported_physnets: Iterable[str], wanted: Iterable[str]) -> bool:
    """Whether a node reporting `reported_physnets` can take a server on each of `wanted`."""
    have = set(reported_physnets)
    return ANY in have or set(wanted) <= have


async def _in(ns: str | None, dev: str) -> bool:
    argv = [IP, *(["-n", netns.check_name(ns)] if ns else []), "link", "show", "dev", dev]
    return (await host.run(argv, timeout=30, check=False)).returncode == 0


async def ensure_uplink(ns: str, dev: str, *, mtu: int = 1500, br: str = bridge.BRIDGE) -> bool:
    """The host's interface `dev` in the network's namespace `ns` (whose bridge exists), a port of
    its bridge, up; returns whether it was moved now. A `dev` neither here nor there is an error
    naming the setting (the host's mapping names an interface it does not have)."""
    moved = False
    if not await _in(ns, dev):
        if not await _in(None, dev):
            raise Invalid(f"physical_interface_mappings names {dev!r}, which this host does not have")
        await host.run([IP, "link", "set", "dev", dev, "netns", netns.check_name(ns)], timeout=30)
        moved = True
    current = await bridge.link(ns, dev)
    if (moved or current is None or current.get("master") != br or current.get("mtu") != int(mtu)
            or "UP" not in (current.get("flags") or [])):
        await host.run([IP, "-n", ns, "link", "set", "dev", dev, "master", br, "mtu", str(int(mtu)), "up"], timeout=30)
    return moved


async def release(ns: str, devs: Iterable[str]) -> list[str]:
    """The host's interfaces among `devs` that are in namespace `ns` moved back to this process's
    own namespace (the host's), before `ns` is deleted; the names moved."""
    if not netns.exists(ns):
        return []
    out = []
    for dev in sorted(set(devs)):
        if await _in(ns, dev):
            await host.run([IP, "-n", ns, "link", "set", "dev", dev, "nomaster"], timeout=30, check=False)
            await host.run([IP, "-n", ns, "link", "set", "dev", dev, "netns", str(os.getpid())], timeout=30)
            out.append(dev)
    return out
