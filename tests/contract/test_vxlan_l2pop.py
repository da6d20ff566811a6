"""A VXLAN port's unicast FDB follows the ports' bindings (issue 14, l2population as Neutron's).

A port that moved to another host (migration, evacuation of a killed host) must be reached at its
new host as soon as the agent syncs: the entry learnt towards the old host (a dead one drops the
frames) is repointed, and a unicast entry towards a host that left the network goes. Real kernel
VXLAN device in namespaces of the test's own (deleted by name at the end).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from cumulo.netplane import vxlan

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "bridge")),
    reason="needs root and iproute2 (ip, bridge)")

MAC = "fa:16:3e:12:34:56"
OTHER = "fa:16:3e:65:43:21"
LOCAL, DEAD, NEW, GONE = "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"


def run(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout  # noqa: S603


@pytest.fixture
def spaces() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    ns, under = f"cvl2-{tag}", f"cvl2u-{tag}"
    made = []
    try:
        for n in (ns, under):
            run("ip", "netns", "add", n)
            made.append(n)
        run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", ns, "link", "set", "br0", "up")
        yield ns, under
    finally:
        for n in made:
            subprocess.run(["ip", "netns", "del", n], check=False, capture_output=True)  # noqa: S603, S607


def entries(ns: str, dev: str) -> dict[str, tuple[str, bool]]:
    out = {}
    for e in json.loads(run("bridge", "-n", ns, "-j", "fdb", "show", "dev", dev) or "[]"):
        if e.get("mac") != vxlan.ZERO_MAC and e.get("dst"):
            out[e["mac"]] = (e["dst"], "permanent" in (e.get("state") or ""))
    return out


async def test_a_moved_port_is_repointed_and_entries_to_departed_hosts_go(spaces: tuple[str, str]) -> None:
    ns, under = spaces
    vni = 4242
    dev = vxlan.device(vni)
    await vxlan.ensure(ns, vxlan.Tunnel(vni=vni, local=LOCAL, peers=(DEAD, GONE)), underlay_ns=under)
    # what learning left: the port's MAC at its old host (now dead), another at a host about to leave
    run("bridge", "-n", ns, "fdb", "add", MAC, "dev", dev, "dst", DEAD, "self", "dynamic")
    run("bridge", "-n", ns, "fdb", "add", OTHER, "dev", dev, "dst", GONE, "self", "dynamic")
    assert entries(ns, dev) == {MAC: (DEAD, False), OTHER: (GONE, False)}

    # the port now bound on NEW; GONE carries nothing any more; the dead host still has its DHCP port
    tun = vxlan.Tunnel(vni=vni, local=LOCAL, peers=(DEAD, NEW), macs=((MAC, NEW),))
    assert await vxlan.ensure(ns, tun, underlay_ns=under) is False
    # repointed, and still learnable (not permanent: a live-migrated guest's announce repoints it first)
    assert entries(ns, dev) == {MAC: (NEW, False)}
    assert await vxlan.fdb_peers(ns, dev) == {DEAD, NEW}
    # idempotent
    await vxlan.ensure(ns, tun, underlay_ns=under)
    assert entries(ns, dev) == {MAC: (NEW, False)}


def test_tunnel_refuses_bad_macs_and_addresses() -> None:
    with pytest.raises(Exception, match="MAC"):
        vxlan.Tunnel(vni=1, local=LOCAL, macs=(("-bad", NEW),))
    with pytest.raises(ValueError):
        vxlan.Tunnel(vni=1, local=LOCAL, macs=((MAC, "nowhere"),))
