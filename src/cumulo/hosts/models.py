"""Host tables: the service rows every worker registers and heartbeats, the compute nodes the agents
report, and host aggregates (whose "availability_zone" key puts hosts in a zone)."""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

services = sa.Table(
    "services",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("binary", sa.String(255), nullable=False),
    sa.Column("topic", sa.String(255)),
    sa.Column("availability_zone", sa.String(255)),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("disabled_reason", sa.String(255)),
    sa.Column("forced_down", sa.Boolean, nullable=False, default=False),
    sa.Column("last_seen_up", sa.DateTime),
    sa.Column("report_count", sa.Integer, nullable=False, default=0),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
    sa.UniqueConstraint("host", "binary", name="uq_services_host_binary"),
)

compute_nodes = sa.Table(
    "compute_nodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE")),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("hypervisor_hostname", sa.String(255), nullable=False, unique=True),
    sa.Column("hypervisor_type", sa.String(255), nullable=False),
    sa.Column("hypervisor_version", sa.Integer, nullable=False, default=1),
    # Instance types this node runs, e.g. ["fake"], ["container"], ["qemu"]; see drivers.base.DriverInfo.
    sa.Column("instance_types", sa.JSON, nullable=False, default=list),
    sa.Column("vcpus", sa.Integer, nullable=False),
    sa.Column("memory_mb", sa.Integer, nullable=False),
    sa.Column("local_gb", sa.Integer, nullable=False),
    sa.Column("host_ip", sa.String(39), nullable=False, default="127.0.0.1"),
    sa.Column("cpu_info", sa.JSON, nullable=False, default=dict),
    # Driver-reported details (e.g. which suspend mechanism, KVM or TCG).
    sa.Column("details", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
)

# Host aggregates (Nova's aggregates, aggregate_hosts, aggregate_metadata in the API database).
# Hosts are nova-compute service host names; the "availability_zone" metadata key puts them in
# that zone (compute.service.aggregates writes it through to services.availability_zone).
aggregates = sa.Table(
    "aggregates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime),
)

aggregate_hosts = sa.Table(
    "aggregate_hosts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("aggregate_id", sa.Integer, sa.ForeignKey("aggregates.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False, index=True),
    sa.UniqueConstraint("aggregate_id", "host", name="uq_aggregate_hosts_aggregate_id_host"),
)

aggregate_metadata = sa.Table(
    "aggregate_metadata",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("aggregate_id", sa.Integer, sa.ForeignKey("aggregates.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    sa.UniqueConstraint("aggregate_id", "key", name="uq_aggregate_metadata_aggregate_id_key"),
)

# Secrets every process of the cloud shares through the database it shares (issue 14): an agent's
# transfer endpoint and the image download check tokens signed with one (cumulo.hosts.secrets).
cluster_secrets = sa.Table(
    "cluster_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
)
