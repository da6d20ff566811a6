"""The metadata address 169.254.169.254 in a network's namespace, and a socket listening on it.

Every `cnet-<uuid>` namespace gets, idempotently (`ensure`):

- `169.254.169.254/32` on its bridge `br0` (the namespace's own stack, on the segment): a server
  with a link route to it finds it by ARP;
- `table bridge cumulo_md`: a frame from a port to 169.254.169.254:80 sent to any other MAC
  (the subnet's gateway, a server's default route) is taken for the namespace's own stack (its
  destination MAC becomes br0's, its packet type host), so the servers need no route of their
  own; it runs after the security groups' anti-spoofing (priority -200), so a port with port
  security on cannot pose as another's address;
- replies from 169.254.169.254 leave through br0 whatever the namespace's other routes (policy
  rule `from 169.254.169.254 lookup 169`, table 169: `default dev br0`), so they never pass a
  port's anti-spoofing (the DHCP port's veth, say).

`ensure` returns a non-blocking TCP socket listening on 169.254.169.254:80, made in a thread
that joined the namespace (a socket stays in the namespace it was made in): the caller serves
it on its event loop (asyncio.start_server(sock=...)). No process per network, no host port.
A listening socket holds its namespace alive: close it before deleting the namespace.
"""

from __future__ import annotations

import json
import os
import socket
from string import Template

from cumulo import host
from cumulo.host.revert import Reverter
from cumulo.netplane import bridge, netns, nft
from cumulo.netplane.netns import IP

ADDRESS = "169.254.169.254"
PORT = 80
TABLE = "cumulo_md"
ROUTE_TABLE = 169
RULE_PRIORITY = 169

STEAL = Template("""\
\tchain prerouting {
\t\ttype filter hook prerouting priority -100; policy accept;
\t\tether daddr != $mac ether type ip ip daddr $address tcp dport $port meta pkttype set host ether daddr set $mac
\t}
""")


def render(ns: str, mac: str | None = None) -> str:
    """The nft script making `table bridge cumulo_md` of namespace `ns` (replaced whole); `mac`:
    its bridge's (default bridge_mac(ns); a network spanning hosts gives each host's bridge its own)."""
    mac = nft.mac(mac or bridge.bridge_mac(netns.check_name(ns)))
    body = STEAL.substitute(mac=mac, address=nft.address(ADDRESS), port=int(PORT))
    return nft.replace_table("bridge", TABLE, body)


async def _has_address(ns: str) -> bool:
    res = await host.run([IP, "-n", ns, "-j", "addr", "show", "dev", bridge.BRIDGE], timeout=30)
    for link in json.loads(res.text or "[]"):
        for info in link.get("addr_info", []):
            if info.get("local") == ADDRESS and int(info.get("prefixlen", 0)) == 32:
                return True
    return False


async def _has_rule(ns: str) -> bool:
    res = await host.run([IP, "-n", ns, "-j", "rule", "show"], timeout=30)
    for rule in json.loads(res.text or "[]"):
        if rule.get("src") == ADDRESS and str(rule.get("table")) == str(ROUTE_TABLE):
            return True
    return False


async def plumb(ns: str) -> None:
    """The address, the reply route and the steal table in `ns` (whose bridge must exist)."""
    netns.check_name(ns)
    async with Reverter() as revert:
        if not await _has_address(ns):
            await host.run([IP, "-n", ns, "addr", "replace", f"{ADDRESS}/32", "dev", bridge.BRIDGE], timeout=30)
            revert.add(host.run, [IP, "-n", ns, "addr", "del", f"{ADDRESS}/32", "dev", bridge.BRIDGE], check=False)
        await host.run([IP, "-n", ns, "route", "replace", "default", "dev", bridge.BRIDGE, "table", str(ROUTE_TABLE)],
                       timeout=30)
        if not await _has_rule(ns):
            await host.run([IP, "-n", ns, "rule", "add", "from", ADDRESS, "lookup", str(ROUTE_TABLE),
                            "priority", str(RULE_PRIORITY)], timeout=30)
        # the bridge's own MAC, read: a VXLAN network's bridge has a per-host one (plumbing), and a
        # frame rewritten to another MAC is flooded over the tunnel instead of reaching this stack
        br = await bridge.link(ns, bridge.BRIDGE)
        await nft.apply(ns, render(ns, str(br["address"]) if br and br.get("address") else None))
        revert.commit()


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ADDRESS, PORT))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def listen(ns: str) -> socket.socket:
    """A new listening socket on 169.254.169.254:80 inside `ns` (plumbed already)."""
    return await netns.run_in(ns, _listen)


async def ensure(ns: str) -> socket.socket:
    """Plumb `ns` for metadata (idempotent) and return a new listening socket made inside it."""
    await plumb(ns)
    return await listen(ns)


def identity(ns: str) -> tuple[int, int] | None:
    """(device, inode) of the namespace now (None: not there): a socket made in an older namespace
    of the same name must be replaced."""
    try:
        st = os.stat(netns.path_of(ns))
    except OSError:
        return None
    return st.st_dev, st.st_ino


async def remove(ns: str) -> None:
    """The steal table, the rule and the address gone (a missing namespace is fine)."""
    if not netns.exists(ns):
        return
    await nft.apply(ns, nft.delete_table_script("bridge", TABLE))
    await host.run([IP, "-n", ns, "rule", "del", "from", ADDRESS, "lookup", str(ROUTE_TABLE)], timeout=30, check=False)
    await host.run([IP, "-n", ns, "addr", "del", f"{ADDRESS}/32", "dev", bridge.BRIDGE], timeout=30, check=False)
