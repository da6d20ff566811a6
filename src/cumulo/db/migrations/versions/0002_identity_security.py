"""identity security compliance: failed logins, password history and age on users

Revision ID: 0002_identity_security
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_identity_security"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("failed_auth_count", sa.Integer()),
    ("failed_auth_at", sa.DateTime()),
    ("password_history", sa.JSON()),
    ("password_created_at", sa.DateTime()),
    ("password_self_service", sa.Boolean()),
)


def upgrade() -> None:
    with op.batch_alter_table("identity_users", schema=None) as batch_op:
        for name, kind in _COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("identity_users", schema=None) as batch_op:
        for name, _ in reversed(_COLUMNS):
            batch_op.drop_column(name)
