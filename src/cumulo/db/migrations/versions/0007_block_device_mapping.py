"""compute: block device mappings (Nova's block_device_mapping: attached volumes, boot from volume)

Revision ID: 0007_bdm
Revises: 0006_subnetpools
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_bdm"
down_revision = "0006_subnetpools"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "block_device_mapping",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("source_type", sa.String(length=32), nullable=False),
        sa.Column("destination_type", sa.String(length=32), nullable=False),
        sa.Column("device_name", sa.String(length=255), nullable=True),
        sa.Column("boot_index", sa.Integer(), nullable=True),
        sa.Column("volume_id", sa.String(length=36), nullable=True),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("volume_size", sa.Integer(), nullable=True),
        sa.Column("volume_type", sa.String(length=255), nullable=True),
        sa.Column("delete_on_termination", sa.Boolean(), nullable=False),
        sa.Column("guest_format", sa.String(length=255), nullable=True),
        sa.Column("disk_bus", sa.String(length=255), nullable=True),
        sa.Column("device_type", sa.String(length=255), nullable=True),
        sa.Column("no_device", sa.Boolean(), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=True),
        sa.Column("attachment_id", sa.String(length=36), nullable=True),
        sa.Column("connection_info", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block_device_mapping")),
        sa.UniqueConstraint("uuid", name=op.f("uq_block_device_mapping_uuid")),
    )
    op.create_index(op.f("ix_block_device_mapping_instance_uuid"), "block_device_mapping", ["instance_uuid"], unique=False)
    op.create_index(op.f("ix_block_device_mapping_volume_id"), "block_device_mapping", ["volume_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_block_device_mapping_volume_id"), table_name="block_device_mapping")
    op.drop_index(op.f("ix_block_device_mapping_instance_uuid"), table_name="block_device_mapping")
    op.drop_table("block_device_mapping")
