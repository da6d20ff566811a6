"""Placement tables: providers (one per compute node), their inventories and consumer allocations."""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

resource_providers = sa.Table(
    "resource_providers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    # Bumped by every claim and inventory change: the compare-and-swap that makes claims atomic.
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
)

inventories = sa.Table(
    "inventories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.Integer, sa.ForeignKey("resource_providers.id", ondelete="CASCADE"), index=True),
    sa.Column("resource_class", sa.String(64), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("reserved", sa.Integer, nullable=False, default=0),
    sa.Column("min_unit", sa.Integer, nullable=False, default=1),
    sa.Column("max_unit", sa.Integer, nullable=False),
    sa.Column("step_size", sa.Integer, nullable=False, default=1),
    sa.Column("allocation_ratio", sa.Float, nullable=False, default=1.0),
    sa.UniqueConstraint("provider_id", "resource_class", name="uq_inventories_provider_id_resource_class"),
)

allocations = sa.Table(
    "allocations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.Integer, sa.ForeignKey("resource_providers.id", ondelete="CASCADE"), index=True),
    sa.Column("consumer_id", sa.String(64), nullable=False, index=True),
    sa.Column("resource_class", sa.String(64), nullable=False),
    sa.Column("used", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
)

# Placement's aggregates and traits, as far as sharing providers need them: a provider with the
# trait MISC_SHARES_VIA_AGGREGATE shares its inventory with every provider of its aggregates (the
# local host's pool; see placement/pools.py).
resource_provider_aggregates = sa.Table(
    "resource_provider_aggregates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.Integer, sa.ForeignKey("resource_providers.id", ondelete="CASCADE"), index=True),
    sa.Column("aggregate_uuid", sa.String(36), nullable=False, index=True),
    sa.UniqueConstraint("provider_id", "aggregate_uuid", name="uq_resource_provider_aggregates_provider_aggregate"),
)

resource_provider_traits = sa.Table(
    "resource_provider_traits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.Integer, sa.ForeignKey("resource_providers.id", ondelete="CASCADE"), index=True),
    sa.Column("trait", sa.String(255), nullable=False),
    sa.UniqueConstraint("provider_id", "trait", name="uq_resource_provider_traits_provider_trait"),
)
