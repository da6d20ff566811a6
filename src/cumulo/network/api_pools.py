"""Neutron v2.0 routes of subnet pools and of the auto-allocated topology.

    GET/POST /v2.0/subnetpools           GET/PUT/DELETE /v2.0/subnetpools/{id}
    GET/DELETE /v2.0/auto-allocated-topology/{project_id}   (?fields=dry-run validates only)

network.api mounts `ROUTES`; this module imports nothing of it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo.network import faults
from cumulo.network.api_l3 import crud
from cumulo.network.deps import services_of
from cumulo.network.service import NetworkService
from cumulo.web.http import authenticate, empty, json_response


async def get_topology(request: Request) -> Response:
    ctx = await authenticate(request)
    fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
    dry_run = "dry-run" in fields
    if fields and not dry_run:  # Neutron's: the only field this resource takes is dry-run
        raise faults.BadRequest(resource="auto_allocate", msg="Unrecognized field")
    topology = await services_of(request).network.get_auto_allocated_topology(
        ctx, request.path_params["project_id"], dry_run=dry_run)
    return json_response({"auto_allocated_topology": topology})


async def delete_topology(request: Request) -> Response:
    ctx = await authenticate(request)
    await services_of(request).network.delete_auto_allocated_topology(ctx, request.path_params["project_id"])
    return empty(204)


TOPOLOGY = "/v2.0/auto-allocated-topology/{project_id}"

ROUTES: list[BaseRoute] = [
    *crud("subnetpool", "subnetpools", NetworkService.list_subnetpools, NetworkService.get_subnetpool,
          NetworkService.create_subnetpool, NetworkService.update_subnetpool, NetworkService.delete_subnetpool),
    Route(TOPOLOGY, get_topology, methods=["GET"]),
    Route(TOPOLOGY, delete_topology, methods=["DELETE"]),
]
