"""The compute API's request helpers, for every handler module: the caller, bodies, version gates,
the services a handler calls, query checks, versioned views (`Field` tables), links and paging.

Version differences stay declarative: a response is a table of `Field`s, each with the
microversion range it appears in, and request schemas are picked with `by_version`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request

from cumulo import errors, policy
from cumulo.compute.api.deps import services_of
from cumulo.compute.api.microversion import MAX_VERSION, MIN_VERSION, Version, request_version, v
from cumulo.compute.api.schemas._base import Versioned, validate
from cumulo.context import RequestContext
from cumulo.web.http import authenticate, base_url, json_body

if TYPE_CHECKING:
    from cumulo.compute.service.aggregates import AggregateService
    from cumulo.compute.service.flavors import FlavorService
    from cumulo.compute.service.hosts import HostService
    from cumulo.compute.service.keypairs import KeypairService
    from cumulo.compute.service.migrations import MigrationService
    from cumulo.compute.service.quotas import QuotaService
    from cumulo.compute.service.security_groups import SecurityGroupService
    from cumulo.compute.service.server_groups import ServerGroupService
    from cumulo.compute.service.servers import ComputeService
    from cumulo.compute.service.tenant_usage import TenantUsageService


async def caller(request: Request) -> RequestContext:
    """The authenticated caller, carrying this request's id (ties instance actions to requests)."""
    ctx = await authenticate(request)
    rid = request.scope.get("cumulo.request_id")
    if rid and ctx.request_id != rid:
        ctx = dataclasses.replace(ctx, request_id=rid)
        request.scope["cumulo.context"] = ctx
    return ctx


async def network_caller(request: Request, rule: str) -> tuple[RequestContext, Any]:
    """A nova-network proxy API's caller (the APIs are 404 from 2.36 on), authorized for `rule`, and the
    compute service's network client (404 where the cloud has no network service)."""
    if request_version(request) >= v("2.36"):
        raise errors.NotFound("The resource could not be found.")
    ctx = await caller(request)
    policy.authorize(ctx, rule)
    net = compute_service(request).network
    if net is None:
        raise errors.NotFound("The resource could not be found.")
    return ctx, net


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


def migration_service(request: Request) -> MigrationService:
    from cumulo.compute.service.migrations import MigrationService

    return MigrationService(services_of(request).db)


def quota_service(request: Request) -> QuotaService:
    from cumulo.compute.service.quotas import QuotaService

    s = services_of(request)
    return QuotaService(s.db, s.conf)


def security_group_service(request: Request) -> SecurityGroupService:
    from cumulo.compute.service.security_groups import SecurityGroupService

    s = services_of(request)
    return SecurityGroupService(s.db, s.compute.network)


def server_group_service(request: Request) -> ServerGroupService:
    from cumulo.compute.service.server_groups import ServerGroupService

    s = services_of(request)
    return ServerGroupService(s.db, s.conf)


def tenant_usage_service(request: Request) -> TenantUsageService:
    from cumulo.compute.service.tenant_usage import TenantUsageService

    return TenantUsageService(services_of(request).db)


def host_service(request: Request) -> HostService:
    from cumulo.compute.rpc import SchedulerAPI
    from cumulo.compute.service.hosts import HostService

    s = services_of(request)
    return HostService(s.db, s.conf, s.placement, SchedulerAPI(s.compute.bus))


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


def query_lists(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def check_query(request: Request, allowed: Sequence[str], *, strict: bool) -> None:
    """Nova ignores unknown query parameters until 2.75, then rejects them."""
    if not strict:
        return
    unknown = sorted({k for k in request.query_params.keys() if k not in allowed})
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        verb = "were" if len(unknown) > 1 else "was"
        raise errors.Invalid(f"Additional properties are not allowed ({listed} {verb} unexpected)")


# --- versioned views ----------------------------------------------------------------------------

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Field:
    """One response key, its value, and the microversions that carry it."""

    key: str
    value: Callable[[Mapping[str, Any]], Any]
    min: Version = MIN_VERSION
    max: Version = MAX_VERSION

    def applies(self, version: Version) -> bool:
        return self.min <= version <= self.max


def render(fields: Sequence[Field], obj: Mapping[str, Any], version: Version) -> dict[str, Any]:
    return {f.key: f.value(obj) for f in fields if f.applies(version)}


def keys_for(fields: Sequence[Field], version: Version) -> list[str]:
    return [f.key for f in fields if f.applies(version)]


def by_version(table: Sequence[tuple[Version, T]], version: Version) -> T:
    """The entry of the newest version not above `version` (table sorted by version)."""
    chosen = table[0][1]
    for since, item in table:
        if since <= version:
            chosen = item
    return chosen


# --- links and paging ---------------------------------------------------------------------------

# CONF.api.max_limit in Nova: the largest page any list returns.
MAX_LIMIT = 1000


def links(request: Request, collection: str, ident: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{api_root(request)}/{collection}/{ident}"},
        {"rel": "bookmark", "href": f"{root(request)}/{collection}/{ident}"},
    ]


def _next(request: Request, collection: str, params: dict[str, str], marker: str) -> list[dict[str, str]]:
    params["marker"] = marker
    return [{"rel": "next", "href": f"{api_root(request)}/{collection}?{urlencode(params)}"}]


def next_link(request: Request, collection: str, marker: str) -> list[dict[str, str]]:
    """Nova's "next" link: the request's parameters (sorted, last value wins) with a new marker."""
    return _next(request, collection, dict(sorted(request.query_params.multi_items())), marker)


def collection_links(request: Request, count: int, collection: str, last_id: str | None) -> list[dict[str, str]]:
    """A 'next' link when the page is full, as Nova's _get_collection_links decides (the resource
    APIs: the request's parameters, each with its last value, sorted, and a new marker)."""
    raw = request.query_params.get("limit")
    try:
        max_items = min(int(raw), MAX_LIMIT) if raw is not None else MAX_LIMIT
    except ValueError:
        max_items = MAX_LIMIT
    if not max_items or max_items != count or last_id is None:
        return []
    return _next(request, collection, dict(sorted((k, v) for k, v in request.query_params.items())), last_id)


def limit_and_marker(request: Request) -> tuple[int, str | None]:
    """Nova's get_limit_and_marker: limit defaults to and is capped by MAX_LIMIT."""
    q = request.query_params
    limit = MAX_LIMIT
    if "limit" in q:
        try:
            asked = int(q["limit"])
        except ValueError:
            raise errors.Invalid("limit param must be an integer") from None
        if asked < 0:
            raise errors.Invalid("limit param must be positive")
        limit = min(MAX_LIMIT, asked)
    marker = q.get("marker")
    return limit, marker


def limited(request: Request, items: list[T]) -> list[T]:
    """Nova's common.limited: `offset`, then `limit` (capped by MAX_LIMIT) of a whole list."""
    limit, _ = limit_and_marker(request)
    try:
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        raise errors.Invalid("offset param must be an integer") from None
    if offset < 0:
        raise errors.Invalid("offset param must be positive")
    return items[offset:offset + limit]


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
