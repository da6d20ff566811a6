"""Password hashing with argon2id. Hashing is deliberately slow, so it runs off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2-cffi's defaults follow RFC 9106's low-memory profile.
# Verified against when the user does not exist, so a wrong name costs as much as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def generate_password() -> str:
    return secrets.token_urlsafe(18)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def matches(stored: str, password: str) -> bool:
    """One blocking argon2 verification (call it from a thread)."""
    return _verify(stored, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; always spends one argon2 verification."""
    return await asyncio.to_thread(_verify, stored, password)
