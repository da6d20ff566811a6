"""os-instance_usage_audit_log (Nova's InstanceUsageAuditLogController), admin-only.

Nova's compute hosts run a periodic "instance_usage_audit" task and record a task log per period.
Cumulo runs no such task, so every report is the one Nova gives for a period no host has audited:
the last completed month before the given time (Nova's default instance_usage_audit_period), every
compute host in hosts_not_run, nothing done, no log entries.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.db import utcnow
from cumulo.errors import Invalid
from cumulo.web.http import authenticate, json_response

policy.register(
    {
        "os_compute_api:os-instance-usage-audit-log:list": policy.ADMIN,
        "os_compute_api:os-instance-usage-audit-log:show": policy.ADMIN,
    }
)


def last_completed_month(before: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Nova's utils.last_completed_audit_period for unit "month" (offset 1)."""
    end = dt.datetime(before.year, before.month, 1)
    if end >= before:
        end = dt.datetime(before.year - 1, 12, 1) if before.month == 1 else dt.datetime(before.year, before.month - 1, 1)
    begin = dt.datetime(end.year - 1, 12, 1) if end.month == 1 else dt.datetime(end.year, end.month - 1, 1)
    return begin, end


async def _report(request: Request, before: dt.datetime) -> dict[str, Any]:
    begin, end = last_completed_month(before)
    # Disabled compute services count too: they may hold servers (as in Nova).
    hosts = await _common.host_service(request).compute_hosts()
    return {
        "period_beginning": str(begin),
        "period_ending": str(end),
        "num_hosts": len(hosts),
        "num_hosts_done": 0,
        "num_hosts_running": 0,
        "num_hosts_not_run": len(hosts),
        "hosts_not_run": hosts,
        "total_instances": 0,
        "total_errors": 0,
        "overall_status": f"{'ALL' if not hosts else f'0 of {len(hosts)}'} hosts done. 0 errors.",
        "log": {},
    }


async def index(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-instance-usage-audit-log:list")
    return json_response({"instance_usage_audit_logs": await _report(request, utcnow())})


async def show(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "os_compute_api:os-instance-usage-audit-log:show")
    raw = request.path_params["before_timestamp"]
    try:
        before = dt.datetime.strptime(raw, "%Y-%m-%d %H:%M:%S.%f" if "." in raw else "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise Invalid(f"Invalid timestamp for date {raw}") from None
    return json_response({"instance_usage_audit_log": await _report(request, before)})


ROUTES = [
    Route("/v2.1/os-instance_usage_audit_log", index, methods=["GET"]),
    Route("/v2.1/os-instance_usage_audit_log/{before_timestamp}", show, methods=["GET"]),
]
