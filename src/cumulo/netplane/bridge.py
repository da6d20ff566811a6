"""A network's L2 segment: the Linux bridge `br0` inside the network's namespace `cnet-<uuid>`.

One bridge per namespace, so its name is fixed and short. Its MAC is fixed too (derived from the
namespace name, locally administered), so it never changes as ports come and go (a bridge
otherwise takes the lowest MAC of its ports). STP is off and ports forward at once. The network's
admin_state_up is the bridge's state: a bridge that is down disables all its ports.

Links are read with `ip -j` (JSON) and changed with `ip -n <ns> ...`; everything is idempotent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cumulo import host
from cumulo.errors import HostError
from cumulo.host.revert import Reverter
from cumulo.netplane import netns
from cumulo.netplane.netns import IP

BRIDGE = "br0"


def bridge_mac(ns: str) -> str:
    """A stable, locally administered unicast MAC for the bridge of namespace `ns`."""
    d = hashlib.sha256(ns.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *d[:5]))


async def links(ns: str) -> list[dict[str, Any]]:
    """`ip -j link show` in the namespace: one dict per link (ifname, address, mtu, master, ...)."""
    res = await host.run([IP, "-n", netns.check_name(ns), "-j", "link", "show"], timeout=30)
    data = json.loads(res.text or "[]")
    return [d for d in data if isinstance(d, dict)]


async def link(ns: str, dev: str) -> dict[str, Any] | None:
    """One link of the namespace by name, or None when it (or the namespace) is not there."""
    if not netns.exists(ns):
        return None
    res = await host.run([IP, "-n", ns, "-j", "link", "show", "dev", dev], timeout=30, check=False)
    if res.returncode != 0:
        return None
    data = json.loads(res.text or "[]")
    return data[0] if data and isinstance(data[0], dict) else None


@dataclass(frozen=True)
class Change:
    made: bool = False  # the namespace or the bridge was made
    raised: bool = False  # an existing bridge was brought up (routes through it are gone: re-add them)
    lowered: bool = False  # the bridge was taken down


async def apply(ns: str, bridge: str = BRIDGE, mtu: int = 1500, up: bool | None = None, mac: str | None = None) -> Change:
    """The namespace and its bridge with the given MTU; `up` its administrative state (the
    network's admin_state_up): False takes it down, which disables every port on it (no frame
    crosses the bridge: the servers', the DHCP port's and the routers' ends alike, and the
    namespace's own stack on br0 is cut off too); None leaves an existing bridge as it is and
    brings a new one up. `mac`: a new bridge's MAC (default bridge_mac(ns); a network spanning
    hosts gives each host's its own, as they share one segment). Idempotent; what changed."""
    async with Reverter() as revert:
        made = await netns.ensure(ns)
        if made:
            revert.add(netns.delete, ns)
        current = await link(ns, bridge)
        if current is None:
            await host.run([IP, "-n", ns, "link", "add", bridge, "address", mac or bridge_mac(ns), "mtu", str(int(mtu)),
                            "type", "bridge", "stp_state", "0", "forward_delay", "0"], timeout=30)
            made = True
        elif current.get("mtu") != int(mtu):
            await host.run([IP, "-n", ns, "link", "set", bridge, "mtu", str(int(mtu))], timeout=30)
        is_up = current is not None and "UP" in (current.get("flags") or [])
        want = (current is None or is_up) if up is None else up
        if want and not is_up:
            await host.run([IP, "-n", ns, "link", "set", bridge, "up"], timeout=30)
        elif is_up and not want:
            await host.run([IP, "-n", ns, "link", "set", bridge, "down"], timeout=30)
        revert.commit()
    return Change(made=made, raised=bool(want and not is_up and current is not None),
                  lowered=bool(is_up and not want))


async def ensure(ns: str, bridge: str = BRIDGE, mtu: int = 1500, up: bool | None = None) -> bool:
    """`apply`; returns whether anything was made."""
    return (await apply(ns, bridge, mtu, up)).made


async def is_up(ns: str, bridge: str = BRIDGE) -> bool | None:
    """Whether the bridge is administratively up (None: no such bridge or namespace)."""
    current = await link(ns, bridge)
    return None if current is None else "UP" in (current.get("flags") or [])


async def delete_network(ns: str) -> bool:
    """The network's namespace, its bridge and every port on it, gone (idempotent)."""
    return await netns.delete(ns)


async def ports(ns: str, bridge: str = BRIDGE) -> list[str]:
    """Names of the links enslaved to the bridge (the ports' devices)."""
    if not netns.exists(ns):
        return []
    return sorted(str(d["ifname"]) for d in await links(ns) if d.get("master") == bridge and d.get("ifname"))


async def delete_link(ns: str, dev: str) -> bool:
    """Delete a link of the namespace (a veth takes its peer with it); a missing one is fine."""
    if not netns.exists(ns):
        return False
    res = await host.run([IP, "-n", ns, "link", "del", "dev", dev], timeout=30, check=False)
    if res.returncode == 0:
        return True
    if await link(ns, dev) is None:
        return False
    raise HostError(f"cannot delete {dev} in {ns}: {res.stderr.decode(errors='replace').strip()}")
