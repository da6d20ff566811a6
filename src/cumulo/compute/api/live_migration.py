"""Live migration in the compute API (Nova's migrate_server.py and server_migrations.py):

- POST /servers/{id}/action {"os-migrateLive": {...}} (admin): host, block_migration (a boolean
  until 2.24, also "auto" from 2.25; disk_over_commit until 2.24), force (2.30-2.67: a named host
  without the scheduler; below 2.30 a named host is always forced, as in Nova);
- GET /servers/{id}/migrations[/{migration_id}] (2.23): the in-progress live migrations;
- POST /servers/{id}/migrations/{migration_id}/action {"force_complete": null} (2.22);
- DELETE /servers/{id}/migrations/{migration_id} (2.24; queued and preparing ones too from 2.65).
The work is compute/service/live_migration.py's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute import live_records
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas._base import bool_from_string, validate
from cumulo.compute.api.schemas.live_migration import SCHEMAS as SCHEMAS
from cumulo.compute.api.schemas.live_migration import force_complete_schema
from cumulo.compute.service import live_migration as live
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_body, json_response

policy.register(
    {
        "os_compute_api:os-migrate-server:migrate_live": policy.ADMIN,
        "os_compute_api:os-migrate-server:migrate_live:host": policy.ADMIN,
        "os_compute_api:servers:migrations:force_complete": policy.ADMIN,
        "os_compute_api:servers:migrations:delete": policy.ADMIN,
    }
)

Handler = Callable[[Request, RequestContext, ComputeService, dict[str, Any], Any], Awaitable[Response]]


async def _os_migrate_live(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any],
                           arg: Any) -> Response:
    policy.authorize(ctx, "os_compute_api:os-migrate-server:migrate_live")
    ver = _common.version(request)
    host = arg.get("host") or None
    if host:
        policy.authorize(ctx, "os_compute_api:os-migrate-server:migrate_live:host")
    raw = arg.get("block_migration")
    block = None if raw == "auto" else bool_from_string(raw, strict=True)
    # Below 2.30 a named host skips the scheduler (Nova); 2.30-2.67 only with force; 2.68 never.
    if ver < v("2.30"):
        force = bool(host)
    elif ver < v("2.68"):
        force = bool(host) and bool_from_string(arg.get("force", False), strict=True)
    else:
        force = False
    await live.live_migrate(svc, ctx, row, host=host, block_migration=block, force=force)
    return empty(202)


ACTIONS: dict[str, Handler] = {"os-migrateLive": _os_migrate_live}


# -- /servers/{id}/migrations ---------------------------------------------------------------------


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def server_view(row: dict[str, Any], ver: Any) -> dict[str, Any]:
    """Nova's server migration (2.23), + uuid (2.59), + user_id and project_id (2.80)."""
    out: dict[str, Any] = {
        "created_at": _time(row["created_at"]), "dest_compute": row["dest_compute"], "dest_host": row["dest_host"],
        "dest_node": row["dest_node"], "disk_processed_bytes": row.get("disk_processed"),
        "disk_remaining_bytes": row.get("disk_remaining"), "disk_total_bytes": row.get("disk_total"),
        "id": row["id"], "memory_processed_bytes": row.get("memory_processed"),
        "memory_remaining_bytes": row.get("memory_remaining"), "memory_total_bytes": row.get("memory_total"),
        "server_uuid": row["instance_uuid"], "source_compute": row["source_compute"],
        "source_node": row["source_node"], "status": row["status"], "updated_at": _time(row["updated_at"]),
    }
    if ver >= v("2.59"):
        out["uuid"] = row["uuid"]
    if ver >= v("2.80"):
        out["user_id"] = row["user_id"]
        out["project_id"] = row["project_id"]
    return out


_MAX_ID = 2**31 - 1  # migrations.id is an INTEGER: a larger one would be PostgreSQL's DataError (a 500)


def _migration_id(request: Request) -> int:
    raw = request.path_params["migration_id"]
    try:
        value = int(raw)
    except ValueError:
        raise errors.Invalid(f"Invalid migration id {raw[:64]}: it must be an integer.") from None
    if not 0 < value <= _MAX_ID:
        raise errors.NotFound(f"Migration {raw[:64]} is not found for server {request.path_params['server_id']}.")
    return value


async def server_index(request: Request) -> Response:
    _common.require(request, "2.23")
    ctx = await _common.caller(request)
    policy.authorize(ctx, "os_compute_api:servers:migrations:index")
    svc = _common.compute_service(request)
    inst = await svc.get(ctx, request.path_params["server_id"])
    rows = await live_records.in_progress(svc.db, inst["uuid"])
    ver = _common.version(request)
    return json_response({"migrations": [server_view(r, ver) for r in rows]})


async def server_show(request: Request) -> Response:
    _common.require(request, "2.23")
    ctx = await _common.caller(request)
    policy.authorize(ctx, "os_compute_api:servers:migrations:show")
    svc = _common.compute_service(request)
    server_id = request.path_params["server_id"]
    inst = await svc.get(ctx, server_id)
    migration_id = _migration_id(request)
    rows = await live_records.in_progress(svc.db, inst["uuid"], migration_id)
    if not rows:
        raise errors.NotFound(f"In-progress live migration {migration_id} is not found for server {server_id}.")
    return json_response({"migration": server_view(rows[0], _common.version(request))})


async def server_action(request: Request) -> Response:
    _common.require(request, "2.22")
    ctx = await _common.caller(request)
    data = await json_body(request)
    validate(force_complete_schema, data)
    policy.authorize(ctx, "os_compute_api:servers:migrations:force_complete")
    svc = _common.compute_service(request)
    inst = await svc.get(ctx, request.path_params["server_id"])
    await live.force_complete(svc, ctx, inst, _migration_id(request))
    return empty(202)


async def server_delete(request: Request) -> Response:
    _common.require(request, "2.24")
    ctx = await _common.caller(request)
    policy.authorize(ctx, "os_compute_api:servers:migrations:delete")
    svc = _common.compute_service(request)
    inst = await svc.get(ctx, request.path_params["server_id"])
    migration_id = _migration_id(request)
    if _common.version(request) < v("2.65"):
        row = await live_records.by_id(svc.db, inst["uuid"], migration_id)
        if row is not None and row["status"] != live_records.RUNNING and row["status"] in live_records.IN_PROGRESS:
            raise errors.Invalid(f"Migration {migration_id} state of instance {inst['uuid']} is {row['status']}. "
                                 "Cannot abort live migration while the migration is in this state.")
    await live.abort(svc, ctx, inst, migration_id)
    return empty(202)


ROUTES = [
    Route("/v2.1/servers/{server_id}/migrations", server_index, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/migrations/{migration_id}", server_show, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/migrations/{migration_id}", server_delete, methods=["DELETE"]),
    Route("/v2.1/servers/{server_id}/migrations/{migration_id}/action", server_action, methods=["POST"]),
]
