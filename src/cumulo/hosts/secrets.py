"""Secrets shared by every process of one cloud, kept in the database they share (issue 14).

`secret(db, name)` returns the named 32-byte key, made on first use (an INSERT that loses the race
to another process reads the winner's). `sign`/`verify` make and check short-lived tokens bound to
a purpose and a subject: an agent's transfer endpoint accepts a migration's files with one, the
image service hands an image's bytes to a compute host with one. A token is
`<expiry>.<hex hmac-sha256(key, purpose|subject|expiry)>`; nothing else is needed to check it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
import time

import sqlalchemy as sa

from cumulo.db import Database
from cumulo.hosts.models import cluster_secrets


async def secret(db: Database, name: str) -> bytes:
    async with db.read() as conn:
        got = (await conn.execute(sa.select(cluster_secrets.c.value).where(cluster_secrets.c.name == name))).scalar()
    if got is None:
        try:
            async with db.write() as conn:
                await conn.execute(sa.insert(cluster_secrets).values(name=name, value=_secrets.token_hex(32)))
        except sa.exc.IntegrityError:
            pass  # another process made it first
        async with db.read() as conn:
            got = (await conn.execute(sa.select(cluster_secrets.c.value)
                                      .where(cluster_secrets.c.name == name))).scalar_one()
    return bytes.fromhex(str(got))


def sign(key: bytes, purpose: str, subject: str, ttl: float = 300.0, *, now: float | None = None) -> str:
    expiry = int((time.time() if now is None else now) + ttl)
    mac = hmac.new(key, f"{purpose}|{subject}|{expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{expiry}.{mac}"


def verify(key: bytes, purpose: str, subject: str, token: str, *, now: float | None = None) -> bool:
    """Whether `token` was signed with `key` for this purpose and subject and has not expired."""
    expiry_s, _, mac = token.partition(".")
    # ASCII digits only: str.isdigit() takes "²" (a latin-1 header byte), which int() refuses
    if not (expiry_s.isascii() and expiry_s.isdigit() and len(expiry_s) <= 12) or len(mac) != 64 or not mac.isascii():
        return False
    if int(expiry_s) < (time.time() if now is None else now):
        return False
    want = hmac.new(key, f"{purpose}|{subject}|{expiry_s}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, mac)
