"""Password hashing with argon2id. Hashing is deliberately slow, so it runs off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2-cffi's defaults follow RFC 9106's low-memory profile.
# Verified against when the user does not exist, so a wrong name costs as much as a wrong password:
# made by the hasher in force (its cost), at its first use.
_DUMMY: tuple[PasswordHasher, str] | None = None


def configure(time_cost: int, memory_kib: int, parallelism: int) -> None:
    """The cost of new hashes in this process (`cumulo up` sets it from the settings, as Keystone's
    password_hash_rounds). A stored hash names its own cost, so verifying never depends on this."""
    if time_cost < 1 or parallelism < 1 or memory_kib < 8 * parallelism:
        raise ValueError(f"argon2 needs password_hash_time_cost >= 1, password_hash_parallelism >= 1 and "
                         f"password_hash_memory_kib >= 8 per lane (got {time_cost}, {parallelism}, {memory_kib})")
    global _HASHER
    _HASHER = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def _dummy_hash() -> str:
    global _DUMMY
    hasher = _HASHER
    if _DUMMY is None or _DUMMY[0] is not hasher:
        _DUMMY = (hasher, hasher.hash(secrets.token_urlsafe(16)))
    return _DUMMY[1]


def generate_password() -> str:
    return secrets.token_urlsafe(18)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def matches(stored: str, password: str) -> bool:
    """One blocking argon2 verification (call it from a thread)."""
    return _verify(stored, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; always spends one argon2 verification."""
    return await asyncio.to_thread(_verify, stored, password)
