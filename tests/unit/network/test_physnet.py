"""Flat networks on a physical network (issue 14, servers on `public` on every host): the setting
`physical_interface_mappings`, the uplink each host's plan carries (only where the host maps the
network's physnet; one network per interface), what a compute node reports and the scheduler's
PhysicalNetworkFilter with its "no valid host" reason."""

from __future__ import annotations

from typing import Any

import pytest
from _asgi_ctx import ctx_for
from test_network_agent import ADMIN, DEMO, INSTANCE, Recorder

from cumulo.errors import Conflict, Invalid
from cumulo.netplane import physnet
from cumulo.network.agent.manager import NetworkAgent
from cumulo.network.service import NetworkService
from cumulo.network.topology import ensure_default_topology


def test_mappings_parse_and_refuse_bad_entries() -> None:
    assert physnet.mappings("") == {}
    assert physnet.mappings(" public:eth1 , other:ex0") == {"public": "eth1", "other": "ex0"}
    for bad in ("public", "public:", ":eth1", "public:eth1,public:eth2", "a:eth1,b:eth1", "p:-x", "p:" + "x" * 16):
        with pytest.raises(Invalid, match="physical_interface_mappings"):
            physnet.mappings(bad)


def test_what_a_node_reports_and_carries() -> None:
    assert physnet.reported({"public": "ex0"}, single_host=False, plumbs=True) == ["public"]
    assert physnet.reported({}, single_host=False, plumbs=True) == []
    assert physnet.reported({}, single_host=True, plumbs=True) == ["*"]  # cumulo up: everything is local
    assert physnet.reported({}, single_host=False, plumbs=False) == ["*"]  # a fake host plumbs nothing
    assert physnet.carries(["public"], {"public"}) and physnet.carries(["*"], {"x"})
    assert not physnet.carries([], {"public"}) and not physnet.carries(["other"], {"public"})
    assert physnet.carries([], set())


async def test_a_host_mapping_the_physnet_bridges_public_to_its_interface(svc: NetworkService) -> None:
    topo: dict[str, Any] = await ensure_default_topology(svc, svc.conf, admin_project=ADMIN, demo_project=DEMO)
    admin, demo = ctx_for(ADMIN, "admin"), ctx_for(DEMO)
    public = await svc.get_network(admin, topo["public"])
    assert (public["provider:network_type"], public["provider:physical_network"]) == ("flat", "public")
    on_public = await svc.create_port(demo, {"network_id": topo["public"], "device_id": INSTANCE})
    on_private = await svc.create_port(demo, {"network_id": topo["private"], "device_id": INSTANCE})
    mapped, bare, l3 = Recorder(), Recorder(), Recorder()
    a1 = NetworkAgent(svc.db, svc, "h1", mapped, underlay_ip="198.18.0.2", l3_host="l3", physnets={"public": "ex0"})
    a2 = NetworkAgent(svc.db, svc, "h2", bare, underlay_ip="198.18.0.3", l3_host="l3")
    a3 = NetworkAgent(svc.db, svc, "l3", l3, l3=True, underlay_ip="198.18.0.1", physnets={"public": "cp0"})
    await a1.plug_ports([on_public["id"], on_private["id"]], INSTANCE)
    assert mapped.networks[topo["public"]].uplink == "ex0" and "ex0" in mapped.networks[topo["public"]].devices
    assert mapped.networks[topo["private"]].uplink is None  # a VXLAN network has no physnet
    await a2.sync()
    await a3.sync()
    assert l3.networks[topo["public"]].uplink == "cp0"  # the L3 host joins the wire too
    # One flat network per physnet (Neutron's FlatNetworkInUse): the interface is in one namespace only.
    with pytest.raises(Conflict, match="Physical network public is in use"):
        await svc.create_network(admin, {"name": "flat2", "router:external": True, "provider:network_type": "flat",
                                         "provider:physical_network": "public"})
    other = await svc.create_network(admin, {"name": "flat3", "provider:network_type": "flat",
                                             "provider:physical_network": "other"})
    assert other["provider:physical_network"] == "other"
