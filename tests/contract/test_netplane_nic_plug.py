"""netplane.nic.plug_veth on the host: one `ip link add` when the name is free, a stale pair of
the same name (a crash) replaced, and a clash in the container's namespace refused with nothing
left behind. Namespaces of the test's own names (`cpft-`, `cpfs-`), removed at the end."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

import pytest
from _netplane_lab import MISSING, Lab, new_mac

from cumulo.errors import HostError
from cumulo.netplane import bridge, netns, nic

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "root, ip, nft and busybox present")


@dataclass(frozen=True)
class Nic:
    mac: str
    netns: str
    bridge: str
    device: str
    addresses: tuple[str, ...]
    gateway: str | None = None
    routes: tuple[tuple[str, str], ...] = ()
    mtu: int = 1500


async def test_a_stale_pair_is_replaced_and_a_clash_leaves_nothing(lab: Lab) -> None:
    net = f"cpft-{uuidlib.uuid4().hex[:12]}"
    first, second = (f"cpfs-{uuidlib.uuid4().hex[:12]}" for _ in range(2))
    lab.namespaces += [net, first, second]
    await bridge.ensure(net)
    for ns in (first, second):
        await netns.ensure(ns)
    port = str(uuidlib.uuid4())
    x = Nic(mac=new_mac(), netns=net, bridge=bridge.BRIDGE, device=netns.port_device(port), addresses=("10.72.0.5/24",))
    await nic.plug_veth(x, first, "eth0")
    assert (await bridge.link(first, "eth0") or {}).get("address") == x.mac
    await nic.plug_veth(x, second, "eth0")  # the pair of that name is there: replaced
    assert await bridge.link(first, "eth0") is None and await bridge.link(second, "eth0") is not None
    assert (await bridge.link(net, x.device) or {}).get("master") == bridge.BRIDGE
    other = Nic(mac=new_mac(), netns=net, bridge=bridge.BRIDGE, device=netns.port_device(str(uuidlib.uuid4())),
                addresses=("10.72.0.6/24",))
    with pytest.raises(HostError):
        await nic.plug_veth(other, second, "eth0")  # eth0 is taken in the container's namespace
    assert await bridge.link(net, other.device) is None
