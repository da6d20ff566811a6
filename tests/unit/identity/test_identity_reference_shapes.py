"""Keystone v3 response bodies against the reference shapes (tests/reference/keystone.py), through
the whole cloud with real tokens: version discovery, tokens (password and token methods, project
scoped and unscoped, validation), the auth helpers, projects, users, roles and the fault body."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for `reference`
from reference import check, keystone  # noqa: E402

JSON = dict[str, Any]


def password_auth(user: str, password: str, project: str | None) -> JSON:
    auth: JSON = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
        }
    }
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"name": "Default"}}}
    return {"auth": auth}


async def login(client: httpx.AsyncClient, creds: dict[str, dict[str, str]], user: str, scoped: bool = True) -> tuple[str, JSON]:
    c = creds[user]
    resp = await client.post("/identity/v3/auth/tokens", json=password_auth(user, c["password"], c["project"] if scoped else None))
    assert resp.status_code == 201, resp.text
    token = resp.headers.get("x-subject-token")
    assert token, "X-Subject-Token header missing"
    return token, resp.json()


@pytest.fixture
def creds(cloud: Any) -> dict[str, dict[str, str]]:
    assert {"admin", "demo"} <= set(cloud.credentials), "bootstrap did not return both users"
    return cloud.credentials  # type: ignore[no-any-return]


async def test_version_discovery(anon_client: httpx.AsyncClient) -> None:
    resp = await anon_client.get("/identity/")
    assert resp.status_code == 300, resp.text  # Keystone answers the root with Multiple Choices
    check(resp.json(), keystone.schema("versions"), "GET /identity/")
    v3 = [v for v in resp.json()["versions"]["values"] if v["id"].startswith("v3.")]
    assert len(v3) == 1
    assert any(link["rel"] == "self" and link["href"].rstrip("/").endswith("/identity/v3") for link in v3[0]["links"])
    resp = await anon_client.get("/identity/v3")
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("version"), "GET /identity/v3")
    assert resp.json()["version"]["id"] == v3[0]["id"]


async def test_project_scoped_token_issue_and_validate(anon_client: httpx.AsyncClient, creds: dict[str, dict[str, str]]) -> None:
    token, body = await login(anon_client, creds, "demo")
    check(body, keystone.schema("token_project"), "POST /v3/auth/tokens (project scope)")
    t = body["token"]
    assert t["methods"] == ["password"]
    assert t["project"]["name"] == creds["demo"]["project"]
    assert t["user"]["name"] == "demo"
    assert "member" in {r["name"] for r in t["roles"]}
    # The catalog lists exactly the services that exist (issue 2).
    assert sorted(e["type"] for e in t["catalog"]) == ["block-storage", "compute", "identity", "image", "network",
                                                       "occi", "paas", "volumev3"]

    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    resp = await anon_client.get("/identity/v3/auth/tokens", headers=headers)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("token_project"), "GET /v3/auth/tokens")
    assert resp.json()["token"]["audit_ids"] == t["audit_ids"]
    assert resp.headers.get("x-subject-token") == token


async def test_token_method_and_unscoped_tokens(anon_client: httpx.AsyncClient, creds: dict[str, dict[str, str]]) -> None:
    token, body = await login(anon_client, creds, "demo", scoped=False)
    # Without a scope Keystone scopes to the user's default project if it has one.
    which = "token_project" if "project" in body["token"] else "token_unscoped"
    check(body, keystone.schema(which), f"POST /v3/auth/tokens (no scope) as {which}")

    explicit = password_auth("demo", creds["demo"]["password"], None)
    explicit["auth"]["scope"] = "unscoped"
    resp = await anon_client.post("/identity/v3/auth/tokens", json=explicit)
    assert resp.status_code == 201, resp.text
    check(resp.json(), keystone.schema("token_unscoped"), "POST /v3/auth/tokens (scope: unscoped)")
    unscoped = resp.headers["x-subject-token"]

    rescope = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": unscoped}},
            "scope": {"project": {"name": creds["demo"]["project"], "domain": {"id": "default"}}},
        }
    }
    resp = await anon_client.post("/identity/v3/auth/tokens", json=rescope)
    assert resp.status_code == 201, resp.text
    check(resp.json(), keystone.schema("token_project"), "POST /v3/auth/tokens (token method)")
    assert "token" in resp.json()["token"]["methods"]


async def test_auth_projects_and_catalog(anon_client: httpx.AsyncClient, creds: dict[str, dict[str, str]]) -> None:
    token, _ = await login(anon_client, creds, "demo")
    h = {"X-Auth-Token": token}
    resp = await anon_client.get("/identity/v3/auth/projects", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("auth_projects"), "GET /v3/auth/projects")
    assert creds["demo"]["project"] in {p["name"] for p in resp.json()["projects"]}
    resp = await anon_client.get("/identity/v3/auth/catalog", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("auth_catalog"), "GET /v3/auth/catalog")


async def test_admin_resources(anon_client: httpx.AsyncClient, creds: dict[str, dict[str, str]]) -> None:
    token, body = await login(anon_client, creds, "admin")
    h = {"X-Auth-Token": token}

    resp = await anon_client.get("/identity/v3/projects", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("projects"), "GET /v3/projects")
    resp = await anon_client.get(f"/identity/v3/projects/{body['token']['project']['id']}", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("project"), "GET /v3/projects/{id}")

    name = f"shape-{uuid.uuid4().hex[:8]}"
    resp = await anon_client.post("/identity/v3/projects", headers=h, json={"project": {"name": name, "domain_id": "default"}})
    assert resp.status_code == 201, resp.text
    check(resp.json(), keystone.schema("project"), "POST /v3/projects")
    project = resp.json()["project"]
    assert project["name"] == name and project["is_domain"] is False and project["parent_id"] == "default"

    resp = await anon_client.get("/identity/v3/users", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("users"), "GET /v3/users")
    resp = await anon_client.post(
        "/identity/v3/users",
        headers=h,
        json={"user": {"name": name, "password": "s3cret-pw", "default_project_id": project["id"], "domain_id": "default"}},
    )
    assert resp.status_code == 201, resp.text
    check(resp.json(), keystone.schema("user"), "POST /v3/users")
    user = resp.json()["user"]
    assert "password" not in user
    resp = await anon_client.get(f"/identity/v3/users/{user['id']}", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("user"), "GET /v3/users/{id}")
    assert resp.json()["user"]["default_project_id"] == project["id"]

    resp = await anon_client.get("/identity/v3/roles", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("roles"), "GET /v3/roles")
    roles = {r["name"]: r for r in resp.json()["roles"]}
    assert {"admin", "member", "reader"} <= set(roles)
    resp = await anon_client.get(f"/identity/v3/roles/{roles['reader']['id']}", headers=h)
    assert resp.status_code == 200, resp.text
    check(resp.json(), keystone.schema("role"), "GET /v3/roles/{id}")


async def test_fault_body(anon_client: httpx.AsyncClient, creds: dict[str, dict[str, str]]) -> None:
    token, _ = await login(anon_client, creds, "admin")
    resp = await anon_client.get(f"/identity/v3/projects/{uuid.uuid4().hex}", headers={"X-Auth-Token": token})
    assert resp.status_code == 404
    check(resp.json(), keystone.schema("error"), "404 body")
    assert resp.json()["error"]["code"] == 404
    resp = await anon_client.get("/identity/v3/projects", headers={"X-Auth-Token": "not-a-token"})
    assert resp.status_code == 401
    check(resp.json(), keystone.schema("error"), "401 body")
