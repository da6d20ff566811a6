"""Keystone's application credentials: a user delegates a subset of its roles on one project to a
secret that an application authenticates with (method "application_credential").

- The secret is generated unless given, shown once (in the create response) and stored as an
  argon2id hash only, like a password.
- Roles are a subset of the creator's effective roles on the token's project (all of them by
  default); implied roles are added, as Keystone does.
- A token made with one carries its id: deleting the credential deletes those tokens (ON DELETE
  CASCADE) and validation re-reads the credential, so an expired or deleted credential's tokens
  stop at once. A user losing a role on the project loses the credentials for that project
  (Keystone's rule), and the revocation event Directory.revoke_grant records keeps those tokens
  dead. Access rules are not implemented.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import expand_roles
from cumulo.db import Database, utcnow
from cumulo.identity.directory import new_id
from cumulo.identity.models import application_credentials, role_assignments, roles
from cumulo.identity.passwords import hash_password
from cumulo.identity.tokens import AppCredRef, TokenCache, TokenInfo

# Keystone's default [application_credential] user_limit is unlimited; a bound keeps one user from
# filling the table.
USER_LIMIT = 100


def generate_secret() -> str:
    # 64 random bytes, URL-safe base64 without padding, as Keystone generates them.
    return base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()


def parse_expiry(value: str) -> dt.datetime:
    """An ISO 8601 time as naive UTC (Keystone's storage form); Invalid otherwise."""
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for field 'application_credential/expires_at': {value!r} is not an ISO 8601 time."
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


async def effective_role_ids(conn: AsyncConnection, user_id: str, project_id: str) -> dict[str, str]:
    """{role id: name} of the user's effective (assigned plus implied) roles on the project."""
    res = await conn.execute(
        sa.select(roles.c.name)
        .select_from(role_assignments.join(roles, roles.c.id == role_assignments.c.role_id))
        .where(role_assignments.c.user_id == user_id, role_assignments.c.project_id == project_id)
    )
    names = expand_roles([str(n) for n in res.scalars()])
    found = await conn.execute(sa.select(roles.c.id, roles.c.name).where(roles.c.name.in_(sorted(names))))
    return {str(r.id): str(r.name) for r in found}


class AppCredentials:
    def __init__(self, db: Database, cache: TokenCache) -> None:
        self.db = db
        self.cache = cache

    async def create(self, creator: TokenInfo, user_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Create for the caller's own user on its token's project; returns the row plus `secret`."""
        if creator.project_id is None:
            raise errors.Invalid(
                "Invalid application credential: a project-scoped token is required to create one."
            )
        secret = fields.get("secret") or generate_secret()
        expires_at = parse_expiry(fields["expires_at"]) if fields.get("expires_at") else None
        if expires_at is not None and expires_at <= utcnow():
            raise errors.Invalid(
                "Invalid input for field 'application_credential/expires_at': the time is in the past."
            )
        secret_hash = await hash_password(secret)  # slow on purpose: before the write lock
        cid = new_id()
        async with self.db.write() as conn:
            have = await effective_role_ids(conn, user_id, creator.project_id)
            token_roles = {r.id for r in creator.roles}
            if fields.get("roles"):
                wanted = await self._resolve_roles(conn, fields["roles"])
                names = expand_roles(list(wanted.values()))
                res = await conn.execute(sa.select(roles.c.id).where(roles.c.name.in_(sorted(names))))
                chosen = {str(r) for r in res.scalars()}
                missing = sorted(chosen - (token_roles & set(have)))
                if missing:
                    raise errors.Invalid(
                        "Invalid application credential: Cannot create an application credential with"
                        f" unassigned role: {', '.join(missing)}."
                    )
            else:
                chosen = token_roles & set(have)
            if not chosen:
                raise errors.Invalid("Invalid application credential: the user has no role on the project.")
            count = await conn.scalar(
                sa.select(sa.func.count()).where(application_credentials.c.user_id == user_id)
            )
            if int(count or 0) >= USER_LIMIT:
                raise errors.Forbidden(f"Unable to create additional application credentials, maximum of {USER_LIMIT} already exceeded for user.")
            try:
                await conn.execute(
                    application_credentials.insert().values(
                        id=cid,
                        name=fields["name"],
                        description=fields.get("description"),
                        user_id=user_id,
                        project_id=creator.project_id,
                        secret_hash=secret_hash,
                        expires_at=expires_at,
                        unrestricted=bool(fields.get("unrestricted")),
                        roles=sorted(chosen),
                    )
                )
            except IntegrityError:
                raise errors.Conflict(
                    "Conflict occurred attempting to store application_credential - Duplicate entry."
                ) from None
            created = await self._get(conn, cid)
        assert created is not None
        return {**created, "secret": secret}

    async def for_user(self, user_id: str, name: str | None = None) -> list[dict[str, Any]]:
        query = (
            sa.select(application_credentials)
            .where(application_credentials.c.user_id == user_id)
            .order_by(application_credentials.c.name)
        )
        if name is not None:
            query = query.where(application_credentials.c.name == name)
        async with self.db.read() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
            return [await self._with_roles(conn, r) for r in rows]

    async def get(self, user_id: str, cred_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            found = await self._get(conn, cred_id)
        if found is None or found["user_id"] != user_id:
            raise errors.NotFound(f"Could not find Application Credential: {cred_id}.")
        return found

    async def delete(self, user_id: str, cred_id: str) -> None:
        async with self.db.write() as conn:
            # Its tokens go with it (ON DELETE CASCADE).
            res = await conn.execute(
                application_credentials.delete().where(
                    application_credentials.c.id == cred_id, application_credentials.c.user_id == user_id
                )
            )
            if res.rowcount == 0:
                raise errors.NotFound(f"Could not find Application Credential: {cred_id}.")
        self.cache.invalidate()

    async def _get(self, conn: AsyncConnection, cred_id: str) -> dict[str, Any] | None:
        row = (
            await conn.execute(sa.select(application_credentials).where(application_credentials.c.id == cred_id))
        ).first()
        return None if row is None else await self._with_roles(conn, dict(row._mapping))

    async def _with_roles(self, conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
        ids = list(row["roles"] or [])
        res = await conn.execute(sa.select(roles).where(roles.c.id.in_(ids)).order_by(roles.c.name))
        row["role_refs"] = [dict(r._mapping) for r in res]
        row.pop("secret_hash", None)
        return row

    @staticmethod
    async def _resolve_roles(conn: AsyncConnection, refs: list[dict[str, str]]) -> dict[str, str]:
        """{id: name} of the roles named by id or name; Invalid (400) for an unknown one."""
        out: dict[str, str] = {}
        for ref in refs:
            query = sa.select(roles.c.id, roles.c.name)
            query = query.where(roles.c.id == ref["id"]) if "id" in ref else query.where(roles.c.name == ref["name"])
            row = (await conn.execute(query)).first()
            if row is None:
                raise errors.Invalid(
                    f"Invalid application credential: Could not find role: {ref.get('id') or ref.get('name')}."
                )
            out[str(row.id)] = str(row.name)
        return out


async def load_for_auth(conn: AsyncConnection, spec: dict[str, Any], user_id: str | None) -> sa.Row[Any] | None:
    """The credential an `application_credential` auth section names (by id, or by name and user)."""
    query = sa.select(application_credentials)
    if "id" in spec:
        query = query.where(application_credentials.c.id == spec["id"])
    else:
        if user_id is None:
            return None
        query = query.where(
            application_credentials.c.name == spec["name"], application_credentials.c.user_id == user_id
        )
    return (await conn.execute(query)).first()


async def load_ref(conn: AsyncConnection, cred_id: str, now: dt.datetime) -> tuple[AppCredRef, list[str]] | None:
    """(reference, role ids) of a live credential; None once deleted or expired."""
    row = (
        await conn.execute(sa.select(application_credentials).where(application_credentials.c.id == cred_id))
    ).first()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return AppCredRef(str(row.id), str(row.name), bool(row.unrestricted)), [str(r) for r in row.roles or []]
