"""Identity inside the whole in-process cloud: Keystone tokens authenticate the other API families,
and a revoked token stops working there at once."""

from __future__ import annotations

from typing import Any

import httpx


async def test_keystone_token_works_across_the_cloud(cloud: Any, anon_client: httpx.AsyncClient) -> None:
    creds = cloud.credentials["demo"]
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {"name": "demo", "domain": {"name": "Default"}, "password": creds["password"]}
            },
        },
        "scope": {"project": {"name": creds["project"], "domain": {"name": "Default"}}},
    }
    resp = await anon_client.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert resp.status_code == 201, resp.text
    token = resp.headers["x-subject-token"]
    urls = {s["type"]: s["endpoints"][0]["url"] for s in resp.json()["token"]["catalog"]}
    assert urls["identity"] == "http://cumulo.test/identity"
    h = {"X-Auth-Token": token}
    assert (await anon_client.get("/compute/v2.1/flavors", headers=h)).status_code == 200
    assert (await anon_client.get("/image/v2/images", headers=h)).status_code == 200
    assert (await anon_client.get("/compute/v2.1/flavors")).status_code == 401
    revoke = await anon_client.delete("/identity/v3/auth/tokens", headers=h | {"X-Subject-Token": token})
    assert revoke.status_code == 204
    assert (await anon_client.get("/compute/v2.1/flavors", headers=h)).status_code == 401
    assert (await anon_client.get("/image/v2/images", headers=h)).status_code == 401
