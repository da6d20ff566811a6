"""Keystone v3 directory administration: projects, users, roles, grants, assignments and policy."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from cumulo.identity.models import users

V3 = "/identity/v3"


async def _ids(env: Any) -> dict[str, str]:
    d = env.svc.directory
    out = {f"project:{p['name']}": p["id"] for p in await d.list_projects()}
    out.update({f"user:{u['name']}": u["id"] for u in await d.list_users()})
    out.update({f"role:{r['name']}": r["id"] for r in await d.list_roles()})
    return out


async def test_project_crud(env: Any) -> None:
    h = await env.headers("admin")
    resp = await env.client.post(
        f"{V3}/projects", json={"project": {"name": "p1", "description": "first", "tags": ["a"]}}, headers=h
    )
    assert resp.status_code == 201, resp.text
    p = resp.json()["project"]
    assert set(p) == {
        "id",
        "name",
        "domain_id",
        "description",
        "enabled",
        "is_domain",
        "parent_id",
        "tags",
        "options",
        "links",
    }
    assert (
        p["domain_id"] == "default"
        and p["parent_id"] == "default"
        and p["enabled"] is True
        and p["tags"] == ["a"]
    )
    assert p["links"]["self"] == f"http://cumulo.test/identity/v3/projects/{p['id']}"
    assert len(p["id"]) == 32
    listed = await env.client.get(f"{V3}/projects", headers=h)
    assert {x["name"] for x in listed.json()["projects"]} == {"admin", "demo", "p1"}
    assert listed.json()["links"] == {
        "self": "http://cumulo.test/identity/v3/projects",
        "previous": None,
        "next": None,
    }
    by_name = await env.client.get(f"{V3}/projects", params={"name": "p1"}, headers=h)
    assert [x["id"] for x in by_name.json()["projects"]] == [p["id"]]
    resp = await env.client.patch(
        f"{V3}/projects/{p['id']}", json={"project": {"description": "changed", "enabled": False}}, headers=h
    )
    assert resp.status_code == 200 and resp.json()["project"]["description"] == "changed"
    disabled = await env.client.get(f"{V3}/projects", params={"enabled": "false"}, headers=h)
    assert [x["name"] for x in disabled.json()["projects"]] == ["p1"]
    dup = await env.client.post(f"{V3}/projects", json={"project": {"name": "p1"}}, headers=h)
    assert dup.status_code == 409 and dup.json()["error"]["title"] == "Conflict"
    assert (await env.client.delete(f"{V3}/projects/{p['id']}", headers=h)).status_code == 204
    gone = await env.client.get(f"{V3}/projects/{p['id']}", headers=h)
    assert (
        gone.status_code == 404 and gone.json()["error"]["message"] == f"Could not find project: {p['id']}."
    )
    assert (await env.client.delete(f"{V3}/projects/{p['id']}", headers=h)).status_code == 404


async def test_user_crud_and_password_hash(env: Any) -> None:
    h = await env.headers("admin")
    ids = await _ids(env)
    body = {
        "user": {
            "name": "alice",
            "password": "s3cret-pass",
            "email": "a@example.com",
            "default_project_id": ids["project:demo"],
        }
    }
    resp = await env.client.post(f"{V3}/users", json=body, headers=h)
    assert resp.status_code == 201, resp.text
    u = resp.json()["user"]
    assert (
        u["name"] == "alice"
        and u["email"] == "a@example.com"
        and u["default_project_id"] == ids["project:demo"]
    )
    assert u["password_expires_at"] is None and u["domain_id"] == "default" and "password" not in u
    async with env.db.read() as conn:
        stored = await conn.scalar(sa.select(users.c.password_hash).where(users.c.id == u["id"]))
    assert stored.startswith("$argon2id$") and "s3cret-pass" not in stored
    # Not assigned to demo yet: the default project is ignored and the token is unscoped.
    tok, t = await env.login("alice", "s3cret-pass", project=None)
    assert "project" not in t["token"]
    grant = f"{V3}/projects/{ids['project:demo']}/users/{u['id']}/roles/{ids['role:reader']}"
    assert (await env.client.put(grant, headers=h)).status_code == 204
    _, t = await env.login("alice", "s3cret-pass", project=None)
    assert t["token"]["project"]["name"] == "demo"  # now scoped to the default project
    assert [r["name"] for r in t["token"]["roles"]] == ["reader"]
    resp = await env.client.patch(
        f"{V3}/users/{u['id']}", json={"user": {"password": "another-pass"}}, headers=h
    )
    assert resp.status_code == 200
    await env.login("alice", "s3cret-pass", project=None, expect=401)
    await env.login("alice", "another-pass", project=None)
    assert (await env.client.get(f"{V3}/auth/projects", headers={"X-Auth-Token": tok})).status_code == 401
    listed = await env.client.get(f"{V3}/users", params={"name": "alice"}, headers=h)
    assert [x["id"] for x in listed.json()["users"]] == [u["id"]]
    assert (await env.client.delete(f"{V3}/users/{u['id']}", headers=h)).status_code == 204
    assert (await env.client.get(f"{V3}/users/{u['id']}", headers=h)).status_code == 404
    await env.login("alice", "another-pass", project=None, expect=401)


async def test_self_service_reads_and_password_change(env: Any) -> None:
    ids = await _ids(env)
    h = await env.headers("demo")
    me = await env.client.get(f"{V3}/users/{ids['user:demo']}", headers=h)
    assert me.status_code == 200 and me.json()["user"]["name"] == "demo"
    assert (await env.client.get(f"{V3}/users/{ids['user:admin']}", headers=h)).status_code == 403
    own = await env.client.get(f"{V3}/projects/{ids['project:demo']}", headers=h)
    assert own.status_code == 200 and own.json()["project"]["name"] == "demo"
    assert (await env.client.get(f"{V3}/projects/{ids['project:admin']}", headers=h)).status_code == 403
    mine = await env.client.get(f"{V3}/users/{ids['user:demo']}/projects", headers=h)
    assert [p["name"] for p in mine.json()["projects"]] == ["demo"]
    ra = await env.client.get(f"{V3}/role_assignments", params={"user.id": ids["user:demo"]}, headers=h)
    assert ra.status_code == 200 and len(ra.json()["role_assignments"]) == 1
    assert (await env.client.get(f"{V3}/role_assignments", headers=h)).status_code == 403
    # Changing one's own password needs the old one, and ends existing tokens.
    url = f"{V3}/users/{ids['user:demo']}/password"
    bad = await env.client.post(
        url, json={"user": {"password": "new-pass-1", "original_password": "wrong"}}, headers=h
    )
    assert bad.status_code == 401
    old = env.creds["demo"]["password"]
    ok = await env.client.post(
        url, json={"user": {"password": "new-pass-1", "original_password": old}}, headers=h
    )
    assert ok.status_code == 204
    assert (await env.client.get(f"{V3}/users/{ids['user:demo']}", headers=h)).status_code == 401
    await env.login("demo", old, expect=401)
    await env.login("demo", "new-pass-1")
    fresh = {"X-Auth-Token": (await env.login("demo", "new-pass-1"))[0]}
    change = {"user": {"password": "x", "original_password": "y"}}
    other = await env.client.post(f"{V3}/users/{ids['user:admin']}/password", json=change, headers=fresh)
    assert other.status_code == 403


async def test_roles_and_implication(env: Any) -> None:
    h = await env.headers("admin")
    listed = await env.client.get(f"{V3}/roles", headers=h)
    roles = {r["name"]: r for r in listed.json()["roles"]}
    assert set(roles) == {"admin", "member", "reader"}
    assert roles["admin"]["options"] == {"immutable": True} and roles["admin"]["domain_id"] is None
    inf = await env.client.get(f"{V3}/role_inferences", headers=h)
    pairs = {
        (x["prior_role"]["name"], tuple(i["name"] for i in x["implies"]))
        for x in inf.json()["role_inferences"]
    }
    assert pairs == {("admin", ("member",)), ("member", ("reader",))}
    implies = await env.client.get(f"{V3}/roles/{roles['member']['id']}/implies", headers=h)
    assert [r["name"] for r in implies.json()["role_inference"]["implies"]] == ["reader"]
    check = await env.client.head(
        f"{V3}/roles/{roles['admin']['id']}/implies/{roles['member']['id']}", headers=h
    )
    assert check.status_code == 204
    assert (
        await env.client.get(f"{V3}/roles/{roles['admin']['id']}/implies/{roles['reader']['id']}", headers=h)
    ).status_code == 404
    # Custom roles: create, rename, delete; bootstrap roles are immutable.
    resp = await env.client.post(
        f"{V3}/roles", json={"role": {"name": "auditor", "description": "reads logs"}}, headers=h
    )
    assert resp.status_code == 201 and resp.json()["role"]["description"] == "reads logs"
    rid = resp.json()["role"]["id"]
    resp = await env.client.patch(f"{V3}/roles/{rid}", json={"role": {"name": "auditor2"}}, headers=h)
    assert resp.status_code == 200 and resp.json()["role"]["name"] == "auditor2"
    assert (await env.client.delete(f"{V3}/roles/{rid}", headers=h)).status_code == 204
    assert (await env.client.delete(f"{V3}/roles/{roles['reader']['id']}", headers=h)).status_code == 403
    assert (
        await env.client.patch(
            f"{V3}/roles/{roles['admin']['id']}", json={"role": {"name": "boss"}}, headers=h
        )
    ).status_code == 403
    assert (
        await env.client.post(f"{V3}/roles", json={"role": {"name": "member"}}, headers=h)
    ).status_code == 409


async def test_grants_and_role_assignments(env: Any) -> None:
    h = await env.headers("admin")
    ids = await _ids(env)
    p, u, member = ids["project:admin"], ids["user:demo"], ids["role:member"]
    grant = f"{V3}/projects/{p}/users/{u}/roles/{member}"
    assert (await env.client.head(grant, headers=h)).status_code == 404
    assert (await env.client.put(grant, headers=h)).status_code == 204
    assert (await env.client.put(grant, headers=h)).status_code == 204  # idempotent
    assert (await env.client.head(grant, headers=h)).status_code == 204
    assert (await env.client.get(grant, headers=h)).status_code == 204
    roles = await env.client.get(f"{V3}/projects/{p}/users/{u}/roles", headers=h)
    assert [r["name"] for r in roles.json()["roles"]] == ["member"]
    ra = await env.client.get(f"{V3}/role_assignments", params={"scope.project.id": p}, headers=h)
    got = {(a["user"]["id"], a["role"]["id"]) for a in ra.json()["role_assignments"]}
    assert got == {(ids["user:admin"], ids["role:admin"]), (u, member)}
    a = next(x for x in ra.json()["role_assignments"] if x["user"]["id"] == u)
    assert a == {
        "links": {"assignment": f"http://cumulo.test{grant}"},
        "role": {"id": member},
        "scope": {"project": {"id": p}},
        "user": {"id": u},
    }
    eff = await env.client.get(
        f"{V3}/role_assignments",
        params={"user.id": ids["user:admin"], "effective": "", "include_names": "True"},
        headers=h,
    )
    rows = eff.json()["role_assignments"]
    assert sorted(x["role"]["name"] for x in rows) == ["admin", "member", "reader"]
    implied = next(x for x in rows if x["role"]["name"] == "reader")
    assert implied["links"]["prior_role"].endswith(f"/v3/roles/{ids['role:admin']}")
    assert implied["user"] == {
        "id": ids["user:admin"],
        "name": "admin",
        "domain": {"id": "default", "name": "Default"},
    }
    assert implied["scope"]["project"]["name"] == "admin"
    by_role = await env.client.get(
        f"{V3}/role_assignments", params={"role.id": ids["role:reader"], "effective": "1"}, headers=h
    )
    assert {x["user"]["id"] for x in by_role.json()["role_assignments"]} == {ids["user:admin"], u}
    none = await env.client.get(f"{V3}/role_assignments", params={"group.id": "g"}, headers=h)
    assert none.json()["role_assignments"] == []
    # The demo user now holds member on admin's project and can scope there.
    await env.login("demo", project="admin")
    assert (await env.client.delete(grant, headers=h)).status_code == 204
    assert (await env.client.delete(grant, headers=h)).status_code == 404
    await env.login("demo", project="admin", expect=401)
    assert (
        await env.client.put(f"{V3}/projects/{p}/users/nobody/roles/{member}", headers=h)
    ).status_code == 404


async def test_domains_and_catalog_admin(env: Any) -> None:
    h = await env.headers("demo")
    doms = await env.client.get(f"{V3}/domains", headers=h)
    assert [d["id"] for d in doms.json()["domains"]] == ["default"]
    d = await env.client.get(f"{V3}/domains/default", headers=h)
    assert d.json()["domain"]["name"] == "Default" and d.json()["domain"]["enabled"] is True
    assert (await env.client.get(f"{V3}/domains/other", headers=h)).status_code == 404
    assert (
        await env.client.post(f"{V3}/domains", json={"domain": {"name": "x"}}, headers=h)
    ).status_code == 405
    eps = await env.client.get(f"{V3}/endpoints", params={"interface": "public"}, headers=h)
    assert {e["url"] for e in eps.json()["endpoints"]} == {
        "http://cumulo.test/identity",
        "http://cumulo.test/compute/v2.1",
        "http://cumulo.test/image",
        "http://cumulo.test/networking",
        "http://cumulo.test/volume/v3/$(project_id)s",  # Keystone lists the template; tokens fill it
        "http://cumulo.test/occi",
        "http://cumulo.test/paas",
    }
    svcs = await env.client.get(f"{V3}/services", headers=h)
    assert {s["id"] for s in svcs.json()["services"]} == {e["service_id"] for e in eps.json()["endpoints"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/projects", None),
        ("POST", "/projects", {"project": {"name": "x"}}),
        ("GET", "/users", None),
        ("POST", "/users", {"user": {"name": "x"}}),
        ("POST", "/roles", {"role": {"name": "x"}}),
        ("GET", "/role_assignments", None),
    ],
)
async def test_member_and_reader_get_403_on_admin_apis(env: Any, method: str, path: str, body: Any) -> None:
    ids = await _ids(env)
    h = await env.headers("admin")
    reader = await env.client.post(
        f"{V3}/users", json={"user": {"name": "rita", "password": "rita-pass"}}, headers=h
    )
    rid = reader.json()["user"]["id"]
    await env.client.put(
        f"{V3}/projects/{ids['project:demo']}/users/{rid}/roles/{ids['role:reader']}", headers=h
    )
    for who in (
        {"X-Auth-Token": (await env.login("demo"))[0]},
        {"X-Auth-Token": (await env.login("rita", "rita-pass", "demo"))[0]},
    ):
        resp = await env.client.request(method, f"{V3}{path}", json=body, headers=who)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["title"] == "Forbidden"


async def test_reader_can_list_but_not_change(env: Any) -> None:
    ids = await _ids(env)
    h = await env.headers("admin")
    await env.client.post(f"{V3}/users", json={"user": {"name": "rita", "password": "rita-pass"}}, headers=h)
    rid = (await _ids(env))["user:rita"]
    await env.client.put(
        f"{V3}/projects/{ids['project:demo']}/users/{rid}/roles/{ids['role:reader']}", headers=h
    )
    token, body = await env.login("rita", "rita-pass", "demo")
    assert [r["name"] for r in body["token"]["roles"]] == ["reader"]
    rh = {"X-Auth-Token": token}
    assert (await env.client.get(f"{V3}/roles", headers=rh)).status_code == 200
    assert (await env.client.get(f"{V3}/projects/{ids['project:demo']}", headers=rh)).status_code == 200
    assert (
        await env.client.patch(
            f"{V3}/projects/{ids['project:demo']}", json={"project": {"name": "z"}}, headers=rh
        )
    ).status_code == 403
    assert (await env.client.delete(f"{V3}/roles/{ids['role:member']}", headers=rh)).status_code == 403
    grant = f"{V3}/projects/{ids['project:demo']}/users/{rid}/roles/{ids['role:admin']}"
    assert (await env.client.put(grant, headers=rh)).status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/projects", {"project": {"name": "x" * 65}}),
        ("POST", "/projects", {"project": {"name": ""}}),
        # Extra attributes are kept (Keystone's "extra"), but not under a rendered field's name,
        # nor too many or too large.
        ("POST", "/projects", {"project": {"name": "ok", "links": 1}}),
        ("POST", "/projects", {"project": {"name": "ok", "id": "mine"}}),
        ("POST", "/users", {"user": {"name": "ok", **{f"k{i}": i for i in range(40)}}}),
        ("POST", "/users", {"user": {"name": "ok", "blob": "x" * 20000}}),
        ("POST", "/users", {"user": {"name": "ok", "": 1}}),
        ("PATCH", "/users/UID", {"user": {"password_expires_at": "never"}}),
        ("POST", "/projects", {"project": {"name": "ok", "enabled": "yes"}}),
        ("POST", "/projects", {"project": {"name": "ok", "is_domain": True}}),
        ("POST", "/projects", {"project": {"name": "ok", "parent_id": "abc"}}),
        ("POST", "/projects", {"project": {"name": "ok", "domain_id": "elsewhere"}}),
        ("POST", "/projects", {"name": "ok"}),
        ("POST", "/projects", [1, 2]),
        ("POST", "/users", {"user": {"name": "x" * 256}}),
        ("POST", "/users", {"user": {"name": "ok", "password": 5}}),
        ("POST", "/users", {"user": {"name": "ok", "default_project_id": "missing"}}),
        ("POST", "/roles", {"role": {"name": "x" * 256}}),
        ("POST", "/roles", {"role": {"name": "ok", "domain_id": "default"}}),
        ("PATCH", "/projects/PID", {"project": {}}),
        ("PATCH", "/users/UID", {"user": {"enabled": 1}}),
    ],
)
async def test_bad_input_is_400(env: Any, method: str, path: str, body: Any) -> None:
    ids = await _ids(env)
    path = path.replace("PID", ids["project:demo"]).replace("UID", ids["user:demo"])
    resp = await env.client.request(method, f"{V3}{path}", json=body, headers=await env.headers("admin"))
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == 400 and err["title"] == "Bad Request"


async def test_malformed_json_body_is_400(env: Any) -> None:
    h = await env.headers("admin") | {"content-type": "application/json"}
    resp = await env.client.post(f"{V3}/projects", content=b'{"project": ', headers=h)
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("Malformed request body")
    resp = await env.client.post(f"{V3}/projects", content=b"", headers=h)
    assert resp.status_code == 400
