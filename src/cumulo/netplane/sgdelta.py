"""Security group tables changed in place: the nft script from the firewall a namespace has to the
one it should have, as a delta instead of both tables replaced (secgroups.render).

Replacing a table that has base chains makes the kernel wait for an RCU grace period per hook it
unregisters (5-12 ms a transaction on the 2-core hosts we run on, whatever the size); changing
sets, maps and regular chains in place does not (0.2-1 ms). So the network agent, which knows
what it last applied in a namespace (`Applied`), sends only the difference:

- a port added: its elements in the bridge table's sets and `marks` map (with a mark of its own:
  the smallest free number, so no other port's mark moves), its two chains, its entries in the
  inet table's `egress`/`ingress` verdict maps; the chains of groups new to the namespace first;
- a port removed: its entries and elements deleted, its chains flushed and deleted;
- a port changed (MAC, addresses, pairs, groups): its bridge elements swapped, its chains refilled,
  its mark kept;
- a group's rules changed: rules added appended to its chains, or (a rule gone) its two chains
  flushed and refilled (as secgroups.render_group);
- a remote group's members changed: the elements of its sets that no longer hold only members
  deleted, the members not yet covered added. Never a flush: deleting an element of an interval
  set costs the kernel 8-16 ms a transaction (adding one 0.3 ms), so a port joining a group (a
  server's boot) only adds; a member leaving pays for its own element.

All of it in one transaction: packets meet the old ruleset or the new one, never a port without
its rules (a new port's chains and map entries come in the same commit as its marks). A group no
port uses any more keeps its (unreferenced) chains and their rules until the next whole replace,
so a server booting into it again (the only port of its group on that network) adds none. The agent falls
back to the whole replace when a delta fails (`nft` refuses it and changes nothing) and after a
restart (nothing known). Pure functions, text out.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cumulo.netplane import nft
from cumulo.netplane.secgroups import (
    EGRESS,
    INGRESS,
    TABLE,
    Firewall,
    Port,
    Rule,
    _group_rules,
    _members,
    _port_addresses,
    _port_chain,
    _remote_groups,
    _secured,
    group_chain,
    member_set,
    port_chain,
    render,
)


@dataclass(frozen=True)
class Applied:
    """What a namespace's security group tables hold: the firewall, and each secured port's mark."""

    fw: Firewall
    marks: Mapping[str, int] = field(default_factory=dict)  # device -> mark
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # member set -> its elements
    groups: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)  # group -> the rules its chains hold


def whole(fw: Firewall) -> tuple[str, Applied]:
    """The whole-replace script (secgroups.render) and what it leaves."""
    return render(fw), applied(fw)


def applied(fw: Firewall) -> Applied:
    """What secgroups.render (or apply) of `fw` leaves: marks 1..n in device order, each remote
    group's sets holding its members' addresses collapsed."""
    secured = _secured(fw.ports)
    sets = {member_set(g, v): tuple(_members(fw.members.get(g, ()), v))
            for g in _remote_groups(fw.rules, _groups(secured)) for v in (4, 6)}
    groups = {g: tuple(fw.rules.get(g, ())) for g in _groups(secured)}
    return Applied(fw, {p.device: i for i, p in enumerate(secured, start=1)}, sets, groups)


def _set_kind(version: int) -> str:
    return "ipv4_addr" if version == 4 else "ipv6_addr"


def _members_delta(name: str, version: int, have: tuple[str, ...] | None,
                   addresses: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """(script, elements after) taking set `name` from `have` (None: unknown, so flushed) to the
    addresses. Elements kept are those holding only wanted addresses; what they miss is added."""
    want = [n for n in nft.collapse(nft.network(a) for a in addresses) if n.version == version]
    make = f"add set inet {TABLE} {name} {{ type {_set_kind(version)}; flags interval; }}\n"
    if have is None:
        elems = [nft.prefix(n) for n in want]
        return (make + f"flush set inet {TABLE} {name}\n" + _elements("add", "inet", name, elems), tuple(elems))
    wanted = {nft.prefix(w) for w in want}
    exact = {e for e in have if e in wanted}  # the common case: host addresses, kept as they are
    firsts = [int(w.network_address) for w in want]  # collapsed: sorted and disjoint

    def inside(e: nft.IPNetwork) -> bool:
        i = bisect.bisect_right(firsts, int(e.network_address)) - 1
        return i >= 0 and int(e.broadcast_address) <= int(want[i].broadcast_address)

    others = [nft.network(e) for e in have if e not in exact]
    kept = [e for e in others if e.version == version and inside(e)]
    gone = [e for e in others if e not in kept]
    kept.sort(key=lambda k: int(k.network_address))
    starts = [int(k.network_address) for k in kept]
    new: list[nft.IPNetwork] = []
    for w in want:
        if nft.prefix(w) in exact:
            continue
        lo, hi = int(w.network_address), int(w.broadcast_address)
        cursor = lo
        for k in kept[bisect.bisect_left(starts, lo):bisect.bisect_right(starts, hi)]:
            if int(k.network_address) > cursor:
                new.extend(_span(version, cursor, int(k.network_address) - 1))
            cursor = max(cursor, int(k.broadcast_address) + 1)
        if cursor <= hi:
            new.extend(_span(version, cursor, hi))
    script = _elements("delete", "inet", name, [nft.prefix(e) for e in gone])
    script += _elements("add", "inet", name, [nft.prefix(n) for n in new])
    after = [*sorted(exact), *(nft.prefix(n) for n in [*kept, *new])]
    return (make + script if script else ""), tuple(after)


def _span(version: int, first: int, last: int) -> list[nft.IPNetwork]:
    """The prefixes covering addresses first..last exactly."""
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return list(ipaddress.summarize_address_range(cls(first), cls(last)))


def _chains_of_group(group_id: str, rules: tuple[Rule, ...], had: tuple[Rule, ...] | None) -> str:
    """A group's two chains made (`had` None), or taken from the rules `had` to `rules`: rules only
    added are appended (every rule of a group chain accepts, so their order is free); a rule gone
    empties and refills the chain (deleting rules costs the kernel 10-20 ms a transaction)."""
    out: list[str] = []
    for d in (INGRESS, EGRESS):
        chain = group_chain(group_id, d)
        lines = _group_rules(rules, d)
        old = set(_group_rules(had, d)) if had is not None else None
        if old is not None and old <= set(lines):
            lines = [line for line in lines if line not in old]
        else:
            out.append(f"add chain inet {TABLE} {chain}\nflush chain inet {TABLE} {chain}\n")
        out.extend(f"add rule inet {TABLE} {chain} {line}\n" for line in lines)
    return "".join(out)


def _groups(ports: Iterable[Port]) -> set[str]:
    return {g for p in ports for g in p.security_groups}


def _rule_lines(rules: Iterable[Rule]) -> tuple[list[str], list[str]]:
    rules = tuple(rules)
    return _group_rules(rules, INGRESS), _group_rules(rules, EGRESS)


def _bridge_elements(port: Port) -> list[tuple[str, str]]:
    """(set, element) of the bridge table that carry `port` (its marks entry aside)."""
    macs, v4, v6 = _port_addresses(port)
    return ([("secured", nft.ifname(port.device))] + [("macs", m) for m in macs]
            + [("addr4", a) for a in v4] + [("addr6", a) for a in v6])


def _elements(verb: str, family: str, name: str, items: list[str]) -> str:
    return f"{verb} element {family} {TABLE} {name} {{ {', '.join(items)} }}\n" if items else ""


def _bridge(verb: str, ports: Iterable[Port]) -> str:
    by_set: dict[str, list[str]] = {}
    for p in ports:
        for name, elem in _bridge_elements(p):
            by_set.setdefault(name, []).append(elem)
    return "".join(_elements(verb, "bridge", name, sorted(set(items))) for name, items in sorted(by_set.items()))


def _fill_chains(ports: Iterable[Port]) -> str:
    """The ports' two chains made (or emptied) and filled, in the inet table."""
    ports = list(ports)
    if not ports:
        return ""
    out = []
    for p in ports:
        for d in (INGRESS, EGRESS):
            chain = port_chain(p.device, d)
            out.append(f"add chain inet {TABLE} {chain}\nflush chain inet {TABLE} {chain}\n")
            # The chain secgroups renders (`chain NAME {`, its rules one a line, `}`), rule by rule:
            # a `table ... { chain ... }` block of the same rules costs the kernel ~10 ms more.
            body = _port_chain(p, d).strip().splitlines()[1:-1]
            out.extend(f"add rule inet {TABLE} {chain} {line.strip()}\n" for line in body)
    return "".join(out)


