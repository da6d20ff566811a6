"""Tenant networks as VXLAN (issue 14): the VNI a network gets (unique, admin-settable, 409 when
taken), MTU 1450, and the tunnel each host's plan carries: its own underlay address and the
addresses of the other hosts carrying the network (bound ports, DHCP ports, the L3 host), none
without an underlay address (one host)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa
from _asgi_ctx import ctx_for
from test_network_agent import ADMIN, DEMO, INSTANCE, Recorder

from cumulo.db import new_uuid, utcnow
from cumulo.errors import Conflict, Invalid
from cumulo.hosts.models import compute_nodes
from cumulo.netplane.vxlan import Tunnel
from cumulo.network.agent.manager import NetworkAgent
from cumulo.network.service import NetworkService
from cumulo.network.topology import ensure_default_topology

IP = {"h1": "198.18.0.2", "h2": "198.18.0.3", "l3": "198.18.0.4"}


async def test_tenant_networks_get_a_unique_vni_and_mtu_1450(svc: NetworkService) -> None:
    demo, admin = ctx_for(DEMO), ctx_for(ADMIN, "admin")
    a = await svc.create_network(demo, {"name": "a"})
    b = await svc.create_network(demo, {"name": "b"})
    assert a["mtu"] == b["mtu"] == 1450 and "provider:network_type" not in a
    va, vb = (await svc.get_network(admin, a["id"])), (await svc.get_network(admin, b["id"]))
    assert va["provider:network_type"] == vb["provider:network_type"] == "vxlan"
    assert va["provider:segmentation_id"] != vb["provider:segmentation_id"]
    mine = await svc.create_network(admin, {"name": "c", "provider:network_type": "vxlan",
                                            "provider:segmentation_id": 5000})
    assert mine["provider:segmentation_id"] == 5000
    with pytest.raises(Conflict, match="5000 is in use"):
        await svc.create_network(admin, {"name": "d", "provider:network_type": "vxlan", "provider:segmentation_id": 5000})
    with pytest.raises(Conflict, match="in use"):
        await svc.update_network(admin, a["id"], {"provider:segmentation_id": 5000})
    with pytest.raises(Invalid, match="maximum is 1450"):
        await svc.create_network(demo, {"name": "big", "mtu": 1500})
    with pytest.raises(Invalid, match="maximum is 1450"):
        await svc.update_network(demo, a["id"], {"mtu": 9000})
    nxt = await svc.get_network(admin, (await svc.create_network(demo, {"name": "e"}))["id"])
    assert nxt["provider:segmentation_id"] == 5001  # above every VNI in use
    flat = await svc.create_network(admin, {"name": "ext", "router:external": True})
    assert flat["provider:network_type"] == "flat" and flat["mtu"] == 1500
    local = await svc.create_network(admin, {"name": "l", "provider:network_type": "local"})
    assert local["provider:network_type"] == "local" and local["mtu"] == 1500


async def _node(svc: NetworkService, host: str, ip: str) -> None:
    async with svc.db.write() as conn:
        await conn.execute(sa.insert(compute_nodes).values(
            uuid=new_uuid(), host=host, hypervisor_hostname=host, hypervisor_type="fake", vcpus=1, memory_mb=1,
            local_gb=1, host_ip=ip, instance_types=["fake"], cpu_info={}, details={}, created_at=utcnow(),
            updated_at=utcnow()))


def _bare(t: Tunnel | None) -> Tunnel | None:
    """The tunnel without its l2population MACs (asserted on their own below)."""
    return None if t is None else dataclasses.replace(t, macs=())


async def test_each_host_plans_a_tunnel_to_the_other_carriers(svc: NetworkService) -> None:
    topo: dict[str, Any] = await ensure_default_topology(svc, svc.conf, admin_project=ADMIN, demo_project=DEMO)
    for h, ip in IP.items():
        await _node(svc, h, ip)
    net = topo["private"]
    vni = (await svc.get_network(ctx_for(ADMIN, "admin"), net))["provider:segmentation_id"]
    demo = ctx_for(DEMO)
    p1 = await svc.create_port(demo, {"network_id": net, "device_id": INSTANCE})
    p2 = await svc.create_port(demo, {"network_id": net, "device_id": INSTANCE})
    r1, r2, rl = Recorder(), Recorder(), Recorder()
    a1 = NetworkAgent(svc.db, svc, "h1", r1, underlay_ip=IP["h1"], l3_host="l3")
    a2 = NetworkAgent(svc.db, svc, "h2", r2, underlay_ip=IP["h2"], l3_host="l3")
    l3 = NetworkAgent(svc.db, svc, "l3", rl, l3=True, underlay_ip=IP["l3"])
    await a1.plug_ports([p1["id"]], INSTANCE)
    assert _bare(r1.networks[net].tunnel) == Tunnel(vni=vni, local=IP["h1"], peers=(IP["l3"],))  # the router's host
    assert r1.networks[net].mtu == 1450
    await a2.plug_ports([p2["id"]], INSTANCE)
    assert _bare(r2.networks[net].tunnel) == Tunnel(vni=vni, local=IP["h2"], peers=(IP["h1"], IP["l3"]))
    await a1.sync()
    assert _bare(r1.networks[net].tunnel) == Tunnel(vni=vni, local=IP["h1"], peers=(IP["h2"], IP["l3"]))
    await l3.sync()
    assert _bare(rl.networks[net].tunnel) == Tunnel(vni=vni, local=IP["l3"], peers=(IP["h1"], IP["h2"]))
    assert rl.networks[topo["public"]].tunnel is None  # external: flat, no tunnel
    # h1's last port leaves: it drops the network (and its DHCP port), the others stop naming it
    await a1.unplug_ports([p1["id"]])
    assert r1.dropped == [net]
    await a2.sync()
    await l3.sync()
    assert _bare(r2.networks[net].tunnel) == Tunnel(vni=vni, local=IP["h2"], peers=(IP["l3"],))
    assert _bare(rl.networks[net].tunnel) == Tunnel(vni=vni, local=IP["l3"], peers=(IP["h2"],))
    # one host (no underlay address): no tunnel at all
    r0 = Recorder()
    await NetworkAgent(svc.db, svc, "h2", r0).sync()
    assert r0.networks[net].tunnel is None


class _Bus:
    def __init__(self) -> None:
        self.served: list[str] = []
        self.casts: list[tuple[str, str]] = []

    def serve(self, topic: str, endpoint: object) -> None:
        self.served.append(topic)

    async def cast(self, topic: str, method: str, **args: Any) -> None:
        self.casts.append((topic, method))


async def test_a_port_moving_or_a_host_rejoining_is_told_to_the_peers_with_its_mac(svc: NetworkService) -> None:
    """Evacuation to a host that had left the network: the peers must flood to it again and reach
    the moved port's MAC there (before the fix, the rejoin was not seen as a join, since leaving
    kept the network in the agent's last plan, so no peer was told: the peers' head-end
    replication never named the host and a VM that sends nothing unasked stayed unreachable)."""
    topo: dict[str, Any] = await ensure_default_topology(svc, svc.conf, admin_project=ADMIN, demo_project=DEMO)
    for h, ip in IP.items():
        await _node(svc, h, ip)
    net = topo["private"]
    demo = ctx_for(DEMO)
    p1 = await svc.create_port(demo, {"network_id": net, "device_id": INSTANCE})
    p2 = await svc.create_port(demo, {"network_id": net, "device_id": INSTANCE})
    told: list[str] = []

    async def tell() -> None:
        told.append("sync")

    svc.dataplane_listener = tell
    r1, r2 = Recorder(), Recorder()
    a1 = NetworkAgent(svc.db, svc, "h1", r1, underlay_ip=IP["h1"], l3_host="l3")
    a2 = NetworkAgent(svc.db, svc, "h2", r2, underlay_ip=IP["h2"], l3_host="l3")
    await a1.sync()
    await a2.sync()
    await a1.plug_ports([p1["id"]], INSTANCE)
    await a2.plug_ports([p2["id"]], INSTANCE)
    assert told == ["sync", "sync"]  # each joined
    await a2.unplug_ports([p2["id"]])  # h2 leaves (a cold migration away)
    assert told == ["sync"] * 3 and r2.dropped == [net]
    told.clear()
    await a2.plug_ports([p2["id"]], INSTANCE)  # and comes back: a join again
    assert told == ["sync"]
    await a1.sync()
    mac1 = (await svc.get_port(ctx_for(ADMIN, "admin"), p1["id"]))["mac_address"]
    mac2 = (await svc.get_port(ctx_for(ADMIN, "admin"), p2["id"]))["mac_address"]
    t1 = r1.networks[net].tunnel
    assert t1 is not None and IP["h2"] in t1.peers and (mac2, IP["h2"]) in t1.macs
    assert all(dst != IP["h1"] for _, dst in t1.macs)  # its own ports are local, never in the FDB
    # p1 moves from h1 to h2 (an evacuation: h1 is dead, nothing unplugs there): the peers are told,
    # and their plans reach its MAC at h2
    told.clear()
    await a2.plug_ports([p1["id"]], INSTANCE)
    assert told == ["sync"]
    rl = Recorder()
    await NetworkAgent(svc.db, svc, "l3", rl, l3=True, underlay_ip=IP["l3"]).sync()
    tl = rl.networks[net].tunnel
    assert tl is not None and {(mac1, IP["h2"]), (mac2, IP["h2"])} <= set(tl.macs)


async def test_wiring_names_the_l3_host_and_casts_to_remote_hosts(svc: NetworkService) -> None:
    from cumulo.network.agent.wiring import assemble_agents, listener

    bus = _Bus()
    agents = assemble_agents(svc.db, bus, svc, ["a", "b"], local_host="a", real_local=False,  # type: ignore[arg-type]
                             underlay_ip=IP["h1"], l3_host="b")
    a, b = agents.agent("a"), agents.agent("b")
    assert (a.l3, a.underlay_ip, a.l3_host) == (False, IP["h1"], "b")
    assert (b.l3, b.underlay_ip) == (True, "")  # a fake host in this process: no tunnels of its own
    assert agents.l3_host == "b"
    topo: dict[str, Any] = await ensure_default_topology(svc, svc.conf, admin_project=ADMIN, demo_project=DEMO)
    port = await svc.create_port(ctx_for(DEMO), {"network_id": topo["private"], "device_id": INSTANCE})
    async with svc.db.write() as conn:
        await conn.execute(sa.text("UPDATE ports SET binding_host_id = 'remote' WHERE id = :i"), {"i": port["id"]})
    await listener(svc.db, bus, agents)()
    assert bus.casts == [("network.b", "sync")]  # only the hosts served here
    bus.casts.clear()
    await listener(svc.db, bus, None, l3_host="b", everywhere=True)()
    assert bus.casts == [("network.b", "sync"), ("network.remote", "sync")]


async def test_vni_ranges_bound_the_tenant_vnis(svc: NetworkService) -> None:
    import dataclasses

    svc.conf = dataclasses.replace(svc.conf, vni_ranges="7000:7001")
    admin, demo = ctx_for(ADMIN, "admin"), ctx_for(DEMO)
    await svc.create_network(admin, {"name": "outside", "provider:network_type": "vxlan",
                                     "provider:segmentation_id": 9000})  # an admin's VNI may lie outside
    got = [(await svc.get_network(admin, (await svc.create_network(demo, {"name": n}))["id"]))
           ["provider:segmentation_id"] for n in ("a", "b")]
    assert got == [7000, 7001]
    with pytest.raises(Conflict, match="No tenant network is available"):
        await svc.create_network(demo, {"name": "c"})
