"""identity revocation events (Keystone's revoke events: revoked tokens stay revoked)

Revision ID: 0002_revocation_events
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_revocation_events"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_revocation_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("audit_id", sa.String(length=32), nullable=True),
        sa.Column("issued_before", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_revocation_events")),
    )
    with op.batch_alter_table("identity_revocation_events", schema=None) as batch_op:
        batch_op.create_index("ix_identity_revocation_events_user", ["user_id"], unique=False)
        batch_op.create_index("ix_identity_revocation_events_project", ["project_id"], unique=False)
        batch_op.create_index("ix_identity_revocation_events_audit", ["audit_id"], unique=False)
        batch_op.create_index("ix_identity_revocation_events_issued_before", ["issued_before"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("identity_revocation_events", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_revocation_events_issued_before")
        batch_op.drop_index("ix_identity_revocation_events_audit")
        batch_op.drop_index("ix_identity_revocation_events_project")
        batch_op.drop_index("ix_identity_revocation_events_user")
    op.drop_table("identity_revocation_events")
