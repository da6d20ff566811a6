"""Revocation events (issue 8, item 8): a token that lost its access stays dead.

As in Keystone, removing a role, disabling or deleting a user or project, changing a password and
DELETE /v3/auth/tokens record a revocation event; a token issued at or before a matching event is
refused from then on (401 as X-Auth-Token, 404 as X-Subject-Token), even after the access comes
back. Tokens issued after the event are not affected, nor are other users' or projects' tokens.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from cumulo import errors
from cumulo.db import utcnow
from cumulo.identity import tokens as token_store
from cumulo.identity.models import revocation_events

IDN = "/identity/v3"


async def _ids(env: Any) -> tuple[str, str, dict[str, str]]:
    d = env.svc.directory
    demo = (await d.list_users({"name": "demo"}))[0]["id"]
    project = (await d.list_projects({"name": "demo"}))[0]["id"]
    roles = {r["name"]: r["id"] for r in await d.list_roles()}
    return demo, project, roles


async def _works(env: Any, token: str) -> bool:
    resp = await env.client.get(f"{IDN}/auth/projects", headers={"X-Auth-Token": token})
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


async def _subject_status(env: Any, admin: str, token: str) -> int:
    resp = await env.client.get(f"{IDN}/auth/tokens", headers={"X-Auth-Token": admin, "X-Subject-Token": token})
    return resp.status_code


async def test_token_that_lost_its_role_stays_dead_after_regrant(env: Any) -> None:
    admin, _ = await env.login("admin")
    demo, project, roles = await _ids(env)
    token, _ = await env.login("demo")
    assert await _works(env, token)
    grant = f"{IDN}/projects/{project}/users/{demo}/roles/{roles['member']}"
    assert (await env.client.delete(grant, headers={"X-Auth-Token": admin})).status_code == 204
    assert not await _works(env, token)
    assert await _subject_status(env, admin, token) == 404
    # The role comes back: the old token does not.
    assert (await env.client.put(grant, headers={"X-Auth-Token": admin})).status_code == 204
    assert not await _works(env, token)
    assert await _subject_status(env, admin, token) == 404
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    # A new token works, and so does the admin's (other user, other project).
    fresh, _ = await env.login("demo")
    assert await _works(env, fresh)
    assert await _subject_status(env, admin, fresh) == 200
    assert await _works(env, admin)


async def test_removing_one_of_several_roles_revokes_the_tokens_on_that_project(env: Any) -> None:
    demo, project, roles = await _ids(env)
    d = env.svc.directory
    await d.grant(project, demo, roles["reader"])
    token, _ = await env.login("demo")
    unscoped, _ = await env.login("demo", project=None)
    await d.revoke_grant(project, demo, roles["reader"])
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    # Unscoped tokens carry no project roles: not affected.
    assert (await env.svc.validate_token(unscoped)).user_name == "demo"
    fresh, _ = await env.login("demo")
    assert (await env.svc.validate_token(fresh)).roles == frozenset({"member", "reader"})


async def test_deleting_a_role_revokes_the_tokens_that_held_it(env: Any) -> None:
    admin, _ = await env.login("admin")
    demo, project, _ = await _ids(env)
    d = env.svc.directory
    extra = await d.create_role({"name": "auditor"})
    await d.grant(project, demo, extra["id"])
    token, _ = await env.login("demo")
    await d.delete_role(extra["id"])
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    assert await _works(env, admin)


@pytest.mark.parametrize("change", ["disable", "password"])
async def test_user_changes_revoke_for_good(env: Any, change: str) -> None:
    admin, _ = await env.login("admin")
    demo, _, _ = await _ids(env)
    token, _ = await env.login("demo")
    unscoped, _ = await env.login("demo", project=None)
    d = env.svc.directory
    if change == "disable":
        await d.update_user(demo, {"enabled": False})
        await d.update_user(demo, {"enabled": True})
    else:
        await d.update_user(demo, {"password": "a-new-password"})
        env.creds["demo"]["password"] = "a-new-password"
    for t in (token, unscoped):
        with pytest.raises(errors.Unauthorized):
            await env.svc.validate_token(t)
    assert await _works(env, admin)
    fresh, _ = await env.login("demo")
    assert await _works(env, fresh)


async def test_project_disable_revokes_for_good(env: Any) -> None:
    admin, _ = await env.login("admin")
    _, project, _ = await _ids(env)
    token, _ = await env.login("demo")
    d = env.svc.directory
    await d.update_project(project, {"enabled": False})
    await d.update_project(project, {"enabled": True})
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)
    assert await _works(env, admin)
    fresh, _ = await env.login("demo")
    assert await _works(env, fresh)


async def test_explicit_revocation_records_an_event(env: Any) -> None:
    token, body = await env.login("demo")
    other, _ = await env.login("demo")
    own = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert (await env.client.delete(f"{IDN}/auth/tokens", headers=own)).status_code == 204
    async with env.db.read() as conn:
        rows = (await conn.execute(sa.select(revocation_events))).all()
    assert [r.audit_id for r in rows] == [body["token"]["audit_ids"][0]]
    assert not await _works(env, token)
    assert await _works(env, other)  # per token: the user's other tokens live on


async def test_the_event_table_is_checked_not_just_the_token_row(env: Any) -> None:
    """Another API process (or a restart) sees revocations from the DB: events alone suffice."""
    demo, project, roles = await _ids(env)
    token, _ = await env.login("demo")
    await env.svc.validate_token(token)  # cached
    async with env.db.write() as conn:
        await token_store.record_revocation(conn, user_id=demo, project_id=project)
    env.svc.cache.invalidate()  # what MAX_AGE does in another process
    with pytest.raises(errors.Unauthorized):
        await env.svc.validate_token(token)


async def test_events_are_pruned_once_no_live_token_predates_them(env: Any) -> None:
    demo, project, _ = await _ids(env)
    old, _ = await env.login("demo")
    async with env.db.write() as conn:
        await token_store.record_revocation(conn, user_id=demo, project_id=project)
    live, _ = await env.login("demo")  # issued after the event
    async with env.db.write() as conn:
        await token_store.purge_expired(conn, utcnow())
        kept = (await conn.execute(sa.select(sa.func.count()).select_from(revocation_events))).scalar_one()
    assert kept == 1  # `old` is still live and predates the event
    later = utcnow() + dt.timedelta(seconds=env.svc.conf.token_ttl_seconds + 1)
    async with env.db.write() as conn:
        # Every token issued before the event has expired: the event can go.
        await conn.execute(sa.delete(token_store.tokens).where(token_store.tokens.c.token_hash == token_store.hash_token(old)))
        await token_store.purge_expired(conn, utcnow())
        kept = (await conn.execute(sa.select(sa.func.count()).select_from(revocation_events))).scalar_one()
        assert kept == 0
        await token_store.purge_expired(conn, later)
    assert live
