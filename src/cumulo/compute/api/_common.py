"""Helpers shared by the server API modules: the caller, bodies, links and version gates."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from cumulo import errors
from cumulo.compute.api.deps import services_of
from cumulo.compute.api.microversion import Version, request_version, v
from cumulo.compute.api.schemas._base import Versioned, validate
from cumulo.context import RequestContext
from cumulo.web.http import authenticate, base_url, json_body

if TYPE_CHECKING:
    from cumulo.compute.service.aggregates import AggregateService
    from cumulo.compute.service.flavors import FlavorService
    from cumulo.compute.service.hosts import HostService
    from cumulo.compute.service.keypairs import KeypairService
    from cumulo.compute.service.quotas import QuotaService
    from cumulo.compute.service.servers import ComputeService


async def caller(request: Request) -> RequestContext:
    """The authenticated caller, carrying this request's id (ties instance actions to requests)."""
    ctx = await authenticate(request)
    rid = request.scope.get("cumulo.request_id")
    if rid and ctx.request_id != rid:
        ctx = dataclasses.replace(ctx, request_id=rid)
        request.scope["cumulo.context"] = ctx
    return ctx


def version(request: Request) -> Version:
    return request_version(request)


def require(request: Request, minimum: str) -> None:
    """Routes added in a later microversion are 404 before it, as in Nova."""
    if request_version(request) < v(minimum):
        raise errors.NotFound("The resource could not be found.")


def compute_service(request: Request) -> ComputeService:
    return services_of(request).compute


def aggregate_service(request: Request) -> AggregateService:
    from cumulo.compute.service.aggregates import AggregateService

    s = services_of(request)
    return AggregateService(s.db, s.conf)


def flavor_service(request: Request) -> FlavorService:
    from cumulo.compute.service.flavors import FlavorService

    return FlavorService(services_of(request).db)


def keypair_service(request: Request) -> KeypairService:
    from cumulo.compute.service.keypairs import KeypairService

    s = services_of(request)
    return KeypairService(s.db, s.conf)


def quota_service(request: Request) -> QuotaService:
    from cumulo.compute.service.quotas import QuotaService

    s = services_of(request)
    return QuotaService(s.db, s.conf)


def host_service(request: Request) -> HostService:
    from cumulo.compute.service.hosts import HostService

    s = services_of(request)
    return HostService(s.db, s.conf, s.placement)


async def body(request: Request, schema: Versioned | dict[str, Any]) -> dict[str, Any]:
    data = await json_body(request)
    if isinstance(schema, Versioned):
        schema.validate(request_version(request), data)
    else:
        validate(schema, data)
    if not isinstance(data, dict):
        raise errors.Invalid("Malformed request body")
    return data


def root(request: Request) -> str:
    """The compute API root without version, e.g. http://host:8080/compute."""
    return base_url(request)


def api_root(request: Request) -> str:
    return base_url(request) + "/v2.1"


def links(request: Request, collection: str, ident: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{api_root(request)}/{collection}/{ident}"},
        {"rel": "bookmark", "href": f"{root(request)}/{collection}/{ident}"},
    ]


def query_lists(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def next_link(request: Request, collection: str, marker: str) -> list[dict[str, str]]:
    """Nova's "next" link: the request's parameters (sorted, last value wins) with a new marker."""
    from urllib.parse import urlencode

    params = dict(sorted(request.query_params.multi_items()))
    params["marker"] = marker
    return [{"rel": "next", "href": f"{api_root(request)}/{collection}?{urlencode(params)}"}]


# Server body fields that rename straight onto instance columns (update and rebuild share them).
_SERVER_COLUMNS = {
    "name": "display_name",
    "description": "display_description",
    "accessIPv4": "access_ip_v4",
    "accessIPv6": "access_ip_v6",
}


def canonical_ipv6(value: str | None) -> str | None:
    """An IPv6 address in its compressed form, as Nova stores accessIPv6 ("::babe:dc0c:1602")."""
    if not value:
        return value
    import ipaddress

    try:
        return ipaddress.IPv6Address(value).compressed
    except ValueError:
        return value  # the schema's "ipv6" format already refused it; nothing to normalise


def server_columns(body: dict[str, Any]) -> dict[str, Any]:
    """Instance column values for the renamed fields present in a validated server body."""
    values = {col: body[key] for key, col in _SERVER_COLUMNS.items() if key in body}
    if "display_name" in values:
        values["display_name"] = values["display_name"].strip()
    if "access_ip_v6" in values:
        values["access_ip_v6"] = canonical_ipv6(values["access_ip_v6"])
    return values
