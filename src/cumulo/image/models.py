"""Image tables: images, their extra properties, tags and members (Glance's data model, trimmed).

Rows are soft-deleted (deleted=True, status "deleted") as Glance does, so an image id is never
reused. `store_key` is the sha256 of the bytes: the content address in `image.store`; several
images may share one key (de-duplication), and the bytes go when the last live image drops it.
"""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255)),
    sa.Column("status", sa.String(30), nullable=False, index=True),
    sa.Column("visibility", sa.String(20), nullable=False, index=True),
    sa.Column("protected", sa.Boolean, nullable=False, default=False),
    sa.Column("os_hidden", sa.Boolean, nullable=False, default=False),
    # The project that owns the image (Glance's "owner").
    sa.Column("owner", sa.String(255), index=True),
    sa.Column("disk_format", sa.String(20)),
    sa.Column("container_format", sa.String(20)),
    sa.Column("min_disk", sa.Integer, nullable=False, default=0),
    sa.Column("min_ram", sa.Integer, nullable=False, default=0),
    sa.Column("size", sa.BigInteger),
    sa.Column("virtual_size", sa.BigInteger),
    sa.Column("checksum", sa.String(32)),
    sa.Column("os_hash_algo", sa.String(64)),
    sa.Column("os_hash_value", sa.String(128)),
    sa.Column("store_key", sa.String(64), index=True),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow, index=True),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, index=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False, index=True),
    sa.Column("deleted_at", sa.DateTime),
)

# Extra (user) properties: string key/value pairs shown at the top level of the image.
image_properties = sa.Table(
    "image_properties",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.UniqueConstraint("image_id", "name", name="uq_image_properties_image_id_name"),
)

image_tags = sa.Table(
    "image_tags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"), nullable=False, index=True),
    sa.Column("value", sa.String(255), nullable=False, index=True),
    sa.UniqueConstraint("image_id", "value", name="uq_image_tags_image_id_value"),
)

# Projects a "shared" image is shared with, and whether they accepted it.
image_members = sa.Table(
    "image_members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(36), sa.ForeignKey("images.id"), nullable=False, index=True),
    sa.Column("member", sa.String(255), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False, default="pending"),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("image_id", "member", name="uq_image_members_image_id_member"),
)

# Interoperable-import tasks (Glance's api_image_import tasks), shown at /v2/images/{id}/tasks and /v2/tasks.
image_tasks = sa.Table(
    "image_tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(30), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False, index=True),
    sa.Column("image_id", sa.String(36), index=True),
    sa.Column("request_id", sa.String(64)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("input", sa.JSON),
    sa.Column("result", sa.JSON),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("expires_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow),
)

# The metadata definitions catalog's tables live beside the image tables (registered with the same metadata).
from cumulo.image.metadefs import models as _metadef_models  # noqa: E402, F401
