"""OCCI tables: a project's user-defined mixins (GFD.221 tags) and the entities tagged with them.

A mixin belongs to one project: (project_id, scheme, term) and (project_id, location) are unique, so
two projects may define the same category without seeing each other's. A tag row puts one entity
(by kind term and OpenStack id, e.g. ("compute", <server uuid>)) in one mixin's collection; deleting
the mixin deletes its tags (ON DELETE CASCADE, and the store deletes them itself where foreign keys
are off).
"""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

occi_mixins = sa.Table(
    "occi_mixins",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("scheme", sa.String(255), nullable=False),
    sa.Column("term", sa.String(255), nullable=False),
    sa.Column("title", sa.String(255), nullable=False, default=""),
    sa.Column("location", sa.String(255), nullable=False),  # below the OCCI root: "/my_tag/"
    sa.Column("depends", sa.JSON, nullable=False, default=list),  # category ids
    sa.Column("applies", sa.JSON, nullable=False, default=list),  # kind ids
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("project_id", "scheme", "term", name="uq_occi_mixins_category"),
    sa.UniqueConstraint("project_id", "location", name="uq_occi_mixins_location"),
)

occi_mixin_tags = sa.Table(
    "occi_mixin_tags",
    metadata,
    sa.Column("mixin_id", sa.String(36), sa.ForeignKey("occi_mixins.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(64), primary_key=True),  # the entity's kind term: compute, storage ...
    sa.Column("entity_id", sa.String(255), primary_key=True),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Index("ix_occi_mixin_tags_entity", "kind", "entity_id"),
)
