"""os-hosts (Nova's HostController, deprecated: served up to 2.42, 404 from 2.43 as in Nova).

A host is a service host: the list has one entry per enabled service (host_name, the service's
kind, zone), and a compute host's page has its node's resources and its servers' use, in total and
per project. Host power actions and maintenance/status updates are answered as Nova answers them
with the libvirt driver: 501 once the host is known (use os-services to disable a compute service).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas._base import validate
from cumulo.compute.api.schemas.admin_extras import host_update
from cumulo.errors import Invalid, NotFound
from cumulo.web.http import authenticate, json_body, json_response

policy.register(
    {
        "os_compute_api:os-hosts:list": policy.ADMIN,
        "os_compute_api:os-hosts:show": policy.ADMIN,
        "os_compute_api:os-hosts:update": policy.ADMIN,
        "os_compute_api:os-hosts:reboot": policy.ADMIN,
        "os_compute_api:os-hosts:shutdown": policy.ADMIN,
        "os_compute_api:os-hosts:start": policy.ADMIN,
    }
)

LAST = v("2.42")
NOT_SUPPORTED = "The requested functionality is not supported."
# Services Nova leaves out of the list (API services).
_API_BINARIES = ("nova-osapi_compute", "nova-metadata")


async def _authorized(request: Request, action: str) -> None:
    ctx = await authenticate(request)
    if _common.version(request) > LAST:
        raise NotFound("The resource could not be found.")
    policy.authorize(ctx, f"os_compute_api:os-hosts:{action}")


def _kind(binary: str) -> str:
    """The service's topic as Nova names it (nova-compute → compute)."""
    return binary.removeprefix("nova-")


async def index(request: Request) -> Response:
    await _authorized(request, "list")
    zone = request.query_params.get("zone") or None
    rows = await _common.host_service(request).list_services()
    hosts = [
        {"host_name": r["host"], "service": _kind(r["binary"]), "zone": r["zone"]}
        for r in rows
        if not r["disabled"] and r["binary"] not in _API_BINARIES and (zone is None or r["zone"] == zone)
    ]
    return json_response({"hosts": hosts})


def _resource(host: str, project: str, cpu: int, memory_mb: int, disk_gb: int) -> dict[str, Any]:
    return {"resource": {"host": host, "project": project, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb}}


async def show(request: Request) -> Response:
    await _authorized(request, "show")
    host = request.path_params["host_name"]
    node, per_project, total = await _common.host_service(request).host_usage(host)
    out = [
        _resource(host, "(total)", node["vcpus"], node["memory_mb"], node["local_gb"]),
        _resource(host, "(used_now)", node["vcpus_used"], node["memory_mb_used"], node["local_gb_used"]),
    ]
    out.append(_resource(host, "(used_max)", *total))
    out += [_resource(host, project, *acc) for project, acc in per_project.items()]
    return json_response({"host": out})


async def _known_compute_host(request: Request) -> str:
    host = str(request.path_params["host_name"])
    await _common.host_service(request).compute_host(host)
    return host


async def update(request: Request) -> Response:
    await _authorized(request, "update")
    body = await json_body(request)
    validate(host_update, body)
    if not isinstance(body, dict):
        raise Invalid("Malformed request body")
    await _known_compute_host(request)
    raise HTTPException(status_code=501, detail=NOT_SUPPORTED)


def _power(action: str, rule: str) -> Any:
    async def handler(request: Request) -> Response:
        await _authorized(request, rule)
        await _known_compute_host(request)
        raise HTTPException(status_code=501, detail=NOT_SUPPORTED)

    handler.__name__ = f"host_{action}"
    return handler


ROUTES = [
    Route("/v2.1/os-hosts", index, methods=["GET"]),
    Route("/v2.1/os-hosts/{host_name}", show, methods=["GET"]),
    Route("/v2.1/os-hosts/{host_name}", update, methods=["PUT"]),
    Route("/v2.1/os-hosts/{host_name}/reboot", _power("reboot", "reboot"), methods=["GET"]),
    Route("/v2.1/os-hosts/{host_name}/shutdown", _power("shutdown", "shutdown"), methods=["GET"]),
    Route("/v2.1/os-hosts/{host_name}/startup", _power("startup", "start"), methods=["GET"]),
]
