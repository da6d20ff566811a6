"""The scale plan: one tier of a deployed instance out (new nodes) or in (by count or a named node).

Pure: the instance row (with its environment snapshot), its nodes (paas_tier_instances rows), the
tier's template row, its applications and its ledger in; a `Plan` (steps + rows to insert) out.
ENGINE's `scale()` loads those, calls `scale_plan` and writes the task, the rows and the steps in one
transaction (a bad request raises before anything is written).

Sizes. `count` is the tier's wanted size (Pegasus's POST tierInstance is `count = size + 1`); it must
lie within the tier's [min, max], else Invalid naming the numbers ("desired size 4 must be between
min 1 and max 3"); the size it already has is Invalid too (nothing to do: a task that changes nothing
would only hide a client's mistake). `remove` names one node (Pegasus's DELETE tierInstance/{name}):
a name that is no live node of the tier is NotFound, and removing it below min is a Conflict (409,
where Pegasus answered a bare 404) naming the numbers. Only one of `count` and `remove`.

Out. New replicas are numbered after the highest replica the tier EVER had: rows of removed nodes are
kept (status UNDEPLOYED, no server, no address), so a number is never reused (a removed node's name,
server name and ledger names never come back and meet a stale record). Each node's steps are DEPLOY's
`plan.node_steps` (server, active, fip, install/configure/start per product). With the tier's active
template image (and `use_template`, and templates "on", and no product saying `template=no`) the
server boots from it (`from_template`) and every "install" step carries params `skip`: the install
action records "template image <id>" (paas_exec_records.skipped_reason) and runs no recipe, while
configure and start run with the node's own attributes. Without one it is a fresh install.
Applications (deployed ones of the tier's products, "artifact:<tier>:<r>:<app>", kind
"deploy_artifact", after the node's last product step): a fresh node gets them all; a node booted
from a template gets those whose `generation` is newer than the template's `app_generation` (the
newest application generation when the image was taken): the older ones are in the image. If the tier has no usable template and should have one (a tier deployed with no
node, templates turned on since, a template left stale, failed, or whose image a rollback deleted:
the ledger says so), the first new node's "template:<tier>" step takes a new one.

In. Victims: the named node, else `scaling.choose_victims` (failed nodes first, then the newest:
the highest replica, replicas being given in creation order).
A victim is drained before it goes: "leave:<tier>:<r>" (kind "node_leaving") marks its row
UNINSTALLING, which takes it out of IP/IPALL/MEMBERS (paas/attributes.py), the membership dependents
are reconfigured without it (below), and only then "stop:<tier>:<r>:<product>" in reverse install
order (best effort: a node that does not answer is still removed), its floating IP and server
deleted through DEPLOY's "delete_resource" steps ("delete:<type>:<name>", found in the ledger by the
step key that made them; the server waits until it is gone), and "removed:<tier>:<r>" (kind
"node_removed") marks the row UNDEPLOYED with no server or address and its product instances
UNINSTALLED. (Pegasus deleted the VM, then reconfigured the balancer; a load balancer user expects
the member out of the pool before it dies.) A node a failed scale-in left draining (UNINSTALLING)
is no member: the tier's size leaves it out, and the next scale of the tier (any: out, in, to the
same size, or a removal of it by name) stops and deletes it.

The membership dependents: every tier in `graph.membership_dependents(tiers)[tier]` (products
referring to the scaled tier with IP, IPALL or MEMBERS), and the tiers holding the product a
product of the scaled tier names in a `balancer` attribute (Pegasus's relation, the other way
round), get "reconfigure:<dep tier>:<r>:<product>" on each of their live nodes (the scaled tier's
new nodes included when it depends on itself): on a scale-out after every new node finished, on a
scale-in after every victim left. PRODUCTS' "reconfigure" action re-resolves the attributes from the
inventory and runs the configure recipe again. Actions of "node_leaving"/"node_removed":
engine/actions_scale.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from cumulo import errors
from cumulo.paas import graph, scaling
from cumulo.paas.engine import plan as deploy
from cumulo.paas.engine.base import Plan, Status, StepSpec
from cumulo.paas.template import usable_template, wants_template

# A node row in one of these states is no member of its tier (a removed node keeps its row: its
# replica number is never reused).
GONE = frozenset({str(Status.UNDEPLOYED), str(Status.UNDEPLOYING), str(Status.UNINSTALLED)})
# Out of the membership but not removed yet (a scale-in that failed after its "leave" step): no
# member, and the next scale of the tier finishes removing it.
DRAINING = frozenset({str(Status.UNINSTALLING)})
_EPOCH = dt.datetime(2000, 1, 1)
_FAILED = frozenset({str(Status.ERROR)})


def tier_spec(instance: Mapping[str, Any], tier: str) -> Mapping[str, Any]:
    """The tier's spec from the instance's environment snapshot; NotFound names an unknown tier."""
    for t in deploy.tiers_of(instance.get("environment") or {}):
        if str(t["name"]) == tier:
            return t
    raise errors.NotFound(f"environment instance {instance.get('name')} has no tier {tier!r}")


def live_nodes(nodes: Sequence[Mapping[str, Any]], tier: str) -> list[Mapping[str, Any]]:
    """The tier's current members (removed and draining nodes left out), by replica: its size."""
    return sorted((n for n in nodes if str(n["tier"]) == tier and str(n["status"]) not in GONE | DRAINING),
                  key=lambda n: int(n["replica"]))


