"""The metadata service with real packets: stand-in servers (namespaces with a veth on a network's
bridge) fetch http://169.254.169.254/ over HTTP from inside their namespace, answered by a socket made inside the
network's namespace and served on this test's event loop (netplane/metadata.py + network/metadata.py).

Two networks with the same CIDR each hold a server at 10.0.0.5: each gets only its own
meta_data.json; an address no port holds gets a 404. One server reaches the address through its
default gateway (the frame is taken for the namespace at the bridge), one by a link route (ARP).
Security groups with no egress rule still let 169.254.169.254:80 through.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid as uuidlib
from typing import Any

import pytest
from _netplane_lab import MISSING, Lab, Server, ip

from cumulo.context import RequestContext, expand_roles
from cumulo.netplane import bridge, netns, nft, secgroups
from cumulo.netplane import metadata as plane
from cumulo.netplane.secgroups import Firewall, Port
from cumulo.network.metadata import MetadataService
from cumulo.network.service import NetworkService

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "root, ip, nft and busybox present")


def ctx(project: str) -> RequestContext:
    return RequestContext(user_id=f"user-{project}", project_id=project, roles=expand_roles(["member"]))


async def tenant(svc: NetworkService, lab: Lab, project: str, device_id: str) -> tuple[str, str, str]:
    """A network 10.0.0.0/24 of `project` with a server port at 10.0.0.5, its namespace and bridge
    on the host: (network id, namespace, port id)."""
    c = ctx(project)
    net = await svc.create_network(c, {"name": "n"})
    sub = await svc.create_subnet(c, {"network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4})
    port = await svc.create_port(c, {"network_id": net["id"], "device_id": device_id, "device_owner": "compute:nova",
                                     "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.0.0.5"}]})
    ns = netns.network_ns(net["id"])
    lab.namespaces.append(ns)
    await bridge.ensure(ns)
    return net["id"], ns, port["id"]


def wget(server: Server, path: str) -> tuple[int, str]:
    """An HTTP GET from inside the server's namespace (urllib in a thread that joined it; the
    host's static busybox wget crashes): (status, body), status 0 when nothing answered."""
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{plane.ADDRESS}{path}", timeout=3) as resp:  # noqa: S310
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    return netns.run_in_sync(server.ns, fetch)


async def test_each_server_reads_only_its_own_metadata_and_strangers_get_404(svc: NetworkService, lab: Lab) -> None:
    a, b = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    docs = {u: {"uuid": u, "meta_data": {"uuid": u, "name": n}, "user_data": n.encode(), "hostname": n}
            for u, n in ((a, "alpha"), (b, "beta"))}

    async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        return docs.get(uuid)

    net_a, ns_a, port_a = await tenant(svc, lab, "project-a", a)
    net_b, ns_b, _ = await tenant(svc, lab, "project-b", b)
    md = MetadataService(svc.db, documents)
    try:
        await md.serve(net_a)
        await md.serve(net_b)
        await md.serve(net_a)  # idempotent: the same listener stays
        assert md.serving() == sorted([net_a, net_b])
        # alpha goes through its gateway (a stand-in router at 10.0.0.1); beta has a link route
        lab.server(ns_a, "10.0.0.1/24")
        alpha = lab.server(ns_a, "10.0.0.5/24", gateway="10.0.0.1")
        beta = lab.server(ns_b, "10.0.0.5/24")
        ip("-n", beta.ns, "route", "add", f"{plane.ADDRESS}/32", "dev", "eth0")
        stranger = lab.server(ns_a, "10.0.0.9/24", gateway="10.0.0.1")

        status, body = await asyncio.to_thread(wget, alpha, "/openstack/latest/meta_data.json")
        assert status == 200, body
        assert json.loads(body) == {"uuid": a, "name": "alpha"}
        status, body = await asyncio.to_thread(wget, beta, "/openstack/latest/meta_data.json")
        assert status == 200, body
        assert json.loads(body)["uuid"] == b
        assert await asyncio.to_thread(wget, alpha, "/latest/meta-data/local-ipv4") == (200, "10.0.0.5")
        assert await asyncio.to_thread(wget, beta, "/openstack/latest/user_data") == (200, "beta")
        status, body = await asyncio.to_thread(wget, stranger, "/openstack/latest/meta_data.json")
        assert status == 404, body

        # security groups with no rule at all (no egress) still let the metadata service through,
        # and anti-spoofing keeps the stranger from posing as 10.0.0.5
        sg = str(uuidlib.uuid4())
        await secgroups.apply(ns_a, Firewall(ports=(
            Port(id=port_a, device=alpha.device, mac=alpha.mac, fixed_ips=("10.0.0.5",), security_groups=(sg,)),
            Port(id=stranger.port_id, device=stranger.device, mac=stranger.mac, fixed_ips=("10.0.0.9",),
                 security_groups=(sg,)),
        ), rules={sg: ()}))
        status, body = await asyncio.to_thread(wget, alpha, "/openstack/latest/meta_data.json")
        assert status == 200 and json.loads(body)["uuid"] == a, body
        ip("-n", stranger.ns, "addr", "del", "10.0.0.9/24", "dev", "eth0")
        ip("-n", stranger.ns, "addr", "add", "10.0.0.5/24", "dev", "eth0")
        ip("-n", stranger.ns, "route", "add", "default", "via", "10.0.0.1")
        status, body = await asyncio.to_thread(wget, stranger, "/openstack/latest/meta_data.json")
        assert status == 0, body  # dropped at the bridge: no answer at all
    finally:
        await md.close()
    assert md.serving() == []
    # the namespace keeps its plumbing (a restarted agent makes a new socket) until removed
    assert ("bridge", plane.TABLE) in await nft.list_tables(ns_a)
    await plane.remove(ns_a)
    assert ("bridge", plane.TABLE) not in await nft.list_tables(ns_a)


