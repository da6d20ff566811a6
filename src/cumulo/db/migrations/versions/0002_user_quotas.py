"""per-user quotas: project_user_quotas

Revision ID: 0002_user_quotas
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_user_quotas"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_user_quotas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_user_quotas")),
        sa.UniqueConstraint(
            "project_id", "user_id", "resource", name="uq_project_user_quotas_project_id_user_id_resource"
        ),
    )
    with op.batch_alter_table("project_user_quotas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_user_quotas_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("project_user_quotas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_user_quotas_project_id"))
    op.drop_table("project_user_quotas")
