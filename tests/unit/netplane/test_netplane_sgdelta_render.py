"""sgdelta's scripts, as text: what a delta sends for each kind of change (the packets are in
tests/contract/test_netplane_sgdelta.py)."""

from __future__ import annotations

import ipaddress
import random
import re
import uuid as uuidlib

import pytest

from cumulo.errors import Invalid
from cumulo.netplane import netns, sgdelta
from cumulo.netplane.secgroups import Firewall, Port, Rule

G = str(uuidlib.uuid4())
RULES = {G: (Rule("egress", "IPv4"), Rule("ingress", "IPv4", remote_group_id=G))}


def port(i: int, *, security: bool = True) -> Port:
    pid = str(uuidlib.UUID(int=(i + 1) << 100))
    return Port(id=pid, device=netns.port_device(pid), mac=f"fa:16:3e:00:00:{i:02x}", fixed_ips=(f"10.0.0.{i + 10}",),
                port_security_enabled=security, security_groups=(G,))


def fw(*ports: Port, members: tuple[str, ...] = ()) -> Firewall:
    return Firewall(ports=ports, rules=RULES, members={G: members})


def test_whole_marks_are_the_marks_render_writes() -> None:
    script, applied = sgdelta.whole(fw(port(3), port(1), port(2)))
    written = dict(re.findall(r'"(tap[0-9a-f]+)" : (\d+)', script))
    assert {d: int(m) for d, m in written.items()} == dict(applied.marks)


def test_nothing_changed_sends_nothing() -> None:
    _, applied = sgdelta.whole(fw(port(1), members=("10.0.0.11",)))
    assert sgdelta.delta(applied, fw(port(1), members=("10.0.0.11",))) == ("", applied)


def test_an_added_port_takes_the_smallest_free_mark_and_no_table_is_replaced() -> None:
    _, applied = sgdelta.whole(fw(port(1), port(2), port(3)))
    _, less = sgdelta.delta(applied, fw(port(1), port(3)))
    script, more = sgdelta.delta(less, fw(port(1), port(3), port(4)))
    assert more.marks[port(4).device] == applied.marks[port(2).device]
    assert {d: more.marks[d] for d in less.marks} == dict(less.marks)
    assert "delete table" not in script and "replace" not in script
    assert f"jump o_{port(4).device}" in script and f"jump i_{port(4).device}" in script
    assert port(2).device not in script


def test_a_removed_port_loses_its_chains_and_elements() -> None:
    _, applied = sgdelta.whole(fw(port(1), port(2)))
    script, after = sgdelta.delta(applied, fw(port(1)))
    dev = port(2).device
    assert f"delete chain inet cumulo_sg o_{dev}" in script and f"delete chain inet cumulo_sg i_{dev}" in script
    assert f'delete element bridge cumulo_sg secured {{ "{dev}" }}' in script
    assert dev not in after.marks
    # Port security turned off is a removal from the tables too.
    script_off, _ = sgdelta.delta(applied, fw(port(1), port(2, security=False)))
    assert f"delete chain inet cumulo_sg o_{dev}" in script_off


def test_members_are_added_and_deleted_element_by_element_never_flushed() -> None:
    _, applied = sgdelta.whole(fw(port(1), members=("10.0.0.10", "10.0.0.11")))
    name = next(n for n in applied.sets if n.endswith("_4"))
    assert applied.sets[name] == ("10.0.0.10/31",)  # the whole render collapses
    script, more = sgdelta.delta(applied, fw(port(1), members=("10.0.0.10", "10.0.0.11", "10.0.0.12")))
    assert f"add element inet cumulo_sg {name} {{ 10.0.0.12 }}" in script
    assert "flush" not in script and "delete" not in script and "chain" not in script
    assert sorted(more.sets[name]) == ["10.0.0.10/31", "10.0.0.12"]
    script, less = sgdelta.delta(more, fw(port(1), members=("10.0.0.10", "10.0.0.12")))
    assert f"delete element inet cumulo_sg {name} {{ 10.0.0.10/31 }}" in script
    assert f"add element inet cumulo_sg {name} {{ 10.0.0.10 }}" in script and "flush" not in script
    assert sorted(less.sets[name]) == ["10.0.0.10", "10.0.0.12"]


