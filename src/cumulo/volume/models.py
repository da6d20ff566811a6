"""Volume tables: Cinder's data model, trimmed (volumes, their metadata, types, snapshots, backups,
attachments, quotas).

Every resource row carries `project_id`; queries are scoped to it (the admin sees all). Status
columns follow `cumulo.volume.states`, changed only by compare-and-swap (`states.transition`).
Deleted rows are removed (Cinder soft-deletes; nothing here reads deleted rows back).
Read-only and the first-attach filesystem marker live in the admin metadata, as in Cinder.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cumulo.db import metadata, utcnow


def _stamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    ]


def _kv(name: str, owner: str, owner_table: str) -> sa.Table:
    """A key/value table of one owner row (metadata of volumes, snapshots ...)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(owner, sa.String(36), sa.ForeignKey(f"{owner_table}.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.UniqueConstraint(owner, "key"),
    )


volume_types = sa.Table(
    "volume_types",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.String(255), nullable=True),
    sa.Column("is_public", sa.Boolean, nullable=False, default=True),
    *_stamps(),
)

volume_type_extra_specs = sa.Table(
    "volume_type_extra_specs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("volume_type_id", sa.String(36), sa.ForeignKey("volume_types.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    sa.UniqueConstraint("volume_type_id", "key"),
)

volume_type_access = sa.Table(
    "volume_type_access",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("volume_type_id", sa.String(36), sa.ForeignKey("volume_types.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.UniqueConstraint("volume_type_id", "project_id"),
)

volumes = sa.Table(
    "volumes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("user_id", sa.String(255), nullable=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("description", sa.String(255), nullable=True),
    sa.Column("size", sa.Integer, nullable=False),  # GiB
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("attach_status", sa.String(32), nullable=False, default="detached"),
    sa.Column("migration_status", sa.String(32), nullable=True),
    sa.Column("availability_zone", sa.String(255), nullable=False, default="nova"),
    sa.Column("volume_type_id", sa.String(36), sa.ForeignKey("volume_types.id"), nullable=True),
    sa.Column("bootable", sa.Boolean, nullable=False, default=False),
    sa.Column("multiattach", sa.Boolean, nullable=False, default=False),
    sa.Column("source_volid", sa.String(36), nullable=True),
    sa.Column("snapshot_id", sa.String(36), nullable=True),
    sa.Column("image_id", sa.String(36), nullable=True),
    sa.Column("backup_id", sa.String(36), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),  # the volume worker's host
    sa.Column("encrypted", sa.Boolean, nullable=False, default=False),
    sa.Column("error_message", sa.String(255), nullable=True),
    *_stamps(),
)

volume_metadata = _kv("volume_metadata", "volume_id", "volumes")
volume_admin_metadata = _kv("volume_admin_metadata", "volume_id", "volumes")
volume_image_metadata = _kv("volume_image_metadata", "volume_id", "volumes")

snapshots = sa.Table(
    "volume_snapshots",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("user_id", sa.String(255), nullable=True),
    sa.Column("volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("description", sa.String(255), nullable=True),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("progress", sa.String(16), nullable=False, default="0%"),
    sa.Column("group_snapshot_id", sa.String(36), nullable=True),
    *_stamps(),
)

snapshot_metadata = _kv("volume_snapshot_metadata", "snapshot_id", "volume_snapshots")

backups = sa.Table(
    "volume_backups",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("user_id", sa.String(255), nullable=True),
    sa.Column("volume_id", sa.String(36), nullable=False, index=True),  # the volume may be deleted later
    sa.Column("snapshot_id", sa.String(36), nullable=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("description", sa.String(255), nullable=True),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("object_count", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("fail_reason", sa.String(255), nullable=True),
    sa.Column("availability_zone", sa.String(255), nullable=True),
    sa.Column("container", sa.String(255), nullable=True),
    sa.Column("is_incremental", sa.Boolean, nullable=False, default=False),
    sa.Column("parent_id", sa.String(36), nullable=True),
    sa.Column("restore_volume_id", sa.String(36), nullable=True),
    sa.Column("data_timestamp", sa.DateTime, nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("metadata_json", sa.Text, nullable=False, default="{}"),
    *_stamps(),
)

volume_attachments = sa.Table(
    "volume_attachments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False, index=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("instance_uuid", sa.String(36), nullable=True, index=True),
    sa.Column("attached_host", sa.String(255), nullable=True),
    sa.Column("mountpoint", sa.String(255), nullable=True),
    sa.Column("attach_mode", sa.String(4), nullable=False, default="rw"),
    sa.Column("attach_status", sa.String(32), nullable=False),  # reserved|attaching|attached|detaching|...
    sa.Column("connector_json", sa.Text, nullable=True),
    sa.Column("connection_info_json", sa.Text, nullable=True),
    sa.Column("attach_time", sa.DateTime, nullable=True),
    sa.Column("detach_time", sa.DateTime, nullable=True),
    *_stamps(),
)

volume_quotas = sa.Table(
    "volume_quotas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("resource", sa.String(64), nullable=False),
    sa.Column("limit", sa.Integer, nullable=False),
    sa.UniqueConstraint("project_id", "resource"),
)

# Cinder's user messages (GET /messages, 3.3): why an asynchronous operation failed, for the owner.
volume_messages = sa.Table(
    "volume_messages",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("request_id", sa.String(255), nullable=True),
    sa.Column("resource_type", sa.String(255), nullable=False),
    sa.Column("resource_uuid", sa.String(36), nullable=True, index=True),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("message_level", sa.String(255), nullable=False),
    sa.Column("user_message", sa.String(1024), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("expires_at", sa.DateTime, nullable=False, index=True),
)
