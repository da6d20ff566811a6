"""Keystone's [security_compliance] rules, off by default as in Keystone:

- lockout: after `lockout_failure_attempts` consecutive failed password logins, the user cannot
  log in with a password (not even the right one) for `lockout_duration` seconds (0: until an
  admin sets enabled=true on it). A success resets the count. Cumulo answers a locked user with
  the same 401 as any failed login, so a lockout does not tell a caller that the user exists.
- password history: a self-service change may not reuse any of the last `unique_last_password_count`
  passwords (the current one included), checked against their argon2id hashes.
- minimum password age: a password set by self-service cannot be changed by self-service again
  for `minimum_password_age_days` days (an admin may always reset it).
Each login verification still costs one argon2 verification, locked or not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.conf import Settings
from cumulo.db import Database, utcnow
from cumulo.identity.models import users
from cumulo.identity.passwords import matches, verify_password

HISTORY_KEEP = 24


@dataclass(frozen=True)
class SecurityRules:
    lockout_failure_attempts: int = 0
    lockout_duration: int = 1800
    unique_last_password_count: int = 0
    minimum_password_age_days: int = 0

    @classmethod
    def from_settings(cls, conf: Settings) -> SecurityRules:
        return cls(
            lockout_failure_attempts=max(0, conf.identity_lockout_failure_attempts),
            lockout_duration=max(0, conf.identity_lockout_duration),
            unique_last_password_count=min(HISTORY_KEEP, max(0, conf.identity_unique_last_password_count)),
            minimum_password_age_days=max(0, conf.identity_minimum_password_age_days),
        )

    def locked(self, row: Any, now: dt.datetime) -> bool:
        attempts = self.lockout_failure_attempts
        if not attempts or (row.failed_auth_count or 0) < attempts:
            return False
        if not self.lockout_duration:
            return True
        return row.failed_auth_at is not None and row.failed_auth_at + dt.timedelta(seconds=self.lockout_duration) > now


async def verify_login(db: Database, rules: SecurityRules, row: Any, password: str) -> bool:
    """Whether `password` logs `row` (a users row, or None) in, counting failures for lockout."""
    ok = await verify_password(row.password_hash if row is not None else None, password)
    if row is None:
        return False
    now = utcnow()
    if rules.locked(row, now):
        return False
    if not rules.lockout_failure_attempts:
        return ok
    count = users.c.failed_auth_count
    async with db.write() as conn:
        if not ok:
            # A lock that has run out starts the count again (Keystone's reset).
            await conn.execute(
                users.update()
                .where(users.c.id == row.id)
                .values(
                    failed_auth_count=sa.case(
                        (sa.func.coalesce(count, 0) >= rules.lockout_failure_attempts, 1),
                        else_=sa.func.coalesce(count, 0) + 1,
                    ),
                    failed_auth_at=now,
                )
            )
        elif row.failed_auth_count:
            await conn.execute(
                users.update().where(users.c.id == row.id).values(failed_auth_count=0, failed_auth_at=None)
            )
    return ok


def check_password_age(rules: SecurityRules, row: Any) -> None:
    days = rules.minimum_password_age_days
    if not days or not row.password_self_service or row.password_created_at is None:
        return
    until = row.password_created_at + dt.timedelta(days=days)
    now = utcnow()
    if now < until:
        raise errors.Invalid(
            "You cannot change your password at this time due to the minimum password age. Once you"
            f" change your password, it must be used for {days} day(s) before it can be changed."
            f" Please try again in {(until - now).days} day(s) or contact your administrator to reset"
            " your password."
        )


async def check_history(rules: SecurityRules, row: Any, new_password: str) -> None:
    n = rules.unique_last_password_count
    if not n:
        return
    recent = ([row.password_hash] if row.password_hash else []) + list(row.password_history or [])[::-1]
    for stored in recent[:n]:
        if await asyncio.to_thread(matches, stored, new_password):
            raise errors.Invalid(
                "The new password cannot be identical to a previous password. The total number which"
                f" includes the new password must be unique is {n}."
            )


def history_after_change(row: Any) -> list[str] | None:
    """The history once the current hash is replaced: the current one appended, capped."""
    history = list(row.password_history or [])
    if row.password_hash:
        history.append(row.password_hash)
    return history[-HISTORY_KEEP:] or None
