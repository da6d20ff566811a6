"""Compute tables: instances and their history, flavors, keypairs, quotas, groups, migrations, BDMs."""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

instances = sa.Table(
    "instances",
    metadata,
    # Integer id gives a stable tie-break for sorting and marker pagination.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("project_id", sa.String(64), nullable=False, index=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("display_description", sa.Text),
    sa.Column("hostname", sa.String(255)),
    sa.Column("image_ref", sa.String(36), nullable=False, default=""),
    # Snapshot of the flavor at boot (and during resize: old/new), as Nova keeps it.
    sa.Column("flavor", sa.JSON, nullable=False),
    sa.Column("old_flavor", sa.JSON),
    sa.Column("new_flavor", sa.JSON),
    sa.Column("vcpus", sa.Integer, nullable=False),
    sa.Column("memory_mb", sa.Integer, nullable=False),
    sa.Column("root_gb", sa.Integer, nullable=False),
    sa.Column("ephemeral_gb", sa.Integer, nullable=False, default=0),
    sa.Column("key_name", sa.String(255)),
    sa.Column("key_data", sa.Text),
    sa.Column("user_data", sa.Text),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("system_metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("tags", sa.JSON, nullable=False, default=list),
    sa.Column("vm_state", sa.String(32), nullable=False, index=True),
    sa.Column("task_state", sa.String(64)),
    sa.Column("power_state", sa.Integer, nullable=False, default=0),
    sa.Column("locked", sa.Boolean, nullable=False, default=False),
    sa.Column("locked_by", sa.String(16)),
    sa.Column("locked_reason", sa.String(255)),
    sa.Column("host", sa.String(255), index=True),
    sa.Column("node", sa.String(255)),
    sa.Column("availability_zone", sa.String(255)),
    sa.Column("reservation_id", sa.String(255), nullable=False),
    sa.Column("launch_index", sa.Integer, nullable=False, default=0),
    sa.Column("access_ip_v4", sa.String(39)),
    sa.Column("access_ip_v6", sa.String(39)),
    sa.Column("config_drive", sa.String(255), nullable=False, default=""),
    sa.Column("progress", sa.Integer, nullable=False, default=0),
    # Everything the scheduler needs to place (and re-place) the server.
    sa.Column("request_spec", sa.JSON, nullable=False, default=dict),
    sa.Column("security_groups", sa.JSON, nullable=False, default=list),
    sa.Column("requested_networks", sa.JSON),
    # {network_name: [{"addr":..., "version":4, "OS-EXT-IPS:type":..., "OS-EXT-IPS-MAC:mac_addr":...}]}
    sa.Column("addresses", sa.JSON, nullable=False, default=dict),
    sa.Column("hypervisor_type", sa.String(32)),
    sa.Column("launched_at", sa.DateTime),
    sa.Column("terminated_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow, index=True),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow, index=True),
    sa.Column("deleted_at", sa.DateTime),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False, index=True),
)

instance_faults = sa.Table(
    "instance_faults",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("instance_uuid", sa.String(36), nullable=False, index=True),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("message", sa.String(255), nullable=False),
    sa.Column("details", sa.Text),
    sa.Column("host", sa.String(255)),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
)

instance_actions = sa.Table(
    "instance_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("action", sa.String(255), nullable=False),
    sa.Column("instance_uuid", sa.String(36), nullable=False, index=True),
    sa.Column("request_id", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(255)),
    sa.Column("project_id", sa.String(255)),
    sa.Column("start_time", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("finish_time", sa.DateTime),
    sa.Column("message", sa.String(255)),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
)

instance_action_events = sa.Table(
    "instance_action_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("action_id", sa.Integer, sa.ForeignKey("instance_actions.id", ondelete="CASCADE"), index=True),
    sa.Column("event", sa.String(255), nullable=False),
    sa.Column("start_time", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("finish_time", sa.DateTime),
    sa.Column("result", sa.String(255)),
    sa.Column("traceback", sa.Text),
    sa.Column("host", sa.String(255)),
    sa.Column("details", sa.Text),
)

flavors = sa.Table(
    "flavors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flavorid", sa.String(255), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("memory_mb", sa.Integer, nullable=False),
    sa.Column("vcpus", sa.Integer, nullable=False),
    sa.Column("root_gb", sa.Integer, nullable=False),
    sa.Column("ephemeral_gb", sa.Integer, nullable=False, default=0),
    sa.Column("swap", sa.Integer, nullable=False, default=0),
    sa.Column("rxtx_factor", sa.Float, nullable=False, default=1.0),
    sa.Column("is_public", sa.Boolean, nullable=False, default=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("description", sa.Text),
    sa.Column("extra_specs", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
)

flavor_projects = sa.Table(
    "flavor_projects",
    metadata,
    sa.Column("flavor_id", sa.Integer, sa.ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("project_id", sa.String(255), primary_key=True),
)

key_pairs = sa.Table(
    "key_pairs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False, index=True),
    sa.Column("project_id", sa.String(255)),
    sa.Column("fingerprint", sa.String(255), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("type", sa.String(16), nullable=False, default="ssh"),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("user_id", "name", name="uq_key_pairs_user_id_name"),
)

quotas = sa.Table(
    "quotas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("resource", sa.String(255), nullable=False),
    sa.Column("hard_limit", sa.Integer, nullable=False),
    sa.UniqueConstraint("project_id", "resource", name="uq_quotas_project_id_resource"),
)

# Nova's project_user_quotas: a user's own limits inside a project (unset ones are the project's).
project_user_quotas = sa.Table(
    "project_user_quotas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("resource", sa.String(255), nullable=False),
    sa.Column("hard_limit", sa.Integer, nullable=False),
    sa.UniqueConstraint("project_id", "user_id", "resource", name="uq_project_user_quotas_project_id_user_id_resource"),
)

# Server groups (Nova's instance_groups in the API database). The policy (affinity,
# anti-affinity, soft-*) and its rules live on the group row (Nova keeps them in a side table).
instance_groups = sa.Table(
    "instance_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("policy", sa.String(255), nullable=False),
    # {"max_server_per_host": n} for anti-affinity from 2.64; {} otherwise.
    sa.Column("rules", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
)

instance_group_member = sa.Table(
    "instance_group_member",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("instance_groups.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("instance_uuid", sa.String(36), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("group_id", "instance_uuid", name="uq_instance_group_member_group_id_instance_uuid"),
)

# Migrations (Nova's migrations table): one row per resize (and, later, per move to another host),
# listed by GET /os-migrations. status follows Nova's: pre-migrating, migrating, finished,
# confirmed, reverted, error.
migrations = sa.Table(
    "migrations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("instance_uuid", sa.String(36), nullable=False, index=True),
    sa.Column("project_id", sa.String(64)),
    sa.Column("user_id", sa.String(64)),
    sa.Column("source_compute", sa.String(255)),
    sa.Column("dest_compute", sa.String(255)),
    sa.Column("source_node", sa.String(255)),
    sa.Column("dest_node", sa.String(255)),
    sa.Column("dest_host", sa.String(255)),
    sa.Column("old_instance_type_id", sa.Integer),
    sa.Column("new_instance_type_id", sa.Integer),
    sa.Column("status", sa.String(255), nullable=False),
    sa.Column("migration_type", sa.String(32), nullable=False),
    sa.Column("hidden", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow, index=True),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
    # A live migration's progress (bytes, Nova's columns; null for other types) and the downtime
    # QEMU measured at its switchover (ms; Cumulo's, not in the API): migration 0012_miglive.
    sa.Column("memory_total", sa.BigInteger),
    sa.Column("memory_processed", sa.BigInteger),
    sa.Column("memory_remaining", sa.BigInteger),
    sa.Column("disk_total", sa.BigInteger),
    sa.Column("disk_processed", sa.BigInteger),
    sa.Column("disk_remaining", sa.BigInteger),
    sa.Column("downtime_ms", sa.Integer),
)

# Block device mappings (Nova's block_device_mapping): one row per disk of a server, the root's
# too when it boots from a volume. source_type image|volume|snapshot|blank, destination_type
# local|volume; boot_index 0 = the root, None/-1 = not bootable. attachment_id is the volume
# service's attachment (Cinder 3.27 flow); connection_info its JSON. A detached or deleted
# server's rows are removed (no soft delete). compute/volume_records.py reads and writes them.
block_device_mapping = sa.Table(
    "block_device_mapping",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("instance_uuid", sa.String(36), nullable=False, index=True),
    sa.Column("source_type", sa.String(32), nullable=False),
    sa.Column("destination_type", sa.String(32), nullable=False),
    sa.Column("device_name", sa.String(255)),
    sa.Column("boot_index", sa.Integer),
    sa.Column("volume_id", sa.String(36), index=True),
    sa.Column("snapshot_id", sa.String(36)),
    sa.Column("image_id", sa.String(36)),
    sa.Column("volume_size", sa.Integer),
    sa.Column("volume_type", sa.String(255)),
    sa.Column("delete_on_termination", sa.Boolean, nullable=False, default=False),
    sa.Column("guest_format", sa.String(255)),
    sa.Column("disk_bus", sa.String(255)),
    sa.Column("device_type", sa.String(255)),
    sa.Column("no_device", sa.Boolean, nullable=False, default=False),
    sa.Column("tag", sa.String(255)),
    sa.Column("attachment_id", sa.String(36)),
    sa.Column("connection_info", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow),
)
