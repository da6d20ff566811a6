"""os-aggregates (Nova's AggregateController): admin-only host aggregates.

Answers as Nova does: 200 on create and delete (for backward compatibility), the aggregate's uuid
from 2.41, 409 for a taken name or a host added twice, 404 for an unknown aggregate or host,
400 for a non-integer id or an invalid availability-zone change. Image caching (2.81) is beyond
our maximum microversion.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.api.schemas import aggregates as schemas
from cumulo.compute.api.schemas._base import validate
from cumulo.errors import Invalid, NotFound
from cumulo.web.http import authenticate, empty, json_body, json_response

policy.register(
    {
        "os_compute_api:os-aggregates:index": policy.ADMIN,
        "os_compute_api:os-aggregates:create": policy.ADMIN,
        "os_compute_api:os-aggregates:show": policy.ADMIN,
        "os_compute_api:os-aggregates:update": policy.ADMIN,
        "os_compute_api:os-aggregates:delete": policy.ADMIN,
        "os_compute_api:os-aggregates:add_host": policy.ADMIN,
        "os_compute_api:os-aggregates:remove_host": policy.ADMIN,
        "os_compute_api:os-aggregates:set_metadata": policy.ADMIN,
    }
)

V2_41 = v("2.41")
_MAX_ID = 2**63 - 1


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def view(agg: dict[str, Any], version: Version, *, brief: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "availability_zone": agg["availability_zone"],
        "created_at": _time(agg["created_at"]),
        "deleted": False,
        "deleted_at": None,
        "id": agg["id"],
        "name": agg["name"],
        "updated_at": _time(agg["updated_at"]),
    }
    if not brief:  # a created aggregate is shown without them, as Nova has always done
        out["hosts"] = list(agg["hosts"])
        out["metadata"] = dict(agg["metadata"])
    if version >= V2_41:
        out["uuid"] = agg["uuid"]
    return out


def _id(request: Request) -> int:
    raw = request.path_params["aggregate_id"]
    try:
        value = int(raw)
    except ValueError:
        raise Invalid("Invalid input received: id must be an integer") from None
    if abs(value) > _MAX_ID:
        raise NotFound(f"Aggregate {raw} could not be found.")
    return value


async def _authorized(request: Request, action: str) -> Version:
    ctx = await authenticate(request)
    policy.authorize(ctx, f"os_compute_api:os-aggregates:{action}")
    return _common.version(request)


async def index(request: Request) -> Response:
    version = await _authorized(request, "index")
    rows = await _common.aggregate_service(request).list_all()
    return json_response({"aggregates": [view(a, version) for a in rows]})


async def create(request: Request) -> Response:
    version = await _authorized(request, "create")
    body = await json_body(request)
    validate(schemas.create, body)
    spec = body["aggregate"]
    zone = spec.get("availability_zone")
    name = spec["name"].strip()
    agg = await _common.aggregate_service(request).create(name, zone.strip() if zone else None)
    return json_response({"aggregate": view(agg, version, brief=True)})


async def show(request: Request) -> Response:
    version = await _authorized(request, "show")
    agg_id = _id(request)
    agg = await _common.aggregate_service(request).get(agg_id)
    return json_response({"aggregate": view(agg, version)})


async def update(request: Request) -> Response:
    version = await _authorized(request, "update")
    body = await json_body(request)
    validate(schemas.update, body)
    agg_id = _id(request)
    values = dict(body["aggregate"])
    if "name" in values:
        values["name"] = values["name"].strip()
    agg = await _common.aggregate_service(request).update(agg_id, values)
    return json_response({"aggregate": view(agg, version)})


async def delete(request: Request) -> Response:
    await _authorized(request, "delete")
    agg_id = _id(request)
    await _common.aggregate_service(request).delete(agg_id)
    return empty(200)


async def action(request: Request) -> Response:
    ctx = await authenticate(request)
    version = _common.version(request)
    body = await json_body(request)
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in schemas.ACTIONS:
        name = next(iter(body)) if isinstance(body, dict) and len(body) == 1 else None
        raise Invalid(f"There is no such action: {name}" if name else "Malformed request body")
    name = next(iter(body))
    validate(schemas.ACTIONS[name], body)
    policy.authorize(ctx, f"os_compute_api:os-aggregates:{name}")
    agg_id = _id(request)
    agg = await _common.aggregate_service(request).act(name, agg_id, body[name])
    return json_response({"aggregate": view(agg, version)})


ROUTES = [
    Route("/v2.1/os-aggregates", index, methods=["GET"]),
    Route("/v2.1/os-aggregates", create, methods=["POST"]),
    Route("/v2.1/os-aggregates/{aggregate_id}", show, methods=["GET"]),
    Route("/v2.1/os-aggregates/{aggregate_id}", update, methods=["PUT"]),
    Route("/v2.1/os-aggregates/{aggregate_id}", delete, methods=["DELETE"]),
    Route("/v2.1/os-aggregates/{aggregate_id}/action", action, methods=["POST"]),
]
