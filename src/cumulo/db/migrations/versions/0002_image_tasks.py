"""image_tasks: Glance's interoperable-import tasks (glance-direct)

Revision ID: 0002_image_tasks
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_image_tasks"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_tasks")),
    )
    with op.batch_alter_table("image_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_tasks_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_tasks_owner"), ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_tasks_owner"))
        batch_op.drop_index(batch_op.f("ix_image_tasks_image_id"))
    op.drop_table("image_tasks")
