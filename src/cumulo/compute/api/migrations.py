"""GET /os-migrations (admin): Nova's migration records (compute.migration_records,
compute.live_records). GET /servers/{id}/migrations[/{id}] (in-progress live migrations) is
live_migration.py's; its policies are registered here with the list's."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas._base import bool_from_string, parse_isotime, validate_query
from cumulo.compute.api.schemas.migrations import INDEX_QUERY
from cumulo.compute.service.migrations import MigrationQuery
from cumulo.web.http import json_response

policy.register(
    {
        "os_compute_api:os-migrations:index": policy.ADMIN,
        "os_compute_api:servers:migrations:index": policy.ADMIN,
        "os_compute_api:servers:migrations:show": policy.ADMIN,
    }
)

MAX_LIMIT = 1000  # Nova's [api] max_limit
_KEYS = (
    "id", "status", "instance_uuid", "source_node", "source_compute", "dest_node", "dest_compute", "dest_host",
    "old_instance_type_id", "new_instance_type_id",
)


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def _view(row: dict[str, Any], ver: Any) -> dict[str, Any]:
    out = {k: row[k] for k in _KEYS}
    out["created_at"] = _time(row["created_at"])
    out["updated_at"] = _time(row["updated_at"])
    if ver >= v("2.23"):
        out["migration_type"] = row["migration_type"]
    if ver >= v("2.59"):
        out["uuid"] = row["uuid"]
    return out


def _time_param(params: dict[str, list[str]], key: str) -> Any:
    if key not in params:
        return None
    try:
        return parse_isotime(params[key][0])
    except ValueError:
        raise errors.Invalid(f"Invalid input for query parameters {key}.") from None


async def index(request: Request) -> Response:
    ctx = await _common.caller(request)
    policy.authorize(ctx, "os_compute_api:os-migrations:index")
    ver = _common.version(request)
    params = _common.query_lists(request)
    schema = INDEX_QUERY.for_version(ver)
    if schema is not None:
        validate_query(schema, params)
    query = MigrationQuery(hidden=bool_from_string((params.get("hidden") or ["0"])[-1]), limit=MAX_LIMIT)
    for key in ("instance_uuid", "source_compute", "migration_type", "status"):
        if key in params:
            query.equal[key] = params[key][-1]
    if "host" in params:
        query.host = params["host"][-1]
    if ver >= v("2.59"):
        since, before = _time_param(params, "changes-since"), _time_param(params, "changes-before")
        if since and before and before < since:
            raise errors.Invalid("The value of changes-since must be less than or equal to changes-before.")
        query.since, query.before = since, before
        if "limit" in params:
            query.limit = min(int(params["limit"][0]), MAX_LIMIT)
        query.marker = params["marker"][0] if "marker" in params else None
    rows = await _common.migration_service(request).list_migrations(query)
    body: dict[str, Any] = {"migrations": [_view(r, ver) for r in rows]}
    if ver >= v("2.59") and rows and len(rows) == query.limit:
        body["migrations_links"] = _common.next_link(request, "os-migrations", rows[-1]["uuid"])
    return json_response(body)


ROUTES = [
    Route("/v2.1/os-migrations", index, methods=["GET"]),
]
