"""Security group tables changed in place (netplane.sgdelta) with real packets: a port added, a
rule changed, a member leaving and a port removed, each as a delta on tables a whole replace
made, filter as the whole ruleset of the same firewall would. The network's namespace has a name
of the test's own (`cpft-`), so no running cloud's orphan reaping takes it for a stray `cnet-`."""

from __future__ import annotations

import uuid as uuidlib

import pytest
from _netplane_lab import MISSING, Lab, ip
from test_netplane_secgroups import EGRESS_ALL, port_of, reaches

from cumulo.netplane import bridge, nft, secgroups, sgdelta
from cumulo.netplane.secgroups import Firewall, Rule

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "root, ip, nft and busybox present")


async def network(lab: Lab) -> str:
    ns = f"cpft-{uuidlib.uuid4().hex[:12]}"
    lab.namespaces.append(ns)
    await bridge.ensure(ns)
    return ns


async def step(ns: str, applied: sgdelta.Applied, fw: Firewall) -> sgdelta.Applied:
    script, after = sgdelta.delta(applied, fw)
    assert "delete table" not in script and script
    await nft.apply(ns, script)
    return after


async def test_deltas_filter_as_the_whole_ruleset_would(lab: Lab) -> None:
    ns = await network(lab)
    a, b, c = (lab.server(ns, f"10.71.0.{i}/24") for i in (5, 6, 7))
    g = str(uuidlib.uuid4())
    web = Rule("ingress", "IPv4", "tcp", 8080, 8080, "0.0.0.0/0")
    rules = {g: (*EGRESS_ALL, web)}
    fw = Firewall(ports=(port_of(a, g), port_of(b, g)), rules=rules)
    script, applied = sgdelta.whole(fw)
    await secgroups.apply(ns, fw)
    assert applied.marks == {a.device: 1, b.device: 2} or applied.marks == {b.device: 1, a.device: 2}
    assert await reaches(b, c, 8081) == b.address  # C is not filtered yet

    # A port added: filtered at once, the others keep their marks.
    fw = Firewall(ports=(port_of(a, g), port_of(b, g), port_of(c, g)), rules=rules)
    applied2 = await step(ns, applied, fw)
    assert {d: applied2.marks[d] for d in applied.marks} == dict(applied.marks) and applied2.marks[c.device] == 3
    assert await reaches(c, b, 8080) == c.address
    assert await reaches(c, b, 8081) is None
    assert await reaches(a, c, 8081) is None
    ip("-n", c.ns, "addr", "add", "10.71.0.99/24", "dev", "eth0")
    assert await reaches(c, b, 8080, source="10.71.0.99") is None  # anti-spoofing for the new port too

    # A rule removed: new connections are dropped.
    fw = Firewall(ports=fw.ports, rules={g: EGRESS_ALL})
    applied3 = await step(ns, applied2, fw)
    assert await reaches(a, b, 8080) is None
    # ... and back (appended to the group's chains): admitted again.
    back = await step(ns, applied3, Firewall(ports=fw.ports, rules=rules))
    assert await reaches(a, b, 8080) == a.address
    applied3 = await step(ns, back, fw)
    assert await reaches(a, b, 8080) is None

    # A remote group rule, then a member leaving its set.
    member_rule = Rule("ingress", "IPv4", "tcp", remote_group_id=g)
    members = {g: (a.address, b.address, c.address)}
    fw = Firewall(ports=fw.ports, rules={g: (*EGRESS_ALL, member_rule)}, members=members)
    applied4 = await step(ns, applied3, fw)
    assert await reaches(a, b, 9000) == a.address
    fw = Firewall(ports=fw.ports, rules=fw.rules, members={g: (b.address, c.address)})
    applied5 = await step(ns, applied4, fw)
    assert await reaches(a, b, 9000) is None
    assert await reaches(c, b, 9000) == c.address

    # A port removed: its chains go, nothing filters it any more, the others are still filtered.
    fw = Firewall(ports=(port_of(b, g), port_of(c, g)), rules=fw.rules, members=fw.members)
    applied6 = await step(ns, applied5, fw)
    assert a.device not in applied6.marks
    assert ("inet", secgroups.TABLE) in await nft.list_tables(ns)
    assert await reaches(b, a, 8081) == b.address  # A takes anything now
    assert await reaches(a, c, 8081) is None  # C is still filtered

    # A port added again: it takes the free mark.
    fw = Firewall(ports=(port_of(a, g), port_of(b, g), port_of(c, g)), rules=fw.rules, members=members)
    applied7 = await step(ns, applied6, fw)
    assert applied7.marks[a.device] == applied.marks[a.device]
    assert await reaches(a, b, 9000) == a.address
    ip("-n", a.ns, "addr", "add", "10.71.0.98/24", "dev", "eth0")
    assert await reaches(a, b, 9000, source="10.71.0.98") is None  # filtered again: anti-spoofing
    assert sgdelta.delta(applied7, fw)[0] == ""  # nothing changes: nothing to send
