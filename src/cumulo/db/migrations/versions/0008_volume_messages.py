"""volume: Cinder's user messages (volume_messages: why an asynchronous operation failed)

Revision ID: 0008_volume_messages
Revises: 0007_bdm
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_volume_messages"
down_revision = "0007_bdm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.Column("resource_type", sa.String(length=255), nullable=False),
        sa.Column("resource_uuid", sa.String(length=36), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("message_level", sa.String(length=255), nullable=False),
        sa.Column("user_message", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_messages")),
    )
    op.create_index(op.f("ix_volume_messages_project_id"), "volume_messages", ["project_id"], unique=False)
    op.create_index(op.f("ix_volume_messages_resource_uuid"), "volume_messages", ["resource_uuid"], unique=False)
    op.create_index(op.f("ix_volume_messages_expires_at"), "volume_messages", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_volume_messages_expires_at"), table_name="volume_messages")
    op.drop_index(op.f("ix_volume_messages_resource_uuid"), table_name="volume_messages")
    op.drop_index(op.f("ix_volume_messages_project_id"), table_name="volume_messages")
    op.drop_table("volume_messages")
