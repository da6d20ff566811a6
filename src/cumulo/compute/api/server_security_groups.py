"""addSecurityGroup / removeSecurityGroup and GET /servers/{id}/os-security-groups, on the security
group names a server records (instances.security_groups).

Cumulo has no network service yet (issue 10), so a project has one security group, "default" (as
Neutron makes for every project), plus any name a server of it already carries (rows from before
names were checked). Creating a server with another name is a 400 (Nova: SecurityGroupNotFound);
Nova with Neutron answers 404 for an unknown group and 400 for a group that exists but is not on
the server (remove); the same holds here over that set of names. Adding a group the server already
has is accepted and changes nothing, as Neutron's port update does.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common
from cumulo.compute.api.schemas.admin_extras import SECURITY_GROUP_ACTIONS
from cumulo.compute.models import instances
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.web.http import empty, json_response

policy.register(
    {
        "os_compute_api:os-security-groups:add": policy.MEMBER,
        "os_compute_api:os-security-groups:remove": policy.MEMBER,
        "os_compute_api:os-security-groups:list": policy.READER,
    }
)

Handler = Callable[[Request, RequestContext, ComputeService, dict[str, Any], Any], Awaitable[Response]]
DEFAULT = "default"
SCHEMAS = SECURITY_GROUP_ACTIONS
_NAMESPACE = uuidlib.UUID("5b0c1d2e-7f8a-4c3b-9d6e-0a1b2c3d4e5f")


def _group_name(arg: Any) -> str:
    """Nova's _parse: a dict with a non-blank name."""
    if not isinstance(arg, dict):
        raise errors.Invalid("Missing parameter dict")
    if "name" not in arg:
        raise errors.Invalid("Security group not specified")
    name = arg["name"]
    if not isinstance(name, str) or not name.strip():
        raise errors.Invalid("Security group name cannot be empty")
    return name


async def _known(svc: ComputeService, project: str, name: str) -> bool:
    """Whether the project has a group by this name: "default", or one a server of it carries."""
    return not await _unknown(svc, project, [name])


async def _unknown(svc: ComputeService, project: str, names: list[str]) -> list[str]:
    wanted = [n for n in names if n != DEFAULT]
    if not wanted:
        return []
    async with svc.db.read() as conn:
        rows = await conn.execute(sa.select(instances.c.security_groups).where(instances.c.project_id == project,
                                                                             instances.c.deleted.is_(False)))
        carried = {g for (groups,) in rows for g in (groups or [])}
    return [n for n in wanted if n not in carried]


async def check_known(svc: ComputeService, project: str, names: list[str]) -> None:
    """A server is created with groups the project has, else 400 (Nova: SecurityGroupNotFound)."""
    unknown = await _unknown(svc, project, names)
    if unknown:
        raise errors.Invalid(f"Security group {unknown[0]} not found.")


async def _change(svc: ComputeService, row: dict[str, Any], change: Callable[[list[str]], list[str]]) -> None:
    """Compare-and-swap on updated_at, retried when a concurrent update won."""
    for _ in range(5):
        new = change(list(row["security_groups"] or []))
        async with svc.db.write() as conn:
            res = await conn.execute(
                sa.update(instances)
                .where(instances.c.uuid == row["uuid"], instances.c.deleted.is_(False), instances.c.updated_at == row["updated_at"])
                .values(security_groups=new, updated_at=utcnow())
            )
            if res.rowcount:
                return
            fresh = (await conn.execute(sa.select(instances).where(instances.c.uuid == row["uuid"],
                                                                   instances.c.deleted.is_(False)))).mappings().first()
        if fresh is None:
            raise errors.NotFound(f"Instance {row['uuid']} could not be found.")
        row = dict(fresh)
    raise errors.Conflict("The server's security groups changed concurrently; try again.")


async def _add(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "os_compute_api:os-security-groups:add")
    name = _group_name(arg)
    if name not in (row["security_groups"] or []):
        if not await _known(svc, row["project_id"], name):
            raise errors.NotFound(f"Security group {name} not found.")
        await _change(svc, row, lambda groups: groups if name in groups else [*groups, name])
    return empty(202)


async def _remove(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "os_compute_api:os-security-groups:remove")
    name = _group_name(arg)
    if name not in (row["security_groups"] or []):
        if await _known(svc, row["project_id"], name):
            raise errors.Invalid(f"Security group {name} not assigned to the instance {row['uuid']}")
        raise errors.NotFound(f"Security group {name} not found.")
    await _change(svc, row, lambda groups: [g for g in groups if g != name])
    return empty(202)


ACTIONS: dict[str, Handler] = {"addSecurityGroup": _add, "removeSecurityGroup": _remove}


def group_view(project: str, name: str) -> dict[str, Any]:
    """Nova's security group view of a recorded name: a stable id per (project, name), no rules."""
    return {
        "id": str(uuidlib.uuid5(_NAMESPACE, f"{project}/{name}")),
        "name": name,
        "description": "Default security group" if name == DEFAULT else "",
        "tenant_id": project,
        "rules": [],
    }


async def server_groups(request: Request) -> Response:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, "os_compute_api:os-security-groups:list")
    return json_response({"security_groups": [group_view(row["project_id"], n) for n in row["security_groups"] or []]})


ROUTES = [Route("/v2.1/servers/{server_id}/os-security-groups", server_groups, methods=["GET"])]