def _free_marks(used: Iterable[int], n: int) -> list[int]:
    taken = set(used)
    out: list[int] = []
    k = 1
    while len(out) < n:
        if k not in taken:
            out.append(k)
        k += 1
    return out


def widened(old: Applied, new: Firewall) -> Firewall:
    """`new` with the members that left its remote groups since `old` still in their sets: a
    first step with no set element to delete (adding costs the kernel ~0.3 ms, deleting 8-16 ms),
    which grants nothing the tables did not grant already; `new` itself when none left."""
    groups = _remote_groups(new.rules, _groups(_secured(new.ports)))
    members = dict(new.members)
    for g in groups:
        now = tuple(new.members.get(g, ()))
        left = sorted(set(old.fw.members.get(g, ())) - set(now))
        if left and member_set(g, 4) in old.sets:
            members[g] = (*now, *left)
    return new if members == dict(new.members) else Firewall(ports=new.ports, rules=new.rules, members=members)


def delta(old: Applied, new: Firewall) -> tuple[str, Applied]:
    """The script taking tables that hold `old` to `new` ("" when nothing changes), and what they
    then hold. Raises Invalid for a bad value, as render does."""
    before = {p.device: p for p in _secured(old.fw.ports)}
    after = {p.device: p for p in _secured(new.ports)}
    removed = [before[d] for d in sorted(before) if d not in after]
    added = [after[d] for d in sorted(after) if d not in before]
    changed = [(before[d], after[d]) for d in sorted(after) if d in before and before[d] != after[d]]

    marks = {d: m for d, m in old.marks.items() if d in after}
    for p, m in zip(added, _free_marks(marks.values(), len(added)), strict=True):
        marks[p.device] = m

    out: list[str] = []
    # Member sets, then group chains (whose rules name the sets): a new port's chains jump to them.
    new_groups = _groups(after.values())
    sets = dict(old.sets)
    for g in sorted(_remote_groups(new.rules, new_groups)):
        for v in (4, 6):
            name = member_set(g, v)
            script, sets[name] = _members_delta(name, v, old.sets.get(name), new.members.get(g, ()))
            out.append(script)
    groups = dict(old.groups)  # a group no port uses any more keeps its chains (and their rules)
    for g in sorted(new_groups):
        rules = tuple(new.rules.get(g, ()))
        had = old.groups.get(g)
        if had is None or _rule_lines(had) != _rule_lines(rules):
            out.append(_chains_of_group(g, rules, had))
        groups[g] = rules
    # Removed ports: map entries, then their chains, then their bridge elements.
    gone_marks = [str(old.marks[p.device]) for p in removed if p.device in old.marks]
    out.append(_elements("delete", "inet", "egress", gone_marks) + _elements("delete", "inet", "ingress", gone_marks))
    for p in removed:
        for d in (INGRESS, EGRESS):
            out.append(f"flush chain inet {TABLE} {port_chain(p.device, d)}\ndelete chain inet {TABLE} {port_chain(p.device, d)}\n")
    out.append(_elements("delete", "bridge", "marks", [nft.ifname(p.device) for p in removed]))
    out.append(_bridge("delete", [*removed, *(o for o, _ in changed)]))
    # Changed and added ports: bridge elements, chains, then the entries that lead to them.
    out.append(_bridge("add", [*(n for _, n in changed), *added]))
    out.append(_fill_chains([*(n for _, n in changed), *added]))
    out.append(_elements("add", "bridge", "marks", [f"{nft.ifname(p.device)} : {marks[p.device]}" for p in added]))
    out.append(_elements("add", "inet", "egress",
                         [f"{marks[p.device]} : jump {port_chain(p.device, EGRESS)}" for p in added]))
    out.append(_elements("add", "inet", "ingress",
                         [f"{marks[p.device]} : jump {port_chain(p.device, INGRESS)}" for p in added]))
    return "".join(out), Applied(new, marks, sets, groups)