async def test_serve_replaces_a_listener_of_a_recreated_namespace(svc: NetworkService, lab: Lab) -> None:
    u = str(uuidlib.uuid4())

    async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        return {"uuid": u, "meta_data": {"uuid": u}} if uuid == u else None

    net, ns, _ = await tenant(svc, lab, "project-a", u)
    md = MetadataService(svc.db, documents)
    try:
        await md.serve(net)
        await netns.delete(ns)
        await bridge.ensure(ns)
        await md.serve(net)
        server = lab.server(ns, "10.0.0.5/24")
        ip("-n", server.ns, "route", "add", f"{plane.ADDRESS}/32", "dev", "eth0")
        status, body = await asyncio.to_thread(wget, server, "/openstack/latest/meta_data.json")
        assert status == 200 and json.loads(body) == {"uuid": u}, body
    finally:
        await md.close()


async def test_a_network_without_namespace_is_not_served_and_nothing_raises(svc: NetworkService) -> None:
    async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        return None

    md = MetadataService(svc.db, documents)
    net = str(uuidlib.uuid4())
    await md.serve(net)  # no cnet namespace here: logged, the agent's sync goes on
    assert md.serving() == []
    assert not netns.exists(netns.network_ns(net))


async def test_a_bridge_with_a_host_own_mac_still_takes_the_gateway_frames(svc: NetworkService, lab: Lab) -> None:
    """Issue 14: a network spanning hosts gives each host's bridge its own MAC (plumbing:
    bridge_mac(ns@underlay)); the steal rule must rewrite to that MAC, not bridge_mac(ns), or a
    server going through its gateway (a router on another host) never reaches this host's listener."""
    u = str(uuidlib.uuid4())

    async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        return {"uuid": u, "meta_data": {"uuid": u}, "user_data": b"", "hostname": "g"} if uuid == u else None

    c = ctx("project-g")
    net = await svc.create_network(c, {"name": "g"})
    sub = await svc.create_subnet(c, {"network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4})
    await svc.create_port(c, {"network_id": net["id"], "device_id": u, "device_owner": "compute:nova",
                              "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.0.0.5"}]})
    ns = netns.network_ns(net["id"])
    lab.namespaces.append(ns)
    await bridge.apply(ns, mac=bridge.bridge_mac(f"{ns}@198.18.0.2"))
    md = MetadataService(svc.db, documents)
    try:
        await md.serve(net["id"])
        lab.server(ns, "10.0.0.1/24")  # a stand-in router (on another host, in a real cloud)
        server = lab.server(ns, "10.0.0.5/24", gateway="10.0.0.1")
        status, body = await asyncio.to_thread(wget, server, "/openstack/latest/meta_data.json")
        assert status == 200 and json.loads(body)["uuid"] == u, body
    finally:
        await md.close()