def test_a_rule_added_is_appended_a_rule_gone_refills() -> None:
    _, applied = sgdelta.whole(fw(port(1), members=("10.0.0.11",)))
    web = Rule("ingress", "IPv4", "tcp", 80, 80)
    more = Firewall(ports=(port(1),), rules={G: (*RULES[G], web)}, members={G: ("10.0.0.11",)})
    script, after = sgdelta.delta(applied, more)
    assert "flush" not in script and script.count("add rule") == 1 and "th dport 80 accept" in script
    script, _ = sgdelta.delta(after, fw(port(1), members=("10.0.0.11",)))
    assert "flush chain inet cumulo_sg s_" in script and "th dport 80" not in script


def test_rules_refill_only_their_group_chains() -> None:
    _, applied = sgdelta.whole(fw(port(1), members=("10.0.0.11",)))
    rules = Firewall(ports=(port(1),), rules={G: (Rule("egress", "IPv4"),)}, members={G: ("10.0.0.11",)})
    script, _ = sgdelta.delta(applied, rules)
    assert "flush chain inet cumulo_sg s_" in script and "element" not in script


def test_bad_values_are_refused_as_render_refuses_them() -> None:
    _, applied = sgdelta.whole(fw(port(1)))
    bad = Port(id="x", device="tap;drop", mac="fa:16:3e:00:00:09", security_groups=(G,))
    with pytest.raises(Invalid):
        sgdelta.delta(applied, fw(port(1), bad))


def test_member_deltas_keep_the_set_exactly_the_members_without_overlaps() -> None:
    rng = random.Random(7)
    name = "g_x_4"
    have: tuple[str, ...] | None = None
    installed: set[str] = set()
    for _ in range(200):
        members = {f"10.0.0.{rng.randrange(0, 32)}" for _ in range(rng.randrange(0, 20))}
        script, after = sgdelta._members_delta(name, 4, have, members)
        if have is None:
            installed = set()
        for line in script.splitlines():
            m = re.match(r"(add|delete) element inet cumulo_sg g_x_4 \{ (.*) \}$", line)
            if m:
                elems = {e.strip() for e in m.group(2).split(",")}
                installed = installed - elems if m.group(1) == "delete" else installed | elems
                if m.group(1) == "delete":
                    assert elems <= set(have or ())
        assert installed == set(after)
        nets = [ipaddress.ip_network(e) for e in installed]
        assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
        assert {str(a) for n in nets for a in (n if n.prefixlen < 32 else [n.network_address])} == members
        have = after


def test_widened_keeps_the_members_that_left_for_a_second_step() -> None:
    _, applied = sgdelta.whole(fw(port(1), port(2), members=("10.0.0.11", "10.0.0.12")))
    target = fw(port(1), port(3), members=("10.0.0.11", "10.0.0.13"))
    first = sgdelta.widened(applied, target)
    assert set(first.members[G]) == {"10.0.0.11", "10.0.0.12", "10.0.0.13"}
    script, mid = sgdelta.delta(applied, first)
    assert "delete element inet cumulo_sg g_" not in script and "add element inet cumulo_sg g_" in script
    later, _ = sgdelta.delta(mid, target)
    assert "delete element inet cumulo_sg g_" in later and "10.0.0.12" in later and "chain" not in later
    assert sgdelta.widened(applied, fw(port(1), port(2), members=("10.0.0.11", "10.0.0.12", "10.0.0.14"))) \
        == fw(port(1), port(2), members=("10.0.0.11", "10.0.0.12", "10.0.0.14"))


def test_a_group_coming_back_to_a_namespace_keeps_its_chains() -> None:
    _, applied = sgdelta.whole(fw(port(1), members=("10.0.0.11",)))
    _, empty = sgdelta.delta(applied, fw(members=("10.0.0.11",)))
    script, _ = sgdelta.delta(empty, fw(port(2), members=("10.0.0.11", "10.0.0.12")))
    assert "add chain inet cumulo_sg s_" not in script and "flush chain inet cumulo_sg s_" not in script
    assert f"add chain inet cumulo_sg i_{port(2).device}" in script
