"""What the volume API's handlers share: the service, the caller, the version, the project in the
path, query parameters, bodies and Cinder's fault body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.volume.api.microversion import Version, request_version
from cumulo.volume.query import Page
from cumulo.volume.service import VolumeService
from cumulo.web.http import authenticate, base_url, deps_of, json_body, json_response

# Cinder's fault names (cinder/api/openstack/wsgi.py Fault._fault_names); others are computeFault.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def render_fault(status: int, message: str, request: Request) -> Response:
    return json_response({FAULT_NAMES.get(status, "computeFault"): {"message": message, "code": status}}, status=status)


@dataclass(frozen=True)
class VolumeDeps:
    volume: VolumeService


@dataclass
class Call:
    """One request's caller, service and version."""

    svc: VolumeService
    ctx: RequestContext
    version: Version
    base: str  # .../v3 as the client reached it
    request: Request

    def at_least(self, minor: int) -> bool:
        return self.version >= (3, minor)

    def params(self) -> dict[str, str]:
        """Query parameters (the last of repeated ones); a NUL anywhere is a 400."""
        out: dict[str, str] = {}
        for k, v in self.request.query_params.multi_items():
            if "\x00" in k or "\x00" in v:
                raise errors.Invalid("Invalid input received: a NUL character is not allowed in the query")
            out[k] = v
        return out

    def path(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value


async def begin(request: Request) -> Call:
    """Authenticate, then check the project in the path is the caller's (Cinder's 400 otherwise)."""
    ctx = await authenticate(request)
    project = request.path_params.get("project_id")
    if project is not None and project != ctx.project_id:
        raise errors.Invalid(
            f"Malformed request url: URL's project_id '{project[:64]}' doesn't match Context's project_id '{ctx.project_id}'")
    deps = deps_of(request, VolumeDeps)
    return Call(deps.volume, ctx, request_version(request), f"{base_url(request)}/v3", request)


async def body_of(request: Request) -> Any:
    return await json_body(request)


def action_body(body: Any) -> tuple[str, Any]:
    """The one action of a POST .../action body ({"os-extend": {...}} -> ("os-extend", {...}))."""
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("Invalid input received: an action body holds exactly one action.")
    name, value = next(iter(body.items()))
    return str(name), value


def obj(value: Any, action: str, *, nullable: bool = True) -> dict[str, Any]:
    if value is None and nullable:
        return {}
    if not isinstance(value, dict):
        raise errors.Invalid(f"Invalid input received: the body of {action[:64]} must be an object.")
    return value


def page_links(call: Call, items: list[dict[str, Any]], more: bool) -> list[dict[str, str]]:
    """Cinder's `<collection>_links`: a next link when the page is full and more remain."""
    if not more or not items:
        return []
    params = {k: v for k, v in call.params().items() if k != "marker"}
    params["marker"] = items[-1]["id"]
    # the URL the client used (with or without the project id), with the next marker
    return [{"href": str(call.request.url.replace(query=urlencode(params))), "rel": "next"}]


def listing(call: Call, key: str, page: Page, render: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A list's body: `{key: [render(row), ...]}`, with `<key>_links` when a next page exists."""
    body: dict[str, Any] = {key: [render(r) for r in page.items]}
    nxt = page_links(call, page.items, page.more)
    if nxt:
        body[f"{key}_links"] = nxt
    return body


def metadata_of(body: Any) -> Any:
    """The `metadata` of a {"metadata": {...}} body (POST/PUT .../metadata)."""
    if not isinstance(body, dict) or "metadata" not in body:
        raise errors.Invalid("Malformed request body: expected {\"metadata\": {...}}.")
    return body["metadata"]


def meta_item_of(body: Any, key: str) -> dict[str, Any]:
    """The `meta` of a {"meta": {key: value}} body (PUT .../metadata/{key}): that one key."""
    if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
        raise errors.Invalid("Malformed request body: expected {\"meta\": {key: value}}.")
    meta: dict[str, Any] = body["meta"]
    if len(meta) > 1:
        raise errors.Invalid("Request body contains too many items")
    if key not in meta:
        raise errors.Invalid("Request body and URI mismatch")
    return meta
