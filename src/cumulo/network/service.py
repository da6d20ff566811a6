"""The network service: one object over networks, subnets, ports, quotas and tags (and L3's facets).

Neutron's resources over the DB, in facets, each its own module, stacked by inheritance:

- `networks`: networks and subnets (IPAM rules from `ipam`);
- `ports`: ports (fixed IPs, MACs, port security, address pairs, DHCP options, binding);
- `ports_sys`: the seam Nova's side calls (allocate_ports_for_server, ports_of_device, bind_port);
- `quotas_tags`: quotas and tags;
- `routers`, `floatingips`, `secgroups` (L3API): routers, floating IPs, security groups and rules;
- `subnetpools` (below `networks`: subnets take CIDRs from pools) and `autoalloc` (get-me-a-network).

Every method takes the caller's RequestContext and returns Neutron-shaped dicts, raising Neutron's
faults (`faults`: one class per Neutron exception, each a cumulo.errors class).
"""

from __future__ import annotations

from cumulo.network.autoalloc import AutoAllocation
from cumulo.network.floatingips import FloatingIPs
from cumulo.network.secgroups import SecurityGroups


class NetworkService(SecurityGroups, FloatingIPs, AutoAllocation):
    """Neutron's resources: networks, subnets, ports, quotas and tags; routers, floating IPs and
    security groups."""
