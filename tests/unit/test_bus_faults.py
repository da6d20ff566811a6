"""BusUnavailable (the broker away) is a 503 in each API family's own fault format: the families'
renderers under web.http.family_app, as their apps use them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from cumulo.bus.base import BusUnavailable
from cumulo.compute.api.app import render_fault as nova
from cumulo.identity.api.app import render_fault as keystone
from cumulo.image.api import render_fault as glance
from cumulo.network.api import render_fault as neutron
from cumulo.occi.faults import render_fault as occi
from cumulo.paas.faults import render_fault as paas
from cumulo.volume.api.common import render_fault as cinder
from cumulo.web.http import family_app

MESSAGE = "message broker unreachable: conductor not sent within 5 s"

FAMILIES: dict[str, tuple[Any, Any]] = {
    "nova": (nova, {"serviceUnavailable": {"code": 503, "message": MESSAGE}}),
    "cinder": (cinder, {"serviceUnavailable": {"code": 503, "message": MESSAGE}}),
    "keystone": (keystone, {"error": {"code": 503, "title": "Service Unavailable", "message": MESSAGE}}),
    "glance": (glance, {"code": "503 Service Unavailable", "title": "Service Unavailable", "message": MESSAGE}),
    "neutron": (neutron, {"NeutronError": {"type": "HTTPServiceUnavailable", "message": MESSAGE, "detail": ""}}),
    "paas": (paas, {"code": 503, "message": MESSAGE}),
    "occi": (occi, MESSAGE + "\n"),
}


async def broker_away(request: Request) -> Any:
    raise BusUnavailable(MESSAGE)


@pytest.mark.parametrize("family", sorted(FAMILIES))
async def test_the_broker_away_is_a_503_in_the_family_format(family: str) -> None:
    renderer, expected = FAMILIES[family]
    app = family_app(None, [Route("/x", broker_away, methods=["POST"])], renderer)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cumulo.test") as client:
        resp = await client.post("/x")
    assert resp.status_code == 503
    assert (resp.text if isinstance(expected, str) else resp.json()) == expected
