"""Established flows cut when the rule that allowed them goes (Neutron's conntrack flush), with real
packets: two stand-in servers on a network's bridge, security groups by netplane.secgroups, the
flows a change revokes (netplane.conntrack.revoked) deleted from the namespace's conntrack table
over ctnetlink (netplane.conntrack.flush)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid as uuidlib

import pytest
from _netplane_lab import MISSING, Lab, Server, new_mac
from test_netplane_secgroups import EGRESS_ALL, port_of

from cumulo.netplane import conntrack, external, netns, router, secgroups
from cumulo.netplane.secgroups import Firewall, Rule

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "root, ip, nft and busybox present")


class Stream:
    """A TCP connection from `client` (None: the host) to `server`:port (at `address` if given),
    open across the test."""

    def __init__(self, client: Server | None, server: Server, port: int, address: str | None = None) -> None:
        self.listener = server.listen(port)
        def make() -> socket.socket:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

        self.client = make() if client is None else netns.run_in_sync(client.ns, make)
        self.client.settimeout(2)
        self.client.connect((address or server.address, port))
        self.peer, _ = self.listener.accept()
        self.peer.settimeout(1.5)

    def passes(self, wait: float = 5.0, data: bytes = b"ping\n") -> bool:
        """Whether a line the client sends reaches the server within `wait` seconds."""
        try:
            self.peer.settimeout(wait)
            self.client.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = self.peer.recv(len(data) - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == data
        except OSError:
            return False

    def close(self) -> None:
        for s in (self.client, self.peer, self.listener):
            s.close()


async def test_removing_a_rule_cuts_its_established_flows_only(lab: Lab) -> None:
    _, ns = await lab.network()
    a, b = lab.server(ns, "10.62.0.5/24"), lab.server(ns, "10.62.0.6/24")
    g = str(uuidlib.uuid4())
    web = Rule("ingress", "IPv4", "tcp", 8080, 8080, "10.62.0.0/24")
    ssh = Rule("ingress", "IPv4", "tcp", 22, 22, "0.0.0.0/0")
    before = Firewall(ports=(port_of(a, g), port_of(b, g)), rules={g: (*EGRESS_ALL, web, ssh)})
    await secgroups.apply(ns, before)
    cut, kept = await asyncio.to_thread(Stream, a, b, 8080), await asyncio.to_thread(Stream, a, b, 22)
    try:
        assert await asyncio.to_thread(cut.passes) and await asyncio.to_thread(kept.passes)
        after = Firewall(ports=before.ports, rules={g: (*EGRESS_ALL, ssh)})
        await secgroups.apply_script(ns, secgroups.render_group(g, after.rules[g], {}))
        # The rule alone leaves the established flow alone (ct state established is accepted first).
        assert await asyncio.to_thread(cut.passes)
        revoked = conntrack.revoked(before, after)
        assert {(f.direction, f.local, f.protocol, f.port_min) for f in revoked} == {
            ("ingress", "10.62.0.5/32", 6, 8080), ("ingress", "10.62.0.6/32", 6, 8080)}
        assert await conntrack.flush(ns, revoked) == 1  # the one 8080 connection; port 22's stays
        assert not await asyncio.to_thread(cut.passes, 1.5)
        assert await asyncio.to_thread(kept.passes)
        # Port security on a port that had it off: what the rules do not allow stops too.
        open_b = Firewall(ports=(port_of(a, g), port_of(b, g, security=False)), rules=after.rules)
        await secgroups.apply(ns, open_b)
        again = await asyncio.to_thread(Stream, a, b, 9000)
        try:
            assert await asyncio.to_thread(again.passes)
            await secgroups.apply(ns, after)
            assert await asyncio.to_thread(again.passes)  # established, until the flush
            assert await conntrack.flush(ns, conntrack.revoked(open_b, after)) >= 1
            assert not await asyncio.to_thread(again.passes, 1.5)
            assert await asyncio.to_thread(kept.passes)  # allowed by ssh: picked up again
        finally:
            again.close()
    finally:
        cut.close()
        kept.close()



async def test_a_disassociated_floating_ip_cuts_its_established_flows(lab: Lab) -> None:
    o = os.urandom(1)[0] % 250 + 2
    ext = f"198.19.{o}"
    _, tenant_ns = await lab.network()
    ext_id, ext_ns = await lab.network()
    await external.ensure_host_link(ext_id, (f"{ext}.1/24",))
    lab.host_links.append(external.host_device(ext_id))
    router_id = str(uuidlib.uuid4())
    lab.router_ns(router_id)
    vm = lab.server(tenant_ns, "10.82.0.5/24", gateway="10.82.0.1")
    qr = router.Interface(str(uuidlib.uuid4()), tenant_ns, new_mac(), ("10.82.0.1/24",))
    qg = router.Gateway(str(uuidlib.uuid4()), ext_ns, new_mac(), (f"{ext}.10/24",), nexthop=f"{ext}.1")
    fip = f"{ext}.20"
    floating = router.Router(router_id, interfaces=(qr,), gateway=qg, floating_ips=(router.FloatingIp(fip, vm.address),))
    plain = router.Router(router_id, interfaces=(qr,), gateway=qg)
    await router.ensure(floating)
    stream = await asyncio.to_thread(Stream, None, vm, 7100, fip)  # from the host, to the floating IP
    try:
        assert await asyncio.to_thread(stream.passes)
        await router.ensure(plain)  # disassociated: new connections are not let in ...
        assert await asyncio.to_thread(stream.passes)  # ... but the DNAT of this one is remembered
        gone = conntrack.floating_gone([(f.floating_ip, f.fixed_ip) for f in floating.floating_ips], [])
        assert gone == [fip]
        assert await conntrack.flush_addresses(netns.router_ns(router_id), gone) >= 1
        assert not await asyncio.to_thread(stream.passes, 1.5)
    finally:
        stream.close()
