"""The deploy and destroy plans: pure functions from an environment snapshot (and, for destroy, the
inventory and the ledger) to the steps of a task and the inventory rows it inserts.

Step keys (OWNERS.md): "net", "sg" (the instance's group), "sg:<tier>", "server:<tier>:<r>",
"active:<tier>:<r>", "fip:<tier>:<r>", "prepare:<tier>:<r>" (VM nodes), "install|configure|start:<tier>:<r>:<product>",
"template:<tier>", "reconfigure:<tier>:<r>:<product>", "group:<tier>" (a tier with an affinity
policy: its server group, before its servers); destroy adds "stop|uninstall:<tier>:<r>:<product>",
"delete:<ledger type>:<name>" and "finish".

Deploy order:
- the infrastructure of every node starts at once (after "net", "sg" and its tier's "sg:<tier>"):
  server -> active -> fip (when the tier asks for floating IPs);
- on a node, products run one after another, install -> configure -> start each, in dependency order
  (product `dep*` metadata naming a product of the same tier), else in the order listed;
- a node's first product step also waits for EVERY node of the tiers its tier depends on
  (graph.edges: IP/IPALL/OUTPUT refs, product and tier `dep*` metadata) to have finished its last
  step ("start" of its last product; "active" for a node without products); independent tiers
  therefore deploy in parallel;
- "template:<tier>" after the first node's last step and its reconfigures (a snapshot pauses a
  container, and an exec into a paused one is refused), for a scalable tier (max > min, or policies)
  when templates are on and no product says `template=no`;
- "reconfigure:<tier>:<r>:<product>" at the end for each product holding a MEMBERS ref (or an IP/IPALL
  ref to its own tier, which orders nothing), after every node of the referenced tiers, so its
  membership is complete when the task reports SUCCESS.

`node_steps` plans ONE node (server/active/fip/install/configure/start) and is what ELASTICITY's
scale plan reuses; its signature is stable.

Step params carry what the action needs: tier, replica, node (the tierInstanceName), server (the
server's name), product/version for product steps. Actions read the tier and product specs from the
instance's environment snapshot (run.instance()).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cumulo.errors import Invalid
from cumulo.paas import graph, guest
from cumulo.paas.engine import reverter
from cumulo.paas.engine.base import Plan, Status, StepSpec
from cumulo.paas.engine.ledger import LIVE

# uuid5 namespace of the inventory rows a deploy plans (deterministic ids: a replan is the same plan)
_ROWS = uuid.UUID("6c1d7f6e-5a51-4d0e-9b0e-7a3e9d1c0a13")
PRODUCT_STEPS = ("install", "configure", "start")


# ---- names (deterministic: adopt finds a crashed create by them) --------------------------------

def short(instance_id: str) -> str:
    """The first 8 characters of the instance id, as resource names carry it."""
    return instance_id[:8]


def node_name(name: str, tier: str, replica: int) -> str:
    """Pegasus's tierInstanceName: `<blueprintName>-<tier>-<replica>`."""
    return f"{name}-{tier}-{replica}"


def server_name(instance_id: str, tier: str, replica: int) -> str:
    return f"paas-{short(instance_id)}-{tier}-{replica}"


def secgroup_name(instance_id: str, tier: str | None = None) -> str:
    """A tier's security group `paas-<inst8>-<tier>`; without a tier, the instance's own group
    `paas-<inst8>` (every node is in it; its members reach each other on every port)."""
    return f"paas-{short(instance_id)}" + (f"-{tier}" if tier else "")


def template_name(instance_id: str, tier: str) -> str:
    return f"paas-{short(instance_id)}-{tier}-template"


def tier_instance_id(instance_id: str, tier: str, replica: int) -> str:
    return str(uuid.uuid5(_ROWS, f"{instance_id}/{tier}/{replica}"))


def product_instance_id(tier_instance: str, product: str) -> str:
    return str(uuid.uuid5(_ROWS, f"{tier_instance}/{product}"))


# ---- reading the normalised shapes ---------------------------------------------------------------

