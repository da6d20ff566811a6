"""The network agent's decisions, with recording plumbing: the first-start topology, what a sync
ensures and reaps, plug/unplug (bindings, NicSpecs, a network leaving the host), floating IPs and
security groups reaching the plan, and the service telling the agents after a change."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from _asgi_ctx import ctx_for

from cumulo.errors import Conflict
from cumulo.netplane import external, netns, orphans
from cumulo.netplane import router as nrouter
from cumulo.network.agent.manager import NetworkAgent
from cumulo.network.agent.plumbing import is_empty, stale_of
from cumulo.network.agent.state import DHCP_OWNER, HostPlan, NetworkPlan
from cumulo.network.rpc import NetworkAgentAPI, network_topic
from cumulo.network.service import NetworkService
from cumulo.network.topology import ensure_default_topology

DEMO, ADMIN = "project-demo", "project-admin"
INSTANCE = "11111111-2222-3333-4444-555555555555"


class Recorder:
    """Plumbing that records what it was asked (real: the agent also makes DHCP ports and reaps)."""

    def __init__(self, real: bool = True) -> None:
        self.real = real
        self.networks: dict[str, NetworkPlan] = {}
        self.routers: dict[str, nrouter.Router] = {}
        self.dropped: list[str] = []
        self.reaped: list[HostPlan] = []

    async def ensure_network(self, plan: NetworkPlan) -> None:
        self.networks[plan.id] = plan

    async def drop_network(self, network_id: str) -> None:
        self.dropped.append(network_id)
        self.networks.pop(network_id, None)

    async def ensure_router(self, plan: nrouter.Router) -> None:
        self.routers[plan.id] = plan

    async def reap(self, plan: HostPlan) -> orphans.Inventory:
        self.reaped.append(plan)
        return orphans.Inventory()


@pytest.fixture
async def topo(svc: NetworkService) -> dict[str, Any]:
    return await ensure_default_topology(svc, svc.conf, admin_project=ADMIN, demo_project=DEMO)


async def test_first_start_topology_once(svc: NetworkService, topo: dict[str, Any]) -> None:
    admin = ctx_for(ADMIN, "admin")
    public = await svc.get_network(admin, topo["public"])
    assert public["router:external"] and public["shared"] and public["name"] == "public"
    sub = await svc.get_subnet(admin, topo["public_subnet"])
    assert sub["cidr"] == "172.24.4.0/24" and sub["gateway_ip"] == "172.24.4.1" and not sub["enable_dhcp"]
    demo = ctx_for(DEMO)
    priv = await svc.get_subnet(demo, topo["private_subnet"])
    assert priv["cidr"] == "10.0.0.0/26" and priv["gateway_ip"] == "10.0.0.1"
    router = await svc.get_router(demo, topo["router"])
    assert router["external_gateway_info"]["network_id"] == topo["public"]
    assert router["external_gateway_info"]["enable_snat"] is True
    # a restart makes nothing twice
    again = await ensure_default_topology(svc, svc.conf, admin_project=ADMIN, demo_project=DEMO)
    assert again == topo
    assert len(await svc.list_networks(admin)) == 2 and len(await svc.list_routers(admin)) == 1


async def test_l3_sync_ensures_router_link_and_dhcp(svc: NetworkService, topo: dict[str, Any]) -> None:
    rec = Recorder()
    agent = NetworkAgent(svc.db, svc, "local", rec, l3=True)
    await agent.sync()
    assert set(rec.networks) == {topo["public"], topo["private"]}
    pub = rec.networks[topo["public"]]
    assert pub.host_link == ("172.24.4.1/24",) and external.ns_device(topo["public"]) in pub.devices
    assert pub.dhcp_port is None  # DHCP off on public
    priv = rec.networks[topo["private"]]
    assert priv.host_link is None and priv.dhcp_port is not None
    (addr,) = priv.dhcp_port.addresses
    assert ipaddress.ip_interface(addr).network == ipaddress.ip_network("10.0.0.0/26")
    r = rec.routers[topo["router"]]
    assert r.gateway is not None and r.gateway.nexthop == "172.24.4.1" and r.gateway.enable_snat
    assert [i.addresses for i in r.interfaces] == [("10.0.0.1/26",)]
    assert r.interfaces[0].peer in priv.devices and r.gateway.peer in pub.devices
    assert len(rec.reaped) == 1
    # a second sync ensures the same, and makes no second DHCP port
    await agent.sync()
    dhcp_ports = [p for p in await svc.list_ports(ctx_for(ADMIN, "admin")) if p["device_owner"] == DHCP_OWNER]
    assert len(dhcp_ports) == 1 and dhcp_ports[0]["binding:host_id"] == "local"
    assert rec.networks[topo["private"]] == priv

    # without the host link (--no-external) the external network has none
    rec2 = Recorder()
    await NetworkAgent(svc.db, svc, "local", rec2, l3=True, external_link=False).sync()
    assert rec2.networks[topo["public"]].host_link is None


async def test_plug_and_unplug(svc: NetworkService, topo: dict[str, Any]) -> None:
    demo = ctx_for(DEMO)
    port = await svc.create_port(demo, {"network_id": topo["private"], "device_id": INSTANCE})
    other = await svc.create_port(demo, {"network_id": topo["private"], "device_id": "someone-else"})
    rec = Recorder(real=False)
    agent = NetworkAgent(svc.db, svc, "fake-host-1", rec)
    (nic,) = await agent.plug_ports([port["id"]], INSTANCE)
    ip = port["fixed_ips"][0]["ip_address"]
    assert nic == {"port_id": port["id"], "mac": port["mac_address"], "netns": netns.network_ns(topo["private"]),
                   "bridge": "br0", "device": netns.port_device(port["id"]), "addresses": [f"{ip}/26"],
                   "gateway": "10.0.0.1", "routes": [], "mtu": 1450, "dns": []}
    shown = await svc.get_port(ctx_for(ADMIN, "admin"), port["id"])
    assert shown["binding:host_id"] == "fake-host-1" and shown["status"] == "ACTIVE"
    plan = rec.networks[topo["private"]]
    (fw_port,) = plan.firewall.ports
    assert fw_port.id == port["id"] and fw_port.security_groups == tuple(port["security_groups"])
    assert plan.firewall.rules[port["security_groups"][0]]  # the default group's rules
    assert netns.port_device(port["id"]) in plan.devices
    assert plan.dhcp_port is None  # a fake host runs no DHCP
    with pytest.raises(Conflict):
        await agent.plug_ports([other["id"]], INSTANCE)
    # the last port gone: the network leaves this (non-L3) host
    await agent.unplug_ports([port["id"]])
    assert rec.dropped == [topo["private"]]
    shown = await svc.get_port(ctx_for(ADMIN, "admin"), port["id"])
    assert shown["binding:host_id"] == "" and shown["status"] == "DOWN"


async def test_floating_ip_and_rules_reach_the_plan_and_notify(svc: NetworkService, topo: dict[str, Any]) -> None:
    told: list[int] = []

    async def listener() -> None:
        told.append(1)

    svc.dataplane_listener = listener
    demo = ctx_for(DEMO)
    port = await svc.create_port(demo, {"network_id": topo["private"], "device_id": INSTANCE})
    rec = Recorder(real=False)
    agent = NetworkAgent(svc.db, svc, "local", rec, l3=True)
    await agent.plug_ports([port["id"]], INSTANCE)
    fip = await svc.create_floatingip(demo, {"floating_network_id": topo["public"]})
    n = len(told)
    await svc.update_floatingip(demo, fip["id"], {"port_id": port["id"]})
    assert len(told) == n + 1
    await agent.sync()
    (f,) = rec.routers[topo["router"]].floating_ips
    assert f == nrouter.FloatingIp(fip["floating_ip_address"], port["fixed_ips"][0]["ip_address"])
    await svc.update_floatingip(demo, fip["id"], {"port_id": None})
    await agent.sync()
    assert rec.routers[topo["router"]].floating_ips == ()

    group = port["security_groups"][0]
    before = rec.networks[topo["private"]].firewall.rules[group]
    rule = await svc.create_rule(demo, {"security_group_id": group, "direction": "ingress", "protocol": "tcp",
                                        "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"})
    assert len(told) == n + 3  # associate, disassociate, the rule
    await agent.sync()
    after = rec.networks[topo["private"]].firewall.rules[group]
    assert len(after) == len(before) + 1 and any(r.port_range_min == 80 for r in after)
    await svc.delete_rule(demo, rule["id"])
    await agent.sync()
    assert rec.networks[topo["private"]].firewall.rules[group] == before


def test_reaping_decisions() -> None:
    keep_net, gone_net = "0b5a4a40-6a3e-4c52-9a43-0d6c1d0e4b11", "7f1d7a0e-2b0c-4f8e-8a57-0f8a9b3c2d10"
    keep_rtr, gone_rtr = "2c7c3e35-3a54-4b6f-9f1e-5e8e2b0d1a22", "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b"
    port = "5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f"
    plan = HostPlan(host="local", networks={keep_net: NetworkPlan(
        id=keep_net, devices=frozenset({netns.port_device(port), external.ns_device(keep_net)}), host_link=("172.24.4.1/24",))},
        routers=(nrouter.Router(id=keep_rtr),))
    ns = netns.network_ns(keep_net)
    found = orphans.Inventory(
        networks=(keep_net, gone_net), routers=(keep_rtr, gone_rtr),
        bridge_ports={keep_net: (netns.port_device(port), "tap0123456789a", "meta0", external.ns_device(keep_net))},
        tables={None: (("inet", "cumulo_stray"),), ns: (("bridge", "cumulo_sg"), ("inet", "cumulo_planted"))},
        host_links=(external.host_device(keep_net), external.host_device(gone_net)))
    stale = stale_of(plan, found)
    assert stale.networks == (gone_net,) and stale.routers == (gone_rtr,)
    assert stale.bridge_ports == {keep_net: ("tap0123456789a",)}  # meta0 is not ours to judge
    assert stale.tables == {None: (("inet", "cumulo_stray"),), ns: (("inet", "cumulo_planted"),)}
    assert stale.host_links == (external.host_device(gone_net),)
    clean = orphans.Inventory(networks=(keep_net,), routers=(keep_rtr,), bridge_ports={keep_net: ("meta0",)},
                              host_links=(external.host_device(keep_net),))
    assert is_empty(stale_of(plan, clean))


async def test_rpc_names_its_topic() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    class Bus:
        async def call(self, topic: str, method: str, *, timeout: float = 60.0, **args: Any) -> Any:
            calls.append((topic, method, args))
            return [{"port_id": "p"}]

        async def cast(self, topic: str, method: str, **args: Any) -> None:
            calls.append((topic, method, args))

    api = NetworkAgentAPI(Bus())  # type: ignore[arg-type]
    assert await api.plug_ports("h1", ["p"], INSTANCE) == [{"port_id": "p"}]
    await api.unplug_ports("h1", ["p"])
    await api.sync_hosts(["h2", "h1", "h2"])
    assert calls == [(network_topic("h1"), "plug_ports", {"port_ids": ["p"], "instance_uuid": INSTANCE}),
                     (network_topic("h1"), "unplug_ports", {"port_ids": ["p"]}),
                     ("network.h1", "sync", {}), ("network.h2", "sync", {})]


def test_another_cloud_keeps_its_own(tmp_path: Any) -> None:
    """Ids another cloud registered are never orphans to this one while it runs or its state dir
    exists; an entry of a dead process without a state dir goes."""
    import json
    import subprocess
    import sys

    from cumulo.network.agent.plumbing import claims, others_of, register

    registry = tmp_path / "owners"
    live_ids, kept_ids, gone_ids = ["3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"], ["5c1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"], ["x"]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    try:
        register(registry, "mine", {"m"})
        (tmp_path / "stopped-cloud").mkdir()
        for name, pid, owner, ids in (("a", live.pid, str(tmp_path / "gone1"), live_ids),
                                      ("b", dead, str(tmp_path / "stopped-cloud"), kept_ids),
                                      ("c", dead, str(tmp_path / "gone2"), gone_ids)):
            (registry / f"{name}.json").write_text(json.dumps({"owner": owner, "pid": pid, "ids": ids}))
        assert others_of(registry, "mine") == frozenset(live_ids + kept_ids)
        seen = claims(registry, "mine")
        assert seen.recorded == {"m"} and seen.abandoned == {"x"}
        assert [p.name for p in seen.abandoned_entries] == ["c.json"]  # dropped once its leftovers are reaped
        theirs = live_ids[0]
        found = orphans.Inventory(networks=(theirs,), bridge_ports={theirs: ("tap0123456789a",)},
                                  host_links=(external.host_device(theirs),),
                                  tables={netns.network_ns(theirs): (("inet", "cumulo_stray"),)})
        assert is_empty(stale_of(HostPlan(host="local"), found, frozenset({theirs})))
        assert stale_of(HostPlan(host="local"), found).networks == (theirs,)
    finally:
        live.kill()
        live.wait()


def test_reaping_only_takes_what_this_cloud_recorded() -> None:
    """A namespace, dnsmasq or host link nobody recorded (another tool's, a test lab's) is left alone;
    those of ids this cloud recorded (a crashed run's entry) go; stray tables and taps inside the
    cloud's own namespaces go whatever their names."""
    keep_net, ours_gone, nobodys = ("0b5a4a40-6a3e-4c52-9a43-0d6c1d0e4b11", "7f1d7a0e-2b0c-4f8e-8a57-0f8a9b3c2d10",
                                    "1e2d3c4b-5a69-4788-9a6b-5c4d3e2f1a0b")
    rtr_gone, rtr_nobodys = "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", "8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b5a"
    plan = HostPlan(host="local", networks={keep_net: NetworkPlan(id=keep_net)})
    ns = netns.network_ns(keep_net)
    found = orphans.Inventory(
        networks=(keep_net, ours_gone, nobodys), routers=(rtr_gone, rtr_nobodys),
        bridge_ports={keep_net: ("tap0123456789a",)}, tables={ns: (("inet", "cumulo_planted"),)},
        dnsmasq={ours_gone: 11, nobodys: 12}, dhcp_dirs=(ours_gone, nobodys),
        host_links=(external.host_device(ours_gone), external.host_device(nobodys)))
    stale = stale_of(plan, found, frozenset(), frozenset({keep_net, ours_gone, rtr_gone}))
    assert stale.networks == (ours_gone,) and stale.routers == (rtr_gone,)
    assert stale.dnsmasq == {ours_gone: 11} and stale.dhcp_dirs == (ours_gone,)
    assert stale.host_links == (external.host_device(ours_gone),)
    assert stale.bridge_ports == {keep_net: ("tap0123456789a",)} and stale.tables == {ns: (("inet", "cumulo_planted"),)}


async def test_sync_requests_coalesce(svc: NetworkService, topo: dict[str, Any]) -> None:
    """While a sync runs, any number of requests make exactly one more run, and all of them wait for it."""
    import asyncio

    gate = asyncio.Event()

    class Slow(Recorder):
        async def ensure_network(self, plan: NetworkPlan) -> None:
            await gate.wait()
            await super().ensure_network(plan)

    agent = NetworkAgent(svc.db, svc, "local", Slow(real=False), l3=True)
    first = asyncio.ensure_future(agent.sync())
    await asyncio.sleep(0.05)
    more = [asyncio.ensure_future(agent.sync()) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in (first, *more))
    gate.set()
    await asyncio.gather(first, *more)
    assert agent.syncs == 2


def test_no_external_flag_and_settings() -> None:
    from cumulo import conf as conf_mod
    from cumulo.cli.main import _parser

    assert _parser().parse_args(["up", "--no-external"]).external_link is False
    assert _parser().parse_args(["up"]).external_link is None  # the settings decide
    assert conf_mod.load(env={}).external_link is True
    settings = conf_mod.load(env={"CUMULO_EXTERNAL_LINK": "false", "CUMULO_EXTERNAL_CIDR": "192.0.2.0/24"})
    assert settings.external_link is False and settings.external_cidr == "192.0.2.0/24"
    assert conf_mod.load(env={}, external_link=False).external_link is False


async def test_isolated_subnet_gets_the_metadata_route_via_the_dhcp_port(svc: NetworkService, topo: dict[str, Any]) -> None:
    """A network without a router (enable_isolated_metadata in Neutron's DHCP agent): its ports'
    NicSpecs, DHCP options (121/249) and network_data.json route 169.254.169.254/32 via the DHCP
    port; the subnet's own host_routes come along; a router on the gateway makes it routed again."""
    from cumulo.compute import netports
    from cumulo.netplane import dhcp
    from cumulo.network.metadata import instance_nics

    demo = ctx_for(DEMO)
    net = await svc.create_network(demo, {"name": "iso"})
    sub = await svc.create_subnet(demo, {"network_id": net["id"], "cidr": "10.77.0.0/24", "ip_version": 4,
                                         "host_routes": [{"destination": "192.168.50.0/24", "nexthop": "10.77.0.9"}]})
    bare = await svc.create_network(demo, {"name": "iso-nogw"})
    await svc.create_subnet(demo, {"network_id": bare["id"], "cidr": "10.78.0.0/24", "ip_version": 4, "gateway_ip": None})
    nova = {"device_id": INSTANCE, "device_owner": "compute:nova"}
    port = await svc.create_port(demo, {"network_id": net["id"], **nova})
    port2 = await svc.create_port(demo, {"network_id": bare["id"], **nova})
    rec = Recorder()
    agent = NetworkAgent(svc.db, svc, "local", rec, l3=True)
    nic, nic2 = await agent.plug_ports([port["id"], port2["id"]], INSTANCE)
    plan, plan2 = rec.networks[net["id"]], rec.networks[bare["id"]]
    assert plan.dhcp_port is not None and plan2.dhcp_port is not None
    dhcp_ip = str(ipaddress.ip_interface(plan.dhcp_port.addresses[0]).ip)
    dhcp_ip2 = str(ipaddress.ip_interface(plan2.dhcp_port.addresses[0]).ip)
    assert nic["routes"] == [["192.168.50.0/24", "10.77.0.9"], ["169.254.169.254/32", dhcp_ip]]
    assert nic["gateway"] == "10.77.0.1"
    assert nic2["routes"] == [["169.254.169.254/32", dhcp_ip2]] and nic2["gateway"] is None
    opts = dhcp.render_opts(plan.dhcp_config)
    assert f"192.168.50.0/24,10.77.0.9,169.254.169.254/32,{dhcp_ip},0.0.0.0/0,10.77.0.1" in opts
    assert f"classless-static-route,169.254.169.254/32,{dhcp_ip2}" in dhcp.render_opts(plan2.dhcp_config)
    # the metadata service's network_data.json describes the same NICs, routes included
    assert await instance_nics(svc.db, INSTANCE) == [nic, nic2]
    [vif, vif2] = netports.network_info([nic, nic2])
    assert vif["routes"] == [{"network": "192.168.50.0", "netmask": "255.255.255.0", "gateway": "10.77.0.9"},
                             {"network": "169.254.169.254", "netmask": "255.255.255.255", "gateway": dhcp_ip}]
    assert vif2["routes"] == [{"network": "169.254.169.254", "netmask": "255.255.255.255", "gateway": dhcp_ip2}]
    # routed: a router interface on the gateway address; Neutron's agent drops the isolated route
    router = await svc.create_router(demo, {"name": "late"})
    await svc.add_router_interface(demo, router["id"], {"subnet_id": sub["id"]})
    await agent.sync()
    assert "169.254.169.254" not in dhcp.render_opts(rec.networks[net["id"]].dhcp_config)
    assert (await instance_nics(svc.db, INSTANCE))[0]["routes"] == [["192.168.50.0/24", "10.77.0.9"]]
    # the routed private network of the demo has no such route
    (priv,) = await agent.plug_ports([(await svc.create_port(demo, {"network_id": topo["private"],
                                                                   "device_id": INSTANCE}))["id"]], INSTANCE)
    assert priv["routes"] == []


async def test_a_cast_sync_reaps_only_when_a_network_or_router_left(svc: NetworkService, topo: dict[str, Any]) -> None:
    rec = Recorder()
    agent = NetworkAgent(svc.db, svc, "local", rec, l3=True)
    await agent.start()  # full: reaps
    assert len(rec.reaped) == 1
    admin = ctx_for(ADMIN, "admin")
    await agent.sync()  # nothing left the plan: nothing to reap
    assert len(rec.reaped) == 1 and set(rec.routers) == {topo["router"]}
    router = await svc.create_router(admin, {"name": "r2"})
    await agent.sync()  # grew: still nothing to reap
    assert len(rec.reaped) == 1 and router["id"] in rec.routers
    await svc.delete_router(admin, router["id"])
    await agent.sync()  # a router left the plan: its namespace is reaped
    assert len(rec.reaped) == 2 and router["id"] not in {r.id for r in rec.reaped[-1].routers}


async def test_network_admin_state_reaches_the_plan_and_notifies(svc: NetworkService, topo: dict[str, Any]) -> None:
    """`openstack network set --disable`: the agents are told, and the plan takes the bridge down;
    a name change alone tells nobody."""
    told: list[int] = []

    async def listener() -> None:
        told.append(1)

    svc.dataplane_listener = listener
    demo = ctx_for(DEMO)
    rec = Recorder(real=False)
    agent = NetworkAgent(svc.db, svc, "local", rec, l3=True)
    await agent.sync()
    assert rec.networks[topo["private"]].admin_state_up is True
    await svc.update_network(demo, topo["private"], {"name": "private2"})
    assert told == []
    shown = await svc.update_network(demo, topo["private"], {"admin_state_up": False})
    assert shown["admin_state_up"] is False and told == [1]
    await svc.update_network(demo, topo["private"], {"admin_state_up": False})  # unchanged: nobody told
    assert told == [1]
    await agent.sync()
    assert rec.networks[topo["private"]].admin_state_up is False
    await svc.update_network(demo, topo["private"], {"admin_state_up": True})
    assert told == [1, 1]
    await agent.sync()
    assert rec.networks[topo["private"]].admin_state_up is True
