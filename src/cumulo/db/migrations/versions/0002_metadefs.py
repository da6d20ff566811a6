"""metadefs: Glance's metadata definitions catalog (namespaces, objects, properties, tags,
resource types and their associations), seeded with Glance's built-in resource types

Revision ID: 0002_metadefs
Revises: 0001
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002_metadefs"
down_revision = "0001"
branch_labels = None
depends_on = None

_BUILTIN = ("OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor", "OS::Nova::Aggregate", "OS::Nova::Server")


def _stamps() -> list[sa.Column[dt.datetime]]:
    return [sa.Column("created_at", sa.DateTime(), nullable=False), sa.Column("updated_at", sa.DateTime(), nullable=False)]


def _ns_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["namespace_id"], ["metadef_namespaces.id"],
        name=op.f(f"fk_{table}_namespace_id_metadef_namespaces"), ondelete="CASCADE",
    )


def _child(table: str, *columns: sa.Column[object]) -> None:
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        *columns,
        *_stamps(),
        _ns_fk(table),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("namespace_id", "name", name=f"uq_{table}_namespace_id_name"),
    )
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_namespace_id"), ["namespace_id"], unique=False)


def upgrade() -> None:
    op.create_table(
        "metadef_namespaces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("visibility", sa.String(length=32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadef_namespaces")),
        sa.UniqueConstraint("namespace", name=op.f("uq_metadef_namespaces_namespace")),
    )
    with op.batch_alter_table("metadef_namespaces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_metadef_namespaces_owner"), ["owner"], unique=False)
    _child(
        "metadef_objects",
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("required", sa.JSON(), nullable=False),
        sa.Column("json_schema", sa.JSON(), nullable=False),
    )
    _child("metadef_properties", sa.Column("json_schema", sa.JSON(), nullable=False))
    _child("metadef_tags")
    types = op.create_table(
        "metadef_resource_types",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadef_resource_types")),
        sa.UniqueConstraint("name", name=op.f("uq_metadef_resource_types_name")),
    )
    op.create_table(
        "metadef_namespace_resource_types",
        sa.Column("resource_type_id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=80), nullable=True),
        sa.Column("properties_target", sa.String(length=80), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(
            ["resource_type_id"], ["metadef_resource_types.id"],
            name=op.f("fk_metadef_namespace_resource_types_resource_type_id_metadef_resource_types"),
        ),
        _ns_fk("metadef_namespace_resource_types"),
        sa.PrimaryKeyConstraint("resource_type_id", "namespace_id", name=op.f("pk_metadef_namespace_resource_types")),
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    op.bulk_insert(types, [{"name": n, "protected": True, "created_at": now, "updated_at": now} for n in _BUILTIN])


def downgrade() -> None:
    op.drop_table("metadef_namespace_resource_types")
    op.drop_table("metadef_resource_types")
    for table in ("metadef_tags", "metadef_properties", "metadef_objects"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_namespace_id"))
        op.drop_table(table)
    with op.batch_alter_table("metadef_namespaces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metadef_namespaces_owner"))
    op.drop_table("metadef_namespaces")
