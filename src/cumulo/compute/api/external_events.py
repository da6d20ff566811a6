"""os-server-external-events (Nova's ServerExternalEventsController): how Neutron, Cinder or
Ironic tell Nova that something happened to a server.

Callers: the "service" role (Nova's default policy) or an admin. Each event is answered on its own:
200 "completed" for a live server placed on a host, 404 for an unknown (or deleted) server, 422 for
a server with no host yet, 400 for an event that needs a tag and has none; the whole response is
207 when any event failed. Accepted events are logged: no Cumulo agent waits on one yet (the
network service of issue 10 will send and await network-vif-plugged).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo.compute.api import _common
from cumulo.compute.api.microversion import request_version
from cumulo.compute.api.schemas.admin_extras import EVENTS
from cumulo.errors import Forbidden
from cumulo.web.http import authenticate, json_body, json_response

LOG = logging.getLogger(__name__)
RULE = "os_compute_api:os-server-external-events:create"
SERVICE_ROLE = "service"

# Events Nova drops without a tag (the volume id; the power state).
_NEEDS_TAG = ("volume-extended", "power-update")


async def create_events(request: Request) -> Response:
    ctx = await authenticate(request)
    body = await json_body(request)
    EVENTS.validate(request_version(request), body)
    if SERVICE_ROLE not in ctx.roles and not ctx.is_admin:
        raise Forbidden(f"Policy doesn't allow {RULE} to be performed.")
    events: list[dict[str, Any]] = body["events"]
    uuids = sorted({e["server_uuid"] for e in events})
    hosts = await _common.compute_service(request).hosts_of(uuids)
    result = 200
    for event in events:
        uuid = event["server_uuid"]
        if uuid not in hosts:
            event.update(status="failed", code=404)
        elif event["name"] in _NEEDS_TAG and "tag" not in event:
            event.update(status="failed", code=400)
        elif hosts[uuid]:
            LOG.info("event %s:%s for server %s on %s", event["name"], event.get("tag"), uuid, hosts[uuid])
            event.update(status="completed", code=200)
            continue
        else:
            event.update(status="failed", code=422)
        result = 207
    return json_response({"events": events}, status=result)


ROUTES = [Route("/v2.1/os-server-external-events", create_events, methods=["POST"])]
