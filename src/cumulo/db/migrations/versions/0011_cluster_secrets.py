"""cluster secrets: keys every process of a scaled-out cloud shares through the database

Revision ID: 0011_cluster_secrets
Revises: 0010_paas
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_cluster_secrets"
down_revision = "0010_paas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster_secrets")),
    )


def downgrade() -> None:
    op.drop_table("cluster_secrets")
