"""Keystone's security compliance rules (identity_* settings): lockout after failed logins,
password history and minimum password age on self-service changes. Off by default."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from cumulo.db import utcnow
from cumulo.identity.models import users

IDN = "/identity/v3"


async def _change(env: Any, uid: str, token: str, old: str, new: str) -> int:
    resp = await env.client.post(
        f"{IDN}/users/{uid}/password",
        json={"user": {"original_password": old, "password": new}},
        headers={"X-Auth-Token": token},
    )
    return int(resp.status_code)


async def _uid(env: Any, name: str) -> str:
    return str((await env.svc.directory.list_users({"name": name}))[0]["id"])


async def test_off_by_default(env: Any) -> None:
    for _ in range(5):
        await env.login("demo", "wrong", expect=401)
    await env.login("demo")
    uid, pw = await _uid(env, "demo"), env.creds["demo"]["password"]
    token, _ = await env.login("demo")
    assert await _change(env, uid, token, pw, "second-pw") == 204
    token, _ = await env.login("demo", "second-pw")
    assert await _change(env, uid, token, "second-pw", pw) == 204  # no history rule


async def test_lockout(make_env: Callable[..., Awaitable[Any]]) -> None:
    env = await make_env(identity_lockout_failure_attempts=2, identity_lockout_duration=60)
    await env.login("demo", "wrong", expect=401)
    await env.login("demo")  # a success resets the count
    await env.login("demo", "wrong", expect=401)
    await env.login("demo", "wrong", expect=401)
    # Locked: the right password fails too, with the same answer as a wrong one.
    _, body = await env.login("demo", expect=401)
    assert body["error"]["message"] == "The request you have made requires authentication."
    await env.login("admin")  # other users are not affected
    # The lock runs out (moved into the past here rather than waited for).
    async with env.db.write() as conn:
        await conn.execute(users.update().where(users.c.name == "demo").values(failed_auth_at=utcnow() - dt.timedelta(seconds=61)))
    await env.login("demo")
    # Locked again; an admin setting enabled=true unlocks.
    await env.login("demo", "wrong", expect=401)
    await env.login("demo", "wrong", expect=401)
    await env.login("demo", expect=401)
    admin, _ = await env.login("admin")
    resp = await env.client.patch(f"{IDN}/users/{await _uid(env, 'demo')}", json={"user": {"enabled": True}},
                                  headers={"X-Auth-Token": admin})
    assert resp.status_code == 200
    await env.login("demo")


async def test_lockout_counts_wrong_original_passwords(make_env: Callable[..., Awaitable[Any]]) -> None:
    env = await make_env(identity_lockout_failure_attempts=2, identity_lockout_duration=60)
    uid, pw = await _uid(env, "demo"), env.creds["demo"]["password"]
    token, _ = await env.login("demo")
    assert await _change(env, uid, token, "nope", "x-new-pw") == 401
    assert await _change(env, uid, token, "nope", "x-new-pw") == 401
    assert await _change(env, uid, token, pw, "x-new-pw") == 401  # locked
    async with env.db.read() as conn:
        assert (await conn.execute(sa.select(users.c.failed_auth_count).where(users.c.id == uid))).scalar() == 2


async def test_password_history(make_env: Callable[..., Awaitable[Any]]) -> None:
    env = await make_env(identity_unique_last_password_count=2)
    uid, old = await _uid(env, "demo"), env.creds["demo"]["password"]
    token, _ = await env.login("demo")
    assert await _change(env, uid, token, old, "first-new") == 204
    token, _ = await env.login("demo", "first-new")
    # The current password and the one before it are refused (400, naming the rule).
    resp = await env.client.post(
        f"{IDN}/users/{uid}/password",
        json={"user": {"original_password": "first-new", "password": "first-new"}},
        headers={"X-Auth-Token": token},
    )
    assert resp.status_code == 400 and "must be unique is 2" in resp.json()["error"]["message"]
    assert await _change(env, uid, token, "first-new", old) == 400
    assert await _change(env, uid, token, "first-new", "second-new") == 204
    token, _ = await env.login("demo", "second-new")
    assert await _change(env, uid, token, "second-new", "first-new") == 400
    assert await _change(env, uid, token, "second-new", "third-new") == 204
    token, _ = await env.login("demo", "third-new")
    # Three changes back is outside the window of 2.
    assert await _change(env, uid, token, "third-new", old) == 204
    # Only hashes are kept.
    async with env.db.read() as conn:
        history = (await conn.execute(sa.select(users.c.password_history).where(users.c.id == uid))).scalar()
    assert history and all(h.startswith("$argon2id$") for h in history)
    # An admin reset is not bound by the history.
    admin, _ = await env.login("admin")
    resp = await env.client.patch(f"{IDN}/users/{uid}", json={"user": {"password": old}}, headers={"X-Auth-Token": admin})
    assert resp.status_code == 200


async def test_minimum_password_age(make_env: Callable[..., Awaitable[Any]]) -> None:
    env = await make_env(identity_minimum_password_age_days=1)
    uid, old = await _uid(env, "demo"), env.creds["demo"]["password"]
    token, _ = await env.login("demo")
    # The bootstrap password was set by no self-service change: it may be changed now.
    assert await _change(env, uid, token, old, "aged-1") == 204
    token, _ = await env.login("demo", "aged-1")
    resp = await env.client.post(
        f"{IDN}/users/{uid}/password",
        json={"user": {"original_password": "aged-1", "password": "aged-2"}},
        headers={"X-Auth-Token": token},
    )
    assert resp.status_code == 400 and "minimum password age" in resp.json()["error"]["message"]
    async with env.db.write() as conn:
        await conn.execute(users.update().where(users.c.id == uid).values(password_created_at=utcnow() - dt.timedelta(days=2)))
    assert await _change(env, uid, token, "aged-1", "aged-2") == 204