def draining_nodes(nodes: Sequence[Mapping[str, Any]], tier: str) -> list[Mapping[str, Any]]:
    """Nodes of the tier that left its membership and still wait to be removed, by replica."""
    return sorted((n for n in nodes if str(n["tier"]) == tier and str(n["status"]) in DRAINING),
                  key=lambda n: int(n["replica"]))


def next_replica(nodes: Sequence[Mapping[str, Any]], tier: str) -> int:
    """The first replica number after every one the tier ever used (removed nodes count)."""
    return max((int(n["replica"]) for n in nodes if str(n["tier"]) == tier), default=0) + 1


def _bounds(spec: Mapping[str, Any]) -> scaling.Bounds:
    return scaling.Bounds(int(spec.get("min") or 0), int(spec.get("max") or 0))


def _refers_to(product: Mapping[str, Any], tier: str) -> bool:
    for attr in product.get("attributes") or []:
        ref = graph.parse_ref(attr.get("type"), attr.get("value", ""))
        if ref is not None and ref.type in ("IP", "IPALL", "MEMBERS") and ref.tier == tier:
            return True
    return False


def membership_products(tiers: Sequence[Mapping[str, Any]], tier: str) -> list[tuple[str, str, str]]:
    """(dependent tier, product, version) to reconfigure when `tier`'s nodes change: products of
    `graph.membership_dependents` tiers that refer to `tier`, and the products the scaled tier's
    products name in a `balancer` attribute (Pegasus), in tier order then install order."""
    dependents = graph.membership_dependents(tiers).get(tier, set())
    balanced: set[str] = set()
    for t in tiers:
        if str(t["name"]) != tier:
            continue
        for p in t.get("products") or []:
            for attr in p.get("attributes") or []:
                if str(attr.get("key")) == "balancer" and attr.get("value"):
                    balanced.add(str(attr["value"]))
    out: list[tuple[str, str, str]] = []
    for t in tiers:
        name = str(t["name"])
        for p in deploy.product_order(t):
            if (name in dependents and _refers_to(p, tier)) or str(p["name"]) in balanced:
                out.append((name, str(p["name"]), str(p.get("version") or "")))
    return out


def _ledger_rows(resources: Sequence[Mapping[str, Any]], step_key: str, type_: str) -> list[Mapping[str, Any]]:
    return [r for r in resources if r.get("step_key") == step_key and r.get("type") == type_
            and r.get("state") != "deleted"]


def _check_request(count: int | None, remove: str | None) -> None:
    if (count is None) == (remove is None):
        raise errors.Invalid("a scale needs either count (the tier's new size) or remove (a node's name), not both")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise errors.Invalid(f"count must be a whole number, not {count!r}")


