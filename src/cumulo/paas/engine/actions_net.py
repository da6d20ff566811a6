"""The network side of a deploy: step kinds "network" (key "net") and "secgroup" (keys "sg",
"sg:<tier>"), and the lookups the server and fip actions share. All through the network service with
the task's RequestContext (Neutron's scoping, policy and quotas).

Network rule (OWNERS.md "Deploy network"): a tier's networks by name (or id) when it names some;
they must be networks the project sees (its own or shared), else the step fails naming the
missing one. Otherwise the project's network that has a router whose gateway is on an external
network (the demo project's `private`); failing that, none: Nova picks (the project's own network,
else the shared one). Floating IPs come from the external network of that router, else from the
cloud's default external network.

Security groups: every node is in its instance's group `paas-<inst8>` (ingress from members of that
same group on every protocol, IPv4 and IPv6: the tiers reach each other on the tenant network
whatever ports their products use) and in its tier's group `paas-<inst8>-<tier>` (ingress from
0.0.0.0/0: TCP 22 as Pegasus opened, and the products' `open_ports` (TCP) and `open_ports_udp`
(UDP) metadata in SDC's syntax: ports or ranges a-b separated by spaces or commas). Egress: the
groups' default (everything). Rules are created idempotently (an existing one is kept), so a
resumed step finishes the rule set of an adopted group.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.paas.engine import plan
from cumulo.paas.engine.base import StepFailed, StepRun, action

if TYPE_CHECKING:
    from cumulo.context import RequestContext
    from cumulo.network.service import NetworkService

SSH_PORT = 22
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


def parse_ports(text: str | None, *, where: str = "open_ports") -> list[tuple[int, int]]:
    """SDC's port list ("80 443 8000-8010", commas allowed) as (min, max) ranges; Invalid names a
    bad item."""
    out: list[tuple[int, int]] = []
    for item in re.split(r"[\s,]+", (text or "").strip()):
        if not item:
            continue
        m = _PORT.match(item)
        low = int(m.group(1)) if m else 0
        high = int(m.group(2) or low) if m else 0
        if not m or not 1 <= low <= high <= 65535:
            raise errors.Invalid(f"{where}: {item!r} is not a port (1-65535) or a range a-b")
        if (low, high) not in out:
            out.append((low, high))
    return out


def tier_rules(tier: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ingress rules of a tier's group (without security_group_id): TCP 22 and the products'
    open ports, from anywhere (IPv4)."""
    wanted: list[tuple[str, int, int]] = [("tcp", SSH_PORT, SSH_PORT)]
    for product in tier.get("products") or []:
        for key, proto in (("open_ports", "tcp"), ("open_ports_udp", "udp")):
            where = f"tier {tier['name']}, product {product['name']}, {key}"
            for low, high in parse_ports(plan.product_meta(product, key), where=where):
                if (proto, low, high) not in wanted:
                    wanted.append((proto, low, high))
    return [{"direction": "ingress", "ethertype": "IPv4", "protocol": proto, "port_range_min": low,
             "port_range_max": high, "remote_ip_prefix": "0.0.0.0/0"} for proto, low, high in wanted]


def tier_spec(instance: Mapping[str, Any], tier: str) -> Mapping[str, Any]:
    """Tier `tier` of the instance's environment snapshot (StepFailed when it has none)."""
    for t in plan.tiers_of(instance.get("environment") or {}):
        if t["name"] == tier:
            return t
    raise StepFailed(f"tier {tier} is not in the environment of instance {instance.get('name')}")


# ---- networks ------------------------------------------------------------------------------------

async def _routed(run: StepRun) -> tuple[list[str], str | None]:
    """(the project's networks with a router to an external network, oldest first; that external
    network)."""
    net = run.services.network
    routers = [r for r in await net.list_routers(run.ctx)
               if r.get("project_id") == run.ctx.project_id and r.get("external_gateway_info")]
    if not routers:
        return [], None
    by_router = {str(r["id"]): str(r["external_gateway_info"]["network_id"]) for r in routers}
    found: list[str] = []
    external: str | None = None
    for port in await net.list_ports(run.ctx):
        if port.get("device_owner") == "network:router_interface" and str(port.get("device_id")) in by_router:
            if str(port["network_id"]) not in found:
                found.append(str(port["network_id"]))
                external = external or by_router[str(port["device_id"])]
    nets = {str(n["id"]): n for n in await net.list_networks(run.ctx)}
    ordered = sorted((n for n in found if n in nets and nets[n].get("project_id") == run.ctx.project_id),
                     key=lambda n: (str(nets[n].get("created_at") or ""), n))
    return ordered, external


async def _default_external(run: StepRun) -> str | None:
    externals = [n for n in await run.services.network.list_networks(run.ctx) if n.get("router:external")]
    chosen = [n for n in externals if n.get("is_default")] or externals
    return str(chosen[0]["id"]) if chosen else None


