"""The API extensions the network service implements, as GET /v2.0/extensions lists them (Neutron's aliases).

Clients (openstacksdk, the OSC, Nova, Tempest) decide what to send from this list, so it names only
what works. L3's facets add theirs to `L3_EXTENSIONS` and their collections to `EXTRA_RESOURCES`.
"""

from __future__ import annotations

from typing import Any

UPDATED = "2013-01-01T00:00:00-00:00"

# (alias, name, description)
CORE_EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options",
     "Extra options configuration for DHCP. For example PXE boot options to DHCP clients can be specified "
     "(e.g. tftp-server, server-ip-address, bootfile-name)"),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    ("quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project"),
    # "tag" (networks) and "standard-attr-tag": tags on networks, subnets, ports, subnet pools, routers,
    # floating IPs and security groups (there are no trunks or QoS policies to tag).
    ("tag", "Tag support", "Enables to set tag on resources."),
    ("standard-attr-tag", "Tag support for resources with standard attribute: subnet, trunk, network_segment_range, "
     "router, network, policy, subnetpool, port, security_group, floatingip",
     "Enables to set tag on resources with standard attribute."),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    ("default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a subnetpool as the default."),
    ("auto-allocated-topology", "Auto Allocated Topology Services", "Auto Allocated Topology Services."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron "
     "resources that have Neutron standard attributes."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of "
     "neutron resources."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("sorting", "Sorting support", "Enabling the sorting feature of the API."),
    ("pagination", "Pagination support", "Enabling the pagination feature of the API."),
    ("ip-substring-filtering", "IP address substring filtering", "Provides IP address substring filtering when "
     "listing ports"),
)

L3_EXTENSIONS: list[tuple[str, str, str]] = [
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and "
     "access to external networks via a NAT gateway."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for "
     "specifying whether SNAT should occur on the external gateway"),
    ("security-group", "security-group", "The security groups extension."),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource"),
    ("stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not"),
    ("security-groups-normalized-cidr", "Normalized CIDR field for security group rules",
     "Add new field with normalized remote_ip_prefix cidr in SG rule"),
    ("security-groups-rules-belongs-to-default-sg",
     "Security group rule belongs to the project's default security group",
     "Flag to determine if the security group rule belongs to the project's default security group"),
    ("security-groups-shared-filtering", "Security group filtering on the shared field",
     "Support filtering security groups on the shared field"),
]

# (resource, collection) of the L3 facets, for GET /v2.0/.
EXTRA_RESOURCES: list[tuple[str, str]] = [
    ("router", "routers"), ("floatingip", "floatingips"), ("security_group", "security-groups"),
    ("security_group_rule", "security-group-rules"), ("subnetpool", "subnetpools"),
]


def listed() -> list[dict[str, Any]]:
    return [
        {"alias": alias, "name": name, "description": description, "updated": UPDATED, "links": []}
        for alias, name, description in (*CORE_EXTENSIONS, *L3_EXTENSIONS)
    ]
