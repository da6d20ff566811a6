"""Version discovery: GET /compute/ lists the major versions, GET /compute/v2.1 describes v2.1.

Both are public (no token), as in Nova; clients read `version`/`min_version` to negotiate.
The advertised legacy v2.0 endpoint is served too, as Nova serves it: /compute/v2/ describes it,
and /compute/v2/[{project_id}/]... is the v2.1 API pinned at microversion 2.1 (LegacyV2).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.compute.api import _common
from cumulo.compute.api.microversion import MAX_VERSION, MIN_VERSION
from cumulo.web.http import json_response

_DESCRIBED_BY = {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}

VERSIONS: dict[str, dict[str, Any]] = {
    "v2.0": {
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [_DESCRIBED_BY],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"}],
    },
    "v2.1": {
        "id": "v2.1",
        "status": "CURRENT",
        "version": str(MAX_VERSION),
        "min_version": str(MIN_VERSION),
        "updated": "2013-07-23T11:33:21Z",
        "links": [_DESCRIBED_BY],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    },
}


def _href(request: Request, version_id: str) -> str:
    return f"{_common.root(request)}/{'v2.1' if version_id.startswith('v2.1') else 'v2'}/"


async def versions(request: Request) -> Response:
    out = [
        {
            "id": ver["id"],
            "status": ver["status"],
            "version": ver["version"],
            "min_version": ver["min_version"],
            "updated": ver["updated"],
            "links": [{"rel": "self", "href": _href(request, ver["id"])}],
        }
        for _, ver in sorted(VERSIONS.items())
    ]
    return json_response({"versions": out})


def _version_doc(version_id: str) -> Any:
    async def show(request: Request) -> Response:
        doc = copy.deepcopy(VERSIONS[version_id])
        doc["links"].insert(0, {"rel": "self", "href": _href(request, version_id)})
        return json_response({"version": doc})

    return show


version_v21 = _version_doc("v2.1")
version_v20 = _version_doc("v2.0")

ROUTES = [
    Route("/", versions, methods=["GET"]),
    Route("/v2.1", version_v21, methods=["GET"]),
    Route("/v2.1/", version_v21, methods=["GET"]),
    Route("/v2", version_v20, methods=["GET"]),
    Route("/v2/", version_v20, methods=["GET"]),
]

_PROJECT_SEGMENT = re.compile(r"^[0-9a-fA-F]{32}$|^[0-9a-fA-F-]{36}$")
_VERSION_HEADERS = (b"openstack-api-version", b"x-openstack-nova-api-version")


class LegacyV2:
    """Serves /v2/[{project_id}/]<rest> as /v2.1/<rest> at microversion 2.1, as Nova's legacy v2
    endpoint does: request version headers are ignored and none are sent back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        root = scope.get("root_path", "")
        rest = path[len(root):] if root and path.startswith(root) else path
        if not rest.startswith("/v2/") or rest == "/v2/":
            await self.app(scope, receive, send)
            return
        parts = rest[len("/v2/"):].split("/", 1)
        if _PROJECT_SEGMENT.match(parts[0]):
            parts = parts[1:]
        new_rest = "/v2.1/" + "/".join(parts)
        scope = dict(scope)
        scope["path"] = path[: len(path) - len(rest)] + new_rest
        scope["raw_path"] = scope["path"].encode()
        scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in _VERSION_HEADERS]

        async def send_without_versions(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                      if k.lower() not in (*_VERSION_HEADERS, b"vary")]
            await send(message)

        await self.app(scope, receive, send_without_versions)