async def named_networks(network: NetworkService, ctx: RequestContext, tier: Mapping[str, Any]) -> list[str]:
    """The ids of the networks `tier` names (by name or id; the project's own or shared ones), in
    order; [] when it names none. errors.Invalid names a missing or ambiguous one. The API checks a
    deploy's tiers with it at the POST; the "net" step again (a network may vanish in between)."""
    wanted = [str(n.get("name") or "") for n in tier.get("networks") or [] if n.get("name")]
    if not wanted:
        return []
    nets = [n for n in await network.list_networks(ctx) if n.get("project_id") == ctx.project_id or n.get("shared")]
    out = []
    for name in wanted:
        match = [n for n in nets if n["id"] == name] or [n for n in nets if n.get("name") == name]
        if not match:
            raise errors.Invalid(f"tier {tier['name']}: network {name!r} is not a network of the project")
        if len(match) > 1:
            raise errors.Invalid(f"tier {tier['name']}: several networks are named {name!r}: name one by id")
        out.append(str(match[0]["id"]))
    return out


async def tier_networks(run: StepRun, tier: Mapping[str, Any]) -> list[str]:
    """The network ids a node of `tier` gets ([]: Nova picks). StepFailed names a missing one."""
    try:
        named = await named_networks(run.services.network, run.ctx, tier)
    except errors.Invalid as exc:
        raise StepFailed(exc.message) from exc
    if named:
        return named
    routed, _ext = await _routed(run)
    return routed[:1]


async def external_network(run: StepRun) -> str | None:
    """The external network floating IPs come from (see the module docstring)."""
    with contextlib.suppress(KeyError):
        ext = run.output_of("net").get("external_network_id")
        if ext:
            return str(ext)
    _routed_nets, ext = await _routed(run)
    return ext or await _default_external(run)


@action("net")
@action("network")
async def choose_networks(run: StepRun) -> Mapping[str, Any]:
    """Step "net": each tier's networks and the external network, checked once before any server
    (nothing is created). Output: {"networks": {tier: [network ids]}, "external_network_id"}."""
    instance = await run.instance()
    out: dict[str, list[str]] = {}
    for tier in plan.tiers_of(instance.get("environment") or {}):
        out[str(tier["name"])] = await tier_networks(run, tier)
    _nets, ext = await _routed(run)
    return {"networks": out, "external_network_id": ext or await _default_external(run)}


# ---- security groups -----------------------------------------------------------------------------

async def group_id(run: StepRun, tier: str | None) -> str:
    """The id of the instance's group (tier None) or of a tier's group: this task's "sg" step
    output, else the ledger (a scale task: the deploy made it), else StepFailed."""
    key = f"sg:{tier}" if tier else "sg"
    with contextlib.suppress(KeyError):
        return str(run.output_of(key)["security_group_id"])
    found = await run.ledger.adopt("security_group", plan.secgroup_name(run.instance_id, tier))
    if found is None:
        raise StepFailed(f"security group {plan.secgroup_name(run.instance_id, tier)} of the instance is gone")
    return found


async def _ensure_rule(run: StepRun, rule: dict[str, Any]) -> None:
    try:
        await run.services.network.create_rule(run.ctx, rule)
    except errors.Conflict as exc:  # SecurityGroupRuleExists: a resumed step made it already
        if "already exists" not in str(exc):
            raise


@action("secgroup")
async def ensure_secgroup(run: StepRun) -> Mapping[str, Any]:
    """Steps "sg" (params tier None: the instance's group) and "sg:<tier>": create or adopt the
    group, then its rules (module docstring). Output: {"security_group_id"}."""
    tier_name = run.step["params"].get("tier")
    instance = await run.instance()
    name = plan.secgroup_name(run.instance_id, tier_name)
    gid = await run.ledger.adopt("security_group", name)
    if gid is None:
        await run.ledger.intend("security_group", name)
        what = f"tier {tier_name}" if tier_name else "all tiers (members reach each other)"
        group = await run.services.network.create_group(run.ctx, {
            "name": name, "description": f"PaaS environment instance {instance.get('name')}: {what}"})
        gid = str(group["id"])
        await run.ledger.created("security_group", name, gid)
    if tier_name:
        try:
            rules = tier_rules(tier_spec(instance, str(tier_name)))
        except errors.Invalid as exc:
            raise StepFailed(str(exc)) from exc
    else:
        rules = [{"direction": "ingress", "ethertype": eth, "remote_group_id": gid} for eth in ("IPv4", "IPv6")]
    for rule in rules:
        await _ensure_rule(run, {**rule, "security_group_id": gid})
    return {"security_group_id": gid}
