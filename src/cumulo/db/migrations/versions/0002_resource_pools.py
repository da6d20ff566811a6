"""resource pools: placement aggregates and traits (sharing providers)

Revision ID: 0002_resource_pools
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_resource_pools"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_provider_aggregates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("aggregate_uuid", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["resource_providers.id"],
            name=op.f("fk_resource_provider_aggregates_provider_id_resource_providers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_provider_aggregates")),
        sa.UniqueConstraint("provider_id", "aggregate_uuid", name="uq_resource_provider_aggregates_provider_aggregate"),
    )
    with op.batch_alter_table("resource_provider_aggregates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_provider_aggregates_provider_id"), ["provider_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_resource_provider_aggregates_aggregate_uuid"), ["aggregate_uuid"], unique=False
        )
    op.create_table(
        "resource_provider_traits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("trait", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["resource_providers.id"],
            name=op.f("fk_resource_provider_traits_provider_id_resource_providers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_provider_traits")),
        sa.UniqueConstraint("provider_id", "trait", name="uq_resource_provider_traits_provider_trait"),
    )
    with op.batch_alter_table("resource_provider_traits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_provider_traits_provider_id"), ["provider_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("resource_provider_traits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_provider_traits_provider_id"))
    op.drop_table("resource_provider_traits")
    with op.batch_alter_table("resource_provider_aggregates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_provider_aggregates_aggregate_uuid"))
        batch_op.drop_index(batch_op.f("ix_resource_provider_aggregates_provider_id"))
    op.drop_table("resource_provider_aggregates")
