"""Nova's proxies to the network service, below microversion 2.36 (404 from 2.36 on, as Nova):
os-security-groups, os-security-group-rules, os-floating-ips and os-floating-ip-pools.

Each call goes to the network service as the caller and is rendered in Nova's shapes; Neutron's
refusals become Nova's faults (an unknown group or floating IP 404, a group in use or a bad rule
400, an exhausted pool 404 as Nova's NoMoreFloatingIps). A Nova rule is an ingress rule: a cidr or a
source group, an IP protocol (tcp/udp/icmp) and a port range (icmp: type and code, -1 for any).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.schemas._base import is_uuid_like
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_body, json_response

policy.register(
    {
        "os_compute_api:os-security-groups:get": policy.READER,
        "os_compute_api:os-security-groups:show": policy.READER,
        "os_compute_api:os-security-groups:create": policy.MEMBER,
        "os_compute_api:os-security-groups:update": policy.MEMBER,
        "os_compute_api:os-security-groups:delete": policy.MEMBER,
        "os_compute_api:os-security-groups:rule:create": policy.MEMBER,
        "os_compute_api:os-security-groups:rule:delete": policy.MEMBER,
        "os_compute_api:os-floating-ips:list": policy.READER,
        "os_compute_api:os-floating-ips:show": policy.READER,
        "os_compute_api:os-floating-ips:create": policy.MEMBER,
        "os_compute_api:os-floating-ips:delete": policy.MEMBER,
        "os_compute_api:os-floating-ip-pools:list": policy.READER,
    }
)


def _neutron_type(exc: BaseException) -> str:
    """The Neutron exception a network service fault names (its `neutron_type`); '' for another error."""
    kind = getattr(exc, "neutron_type", "")
    return kind if isinstance(kind, str) else ""


def _nova(exc: errors.CumuloError, not_found: str) -> errors.CumuloError:
    if isinstance(exc, errors.NotFound):
        return errors.NotFound(not_found)
    if _neutron_type(exc) == "OverQuota":  # Neutron's 409; Nova's *LimitExceeded are 403
        return errors.Forbidden(str(exc))
    return errors.Invalid(str(exc))


async def _body(request: Request, key: str) -> dict[str, Any]:
    data = await json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise errors.Invalid(f"The request body is invalid: '{key}' is a required object")
    out: dict[str, Any] = data[key]
    return out


# --- security groups ---


def rule_view(rule: dict[str, Any], names: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Nova's view of an ingress rule."""
    proto = rule.get("protocol")
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if proto is None:
        low = high = None
    elif proto in ("icmp", "1"):
        low, high = (-1 if low is None else low), (-1 if high is None else high)
    remote = rule.get("remote_group_id")
    group = names.get(remote) if remote else None
    return {
        "id": rule["id"],
        "parent_group_id": rule["security_group_id"],
        "ip_protocol": proto,
        "from_port": low,
        "to_port": high,
        "ip_range": {"cidr": rule["remote_ip_prefix"]} if rule.get("remote_ip_prefix") and not remote else {},
        "group": {"name": group["name"], "tenant_id": group["tenant_id"]} if group else {},
    }


