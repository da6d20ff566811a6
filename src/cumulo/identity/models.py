"""Identity tables: one domain, projects, users, roles, role assignments, issued tokens,
application credentials and EC2 credentials."""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"

domains = sa.Table(
    "identity_domains",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
)

projects = sa.Table(
    "identity_projects",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("domain_id", sa.String(64), sa.ForeignKey("identity_domains.id"), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("tags", sa.JSON, nullable=False, default=list),
    # Keystone's "extra": attributes a client set that the schema does not know (NULL = none).
    sa.Column("extra", sa.JSON),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
    sa.UniqueConstraint("domain_id", "name", name="uq_identity_projects_domain_name"),
)

users = sa.Table(
    "identity_users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("domain_id", sa.String(64), sa.ForeignKey("identity_domains.id"), nullable=False),
    # argon2id PHC string ("$argon2id$..."); NULL means the user cannot log in with a password.
    sa.Column("password_hash", sa.String(255)),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    # Keystone lets this dangle (the project need not exist), so no foreign key.
    sa.Column("default_project_id", sa.String(64)),
    sa.Column("description", sa.Text),
    sa.Column("email", sa.String(255)),
    sa.Column("extra", sa.JSON),
    # Security compliance (conf identity_*): consecutive failed password logins and the last one;
    # earlier password hashes, newest last (at most compliance.HISTORY_KEEP); when and how the
    # current password was set (self-service or by an admin).
    sa.Column("failed_auth_count", sa.Integer),
    sa.Column("failed_auth_at", sa.DateTime),
    sa.Column("password_history", sa.JSON),
    sa.Column("password_created_at", sa.DateTime),
    sa.Column("password_self_service", sa.Boolean),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
    sa.UniqueConstraint("domain_id", "name", name="uq_identity_users_domain_name"),
)

roles = sa.Table(
    "identity_roles",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    # Keystone's "immutable" resource option: bootstrap roles cannot be changed or deleted.
    sa.Column("immutable", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
)

role_assignments = sa.Table(
    "identity_role_assignments",
    metadata,
    sa.Column(
        "user_id", sa.String(64), sa.ForeignKey("identity_users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "project_id",
        sa.String(64),
        sa.ForeignKey("identity_projects.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "role_id", sa.String(64), sa.ForeignKey("identity_roles.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Index("ix_identity_role_assignments_project", "project_id"),
)

tokens = sa.Table(
    "identity_tokens",
    metadata,
    # SHA-256 (hex) of the bearer token; the token itself is never stored.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "user_id", sa.String(64), sa.ForeignKey("identity_users.id", ondelete="CASCADE"), nullable=False
    ),
    # NULL = unscoped. Roles are re-read at validation (as Fernet tokens do), so role changes apply at once.
    sa.Column("project_id", sa.String(64), sa.ForeignKey("identity_projects.id", ondelete="CASCADE")),
    sa.Column("methods", sa.JSON, nullable=False),
    # Role names at issue time, kept for audit only.
    sa.Column("roles", sa.JSON, nullable=False, default=list),
    sa.Column("issued_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False, index=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("audit_id", sa.String(32), nullable=False),
    # Audit id of the first token in a chain of token-method re-authentications.
    sa.Column("audit_chain_id", sa.String(32)),
    # Set when the token came from an application credential: deleting it deletes its tokens.
    sa.Column(
        "app_cred_id",
        sa.String(64),
        sa.ForeignKey("identity_application_credentials.id", ondelete="CASCADE"),
        index=True,
    ),
    sa.Index("ix_identity_tokens_user", "user_id"),
)

# Keystone's revocation events: a token matching every non-NULL field of an event (user, project,
# audit id) and issued at or before `issued_before` is refused, even after the access comes back.
# No foreign keys: an event outlives the user or project it names. Pruned once no live token
# predates it (tokens.purge_expired).
revocation_events = sa.Table(
    "identity_revocation_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(64)),
    sa.Column("project_id", sa.String(64)),
    sa.Column("audit_id", sa.String(32)),
    sa.Column("issued_before", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Index("ix_identity_revocation_events_user", "user_id"),
    sa.Index("ix_identity_revocation_events_project", "project_id"),
    sa.Index("ix_identity_revocation_events_audit", "audit_id"),
    sa.Index("ix_identity_revocation_events_issued_before", "issued_before"),
)

# Keystone's application credentials: a secret (argon2id hash only) standing for its user on one
# project with a subset of the user's roles there. Deleted with the user, the project, or when the
# user loses a role on the project (as Keystone does).
application_credentials = sa.Table(
    "identity_application_credentials",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column(
        "user_id", sa.String(64), sa.ForeignKey("identity_users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "project_id",
        sa.String(64),
        sa.ForeignKey("identity_projects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("secret_hash", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.DateTime),
    sa.Column("unrestricted", sa.Boolean, nullable=False, default=False),
    # Role ids (implied roles included); a deleted role simply stops matching.
    sa.Column("roles", sa.JSON, nullable=False, default=list),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("user_id", "name", name="uq_identity_application_credentials_user_name"),
)

# Keystone's OS-EC2 credentials. The secret must be shown again and checked against signatures, so
# it is encrypted (Fernet, key file in the state dir), not hashed.
ec2_credentials = sa.Table(
    "identity_ec2_credentials",
    metadata,
    sa.Column("access", sa.String(64), primary_key=True),
    sa.Column(
        "user_id", sa.String(64), sa.ForeignKey("identity_users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column(
        "project_id", sa.String(64), sa.ForeignKey("identity_projects.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("secret_encrypted", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
)
