"""Resolve a product's attributes on a node (PAAS.md 3.4): what its recipes see as variables.

The release's attribute defaults (the catalogue's paas_products.attributes) are overridden, key by
key, by the tier's values for that product (its type too, when the tier gives one). Then by type
(graph.parse_ref):
- `Plain` (or none): the value as is.
- `IP(t)`: the address of tier t's first member (the lowest replica that is a member, replica 1
  while it lives); `IPALL(t)` and `MEMBERS(t)`: every member's address, comma-joined in replica
  order ("" while t has none). A member is a node of t in this instance (paas_tier_instances) with
  an address whose status is not one of LEAVING (being removed, failed or gone).
- `OUTPUT(t.p.K)`: value K that product p's recipes wrote to $PAAS_OUTPUT on t's first member
  (paas_product_instances.outputs); StepFailed when it wrote none.
The result is a flat {key: str} the caller stores on the product instance (`store`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cumulo.db import Database, utcnow
from cumulo.paas.engine.base import Status, StepFailed
from cumulo.paas.graph import parse_ref
from cumulo.paas.models import paas_product_instances, paas_tier_instances

# Node statuses that are not (or no longer) members of their tier.
LEAVING = frozenset({
    Status.ERROR, Status.UNINSTALLING, Status.UNINSTALLED, Status.UNDEPLOYING, Status.UNDEPLOYED,
    "DELETING", "DELETED", "REMOVING", "REMOVED",
})


def merged(product: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The release's attributes overridden by the tier's (by key; the tier's order after the
    release's), each {key, value, type}."""
    out: dict[str, dict[str, Any]] = {}
    release = product.get("release") or {}
    for attr in release.get("attributes") or []:
        out[str(attr["key"])] = {"key": str(attr["key"]), "value": attr.get("value", ""),
                                 "type": attr.get("type") or "Plain"}
    for attr in product.get("attributes") or []:
        key = str(attr["key"])
        base = out.get(key, {"key": key, "type": "Plain"})
        out[key] = {**base, "value": attr.get("value", ""), "type": attr.get("type") or base["type"]}
    return list(out.values())


def members(nodes: Sequence[Mapping[str, Any]], tier: str) -> list[Mapping[str, Any]]:
    """Tier `tier`'s member nodes in replica order."""
    return sorted((n for n in nodes if n["tier"] == tier and n.get("ip") and str(n.get("status")) not in LEAVING),
                  key=lambda n: int(n["replica"]))


async def nodes_of(db: Database, instance_id: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        q = sa.select(paas_tier_instances).where(paas_tier_instances.c.env_instance_id == instance_id)
        return [dict(r) for r in (await conn.execute(q)).mappings()]


async def _output(db: Database, nodes: Sequence[Mapping[str, Any]], tier: str, product: str, key: str,
                  where: str) -> str:
    first = members(nodes, tier)
    if not first:
        raise StepFailed(f"{where}: OUTPUT({tier}.{product}.{key}): tier {tier} has no node")
    node = first[0]
    async with db.read() as conn:
        q = sa.select(paas_product_instances.c.outputs).where(
            paas_product_instances.c.tier_instance_id == node["id"], paas_product_instances.c.product == product)
        outputs = (await conn.execute(q)).scalar_one_or_none()
    if not isinstance(outputs, Mapping) or key not in outputs:
        raise StepFailed(f"{where}: OUTPUT({tier}.{product}.{key}): product {product} on {node['name']} "
                         f"wrote no {key} to $PAAS_OUTPUT")
    return str(outputs[key])


async def resolve(db: Database, instance_id: str, product: Mapping[str, Any], *, where: str = "",
                  nodes: Sequence[Mapping[str, Any]] | None = None) -> dict[str, str]:
    """The product's attributes (a tier's product entry of the instance's environment snapshot)
    resolved against the instance's inventory now."""
    if nodes is None:
        nodes = await nodes_of(db, instance_id)
    out: dict[str, str] = {}
    for attr in merged(product):
        here = f"{where or product.get('name')}, attribute {attr['key']}"
        ref = parse_ref(attr["type"], attr["value"], where=here)
        if ref is None:
            out[attr["key"]] = "" if attr["value"] is None else str(attr["value"])
        elif ref.type == "OUTPUT":
            assert ref.product is not None and ref.key is not None
            out[attr["key"]] = await _output(db, nodes, ref.tier, ref.product, ref.key, here)
        else:
            ips = [str(n["ip"]) for n in members(nodes, ref.tier)]
            out[attr["key"]] = (ips[0] if ips else "") if ref.type == "IP" else ",".join(ips)
    return out


async def store(db: Database, product_instance_id: str, attributes: Mapping[str, str]) -> None:
    """Keep the resolved attributes of the last run on the product instance."""
    async with db.write() as conn:
        await conn.execute(sa.update(paas_product_instances).where(paas_product_instances.c.id == product_instance_id)
                           .values(attributes=dict(attributes), updated_at=utcnow()))
