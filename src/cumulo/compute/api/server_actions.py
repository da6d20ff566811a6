"""POST /v2.1/servers/{id}/action: one handler per action, dispatched on the body's single key."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute.api import (
    _common,
    admin_actions,
    deferred_actions,
    live_migration,
    network_actions,
    server_security_groups,
)
from cumulo.compute.api import server_views as views
from cumulo.compute.api.deps import services_of
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas.server_actions import SCHEMAS
from cumulo.compute.api.servers import server_body
from cumulo.compute.service.boot import generate_password
from cumulo.compute.service.servers import ComputeService
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_body, json_response

policy.register(
    {
        "compute:servers:start": policy.MEMBER,
        "compute:servers:stop": policy.MEMBER,
        "compute:servers:reboot": policy.MEMBER,
        "compute:servers:pause": policy.MEMBER,
        "compute:servers:unpause": policy.MEMBER,
        "compute:servers:suspend": policy.MEMBER,
        "compute:servers:resume": policy.MEMBER,
        "compute:servers:lock": policy.MEMBER,
        "compute:servers:unlock": policy.MEMBER,
        "compute:servers:unlock:unlock_override": policy.ADMIN,
        "compute:servers:rebuild": policy.MEMBER,
        "compute:servers:resize": policy.MEMBER,
        "compute:servers:confirm_resize": policy.MEMBER,
        "compute:servers:revert_resize": policy.MEMBER,
        "compute:servers:create_image": policy.MEMBER,
        "compute:servers:console_output": policy.MEMBER,
    }
)

# Characters Nova strips from console output.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f]")

Handler = Callable[[Request, RequestContext, ComputeService, dict[str, Any], Any], Awaitable[Response]]


def _simple(key: str, rule: str) -> Handler:
    """Actions whose only work is a state transition and a cast to the agent."""

    async def handler(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
        policy.authorize(ctx, rule)
        await svc.run_action(ctx, row, key)
        return empty(202)

    return handler


async def _reboot(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:reboot")
    kind = arg["type"].upper()
    await svc.run_action(ctx, row, "reboot_hard" if kind == "HARD" else "reboot_soft", reboot_type=kind)
    return empty(202)


async def _lock(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:lock")
    reason = arg.get("locked_reason") if _common.version(request) >= v("2.73") and isinstance(arg, dict) else None
    await svc.lock(ctx, row, reason)
    return empty(202)


async def _unlock(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:unlock")
    await svc.unlock(ctx, row)
    return empty(202)


async def _rebuild(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:rebuild")
    ver = _common.version(request)
    values = _common.server_columns(arg)
    if "metadata" in arg:
        values["metadata"] = arg["metadata"]
    if ver >= v("2.57") and "user_data" in arg:
        values["user_data"] = arg["user_data"]
    sysmeta = dict(row["system_metadata"] or {})
    if "OS-DCF:diskConfig" in arg:
        sysmeta["auto_disk_config"] = arg["OS-DCF:diskConfig"] == "AUTO"
    if ver >= v("2.63") and "trusted_image_certificates" in arg:
        sysmeta["trusted_certs"] = arg["trusted_image_certificates"]
    if sysmeta != (row["system_metadata"] or {}):
        values["system_metadata"] = sysmeta
    # key_name: absent = keep, None = remove, a name = replace (2.54+).
    key_name: Any = None
    if ver >= v("2.54") and "key_name" in arg:
        key_name = arg["key_name"] or ""
    password = arg.get("adminPass") or generate_password()
    updated = await svc.rebuild(ctx, row, arg["imageRef"], values, key_name)
    body = await server_body(request, ctx, updated, views.REBUILD)
    body["adminPass"] = password
    return json_response({"server": body}, status=202, headers={"Location": body["links"][0]["href"]})


async def _resize(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:resize")
    disk = arg.get("OS-DCF:diskConfig")
    flavor_ref = str(arg["flavorRef"]).rstrip("/").split("/")[-1]
    await svc.resize(ctx, row, flavor_ref, None if disk is None else disk == "AUTO")
    return empty(202)


async def _confirm(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:confirm_resize")
    await svc.run_action(ctx, row, "confirmResize")
    return empty(204)


async def _create_image(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:create_image")
    image_id = await svc.snapshot(ctx, row, arg["name"].strip(), arg.get("metadata") or {})
    if _common.version(request) >= v("2.45"):
        return json_response({"image_id": image_id}, status=202)
    location = f"{services_of(request).conf.public_url}/image/v2/images/{image_id}"
    return empty(202, headers={"Location": location})


async def _console_output(request: Request, ctx: RequestContext, svc: ComputeService, row: dict[str, Any], arg: Any) -> Response:
    policy.authorize(ctx, "compute:servers:console_output")
    length = arg.get("length")
    tail = None if length is None or int(length) == -1 else int(length)
    output = await svc.console_output(ctx, row, tail)
    return json_response({"output": _CONTROL.sub("", str(output or ""))})


ACTIONS: dict[str, Handler] = {
    "os-start": _simple("start", "compute:servers:start"),
    "os-stop": _simple("stop", "compute:servers:stop"),
    "pause": _simple("pause", "compute:servers:pause"),
    "unpause": _simple("unpause", "compute:servers:unpause"),
    "suspend": _simple("suspend", "compute:servers:suspend"),
    "resume": _simple("resume", "compute:servers:resume"),
    "revertResize": _simple("revertResize", "compute:servers:revert_resize"),
    "confirmResize": _confirm,
    "reboot": _reboot,
    "lock": _lock,
    "unlock": _unlock,
    "rebuild": _rebuild,
    "resize": _resize,
    "createImage": _create_image,
    "os-getConsoleOutput": _console_output,
    **deferred_actions.ACTIONS,  # restore, forceDelete, createBackup
    **admin_actions.ACTIONS,  # os-resetState, injectNetworkInfo, migrate
    **live_migration.ACTIONS,  # os-migrateLive
    **server_security_groups.ACTIONS,  # addSecurityGroup, removeSecurityGroup
    **network_actions.ACTIONS,  # addFixedIp, removeFixedIp, addFloatingIp, removeFloatingIp (< 2.44)
}


async def action(request: Request) -> Response:
    ctx = await _common.caller(request)
    data = await json_body(request)
    if not isinstance(data, dict) or len(data) != 1:
        raise errors.Invalid("Malformed request body")
    name = next(iter(data))
    handler = ACTIONS.get(name)
    if handler is None:
        raise errors.Invalid(f"There is no such action: {name}")
    schema = (SCHEMAS.get(name) or deferred_actions.SCHEMAS.get(name) or server_security_groups.SCHEMAS.get(name)
              or network_actions.SCHEMAS.get(name) or live_migration.SCHEMAS.get(name) or admin_actions.SCHEMAS[name])
    schema.validate(_common.version(request), data)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    return await handler(request, ctx, svc, row, data[name])


ROUTES = [Route("/v2.1/servers/{server_id}/action", action, methods=["POST"])]
