"""The volume family's OpenAPI operations (`cumulo.web.openapi` builds the document from them).

One `Op` per method of every route under /v3/{project_id} (the project-less 3.67 twins are the
same operations), read from the app's own routes so the document cannot miss one; summaries are
the handlers' docstrings or names. Routes that a microversion adds say so (`since`).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from cumulo.volume.api import admin, messages, resources, transfers, volumes
from cumulo.volume.api.microversion import MAX_VERSION, MIN_VERSION, Version, parse
from cumulo.web.openapi import Family, Microversions, Op, Schema, op

CINDER_FAULT: Schema = {
    "description": 'Cinder fault: {"badRequest": {"message": "...", "code": 400}} (itemNotFound, forbidden, '
                   "conflictingRequest, overLimit, badMethod, computeFault)",
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "properties": {"message": {"type": "string"}, "code": {"type": "integer"}},
        "required": ["message", "code"],
    },
}

PREFIX = "/v3/{project_id}"
# Routes that appear at a microversion (path suffix below PREFIX -> version).
SINCE = {
    "/volumes/summary": "3.12",
    "/attachments": "3.27",
    "/attachments/detail": "3.27",
    "/attachments/{attachment_id}": "3.27",
    "/attachments/{attachment_id}/action": "3.44",
    "/volume-transfers": "3.55",
    "/volume-transfers/detail": "3.55",
    "/volume-transfers/{transfer_id}": "3.55",
    "/volume-transfers/{transfer_id}/accept": "3.55",
    "/messages": "3.3",
    "/messages/{message_id}": "3.3",
}
ADMIN = {("POST", "/types"), ("PUT", "/types/{type_id}"), ("DELETE", "/types/{type_id}"),
         ("POST", "/types/{type_id}/action"), ("GET", "/types/{type_id}/os-volume-type-access"),
         ("POST", "/types/{type_id}/extra_specs"), ("PUT", "/types/{type_id}/extra_specs/{key}"),
         ("DELETE", "/types/{type_id}/extra_specs/{key}"), ("PUT", "/os-quota-sets/{target_project}"),
         ("DELETE", "/os-quota-sets/{target_project}"), ("GET", "/os-services"), ("PUT", "/os-services/{action}"),
         ("GET", "/os-hosts"), ("GET", "/os-hosts/{host}"), ("GET", "/scheduler-stats/get_pools"),
         ("GET", "/capabilities/{host}"), ("GET", "/os-quota-class-sets/{quota_class}"),
         ("PUT", "/os-quota-class-sets/{quota_class}")}
LIST_QUERY = ("limit", "marker", "offset", "sort", "sort_key", "sort_dir", "all_tenants", "with_count", "name",
              "status", "metadata")


def _parse(text: str) -> Version:
    version = parse(text)
    if version is None:
        raise ValueError(text)
    return version


AXIS = Microversions("volume", MIN_VERSION, MAX_VERSION, _parse)


def _summary(route: Route) -> str:
    doc = (route.endpoint.__doc__ or "").strip().splitlines()
    if doc and doc[0]:
        return doc[0].rstrip(".")
    return route.name.strip("_").replace("_", " ").capitalize()


def _ops(routes: list[BaseRoute]) -> tuple[Op, ...]:
    out: list[Op] = [op("GET", "/", "List API versions", status=300), op("GET", "/v3/", "Show API v3 details")]
    for route in routes:
        assert isinstance(route, Route)
        tail = route.path[len(PREFIX):]
        for method in sorted((route.methods or set()) - {"HEAD"}):
            body = {"type": "object"} if method in ("POST", "PUT") else None
            query = LIST_QUERY if method == "GET" and not route.param_convertors.keys() - {"project_id"} else None
            out.append(op(method, route.path, _summary(route), body=body, query=query, since=SINCE.get(tail),
                          admin=(method, tail) in ADMIN))
    return tuple(out)


def family() -> Family:
    routes = [*volumes.routes(PREFIX), *resources.routes(PREFIX), *admin.routes(PREFIX), *transfers.routes(PREFIX),
              *messages.routes(PREFIX)]
    return Family("volume", "/volume", "Cumulo Block Storage API (Cinder v3)", CINDER_FAULT, _ops(routes),
                  microversions=AXIS)
