"""The network service: Neutron's v2.0 API at /networking, its models, IPAM and services."""
