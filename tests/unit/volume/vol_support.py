"""Helpers of the volume API tests: Cinder fault checks and resource makers."""

from __future__ import annotations

from typing import Any

import httpx


def fault(resp: httpx.Response, status: int, name: str | None = None) -> str:
    """Assert a Cinder fault of `status` ({name: {"message", "code"}}); its message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert len(body) == 1, body
    (kind, err), = body.items()
    assert set(err) == {"message", "code"} and err["code"] == status, body
    if name is not None:
        assert kind == name, body
    message: str = err["message"]
    return message


async def make_volume(c: httpx.AsyncClient, size: int | None = 1, **body: Any) -> dict[str, Any]:
    r = await c.post("/volumes", json={"volume": {"size": size, "name": "vol", **body}})
    assert r.status_code == 202, r.text
    vol: dict[str, Any] = r.json()["volume"]
    return vol


async def show(c: httpx.AsyncClient, volume_id: str) -> dict[str, Any]:
    r = await c.get(f"/volumes/{volume_id}")
    assert r.status_code == 200, r.text
    vol: dict[str, Any] = r.json()["volume"]
    return vol


async def act(c: httpx.AsyncClient, volume_id: str, name: str, value: Any = None) -> httpx.Response:
    return await c.post(f"/volumes/{volume_id}/action", json={name: value if value is not None else {}})
