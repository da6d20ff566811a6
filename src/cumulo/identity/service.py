"""The identity service: bootstrap, authentication, token issue/validation/revocation.

Directory administration (projects, users, roles, assignments) lives in `directory.py`; it is
reachable as `IdentityService.directory` and shares the token cache so that changes take effect on
the next request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.conf import Settings
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database, isotime, utcnow
from cumulo.identity import app_creds
from cumulo.identity import tokens as token_store
from cumulo.identity.compliance import SecurityRules, verify_login
from cumulo.identity.directory import Directory, new_id
from cumulo.identity.ec2 import EC2Credentials
from cumulo.identity.models import (
    DEFAULT_DOMAIN_ID,
    DEFAULT_DOMAIN_NAME,
    domains,
    projects,
    role_assignments,
    roles,
    tokens,
    users,
)
from cumulo.identity.passwords import generate_password, hash_password, verify_password
from cumulo.identity.tokens import AppCredRef, RoleRef, TokenCache, TokenInfo

LOG = logging.getLogger(__name__)

# One message for every failed login, so callers cannot tell unknown users from wrong passwords.
AUTH_FAILED = "The request you have made requires authentication."
SUPPORTED_METHODS = ("password", "token", "application_credential")
# (role, description) created by bootstrap; implication is fixed in cumulo.context.IMPLIED_ROLES.
BOOTSTRAP_ROLES = (
    ("admin", "Administrator of the cloud"),
    ("member", "Member of a project: may change the project's resources"),
    ("reader", "Read-only access to a project's resources"),
)
# user, project, role
BOOTSTRAP_USERS = (("admin", "admin", "admin"), ("demo", "demo", "member"))
PURGE_INTERVAL = 600.0
_MALFORMED = (
    " The server could not comply with the request since it is either malformed or otherwise"
    " incorrect. The client is assumed to be in error."
)


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    token: str
    info: TokenInfo


class IdentityService:
    def __init__(self, db: Database, conf: Settings) -> None:
        self.db = db
        self.conf = conf
        self.cache = TokenCache()
        self.rules = SecurityRules.from_settings(conf)
        self.directory = Directory(db, self.cache, self.rules)
        self.app_creds = app_creds.AppCredentials(db, self.cache)
        self.ec2 = EC2Credentials(db, conf.state_dir)
        self._last_purge = 0.0

    # -- bootstrap --------------------------------------------------------------------------

    async def bootstrap(self) -> dict[str, dict[str, str]]:
        """Idempotently create the Default domain, roles, admin/demo projects and users.

        Returns the generated credentials of users created by this call only.
        """
        created: dict[str, dict[str, str]] = {}
        async with self.db.write() as conn:
            if (
                await conn.execute(sa.select(domains.c.id).where(domains.c.id == DEFAULT_DOMAIN_ID))
            ).first() is None:
                await conn.execute(
                    domains.insert().values(
                        id=DEFAULT_DOMAIN_ID,
                        name=DEFAULT_DOMAIN_NAME,
                        description="The default domain",
                        enabled=True,
                    )
                )
            role_ids: dict[str, str] = {}
            for name, description in BOOTSTRAP_ROLES:
                rid = await conn.scalar(sa.select(roles.c.id).where(roles.c.name == name))
                if rid is None:
                    rid = new_id()
                    await conn.execute(
                        roles.insert().values(id=rid, name=name, description=description, immutable=True)
                    )
                role_ids[name] = rid
            for user_name, project_name, role_name in BOOTSTRAP_USERS:
                pid = await conn.scalar(
                    sa.select(projects.c.id).where(
                        projects.c.domain_id == DEFAULT_DOMAIN_ID, projects.c.name == project_name
                    )
                )
                if pid is None:
                    pid = new_id()
                    await conn.execute(
                        projects.insert().values(
                            id=pid,
                            name=project_name,
                            domain_id=DEFAULT_DOMAIN_ID,
                            description=f"Bootstrap project {project_name}",
                            enabled=True,
                            tags=[],
                        )
                    )
                uid = await conn.scalar(
                    sa.select(users.c.id).where(
                        users.c.domain_id == DEFAULT_DOMAIN_ID, users.c.name == user_name
                    )
                )
                if uid is None:
                    uid = new_id()
                    password = generate_password()
                    await conn.execute(
                        users.insert().values(
                            id=uid,
                            name=user_name,
                            domain_id=DEFAULT_DOMAIN_ID,
                            password_hash=await hash_password(password),
                            enabled=True,
                        )
                    )
                    created[user_name] = {"password": password, "project": project_name}
                grant = sa.select(role_assignments.c.user_id).where(
                    role_assignments.c.user_id == uid,
                    role_assignments.c.project_id == pid,
                    role_assignments.c.role_id == role_ids[role_name],
                )
                if (await conn.execute(grant)).first() is None:
                    await conn.execute(
                        role_assignments.insert().values(
                            user_id=uid, project_id=pid, role_id=role_ids[role_name]
                        )
                    )
        self.cache.invalidate()
        return created

    # -- lookups other services use ---------------------------------------------------------

    async def get_project(self, project_id: str) -> dict[str, Any] | None:
        return await self.directory.get_project(project_id)

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        return await self.directory.get_user(user_id)

    # -- tokens -----------------------------------------------------------------------------

    async def validate_token(self, token: str) -> RequestContext:
        """The context a token stands for; Unauthorized if unknown, expired or revoked."""
        return (await self.token_info(token)).ctx

    async def token_info(self, token: str) -> TokenInfo:
        token_hash = token_store.hash_token(token)
        now = utcnow()
        cached = self.cache.get(token_hash, now)
        if cached is not None:
            return cached
        generation = self.cache.generation
        async with self.db.read() as conn:
            row = await token_store.load(conn, token_hash)
            if row is None or row.revoked or row.expires_at <= now:
                raise errors.Unauthorized(AUTH_FAILED)
            if await token_store.is_revoked(
                conn, user_id=row.user_id, project_id=row.project_id, audit_id=row.audit_id, issued_at=row.issued_at
            ):
                raise errors.Unauthorized(AUTH_FAILED)
            info = await self._resolve(
                conn,
                token_hash=token_hash,
                user_id=row.user_id,
                project_id=row.project_id,
                methods=tuple(row.methods),
                issued_at=row.issued_at,
                expires_at=row.expires_at,
                audit_id=row.audit_id,
                audit_chain_id=row.audit_chain_id,
                app_cred_id=row.app_cred_id,
            )
        self.cache.put(info, generation)
        return info

    async def subject_token(self, token: str) -> TokenInfo:
        """A token named by X-Subject-Token: a bad one is 404, as Keystone answers."""
        try:
            return await self.token_info(token)
        except errors.Unauthorized:
            raise errors.NotFound("Failed to validate token") from None

    async def revoke_token(self, token: str) -> None:
        """DELETE /v3/auth/tokens: this token only (by its audit id, as Keystone records it)."""
        token_hash = token_store.hash_token(token)
        async with self.db.write() as conn:
            row = await token_store.load(conn, token_hash)
            await token_store.revoke_where(conn, tokens.c.token_hash == token_hash)
            if row is not None:
                await token_store.record_revocation(conn, audit_id=row.audit_id, when=row.issued_at)
        self.cache.invalidate()

    async def authenticate(self, identity: dict[str, Any], scope: Any) -> IssuedToken:
        """Issue a token for a (schema-checked) `auth.identity` and `auth.scope`."""
        methods = list(dict.fromkeys(identity["methods"]))
        if not methods or any(m not in SUPPORTED_METHODS for m in methods):
            raise errors.Unauthorized("Attempted to authenticate with an unsupported method.")
        for m in methods:
            if m not in identity:
                raise errors.Invalid(f"Expecting to find {m} in identity." + _MALFORMED)
        user_id: str | None = None
        parent: TokenInfo | None = None
        app_cred_id: str | None = None
        if "application_credential" in methods:
            if len(methods) > 1:
                raise errors.Unauthorized("The application_credential method cannot be combined with others.")
            if scope is not None:
                # Keystone: the credential fixes the scope.
                raise errors.Unauthorized(
                    "Error authenticating with application credential: "
                    "Application credentials cannot request a scope."
                )
            user_id, app_cred_id = await self._check_app_cred(identity["application_credential"])
        if "token" in methods:
            # An unknown, expired or revoked token here is a 404, as Keystone's token plugin answers.
            parent = await self.subject_token(identity["token"]["id"])
            user_id = parent.user_id
            if parent.app_cred is not None:
                if scope is not None:
                    raise errors.Forbidden(
                        "You are not authorized to perform the requested action: Using an application"
                        " credential token to create a scoped token is not allowed."
                    )
                app_cred_id = parent.app_cred.id
        if "password" in methods:
            pw_user = await self._check_password(identity["password"]["user"])
            if user_id is not None and user_id != pw_user:
                raise errors.Unauthorized(AUTH_FAILED)
            user_id = pw_user
        assert user_id is not None
        issued_at = utcnow()
        expires_at = issued_at + dt.timedelta(seconds=self.conf.token_ttl_seconds)
        audit_chain_id = None
        token_methods = methods
        if parent is not None:
            # A re-scoped token never outlives the one it came from (Keystone's rule).
            expires_at = min(expires_at, parent.expires_at)
            audit_chain_id = parent.audit_chain_id or parent.audit_id
            token_methods = list(dict.fromkeys(methods + list(parent.methods)))
        token = token_store.new_token()
        token_hash = token_store.hash_token(token)
        audit_id = token_store.new_audit_id()
        async with self.db.write() as conn:
            user = await self._enabled_user(conn, user_id)
            if app_cred_id is not None:
                cred_row = await app_creds.load_for_auth(conn, {"id": app_cred_id}, None)
                if cred_row is None or (cred_row.expires_at is not None and cred_row.expires_at <= issued_at):
                    raise errors.Unauthorized(AUTH_FAILED)
                project_id: str | None = str(cred_row.project_id)
                if cred_row.expires_at is not None:
                    # A token never outlives its credential (Keystone, CVE-2022-2447).
                    expires_at = min(expires_at, cred_row.expires_at)
            else:
                project_id = await self._scope_project(conn, user, scope, use_default="password" in methods)
            info = await self._resolve(
                conn,
                token_hash=token_hash,
                user_id=user_id,
                project_id=project_id,
                methods=tuple(token_methods),
                issued_at=issued_at,
                expires_at=expires_at,
                audit_id=audit_id,
                audit_chain_id=audit_chain_id,
                app_cred_id=app_cred_id,
            )
            await token_store.insert(
                conn,
                token_hash=token_hash,
                user_id=user_id,
                project_id=project_id,
                methods=token_methods,
                role_names=[r.name for r in info.roles],
                issued_at=issued_at,
                expires_at=expires_at,
                audit_id=audit_id,
                audit_chain_id=audit_chain_id,
                app_cred_id=app_cred_id,
            )
            if time.monotonic() - self._last_purge > PURGE_INTERVAL:
                self._last_purge = time.monotonic()
                await token_store.purge_expired(conn, issued_at)
        return IssuedToken(token=token, info=info)

    # -- internals --------------------------------------------------------------------------

    async def _check_password(self, spec: dict[str, Any]) -> str:
        """The id of the user `spec` names if its password matches; Unauthorized otherwise."""
        async with self.db.read() as conn:
            query = sa.select(users)
            if "id" in spec:
                query = query.where(users.c.id == spec["id"])
            else:
                if "domain" not in spec:
                    raise errors.Invalid("Expecting to find domain in user." + _MALFORMED)
                domain_id = await self._domain_id(conn, spec["domain"])
                query = query.where(users.c.name == spec["name"], users.c.domain_id == (domain_id or ""))
            row = (await conn.execute(query)).first()
        # Always one argon2 verification, found or not (locked or not), so timing does not
        # enumerate users; failures count toward the lockout when it is on.
        if row is None or not await verify_login(self.db, self.rules, row, spec["password"]):
            raise errors.Unauthorized(AUTH_FAILED)
        return str(row.id)

    async def _check_app_cred(self, spec: dict[str, Any]) -> tuple[str, str]:
        """(user id, credential id) if the secret matches a live credential; Unauthorized otherwise."""
        async with self.db.read() as conn:
            user_id: str | None = None
            if "id" not in spec:
                if "user" not in spec:
                    raise errors.Invalid("Expecting to find id or name and user in application_credential." + _MALFORMED)
                user_id = await self._user_id(conn, spec["user"])
            row = await app_creds.load_for_auth(conn, spec, user_id)
        # Always one argon2 verification, found or not, so timing does not enumerate credentials.
        ok = await verify_password(row.secret_hash if row is not None else None, spec["secret"])
        if row is None or not ok or (row.expires_at is not None and row.expires_at <= utcnow()):
            raise errors.Unauthorized(AUTH_FAILED)
        return str(row.user_id), str(row.id)

    async def _user_id(self, conn: AsyncConnection, ref: dict[str, Any]) -> str | None:
        if "id" in ref:
            return str(ref["id"])
        if "domain" not in ref:
            raise errors.Invalid("Expecting to find domain in user." + _MALFORMED)
        domain_id = await self._domain_id(conn, ref["domain"])
        found = await conn.scalar(
            sa.select(users.c.id).where(users.c.name == ref["name"], users.c.domain_id == (domain_id or ""))
        )
        return None if found is None else str(found)

    async def _domain_id(self, conn: AsyncConnection, ref: dict[str, Any]) -> str | None:
        query = sa.select(domains.c.id).where(domains.c.enabled.is_(True))
        if "id" in ref:
            query = query.where(domains.c.id == ref["id"])
        else:
            query = query.where(domains.c.name == ref["name"])
        found = await conn.scalar(query)
        return None if found is None else str(found)

    async def _enabled_user(self, conn: AsyncConnection, user_id: str) -> sa.Row[Any]:
        row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        if row is None or not row.enabled:
            raise errors.Unauthorized(AUTH_FAILED)
        return row

    async def _scope_project(
        self, conn: AsyncConnection, user: sa.Row[Any], scope: Any, *, use_default: bool
    ) -> str | None:
        if scope == "unscoped":
            return None
        if scope is None:
            # Keystone scopes to the user's default project when it is usable, else unscoped.
            default = user.default_project_id
            if use_default and default and await self._assigned_roles(conn, user.id, default):
                row = (
                    await conn.execute(sa.select(projects.c.enabled).where(projects.c.id == default))
                ).first()
                if row is not None and row.enabled:
                    return str(default)
            return None
        if "project" not in scope:
            # Domain and system scopes: nobody holds roles there in Cumulo.
            raise errors.Unauthorized(f"User {user.id} has no access to the requested scope.")
        ref = scope["project"]
        query = sa.select(projects.c.id, projects.c.enabled)
        if "id" in ref:
            query = query.where(projects.c.id == ref["id"])
        else:
            if "domain" not in ref:
                raise errors.Invalid("Expecting to find domain in project." + _MALFORMED)
            domain_id = await self._domain_id(conn, ref["domain"])
            query = query.where(projects.c.name == ref["name"], projects.c.domain_id == (domain_id or ""))
        row = (await conn.execute(query)).first()
        if row is None:
            raise errors.Unauthorized(f"Could not find project: {ref.get('id') or ref.get('name')}.")
        if not row.enabled:
            raise errors.Unauthorized(f"Project {row.id} is disabled.")
        if not await self._assigned_roles(conn, user.id, row.id):
            raise errors.Unauthorized(f"User {user.id} has no access to project {row.id}")
        return str(row.id)

    async def _assigned_roles(self, conn: AsyncConnection, user_id: str, project_id: str) -> list[str]:
        res = await conn.execute(
            sa.select(roles.c.name)
            .select_from(role_assignments.join(roles, roles.c.id == role_assignments.c.role_id))
            .where(role_assignments.c.user_id == user_id, role_assignments.c.project_id == project_id)
        )
        return [str(r) for r in res.scalars()]

    async def _resolve(
        self,
        conn: AsyncConnection,
        *,
        token_hash: str,
        user_id: str,
        project_id: str | None,
        methods: tuple[str, ...],
        issued_at: dt.datetime,
        expires_at: dt.datetime,
        audit_id: str,
        audit_chain_id: str | None,
        app_cred_id: str | None = None,
    ) -> TokenInfo:
        """What a token means now: enabled user, enabled project, effective roles (for a token made
        with an application credential: those of the live credential the user still holds)."""
        user = await self._enabled_user(conn, user_id)
        project_name = None
        role_refs: tuple[RoleRef, ...] = ()
        role_names: frozenset[str] = frozenset()
        cred: AppCredRef | None = None
        cred_roles: set[str] | None = None
        if app_cred_id is not None:
            loaded = await app_creds.load_ref(conn, app_cred_id, utcnow())
            if loaded is None:
                raise errors.Unauthorized(AUTH_FAILED)
            cred, ids = loaded
            cred_roles = set(ids)
        if project_id is not None:
            project = (await conn.execute(sa.select(projects).where(projects.c.id == project_id))).first()
            if project is None or not project.enabled:
                raise errors.Unauthorized(AUTH_FAILED)
            project_name = str(project.name)
            assigned = await self._assigned_roles(conn, user_id, project_id)
            if not assigned:
                raise errors.Unauthorized(AUTH_FAILED)
            role_names = expand_roles(assigned)
            res = await conn.execute(
                sa.select(roles.c.id, roles.c.name).where(roles.c.name.in_(sorted(role_names)))
            )
            role_refs = tuple(sorted((RoleRef(str(r.id), str(r.name)) for r in res), key=lambda r: r.name))
            if cred_roles is not None:
                role_refs = tuple(r for r in role_refs if r.id in cred_roles)
                role_names = frozenset(r.name for r in role_refs)
                if not role_refs:
                    raise errors.Unauthorized(AUTH_FAILED)
        ctx = RequestContext(
            user_id=user_id,
            project_id=project_id,
            roles=role_names,
            user_name=str(user.name),
            project_name=project_name,
            domain_id=DEFAULT_DOMAIN_ID,
            token_expires_at=isotime(expires_at, micro=True),
        )
        return TokenInfo(
            token_hash=token_hash,
            user_id=user_id,
            user_name=str(user.name),
            project_id=project_id,
            project_name=project_name,
            roles=role_refs,
            methods=methods,
            issued_at=issued_at,
            expires_at=expires_at,
            audit_id=audit_id,
            audit_chain_id=audit_chain_id,
            ctx=ctx,
            app_cred=cred,
        )
