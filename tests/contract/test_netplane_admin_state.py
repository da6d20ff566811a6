"""A network's admin_state_up on the data plane, with real packets: the network agent (real
plumbing, on a SQLite DB through the network service) takes the network's bridge `br0` in
`cnet-<uuid>` down when admin_state_up becomes False and up again when it becomes True.

Two stand-in servers (namespaces with a veth whose bridge end is their port's `tap<port hex[:11]>`)
talk TCP, and one fetches http://169.254.169.254/ (the namespace's own stack on br0); a third port
is a VM's tap (opened as QEMU gets it, netplane.nic.open_tap). Down: no connection, no metadata,
every bridge port disabled; a second sync changes nothing; a restarted agent (a full sync, orphans
reaped) keeps it down and keeps the ports; up: traffic and metadata come back (the metadata reply
route through br0, which the kernel dropped with the bridge, is made again).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _netplane_lab import MISSING, Lab, Server, ip, serve_peer

from cumulo.context import RequestContext, expand_roles
from cumulo.netplane import bridge, netns, nic
from cumulo.netplane import metadata as plane
from cumulo.network.agent.manager import NetworkAgent
from cumulo.network.agent.plumbing import RealPlumbing
from cumulo.network.metadata import MetadataService
from cumulo.network.service import NetworkService

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "root, ip, nft and busybox present")

PROJECT = "project-admin-state"
HOST = "local"


def ctx() -> RequestContext:
    return RequestContext(user_id="user", project_id=PROJECT, roles=expand_roles(["member"]))


def fetch_metadata(server: Server) -> int:
    """GET meta_data.json from inside the server's namespace: the status, 0 when nothing answered."""
    def get() -> int:
        try:
            with urllib.request.urlopen(f"http://{plane.ADDRESS}/openstack/latest/meta_data.json",  # noqa: S310
                                        timeout=1) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    return netns.run_in_sync(server.ns, get)


def talks(a: Server, b: Server, port: int) -> bool:
    """One TCP connection from a to b (b answers with the peer address it saw)."""
    listener = b.listen(port)
    t = threading.Thread(target=serve_peer, args=(listener,), daemon=True)
    t.start()
    try:
        return a.connect(b.address, port, timeout=1.0) == a.address
    finally:
        listener.close()
        t.join(timeout=10)


async def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def port_states(ns: str) -> dict[str, str]:
    """Bridge port -> its STP state (forwarding, disabled, ...) as the kernel reports it."""
    out = json.loads(ip("-n", ns, "-j", "-d", "link", "show", "master", bridge.BRIDGE) or "[]")
    return {d["ifname"]: d.get("linkinfo", {}).get("info_slave_data", {}).get("state", "") for d in out}


async def test_admin_state_takes_the_bridge_down_and_up(svc: NetworkService, lab: Lab, tmp_path: Path) -> None:
    c = ctx()
    u = str(uuidlib.uuid4())

    async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        return {"uuid": u, "meta_data": {"uuid": u}} if uuid == u else None

    net = await svc.create_network(c, {"name": "n"})
    net_id = net["id"]
    ns = netns.network_ns(net_id)
    lab.namespaces.append(ns)
    lab.network_ids.append(net_id)
    sub = await svc.create_subnet(c, {"network_id": net_id, "cidr": "10.0.0.0/24", "ip_version": 4,
                                      "enable_dhcp": False})
    made = []
    for i, device in ((5, u), (6, str(uuidlib.uuid4())), (7, str(uuidlib.uuid4()))):
        made.append(await svc.create_port(c, {
            "network_id": net_id, "device_id": device, "device_owner": "compute:nova",
            "fixed_ips": [{"subnet_id": sub["id"], "ip_address": f"10.0.0.{i}"}]}))
    md = MetadataService(svc.db, documents)
    agent = NetworkAgent(svc.db, svc, HOST, RealPlumbing(run_dir=tmp_path / "run", metadata=md, owner=lab.owner))
    tap_fd: int | None = None
    try:
        await agent.start()
        for p in made:
            await agent.plug_ports([p["id"]], p["device_id"])
        a, b = (lab.server(ns, f"10.0.0.{i}/24", mac=p["mac_address"], port_id=p["id"])
                for i, p in ((5, made[0]), (6, made[1])))
        ip("-n", a.ns, "route", "add", f"{plane.ADDRESS}/32", "dev", "eth0")
        vm = made[2]
        tap_fd = await nic.open_tap(_Nic(ns, netns.port_device(vm["id"]), vm["mac_address"]))
        await until(lambda: talks(a, b, 7001), "a reaches b with the network up")
        await until(lambda: fetch_metadata(a) == 200, "metadata with the network up")
        assert set((await port_states(ns)).values()) == {"forwarding"}

        await svc.update_network(c, net_id, {"admin_state_up": False})
        await agent.sync()
        assert await bridge.is_up(ns) is False
        states = await port_states(ns)
        assert {a.device, b.device, netns.port_device(vm["id"])} <= set(states)
        assert set(states.values()) == {"disabled"}, states
        assert not await asyncio.to_thread(talks, a, b, 7002)
        assert await asyncio.to_thread(fetch_metadata, a) == 0
        await agent.sync()  # idempotent
        assert await bridge.is_up(ns) is False

        # a restarted agent (full sync, orphans reaped) keeps it down and keeps every port
        await agent.stop()
        await md.close()
        md = MetadataService(svc.db, documents)
        agent = NetworkAgent(svc.db, svc, HOST, RealPlumbing(run_dir=tmp_path / "run", metadata=md, owner=lab.owner))
        await agent.start()
        assert await bridge.is_up(ns) is False
        assert {a.device, b.device, netns.port_device(vm["id"])} <= set(await port_states(ns))
        assert not await asyncio.to_thread(talks, a, b, 7003)

        await svc.update_network(c, net_id, {"admin_state_up": True})
        await agent.sync()
        assert await bridge.is_up(ns) is True
        await until(lambda: talks(a, b, 7004), "a reaches b again with the network up")
        await until(lambda: fetch_metadata(a) == 200, "metadata again with the network up")
        assert set((await port_states(ns)).values()) == {"forwarding"}
    finally:
        if tap_fd is not None:
            os.close(tap_fd)
        await agent.stop()
        await md.close()


class _Nic:
    """What netplane.nic.open_tap reads of a NicSpec."""

    def __init__(self, ns: str, device: str, mac: str) -> None:
        self.netns, self.device, self.mac = ns, device, mac
        self.bridge = bridge.BRIDGE
        self.addresses: tuple[str, ...] = ()
        self.gateway: str | None = None
        self.routes: tuple[tuple[str, str], ...] = ()
        self.mtu = 1500
