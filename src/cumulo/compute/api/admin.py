"""Nova admin APIs: os-availability-zone, os-services, os-hypervisors (os-aggregates is in
aggregates.py)."""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api._common import Field
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.api.schemas import services as schemas
from cumulo.compute.api.schemas._base import bool_from_string, validate
from cumulo.compute.service import hostinfo
from cumulo.errors import Invalid, NotFound
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register(
    {
        "os_compute_api:os-availability-zone:list": policy.READER,
        "os_compute_api:os-availability-zone:detail": policy.ADMIN,
        "os_compute_api:os-services:list": policy.ADMIN,
        "os_compute_api:os-services:update": policy.ADMIN,
        "os_compute_api:os-services:delete": policy.ADMIN,
        "os_compute_api:os-hypervisors:list": policy.ADMIN,
        "os_compute_api:os-hypervisors:list-detail": policy.ADMIN,
        "os_compute_api:os-hypervisors:show": policy.ADMIN,
        "os_compute_api:os-hypervisors:statistics": policy.ADMIN,
        "os_compute_api:os-hypervisors:uptime": policy.ADMIN,
        "os_compute_api:os-hypervisors:search": policy.ADMIN,
        "os_compute_api:os-hypervisors:servers": policy.ADMIN,
    }
)

V2_11, V2_28, V2_33, V2_53, V2_75 = v("2.11"), v("2.28"), v("2.33"), v("2.53"), v("2.75")
NOT_FOUND = "The resource could not be found."


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def _is_uuid(text: str) -> bool:
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return True


# --- availability zones -------------------------------------------------------------------------

async def az_index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-availability-zone:list")
    available, unavailable, _ = await _common.host_service(request).zones()
    info = [{"zoneName": z, "zoneState": {"available": True}, "hosts": None} for z in available if z != hostinfo.INTERNAL_ZONE]
    info += [{"zoneName": z, "zoneState": {"available": False}, "hosts": None} for z in unavailable if z != hostinfo.INTERNAL_ZONE]
    return json_response({"availabilityZoneInfo": info})


