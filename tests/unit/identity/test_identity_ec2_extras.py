"""OS-EC2 credentials (/v3/users/{user_id}/credentials/OS-EC2) and the extra attributes Keystone
keeps on users and projects, through the real /identity app with real tokens."""

from __future__ import annotations

import os
import stat
from typing import Any

import sqlalchemy as sa

from cumulo.identity.models import ec2_credentials

IDN = "/identity/v3"


async def _ids(env: Any) -> tuple[str, str, str]:
    d = env.svc.directory
    demo = (await d.list_users({"name": "demo"}))[0]["id"]
    admin = (await d.list_users({"name": "admin"}))[0]["id"]
    project = (await d.list_projects({"name": "demo"}))[0]["id"]
    return demo, admin, project


async def test_ec2_create_list_show_delete(env: Any) -> None:
    demo, _, project = await _ids(env)
    token, _ = await env.login("demo")
    h = {"X-Auth-Token": token}
    base = f"{IDN}/users/{demo}/credentials/OS-EC2"
    resp = await env.client.post(base, json={"tenant_id": project}, headers=h)
    assert resp.status_code == 201, resp.text
    cred = resp.json()["credential"]
    assert cred["user_id"] == demo and cred["tenant_id"] == project and cred["trust_id"] is None
    assert len(cred["access"]) == 32 and len(cred["secret"]) == 32
    assert cred["links"]["self"].endswith(f"/v3/users/{demo}/credentials/OS-EC2/{cred['access']}")
    second = (await env.client.post(base, json={"tenant_id": project}, headers=h)).json()["credential"]
    listed = (await env.client.get(base, headers=h)).json()["credentials"]
    assert {c["access"] for c in listed} == {cred["access"], second["access"]}
    shown = (await env.client.get(f"{base}/{cred['access']}", headers=h)).json()["credential"]
    assert shown == cred
    # Encrypted at rest with a private key file; the plain secret is nowhere in the database.
    async with env.db.read() as conn:
        rows = (await conn.execute(sa.select(ec2_credentials))).all()
    assert all(cred["secret"] not in r.secret_encrypted and second["secret"] not in r.secret_encrypted for r in rows)
    key = env.svc.ec2.key_path
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert (await env.client.delete(f"{base}/{cred['access']}", headers=h)).status_code == 204
    assert (await env.client.get(f"{base}/{cred['access']}", headers=h)).status_code == 404
    assert (await env.client.delete(f"{base}/{cred['access']}", headers=h)).status_code == 404
    assert [c["access"] for c in (await env.client.get(base, headers=h)).json()["credentials"]] == [second["access"]]


async def test_ec2_policy_and_bad_input(env: Any) -> None:
    demo, admin_id, project = await _ids(env)
    token, _ = await env.login("demo")
    admin_token, _ = await env.login("admin")
    dh, ah = {"X-Auth-Token": token}, {"X-Auth-Token": admin_token}
    admin_project = (await env.svc.directory.list_projects({"name": "admin"}))[0]["id"]
    mine = f"{IDN}/users/{admin_id}/credentials/OS-EC2"
    theirs = (await env.client.post(mine, json={"tenant_id": admin_project}, headers=ah)).json()["credential"]
    # demo cannot touch the admin's.
    assert (await env.client.get(mine, headers=dh)).status_code == 403
    assert (await env.client.post(mine, json={"tenant_id": admin_project}, headers=dh)).status_code == 403
    assert (await env.client.get(f"{mine}/{theirs['access']}", headers=dh)).status_code == 403
    assert (await env.client.delete(f"{mine}/{theirs['access']}", headers=dh)).status_code == 403
    # Under demo's own path the admin's access key does not exist.
    base = f"{IDN}/users/{demo}/credentials/OS-EC2"
    assert (await env.client.get(f"{base}/{theirs['access']}", headers=dh)).status_code == 404
    # A project the user holds no role on, an unknown project, a bad body.
    assert (await env.client.post(base, json={"tenant_id": admin_project}, headers=dh)).status_code == 403
    assert (await env.client.post(base, json={"tenant_id": "missing"}, headers=dh)).status_code == 404
    for body in ({}, {"tenant_id": 5}, {"tenant_id": project, "x": 1}, [project]):
        resp = await env.client.post(base, json=body, headers=dh)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == 400, (body, resp.text)
    # The admin may manage demo's.
    made = await env.client.post(base, json={"tenant_id": project}, headers=ah)
    assert made.status_code == 201
    assert (await env.client.get(base, headers=ah)).json()["credentials"][0]["access"] == made.json()["credential"]["access"]
    assert (await env.client.get(f"{IDN}/users/nobody/credentials/OS-EC2", headers=ah)).status_code == 404


