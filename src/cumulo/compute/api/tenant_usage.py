"""os-simple-tenant-usage (Nova's SimpleTenantUsageController): server hours per project.

Computed from the instance rows, deleted ones included (launched_at, terminated_at and the flavor
each server was booted with), exactly as Nova does: a server counts from max(launched_at, start) to
min(terminated_at, end); the period ends no later than now. The list (all projects) is admin-only;
a project reads its own usage. Paging (limit/marker, a server uuid) from 2.40; unknown query
parameters are refused from 2.75.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.api.schemas.admin_extras import PAGING, USAGE_LIST_QUERY, USAGE_SHOW_QUERY
from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.errors import Forbidden, Invalid, NotFound
from cumulo.web.http import authenticate, json_response

policy.register(
    {
        "os_compute_api:os-simple-tenant-usage:list": policy.ADMIN,
        # A project reads its own usage (reader), an admin any project's.
        "os_compute_api:os-simple-tenant-usage:show": policy.READER,
    }
)

V2_40, V2_75 = v("2.40"), v("2.75")
_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")


def _time(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def parse_datetime(text: str | None) -> dt.datetime:
    """Nova's accepted forms (naive UTC); a missing value is now."""
    if not text:
        return utcnow()
    for fmt in _FORMATS:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise Invalid("Invalid datetime string: Datetime is in invalid format")


def period(request: Request) -> tuple[dt.datetime, dt.datetime, bool]:
    q = request.query_params
    start, stop = parse_datetime(q.get("start")), parse_datetime(q.get("end"))
    if not start < stop:
        raise Invalid("Invalid start time. The start time cannot occur after the end time.")
    return start, min(stop, utcnow()), q.get("detailed", "0") == "1"


def hours_for(launched: dt.datetime | None, terminated: dt.datetime | None, start: dt.datetime, stop: dt.datetime) -> float:
    if launched is None:
        return 0.0
    if terminated is not None and terminated < start:
        return 0.0
    if launched > stop:
        return 0.0
    begin = max(launched, start)
    end = min(stop, terminated) if terminated is not None else stop
    return (end - begin).total_seconds() / 3600.0


def usages(rows: list[dict[str, Any]], start: dt.datetime, stop: dt.datetime, *, detailed: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-project summaries, every server's usage), as Nova's _tenant_usages_for_period."""
    summaries: OrderedDict[str, dict[str, Any]] = OrderedDict()
    servers: list[dict[str, Any]] = []
    now = utcnow()
    for r in rows:
        hours = hours_for(r["launched_at"], r["terminated_at"], start, stop)
        flavor = r["flavor"] or {}
        info: dict[str, Any] = {
            "hours": hours,
            "flavor": flavor.get("name") or "",
            "instance_id": r["uuid"],
            "name": r["display_name"],
            "tenant_id": r["project_id"],
            "memory_mb": int(flavor.get("memory_mb", r["memory_mb"])),
            "local_gb": int(flavor.get("root_gb", r["root_gb"])) + int(flavor.get("ephemeral_gb", r["ephemeral_gb"]) or 0),
            "vcpus": int(flavor.get("vcpus", r["vcpus"])),
            "started_at": _time(r["launched_at"]),
            "ended_at": _time(r["terminated_at"]),
            "state": "terminated" if r["terminated_at"] else r["vm_state"],
            "uptime": int(((r["terminated_at"] or now) - r["launched_at"]).total_seconds()),
        }
        summary = summaries.get(r["project_id"])
        if summary is None:
            summary = {"tenant_id": r["project_id"]}
            if detailed:
                summary["server_usages"] = []
            summary.update(total_local_gb_usage=0, total_vcpus_usage=0, total_memory_mb_usage=0, total_hours=0,
                           start=_time(start), stop=_time(stop))
            summaries[r["project_id"]] = summary
        summary["total_local_gb_usage"] += info["local_gb"] * hours
        summary["total_vcpus_usage"] += info["vcpus"] * hours
        summary["total_memory_mb_usage"] += info["memory_mb"] * hours
        summary["total_hours"] += hours
        servers.append(info)
        if detailed:
            summary["server_usages"].append(info)
    return list(summaries.values()), servers


def _paging(request: Request, version: Version, allowed: tuple[str, ...]) -> tuple[int, str | None, bool]:
    paged = version >= V2_40
    _common.check_query(request, allowed + (PAGING if paged else ()), strict=version >= V2_75)
    if not paged:
        return _common.MAX_LIMIT, None, False
    limit, marker = _common.limit_and_marker(request)
    return limit, marker, True


async def index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-simple-tenant-usage:list")
    version = _common.version(request)
    limit, marker, paged = _paging(request, version, USAGE_LIST_QUERY)
    start, stop, detailed = period(request)
    rows = await _common.tenant_usage_service(request).instances_in(start, stop, None, limit, marker)
    summaries, servers = usages(rows, start, stop, detailed=detailed)
    body: dict[str, Any] = {"tenant_usages": summaries}
    if paged:
        links = _common.collection_links(request, len(servers), "os-simple-tenant-usage", servers[-1]["instance_id"] if servers else None)
        if links:
            body["tenant_usages_links"] = links
    return json_response(body)


def _authorize_show(ctx: RequestContext, project: str) -> None:
    policy.authorize(ctx, "os_compute_api:os-simple-tenant-usage:show")
    if not ctx.is_admin and ctx.project_id != project:
        raise Forbidden("Policy doesn't allow os_compute_api:os-simple-tenant-usage:show to be performed.")


async def show(request: Request) -> Response:
    ctx = await authenticate(request)
    project = request.path_params["tenant_id"]
    _authorize_show(ctx, project)
    version = _common.version(request)
    limit, marker, paged = _paging(request, version, USAGE_SHOW_QUERY)
    start, stop, _ = period(request)
    rows = await _common.tenant_usage_service(request).instances_in(start, stop, project, limit, marker)
    summaries, servers = usages(rows, start, stop, detailed=True)
    body: dict[str, Any] = {"tenant_usage": summaries[0] if summaries else {}}
    if paged:
        coll = f"os-simple-tenant-usage/{project}"
        links = _common.collection_links(request, len(servers), coll, servers[-1]["instance_id"] if servers else None)
        if links:
            body["tenant_usage_links"] = links
    return json_response(body)


async def blank_tenant(request: Request) -> Response:
    """GET /os-simple-tenant-usage/ (a blank tenant id) is a 404 in Nova, not a redirect to the list."""
    raise NotFound("The resource could not be found.")


ROUTES = [
    Route("/v2.1/os-simple-tenant-usage", index, methods=["GET"]),
    Route("/v2.1/os-simple-tenant-usage/", blank_tenant, methods=["GET"]),
    Route("/v2.1/os-simple-tenant-usage/{tenant_id}", show, methods=["GET"]),
]
