"""The external network's link to the host: one veth pair, `cxh<net hex[:11]>` in the host's
root namespace carrying the external subnet's gateway address (e.g. 172.24.4.1/24), its peer
`cxn<net hex[:11]>` on the bridge of the external network's namespace.

This is the only change Cumulo makes in the root namespace: an address on a veth of its own,
and so a connected route to the external subnet. It never touches the default route, never
bridges a physical interface and never NATs anything to the outside world; from the host,
floating IPs are on-link. `--no-external` simply never calls `ensure_host_link`.

Servers plugged straight into the external network would reach the host's end of the link (and
the cloud's API behind it) but for `host_port`: the link's bridge end as a port with port
security in the external network's security group tables, in the group `HOST_GROUP` whose rules
(`HOST_RULES`) let the host open connections and answer pings, and nothing else in. Routers keep
tenants away from it on their side (router.py).
"""

from __future__ import annotations

import ipaddress
import json
import uuid as uuidlib

from cumulo import host
from cumulo.errors import HostError, Invalid
from cumulo.host.revert import Reverter
from cumulo.netplane import bridge, netns
from cumulo.netplane.netns import IP
from cumulo.netplane.secgroups import Port, Rule

HOST_PREFIX = "cxh"
NS_PREFIX = "cxn"
HOST_GROUP = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "cumulo:netplane:external-host-link"))
HOST_RULES = (Rule("egress", "IPv4"), Rule("egress", "IPv6"), Rule("ingress", "IPv4", "icmp"),
              Rule("ingress", "IPv6", "icmp"))


def _hex(ident: str) -> str:
    try:
        return uuidlib.UUID(str(ident)).hex
    except ValueError:
        raise Invalid(f"not a uuid: {ident!r}") from None


def host_device(network_id: str) -> str:
    return HOST_PREFIX + _hex(network_id)[:11]


def ns_device(network_id: str) -> str:
    return NS_PREFIX + _hex(network_id)[:11]


async def _root_link(dev: str) -> dict[str, object] | None:
    res = await host.run([IP, "-j", "link", "show", "dev", dev], timeout=30, check=False)
    if res.returncode != 0:
        return None
    data = json.loads(res.text or "[]")
    return data[0] if data and isinstance(data[0], dict) else None


async def _root_addresses(dev: str) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    res = await host.run([IP, "-j", "addr", "show", "dev", dev], timeout=30)
    out: set[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = set()
    for link in json.loads(res.text or "[]"):
        for info in link.get("addr_info", []):
            if info.get("scope") == "global" and info.get("local"):
                out.add(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
    return out


async def ensure_host_link(network_id: str, addresses: tuple[str, ...], *, mtu: int = 1500,
                           up: bool | None = None) -> bridge.Change:
    """The external network's namespace and bridge (`up`: its admin state, see bridge.apply), and
    the host link with exactly `addresses` (CIDR form, e.g. ("172.24.4.1/24",)) on its host end
    (idempotent); what changed on the bridge."""
    wanted = {ipaddress.ip_interface(a) for a in addresses}
    if any(a.network.prefixlen == 0 for a in wanted):
        raise Invalid("the host link's prefix cannot be a default route")
    ns = netns.network_ns(network_id)
    hdev, ndev = host_device(network_id), ns_device(network_id)
    async with Reverter() as revert:
        change = await bridge.apply(ns, mtu=mtu, up=up)
        if await _root_link(hdev) is None:
            await bridge.delete_link(ns, ndev)
            await host.run([IP, "link", "add", hdev, "mtu", str(int(mtu)), "type", "veth", "peer", "name", ndev,
                            "netns", ns], timeout=30)
            revert.add(delete_host_link, network_id)
        await host.run([IP, "-n", ns, "link", "set", ndev, "master", bridge.BRIDGE, "mtu", str(int(mtu)), "up"],
                       timeout=30)
        have = await _root_addresses(hdev)
        for a in sorted(wanted - have, key=str):
            await host.run([IP, "addr", "replace", str(a), "dev", hdev], timeout=30)
        for a in have - wanted:
            await host.run([IP, "addr", "del", str(a), "dev", hdev], timeout=30, check=False)
        await host.run([IP, "link", "set", hdev, "mtu", str(int(mtu)), "up"], timeout=30)
        revert.commit()
    return change


async def delete_host_link(network_id: str) -> bool:
    """The host link gone (its peer goes with it); a missing one is fine."""
    return await delete_host_device(host_device(network_id))


async def delete_host_device(dev: str) -> bool:
    if not dev.startswith(HOST_PREFIX) or len(dev) > 15:
        raise Invalid(f"not a Cumulo host link: {dev!r}")
    if await _root_link(dev) is None:
        return False
    res = await host.run([IP, "link", "del", "dev", dev], timeout=30, check=False)
    if res.returncode != 0 and await _root_link(dev) is not None:
        raise HostError(f"cannot delete {dev}: {res.stderr.decode(errors='replace').strip()}")
    return True


async def list_host_links() -> list[str]:
    """Names of the Cumulo host links (cxh...) in the root namespace."""
    res = await host.run([IP, "-j", "link", "show", "type", "veth"], timeout=30)
    return sorted(str(d.get("ifname")) for d in json.loads(res.text or "[]")
                  if isinstance(d, dict) and str(d.get("ifname", "")).startswith(HOST_PREFIX))


async def host_port(network_id: str) -> Port:
    """The host link's bridge end as a port for the external network's security group tables
    (with `HOST_GROUP: HOST_RULES` among their rules): the host's MAC and addresses on the link."""
    hdev = host_device(network_id)
    link = await _root_link(hdev)
    if link is None:
        raise HostError(f"no host link {hdev}")
    addrs = await _root_addresses(hdev)
    return Port(id=network_id, device=ns_device(network_id), mac=str(link.get("address")),
                fixed_ips=tuple(str(a.ip) for a in sorted(addrs, key=str)), security_groups=(HOST_GROUP,))
