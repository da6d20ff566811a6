"""server groups: instance_groups and instance_group_member

Revision ID: 0002_server_groups
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_server_groups"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(length=255), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_groups")),
        sa.UniqueConstraint("uuid", name=op.f("uq_instance_groups_uuid")),
    )
    with op.batch_alter_table("instance_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instance_groups_project_id"), ["project_id"], unique=False)

    op.create_table(
        "instance_group_member",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["instance_groups.id"],
            name=op.f("fk_instance_group_member_group_id_instance_groups"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_group_member")),
        sa.UniqueConstraint("group_id", "instance_uuid", name="uq_instance_group_member_group_id_instance_uuid"),
    )
    with op.batch_alter_table("instance_group_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instance_group_member_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_instance_group_member_instance_uuid"), ["instance_uuid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("instance_group_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_group_member_instance_uuid"))
        batch_op.drop_index(batch_op.f("ix_instance_group_member_group_id"))
    op.drop_table("instance_group_member")
    with op.batch_alter_table("instance_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_groups_project_id"))
    op.drop_table("instance_groups")
