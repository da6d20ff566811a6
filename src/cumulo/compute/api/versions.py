"""Version discovery: GET /compute/ lists the major versions, GET /compute/v2.1 describes v2.1.

Both are public (no token), as in Nova; clients read `version`/`min_version` to negotiate.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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


async def version_v21(request: Request) -> Response:
    doc = copy.deepcopy(VERSIONS["v2.1"])
    doc["links"].insert(0, {"rel": "self", "href": _href(request, "v2.1")})
    return json_response({"version": doc})


ROUTES = [
    Route("/", versions, methods=["GET"]),
    Route("/v2.1", version_v21, methods=["GET"]),
    Route("/v2.1/", version_v21, methods=["GET"]),
]
