"""Directory administration: the Default domain, projects, users, roles and role assignments.

Every change that could alter what an existing token means empties the token cache, and changes
that Keystone treats as revoking (removing a role, deleting a role, disabling or deleting a user or
project, a password change) record a revocation event (tokens.record_revocation), so that giving
the access back does not bring the old tokens back.
Rows come back as plain dicts with DB field names; the API turns them into Keystone shapes.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import IMPLIED_ROLES
from cumulo.db import Database, utcnow
from cumulo.identity import compliance
from cumulo.identity import tokens as token_store
from cumulo.identity.compliance import SecurityRules
from cumulo.identity.models import (
    DEFAULT_DOMAIN_ID,
    application_credentials,
    domains,
    projects,
    role_assignments,
    roles,
    tokens,
    users,
)
from cumulo.identity.passwords import hash_password
from cumulo.identity.schemas import check_extra_size
from cumulo.identity.tokens import TokenCache

PROJECT_FIELDS = ("id", "name", "domain_id", "description", "enabled", "tags", "extra")
USER_FIELDS = ("id", "name", "domain_id", "enabled", "default_project_id", "description", "email", "extra")
ROLE_FIELDS = ("id", "name", "description", "immutable")


def new_id() -> str:
    """Keystone-style ids: UUID4 as 32 hex digits."""
    return uuid.uuid4().hex


def _pick(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    m = row._mapping
    return {n: m[n] for n in names}


def _no_grant(project_id: str, user_id: str, role_id: str) -> str:
    return (
        f"Could not find role assignment with role: {role_id}, user or group: {user_id},"
        f" project, domain, or system: {project_id}."
    )


def _merged_extra(kind: str, current: Any, changes: dict[str, Any]) -> dict[str, Any] | None:
    """Keystone's PATCH on extras: the named attributes are set (null included), others kept."""
    merged = {**(current or {}), **changes}
    check_extra_size(kind, merged)
    return merged or None


def _duplicate(kind: str, name: str, domain_id: str | None = DEFAULT_DOMAIN_ID) -> errors.Conflict:
    where = f" at domain ID {domain_id}" if domain_id else ""
    return errors.Conflict(
        f"Conflict occurred attempting to store {kind} - Duplicate entry found with name {name}{where}."
    )


