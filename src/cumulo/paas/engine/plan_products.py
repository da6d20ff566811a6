"""Plans (pure) of Pegasus's product-level inventory writes (PAAS.md 1.2):

- `reconfigure_plan`: PUT .../tierInstance (TierInstanceDto, Pegasus's "scale reconfigure"): new
  attribute values for the tier's products. The instance's environment snapshot takes them (so the
  nodes a later scale adds get them too); then on every live node of the tier, for each product
  whose values changed, a "reconfigure:<tier>:<r>:<product>" step (PRODUCTS' action: re-resolve,
  the configure recipe, then "reload" or "start"), a node's products one after another in install
  order, the nodes in parallel. Returns the plan and the new snapshot.
- `install_plan`: POST .../tierInstance/{node}/productInstance (ProductInstanceDto): one more product
  release on ONE node: the entry (name, version, attributes, release) goes into the snapshot under
  NODE_PRODUCTS[<node>][<product>] (the tier's spec does not hold it; the product actions look there),
  its paas_product_instances row (status INIT; an UNINSTALLED row of the same product is taken over)
  and "install|configure|start:<tier>:<r>:<product>" steps.
- `uninstall_plan`: DELETE .../productInstance/{name}: "stop" then "uninstall" of a product that
  POST added to the node; the product instance ends UNINSTALLED (kept, with its records). A product
  of the tier's own spec is refused (every node of the tier has it: the environment says so).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from cumulo import errors
from cumulo.paas import graph
from cumulo.paas.engine.base import Plan, Status, StepSpec
from cumulo.paas.engine.plan import product_instance_id, product_order
from cumulo.paas.engine.plan_scale import live_nodes


def _tier(environment: Mapping[str, Any], tier: str, name: str) -> dict[str, Any]:
    found = next((t for t in environment.get("tiers") or [] if str(t.get("name")) == tier), None)
    if found is None:
        raise errors.NotFound(f"tier {tier[:64]} not found in environment instance {name}")
    return dict(found)


def tier_products(instance: Mapping[str, Any], tier: str) -> set[str]:
    """The product names of the tier's own spec (every node of the tier has them)."""
    env = instance.get("environment") or {}
    return {str(p["name"]) for p in _tier(env, tier, str(instance.get("name"))).get("products") or []}


def reconfigure_plan(instance: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], tier: str,
                     values: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[Plan, dict[str, Any]]:
    """`values`: product name -> attributes {key, value[, type, description]} to set (merged key by
    key into the product's attributes in the snapshot). Invalid for an unknown product, an empty
    change or a tier with no live node; the snapshot's references are checked again (graph.order)."""
    env = copy.deepcopy(dict(instance.get("environment") or {}))
    name = str(instance.get("name"))
    spec = _tier(env, tier, name)
    if not values:
        raise errors.Invalid("tierInstance: no attribute to change (productInstanceDtos[].attributes or attributes)")
    products = {str(p["name"]): p for p in spec.get("products") or []}
    for product, attrs in values.items():
        if product not in products:
            raise errors.Invalid(f"product {product[:64]} is not in tier {tier} of {name}")
        current = {str(a["key"]): dict(a) for a in products[product].get("attributes") or []}
        for a in attrs:
            current[str(a["key"])] = {**current.get(str(a["key"]), {"type": "Plain", "description": ""}), **dict(a)}
        products[product]["attributes"] = list(current.values())
    for t in env.get("tiers") or []:
        if str(t.get("name")) == tier:
            t["products"] = [products[str(p["name"])] for p in t.get("products") or []]
    graph.order(env.get("tiers") or [])  # Invalid naming an unknown tier or a cycle a new reference makes
    members = live_nodes(nodes, tier)
    members = [n for n in members if n.get("server_id") and str(n["status"]) != str(Status.ERROR)]
    if not members:
        raise errors.Invalid(f"tier {tier} of {name} has no running node to reconfigure")
    plan = Plan()
    order = [str(p["name"]) for p in product_order(_tier(env, tier, name)) if str(p["name"]) in values]
    for n in members:
        r = int(n["replica"])
        previous: tuple[str, ...] = ()
        for product in order:
            key = f"reconfigure:{tier}:{r}:{product}"
            plan.steps.append(StepSpec(key, "reconfigure", previous, {
                "tier": tier, "replica": r, "node": str(n["name"]), "product": product,
                "version": str(products[product].get("version") or "")}))
            previous = (key,)
    return plan, env


NODE_PRODUCTS = "node_products"  # the snapshot's key: node name -> product name -> entry POST added


