"""Server sub-resources: metadata, tags (2.26+), os-instance-actions, diagnostics (admin) and ips."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas import instance_actions as ia_schema
from cumulo.compute.api.schemas import server_metadata as md_schema
from cumulo.compute.api.schemas import server_tags as tag_schema
from cumulo.compute.api.schemas._base import parse_isotime, validate, validate_query
from cumulo.compute.api.server_views import host_id
from cumulo.compute.service import networking
from cumulo.web.http import empty, json_body, json_response

policy.register(
    {
        "compute:server-metadata:index": policy.READER,
        "compute:server-metadata:show": policy.READER,
        "compute:server-metadata:create": policy.MEMBER,
        "compute:server-metadata:update": policy.MEMBER,
        "compute:server-metadata:update_all": policy.MEMBER,
        "compute:server-metadata:delete": policy.MEMBER,
        "compute:server-tags:index": policy.READER,
        "compute:server-tags:show": policy.READER,
        "compute:server-tags:update": policy.MEMBER,
        "compute:server-tags:update_all": policy.MEMBER,
        "compute:server-tags:delete": policy.MEMBER,
        "compute:server-tags:delete_all": policy.MEMBER,
        "compute:instance-actions:list": policy.READER,
        "compute:instance-actions:show": policy.READER,
        "compute:instance-actions:events": policy.ADMIN,
        "compute:server-diagnostics": policy.ADMIN,
        "compute:ips:index": policy.READER,
        "compute:ips:show": policy.READER,
    }
)


def _perfect(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None


async def _server(request: Request, rule: str, *, include_deleted: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"], include_deleted=include_deleted)
    policy.authorize(ctx, rule)
    return ctx, svc, row


# --- metadata ---


async def metadata_index(request: Request) -> Response:
    _, _, row = await _server(request, "compute:server-metadata:index")
    return json_response({"metadata": dict(row["metadata"] or {})})


async def metadata_create(request: Request) -> Response:
    data = await _common.body(request, md_schema.create)
    ctx, svc, row = await _server(request, "compute:server-metadata:create")
    md = await svc.change_metadata(ctx, row, "update metadata", data["metadata"])
    return json_response({"metadata": md})


async def metadata_update_all(request: Request) -> Response:
    data = await _common.body(request, md_schema.update_all)
    ctx, svc, row = await _server(request, "compute:server-metadata:update_all")
    md = await svc.change_metadata(ctx, row, "update metadata", data["metadata"], replace=True)
    return json_response({"metadata": md})


async def metadata_show(request: Request) -> Response:
    _, _, row = await _server(request, "compute:server-metadata:show")
    key = request.path_params["key"]
    md = row["metadata"] or {}
    if key not in md:
        raise errors.NotFound("Metadata item was not found")
    return json_response({"meta": {key: md[key]}})


async def metadata_update(request: Request) -> Response:
    data = await _common.body(request, md_schema.update)
    ctx, svc, row = await _server(request, "compute:server-metadata:update")
    key = request.path_params["key"]
    if key not in data["meta"]:
        raise errors.Invalid("Request body and URI mismatch")
    await svc.change_metadata(ctx, row, "update metadata", data["meta"])
    return json_response({"meta": data["meta"]})


async def metadata_delete(request: Request) -> Response:
    ctx, svc, row = await _server(request, "compute:server-metadata:delete")
    key = request.path_params["key"]
    if key not in (row["metadata"] or {}):
        raise errors.NotFound("Metadata item was not found")
    await svc.change_metadata(ctx, row, "delete metadata", {}, delete_key=key)
    return empty(204)


# --- tags (2.26+) ---


async def tags_index(request: Request) -> Response:
    _common.require(request, "2.26")
    _, _, row = await _server(request, "compute:server-tags:index")
    return json_response({"tags": list(row["tags"] or [])})


async def tags_update_all(request: Request) -> Response:
    _common.require(request, "2.26")
    data = await _common.body(request, tag_schema.update_all)
    _, svc, row = await _server(request, "compute:server-tags:update_all")
    tags, _ = await svc.change_tags(row, "update tags", replace=data["tags"])
    return json_response({"tags": tags})


async def tags_delete_all(request: Request) -> Response:
    _common.require(request, "2.26")
    _, svc, row = await _server(request, "compute:server-tags:delete_all")
    await svc.change_tags(row, "delete tags", replace=[])
    return empty(204)


async def tag_show(request: Request) -> Response:
    _common.require(request, "2.26")
    _, _, row = await _server(request, "compute:server-tags:show")
    tag = request.path_params["tag"]
    if tag not in (row["tags"] or []):
        raise errors.NotFound(f"Server {row['uuid']} has no tag '{tag}'")
    return empty(204)


async def tag_add(request: Request) -> Response:
    _common.require(request, "2.26")
    data = await json_body(request, required=False)
    if data is not None:
        raise errors.Invalid(f"Invalid input for field/attribute body. Value: {data}. {data!r} is not of type 'null'")
    _, svc, row = await _server(request, "compute:server-tags:update")
    tag = request.path_params["tag"]
    try:
        validate(tag_schema.one_tag, tag)
    except errors.Invalid as exc:
        raise errors.Invalid(
            f"Tag '{tag}' is invalid. It must be a non empty string without characters '/' and ','. "
            f"Validation error message: {exc.message}"
        ) from None
    _, changed = await svc.change_tags(row, "update tag", add=tag)
    if not changed:
        return empty(204)
    location = f"{_common.api_root(request)}/servers/{row['uuid']}/tags/{quote(tag, safe='')}"
    return empty(201, headers={"Location": location})


async def tag_delete(request: Request) -> Response:
    _common.require(request, "2.26")
    _, svc, row = await _server(request, "compute:server-tags:delete")
    await svc.change_tags(row, "delete tag", remove=request.path_params["tag"])
    return empty(204)


# --- os-instance-actions ---

ACTION_KEYS = ("action", "instance_uuid", "request_id", "user_id", "project_id", "start_time", "message")


def _action_body(action: dict[str, Any], with_updated: bool) -> dict[str, Any]:
    out = {k: action.get(k) for k in ACTION_KEYS}
    out["start_time"] = _perfect(action["start_time"])
    if with_updated:
        out["updated_at"] = _perfect(action.get("updated_at"))
    return out


async def actions_index(request: Request) -> Response:
    ver = _common.version(request)
    _, svc, row = await _server(request, "compute:instance-actions:list", include_deleted=ver >= v("2.21"))
    paged = ver >= v("2.58")
    params = _common.query_lists(request)
    query_schema = ia_schema.INDEX_QUERY.for_version(ver)
    if query_schema is not None:
        validate_query(query_schema, params)
    limit = marker = since = before = None
    if paged:
        since = parse_isotime(params["changes-since"][0]) if "changes-since" in params else None
        before = parse_isotime(params["changes-before"][0]) if "changes-before" in params else None
        if since and before and before < since:
            raise errors.Invalid("The value of changes-since must be less than or equal to changes-before.")
        limit = min(int(params["limit"][0]), 1000) if "limit" in params else 1000
        marker = params["marker"][0] if "marker" in params else None
    found = await svc.list_actions(row["uuid"], limit=limit, marker=marker, since=since, before=before)
    body: dict[str, Any] = {"instanceActions": [_action_body(a, paged) for a in found]}
    if paged and limit and len(found) == limit:
        body["links"] = _common.next_link(request, f"servers/{row['uuid']}/os-instance-actions", found[-1]["request_id"])
    return json_response(body)


async def action_show(request: Request) -> Response:
    ver = _common.version(request)
    ctx, svc, row = await _server(request, "compute:instance-actions:show", include_deleted=ver >= v("2.21"))
    rid = request.path_params["request_id"]
    found = await svc.get_action(row["uuid"], rid)
    if found is None:
        raise errors.NotFound(f"Action {rid} not found")
    action, events = found
    body = _action_body(action, ver >= v("2.58"))
    admin_events = policy.allowed(ctx, "compute:instance-actions:events")
    if admin_events or ver >= v("2.51"):
        project = action.get("project_id") or row["project_id"]
        out = []
        for e in events:
            item: dict[str, Any] = {
                "event": e["event"],
                "start_time": _perfect(e["start_time"]),
                "finish_time": _perfect(e.get("finish_time")),
                "result": e.get("result"),
            }
            if admin_events:
                item["traceback"] = e.get("traceback")
                if ver >= v("2.62"):
                    item["host"] = e.get("host") or ""
            if ver >= v("2.62"):
                item["hostId"] = host_id(project, e.get("host"))
            out.append(item)
        body["events"] = out
    return json_response({"instanceAction": body})


# --- diagnostics (admin) ---

_PRIMITIVES = ("state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive", "num_cpus", "num_nics", "num_disks")
_LISTS = {
    "disk_details": ("read_bytes", "read_requests", "write_bytes", "write_requests", "errors_count"),
    "cpu_details": ("id", "time", "utilisation"),
    "nic_details": (
        "mac_address", "rx_octets", "rx_errors", "rx_drop", "rx_packets", "rx_rate", "tx_octets", "tx_errors",
        "tx_drop", "tx_packets", "tx_rate",
    ),
}


def standard_diagnostics(raw: dict[str, Any]) -> dict[str, Any]:
    """The 2.48 shape: exactly these keys, missing values as null."""
    out: dict[str, Any] = {k: raw.get(k) for k in _PRIMITIVES}
    # The reference admits only Nova's driver names (libvirt, xenapi, vmwareapi, ironic, hyperv).
    # Nova's own fake and libvirt-lxc drivers say "libvirt"; so do ours, with runc, qemu or kvm in
    # "hypervisor" (the drivers keep their own name in the metrics that share this reading).
    out["driver"] = "libvirt"
    for name, keys in _LISTS.items():
        out[name] = [{k: item.get(k) for k in keys} for item in raw.get(name) or []]
    mem = raw.get("memory_details") or {}
    out["memory_details"] = {"maximum": mem.get("maximum"), "used": mem.get("used")}
    return out


def legacy_diagnostics(raw: dict[str, Any]) -> dict[str, Any]:
    """Before 2.48 Nova returned the driver's own flat dict; this is the libvirt-style one."""
    out: dict[str, Any] = {}
    for cpu in raw.get("cpu_details") or []:
        out[f"cpu{cpu.get('id', 0)}_time"] = cpu.get("time")
    mem = raw.get("memory_details") or {}
    out["memory"] = mem.get("maximum")
    out["memory-actual"] = mem.get("used")
    for i, disk in enumerate(raw.get("disk_details") or []):
        dev = f"vd{chr(ord('a') + i)}"
        out[f"{dev}_read"] = disk.get("read_bytes")
        out[f"{dev}_read_req"] = disk.get("read_requests")
        out[f"{dev}_write"] = disk.get("write_bytes")
        out[f"{dev}_write_req"] = disk.get("write_requests")
        out[f"{dev}_errors"] = disk.get("errors_count")
    for i, nic in enumerate(raw.get("nic_details") or []):
        for key in ("rx_octets", "rx_errors", "rx_drop", "rx_packets", "tx_octets", "tx_errors", "tx_drop", "tx_packets"):
            out[f"tap{i}_{key.replace('_octets', '')}"] = nic.get(key)
    return out


