"""aggregates: host aggregates, their hosts and metadata (Nova's os-aggregates)

Revision ID: 0002_aggregates
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_aggregates"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aggregates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregates")),
        sa.UniqueConstraint("name", name=op.f("uq_aggregates_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_aggregates_uuid")),
    )
    op.create_table(
        "aggregate_hosts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("aggregate_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["aggregate_id"], ["aggregates.id"], name=op.f("fk_aggregate_hosts_aggregate_id_aggregates"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregate_hosts")),
        sa.UniqueConstraint("aggregate_id", "host", name="uq_aggregate_hosts_aggregate_id_host"),
    )
    with op.batch_alter_table("aggregate_hosts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_aggregate_hosts_aggregate_id"), ["aggregate_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_aggregate_hosts_host"), ["host"], unique=False)
    op.create_table(
        "aggregate_metadata",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("aggregate_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["aggregate_id"], ["aggregates.id"], name=op.f("fk_aggregate_metadata_aggregate_id_aggregates"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregate_metadata")),
        sa.UniqueConstraint("aggregate_id", "key", name="uq_aggregate_metadata_aggregate_id_key"),
    )
    with op.batch_alter_table("aggregate_metadata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_aggregate_metadata_aggregate_id"), ["aggregate_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("aggregate_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aggregate_metadata_aggregate_id"))
    op.drop_table("aggregate_metadata")
    with op.batch_alter_table("aggregate_hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aggregate_hosts_host"))
        batch_op.drop_index(batch_op.f("ix_aggregate_hosts_aggregate_id"))
    op.drop_table("aggregate_hosts")
    op.drop_table("aggregates")
