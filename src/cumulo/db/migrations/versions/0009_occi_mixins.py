"""occi: user-defined mixins (occi_mixins) and their members (occi_mixin_tags)

Revision ID: 0009_occi_mixins
Revises: 0008_volume_messages
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_occi_mixins"
down_revision = "0008_volume_messages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "occi_mixins",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("scheme", sa.String(length=255), nullable=False),
        sa.Column("term", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("location", sa.String(length=255), nullable=False),
        sa.Column("depends", sa.JSON(), nullable=False),
        sa.Column("applies", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_occi_mixins")),
        sa.UniqueConstraint("project_id", "scheme", "term", name="uq_occi_mixins_category"),
        sa.UniqueConstraint("project_id", "location", name="uq_occi_mixins_location"),
    )
    op.create_index(op.f("ix_occi_mixins_project_id"), "occi_mixins", ["project_id"], unique=False)
    op.create_table(
        "occi_mixin_tags",
        sa.Column("mixin_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mixin_id"],
            ["occi_mixins.id"],
            name=op.f("fk_occi_mixin_tags_mixin_id_occi_mixins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mixin_id", "kind", "entity_id", name=op.f("pk_occi_mixin_tags")),
    )
    op.create_index("ix_occi_mixin_tags_entity", "occi_mixin_tags", ["kind", "entity_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_occi_mixin_tags_entity", table_name="occi_mixin_tags")
    op.drop_table("occi_mixin_tags")
    op.drop_index(op.f("ix_occi_mixins_project_id"), table_name="occi_mixins")
    op.drop_table("occi_mixins")