async def diagnostics(request: Request) -> Response:
    ctx, svc, row = await _server(request, "compute:server-diagnostics")
    raw = await svc.diagnostics(ctx, row)
    raw = raw if isinstance(raw, dict) else {}
    if _common.version(request) >= v("2.48"):
        return json_response(standard_diagnostics(raw))
    return json_response(legacy_diagnostics(raw))


# --- ips ---


def _plain(ips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"version": ip.get("version", 4), "addr": ip.get("addr")} for ip in ips]


async def _server_addresses(request: Request, rule: str) -> dict[str, Any]:
    """The server with its addresses read now from its ports (as server show has them)."""
    ctx, svc, row = await _server(request, rule)
    if svc.network is not None:
        await networking.refresh_addresses(svc.db, svc.network, ctx, [row])
    return row


async def ips_index(request: Request) -> Response:
    row = await _server_addresses(request, "compute:ips:index")
    return json_response({"addresses": {net: _plain(ips) for net, ips in (row["addresses"] or {}).items()}})


async def ips_show(request: Request) -> Response:
    row = await _server_addresses(request, "compute:ips:show")
    net = request.path_params["network"]
    addresses = row["addresses"] or {}
    if net not in addresses:
        raise errors.NotFound("Instance is not a member of specified network")
    return json_response({net: _plain(addresses[net])})


