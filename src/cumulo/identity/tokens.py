"""Opaque bearer tokens: random strings, stored only as SHA-256, with a validation cache.

Validation happens on every API request, so a resolved token is cached in memory keyed by its
hash until it expires. Any identity change that could alter a token's meaning (revocation, user,
project, role or assignment changes) bumps the cache generation and empties it; a DB read that
started before such a change is then not cached. Entries are also re-read after MAX_AGE seconds so
that another API process's revocations are seen within that bound.

Revocation works as Keystone's revocation events do: removing a role, disabling or deleting a user
or project, a password change and DELETE /v3/auth/tokens record an event naming a user, a project
and/or a token's audit id, and a token issued at or before an event that matches it is refused for
good, even once the access comes back. The check is one indexed query on a cache miss; an event is
pruned once no live token was issued before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.identity.models import revocation_events, tokens


def new_token() -> str:
    return secrets.token_urlsafe(32)


def new_audit_id() -> str:
    # Keystone audit ids: 16 random bytes, URL-safe base64 without padding (22 characters).
    return secrets.token_urlsafe(16)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class RoleRef:
    id: str
    name: str


@dataclass(frozen=True)
class AppCredRef:
    """The application credential a token was made with, as the token body shows it."""

    id: str
    name: str
    unrestricted: bool


@dataclass(frozen=True)
class TokenInfo:
    """Everything a token means right now; enough to render Keystone's token body."""

    token_hash: str
    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    roles: tuple[RoleRef, ...]  # effective: assigned plus implied
    methods: tuple[str, ...]
    issued_at: dt.datetime
    expires_at: dt.datetime
    audit_id: str
    audit_chain_id: str | None
    ctx: RequestContext
    app_cred: AppCredRef | None = None

    @property
    def audit_ids(self) -> list[str]:
        return [self.audit_id] + ([self.audit_chain_id] if self.audit_chain_id else [])


class TokenCache:
    MAX_ENTRIES = 20000
    MAX_AGE = 30.0

    def __init__(self) -> None:
        self._entries: dict[str, tuple[TokenInfo, float]] = {}
        self.generation = 0

    def get(self, token_hash: str, now: dt.datetime) -> TokenInfo | None:
        hit = self._entries.get(token_hash)
        if hit is None:
            return None
        info, loaded = hit
        if info.expires_at <= now or time.monotonic() - loaded > self.MAX_AGE:
            del self._entries[token_hash]
            return None
        return info

    def put(self, info: TokenInfo, generation: int) -> None:
        """Cache `info` unless something changed since the read that produced it began."""
        if generation != self.generation:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()  # rare; cheaper than LRU bookkeeping on every hit
        self._entries[info.token_hash] = (info, time.monotonic())

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


async def insert(
    conn: AsyncConnection,
    *,
    token_hash: str,
    user_id: str,
    project_id: str | None,
    methods: Sequence[str],
    role_names: Sequence[str],
    issued_at: dt.datetime,
    expires_at: dt.datetime,
    audit_id: str,
    audit_chain_id: str | None,
    app_cred_id: str | None = None,
) -> None:
    await conn.execute(
        tokens.insert().values(
            app_cred_id=app_cred_id,
            token_hash=token_hash,
            user_id=user_id,
            project_id=project_id,
            methods=list(methods),
            roles=list(role_names),
            issued_at=issued_at,
            expires_at=expires_at,
            revoked=False,
            audit_id=audit_id,
            audit_chain_id=audit_chain_id,
        )
    )


async def load(conn: AsyncConnection, token_hash: str) -> sa.Row[tuple[object, ...]] | None:
    res = await conn.execute(sa.select(tokens).where(tokens.c.token_hash == token_hash))
    return res.first()


async def revoke_where(conn: AsyncConnection, *conditions: sa.ColumnElement[bool]) -> int:
    res = await conn.execute(
        tokens.update().where(tokens.c.revoked.is_(False), *conditions).values(revoked=True)
    )
    return int(res.rowcount)


async def purge_expired(conn: AsyncConnection, now: dt.datetime) -> None:
    """Drop expired tokens, then the revocation events that no live token predates."""
    await conn.execute(tokens.delete().where(tokens.c.expires_at < now))
    oldest_live = await conn.scalar(sa.select(sa.func.min(tokens.c.issued_at)).where(tokens.c.expires_at >= now))
    cutoff = now if oldest_live is None else min(now, oldest_live)
    await conn.execute(revocation_events.delete().where(revocation_events.c.issued_before < cutoff))


async def record_revocation(
    conn: AsyncConnection,
    *,
    user_id: str | None = None,
    project_id: str | None = None,
    audit_id: str | None = None,
    when: dt.datetime | None = None,
) -> None:
    """Every token matching the given fields and issued at or before `when` (now) is revoked."""
    if user_id is None and project_id is None and audit_id is None:
        raise ValueError("a revocation event must name a user, a project or an audit id")
    now = utcnow()
    await conn.execute(
        revocation_events.insert().values(
            user_id=user_id, project_id=project_id, audit_id=audit_id, issued_before=when or now, revoked_at=now
        )
    )


async def is_revoked(
    conn: AsyncConnection, *, user_id: str, project_id: str | None, audit_id: str, issued_at: dt.datetime
) -> bool:
    """Whether a revocation event matches this token: each field the event names equals the
    token's, and the token was issued at or before the event."""
    ev = revocation_events.c
    # One of the indexed columns names this token (that drives the lookup); every named field
    # matches; LIMIT 1 stops at the first hit. All in SQL: no rows come back to Python.
    anchor = [ev.user_id == user_id, ev.audit_id == audit_id]
    if project_id is not None:
        anchor.append(ev.project_id == project_id)
    query = (
        sa.select(sa.literal(1))
        .where(
            sa.or_(*anchor),
            ev.issued_before >= issued_at,
            sa.or_(ev.user_id.is_(None), ev.user_id == user_id),
            ev.project_id.is_(None) if project_id is None else sa.or_(ev.project_id.is_(None), ev.project_id == project_id),
            sa.or_(ev.audit_id.is_(None), ev.audit_id == audit_id),
        )
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None
