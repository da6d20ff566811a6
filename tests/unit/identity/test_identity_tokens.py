"""Keystone v3 version discovery and tokens: issue, scope, validate, revoke, expire."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import pytest
import sqlalchemy as sa

from cumulo import errors
from cumulo.identity.models import tokens, users

ISO_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_version_documents(env: Any) -> None:
    root = await env.client.get("/identity/")
    assert root.status_code == 300
    (entry,) = root.json()["versions"]["values"]
    assert entry["id"] == "v3.14" and entry["status"] == "stable"
    assert entry["links"] == [{"rel": "self", "href": "http://cumulo.test/identity/v3/"}]
    assert entry["media-types"] == [
        {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
    ]
    assert set(entry) == {"id", "status", "updated", "links", "media-types"}
    bare = await env.client.get("/identity")
    assert bare.status_code == 300
    for path in ("/identity/v3", "/identity/v3/"):
        resp = await env.client.get(path)
        assert resp.status_code == 200
        assert resp.json() == {"version": entry}


async def test_unknown_route_is_keystone_404(env: Any) -> None:
    resp = await env.client.get("/identity/v3/nonsense")
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {"code": 404, "title": "Not Found", "message": "The resource could not be found."}
    }


async def test_issue_by_names_with_catalog(env: Any) -> None:
    token, body = await env.login("admin")
    t = body["token"]
    assert token and t["methods"] == ["password"]
    assert t["user"]["name"] == "admin" and t["user"]["domain"] == {"id": "default", "name": "Default"}
    assert t["project"]["name"] == "admin" and t["project"]["domain"]["id"] == "default"
    assert t["is_domain"] is False
    assert sorted(r["name"] for r in t["roles"]) == ["admin", "member", "reader"]  # implied roles included
    assert ISO_MICRO.match(t["expires_at"]) and ISO_MICRO.match(t["issued_at"])
    assert len(t["audit_ids"]) == 1 and len(t["audit_ids"][0]) == 22
    by_type = {s["type"]: s for s in t["catalog"]}
    assert set(by_type) == {"identity", "compute", "image", "network", "block-storage", "volumev3", "occi", "paas"}
    # Cinder's URL template gets the token's project, as Keystone does
    assert by_type["volumev3"]["endpoints"][0]["url"] == f"http://cumulo.test/volume/v3/{t['project']['id']}"
    ident = by_type["identity"]
    assert {e["interface"] for e in ident["endpoints"]} == {"public", "internal", "admin"}
    assert all(e["url"] == "http://cumulo.test/identity" for e in ident["endpoints"])
    assert all(e["region"] == e["region_id"] == "RegionOne" for e in ident["endpoints"])
    assert by_type["compute"]["endpoints"][0]["url"] == "http://cumulo.test/compute/v2.1"
    # Ids are stable across tokens.
    _, again = await env.login("admin")
    assert again["token"]["catalog"] == t["catalog"]


async def test_catalog_follows_the_host_the_client_reached(env: Any) -> None:
    env.client.base_url = "http://10.1.2.3:9999"
    _, body = await env.login("demo")
    urls = {s["type"]: s["endpoints"][0]["url"] for s in body["token"]["catalog"]}
    assert urls["identity"] == "http://10.1.2.3:9999/identity"
    assert urls["image"] == "http://10.1.2.3:9999/image"
    assert urls["network"] == "http://10.1.2.3:9999/networking"


async def test_issue_by_ids_and_nocatalog(env: Any) -> None:
    admin = (await env.svc.directory.list_users({"name": "demo"}))[0]
    project = (await env.svc.directory.list_projects({"name": "demo"}))[0]
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"id": admin["id"], "password": env.creds["demo"]["password"]}},
        },
        "scope": {"project": {"id": project["id"]}},
    }
    resp = await env.client.post("/identity/v3/auth/tokens?nocatalog", json={"auth": auth})
    assert resp.status_code == 201, resp.text
    t = resp.json()["token"]
    assert t["project"]["id"] == project["id"] and "catalog" not in t
    assert sorted(r["name"] for r in t["roles"]) == ["member", "reader"]


async def test_unscoped_tokens(env: Any) -> None:
    _, body = await env.login("demo", project=None)
    assert "project" not in body["token"] and "catalog" not in body["token"] and "roles" not in body["token"]
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {
                    "name": "demo",
                    "domain": {"id": "default"},
                    "password": env.creds["demo"]["password"],
                }
            },
        },
        "scope": "unscoped",
    }
    resp = await env.client.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert resp.status_code == 201 and "project" not in resp.json()["token"]
    ctx = await env.svc.validate_token(resp.headers["x-subject-token"])
    assert ctx.project_id is None and ctx.roles == frozenset() and ctx.user_name == "demo"


async def test_token_method_rescopes_without_outliving_parent(env: Any) -> None:
    unscoped, parent = await env.login("demo", project=None)
    auth = {
        "identity": {"methods": ["token"], "token": {"id": unscoped}},
        "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}},
    }
    resp = await env.client.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert resp.status_code == 201, resp.text
    t = resp.json()["token"]
    assert t["project"]["name"] == "demo"
    assert t["methods"] == ["token", "password"]
    assert t["expires_at"] == parent["token"]["expires_at"]
    assert t["audit_ids"][1] == parent["token"]["audit_ids"][0]


async def test_bad_credentials_do_not_enumerate_users(env: Any) -> None:
    async def attempt(name: str) -> Any:
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": name, "domain": {"id": "default"}, "password": "wrong"}},
            }
        }
        return await env.client.post("/identity/v3/auth/tokens", json={"auth": auth})

    wrong_pw, no_user = await attempt("admin"), await attempt("nobody")
    assert wrong_pw.status_code == no_user.status_code == 401
    assert wrong_pw.json() == no_user.json()
    assert wrong_pw.json()["error"]["title"] == "Unauthorized"
    assert wrong_pw.headers["www-authenticate"].startswith("Keystone uri=")
    assert "x-subject-token" not in wrong_pw.headers


async def test_scope_without_role_or_unknown_project_is_401(env: Any) -> None:
    await env.login("demo", project="admin", expect=401)
    await env.login("demo", project="no-such-project", expect=401)
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {
                    "name": "demo",
                    "domain": {"id": "default"},
                    "password": env.creds["demo"]["password"],
                }
            },
        },
        "scope": {"domain": {"id": "default"}},
    }
    resp = await env.client.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"auth": {}},
        {"auth": {"identity": {"methods": "password"}}},
        {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "x"}}}}},
        {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": {"name": "x", "password": "p"}}}
            }
        },
        {"auth": {"identity": {"methods": ["password"]}}},
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": "x" * 256, "password": "p", "domain": {"id": "default"}}},
                }
            }
        },
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"id": "x", "password": "p", "bogus": 1}},
                }
            }
        },
        {
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": "x"}},
                "scope": {"project": {"name": "demo"}},
            }
        },
        {"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}}, "scope": "everything"}},
        {"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}}}, "extra": True},
    ],
)
async def test_malformed_auth_requests_are_400(env: Any, body: Any) -> None:
    resp = await env.client.post("/identity/v3/auth/tokens", json=body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == 400 and err["title"] == "Bad Request" and err["message"]


async def test_malformed_json_and_unsupported_method(env: Any) -> None:
    resp = await env.client.post(
        "/identity/v3/auth/tokens", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == 400
    auth = {"identity": {"methods": ["totp"], "totp": {"user": {"id": "x"}}}}
    resp = await env.client.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert resp.status_code == 401


async def test_validate_head_revoke_then_401(env: Any) -> None:
    admin_token, _ = await env.login("admin")
    demo_token, demo_body = await env.login("demo")
    # Self-validation, GET and HEAD.
    own = {"X-Auth-Token": demo_token, "X-Subject-Token": demo_token}
    resp = await env.client.get("/identity/v3/auth/tokens", headers=own)
    assert resp.status_code == 200 and resp.headers["x-subject-token"] == demo_token
    assert resp.json()["token"]["audit_ids"] == demo_body["token"]["audit_ids"]
    assert resp.json()["token"]["catalog"]
    head = await env.client.head("/identity/v3/auth/tokens", headers=own)
    assert head.status_code == 200 and head.content == b""
    # A member may not look at someone else's token; the admin may.
    peek = await env.client.get(
        "/identity/v3/auth/tokens", headers={"X-Auth-Token": demo_token, "X-Subject-Token": admin_token}
    )
    assert peek.status_code == 403
    assert (
        await env.client.get(
            "/identity/v3/auth/tokens", headers={"X-Auth-Token": admin_token, "X-Subject-Token": demo_token}
        )
    ).status_code == 200
    # Revoke, then the token is dead everywhere.
    resp = await env.client.delete("/identity/v3/auth/tokens", headers=own)
    assert resp.status_code == 204
    assert (
        await env.client.get("/identity/v3/auth/projects", headers={"X-Auth-Token": demo_token})
    ).status_code == 401
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(demo_token)
    gone = await env.client.get(
        "/identity/v3/auth/tokens", headers={"X-Auth-Token": admin_token, "X-Subject-Token": demo_token}
    )
    assert gone.status_code == 404
    missing = await env.client.get("/identity/v3/auth/tokens", headers={"X-Auth-Token": admin_token})
    assert missing.status_code == 400


async def test_no_token_or_garbage_token_is_401(env: Any) -> None:
    assert (await env.client.get("/identity/v3/auth/projects")).status_code == 401
    resp = await env.client.get("/identity/v3/auth/projects", headers={"X-Auth-Token": "garbage"})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == 401


async def test_tokens_expire(make_env: Any) -> None:
    env = await make_env(token_ttl_seconds=1)
    token, _ = await env.login("demo")
    ctx = await env.svc.validate_token(token)  # now cached
    assert ctx.project_name == "demo"
    await asyncio.sleep(1.2)
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    resp = await env.client.get("/identity/v3/auth/projects", headers={"X-Auth-Token": token})
    assert resp.status_code == 401


async def test_only_the_hash_is_stored(env: Any) -> None:
    token, _ = await env.login("demo")
    async with env.db.read() as conn:
        stored = (await conn.execute(sa.select(tokens.c.token_hash))).scalars().all()
        hashes = (await conn.execute(sa.select(users.c.password_hash))).scalars().all()
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert token not in stored
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert env.creds["demo"]["password"] not in hashes


async def test_context_and_cache_follow_identity_changes(env: Any) -> None:
    token, _ = await env.login("demo")
    ctx = await env.svc.validate_token(token)
    assert (
        ctx.roles == frozenset({"member", "reader"})
        and ctx.user_name == "demo"
        and ctx.project_name == "demo"
    )
    assert not ctx.is_admin
    assert await env.svc.validate_token(token) is ctx  # served from the cache
    d = env.svc.directory
    demo = (await d.list_users({"name": "demo"}))[0]
    project = (await d.list_projects({"name": "demo"}))[0]
    roles = {r["name"]: r for r in await d.list_roles()}
    # A new role shows up at once (roles are read at validation, like Fernet tokens).
    await d.grant(project["id"], demo["id"], roles["admin"]["id"])
    assert (await env.svc.validate_token(token)).is_admin
    # Removing a role ends the user's tokens on that project, for good (a revocation event; see
    # test_identity_revocation.py): re-granting does not bring them back.
    await d.revoke_grant(project["id"], demo["id"], roles["admin"]["id"])
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    token, _ = await env.login("demo")
    assert not (await env.svc.validate_token(token)).is_admin
    await d.revoke_grant(project["id"], demo["id"], roles["member"]["id"])
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    await d.grant(project["id"], demo["id"], roles["member"]["id"])
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    token, _ = await env.login("demo")
    assert (await env.svc.validate_token(token)).roles == frozenset({"member", "reader"})
    # Disabling the user revokes its tokens for good.
    await d.update_user(demo["id"], {"enabled": False})
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    await d.update_user(demo["id"], {"enabled": True})
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)


async def test_disabling_project_revokes_its_tokens(env: Any) -> None:
    token, _ = await env.login("demo")
    await env.svc.validate_token(token)
    project = (await env.svc.directory.list_projects({"name": "demo"}))[0]
    await env.svc.directory.update_project(project["id"], {"enabled": False})
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    await env.login("demo", expect=401)


async def test_auth_projects_and_catalog(env: Any) -> None:
    unscoped, _ = await env.login("demo", project=None)
    resp = await env.client.get("/identity/v3/auth/projects", headers={"X-Auth-Token": unscoped})
    assert resp.status_code == 200
    assert [p["name"] for p in resp.json()["projects"]] == ["demo"]
    assert resp.json()["links"]["self"] == "http://cumulo.test/identity/v3/auth/projects"
    assert (
        await env.client.get("/identity/v3/auth/catalog", headers={"X-Auth-Token": unscoped})
    ).status_code == 403
    scoped = await env.headers("demo")
    cat = await env.client.get("/identity/v3/auth/catalog", headers=scoped)
    assert cat.status_code == 200 and {s["type"] for s in cat.json()["catalog"]} == {
        "identity",
        "compute",
        "image",
        "network",
        "block-storage",
        "volumev3",
        "occi",
        "paas",
    }
    doms = await env.client.get("/identity/v3/auth/domains", headers=scoped)
    assert doms.status_code == 200 and doms.json()["domains"] == []


async def test_bootstrap_is_idempotent(env: Any) -> None:
    assert set(env.creds) == {"admin", "demo"}
    assert env.creds["admin"]["project"] == "admin" and len(env.creds["admin"]["password"]) >= 16
    assert await env.svc.bootstrap() == {}
    assert len(await env.svc.directory.list_users()) == 2
    assert [r["name"] for r in await env.svc.directory.list_roles()] == ["admin", "member", "reader"]
    assert await env.svc.get_project("nope") is None
    demo = (await env.svc.directory.list_projects({"name": "demo"}))[0]
    assert (await env.svc.get_project(demo["id"]))["name"] == "demo"  # type: ignore[index]


async def test_token_method_with_a_dead_token_is_404_as_in_keystone(env: Any) -> None:
    """Keystone's token plugin answers TokenNotFound (404) for a revoked or unknown token; Tempest's
    test_user_update_own_password expects exactly that after a password change."""
    token, _ = await env.login("demo")
    uid = (await env.svc.directory.list_users({"name": "demo"}))[0]["id"]
    resp = await env.client.post(
        f"/identity/v3/users/{uid}/password",
        json={"user": {"original_password": env.creds["demo"]["password"], "password": "n3w-pass"}},
        headers={"X-Auth-Token": token},
    )
    assert resp.status_code == 204, resp.text
    for dead in (token, "never-issued"):
        body = {"auth": {"identity": {"methods": ["token"], "token": {"id": dead}}}}
        resp = await env.client.post("/identity/v3/auth/tokens", json=body)
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["message"] == "Failed to validate token" and dead not in resp.text
    # As X-Auth-Token it stays a 401.
    assert (await env.client.get("/identity/v3/auth/projects", headers={"X-Auth-Token": token})).status_code == 401
