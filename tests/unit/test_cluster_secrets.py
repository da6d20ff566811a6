"""Cluster secrets shared through the database, and the tokens signed with them (hosts/secrets.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cumulo.db import Database
from cumulo.hosts import secrets


async def test_one_secret_per_name_even_when_processes_race(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    await db.create_all()
    try:
        got = await asyncio.gather(*(secrets.secret(db, "transfer") for _ in range(8)))
        assert len(set(got)) == 1 and len(got[0]) == 32
        assert await secrets.secret(db, "image") != got[0]
    finally:
        await db.dispose()


def test_a_token_holds_for_its_purpose_subject_and_lifetime_only() -> None:
    key, other = b"k" * 32, b"o" * 32
    tok = secrets.sign(key, "transfer", "mig-1|host-b", ttl=60, now=1000.0)
    assert secrets.verify(key, "transfer", "mig-1|host-b", tok, now=1059.0)
    assert not secrets.verify(key, "transfer", "mig-1|host-b", tok, now=1061.0)  # expired
    assert not secrets.verify(key, "transfer", "mig-1|host-c", tok, now=1000.0)  # another host
    assert not secrets.verify(key, "image", "mig-1|host-b", tok, now=1000.0)  # another purpose
    assert not secrets.verify(other, "transfer", "mig-1|host-b", tok, now=1000.0)  # another cloud
    expiry, _, mac = tok.partition(".")
    assert not secrets.verify(key, "transfer", "mig-1|host-b", f"{int(expiry) + 100}.{mac}", now=1000.0)
    for bad in ("", ".", "abc", "1000.", "x.y", f"{expiry}.{'0' * 63}"):
        assert not secrets.verify(key, "transfer", "mig-1|host-b", bad, now=1000.0)


def test_a_hostile_token_is_refused_never_raises() -> None:
    """Headers are latin-1: "²" passes str.isdigit() but not int(), and a non-ASCII mac made
    hmac.compare_digest raise TypeError: both were 500s of the transfer endpoint and image API."""
    key = b"k" * 32
    tok = secrets.sign(key, "transfer", "m|h", ttl=60, now=1000.0)
    expiry, _, mac = tok.partition(".")
    sup2, e_acute, sup1 = "\u00b2", "\u00e9", "\u00b9"
    for bad in (f"{sup2}.{mac}", f"{expiry}.{e_acute * 64}", f"{'9' * 40}.{mac}", f"{expiry}{sup1}.{mac}"):
        assert not secrets.verify(key, "transfer", "m|h", bad, now=1000.0)