def node_entry(environment: Mapping[str, Any], node: str, product: str) -> Mapping[str, Any] | None:
    """The entry of a product POST added to `node` ({name, version, attributes, release}), else None."""
    return ((environment.get(NODE_PRODUCTS) or {}).get(node) or {}).get(product)


def install_plan(instance: Mapping[str, Any], node: Mapping[str, Any], existing: Sequence[Mapping[str, Any]],
                 entry: Mapping[str, Any]) -> tuple[Plan, dict[str, Any]]:
    """`entry`: the product as a snapshot holds it {name, version, attributes, release}; `existing`:
    the node's paas_product_instances rows. Conflict when the node has the product (and it is not
    UNINSTALLED) or its tier does; Invalid when the node runs no server. The new snapshot keeps
    the entry under NODE_PRODUCTS (what the product actions and a later uninstall read)."""
    product = str(entry["name"])
    if not node.get("server_id") or str(node["status"]) in (str(Status.UNDEPLOYED), str(Status.UNINSTALLING)):
        raise errors.Invalid(f"tier instance {node['name']} is {node['status']}: it runs no server to install on")
    if product in tier_products(instance, str(node["tier"])):
        raise errors.Conflict(f"product {product} is part of tier {node['tier']}: every node of it has it")
    old = next((p for p in existing if str(p["product"]) == product), None)
    if old is not None and str(old["status"]) != str(Status.UNINSTALLED):
        raise errors.Conflict(f"tier instance {node['name']} already has product {product} "
                              f"({old['version']}, {old['status']})")
    env = copy.deepcopy(dict(instance.get("environment") or {}))
    tiers = {str(t.get("name")) for t in env.get("tiers") or []}
    for attr in entry.get("attributes") or []:
        ref = graph.parse_ref(attr.get("type"), attr.get("value", ""), where=f"attribute {attr.get('key')}")
        if ref is not None and ref.tier not in tiers:
            raise errors.Invalid(f"attribute {attr.get('key')}: {instance.get('name')} has no tier {ref.tier}")
    env.setdefault(NODE_PRODUCTS, {}).setdefault(str(node["name"]), {})[product] = dict(entry)
    t, r = str(node["tier"]), int(node["replica"])
    base = {"tier": t, "replica": r, "node": str(node["name"]), "product": product,
            "version": str(entry.get("version") or "")}
    plan = Plan()
    previous: tuple[str, ...] = ()
    for kind in ("install", "configure", "start"):
        key = f"{kind}:{t}:{r}:{product}"
        plan.steps.append(StepSpec(key, kind, previous, dict(base)))
        previous = (key,)
    if old is None:  # an UNINSTALLED row is taken over by the install step (status, version)
        plan.rows["paas_product_instances"] = [{
            "id": product_instance_id(str(node["id"]), product), "tier_instance_id": node["id"],
            "env_instance_id": instance["id"], "product": product, "version": str(entry.get("version") or ""),
            "status": str(Status.INIT), "attributes": {}, "outputs": {}}]
    return plan, env


def uninstall_plan(instance: Mapping[str, Any], node: Mapping[str, Any], pi: Mapping[str, Any]) -> Plan:
    """Stop then uninstall product instance `pi` (a paas_product_instances row of `node`) that a
    POST added (its entry is in the snapshot's NODE_PRODUCTS)."""
    product = str(pi["product"])
    if product in tier_products(instance, str(node["tier"])):
        raise errors.Invalid(f"product {product} is part of tier {node['tier']} (every node of it has it): "
                             "change the environment instead")
    if str(pi["status"]) == str(Status.UNINSTALLED):
        raise errors.Conflict(f"product {product} is already uninstalled from {node['name']}")
    if not node.get("server_id"):
        raise errors.Invalid(f"tier instance {node['name']} is {node['status']}: it runs no server")
    if node_entry(instance.get("environment") or {}, str(node["name"]), product) is None:
        raise errors.Invalid(f"product {product} of {node['name']} has no recorded release to uninstall with")
    t, r = str(node["tier"]), int(node["replica"])
    base = {"tier": t, "replica": r, "node": str(node["name"]), "product": product,
            "version": str(pi.get("version") or ""),
            "best_effort": str(pi["status"]) == str(Status.ERROR)}  # a failed product goes whatever its recipes say
    plan = Plan()
    plan.steps = [StepSpec(f"stop:{t}:{r}:{product}", "stop", (), dict(base)),
                  StepSpec(f"uninstall:{t}:{r}:{product}", "uninstall", (f"stop:{t}:{r}:{product}",), dict(base))]
    return plan
