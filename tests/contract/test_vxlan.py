"""Tenant networks across hosts over kernel VXLAN, with real namespaces and packets (issue 14).

Two dev hosts (cumulo.dev.hosts: a network namespace each on a test underlay bridge, a private
mount namespace each) run the network agent's plumbing (tests/contract/_vxlan_host.py) for the
same network, whose namespace `cnet-<uuid>` each host then has under the same name. A stand-in
server on each host pings the other across the tunnel; a security group change on one host's port
applies there only; when a host leaves the network its namespace (and so the VXLAN port) goes and
the other host's FDB entry to it is removed; nothing is left on the machine afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cumulo.dev.hosts import DevHosts, leftovers
from cumulo.netplane import netns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "bridge", "nft", "unshare"))
    or not (shutil.which("busybox") or os.path.exists("/bin/busybox")),
    reason="needs root, iproute2 (ip, bridge), nft, unshare and busybox")

WORKER = Path(__file__).with_name("_vxlan_host.py")
EGRESS = {"direction": "egress", "ethertype": "IPv4"}
ICMP_IN = {"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}


class Host:
    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        deadline = time.monotonic() + 60
        while not self.sock.exists():
            assert time.monotonic() < deadline, f"the worker never listened on {self.sock}"
            await asyncio.sleep(0.05)
        self.reader, self.writer = await asyncio.open_unix_connection(str(self.sock))

    async def __call__(self, **req: Any) -> Any:
        assert self.reader is not None and self.writer is not None
        self.writer.write(json.dumps(req).encode() + b"\n")
        await self.writer.drain()
        out = json.loads(await asyncio.wait_for(self.reader.readline(), 120))
        assert "error" not in out, out["error"]
        return out["ok"]

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _until(fn: Any, want: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := await fn()) != want:
        assert time.monotonic() < deadline, f"{what}: still {got!r}"
        await asyncio.sleep(0.1)


async def test_two_hosts_one_network_over_vxlan(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    third = random.randint(100, 250)  # noqa: S311 - a test range of 198.18.0.0/15
    dev = DevHosts(tmp_path / "dev", bridge=f"cuv{tag}", cidr=f"198.18.{third}.0/24", name_prefix=f"v{tag}-")
    names = [f"v{tag}-1", f"v{tag}-2"]
    net_id, vni = str(uuid.uuid4()), random.randint(1000, 16_000_000)  # noqa: S311
    ports = [{"id": str(uuid.uuid4()), "mac": f"fa:16:3e:00:00:{i:02x}", "ip": f"10.77.0.{10 + i}"} for i in (1, 2)]
    workers: list[Host] = []
    try:
        hosts = await dev.up(2)
        for h in hosts:
            sock = Path(h.state_dir) / "worker.sock"
            await dev.start(h.name, program=[sys.executable, str(WORKER), str(sock)])
            workers.append(Host(sock))
        for w in workers:
            await w.connect()
        a, b = workers
        ips = [h.ip for h in hosts]

        def plan(i: int, peers: list[str], rules: list[dict[str, Any]]) -> dict[str, Any]:
            return {"id": net_id, "ports": [ports[i]], "rules": rules,
                    "tunnel": {"vni": vni, "local": ips[i], "peers": peers}}

        for i, w in enumerate(workers):
            assert await w(op="network", plan=plan(i, [ips[1 - i]], [EGRESS, ICMP_IN])) is True
            assert await w(op="server", net=net_id, port=ports[i]) is True
        # each host has its own cnet-<uuid> (the root namespace has none), with one VXLAN port to the other
        assert not os.path.lexists(netns.NETNS_DIR / netns.network_ns(net_id))
        assert await a(op="vxlan", net=net_id) == {"devices": [f"vxlan-{vni}"], "peers": {f"vxlan-{vni}": [ips[1]]},
                                                   "netns": True}
        assert await b(op="vxlan", net=net_id) == {"devices": [f"vxlan-{vni}"], "peers": {f"vxlan-{vni}": [ips[0]]},
                                                   "netns": True}
        await _until(lambda: a(op="ping", port=ports[0]["id"], to=ports[1]["ip"]), True, "host 1 -> host 2")
        await _until(lambda: b(op="ping", port=ports[1]["id"], to=ports[0]["ip"]), True, "host 2 -> host 1")

        # the rule change on host 2's port: host 2 refuses pings to it, host 1 still takes them
        assert await b(op="network", plan=plan(1, [ips[0]], [EGRESS])) is True
        await _until(lambda: a(op="ping", port=ports[0]["id"], to=ports[1]["ip"]), False, "the rule removed on host 2")
        assert await b(op="ping", port=ports[1]["id"], to=ports[0]["ip"]) is True

        # host 1 leaves the network: its namespace and VXLAN port go; host 2 drops its FDB entry to it
        assert await a(op="drop", net=net_id) is True
        assert await a(op="vxlan", net=net_id) == {"devices": [], "peers": {}, "netns": False}
        assert await b(op="network", plan=plan(1, [], [EGRESS])) is True
        assert await b(op="vxlan", net=net_id) == {"devices": [f"vxlan-{vni}"], "peers": {f"vxlan-{vni}": []},
                                                   "netns": True}
        # and rejoins: the entry comes back, traffic flows again
        assert await b(op="network", plan=plan(1, [ips[0]], [EGRESS, ICMP_IN])) is True
        assert await a(op="network", plan=plan(0, [ips[1]], [EGRESS, ICMP_IN])) is True
        assert await a(op="vxlan", net=net_id) == {"devices": [f"vxlan-{vni}"], "peers": {f"vxlan-{vni}": [ips[1]]},
                                                   "netns": True}
    finally:
        for w in workers:
            await w.close()
        await dev.down()
    assert leftovers(dev, names) == []