def scale_plan(
    instance: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    tier: str,
    *,
    count: int | None = None,
    remove: str | None = None,
    template: Mapping[str, Any] | None = None,
    use_template: bool = True,
    templates: str = "on",
    applications: Sequence[Mapping[str, Any]] = (),
    resources: Sequence[Mapping[str, Any]] | None = None,
) -> Plan:
    """The plan of a scale of `tier` of `instance` (module docstring).

    `nodes`: the instance's paas_tier_instances rows (every tier, removed ones included);
    `template`: the tier's paas_templates row or None; `templates`: conf.paas.templates;
    `applications`: the instance's paas_applications rows; `resources`: its paas_resources rows
    (the ledger: the victims' servers and floating IPs, and whether the template image is still
    live; None: unknown, the template row is trusted)."""
    _check_request(count, remove)
    spec = tier_spec(instance, tier)
    bounds = _bounds(spec)
    members = live_nodes(nodes, tier)
    draining = draining_nodes(nodes, tier)
    current = len(members)
    plan = Plan()
    # nodes an earlier scale-in left draining are finished by any scale of their tier
    _plan_in(plan, instance, spec, draining, resources or (), after=())
    if remove is not None and remove in {str(n["name"]) for n in draining}:
        return plan
    if remove is not None:
        victims = _named_victim(members, tier, remove, bounds)
    else:
        assert count is not None
        bounds.check_desired(count)
        if count == current:
            if draining:
                return plan
            raise errors.Invalid(f"tier {tier} already has {current} nodes")
        if count > current:
            _plan_out(plan, instance, nodes, spec, count - current, template=template, use_template=use_template,
                      templates=templates, applications=applications, resources=resources)
            _plan_reconfigure(plan, instance, nodes, tier, victims=(),
                              after=[_node_done(plan, tier, int(r["replica"]), spec)
                                     for r in plan.rows["paas_tier_instances"]])
            return plan
        chosen = scaling.choose_victims(_as_members(members), current - count, bounds)
        by_name = {str(n["name"]): n for n in members}
        victims = [by_name[m.name] for m in chosen]
    # drain first: the victims leave the membership, their dependents are reconfigured without
    # them, and only then are they stopped and deleted (no traffic sent to a dying node)
    leaving = []
    for v in victims:
        key = f"leave:{tier}:{int(v['replica'])}"
        plan.steps.append(StepSpec(key, "node_leaving", (), {"tier": tier, "replica": int(v["replica"]),
                                                              "node": str(v["name"])}))
        leaving.append(key)
    reconfigured = _plan_reconfigure(plan, instance, nodes, tier, victims=victims, after=leaving)
    _plan_in(plan, instance, spec, victims, resources or (), after=reconfigured or leaving)
    return plan


def _as_members(members: Sequence[Mapping[str, Any]]) -> list[scaling.Member]:
    """Replicas are numbered in creation order, so the replica is the creation order to sort by
    (rows made in one transaction may share a timestamp)."""
    return [scaling.Member(name=str(n["name"]), created_at=_EPOCH + dt.timedelta(seconds=int(n["replica"])),
                           failed=str(n["status"]) in _FAILED) for n in members]


def _named_victim(members: Sequence[Mapping[str, Any]], tier: str, remove: str,
                  bounds: scaling.Bounds) -> list[Mapping[str, Any]]:
    by_name = {str(n["name"]): n for n in members}
    if remove not in by_name:
        raise errors.NotFound(f"tier {tier} has no node named {remove!r}")
    if len(members) - 1 < bounds.min_size:
        raise errors.Conflict(
            f"removing node {remove} would leave tier {tier} with {len(members) - 1} nodes, "
            f"below its min size {bounds.min_size}"
        )
    return [by_name[remove]]


def _plan_out(
    plan: Plan, instance: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], add: int, *,
    template: Mapping[str, Any] | None, use_template: bool, templates: str, applications: Sequence[Mapping[str, Any]],
    resources: Sequence[Mapping[str, Any]] | None,
) -> None:
    instance_id, name, t = str(instance["id"]), str(instance["name"]), str(spec["name"])
    live = usable_template(template, spec, use_template=True, setting=templates, resources=resources)
    image = live if use_template else None
    products = {str(p["name"]) for p in spec.get("products") or []}
    apps = [a for a in applications if str(a.get("product")) in products
            and str(a.get("status")) == str(Status.ARTEFACT_DEPLOYED)]
    if image is not None:  # the image holds the applications deployed before it was taken
        held = int((template or {}).get("app_generation") or 0)
        apps = [a for a in apps if int(a.get("generation") or 0) > held]
    first = next_replica(nodes, t)
    tier_rows = plan.rows.setdefault("paas_tier_instances", [])
    product_rows = plan.rows.setdefault("paas_product_instances", [])
    for r in range(first, first + add):
        node = deploy.node_name(name, t, r)
        tid = deploy.tier_instance_id(instance_id, t, r)
        tier_rows.append({"id": tid, "env_instance_id": instance_id, "tier": t, "replica": r, "name": node,
                          "status": str(Status.INIT), "from_template": image})
        for p in deploy.product_order(spec):
            product_rows.append({
                "id": deploy.product_instance_id(tid, str(p["name"])), "tier_instance_id": tid,
                "env_instance_id": instance_id, "product": str(p["name"]),
                "version": str(p.get("version") or ""), "status": str(Status.INIT),
            })
        plan.steps += deploy.node_steps(instance_id, spec, r, node, from_template=image)
        last = deploy.node_last_key(spec, r)
        for app in apps:  # one after another: the node's last one is its end (_node_done)
            plan.steps.append(StepSpec(
                f"artifact:{t}:{r}:{app['name']}", "deploy_artifact", (last,),
                {"tier": t, "replica": r, "node": node, "application": str(app["name"]),
                 "product": str(app["product"]), "version": str(app.get("version") or "")},
            ))
            last = f"artifact:{t}:{r}:{app['name']}"
    if live is None and wants_template(spec, templates):
        plan.steps.append(StepSpec(f"template:{t}", "template", (_node_done(plan, t, first, spec),), {
            "tier": t, "replica": first, "node": deploy.node_name(name, t, first),
            "image_name": deploy.template_name(instance_id, t), "server": deploy.server_name(instance_id, t, first),
        }))


