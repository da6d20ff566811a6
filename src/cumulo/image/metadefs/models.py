"""Metadef tables, after Glance's: one row per namespace; objects, properties and tags belong to
a namespace; resource types are global and joined to namespaces by an association row.
Property and object definitions are JSON documents (the JSON-schema fragment Glance stores)."""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

metadef_namespaces = sa.Table(
    "metadef_namespaces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(80), nullable=False, unique=True),
    sa.Column("display_name", sa.String(80)),
    sa.Column("description", sa.Text),
    sa.Column("visibility", sa.String(32), nullable=False),
    sa.Column("protected", sa.Boolean, nullable=False, default=False),
    sa.Column("owner", sa.String(255), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow),
)


def _child(name: str, *columns: sa.Column[object], name_len: int = 255) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace_id", sa.Integer, sa.ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("name", sa.String(name_len), nullable=False),
        *columns,
        sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
        sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow),
        sa.UniqueConstraint("namespace_id", "name", name=f"uq_{name}_namespace_id_name"),
    )


metadef_objects = _child(
    "metadef_objects",
    sa.Column("description", sa.Text),
    sa.Column("required", sa.JSON, nullable=False),
    sa.Column("json_schema", sa.JSON, nullable=False),
)
metadef_properties = _child("metadef_properties", sa.Column("json_schema", sa.JSON, nullable=False))
metadef_tags = _child("metadef_tags")

metadef_resource_types = sa.Table(
    "metadef_resource_types",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column("protected", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow),
)

metadef_namespace_resource_types = sa.Table(
    "metadef_namespace_resource_types",
    metadata,
    sa.Column("resource_type_id", sa.Integer, sa.ForeignKey("metadef_resource_types.id"), primary_key=True),
    sa.Column("namespace_id", sa.Integer, sa.ForeignKey("metadef_namespaces.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("prefix", sa.String(80)),
    sa.Column("properties_target", sa.String(80)),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow),
)

# Glance's built-in resource types (its migrations seed them; 0002_metadefs does the same).
BUILTIN_RESOURCE_TYPES = ("OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor", "OS::Nova::Aggregate",
                          "OS::Nova::Server")
