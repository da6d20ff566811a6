"""A network's L2 segment: the Linux bridge `br0` inside the network's namespace `cnet-<uuid>`.

One bridge per namespace, so its name is fixed and short. Its MAC is fixed too (derived from the
namespace name, locally administered), so it never changes as ports come and go (a bridge
otherwise takes the lowest MAC of its ports). STP is off and ports forward at once.

Links are read with `ip -j` (JSON) and changed with `ip -n <ns> ...`; everything is idempotent.
"""

from __future__ import annotations

import hashlib
import json
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


async def ensure(ns: str, bridge: str = BRIDGE, mtu: int = 1500) -> bool:
    """The namespace and its bridge, up, with the given MTU; returns whether anything was made."""
    async with Reverter() as revert:
        made = await netns.ensure(ns)
        if made:
            revert.add(netns.delete, ns)
        current = await link(ns, bridge)
        if current is None:
            await host.run([IP, "-n", ns, "link", "add", bridge, "address", bridge_mac(ns), "mtu", str(int(mtu)),
                            "type", "bridge", "stp_state", "0", "forward_delay", "0"], timeout=30)
            made = True
        elif current.get("mtu") != int(mtu):
            await host.run([IP, "-n", ns, "link", "set", bridge, "mtu", str(int(mtu))], timeout=30)
        if current is None or "UP" not in (current.get("flags") or []):
            await host.run([IP, "-n", ns, "link", "set", bridge, "up"], timeout=30)
        revert.commit()
    return made


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
