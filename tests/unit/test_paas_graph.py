"""The tier dependency graph: attribute references, ordering edges, layers, cycles."""

from __future__ import annotations

from typing import Any

import pytest

from cumulo.errors import Invalid
from cumulo.paas import graph


def tier(name: str, *attrs: tuple[str, str, str], meta: tuple[tuple[str, str], ...] = (),
         products: tuple[str, ...] = (), product_meta: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    prods = [{"name": p, "version": "1.0", "attributes": [], "release": {"metadata": []}} for p in products]
    prods.insert(0, {
        "name": f"p-{name}", "version": "1.0",
        "attributes": [{"key": k, "type": t, "value": v} for k, t, v in attrs],
        "release": {"metadata": [{"key": k, "value": v} for k, v in product_meta]},
    })
    return {"name": name, "products": prods, "metadata": [{"key": k, "value": v} for k, v in meta]}


def test_ip_and_ipall_order_the_referenced_tier_first() -> None:
    tiers = [tier("web", ("B", "IPALL", "IPALL(backend)")), tier("backend"), tier("db")]
    assert graph.order(tiers) == [["backend", "db"], ["web"]]
    assert graph.edges(tiers)["web"] == {"backend"}


def test_members_is_no_ordering_edge_but_a_membership_dependent() -> None:
    tiers = [tier("web", ("B", "IPALL", "IPALL(backend)")), tier("backend", ("A", "MEMBERS", "MEMBERS(web)"))]
    assert graph.order(tiers) == [["backend"], ["web"]]
    assert graph.membership_dependents(tiers) == {"web": {"backend"}, "backend": {"web"}}


def test_output_ref_parses_and_orders() -> None:
    ref = graph.parse_ref("OUTPUT", "OUTPUT(db.pg.PASSWORD)")
    assert ref == graph.Ref("OUTPUT", "db", "pg", "PASSWORD")
    tiers = [tier("app", ("P", "OUTPUT", "OUTPUT(db.pg.PASSWORD)")), tier("db")]
    assert graph.order(tiers) == [["db"], ["app"]]


def test_tier_and_product_dep_metadata_order() -> None:
    tiers = [tier("a", meta=(("depends", "b"),)), tier("b", product_meta=(("dep1", "p-c-1.0"),)), tier("c")]
    assert graph.order(tiers) == [["c"], ["b"], ["a"]]


def test_cycle_is_named_with_its_path() -> None:
    tiers = [tier("web", ("B", "IP", "IP(backend)")), tier("backend", ("W", "IPALL", "IPALL(web)"))]
    with pytest.raises(Invalid, match=r"tier dependency cycle: backend -> web -> backend"):
        graph.order(tiers)


def test_longer_cycle_and_self_reference_is_no_cycle() -> None:
    tiers = [tier("a", ("X", "IP", "IP(b)")), tier("b", ("X", "IP", "IP(c)")), tier("c", ("X", "IP", "IP(a)")),
             tier("d", ("X", "IP", "IP(d)"))]
    with pytest.raises(Invalid, match=r"cycle: a -> b -> c -> a"):
        graph.order(tiers)
    assert graph.order([tier("d", ("X", "IP", "IP(d)"))]) == [["d"]]


@pytest.mark.parametrize(("type_", "value", "msg"), [
    ("IP", "IPALL(x)", "must be IP"),
    ("IP", "IP(x", "must be IP"),
    ("IPALL", "IPALL(../x)", "must be IPALL"),
    ("OUTPUT", "OUTPUT(x.y)", "OUTPUT"),
    ("Shell", "rm -rf /", "unknown attribute type 'Shell'"),
])
def test_malformed_references_are_named(type_: str, value: str, msg: str) -> None:
    with pytest.raises(Invalid, match=msg):
        graph.parse_ref(type_, value, where="tier web, attribute B")


def test_reference_to_a_missing_tier_or_product_is_invalid() -> None:
    with pytest.raises(Invalid, match="tier 'nope', which is not in the environment"):
        graph.order([tier("web", ("B", "IP", "IP(nope)"))])
    with pytest.raises(Invalid, match="depends on 'ghost-2.0', which no tier"):
        graph.order([tier("web", product_meta=(("dep", "ghost-2.0"),))])
    with pytest.raises(Invalid, match="names tier 'x'"):
        graph.order([tier("web", meta=(("dep", "x"),))])


def test_plain_and_missing_types_are_no_reference() -> None:
    assert graph.parse_ref(None, "IP(x)") is None
    assert graph.parse_ref("Plain", "IP(x)") is None
