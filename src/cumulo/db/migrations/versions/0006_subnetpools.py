"""network: subnet pools and auto-allocated topologies

Revision ID: 0006_subnetpools
Revises: 0005_volume
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_subnetpools"
down_revision = "0005_volume"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subnetpools",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("prefixes", sa.JSON(), nullable=False),
        sa.Column("default_prefixlen", sa.Integer(), nullable=False),
        sa.Column("min_prefixlen", sa.Integer(), nullable=False),
        sa.Column("max_prefixlen", sa.Integer(), nullable=False),
        sa.Column("default_quota", sa.Integer(), nullable=True),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subnetpools")),
    )
    op.create_index(op.f("ix_subnetpools_project_id"), "subnetpools", ["project_id"], unique=False)
    op.create_table(
        "auto_allocated_topologies",
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("router_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_auto_allocated_topologies")),
    )


def downgrade() -> None:
    op.drop_table("auto_allocated_topologies")
    op.drop_index(op.f("ix_subnetpools_project_id"), table_name="subnetpools")
    op.drop_table("subnetpools")
