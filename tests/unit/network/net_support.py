"""Helpers of the network API tests: Neutron fault checks and resource makers (contexts and the ASGI
wrapper acting as one: tests/_asgi_ctx.py)."""

from __future__ import annotations

from typing import Any

import httpx


def fault(resp: httpx.Response, status: int, kind: str | None = None) -> str:
    """Assert a Neutron fault of `status` (and `kind`); its message."""
    assert resp.status_code == status, resp.text
    err = resp.json()["NeutronError"]
    assert set(err) == {"type", "message", "detail"}, err
    if kind is not None:
        assert err["type"] == kind, err
    message: str = err["message"]
    return message


async def make_net(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/v2.0/networks", json={"network": {"name": "net", **body}})
    assert r.status_code == 201, r.text
    net: dict[str, Any] = r.json()["network"]
    return net


async def make_subnet(c: httpx.AsyncClient, network_id: str, cidr: str = "10.0.0.0/24", **body: Any) -> dict[str, Any]:
    ip_version = 6 if ":" in cidr else 4
    r = await c.post("/v2.0/subnets", json={"subnet": {"network_id": network_id, "cidr": cidr,
                                                        "ip_version": ip_version, **body}})
    assert r.status_code == 201, r.text
    sub: dict[str, Any] = r.json()["subnet"]
    return sub


async def make_port(c: httpx.AsyncClient, network_id: str, **body: Any) -> dict[str, Any]:
    r = await c.post("/v2.0/ports", json={"port": {"network_id": network_id, **body}})
    assert r.status_code == 201, r.text
    port: dict[str, Any] = r.json()["port"]
    return port
