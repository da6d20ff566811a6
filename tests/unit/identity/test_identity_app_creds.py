"""Application credentials (Keystone's /v3/users/{user_id}/application_credentials and the
"application_credential" auth method), through the real /identity app with real tokens."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from cumulo.db import utcnow
from cumulo.identity.models import application_credentials

IDN = "/identity/v3"


async def _ids(env: Any) -> tuple[str, str, dict[str, str]]:
    d = env.svc.directory
    demo = (await d.list_users({"name": "demo"}))[0]["id"]
    project = (await d.list_projects({"name": "demo"}))[0]["id"]
    roles = {r["name"]: r["id"] for r in await d.list_roles()}
    return demo, project, roles


async def _create(env: Any, token: str, user_id: str, **fields: Any) -> Any:
    return await env.client.post(
        f"{IDN}/users/{user_id}/application_credentials",
        json={"application_credential": {"name": "ci", **fields}},
        headers={"X-Auth-Token": token},
    )


async def _auth(env: Any, spec: dict[str, Any], **extra: Any) -> Any:
    auth = {"identity": {"methods": ["application_credential"], "application_credential": spec}, **extra}
    return await env.client.post(f"{IDN}/auth/tokens", json={"auth": auth})


async def _works(env: Any, token: str) -> bool:
    resp = await env.client.get(f"{IDN}/auth/projects", headers={"X-Auth-Token": token})
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


async def test_create_show_list_delete_and_authenticate(env: Any) -> None:
    demo, project, roles = await _ids(env)
    token, _ = await env.login("demo")
    resp = await _create(env, token, demo, description="for CI")
    assert resp.status_code == 201, resp.text
    cred = resp.json()["application_credential"]
    secret = cred["secret"]
    assert len(secret) >= 64
    assert cred["project_id"] == project and cred["user_id"] == demo
    assert cred["unrestricted"] is False and cred["expires_at"] is None and cred["system"] is None
    # The creator's effective roles: member and the reader it implies.
    assert sorted(r["name"] for r in cred["roles"]) == ["member", "reader"]
    assert cred["links"]["self"].endswith(f"/v3/users/{demo}/application_credentials/{cred['id']}")
    # Stored as an argon2id hash only; the secret is never shown again.
    async with env.db.read() as conn:
        stored = (await conn.execute(sa.select(application_credentials))).one()
    assert stored.secret_hash.startswith("$argon2id$") and secret not in stored.secret_hash
    h = {"X-Auth-Token": token}
    shown = (await env.client.get(f"{IDN}/users/{demo}/application_credentials/{cred['id']}", headers=h)).json()
    assert "secret" not in shown["application_credential"]
    assert shown["application_credential"]["name"] == "ci"

    # By id and by name + user: a token scoped to the credential's project with its roles.
    for spec in ({"id": cred["id"]}, {"name": "ci", "user": {"name": "demo", "domain": {"id": "default"}}}):
        resp = await _auth(env, {**spec, "secret": secret})
        assert resp.status_code == 201, resp.text
        body = resp.json()["token"]
        assert body["methods"] == ["application_credential"]
        assert body["project"]["id"] == project
        assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]
        assert body["application_credential"] == {"id": cred["id"], "name": "ci", "restricted": True}
    assert (await _auth(env, {"id": cred["id"], "secret": secret + "x"})).status_code == 401
    assert (await _auth(env, {"id": "nope", "secret": secret})).status_code == 401
    # The credential fixes the scope.
    scope = {"scope": {"project": {"id": project}}}
    assert (await _auth(env, {"id": cred["id"], "secret": secret}, **scope)).status_code == 401

    listed = (await env.client.get(f"{IDN}/users/{demo}/application_credentials", headers=h)).json()
    assert [c["id"] for c in listed["application_credentials"]] == [cred["id"]]
    by_name = await env.client.get(f"{IDN}/users/{demo}/application_credentials?name=other", headers=h)
    assert by_name.json()["application_credentials"] == []

    app_token = (await _auth(env, {"id": cred["id"], "secret": secret})).headers["x-subject-token"]
    assert await _works(env, app_token)
    url = f"{IDN}/users/{demo}/application_credentials/{cred['id']}"
    assert (await env.client.delete(url, headers=h)).status_code == 204
    # Deleting the credential kills the tokens made with it, and it cannot log in again.
    assert not await _works(env, app_token)
    assert (await _auth(env, {"id": cred["id"], "secret": secret})).status_code == 401
    assert (await env.client.get(url, headers=h)).status_code == 404
    assert (await env.client.delete(url, headers=h)).status_code == 404


async def test_roles_are_a_subset_of_the_creators(env: Any) -> None:
    demo, _, roles = await _ids(env)
    token, _ = await env.login("demo")
    resp = await _create(env, token, demo, roles=[{"name": "reader"}], secret="my-own-secret")
    assert resp.status_code == 201, resp.text
    cred = resp.json()["application_credential"]
    assert cred["secret"] == "my-own-secret"
    assert [r["name"] for r in cred["roles"]] == ["reader"]
    body = (await _auth(env, {"id": cred["id"], "secret": "my-own-secret"})).json()["token"]
    assert [r["name"] for r in body["roles"]] == ["reader"]
    # admin is not demo's role: 400 in Keystone's fault format, naming it.
    resp = await _create(env, token, demo, name="up", roles=[{"id": roles["admin"]}])
    assert resp.status_code == 400 and "unassigned role" in resp.json()["error"]["message"]
    resp = await _create(env, token, demo, name="x", roles=[{"name": "no-such-role"}])
    assert resp.status_code == 400
    # Same name for the same user: 409.
    assert (await _create(env, token, demo, roles=[{"name": "reader"}])).status_code == 409


async def test_policy_own_credentials_admin_may_see(env: Any) -> None:
    demo, _, _ = await _ids(env)
    admin_token, admin_body = await env.login("admin")
    admin_id = admin_body["token"]["user"]["id"]
    token, _ = await env.login("demo")
    cred = (await _create(env, token, demo)).json()["application_credential"]
    # Nobody creates one for someone else, not even an admin.
    assert (await _create(env, admin_token, demo)).status_code == 403
    # demo cannot see or delete the admin's, nor list them.
    mine = (await _create(env, admin_token, admin_id)).json()["application_credential"]
    dh = {"X-Auth-Token": token}
    assert (await env.client.get(f"{IDN}/users/{admin_id}/application_credentials", headers=dh)).status_code == 403
    other = f"{IDN}/users/{admin_id}/application_credentials/{mine['id']}"
    assert (await env.client.get(other, headers=dh)).status_code == 403
    assert (await env.client.delete(other, headers=dh)).status_code == 403
    # Under the wrong user's path the credential does not exist.
    assert (await env.client.get(f"{IDN}/users/{demo}/application_credentials/{mine['id']}", headers=dh)).status_code == 404
    # The admin may list and show demo's.
    ah = {"X-Auth-Token": admin_token}
    listed = await env.client.get(f"{IDN}/users/{demo}/application_credentials", headers=ah)
    assert [c["id"] for c in listed.json()["application_credentials"]] == [cred["id"]]
    assert (await env.client.get(f"{IDN}/users/nobody/application_credentials", headers=ah)).status_code == 404
    # Unscoped tokens cannot create one (no project to delegate).
    unscoped, _ = await env.login("demo", project=None)
    assert (await _create(env, unscoped, demo, name="u")).status_code == 400


async def test_restricted_credential_cannot_make_more(env: Any) -> None:
    demo, _, _ = await _ids(env)
    token, _ = await env.login("demo")
    restricted = (await _create(env, token, demo)).json()["application_credential"]
    free = (await _create(env, token, demo, name="free", unrestricted=True)).json()["application_credential"]
    r_tok = (await _auth(env, {"id": restricted["id"], "secret": restricted["secret"]})).headers["x-subject-token"]
    f_tok = (await _auth(env, {"id": free["id"], "secret": free["secret"]})).headers["x-subject-token"]
    assert (await _create(env, r_tok, demo, name="more")).status_code == 403
    assert (await _create(env, f_tok, demo, name="more")).status_code == 201
    url = f"{IDN}/users/{demo}/application_credentials/{free['id']}"
    assert (await env.client.delete(url, headers={"X-Auth-Token": r_tok})).status_code == 403
    # A token from an app-credential token cannot pick another scope.
    auth = {"identity": {"methods": ["token"], "token": {"id": r_tok}}, "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}
    assert (await env.client.post(f"{IDN}/auth/tokens", json={"auth": auth})).status_code == 403
    del auth["scope"]
    resp = await env.client.post(f"{IDN}/auth/tokens", json={"auth": auth})
    assert resp.status_code == 201 and resp.json()["token"]["application_credential"]["id"] == restricted["id"]


async def test_expiry(env: Any) -> None:
    demo, _, _ = await _ids(env)
    token, _ = await env.login("demo")
    when = (utcnow() + dt.timedelta(hours=1)).replace(microsecond=123456)
    resp = await _create(env, token, demo, expires_at=when.isoformat())
    cred = resp.json()["application_credential"]
    # Naive UTC, as sent (Tempest compares the strings).
    assert cred["expires_at"] == when.isoformat()
    body = (await _auth(env, {"id": cred["id"], "secret": cred["secret"]})).json()["token"]
    # The token does not outlive its credential.
    assert body["expires_at"] <= when.isoformat() + "Z"
    zulu = await _create(env, token, demo, name="z", expires_at="2999-01-02T03:04:05Z")
    assert zulu.json()["application_credential"]["expires_at"] == "2999-01-02T03:04:05"
    assert (await _create(env, token, demo, name="past", expires_at="2001-01-01T00:00:00")).status_code == 400
    assert (await _create(env, token, demo, name="bad", expires_at="tomorrow")).status_code == 400
    app_token = (await _auth(env, {"id": cred["id"], "secret": cred["secret"]})).headers["x-subject-token"]
    # Expire it in the database: neither new logins nor its tokens work any more.
    async with env.db.write() as conn:
        await conn.execute(
            application_credentials.update()
            .where(application_credentials.c.id == cred["id"])
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    env.svc.cache.invalidate()
    assert (await _auth(env, {"id": cred["id"], "secret": cred["secret"]})).status_code == 401
    assert not await _works(env, app_token)


async def test_role_loss_kills_the_credential_and_its_tokens_for_good(env: Any) -> None:
    demo, project, roles = await _ids(env)
    admin, _ = await env.login("admin")
    token, _ = await env.login("demo")
    cred = (await _create(env, token, demo)).json()["application_credential"]
    app_token = (await _auth(env, {"id": cred["id"], "secret": cred["secret"]})).headers["x-subject-token"]
    assert await _works(env, app_token)
    grant = f"{IDN}/projects/{project}/users/{demo}/roles/{roles['member']}"
    assert (await env.client.delete(grant, headers={"X-Auth-Token": admin})).status_code == 204
    assert not await _works(env, app_token)
    assert (await env.client.put(grant, headers={"X-Auth-Token": admin})).status_code == 204
    # The role is back; the credential (Keystone deletes it) and its token are not.
    assert not await _works(env, app_token)
    assert (await _auth(env, {"id": cred["id"], "secret": cred["secret"]})).status_code == 401


async def test_deleted_user_takes_its_credentials(env: Any) -> None:
    admin, _ = await env.login("admin")
    _, project, roles = await _ids(env)
    ah = {"X-Auth-Token": admin}
    resp = await env.client.post(f"{IDN}/users", json={"user": {"name": "bot", "password": "bot-pass"}}, headers=ah)
    bot = resp.json()["user"]["id"]
    await env.client.put(f"{IDN}/projects/{project}/users/{bot}/roles/{roles['reader']}", headers=ah)
    token, _ = await env.login("bot", "bot-pass", "demo")
    cred = (await _create(env, token, bot)).json()["application_credential"]
    assert [r["name"] for r in cred["roles"]] == ["reader"]
    assert (await env.client.delete(f"{IDN}/users/{bot}", headers=ah)).status_code == 204
    assert (await _auth(env, {"id": cred["id"], "secret": cred["secret"]})).status_code == 401
    async with env.db.read() as conn:
        assert (await conn.execute(sa.select(application_credentials))).first() is None


async def test_bad_input(env: Any) -> None:
    demo, _, _ = await _ids(env)
    token, _ = await env.login("demo")
    for body in (
        {"application_credential": {}},
        {"application_credential": {"name": ""}},
        {"application_credential": {"name": "a", "roles": [{"id": "x", "name": "y"}]}},
        {"application_credential": {"name": "a", "access_rules": [{"path": "/", "method": "GET", "service": "compute"}]}},
        {"application_credential": {"name": "a", "colour": "red"}},
        {"application_credential": {"name": "a", "unrestricted": "yes"}},
        [1],
    ):
        resp = await env.client.post(
            f"{IDN}/users/{demo}/application_credentials", json=body, headers={"X-Auth-Token": token}
        )
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error"]["code"] == 400
    # The secret never appears in a validation message.
    resp = await env.client.post(
        f"{IDN}/users/{demo}/application_credentials",
        json={"application_credential": {"name": "a", "secret": ["hunter2-secret"]}},
        headers={"X-Auth-Token": token},
    )
    assert resp.status_code == 400 and "hunter2" not in resp.text
    for spec in ({"secret": "s"}, {"id": "x"}, {"name": "n", "secret": "s"}, {"id": "x", "secret": 5}):
        assert (await _auth(env, spec)).status_code == 400, spec
    both = {"identity": {"methods": ["application_credential", "password"], "application_credential": {"id": "x", "secret": "s"},
                         "password": {"user": {"id": demo, "password": "p"}}}}
    assert (await env.client.post(f"{IDN}/auth/tokens", json={"auth": both})).status_code == 401
