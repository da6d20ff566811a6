"""The network agent's own cost, on the real data plane (as root, no cloud): what a server's NIC
costs it (`plug_ports`: bind, plan, bridge, nftables, DHCP), and how long a security group rule
change takes from the API's commit to nftables having it, with 100 ports of the group on one
network (what the agent's sync does for that network: read the plan, the in-place delta from what
it applied last (netplane.sgdelta), one nft transaction). A rule is added then deleted each round:
the figure is both. End to end through the API with packets: benchmarks/secgroup_e2e.py.

A temp DB with the first-start topology; the agent of a non-L3 host with `RealPlumbing` on a temp
DHCP dir, registered as its temp dir's in the host's owners registry (so a running cloud leaves it
alone; it reaps nothing itself: the script calls the plumbing of the one network, not the sync). The ports' devices need
not exist for nftables (its sets hold interface names). The network's namespace and dnsmasq go at
the end, by name. Prints figures; asserts nothing about them.

    sudo .venv/bin/python benchmarks/network_agent_sync.py [--ports 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database
from cumulo.network.agent.manager import NetworkAgent
from cumulo.network.agent.plumbing import RealPlumbing, remove_registered
from cumulo.network.service import NetworkService
from cumulo.network.topology import ensure_default_topology


async def main(n_ports: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="cumulo-bench-agent-"))
    conf = conf_mod.load(env={}, state_dir=root / "state")
    conf.state_dir.mkdir(parents=True)
    db = Database(f"sqlite+aiosqlite:///{root / 'bench.sqlite'}")
    await db.create_all()
    svc = NetworkService(db, conf)
    topo = await ensure_default_topology(svc, conf, admin_project="bench-admin", demo_project="bench-demo")
    run_dir = root / "dhcp"
    plumbing = RealPlumbing(run_dir=run_dir, owner=str(root))  # registered: running clouds leave it alone
    agent = NetworkAgent(db, svc, "bench-host", plumbing, l3=False)
    demo = RequestContext(user_id="u", project_id="bench-demo", roles=expand_roles(["member"]))
    svc_net = topo["private"]
    try:
        if n_ports > 50:  # room for the ports: a bigger subnet on its own network
            net = await svc.create_network(demo, {"name": "bench"})
            await svc.create_subnet(demo, {"network_id": net["id"], "cidr": "10.9.0.0/22", "ip_version": 4})
            svc_net = net["id"]
        plug_ms = []
        group = None
        for i in range(n_ports):
            port = await svc.create_port(demo, {"network_id": svc_net, "device_id": f"bench-{i}"})
            group = port["security_groups"][0]
            t0 = time.perf_counter()
            await agent.plug_ports([port["id"]], f"bench-{i}")
            plug_ms.append((time.perf_counter() - t0) * 1000)
        print(f"plug_ports (one port, 1..{n_ports} on the network): p50 {statistics.median(plug_ms):.1f} ms, "
              f"first {plug_ms[0]:.1f} ms, last 10 p50 {statistics.median(plug_ms[-10:]):.1f} ms")
        assert group is not None
        rule_ms = []
        for k in range(10):
            rule = await svc.create_rule(demo, {"security_group_id": group, "direction": "ingress",
                                                "protocol": "tcp", "port_range_min": 8000 + k,
                                                "port_range_max": 8000 + k})
            t0 = time.perf_counter()
            plan = await agent._plan()
            await plumbing.ensure_network(plan.networks[svc_net])
            rule_ms.append((time.perf_counter() - t0) * 1000)
            await svc.delete_rule(demo, rule["id"])
        print(f"rule change, {n_ports} ports in the group: plan + re-render + nft p50 {statistics.median(rule_ms):.1f} ms "
              f"(max {max(rule_ms):.1f} ms)")
    finally:
        await remove_registered(str(root), run_dir=run_dir)
        await db.dispose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", type=int, default=100)
    asyncio.run(main(ap.parse_args().ports))
