"""The Cinder v3 app (block-storage / volumev3), to be mounted at /volume.

Version discovery at / (300 Multiple Choices, as Cinder) and /v3/; every resource under
/v3/{project_id}/... (the project must be the caller's: Cinder's 400 "Malformed request url"
otherwise) and, as from 3.67, under /v3/... without it. Microversions from the
`OpenStack-API-Version: volume 3.x` header (`microversion`). Faults are Cinder's
`{"badRequest": {"message", "code"}}`, itemNotFound, forbidden, conflictingRequest, overLimit, ...
(`common.FAULT_NAMES`); bodies are parsed by web.http.json_body (size limit, malformed JSON,
lone surrogates: 4xx, never a 500).

Not yet mounted by the runtime nor listed in the catalog: wave 2 wires the volume worker and
mounts `make_app(service)` at /volume (catalog types block-storage and volumev3, name cinder).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.volume.api import admin, messages, openapi_ops, resources, transfers, volumes
from cumulo.volume.api.common import VolumeDeps, render_fault
from cumulo.volume.api.microversion import MAX_VERSION, MIN_VERSION, VolumeMicroversions, text
from cumulo.volume.service import VolumeService
from cumulo.web.http import Authenticator, base_url, family_app, json_response
from cumulo.web.openapi import openapi_route

UPDATED = "2023-08-31T00:00:00Z"  # Cinder 2023.2 (Bobcat), whose maximum is 3.70


def version_entry(request: Request) -> dict[str, Any]:
    return {
        "id": "v3.0",
        "status": "CURRENT",
        "version": text(MAX_VERSION),
        "min_version": text(MIN_VERSION),
        "updated": UPDATED,
        "links": [
            {"href": "https://docs.openstack.org/", "type": "text/html", "rel": "describedby"},
            {"href": f"{base_url(request)}/v3/", "rel": "self"},
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}],
    }


async def versions(request: Request) -> Response:
    """GET /: Cinder's version list (300 Multiple Choices)."""
    return json_response({"versions": [version_entry(request)]}, status=300)


async def version_v3(request: Request) -> Response:
    """GET /v3/: the one version's document."""
    return json_response({"versions": [version_entry(request)]})


ROUTES: list[BaseRoute] = [
    Route("/", versions, methods=["GET"]),
    Route("/v3", version_v3, methods=["GET"]),
    Route("/v3/", version_v3, methods=["GET"]),
    *volumes.routes("/v3/{project_id}"),
    *resources.routes("/v3/{project_id}"),
    *admin.routes("/v3/{project_id}"),
    *transfers.routes("/v3/{project_id}"),
    *messages.routes("/v3/{project_id}"),
    # 3.67: the project id in the URL is optional
    *volumes.routes("/v3"),
    *resources.routes("/v3"),
    *admin.routes("/v3"),
    *transfers.routes("/v3"),
    *messages.routes("/v3"),
]


def make_app(volume: VolumeService, *, authenticator: Authenticator | None = None) -> Any:
    """The volume family's ASGI app over `volume`; tokens are checked by `authenticator`. It serves
    its OpenAPI document at /volume/openapi.json (?microversion=3.x; no token needed)."""
    routes = [*ROUTES, openapi_route(openapi_ops.family(), openapi_ops.AXIS, public_url=volume.conf.public_url)]
    app = family_app(VolumeDeps(volume), routes, render_fault, authenticator=authenticator)
    # Cinder answers 404 to /volumes/ (an empty id, as Tempest's negative tests send), no redirect
    app.router.redirect_slashes = False

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.CumuloError)
        return render_fault(exc.code, exc.message, request)

    app.add_exception_handler(errors.CumuloError, on_domain_error)
    return VolumeMicroversions(app)