def _node_done(plan: Plan, tier: str, replica: int, spec: Mapping[str, Any]) -> str:
    """The key after which a new node is finished: its last product step, or its last artifact."""
    keys = [s.key for s in plan.steps if s.key.startswith(f"artifact:{tier}:{replica}:")]
    return keys[-1] if keys else deploy.node_last_key(spec, replica)


def _plan_in(plan: Plan, instance: Mapping[str, Any], spec: Mapping[str, Any], victims: Sequence[Mapping[str, Any]],
             resources: Sequence[Mapping[str, Any]], *, after: Sequence[str]) -> None:
    instance_id, t = str(instance["id"]), str(spec["name"])
    for node in victims:
        r = int(node["replica"])
        base = {"tier": t, "replica": r, "node": str(node["name"])}
        previous: list[str] = list(after)
        if node.get("server_id"):
            for p in reversed(deploy.product_order(spec)):
                key = f"stop:{t}:{r}:{p['name']}"
                plan.steps.append(StepSpec(key, "stop", tuple(previous), {
                    **base, "product": str(p["name"]), "version": str(p.get("version") or ""), "best_effort": True,
                }))
                previous = [key]
        for type_, step_key in (("floating_ip", f"fip:{t}:{r}"), ("server", f"server:{t}:{r}")):
            rows = _ledger_rows(resources, step_key, type_)
            targets = [(str(row["name"]), str(row["resource_id"]) if row.get("resource_id") else None) for row in rows]
            if type_ == "server" and not targets and node.get("server_id"):
                targets = [(deploy.server_name(instance_id, t, r), str(node["server_id"]))]
            layer = []
            for res_name, rid in targets:
                key = f"delete:{type_}:{res_name}"
                plan.steps.append(StepSpec(key, "delete_resource", tuple(previous),
                                           {"type": type_, "name": res_name, "resource_id": rid}))
                layer.append(key)
            previous = layer or previous
        plan.steps.append(StepSpec(f"removed:{t}:{r}", "node_removed", tuple(previous), dict(base)))


def _plan_reconfigure(plan: Plan, instance: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], tier: str, *,
                      victims: Sequence[Mapping[str, Any]], after: Sequence[str]) -> list[str]:
    """The reconfigure steps of the membership dependents (after `after`); their keys."""
    tiers = deploy.tiers_of(instance.get("environment") or {})
    name = str(instance["name"])
    gone = {str(v["name"]) for v in victims}
    new_rows = plan.rows.get("paas_tier_instances", [])
    added: list[str] = []
    for dep_tier, product, version in membership_products(tiers, tier):
        targets = [n for n in live_nodes(nodes, dep_tier) if str(n["name"]) not in gone
                   and n.get("server_id") and str(n["status"]) not in _FAILED]
        if dep_tier == tier:
            targets += list(new_rows)
        for node in sorted(targets, key=lambda n: int(n["replica"])):
            r = int(node["replica"])
            key = f"reconfigure:{dep_tier}:{r}:{product}"
            plan.steps.append(StepSpec(key, "reconfigure", tuple(after), {
                "tier": dep_tier, "replica": r, "node": str(node.get("name") or deploy.node_name(name, dep_tier, r)),
                "product": product, "version": version, "scaled_tier": tier,
            }))
            added.append(key)
    # a template is taken after the reconfigures of its node (a snapshot pauses a container: an exec
    # into it then is refused)
    for i, step in enumerate(plan.steps):
        if step.kind != "template":
            continue
        own = [s.key for s in plan.steps
               if s.kind == "reconfigure" and s.params.get("tier") == step.params["tier"]
               and s.params.get("replica") == step.params["replica"]]
        if own:
            plan.steps[i] = StepSpec(step.key, step.kind, tuple(dict.fromkeys([*step.depends_on, *own])), step.params)
    return added
