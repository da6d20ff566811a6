"""Tier dependencies: attribute references between tiers, ordering edges, and the deploy order.

The normalised shapes (what the catalogue stores in `paas_tiers.spec` and what an instance's
environment snapshot holds; the API's shapes module turns Pegasus's DTOs into them):

    tier = {"name", "flavour", "image", "keypair": str|None, "floatingip": bool, "region": str|None,
            "networks": [{"name", "subnets": [{"name", "cidr"}]}], "security_group": str|None,
            "affinity": str|None, "min": int, "max": int, "initial": int,
            "products": [product], "metadata": [{"key", "value", "description"}],
            "policies": [policy]}
    product = {"name", "version", "attributes": [{"key", "value", "type", "description"}]}
              (in a snapshot also "release": the whole paas_products row as a dict: metadata,
              attributes (defaults), recipes, builtin)
    policy = {"name", "metric": "cpu"|"memory", "statistic": "avg", "comparison": "gt"|"ge"|"lt"|"le",
              "threshold", "period", "evaluation_periods", "adjustment_type", "scaling_adjustment",
              "min_adjustment_step": int|None, "cooldown"}

Attribute types (Pegasus's Plain, IP, IPALL, plus Cumulo's OUTPUT and MEMBERS):
- `Plain` (or no type): the value as is.
- `IP(t)`: the address of tier t's first node; `IPALL(t)`: all of t's nodes' addresses, comma-joined.
  Both are ordering edges (t deploys first) and make this product reconfigure when t scales.
- `MEMBERS(t)`: like IPALL but no ordering edge (t may have no node yet: the value is then empty);
  reconfigured when t's membership changes (the other direction of Pegasus's `balancer`).
- `OUTPUT(t.product.KEY)`: a value product `product` on t's first node wrote; an ordering edge.
Other ordering edges: product metadata `dep*` = "<product>[-<version>]" (the tier holding that product
first; inside one tier, the install order) and tier metadata `dep*` = "<tier>".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cumulo.errors import Invalid

REF_TYPES = ("IP", "IPALL", "MEMBERS", "OUTPUT")
ATTRIBUTE_TYPES = ("Plain", *REF_TYPES)
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
_REF = re.compile(rf"^(IP|IPALL|MEMBERS)\(({_NAME})\)$")
_OUTPUT = re.compile(rf"^OUTPUT\(({_NAME})\.({_NAME})\.([A-Za-z_][A-Za-z0-9_]{{0,63}})\)$")


@dataclass(frozen=True)
class Ref:
    """A reference from an attribute to another tier (and for OUTPUT a product's output key)."""

    type: str  # IP, IPALL, MEMBERS, OUTPUT
    tier: str
    product: str | None = None
    key: str | None = None

    @property
    def orders(self) -> bool:
        """Whether the referenced tier must be deployed first."""
        return self.type != "MEMBERS"


def parse_ref(type_: str | None, value: Any, *, where: str = "attribute") -> Ref | None:
    """The reference an attribute of `type_` holds, None for Plain; Invalid names a bad one."""
    if type_ in (None, "", "Plain"):
        return None
    if type_ not in REF_TYPES:
        raise Invalid(f"{where}: unknown attribute type {type_!r} (one of {', '.join(ATTRIBUTE_TYPES)})")
    text = str(value).strip()
    if type_ == "OUTPUT":
        m = _OUTPUT.match(text)
        if not m:
            raise Invalid(f"{where}: an OUTPUT attribute's value must be OUTPUT(<tier>.<product>.<KEY>), not {text!r}")
        return Ref("OUTPUT", m.group(1), m.group(2), m.group(3))
    m = _REF.match(text)
    if not m or m.group(1) != type_:
        raise Invalid(f"{where}: an {type_} attribute's value must be {type_}(<tier>), not {text!r}")
    return Ref(type_, m.group(2))


def _product_name(dep: str, known: Iterable[str]) -> str:
    """`dep*` metadata values are "<product>" or "<product>-<version>" (SDC's form)."""
    names = set(known)
    if dep in names:
        return dep
    head, _, _ = dep.rpartition("-")
    return head if head in names else dep


def tier_refs(tier: Mapping[str, Any]) -> list[Ref]:
    """Every reference the tier's products' attributes hold (validated)."""
    refs: list[Ref] = []
    for product in tier.get("products", []):
        for attr in product.get("attributes", []):
            where = f"tier {tier['name']}, product {product['name']}, attribute {attr.get('key')}"
            ref = parse_ref(attr.get("type"), attr.get("value", ""), where=where)
            if ref is not None:
                refs.append(ref)
    return refs


def edges(tiers: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """tier -> the tiers it must wait for. Invalid for a reference to a tier or product that is not
    in the environment (the message names it)."""
    names = [t["name"] for t in tiers]
    holder: dict[str, str] = {}
    for t in tiers:
        for p in t.get("products", []):
            holder.setdefault(p["name"], t["name"])
    out: dict[str, set[str]] = {n: set() for n in names}
    for t in tiers:
        for ref in tier_refs(t):
            if ref.tier not in out:
                raise Invalid(f"tier {t['name']}: attribute refers to tier {ref.tier!r}, which is not in the environment")
            if ref.orders and ref.tier != t["name"]:
                out[t["name"]].add(ref.tier)
        for meta in t.get("metadata", []):
            if str(meta.get("key", "")).startswith("dep"):
                dep = str(meta.get("value", ""))
                if dep not in out:
                    raise Invalid(f"tier {t['name']}: metadata {meta['key']} names tier {dep!r}, which is not in the environment")
                if dep != t["name"]:
                    out[t["name"]].add(dep)
        for p in t.get("products", []):
            for meta in (p.get("release") or {}).get("metadata", []) or p.get("metadata", []):
                if str(meta.get("key", "")).startswith("dep"):
                    name = _product_name(str(meta.get("value", "")), holder)
                    if name not in holder:
                        raise Invalid(
                            f"tier {t['name']}: product {p['name']} depends on {meta.get('value')!r}, "
                            "which no tier of the environment holds"
                        )
                    if holder[name] != t["name"]:
                        out[t["name"]].add(holder[name])
    return out


def order(tiers: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Deploy order as layers: each layer's tiers depend only on earlier layers (deploy a layer's
    tiers in parallel). A cycle is Invalid naming its path: "tier dependency cycle: a -> b -> a"."""
    deps = edges(tiers)
    done: set[str] = set()
    layers: list[list[str]] = []
    remaining = [t["name"] for t in tiers]
    while remaining:
        layer = [n for n in remaining if deps[n] <= done]
        if not layer:
            raise Invalid(f"tier dependency cycle: {' -> '.join(_cycle(deps, set(remaining)))}")
        layers.append(layer)
        done.update(layer)
        remaining = [n for n in remaining if n not in done]
    return layers


def _cycle(deps: Mapping[str, set[str]], pending: set[str]) -> list[str]:
    """One cycle among `pending` (every one of them waits for another of them)."""
    start = sorted(pending)[0]
    path = [start]
    seen = {start: 0}
    node = start
    while True:
        node = sorted(deps[node] & pending)[0]
        if node in seen:
            return [*path[seen[node]:], node]
        seen[node] = len(path)
        path.append(node)


def membership_dependents(tiers: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """tier T -> the tiers whose products must be reconfigured when T's nodes change (they refer to
    T with IP, IPALL or MEMBERS). A tier may be its own dependent."""
    out: dict[str, set[str]] = {t["name"]: set() for t in tiers}
    for t in tiers:
        for ref in tier_refs(t):
            if ref.type in ("IP", "IPALL", "MEMBERS") and ref.tier in out:
                out[ref.tier].add(t["name"])
    return out