S = "/v2.1/servers/{server_id}"
ROUTES = [
    Route(f"{S}/metadata", metadata_index, methods=["GET"]),
    Route(f"{S}/metadata", metadata_create, methods=["POST"]),
    Route(f"{S}/metadata", metadata_update_all, methods=["PUT"]),
    Route(f"{S}/metadata/{{key}}", metadata_show, methods=["GET"]),
    Route(f"{S}/metadata/{{key}}", metadata_update, methods=["PUT"]),
    Route(f"{S}/metadata/{{key}}", metadata_delete, methods=["DELETE"]),
    Route(f"{S}/tags", tags_index, methods=["GET"]),
    Route(f"{S}/tags", tags_update_all, methods=["PUT"]),
    Route(f"{S}/tags", tags_delete_all, methods=["DELETE"]),
    Route(f"{S}/tags/{{tag}}", tag_show, methods=["GET"]),
    Route(f"{S}/tags/{{tag}}", tag_add, methods=["PUT"]),
    Route(f"{S}/tags/{{tag}}", tag_delete, methods=["DELETE"]),
    Route(f"{S}/os-instance-actions", actions_index, methods=["GET"]),
    Route(f"{S}/os-instance-actions/{{request_id}}", action_show, methods=["GET"]),
    Route(f"{S}/diagnostics", diagnostics, methods=["GET"]),
    Route(f"{S}/ips", ips_index, methods=["GET"]),
    Route(f"{S}/ips/{{network}}", ips_show, methods=["GET"]),
]
