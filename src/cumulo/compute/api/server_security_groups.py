"""addSecurityGroup / removeSecurityGroup and GET /servers/{id}/os-security-groups, on the network
service's security groups (compute/service/security_groups.py): a server's groups are its ports'.

Creating a server with an unknown name is a 400 (Nova: SecurityGroupNotFound); Nova with Neutron
answers 404 for an unknown group and 400 for a group that exists but is not on the server (remove).
Adding a group the server already has is accepted and changes nothing, as Neutron's port update does.
Without a network service only "default" exists, recorded by name.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import _common, network_proxies
from cumulo.compute.api.schemas.admin_extras import SECURITY_GROUP_ACTIONS
from cumulo.compute.service.security_groups import DEFAULT
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_response

policy.register(
    {
        "os_compute_api:os-security-groups:add": policy.MEMBER,
        "os_compute_api:os-security-groups:remove": policy.MEMBER,
        "os_compute_api:os-security-groups:list": policy.READER,
    }
)

Handler = Callable[[Request, RequestContext, ComputeService, dict[str, Any], Any], Awaitable[Response]]
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


async def _add(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "os_compute_api:os-security-groups:add")
    await _common.security_group_service(request).add(row, _group_name(arg))
    return empty(202)


async def _remove(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "os_compute_api:os-security-groups:remove")
    await _common.security_group_service(request).remove(row, _group_name(arg))
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
    sgs = _common.security_group_service(request)
    if sgs.network is not None:  # the Neutron groups on the server's ports, in Nova's view
        groups = await sgs.server_groups(row)
        return json_response({"security_groups": await network_proxies.views_of(sgs.network, ctx, groups)})
    return json_response({"security_groups": [group_view(row["project_id"], n) for n in row["security_groups"] or []]})


ROUTES = [Route("/v2.1/servers/{server_id}/os-security-groups", server_groups, methods=["GET"])]
