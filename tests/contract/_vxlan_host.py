"""One dev host's data plane for tests/contract/test_vxlan.py, run inside the host (DevHosts.start:
its network namespace, a private mount namespace with its own /run/netns and /run/cumulo).

It serves JSON lines on a unix socket (argv[1]); each request is applied with the network agent's
own plumbing (cumulo.network.agent.plumbing.RealPlumbing: bridge, VXLAN port and FDB, security
group tables) and answered with one JSON line:

    {"op": "network", "plan": {...}}   ensure the network (NetworkPlan fields; tunnel; ports)
    {"op": "server", "net": id, "port": {...}}  a stand-in server: namespace + veth on br0
    {"op": "ping", "port": id, "to": ip}        busybox ping from the server's namespace
    {"op": "vxlan", "net": id}                  the VXLAN devices and FDB peers of the network
    {"op": "drop", "net": id}                   the host leaves the network
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from typing import Any

from cumulo.netplane import bridge, netns, secgroups, vxlan
from cumulo.network.agent.plumbing import RealPlumbing
from cumulo.network.agent.state import NetworkPlan

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
GROUP = "5ec0f1e0-0000-4000-8000-000000000001"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)  # noqa: S603,S607


def _plan(d: dict[str, Any]) -> NetworkPlan:
    ports = tuple(secgroups.Port(id=p["id"], device=netns.port_device(p["id"]), mac=p["mac"], fixed_ips=(p["ip"],),
                                 security_groups=(GROUP,)) for p in d["ports"])
    rules = {GROUP: tuple(secgroups.Rule(**r) for r in d["rules"])}
    t = d.get("tunnel")
    return NetworkPlan(id=d["id"], mtu=d.get("mtu", vxlan.MTU), devices=frozenset(x.device for x in ports),
                       firewall=secgroups.Firewall(ports=ports, rules=rules),
                       tunnel=vxlan.Tunnel(vni=t["vni"], local=t["local"], peers=tuple(t["peers"])) if t else None)


async def handle(plumbing: RealPlumbing, req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "network":
        await plumbing.ensure_network(_plan(req["plan"]))
        return True
    if op == "server":
        p, ns = req["port"], netns.network_ns(req["net"])
        name = "ctr-" + p["id"][:8]
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", ns, "link", "add", netns.port_device(p["id"]), "mtu", str(vxlan.MTU), "type", "veth", "peer", "name",
           "eth0", "netns", name)
        ip("-n", ns, "link", "set", netns.port_device(p["id"]), "master", bridge.BRIDGE, "up")
        ip("-n", name, "link", "set", "eth0", "address", p["mac"], "mtu", str(vxlan.MTU), "up")
        ip("-n", name, "addr", "add", p["ip"] + "/24", "dev", "eth0")
        return True
    if op == "ping":
        res = await asyncio.to_thread(subprocess.run, ["ip", "netns", "exec", "ctr-" + req["port"][:8], BUSYBOX, "ping",
                                                       "-c", "1", "-W", "1", req["to"]], capture_output=True, timeout=30)
        return res.returncode == 0
    if op == "vxlan":
        ns = netns.network_ns(req["net"])
        devs = await vxlan.devices(ns)
        return {"devices": devs, "peers": {d: sorted(await vxlan.fdb_peers(ns, d)) for d in devs},
                "netns": netns.exists(ns)}
    if op == "drop":
        await plumbing.drop_network(req["net"])
        return True
    raise ValueError(op)


async def main(path: str) -> None:
    plumbing = RealPlumbing(owner=path)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                out = {"ok": await handle(plumbing, json.loads(line))}
            except Exception as exc:  # noqa: BLE001 - handed to the test
                out = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(out).encode() + b"\n")
            await writer.drain()
        writer.close()

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    server = await asyncio.start_unix_server(serve, sock=sock)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
