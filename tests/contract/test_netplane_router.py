"""Routers with real packets: a tenant network and an external network (with its host link in the
root namespace), a router between them made by netplane.router; SNAT to a listener on the
external network, a floating IP reached from the host, the host's end of the link out of
tenants' reach; then orphan discovery and reaping of all of it.

The external subnet is a random /24 of 198.18.0.0/15 (RFC 2544's benchmarking range), so the
host link never meets a real network of the host.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _netplane_lab import MISSING, Lab, connect_from, listen_in, new_mac, serve_peer

from cumulo.netplane import external, netns, nft, orphans, router, secgroups

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "root, ip, nft and busybox present")


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = Lab(state_dir=tmp_path / "state")
    try:
        yield lab
    finally:
        await lab.cleanup()


def stop(listener: socket.socket) -> None:
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


async def seen_by(listen_ns: str | None, listen_addr: str, port: int, client_ns: str | None,
                  target: str | None = None) -> str | None:
    """Connect from client_ns to target (default listen_addr):port where a listener in listen_ns
    answers with the peer address it saw; None when the connection does not get through."""
    listener = listen_in(listen_ns, port, listen_addr)
    server = threading.Thread(target=serve_peer, args=(listener,), daemon=True)
    server.start()
    try:
        return await asyncio.to_thread(connect_from, client_ns, target or listen_addr, port)
    finally:
        stop(listener)
        server.join(10)


async def test_snat_floating_ip_and_host_protection(lab: Lab) -> None:
    assert lab.state_dir is not None
    o = os.urandom(1)[0] % 250 + 2
    ext = f"198.18.{o}"
    tenant_id, tenant_ns = await lab.network()
    ext_id, ext_ns = await lab.network()
    await external.ensure_host_link(ext_id, (f"{ext}.1/24",))
    lab.host_links.append(external.host_device(ext_id))
    router_id = str(uuidlib.uuid4())
    lab.router_ns(router_id)

    vm = lab.server(tenant_ns, "10.81.0.5/24", gateway="10.81.0.1")
    outside = lab.server(ext_ns, f"{ext}.50/24")  # a listener the test puts on the external network
    qr = router.Interface(str(uuidlib.uuid4()), tenant_ns, new_mac(), ("10.81.0.1/24",))
    qg = router.Gateway(str(uuidlib.uuid4()), ext_ns, new_mac(), (f"{ext}.10/24",), nexthop=f"{ext}.1")
    plain = router.Router(router_id, interfaces=(qr,), gateway=qg)
    await router.ensure(plain)
    await router.ensure(plain)  # idempotent

    # SNAT: the listener outside sees the router's gateway address.
    assert await seen_by(outside.ns, outside.address, 7001, vm.ns) == f"{ext}.10"
    # The host's end of the link is out of a tenant's reach (a listener there, in the root namespace).
    assert await seen_by(None, f"{ext}.1", 7002, vm.ns) is None
    assert await seen_by(None, f"{ext}.1", 7002, outside.ns) == outside.address  # it is there

    # A floating IP: the host reaches the server on it; the server goes out with it.
    fip = f"{ext}.20"
    floating = router.Router(router_id, interfaces=(qr,), gateway=qg,
                             floating_ips=(router.FloatingIp(fip, vm.address),))
    await router.ensure(floating)
    assert await seen_by(vm.ns, "0.0.0.0", 7003, None, target=fip) == f"{ext}.1"  # noqa: S104
    assert await seen_by(outside.ns, outside.address, 7004, vm.ns) == fip
    # Hairpin: another server of the network reaches it on its floating IP too.
    peer = lab.server(tenant_ns, "10.81.0.6/24", gateway="10.81.0.1")
    assert await seen_by(vm.ns, "0.0.0.0", 7005, peer.ns, target=fip) == f"{ext}.10"  # noqa: S104

    # Disassociated: the floating IP answers no more, and SNAT takes the server out again.
    await router.ensure(plain)
    assert await seen_by(vm.ns, "0.0.0.0", 7006, None, target=fip) is None  # noqa: S104
    assert await seen_by(outside.ns, outside.address, 7007, vm.ns) == f"{ext}.10"

    # SNAT off: nothing goes out (the outside has no route back to the tenant's subnet).
    await router.ensure(router.Router(router_id, interfaces=(qr,), gateway=router.Gateway(
        qg.port_id, ext_ns, qg.mac, qg.addresses, nexthop=qg.nexthop, enable_snat=False)))
    assert await seen_by(outside.ns, outside.address, 7008, vm.ns) is None

    # Orphans: an nft table planted in the tenant network's namespace, and then everything once
    # the DB owns none of it; reaped by name, nothing of this test is left.
    await nft.apply(tenant_ns, "table inet cumulo_planted {}\n")
    found = await orphans.discover(lab.state_dir)
    assert {tenant_id, ext_id} <= set(found.networks) and router_id in found.routers
    assert external.host_device(ext_id) in found.host_links
    assert ("ip", router.NAT_TABLE) in found.tables[netns.router_ns(router_id)]
    mine = {tenant_id, ext_id}
    others = [n for n in found.networks if n not in mine]
    other_routers = [r for r in found.routers if r != router_id]
    kept = orphans.orphans(found, networks=[*others, *mine], routers=[*other_routers, router_id],
                           external_networks=[*others, ext_id])  # other clouds' host links too
    assert kept.networks == () and kept.routers == () and kept.host_links == ()
    assert kept.tables.get(tenant_ns) == (("inet", "cumulo_planted"),)
    stale = orphans.orphans(found, networks=others, routers=other_routers,
                            external_networks=[n for n in others])
    stale = orphans.Inventory(networks=tuple(n for n in stale.networks if n in mine),
                              routers=tuple(r for r in stale.routers if r == router_id),
                              host_links=tuple(h for h in stale.host_links if h == external.host_device(ext_id)))
    assert set(stale.networks) == mine and stale.routers == (router_id,)
    await orphans.reap(lab.state_dir, orphans.Inventory(tables={tenant_ns: (("inet", "cumulo_planted"),)}))
    assert ("inet", "cumulo_planted") not in await nft.cumulo_tables(tenant_ns)
    await orphans.reap(lab.state_dir, stale)
    after = await orphans.discover(lab.state_dir)
    assert not mine & set(after.networks) and router_id not in after.routers
    assert external.host_device(ext_id) not in after.host_links


async def test_servers_on_the_external_network_cannot_open_connections_to_the_host(lab: Lab) -> None:
    ext = f"198.18.{os.urandom(1)[0] % 250 + 2}"
    ext_id, ext_ns = await lab.network()
    await external.ensure_host_link(ext_id, (f"{ext}.1/24",))
    lab.host_links.append(external.host_device(ext_id))
    server = lab.server(ext_ns, f"{ext}.60/24")
    assert await seen_by(None, f"{ext}.1", 7101, server.ns) == server.address  # open before

    host_port = await external.host_port(ext_id)
    assert host_port.fixed_ips == (f"{ext}.1",)
    await secgroups.apply(ext_ns, secgroups.Firewall(ports=(host_port,),
                                                     rules={external.HOST_GROUP: external.HOST_RULES}))
    assert await seen_by(None, f"{ext}.1", 7102, server.ns) is None  # the host's services: out of reach
    assert await seen_by(server.ns, server.address, 7103, None) == f"{ext}.1"  # the host still reaches it