def group_view(group: dict[str, Any], names: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Nova's view of a Neutron group: its ingress rules only, as Nova shows them."""
    return {
        "id": group["id"],
        "name": group["name"],
        "description": group.get("description", ""),
        "tenant_id": group.get("tenant_id") or group.get("project_id"),
        "rules": [rule_view(r, names) for r in group.get("security_group_rules") or [] if r.get("direction") == "ingress"],
    }


async def views_of(net: Any, ctx: RequestContext, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {g["id"]: g for g in await net.list_groups(ctx)}
    names.update({g["id"]: g for g in groups})
    return [group_view(g, names) for g in groups]


def _group_fields(body: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in ("name", "description"):
        value = body.get(key)
        if value is None:
            raise errors.Invalid(f"Security group {key} is not a string or unicode" if key in body else
                                 f"{key} has a value of None")
        if not isinstance(value, str):
            raise errors.Invalid(f"Security group {key} is not a string or unicode")
        if key == "name" and not value.strip():
            raise errors.Invalid("Security group name should not be empty")
        if len(value) > 255:
            raise errors.Invalid(f"Security group {key} should not be greater than 255 characters")
        out[key] = value
    return out


async def list_groups(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-security-groups:get")
    groups = await net.list_groups(ctx, project_id=None if ctx.is_admin and request.query_params.get("all_tenants")
                                   else ctx.project_id)
    return json_response({"security_groups": await views_of(net, ctx, groups)})


async def show_group(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-security-groups:show")
    gid = request.path_params["group_id"]
    try:
        group = await net.get_group(ctx, gid)
    except errors.CumuloError as exc:
        raise _nova(exc, f"Security group {gid} not found.") from exc
    return json_response({"security_group": (await views_of(net, ctx, [group]))[0]})


async def create_group(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-security-groups:create")
    fields = _group_fields(await _body(request, "security_group"))
    try:
        group = await net.create_group(ctx, fields)
    except errors.CumuloError as exc:
        raise _nova(exc, "Security group not found.") from exc
    return json_response({"security_group": (await views_of(net, ctx, [group]))[0]})


async def update_group(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-security-groups:update")
    gid = request.path_params["group_id"]
    fields = _group_fields(await _body(request, "security_group"))
    try:
        group = await net.update_group(ctx, gid, fields)
    except errors.CumuloError as exc:
        raise _nova(exc, f"Security group {gid} not found.") from exc
    return json_response({"security_group": (await views_of(net, ctx, [group]))[0]})


async def delete_group(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-security-groups:delete")
    gid = request.path_params["group_id"]
    try:
        await net.delete_group(ctx, gid)
    except errors.CumuloError as exc:
        raise _nova(exc, f"Security group {gid} not found.") from exc
    return empty(202)


def _port(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.Invalid(f"Invalid input for {what}: {value!r} is not an integer") from None


def neutron_rule(body: dict[str, Any]) -> dict[str, Any]:
    """A Nova rule request as Neutron's ingress rule (Nova's checks and messages)."""
    parent = body.get("parent_group_id")
    if not parent:
        raise errors.Invalid("Parent group id is not specified")
    proto = body.get("ip_protocol")
    cidr, group_id = body.get("cidr"), body.get("group_id")
    if cidr and group_id:
        raise errors.Invalid("Not enough parameters to build a valid rule.")
    rule: dict[str, Any] = {"security_group_id": str(parent), "direction": "ingress", "ethertype": "IPv4"}
    if proto is not None:
        if not isinstance(proto, str) or proto.lower() not in ("tcp", "udp", "icmp"):
            raise errors.Invalid(f"Invalid IP protocol {proto}.")
        proto = proto.lower()
        low, high = _port(body.get("from_port"), "from_port"), _port(body.get("to_port"), "to_port")
        if proto == "icmp":
            if not (-1 <= low <= 255 and -1 <= high <= 255):
                raise errors.Invalid(f"ICMP type/code out of range: {low}/{high}")
            rule.update(protocol="icmp", port_range_min=None if low == -1 else low,
                        port_range_max=None if high == -1 or low == -1 else high)
        else:
            if not (1 <= low <= 65535 and 1 <= high <= 65535) or low > high:
                raise errors.Invalid(f"Invalid port range {low}:{high}. Valid TCP ports should be between 1-65535")
            rule.update(protocol=proto, port_range_min=low, port_range_max=high)
    if group_id:
        rule["remote_group_id"] = str(group_id)
    else:
        try:
            net = ipaddress.ip_network(str(cidr or "0.0.0.0/0"), strict=False)
        except ValueError:
            raise errors.Invalid(f"Invalid cidr {cidr}.") from None
        # As given (Nova passes it on; Neutron keeps it and adds normalized_cidr).
        rule.update(remote_ip_prefix=str(cidr) if cidr else str(net), ethertype="IPv6" if net.version == 6 else "IPv4")
    return rule


async def create_rule(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-security-groups:rule:create")
    rule_body = neutron_rule(await _body(request, "security_group_rule"))
    if not is_uuid_like(rule_body["security_group_id"]):  # Nova's validate_id: 400
        raise errors.Invalid("Security group id should be uuid")
    try:
        rule = await net.create_rule(ctx, rule_body)
    except errors.NotFound as exc:
        raise errors.NotFound(f"Security group {rule_body['security_group_id']} not found.") from exc
    except errors.Conflict as exc:
        if _neutron_type(exc) == "OverQuota":
            raise errors.Forbidden(str(exc)) from exc
        raise errors.Invalid(f"This rule already exists in group {rule_body['security_group_id']}") from exc
    except errors.CumuloError as exc:
        raise _nova(exc, "Security group not found.") from exc
    names = {g["id"]: g for g in await net.list_groups(ctx)}
    return json_response({"security_group_rule": rule_view(rule, names)})


async def delete_rule(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-security-groups:rule:delete")
    rid = request.path_params["rule_id"]
    try:
        await net.delete_rule(ctx, rid)
    except errors.CumuloError as exc:
        raise _nova(exc, f"Security group rule {rid} not found.") from exc
    return empty(202)


# --- floating IPs ---


def fip_view(fip: dict[str, Any], pools: dict[str, str]) -> dict[str, Any]:
    details = fip.get("port_details") or {}
    return {
        "id": fip["id"],
        "ip": fip["floating_ip_address"],
        "fixed_ip": fip.get("fixed_ip_address"),
        "instance_id": details.get("device_id") or None,
        "pool": pools.get(fip["floating_network_id"], fip["floating_network_id"]),
    }


async def _pools(net: Any, ctx: RequestContext) -> dict[str, str]:
    """External networks the caller sees: id → name (Nova's floating IP pools)."""
    return {n["id"]: n["name"] or n["id"] for n in await net.list_networks(ctx) if n.get("router:external")}


async def list_pools(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-floating-ip-pools:list")
    return json_response({"floating_ip_pools": [{"name": name} for name in (await _pools(net, ctx)).values()]})


async def list_fips(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-floating-ips:list")
    pools = await _pools(net, ctx)
    fips = [f for f in await net.list_floatingips(ctx) if f["project_id"] == ctx.project_id]
    return json_response({"floating_ips": [fip_view(f, pools) for f in fips]})


async def show_fip(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-floating-ips:show")
    fid = request.path_params["fip_id"]
    try:
        fip = await net.get_floatingip(ctx, fid)
    except errors.CumuloError as exc:
        raise _nova(exc, f"Floating IP not found for ID {fid}") from exc
    return json_response({"floating_ip": fip_view(fip, await _pools(net, ctx))})


async def create_fip(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-floating-ips:create")
    data = await json_body(request) if await request.body() else {}
    pool = data.get("pool") if isinstance(data, dict) else None
    pools = await _pools(net, ctx)
    if pool is None:
        if not pools:
            raise errors.NotFound("Floating IP pool not found.")
        network_id = next(iter(pools))
    else:
        matches = [nid for nid, name in pools.items() if pool in (nid, name)]
        if not matches:
            raise errors.NotFound("Floating IP pool not found.")
        network_id = matches[0]
    try:
        fip = await net.create_floatingip(ctx, {"floating_network_id": network_id})
    except errors.CumuloError as exc:
        # Nova's NoMoreFloatingIps (404) and FloatingIpLimitExceeded (403), worded as its API words them.
        kind = _neutron_type(exc)
        if kind in ("ExternalIpAddressExhausted", "IpAddressGenerationFailure"):
            raise errors.NotFound(f"No more floating IPs in pool {pool}." if pool else "No more floating IPs available.") from exc
        if kind == "OverQuota":
            raise errors.Forbidden(f"IP allocation over quota in pool {pool}." if pool else "IP allocation over quota.") from exc
        raise _nova(exc, "Floating IP pool not found.") from exc
    return json_response({"floating_ip": fip_view(fip, pools)})


async def delete_fip(request: Request) -> Response:
    ctx, net = await _common.network_caller(request, "os_compute_api:os-floating-ips:delete")
    fid = request.path_params["fip_id"]
    try:
        await net.delete_floatingip(ctx, fid)
    except errors.CumuloError as exc:
        raise _nova(exc, f"Floating IP not found for ID {fid}") from exc
    return empty(202)


async def no_id(request: Request) -> Response:
    """A group or rule path with an empty id: 404, as Nova's router answers."""
    await _common.network_caller(request, "os_compute_api:os-security-groups:get")
    raise errors.NotFound("The resource could not be found.")


ROUTES = [
    Route("/v2.1/os-security-groups/", no_id, methods=["GET", "PUT", "DELETE"]),
    Route("/v2.1/os-security-group-rules/", no_id, methods=["DELETE"]),
    Route("/v2.1/os-security-groups", list_groups, methods=["GET"]),
    Route("/v2.1/os-security-groups", create_group, methods=["POST"]),
    Route("/v2.1/os-security-groups/{group_id}", show_group, methods=["GET"]),
    Route("/v2.1/os-security-groups/{group_id}", update_group, methods=["PUT"]),
    Route("/v2.1/os-security-groups/{group_id}", delete_group, methods=["DELETE"]),
    Route("/v2.1/os-security-group-rules", create_rule, methods=["POST"]),
    Route("/v2.1/os-security-group-rules/{rule_id}", delete_rule, methods=["DELETE"]),
    Route("/v2.1/os-floating-ip-pools", list_pools, methods=["GET"]),
    Route("/v2.1/os-floating-ips", list_fips, methods=["GET"]),
    Route("/v2.1/os-floating-ips", create_fip, methods=["POST"]),
    Route("/v2.1/os-floating-ips/{fip_id}", show_fip, methods=["GET"]),
    Route("/v2.1/os-floating-ips/{fip_id}", delete_fip, methods=["DELETE"]),
]
