"""Network tables: Neutron's data model, trimmed (networks, subnets, ports, IPAM, L3, security groups).

Every resource row carries `project_id` (Neutron's `tenant_id`/`project_id` in the API) and a
`revision_number` bumped on each update. A port's fixed IPs are its `ip_allocations` rows; the
unique (network_id, ip_address) constraint makes a double allocation impossible even under
concurrent writers. Router interfaces and gateways are ports (device_owner
network:router_interface / network:router_gateway); a floating IP owns a port on its external
network (device_owner network:floatingip) that holds its address.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cumulo.db import metadata, utcnow


def _stamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
        sa.Column("updated_at", sa.DateTime, nullable=False, default=utcnow),
        sa.Column("revision_number", sa.Integer, nullable=False, default=0),
    ]


networks = sa.Table(
    "networks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("admin_state_up", sa.Boolean, nullable=False, default=True),
    sa.Column("status", sa.String(16), nullable=False, default="ACTIVE"),
    sa.Column("shared", sa.Boolean, nullable=False, default=False, index=True),
    # router:external
    sa.Column("external", sa.Boolean, nullable=False, default=False, index=True),
    sa.Column("mtu", sa.Integer, nullable=False, default=1500),
    sa.Column("port_security_enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("provider_network_type", sa.String(32)),
    sa.Column("provider_physical_network", sa.String(64)),
    sa.Column("provider_segmentation_id", sa.Integer),
    sa.Column("is_default", sa.Boolean, nullable=False, default=False),
    *_stamps(),
    # One network per VXLAN VNI (issue 14; migration 0012_nethost).
    sa.Index("uq_networks_vxlan_vni", "provider_segmentation_id", unique=True,
             sqlite_where=sa.text("provider_network_type = 'vxlan'"),
             postgresql_where=sa.text("provider_network_type = 'vxlan'")),
)

subnets = sa.Table(
    "subnets",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("network_id", sa.String(36), sa.ForeignKey("networks.id"), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("cidr", sa.String(64), nullable=False),
    sa.Column("ip_version", sa.Integer, nullable=False),
    sa.Column("gateway_ip", sa.String(64)),
    sa.Column("enable_dhcp", sa.Boolean, nullable=False, default=True),
    # [{"start": "10.0.0.2", "end": "10.0.0.254"}, ...]
    sa.Column("allocation_pools", sa.JSON, nullable=False),
    sa.Column("dns_nameservers", sa.JSON, nullable=False),
    # [{"destination": cidr, "nexthop": ip}, ...]
    sa.Column("host_routes", sa.JSON, nullable=False),
    sa.Column("ipv6_ra_mode", sa.String(16)),
    sa.Column("ipv6_address_mode", sa.String(16)),
    sa.Column("subnetpool_id", sa.String(36)),
    *_stamps(),
)

ports = sa.Table(
    "ports",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("network_id", sa.String(36), sa.ForeignKey("networks.id"), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("mac_address", sa.String(32), nullable=False),
    sa.Column("device_id", sa.String(255), nullable=False, default="", index=True),
    sa.Column("device_owner", sa.String(255), nullable=False, default="", index=True),
    sa.Column("binding_host_id", sa.String(255), nullable=False, default="", index=True),
    sa.Column("binding_vnic_type", sa.String(64), nullable=False, default="normal"),
    sa.Column("binding_profile", sa.JSON, nullable=False),
    sa.Column("admin_state_up", sa.Boolean, nullable=False, default=True),
    sa.Column("status", sa.String(16), nullable=False, default="DOWN"),
    sa.Column("port_security_enabled", sa.Boolean, nullable=False, default=True),
    # [{"ip_address": ip-or-cidr, "mac_address": mac}, ...]
    sa.Column("allowed_address_pairs", sa.JSON, nullable=False),
    # [{"opt_name": ..., "opt_value": ..., "ip_version": 4|6}, ...]
    sa.Column("extra_dhcp_opts", sa.JSON, nullable=False),
    *_stamps(),
    sa.UniqueConstraint("network_id", "mac_address", name="uq_ports_network_id_mac_address"),
)

ip_allocations = sa.Table(
    "ip_allocations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("port_id", sa.String(36), sa.ForeignKey("ports.id"), nullable=False, index=True),
    sa.Column("subnet_id", sa.String(36), sa.ForeignKey("subnets.id"), nullable=False, index=True),
    sa.Column("network_id", sa.String(36), nullable=False, index=True),
    sa.Column("ip_address", sa.String(64), nullable=False),
    sa.UniqueConstraint("network_id", "ip_address", name="uq_ip_allocations_network_id_ip_address"),
)

security_groups = sa.Table(
    "security_groups",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("stateful", sa.Boolean, nullable=False, default=True),
    *_stamps(),
)

# Each project's "default" group, one per project (Neutron's default_security_group table): the
# primary key on project_id makes two concurrent first requests create only one.
default_security_groups = sa.Table(
    "default_security_groups",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column(
        "security_group_id", sa.String(36), sa.ForeignKey("security_groups.id"), nullable=False, index=True
    ),
)

security_group_rules = sa.Table(
    "security_group_rules",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column(
        "security_group_id", sa.String(36), sa.ForeignKey("security_groups.id"), nullable=False, index=True
    ),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("ethertype", sa.String(8), nullable=False, default="IPv4"),
    sa.Column("protocol", sa.String(40)),
    sa.Column("port_range_min", sa.Integer),
    sa.Column("port_range_max", sa.Integer),
    sa.Column("remote_ip_prefix", sa.String(64)),
    sa.Column("remote_group_id", sa.String(36), index=True),
    sa.Column("remote_address_group_id", sa.String(36)),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    *_stamps(),
)

# A port's security groups (Neutron's securitygroupportbindings).
port_security_groups = sa.Table(
    "port_security_groups",
    metadata,
    sa.Column("port_id", sa.String(36), sa.ForeignKey("ports.id"), primary_key=True),
    sa.Column("security_group_id", sa.String(36), sa.ForeignKey("security_groups.id"), primary_key=True),
    sa.Index("ix_port_security_groups_security_group_id", "security_group_id"),
)

routers = sa.Table(
    "routers",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("admin_state_up", sa.Boolean, nullable=False, default=True),
    sa.Column("status", sa.String(16), nullable=False, default="ACTIVE"),
    # external_gateway_info: the external network, SNAT, and the gateway port holding the fixed IPs
    sa.Column("gw_network_id", sa.String(36), sa.ForeignKey("networks.id"), index=True),
    sa.Column("gw_port_id", sa.String(36), index=True),
    sa.Column("enable_snat", sa.Boolean, nullable=False, default=True),
    # the requested external fixed IPs ([{"subnet_id": ..., "ip_address": ...}]), as given
    sa.Column("external_fixed_ips", sa.JSON, nullable=False),
    # extraroute: [{"destination": cidr, "nexthop": ip}, ...]
    sa.Column("routes", sa.JSON, nullable=False),
    sa.Column("distributed", sa.Boolean, nullable=False, default=False),
    sa.Column("ha", sa.Boolean, nullable=False, default=False),
    *_stamps(),
)

floating_ips = sa.Table(
    "floating_ips",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("floating_network_id", sa.String(36), sa.ForeignKey("networks.id"), nullable=False, index=True),
    sa.Column("floating_ip_address", sa.String(64), nullable=False),
    sa.Column("floating_port_id", sa.String(36), index=True),
    sa.Column("port_id", sa.String(36), index=True),
    sa.Column("fixed_ip_address", sa.String(64)),
    sa.Column("router_id", sa.String(36), index=True),
    sa.Column("status", sa.String(16), nullable=False, default="DOWN"),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    *_stamps(),
    sa.UniqueConstraint(
        "floating_network_id", "floating_ip_address", name="uq_floating_ips_floating_network_id_floating_ip_address"
    ),
)

# Per-project overrides of the network quotas (Neutron's quotas table); absent rows take the defaults.
network_quotas = sa.Table(
    "network_quotas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("resource", sa.String(64), nullable=False),
    sa.Column("limit", sa.Integer, nullable=False),
    sa.UniqueConstraint("project_id", "resource", name="uq_network_quotas_project_id_resource"),
)

# Tags on any network resource (resource_type: networks, subnets, ports, routers, floatingips,
# security_groups, ...).
network_tags = sa.Table(
    "network_tags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("resource_type", sa.String(32), nullable=False),
    sa.Column("resource_id", sa.String(36), nullable=False, index=True),
    sa.Column("tag", sa.String(255), nullable=False, index=True),
    sa.UniqueConstraint("resource_type", "resource_id", "tag", name="uq_network_tags_resource_type_resource_id_tag"),
)

# Subnet pools (the subnet_allocation extension): `prefixes` is the pool's address space as a list
# of CIDRs (collapsed), subnets allocated from it carry its id (subnets.subnetpool_id).
subnetpools = sa.Table(
    "subnetpools",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False, default=""),
    sa.Column("description", sa.String(255), nullable=False, default=""),
    sa.Column("ip_version", sa.Integer, nullable=False),
    sa.Column("prefixes", sa.JSON, nullable=False),
    sa.Column("default_prefixlen", sa.Integer, nullable=False),
    sa.Column("min_prefixlen", sa.Integer, nullable=False),
    sa.Column("max_prefixlen", sa.Integer, nullable=False),
    # per-project quota on the prefix space, in /32 (IPv4) or /64 (IPv6) units; None: unlimited
    sa.Column("default_quota", sa.Integer),
    sa.Column("shared", sa.Boolean, nullable=False, default=False),
    sa.Column("is_default", sa.Boolean, nullable=False, default=False),
    *_stamps(),
)

# One auto-allocated topology per project (auto-allocated-topology): the primary key makes two
# concurrent first requests agree on one; the loser deletes what it built.
auto_allocated_topologies = sa.Table(
    "auto_allocated_topologies",
    metadata,
    sa.Column("project_id", sa.String(255), primary_key=True),
    sa.Column("network_id", sa.String(36), nullable=False),
    sa.Column("router_id", sa.String(36)),
)