def tiers_of(environment: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(environment.get("tiers") or [])


def _metadata(product: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A product's metadata: its release's (a snapshot copies the release in), else its own."""
    release = product.get("release") or {}
    return list(release.get("metadata") or product.get("metadata") or [])


def product_meta(product: Mapping[str, Any], key: str) -> str | None:
    for meta in _metadata(product):
        if meta.get("key") == key:
            return str(meta.get("value") if meta.get("value") is not None else "")
    return None


def product_order(tier: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tier's products in install order: a product after those of the same tier its `dep*`
    metadata names, else in the order listed. Invalid names a cycle."""
    products = list(tier.get("products") or [])
    names = [str(p["name"]) for p in products]
    deps: dict[str, set[str]] = {n: set() for n in names}
    for p in products:
        for meta in _metadata(p):
            if not str(meta.get("key", "")).startswith("dep"):
                continue
            value = str(meta.get("value") or "")
            target = value if value in deps else value.rpartition("-")[0]
            if target in deps and target != p["name"]:
                deps[str(p["name"])].add(target)
    done: list[str] = []
    while len(done) < len(names):
        ready = [n for n in names if n not in done and deps[n] <= set(done)]
        if not ready:
            pending = [n for n in names if n not in done]
            raise Invalid(f"tier {tier['name']}: product dependency cycle among {', '.join(pending)}")
        done.append(ready[0])  # one at a time keeps the listed order among the ready ones
    by_name = {str(p["name"]): p for p in products}
    return [by_name[n] for n in done]


def scalable(tier: Mapping[str, Any]) -> bool:
    """Whether a tier gets a template image (templates on): Pegasus's "scalable" (max > min) or
    autoscaling policies, and no product says `template=no`."""
    if int(tier.get("max") or 0) <= int(tier.get("min") or 0) and not tier.get("policies"):
        return False
    return all((product_meta(p, "template") or "").strip().lower() != "no" for p in tier.get("products") or [])


def _membership_products(tier: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], set[str]]]:
    """(product, referenced tiers) for each product of `tier` whose membership must be completed at
    the end of a deploy: MEMBERS refs, and IP/IPALL refs to its own tier (they order nothing)."""
    out = []
    for p in product_order(tier):
        refs: set[str] = set()
        for attr in p.get("attributes") or []:
            ref = graph.parse_ref(attr.get("type"), attr.get("value", ""))
            if ref is None:
                continue
            if ref.type == "MEMBERS" or (ref.type in ("IP", "IPALL") and ref.tier == tier["name"]):
                refs.add(ref.tier)
        if refs:
            out.append((p, refs))
    return out


# ---- one node ------------------------------------------------------------------------------------

def node_last_key(tier: Mapping[str, Any], replica: int) -> str:
    """The key of a node's last deploy step: "start" of its last product, else "active"."""
    products = product_order(tier)
    if products:
        return f"start:{tier['name']}:{replica}:{products[-1]['name']}"
    return f"active:{tier['name']}:{replica}"


def node_steps(
    instance_id: str, tier: Mapping[str, Any], replica: int, node: str, *,
    after: Sequence[str] = (), products_after: Sequence[str] = (), from_template: str | None = None,
) -> list[StepSpec]:
    """The steps of ONE node of `tier` (a mapping in graph.py's normalised shape): "server:<tier>:<r>"
    (after `after`), "active:<tier>:<r>", "fip:<tier>:<r>" when the tier has floatingip, then per
    product in `product_order` "install", "configure", "start" (the first one also after
    `products_after`). `node` is the node's tierInstanceName (its paas_tier_instances row's name).

    `from_template` (an image id): the server boots from that template image (server params
    "image" and "from_template") and each "install" step keeps its key and kind but carries
    params "skip" = "template image <id>" (and "template_image"): the install action records the
    skip (paas_exec_records.skipped_reason) instead of running the recipe; configure and start run.

    A VM tier (`"guest": "vm"` in the snapshot: its image has hw_qemu_guest_agent, paas/guest.py)
    gets "prepare:<tier>:<r>" (kind "prepare": PAAS_ROOT on the VM's persistent disk) after
    "active", before its first product step. A template node of a VM tier whose metadata says
    bootstrap=user_data boots with its configure+start as user_data (server params "bootstrap"),
    and its configure/start steps (params "boot") collect the boot's results through exec.

    Used by deploy_plan and by ELASTICITY's scale plan (a scale task passes no `after`: the security
    groups already exist and the server action finds them by name)."""
    t = str(tier["name"])
    base = {"tier": t, "replica": replica, "node": node}
    server_params: dict[str, Any] = {**base, "server": server_name(instance_id, t, replica)}
    if from_template:
        server_params.update(image=from_template, from_template=from_template)
    boot = guest.boots_with_user_data(tier, from_template)
    if boot:
        server_params["bootstrap"] = guest.USER_DATA
    steps = [
        StepSpec(f"server:{t}:{replica}", "server", tuple(after), server_params),
        StepSpec(f"active:{t}:{replica}", "active", (f"server:{t}:{replica}",), dict(base)),
    ]
    if tier.get("floatingip"):
        steps.append(StepSpec(f"fip:{t}:{replica}", "fip", (f"active:{t}:{replica}",), dict(base)))
    previous = [f"active:{t}:{replica}", *products_after]
    if guest.is_vm_tier(tier):
        steps.append(StepSpec(f"prepare:{t}:{replica}", "prepare", (f"active:{t}:{replica}",), dict(base)))
        previous = [f"prepare:{t}:{replica}", *products_after]
    for p in product_order(tier):
        for kind in PRODUCT_STEPS:
            params: dict[str, Any] = {**base, "product": str(p["name"]), "version": str(p.get("version") or "")}
            if kind == "install" and from_template:
                params.update(skip=f"template image {from_template}", template_image=from_template)
            if boot and kind != "install":
                params["boot"] = guest.USER_DATA
            key = f"{kind}:{t}:{replica}:{p['name']}"
            steps.append(StepSpec(key, kind, tuple(dict.fromkeys(previous)), params))
            previous = [key]
    return steps


