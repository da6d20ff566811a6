"""Cinder's admin views of the deployment: /os-services, /os-hosts, /scheduler-stats/get_pools,
/capabilities/{host}, and the default quota class (/os-quota-class-sets/{class})."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo.volume import records
from cumulo.volume.api import views
from cumulo.volume.api.common import begin, body_of
from cumulo.web.http import json_response


def _stamped(item: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {**item, **{k: views.when(item[k]) for k in keys if k in item}}


async def list_services(request: Request) -> Response:
    call = await begin(request)
    params = call.params()
    services = call.svc.services(call.ctx, host=params.get("host"), binary=params.get("binary"), version=call.version)
    return json_response({"services": [_stamped(s, "updated_at") for s in services]})


async def service_action(request: Request) -> Response:
    """PUT /os-services/{action}: enable (a no-op: everything is enabled), disable, freeze, thaw."""
    call = await begin(request)
    return json_response(call.svc.service_action(call.ctx, call.path("action"), await body_of(request)))


async def list_hosts(request: Request) -> Response:
    call = await begin(request)
    return json_response({"hosts": [_stamped(h, "last-update") for h in call.svc.hosts(call.ctx)]})


async def show_host(request: Request) -> Response:
    call = await begin(request)
    usage = await call.svc.host_usage(call.ctx, call.path("host"))
    return json_response({"host": [{"resource": u} for u in usage]})


async def get_pools(request: Request) -> Response:
    call = await begin(request)
    detail = records.boolean(call.params().get("detail", "false"), "detail")
    pools = await call.svc.pools(call.ctx, detail=detail)
    for pool in pools:
        if "capabilities" in pool:
            pool["capabilities"] = _stamped(pool["capabilities"], "timestamp")
    return json_response({"pools": pools})


async def show_capabilities(request: Request) -> Response:
    call = await begin(request)
    return json_response(call.svc.capabilities(call.ctx, call.path("host")))


async def show_quota_class(request: Request) -> Response:
    call = await begin(request)
    name = call.path("quota_class")
    return json_response({"quota_class_set": {"id": name, **await call.svc.get_quota_class(call.ctx, name)}})


async def update_quota_class(request: Request) -> Response:
    call = await begin(request)
    limits = await call.svc.update_quota_class(call.ctx, call.path("quota_class"), await body_of(request))
    return json_response({"quota_class_set": limits})


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/os-services", list_services, methods=["GET"]),
        Route(f"{prefix}/os-services/{{action}}", service_action, methods=["PUT"]),
        Route(f"{prefix}/os-hosts", list_hosts, methods=["GET"]),
        Route(f"{prefix}/os-hosts/{{host}}", show_host, methods=["GET"]),
        Route(f"{prefix}/scheduler-stats/get_pools", get_pools, methods=["GET"]),
        Route(f"{prefix}/capabilities/{{host}}", show_capabilities, methods=["GET"]),
        Route(f"{prefix}/os-quota-class-sets/{{quota_class}}", show_quota_class, methods=["GET"]),
        Route(f"{prefix}/os-quota-class-sets/{{quota_class}}", update_quota_class, methods=["PUT"]),
    ]