async def az_detail(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-availability-zone:detail")
    available, unavailable, enabled = await _common.host_service(request).zones()
    info: list[dict[str, Any]] = []
    for zone in available:
        hosts: dict[str, dict[str, Any]] = {}
        for svc in enabled:
            if svc["zone"] == zone:
                hosts.setdefault(svc["host"], {})[svc["binary"]] = {
                    "available": svc["up"],
                    "active": not svc["disabled"],
                    "updated_at": _time(svc["updated_at"]),
                }
        info.append({"zoneName": zone, "zoneState": {"available": True}, "hosts": hosts})
    info += [{"zoneName": z, "zoneState": {"available": False}, "hosts": None} for z in unavailable]
    return json_response({"availabilityZoneInfo": info})


# --- services -----------------------------------------------------------------------------------

SERVICE = (
    Field("id", lambda s: s["id"], max=v("2.52")),
    Field("id", lambda s: s["uuid"], min=V2_53),
    Field("binary", lambda s: s["binary"]),
    Field("host", lambda s: s["host"]),
    Field("zone", lambda s: s["zone"]),
    Field("status", lambda s: s["status"]),
    Field("state", lambda s: "up" if s["up"] else "down"),
    Field("updated_at", lambda s: _time(s["updated_at"])),
    Field("disabled_reason", lambda s: s["disabled_reason"]),
    Field("forced_down", lambda s: bool(s["forced_down"]), min=V2_11),
)


async def services_index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-services:list")
    version = _common.version(request)
    _common.check_query(request, ("host", "binary"), strict=version >= V2_75)
    q = request.query_params
    rows = await _common.host_service(request).list_services(host=q.get("host") or None, binary=q.get("binary") or None)
    return json_response({"services": [_common.render(SERVICE, r, version) for r in rows]})


def _require_compute(binary: str) -> None:
    if not hostinfo.is_compute(binary):
        raise Invalid(f"Updating a {binary} service is not supported. Only nova-compute services can be updated.")


async def _legacy_update(request: Request, action: str, version: Version) -> Response:
    """PUT /os-services/{enable,disable,disable-log-reason,force-down} before 2.53."""
    actions = ("enable", "disable", "disable-log-reason") + (("force-down",) if version >= V2_11 else ())
    if action not in actions:
        raise NotFound("Unknown action")
    body = await json_body(request)
    validate(schemas.update_v211 if version >= V2_11 else schemas.update, body)
    host, binary = body["host"], body["binary"]
    if action == "disable-log-reason" and "disabled_reason" not in body:
        raise Invalid("Missing disabled reason field")
    if action == "force-down" and "forced_down" not in body:
        raise Invalid("Missing forced_down field")
    _require_compute(binary)
    hosts = _common.host_service(request)
    found = await hosts.find_service_id(host, binary)
    if found is None:
        raise NotFound(f"Could not find binary {binary} on host {host}.")
    out: dict[str, Any] = {"host": host, "binary": binary}
    if action == "force-down":
        forced = bool_from_string(body["forced_down"])
        await hosts.update_service(found, {"forced_down": forced})
        out["forced_down"] = forced
    elif action == "enable":
        await hosts.update_service(found, {"disabled": False, "disabled_reason": None})
        out["status"] = "enabled"
    else:
        reason = body.get("disabled_reason") if action == "disable-log-reason" else None
        await hosts.update_service(found, {"disabled": True, "disabled_reason": reason})
        out["status"] = "disabled"
        if reason:
            out["disabled_reason"] = reason
    return json_response({"service": out})


async def services_update(request: Request) -> Response:
    ctx = await authenticate(request)
    version = _common.version(request)
    ident = request.path_params["service_id"]
    if version < V2_53:
        policy.authorize(ctx, "os_compute_api:os-services:update")
        return await _legacy_update(request, ident, version)
    if not _is_uuid(ident):
        raise Invalid(f"Invalid uuid {ident}")
    policy.authorize(ctx, "os_compute_api:os-services:update")
    body = await json_body(request)
    validate(schemas.update_v253, body)
    hosts = _common.host_service(request)
    svc = await hosts.get_service(uuid=ident)
    if svc is None:
        raise NotFound(f"Service {ident} could not be found.")
    _require_compute(svc["binary"])
    values: dict[str, Any] = {}
    if "status" in body:
        if body["status"] == "enabled":
            if body.get("disabled_reason"):
                raise Invalid("Specifying 'disabled_reason' with status 'enabled' is invalid.")
            values.update(disabled=False, disabled_reason=None)
        else:
            values.update(disabled=True, disabled_reason=body.get("disabled_reason"))
    if "forced_down" in body:
        values["forced_down"] = bool_from_string(body["forced_down"], strict=True)
    if not values:
        raise Invalid("No updates were requested. Fields 'status' or 'forced_down' should be specified.")
    row = await hosts.update_service(svc["id"], values)
    return json_response({"service": _common.render(SERVICE, row, version)})


async def services_delete(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-services:delete")
    version = _common.version(request)
    ident = request.path_params["service_id"]
    if version >= V2_53:
        if not _is_uuid(ident):
            raise Invalid(f"Invalid uuid {ident}")
        lookup: dict[str, Any] = {"uuid": ident}
    else:
        if not ident.lstrip("-").isdigit():
            raise Invalid("id must be an integer")
        lookup = {"id": int(ident)}
    await _common.host_service(request).delete_service(ident, **lookup)
    return empty(204)


# --- hypervisors --------------------------------------------------------------------------------

def _cpu_info(node: Mapping[str, Any]) -> dict[str, Any]:
    """The host CPU plus what its driver declares. Nova leaves cpu_info's content to the driver, and
    it is the one driver-defined field `openstack hypervisor show` prints: so containers and VMs are
    told apart here (driver, instance_types, driver_details such as the suspend mechanism)."""
    out = dict(node["cpu_info"] or {})
    details = dict(node.get("details") or {})
    out["driver"] = details.pop("driver", None) or node["hypervisor_type"]
    out["instance_types"] = list(node.get("instance_types") or [])
    out["driver_details"] = details
    return out


BRIEF = (
    Field("id", lambda n: n["id"], max=v("2.52")),
    Field("id", lambda n: n["uuid"], min=V2_53),
    Field("hypervisor_hostname", lambda n: n["hypervisor_hostname"]),
    Field("state", lambda n: "up" if n["service"]["up"] else "down"),
    Field("status", lambda n: n["service"]["status"]),
)
DETAIL = (
    *BRIEF,
    Field("hypervisor_type", lambda n: n["hypervisor_type"]),
    Field("hypervisor_version", lambda n: n["hypervisor_version"]),
    Field("host_ip", lambda n: n["host_ip"]),
    # The node's own service (a local host runs one per node, named like the node).
    Field("service", lambda n: {"host": n["service"]["host"], "id": n["service"]["id"], "disabled_reason": n["service"]["disabled_reason"]}, max=v("2.52")),
    Field("service", lambda n: {"host": n["service"]["host"], "id": n["service"]["uuid"], "disabled_reason": n["service"]["disabled_reason"]}, min=V2_53),
    Field("vcpus", lambda n: n["vcpus"]),
    Field("memory_mb", lambda n: n["memory_mb"]),
    Field("local_gb", lambda n: n["local_gb"]),
    Field("vcpus_used", lambda n: n["vcpus_used"]),
    Field("memory_mb_used", lambda n: n["memory_mb_used"]),
    Field("local_gb_used", lambda n: n["local_gb_used"]),
    Field("free_ram_mb", lambda n: n["free_ram_mb"]),
    Field("free_disk_gb", lambda n: n["free_disk_gb"]),
    Field("current_workload", lambda n: n["current_workload"]),
    Field("running_vms", lambda n: n["running_vms"]),
    Field("disk_available_least", lambda n: n["disk_available_least"]),
    # A JSON string until 2.28, an object since.
    Field("cpu_info", lambda n: json.dumps(_cpu_info(n)), max=v("2.27")),
    Field("cpu_info", _cpu_info, min=V2_28),
)
def _with_servers(request: Request, version: Version) -> bool:
    raw = request.query_params.get("with_servers")
    return version >= V2_53 and raw is not None and bool_from_string(raw, strict=True)


async def _hyp_view(request: Request, node: dict[str, Any], version: Version, *, detail: bool, with_servers: bool) -> dict[str, Any]:
    out = _common.render(DETAIL if detail else BRIEF, node, version)
    if with_servers:
        servers = await _common.host_service(request).servers_on(node["host"], node["hypervisor_hostname"])
        # From 2.75 the key is there (maybe empty) whenever servers were asked for.
        if servers or version >= V2_75:
            out["servers"] = servers
    return out


async def _hyp_list(request: Request, *, detail: bool) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-hypervisors:list-detail" if detail else "os_compute_api:os-hypervisors:list")
    version = _common.version(request)
    q = request.query_params
    _common.check_query(request, ("limit", "marker", "hypervisor_hostname_pattern", "with_servers"), strict=version >= V2_53)
    pattern = q.get("hypervisor_hostname_pattern") if version >= V2_53 else None
    with_servers = _with_servers(request, version)
    paged = version >= V2_33
    limit, marker = _common.limit_and_marker(request) if paged else (None, None)
    hosts = _common.host_service(request)
    if pattern is not None:
        if "limit" in q or marker:
            raise Invalid("Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported.")
        nodes = await hosts.list_nodes(pattern=pattern)
        if not nodes:
            raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
        paged = False
    else:
        nodes = await hosts.page_nodes(marker, by_uuid=version >= V2_53, limit=limit)
    items = [await _hyp_view(request, n, version, detail=detail, with_servers=with_servers) for n in nodes]
    body: dict[str, Any] = {"hypervisors": items}
    if paged:
        coll = "os-hypervisors/detail" if detail else "os-hypervisors"
        links = _common.collection_links(request, len(items), coll, str(items[-1]["id"]) if items else None)
        if links:
            body["hypervisors_links"] = links
    return json_response(body)


async def hyp_index(request: Request) -> Response:
    return await _hyp_list(request, detail=False)


async def hyp_detail(request: Request) -> Response:
    return await _hyp_list(request, detail=True)


async def _node_by_id(request: Request, ident: str, version: Version) -> dict[str, Any]:
    if version >= V2_53:
        if not _is_uuid(ident):
            raise Invalid(f"Invalid uuid {ident}")
        lookup: dict[str, Any] = {"node_uuid": ident}
    else:
        if not ident.isdigit():
            raise NotFound(f"Hypervisor with ID '{ident}' could not be found.")
        lookup = {"node_id": int(ident)}
    nodes = await _common.host_service(request).list_nodes(**lookup)
    if not nodes:
        raise NotFound(f"Hypervisor with ID '{ident}' could not be found.")
    return nodes[0]


async def hyp_show(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-hypervisors:show")
    version = _common.version(request)
    _common.check_query(request, ("with_servers",), strict=version >= V2_53)
    with_servers = _with_servers(request, version)
    node = await _node_by_id(request, request.path_params["hypervisor_id"], version)
    return json_response({"hypervisor": await _hyp_view(request, node, version, detail=True, with_servers=with_servers)})


async def hyp_uptime(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-hypervisors:uptime")
    version = _common.version(request)
    node = await _node_by_id(request, request.path_params["hypervisor_id"], version)
    out = _common.render(BRIEF, node, version)
    out["uptime"] = await hostinfo.host_uptime() if node["service"]["up"] else None
    return json_response({"hypervisor": out})


async def hyp_statistics(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-hypervisors:statistics")
    return json_response({"hypervisor_statistics": await _common.host_service(request).statistics()})


async def _hyp_by_pattern(request: Request, *, with_servers: bool) -> Response:
    version = _common.version(request)
    if version >= V2_53:
        # Replaced by query parameters of GET /os-hypervisors in 2.53.
        raise NotFound(NOT_FOUND)
    pattern = request.path_params["pattern"]
    nodes = await _common.host_service(request).list_nodes(pattern=pattern)
    if not nodes:
        raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
    items = [await _hyp_view(request, n, version, detail=False, with_servers=with_servers) for n in nodes]
    return json_response({"hypervisors": items})


async def hyp_search(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-hypervisors:search")
    return await _hyp_by_pattern(request, with_servers=False)


async def hyp_servers(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-hypervisors:servers")
    return await _hyp_by_pattern(request, with_servers=True)


ROUTES = [
    Route("/v2.1/os-availability-zone", az_index, methods=["GET"]),
    Route("/v2.1/os-availability-zone/detail", az_detail, methods=["GET"]),
    Route("/v2.1/os-services", services_index, methods=["GET"]),
    Route("/v2.1/os-services/{service_id}", services_update, methods=["PUT"]),
    Route("/v2.1/os-services/{service_id}", services_delete, methods=["DELETE"]),
    Route("/v2.1/os-hypervisors", hyp_index, methods=["GET"]),
    Route("/v2.1/os-hypervisors/detail", hyp_detail, methods=["GET"]),
    Route("/v2.1/os-hypervisors/statistics", hyp_statistics, methods=["GET"]),
    Route("/v2.1/os-hypervisors/{hypervisor_id}", hyp_show, methods=["GET"]),
    Route("/v2.1/os-hypervisors/{hypervisor_id}/uptime", hyp_uptime, methods=["GET"]),
    Route("/v2.1/os-hypervisors/{pattern}/search", hyp_search, methods=["GET"]),
    Route("/v2.1/os-hypervisors/{pattern}/servers", hyp_servers, methods=["GET"]),
]
