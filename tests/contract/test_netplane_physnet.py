"""A host's interface on a physical network with real links (netplane/physnet.py): moved into a
flat network's namespace onto its bridge (idempotent), and moved back to the host's namespace
before that namespace is deleted, so the interface outlives it (a veth would die with it)."""

from __future__ import annotations

import os
import subprocess
import uuid as uuidlib

import pytest

from cumulo.errors import Invalid
from cumulo.netplane import bridge, netns, physnet

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and links")


def _in(dev: str, ns: str | None = None) -> bool:
    argv = ["ip", *(["-n", ns] if ns else []), "link", "show", "dev", dev]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0  # noqa: S603


async def test_the_uplink_goes_into_the_network_and_comes_back_before_it_goes() -> None:
    tag = uuidlib.uuid4().hex[:6]
    dev, peer = f"cpt{tag}a", f"cpt{tag}b"
    ns = netns.network_ns(str(uuidlib.uuid4()))
    subprocess.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", peer], check=True)  # noqa: S603,S607
    try:
        await bridge.apply(ns)
        assert await physnet.ensure_uplink(ns, dev, mtu=1500) is True
        link = await bridge.link(ns, dev)
        assert link is not None and link.get("master") == bridge.BRIDGE and "UP" in link.get("flags", [])
        assert not _in(dev)
        assert await physnet.ensure_uplink(ns, dev, mtu=1500) is False  # there already
        with pytest.raises(Invalid, match="does not have"):
            await physnet.ensure_uplink(ns, f"cpt{tag}x")
        assert await physnet.release(ns, [dev, f"cpt{tag}x"]) == [dev]
        await netns.delete(ns)
        assert _in(dev) and _in(peer)  # the host's interface outlived the namespace
    finally:
        await netns.delete(ns)
        subprocess.run(["ip", "link", "del", "dev", dev], check=False, capture_output=True)  # noqa: S603,S607
