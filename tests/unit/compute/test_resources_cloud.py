"""The resource APIs inside the whole in-process cloud: real Keystone tokens and projects, and the
services and compute nodes the workers register."""

from __future__ import annotations

from typing import Any

import httpx
from resources_app import check, nova

V = {"OpenStack-API-Version": "compute 2.79"}


async def login(client: httpx.AsyncClient, cloud: Any, user: str) -> dict[str, str]:
    cred = cloud.credentials[user]
    auth = {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": cred["password"]}}},
        "scope": {"project": {"name": cred["project"], "domain": {"id": "default"}}},
    }
    r = await client.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    return {"token": r.headers["X-Subject-Token"], "project": token["project"]["id"], "user": token["user"]["id"]}


async def test_resources_with_real_tokens(cloud: Any, anon_client: httpx.AsyncClient) -> None:
    async with anon_client as c:
        admin = await login(c, cloud, "admin")
        demo = await login(c, cloud, "demo")
        as_admin = {**V, "X-Auth-Token": admin["token"]}
        as_demo = {**V, "X-Auth-Token": demo["token"]}

        # A demo member generates a keypair; it is theirs alone.
        r = await c.post("/compute/v2.1/os-keypairs", json={"keypair": {"name": "k1", "key_algorithm": "ed25519"}}, headers=as_demo)
        assert r.status_code == 201 and r.json()["keypair"]["user_id"] == demo["user"]
        assert (await c.get("/compute/v2.1/os-keypairs/k1", headers=as_admin)).status_code == 404
        assert (await c.get(f"/compute/v2.1/os-keypairs/k1?user_id={demo['user']}", headers=as_admin)).status_code == 200

        # Quotas: own project readable, another's forbidden, unknown ones invalid; admin sets them.
        assert (await c.get(f"/compute/v2.1/os-quota-sets/{demo['project']}", headers=as_demo)).status_code == 200
        assert (await c.get(f"/compute/v2.1/os-quota-sets/{admin['project']}", headers=as_demo)).status_code == 403
        assert (await c.get("/compute/v2.1/os-quota-sets/no-such-project", headers=as_admin)).status_code == 400
        r = await c.put(f"/compute/v2.1/os-quota-sets/{demo['project']}", json={"quota_set": {"instances": 5}}, headers=as_admin)
        assert r.status_code == 200 and r.json()["quota_set"]["instances"] == 5
        limits = (await c.get("/compute/v2.1/limits", headers=as_demo)).json()["limits"]["absolute"]
        assert limits["maxTotalInstances"] == 5

        # Anonymous and bad tokens get 401 in Nova's format.
        r = await c.get("/compute/v2.1/flavors")
        assert r.status_code == 401 and "unauthorized" in r.json()
        assert (await c.get("/compute/v2.1/flavors", headers={"X-Auth-Token": "bogus"})).status_code == 401


async def test_admin_views_of_registered_hosts(cloud: Any, as_ctx: Any) -> None:
    from cumulo.context import RequestContext, expand_roles

    admin = RequestContext(user_id="u", project_id="p", roles=expand_roles(["admin"]))
    async with as_ctx(admin) as c:
        services = (await c.get("/compute/v2.1/os-services", headers=V)).json()
        check(services, nova.schema("services", "2.79", admin=True))
        binaries = {(s["binary"], s["state"], s["zone"]) for s in services["services"]}
        assert ("nova-compute", "up", "nova") in binaries and ("nova-scheduler", "up", "internal") in binaries
        hyps = (await c.get("/compute/v2.1/os-hypervisors/detail", headers=V)).json()
        check(hyps, nova.schema("hypervisors_detail", "2.79", admin=True))
        local = next(h for h in hyps["hypervisors"] if h["hypervisor_hostname"] == cloud.conf.host_name)
        assert local["state"] == "up" and local["vcpus"] >= 1
        zones = (await c.get("/compute/v2.1/os-availability-zone", headers=V)).json()["availabilityZoneInfo"]
        assert {"zoneName": cloud.conf.default_availability_zone, "zoneState": {"available": True}, "hosts": None} in zones
        stats = (await c.get("/compute/v2.1/os-hypervisors/statistics", headers=V)).json()["hypervisor_statistics"]
        assert stats["count"] == len(hyps["hypervisors"])
