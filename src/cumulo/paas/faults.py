"""The PaaS family's faults: Pegasus's error body `{"message": "...", "code": <http status>}`
(rest/exception/ErrorResponseConverter.java; Pegasus appended `#<txId>` to the message, Cumulo
answers the request id in the x-openstack-request-id header instead).

Every domain error keeps its own status (cumulo.errors: Invalid 400, Forbidden 403, NotFound 404,
Conflict 409, PayloadTooLarge 413 ...); the two below are the family's own."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cumulo import errors
from cumulo.web.http import json_response


class EngineUnavailable(errors.CumuloError):
    """No PaaS engine is attached to this API process (it answers the catalogue, not the rest)."""

    code = 503


def render_fault(status: int, message: str, request: Request) -> Response:
    """family_app's fault renderer: Pegasus's {"message", "code"}."""
    return json_response({"message": message, "code": status}, status=status)