# ---- deploy --------------------------------------------------------------------------------------

def deploy_plan(
    instance_id: str, name: str, environment: Mapping[str, Any], *, project_id: str, templates: bool = True,
) -> Plan:
    """The plan of a deploy of `environment` (the normalised snapshot: {"tiers": [tier, ...], ...})
    as instance `name` (Pegasus's blueprintName) with id `instance_id`: rows for
    paas_tier_instances (replicas 1..initial, status INIT) and paas_product_instances (status
    INIT), and the steps (module docstring). `templates`: conf.paas.templates == "on".
    `project_id` is the owning project (kept in the "net" step's params for the action's logs).
    Invalid for a tier dependency cycle or a product dependency cycle inside a tier."""
    tiers = tiers_of(environment)
    graph.order(tiers)  # Invalid naming a cycle, before anything is planned
    deps = graph.edges(tiers)
    by_name = {str(t["name"]): t for t in tiers}
    initial = {str(t["name"]): max(int(t.get("initial") or 0), 0) for t in tiers}
    plan = Plan(instance_status=str(Status.DEPLOYING))
    tier_rows: list[dict[str, Any]] = []
    product_rows: list[dict[str, Any]] = []
    steps: list[StepSpec] = [StepSpec("net", "network", (), {"project_id": project_id}),
                             StepSpec("sg", "secgroup", (), {"tier": None})]
    done_keys = {t: [node_last_key(by_name[t], r) for r in range(1, initial[t] + 1)] for t in by_name}
    for tier in tiers:
        t = str(tier["name"])
        steps.append(StepSpec(f"sg:{t}", "secgroup", (), {"tier": t}))
        infra: tuple[str, ...] = ("net", "sg", f"sg:{t}")
        if str(tier.get("affinity") or "").strip().lower() not in ("", "none"):  # actions_group.py
            steps.append(StepSpec(f"group:{t}", "server_group", (), {"tier": t}))
            infra = (*infra, f"group:{t}")
        waits = [k for d in sorted(deps[t]) for k in done_keys[d]]
        for r in range(1, initial[t] + 1):
            node = node_name(name, t, r)
            tid = tier_instance_id(instance_id, t, r)
            tier_rows.append({"id": tid, "env_instance_id": instance_id, "tier": t, "replica": r, "name": node,
                              "status": str(Status.INIT)})
            for p in product_order(tier):
                product_rows.append({
                    "id": product_instance_id(tid, str(p["name"])), "tier_instance_id": tid,
                    "env_instance_id": instance_id, "product": str(p["name"]),
                    "version": str(p.get("version") or ""), "status": str(Status.INIT),
                })
            steps += node_steps(instance_id, tier, r, node, after=infra, products_after=waits)
    for tier in tiers:
        t = str(tier["name"])
        for product, refs in _membership_products(tier):
            others = [k for ref in sorted(refs) if ref in done_keys for k in done_keys[ref]]
            for r in range(1, initial[t] + 1):
                own = node_last_key(tier, r)
                steps.append(StepSpec(
                    f"reconfigure:{t}:{r}:{product['name']}", "reconfigure", tuple(dict.fromkeys([own, *others])),
                    {"tier": t, "replica": r, "node": node_name(name, t, r), "product": str(product["name"]),
                     "version": str(product.get("version") or "")},
                ))
    for tier in tiers:
        t = str(tier["name"])
        if templates and initial[t] >= 1 and scalable(tier):
            first = [node_last_key(tier, 1), *(s.key for s in steps if s.key.startswith(f"reconfigure:{t}:1:"))]
            steps.append(StepSpec(f"template:{t}", "template", tuple(first), {
                "tier": t, "replica": 1, "node": node_name(name, t, 1),
                "image_name": template_name(instance_id, t), "server": server_name(instance_id, t, 1),
            }))
    plan.steps = steps
    plan.rows = {"paas_tier_instances": tier_rows, "paas_product_instances": product_rows}
    return plan