class Directory:
    def __init__(self, db: Database, cache: TokenCache, rules: SecurityRules | None = None) -> None:
        self.db = db
        self.cache = cache
        self.rules = rules or SecurityRules()

    # -- domains (only Default exists) -------------------------------------------------------

    async def list_domains(
        self, name: str | None = None, enabled: bool | None = None
    ) -> list[dict[str, Any]]:
        query = sa.select(domains).order_by(domains.c.name)
        if name is not None:
            query = query.where(domains.c.name == name)
        if enabled is not None:
            query = query.where(domains.c.enabled.is_(enabled))
        async with self.db.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def get_domain(self, domain_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(domains).where(domains.c.id == domain_id))).first()
        if row is None:
            raise errors.NotFound(f"Could not find domain: {domain_id}.")
        return dict(row._mapping)

    async def _check_domain(self, conn: AsyncConnection, domain_id: str) -> None:
        if (await conn.execute(sa.select(domains.c.id).where(domains.c.id == domain_id))).first() is None:
            raise errors.Invalid(f"Could not find domain: {domain_id}. Only the 'default' domain exists.")

    # -- projects ---------------------------------------------------------------------------

    async def list_projects(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        filters = filters or {}
        query = sa.select(projects).order_by(projects.c.name)
        for key in ("name", "domain_id", "id"):
            if filters.get(key) is not None:
                query = query.where(projects.c[key] == filters[key])
        if filters.get("enabled") is not None:
            query = query.where(projects.c.enabled.is_(filters["enabled"]))
        async with self.db.read() as conn:
            rows = [_pick(r, PROJECT_FIELDS) for r in await conn.execute(query)]
        tags = filters.get("tags")
        if tags:
            rows = [r for r in rows if set(tags) <= set(r["tags"])]
        return rows

    async def get_project(self, project_id: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(projects).where(projects.c.id == project_id))).first()
        return None if row is None else _pick(row, PROJECT_FIELDS)

    async def require_project(self, project_id: str) -> dict[str, Any]:
        found = await self.get_project(project_id)
        if found is None:
            raise errors.NotFound(f"Could not find project: {project_id}.")
        return found

    async def create_project(self, fields: dict[str, Any]) -> dict[str, Any]:
        pid = new_id()
        values = {
            "id": pid,
            "name": fields["name"],
            "domain_id": fields.get("domain_id") or DEFAULT_DOMAIN_ID,
            "description": fields.get("description") or "",
            "enabled": fields.get("enabled", True),
            "tags": list(fields.get("tags") or []),
            "extra": fields.get("extra") or None,
        }
        async with self.db.write() as conn:
            await self._check_domain(conn, values["domain_id"])
            await self._unique_name(conn, projects, "project", values["name"], values["domain_id"])
            try:
                await conn.execute(projects.insert().values(**values))
            except IntegrityError:
                raise _duplicate("project", values["name"], values["domain_id"]) from None
        return await self.require_project(pid)

    async def update_project(self, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(projects).where(projects.c.id == project_id))).first()
            if row is None:
                raise errors.NotFound(f"Could not find project: {project_id}.")
            if "name" in changes and changes["name"] != row.name:
                await self._unique_name(conn, projects, "project", changes["name"], row.domain_id)
            if "extra" in changes:
                changes = {**changes, "extra": _merged_extra("project", row.extra, changes["extra"])}
            if changes:
                await conn.execute(
                    projects.update()
                    .where(projects.c.id == project_id)
                    .values(**changes, updated_at=utcnow())
                )
            if changes.get("enabled") is False:
                await token_store.revoke_where(conn, tokens.c.project_id == project_id)
                await token_store.record_revocation(conn, project_id=project_id)
        self.cache.invalidate()
        return await self.require_project(project_id)

    async def delete_project(self, project_id: str) -> None:
        async with self.db.write() as conn:
            # Assignments and tokens scoped to the project go with it (ON DELETE CASCADE).
            res = await conn.execute(projects.delete().where(projects.c.id == project_id))
            if res.rowcount == 0:
                raise errors.NotFound(f"Could not find project: {project_id}.")
            await token_store.record_revocation(conn, project_id=project_id)
        self.cache.invalidate()

    # -- users ------------------------------------------------------------------------------

    async def list_users(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        filters = filters or {}
        query = sa.select(users).order_by(users.c.name)
        for key in ("name", "domain_id", "id"):
            if filters.get(key) is not None:
                query = query.where(users.c[key] == filters[key])
        if filters.get("enabled") is not None:
            query = query.where(users.c.enabled.is_(filters["enabled"]))
        async with self.db.read() as conn:
            return [_pick(r, USER_FIELDS) for r in await conn.execute(query)]

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return None if row is None else _pick(row, USER_FIELDS)

    async def require_user(self, user_id: str) -> dict[str, Any]:
        found = await self.get_user(user_id)
        if found is None:
            raise errors.NotFound(f"Could not find user: {user_id}.")
        return found

    async def create_user(self, fields: dict[str, Any]) -> dict[str, Any]:
        uid = new_id()
        password = fields.get("password")
        values = {
            "id": uid,
            "name": fields["name"],
            "domain_id": fields.get("domain_id") or DEFAULT_DOMAIN_ID,
            "enabled": fields.get("enabled", True),
            "default_project_id": fields.get("default_project_id"),
            "description": fields.get("description"),
            "email": fields.get("email"),
            "extra": fields.get("extra") or None,
            # Hash before taking the write lock: argon2 is slow on purpose.
            "password_hash": await hash_password(password) if password is not None else None,
            "password_created_at": utcnow() if password is not None else None,
            "password_self_service": False,
        }
        async with self.db.write() as conn:
            await self._check_domain(conn, values["domain_id"])
            await self._unique_name(conn, users, "user", values["name"], values["domain_id"])
            try:
                await conn.execute(users.insert().values(**values))
            except IntegrityError:
                raise _duplicate("user", values["name"], values["domain_id"]) from None
        return await self.require_user(uid)

    async def update_user(
        self, user_id: str, changes: dict[str, Any], *, self_service: bool = False
    ) -> dict[str, Any]:
        changes = dict(changes)
        revoke = changes.get("enabled") is False or "password" in changes
        if "password" in changes:
            password = changes.pop("password")
            changes["password_hash"] = await hash_password(password) if password is not None else None
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
            if row is None:
                raise errors.NotFound(f"Could not find user: {user_id}.")
            if "password_hash" in changes:
                changes["password_history"] = compliance.history_after_change(row)
                changes["password_created_at"] = utcnow()
                changes["password_self_service"] = self_service
            if changes.get("enabled") is True:
                # An admin enabling the user also lifts a lockout (Keystone's way to unlock).
                changes.update(failed_auth_count=0, failed_auth_at=None)
            if "name" in changes and changes["name"] != row.name:
                await self._unique_name(conn, users, "user", changes["name"], row.domain_id)
            if "extra" in changes:
                changes["extra"] = _merged_extra("user", row.extra, changes["extra"])
            if changes:
                await conn.execute(
                    users.update().where(users.c.id == user_id).values(**changes, updated_at=utcnow())
                )
            if revoke:
                await token_store.revoke_where(conn, tokens.c.user_id == user_id)
                await token_store.record_revocation(conn, user_id=user_id)
        self.cache.invalidate()
        return await self.require_user(user_id)

    async def change_password(self, user_id: str, original: str, new: str) -> None:
        """A user's own password change: the old password must match; all its tokens end."""
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise errors.NotFound(f"Could not find user: {user_id}.")
        if not await compliance.verify_login(self.db, self.rules, row, original) or not row.enabled:
            raise errors.Unauthorized("The request you have made requires authentication.")
        compliance.check_password_age(self.rules, row)
        await compliance.check_history(self.rules, row, new)
        await self.update_user(user_id, {"password": new}, self_service=True)

    async def delete_user(self, user_id: str) -> None:
        async with self.db.write() as conn:
            res = await conn.execute(users.delete().where(users.c.id == user_id))
            if res.rowcount == 0:
                raise errors.NotFound(f"Could not find user: {user_id}.")
            await token_store.record_revocation(conn, user_id=user_id)
        self.cache.invalidate()

    async def user_projects(self, user_id: str) -> list[dict[str, Any]]:
        """Projects where the user holds any role (what /v3/auth/projects lists)."""
        query = (
            sa.select(projects)
            .where(
                projects.c.id.in_(
                    sa.select(role_assignments.c.project_id).where(role_assignments.c.user_id == user_id)
                )
            )
            .order_by(projects.c.name)
        )
        async with self.db.read() as conn:
            return [_pick(r, PROJECT_FIELDS) for r in await conn.execute(query)]

    # -- roles ------------------------------------------------------------------------------

    async def list_roles(self, name: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(roles).order_by(roles.c.name)
        if name is not None:
            query = query.where(roles.c.name == name)
        async with self.db.read() as conn:
            return [_pick(r, ROLE_FIELDS) for r in await conn.execute(query)]

    async def require_role(self, role_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(roles).where(roles.c.id == role_id))).first()
        if row is None:
            raise errors.NotFound(f"Could not find role: {role_id}.")
        return _pick(row, ROLE_FIELDS)

    async def create_role(self, fields: dict[str, Any]) -> dict[str, Any]:
        rid = new_id()
        async with self.db.write() as conn:
            await self._unique_name(conn, roles, "role", fields["name"], None)
            try:
                await conn.execute(
                    roles.insert().values(
                        id=rid,
                        name=fields["name"],
                        description=fields.get("description"),
                        immutable=bool(fields.get("options", {}).get("immutable", False)),
                    )
                )
            except IntegrityError:
                raise _duplicate("role", fields["name"], None) from None
        return await self.require_role(rid)

    async def update_role(self, role_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        changes = dict(changes)
        options = changes.pop("options", None) or {}
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(roles).where(roles.c.id == role_id))).first()
            if row is None:
                raise errors.NotFound(f"Could not find role: {role_id}.")
            if row.immutable and options.get("immutable") is not False:
                raise errors.Forbidden(f"Role {role_id} is immutable and cannot be changed.")
            if "immutable" in options:
                changes["immutable"] = bool(options["immutable"])
            if "name" in changes and changes["name"] != row.name:
                await self._unique_name(conn, roles, "role", changes["name"], None)
            if changes:
                await conn.execute(roles.update().where(roles.c.id == role_id).values(**changes))
        self.cache.invalidate()
        return await self.require_role(role_id)

    async def delete_role(self, role_id: str) -> None:
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(roles).where(roles.c.id == role_id))).first()
            if row is None:
                raise errors.NotFound(f"Could not find role: {role_id}.")
            if row.immutable:
                raise errors.Forbidden(f"Role {role_id} is immutable and cannot be deleted.")
            holders = await conn.execute(
                sa.select(role_assignments.c.user_id, role_assignments.c.project_id).where(
                    role_assignments.c.role_id == role_id
                )
            )
            for holder in holders.all():
                await token_store.record_revocation(conn, user_id=holder.user_id, project_id=holder.project_id)
            await conn.execute(roles.delete().where(roles.c.id == role_id))
        self.cache.invalidate()

    async def role_inferences(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(prior role, [directly implied roles]) for every role that implies another."""
        by_name = {r["name"]: r for r in await self.list_roles()}
        out = []
        for prior, implied in IMPLIED_ROLES.items():
            # IMPLIED_ROLES holds the closure; a direct rule is one no other implied role covers.
            closure = [n for n in implied if n != prior]
            direct = [n for n in closure if not any(n in IMPLIED_ROLES.get(m, ()) for m in closure if m != n)]
            if prior in by_name and direct:
                out.append((by_name[prior], [by_name[n] for n in direct if n in by_name]))
        return out

    # -- assignments ------------------------------------------------------------------------

    async def _grant_parts(self, conn: AsyncConnection, project_id: str, user_id: str, role_id: str) -> None:
        for table, kind, key in (
            (projects, "project", project_id),
            (users, "user", user_id),
            (roles, "role", role_id),
        ):
            if (await conn.execute(sa.select(table.c.id).where(table.c.id == key))).first() is None:
                raise errors.NotFound(f"Could not find {kind}: {key}.")

    async def grant(self, project_id: str, user_id: str, role_id: str) -> None:
        async with self.db.write() as conn:
            await self._grant_parts(conn, project_id, user_id, role_id)
            if not await self._has_grant(conn, project_id, user_id, role_id):
                await conn.execute(
                    role_assignments.insert().values(user_id=user_id, project_id=project_id, role_id=role_id)
                )
        self.cache.invalidate()

    async def check_grant(self, project_id: str, user_id: str, role_id: str) -> None:
        async with self.db.read() as conn:
            await self._grant_parts(conn, project_id, user_id, role_id)
            if not await self._has_grant(conn, project_id, user_id, role_id):
                raise errors.NotFound(_no_grant(project_id, user_id, role_id))

    async def revoke_grant(self, project_id: str, user_id: str, role_id: str) -> None:
        async with self.db.write() as conn:
            await self._grant_parts(conn, project_id, user_id, role_id)
            res = await conn.execute(
                role_assignments.delete().where(
                    role_assignments.c.user_id == user_id,
                    role_assignments.c.project_id == project_id,
                    role_assignments.c.role_id == role_id,
                )
            )
            if res.rowcount == 0:
                raise errors.NotFound(_no_grant(project_id, user_id, role_id))
            # Keystone's revoke-by-grant: the user's tokens on that project end, and stay ended
            # when the role is granted again (roles are read at validation, so this is needed).
            await token_store.record_revocation(conn, user_id=user_id, project_id=project_id)
            # Keystone's rule: losing a role on a project ends the user's application credentials
            # there (and with them their tokens).
            await conn.execute(
                application_credentials.delete().where(
                    application_credentials.c.user_id == user_id,
                    application_credentials.c.project_id == project_id,
                )
            )
        self.cache.invalidate()

    async def _has_grant(self, conn: AsyncConnection, project_id: str, user_id: str, role_id: str) -> bool:
        res = await conn.execute(
            sa.select(role_assignments.c.user_id).where(
                role_assignments.c.user_id == user_id,
                role_assignments.c.project_id == project_id,
                role_assignments.c.role_id == role_id,
            )
        )
        return res.first() is not None

    async def list_assignments(
        self,
        *,
        user_id: str | None = None,
        project_id: str | None = None,
        role_id: str | None = None,
        effective: bool = False,
    ) -> list[dict[str, Any]]:
        """Assignments joined with names. With `effective`, implied roles appear as their own rows
        carrying `prior_role_id`, the assigned role they come from (as Keystone shows them)."""
        query = (
            sa.select(
                role_assignments.c.user_id,
                role_assignments.c.project_id,
                role_assignments.c.role_id,
                users.c.name.label("user_name"),
                projects.c.name.label("project_name"),
                roles.c.name.label("role_name"),
            )
            .select_from(
                role_assignments.join(users, users.c.id == role_assignments.c.user_id)
                .join(projects, projects.c.id == role_assignments.c.project_id)
                .join(roles, roles.c.id == role_assignments.c.role_id)
            )
            .order_by(users.c.name, projects.c.name, roles.c.name)
        )
        if user_id is not None:
            query = query.where(role_assignments.c.user_id == user_id)
        if project_id is not None:
            query = query.where(role_assignments.c.project_id == project_id)
        if role_id is not None and not effective:
            query = query.where(role_assignments.c.role_id == role_id)
        async with self.db.read() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
            all_roles = {
                r.name: (r.id, r.name) for r in await conn.execute(sa.select(roles.c.id, roles.c.name))
            }
        if effective:
            rows = self._expand_implied(rows, all_roles)
            if role_id is not None:
                rows = [r for r in rows if r["role_id"] == role_id]
        for r in rows:
            r.setdefault("prior_role_id", None)
        return rows

    @staticmethod
    def _expand_implied(
        rows: list[dict[str, Any]], all_roles: dict[str, tuple[str, str]]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str, str]] = set()
        direct = {(r["user_id"], r["project_id"], r["role_id"]) for r in rows}
        for r in rows:
            key = (r["user_id"], r["project_id"], r["role_id"])
            if key not in seen:
                seen.add(key)
                out.append(r)
            for name in IMPLIED_ROLES.get(r["role_name"], ()):
                if name == r["role_name"] or name not in all_roles:
                    continue
                rid, rname = all_roles[name]
                key = (r["user_id"], r["project_id"], rid)
                if key in seen or key in direct:
                    continue
                seen.add(key)
                out.append({**r, "role_id": rid, "role_name": rname, "prior_role_id": r["role_id"]})
        return out

    # -- helpers ----------------------------------------------------------------------------

    async def _unique_name(
        self, conn: AsyncConnection, table: sa.Table, kind: str, name: str, domain_id: str | None
    ) -> None:
        query = sa.select(table.c.id).where(table.c.name == name)
        if domain_id is not None:
            query = query.where(table.c.domain_id == domain_id)
        if (await conn.execute(query)).first() is not None:
            raise _duplicate(kind, name, domain_id)
