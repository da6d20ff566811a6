"""volume: Cinder's tables (volumes and their metadata, types, snapshots, backups, attachments, quotas)

Revision ID: 0005_volume
Revises: 0004_network
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_volume"
down_revision = "0004_network"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_backups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("object_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("fail_reason", sa.String(length=255), nullable=True),
        sa.Column("availability_zone", sa.String(length=255), nullable=True),
        sa.Column("container", sa.String(length=255), nullable=True),
        sa.Column("is_incremental", sa.Boolean(), nullable=False),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("restore_volume_id", sa.String(length=36), nullable=True),
        sa.Column("data_timestamp", sa.DateTime(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_backups")),
    )
    with op.batch_alter_table("volume_backups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_backups_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_backups_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_backups_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "volume_quotas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_quotas")),
        sa.UniqueConstraint("project_id", "resource", name=op.f("uq_volume_quotas_project_id")),
    )
    with op.batch_alter_table("volume_quotas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_quotas_project_id"), ["project_id"], unique=False)

    op.create_table(
        "volume_types",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_types")),
        sa.UniqueConstraint("name", name=op.f("uq_volume_types_name")),
    )
    op.create_table(
        "volume_type_access",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_type_id"],
            ["volume_types.id"],
            name=op.f("fk_volume_type_access_volume_type_id_volume_types"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_type_access")),
        sa.UniqueConstraint(
            "volume_type_id", "project_id", name=op.f("uq_volume_type_access_volume_type_id")
        ),
    )
    with op.batch_alter_table("volume_type_access", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volume_type_access_volume_type_id"), ["volume_type_id"], unique=False
        )

    op.create_table(
        "volume_type_extra_specs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_type_id"],
            ["volume_types.id"],
            name=op.f("fk_volume_type_extra_specs_volume_type_id_volume_types"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_type_extra_specs")),
        sa.UniqueConstraint("volume_type_id", "key", name=op.f("uq_volume_type_extra_specs_volume_type_id")),
    )
    with op.batch_alter_table("volume_type_extra_specs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volume_type_extra_specs_volume_type_id"), ["volume_type_id"], unique=False
        )

    op.create_table(
        "volumes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attach_status", sa.String(length=32), nullable=False),
        sa.Column("migration_status", sa.String(length=32), nullable=True),
        sa.Column("availability_zone", sa.String(length=255), nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=True),
        sa.Column("bootable", sa.Boolean(), nullable=False),
        sa.Column("multiattach", sa.Boolean(), nullable=False),
        sa.Column("source_volid", sa.String(length=36), nullable=True),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("backup_id", sa.String(length=36), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("error_message", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["volume_type_id"], ["volume_types.id"], name=op.f("fk_volumes_volume_type_id_volume_types")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
    )
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volumes_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volumes_status"), ["status"], unique=False)

    op.create_table(
        "volume_admin_metadata",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volumes.id"],
            name=op.f("fk_volume_admin_metadata_volume_id_volumes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_admin_metadata")),
        sa.UniqueConstraint("volume_id", "key", name=op.f("uq_volume_admin_metadata_volume_id")),
    )
    with op.batch_alter_table("volume_admin_metadata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_admin_metadata_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "volume_attachments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=True),
        sa.Column("attached_host", sa.String(length=255), nullable=True),
        sa.Column("mountpoint", sa.String(length=255), nullable=True),
        sa.Column("attach_mode", sa.String(length=4), nullable=False),
        sa.Column("attach_status", sa.String(length=32), nullable=False),
        sa.Column("connector_json", sa.Text(), nullable=True),
        sa.Column("connection_info_json", sa.Text(), nullable=True),
        sa.Column("attach_time", sa.DateTime(), nullable=True),
        sa.Column("detach_time", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name=op.f("fk_volume_attachments_volume_id_volumes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_attachments")),
    )
    with op.batch_alter_table("volume_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volume_attachments_instance_uuid"), ["instance_uuid"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_volume_attachments_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_attachments_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "volume_image_metadata",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volumes.id"],
            name=op.f("fk_volume_image_metadata_volume_id_volumes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_image_metadata")),
        sa.UniqueConstraint("volume_id", "key", name=op.f("uq_volume_image_metadata_volume_id")),
    )
    with op.batch_alter_table("volume_image_metadata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_image_metadata_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "volume_metadata",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volumes.id"],
            name=op.f("fk_volume_metadata_volume_id_volumes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_metadata")),
        sa.UniqueConstraint("volume_id", "key", name=op.f("uq_volume_metadata_volume_id")),
    )
    with op.batch_alter_table("volume_metadata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_metadata_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "volume_snapshots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("progress", sa.String(length=16), nullable=False),
        sa.Column("group_snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name=op.f("fk_volume_snapshots_volume_id_volumes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_snapshots")),
    )
    with op.batch_alter_table("volume_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_snapshots_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_snapshots_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_snapshots_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "volume_snapshot_metadata",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("snapshot_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["volume_snapshots.id"],
            name=op.f("fk_volume_snapshot_metadata_snapshot_id_volume_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_snapshot_metadata")),
        sa.UniqueConstraint("snapshot_id", "key", name=op.f("uq_volume_snapshot_metadata_snapshot_id")),
    )
    with op.batch_alter_table("volume_snapshot_metadata", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volume_snapshot_metadata_snapshot_id"), ["snapshot_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("volume_snapshot_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_snapshot_metadata_snapshot_id"))

    op.drop_table("volume_snapshot_metadata")
    with op.batch_alter_table("volume_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_snapshots_volume_id"))
        batch_op.drop_index(batch_op.f("ix_volume_snapshots_status"))
        batch_op.drop_index(batch_op.f("ix_volume_snapshots_project_id"))

    op.drop_table("volume_snapshots")
    with op.batch_alter_table("volume_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_metadata_volume_id"))

    op.drop_table("volume_metadata")
    with op.batch_alter_table("volume_image_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_image_metadata_volume_id"))

    op.drop_table("volume_image_metadata")
    with op.batch_alter_table("volume_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_attachments_volume_id"))
        batch_op.drop_index(batch_op.f("ix_volume_attachments_project_id"))
        batch_op.drop_index(batch_op.f("ix_volume_attachments_instance_uuid"))

    op.drop_table("volume_attachments")
    with op.batch_alter_table("volume_admin_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_admin_metadata_volume_id"))

    op.drop_table("volume_admin_metadata")
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volumes_status"))
        batch_op.drop_index(batch_op.f("ix_volumes_project_id"))

    op.drop_table("volumes")
    with op.batch_alter_table("volume_type_extra_specs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_type_extra_specs_volume_type_id"))

    op.drop_table("volume_type_extra_specs")
    with op.batch_alter_table("volume_type_access", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_type_access_volume_type_id"))

    op.drop_table("volume_type_access")
    op.drop_table("volume_types")
    with op.batch_alter_table("volume_quotas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_quotas_project_id"))

    op.drop_table("volume_quotas")
    with op.batch_alter_table("volume_backups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_backups_volume_id"))
        batch_op.drop_index(batch_op.f("ix_volume_backups_status"))
        batch_op.drop_index(batch_op.f("ix_volume_backups_project_id"))

    op.drop_table("volume_backups")