# ---- destroy -------------------------------------------------------------------------------------

def destroy_plan(
    instance: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], resources: Iterable[Mapping[str, Any]] = (),
) -> Plan:
    """The plan of a destroy of `instance` (its paas_env_instances row, with the environment
    snapshot), whose nodes are `nodes` (its paas_tier_instances rows) and whose ledger is
    `resources` (its paas_resources rows, e.g. reverter.ledger_rows(instance_id=...); only the live
    ones count: "creating" ones too, the undo looks a resource without an id up by its name, so a
    create that crashed leaks nothing).

    Steps: per node that has a server, per product in reverse install order "stop:..." then
    "uninstall:..." (params best_effort: true: the product action reports a failure and goes on),
    a tier's after the tiers that depend on it (web before its backend); then one
    "delete:<type>:<name>" (kind "delete_resource", actions_destroy.py) per live ledger name, in the
    reverter's order (floating IPs, servers (each waits until gone), template images, security
    groups, router interfaces, subnets, networks), each type after the one before; then "finish"
    (instance UNDEPLOYED; the runner deletes the row). ("revert:*" keys are the runner's rollback
    only, so a destroy has keys of its own.)"""
    tiers = tiers_of(instance.get("environment") or {})
    by_name = {str(t["name"]): t for t in tiers}
    try:
        deps = graph.edges(tiers)
    except Invalid:
        deps = {t: set() for t in by_name}
    plan = Plan(instance_status=str(Status.UNINSTALLING))
    steps: list[StepSpec] = []
    last_of_tier: dict[str, list[str]] = {t: [] for t in by_name}
    first_of_tier: dict[str, list[StepSpec]] = {t: [] for t in by_name}
    for node in sorted(nodes, key=lambda n: (str(n["tier"]), int(n["replica"]))):
        t, r = str(node["tier"]), int(node["replica"])
        tier = by_name.get(t)
        if tier is None or not node.get("server_id"):
            continue
        previous: list[str] = []
        base = {"tier": t, "replica": r, "node": str(node["name"]), "best_effort": True}
        for kind in ("stop", "uninstall"):
            for p in reversed(product_order(tier)):
                key = f"{kind}:{t}:{r}:{p['name']}"
                step = StepSpec(key, kind, tuple(previous),
                                {**base, "product": str(p["name"]), "version": str(p.get("version") or "")})
                if not previous:
                    first_of_tier[t].append(step)
                steps.append(step)
                previous = [key]
        if previous:
            last_of_tier[t].append(previous[0])
    # a tier stops after the tiers that depend on it (web before its backend)
    dependents = {t: {d for d, on in deps.items() if t in on} for t in by_name}
    for t, firsts in first_of_tier.items():
        waits = tuple(k for d in sorted(dependents.get(t, ())) for k in last_of_tier.get(d, []))
        for step in firsts:
            i = steps.index(step)
            steps[i] = StepSpec(step.key, step.kind, tuple(dict.fromkeys([*step.depends_on, *waits])), step.params)
    product_keys = [k for keys in last_of_tier.values() for k in keys]
    live: dict[tuple[str, str], str | None] = {}
    for row in sorted(resources, key=lambda r: int(r.get("id") or 0)):
        if row.get("state") in LIVE:
            ident = (str(row["type"]), str(row["name"]))
            live[ident] = str(row["resource_id"]) if row.get("resource_id") else live.get(ident)
    before = product_keys
    kinds = [*reverter.ORDER, *sorted({t for t, _ in live} - set(reverter.ORDER))]
    for type_ in kinds:
        layer = [f"delete:{type_}:{res}" for t, res in live if t == type_]
        for (t, res), rid in live.items():
            if t == type_:
                steps.append(StepSpec(f"delete:{t}:{res}", "delete_resource", tuple(before),
                                      {"type": t, "name": res, "resource_id": rid}))
        before = layer or before
    steps.append(StepSpec("finish", "finish", tuple(before), {}))
    plan.steps = steps
    return plan