async def test_ec2_from_application_credential_tokens(env: Any) -> None:
    demo, _, project = await _ids(env)
    token, _ = await env.login("demo")
    apps = f"{IDN}/users/{demo}/application_credentials"
    restricted = (
        await env.client.post(apps, json={"application_credential": {"name": "r"}}, headers={"X-Auth-Token": token})
    ).json()["application_credential"]
    auth = {"identity": {"methods": ["application_credential"],
                         "application_credential": {"id": restricted["id"], "secret": restricted["secret"]}}}
    r_tok = (await env.client.post(f"{IDN}/auth/tokens", json={"auth": {**auth}})).headers["x-subject-token"]
    base = f"{IDN}/users/{demo}/credentials/OS-EC2"
    assert (await env.client.post(base, json={"tenant_id": project}, headers={"X-Auth-Token": r_tok})).status_code == 403


async def test_ec2_credentials_go_with_user(env: Any) -> None:
    _, _, project = await _ids(env)
    admin, _ = await env.login("admin")
    ah = {"X-Auth-Token": admin}
    bot = (await env.client.post(f"{IDN}/users", json={"user": {"name": "bot", "password": "pw"}}, headers=ah)).json()["user"]["id"]
    roles = {r["name"]: r["id"] for r in await env.svc.directory.list_roles()}
    await env.client.put(f"{IDN}/projects/{project}/users/{bot}/roles/{roles['reader']}", headers=ah)
    made = await env.client.post(f"{IDN}/users/{bot}/credentials/OS-EC2", json={"tenant_id": project}, headers=ah)
    assert made.status_code == 201
    assert (await env.client.delete(f"{IDN}/users/{bot}", headers=ah)).status_code == 204
    async with env.db.read() as conn:
        assert (await conn.execute(sa.select(ec2_credentials))).first() is None


async def test_extra_attributes_round_trip(env: Any) -> None:
    admin, _ = await env.login("admin")
    _, _, project = await _ids(env)
    ah = {"X-Auth-Token": admin}
    # What Tempest's compute quota tests send: a user with a project_id attribute.
    resp = await env.client.post(
        f"{IDN}/users",
        json={"user": {"name": "q", "password": "pw", "project_id": project, "nested": {"a": [1, 2]}}},
        headers=ah,
    )
    assert resp.status_code == 201, resp.text
    user = resp.json()["user"]
    assert user["project_id"] == project and user["nested"] == {"a": [1, 2]}
    assert "password" not in user
    url = f"{IDN}/users/{user['id']}"
    assert (await env.client.get(url, headers=ah)).json()["user"]["project_id"] == project
    # PATCH sets the named extras (null included) and keeps the others; known fields still validated.
    resp = await env.client.patch(url, json={"user": {"nested": None, "team": "blue"}}, headers=ah)
    got = resp.json()["user"]
    assert got["project_id"] == project and got["nested"] is None and got["team"] == "blue"
    listed = (await env.client.get(f"{IDN}/users?name=q", headers=ah)).json()["users"][0]
    assert listed["team"] == "blue"
    assert (await env.client.patch(url, json={"user": {"enabled": "no", "x": 1}}, headers=ah)).status_code == 400
    # The cap holds across updates too.
    many = {f"k{i}": i for i in range(31)}
    assert (await env.client.patch(url, json={"user": many}, headers=ah)).status_code == 400

    resp = await env.client.post(f"{IDN}/projects", json={"project": {"name": "px", "cost_centre": 42}}, headers=ah)
    assert resp.status_code == 201, resp.text
    proj = resp.json()["project"]
    assert proj["cost_centre"] == 42 and proj["is_domain"] is False
    purl = f"{IDN}/projects/{proj['id']}"
    resp = await env.client.patch(purl, json={"project": {"owner": "ops"}}, headers=ah)
    assert resp.json()["project"] | {} == {**resp.json()["project"], "cost_centre": 42, "owner": "ops"}
    assert (await env.client.get(purl, headers=ah)).json()["project"]["owner"] == "ops"
    for fixed in ({"parent_id": "x"}, {"domain_id": "default"}):
        assert (await env.client.patch(purl, json={"project": fixed}, headers=ah)).status_code == 400
    assert (await env.client.patch(url, json={"user": {"domain_id": "x"}}, headers=ah)).status_code == 400
