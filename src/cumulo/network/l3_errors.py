"""Neutron's faults for routers, floating IPs and security groups.

Each class is named exactly as Neutron's fault type and carries it as `neutron_type` (what
network.faults.type_of reads for the "type" of the NeutronError body); it derives from the
cumulo.errors class that gives its HTTP status. Messages are Neutron's wording, filled from keyword
arguments as neutron_lib's exceptions are.
"""

from __future__ import annotations

from typing import Any

from cumulo import errors


class _Templated(errors.CumuloError):
    template = "An unknown exception occurred."
    neutron_type = "NeutronException"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.neutron_type = cls.__name__

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.template % kwargs)


# ---- generic ----------------------------------------------------------------------------------


class BadRequest(_Templated, errors.Invalid):
    template = "Bad %(resource)s request: %(msg)s."


class InvalidInput(_Templated, errors.Invalid):
    template = "Invalid input for operation: %(error_message)s."


class HTTPBadRequest(_Templated, errors.Invalid):
    """What Neutron's API layer answers for a body that fails attribute validation."""

    template = "%(msg)s"


class InvalidCIDR(_Templated, errors.Invalid):
    template = "Invalid CIDR %(input)s given as IP prefix."


class OverQuota(_Templated, errors.Conflict):
    """Neutron answers 409 (not 403) when a quota would be exceeded."""

    template = "Quota exceeded for resources: %(overs)s."


class NetworkNotFound(_Templated, errors.NotFound):
    template = "Network %(net_id)s could not be found."


class SubnetNotFound(_Templated, errors.NotFound):
    template = "Subnet %(subnet_id)s could not be found."


class PortNotFound(_Templated, errors.NotFound):
    template = "Port %(port_id)s could not be found."


class PortInUse(_Templated, errors.Conflict):
    template = (
        "Unable to complete operation on port %(port_id)s for network %(net_id)s. "
        "Port already has an attached device %(device_id)s."
    )


class ServicePortInUse(_Templated, errors.Conflict):
    template = "Port %(port_id)s cannot be deleted directly via the port API: %(reason)s."


class IpAddressAlreadyAllocated(_Templated, errors.Conflict):
    template = "IP address %(ip)s already allocated in subnet %(subnet_id)s"


class MacAddressInUse(_Templated, errors.Conflict):
    template = "Unable to complete operation for network %(net_id)s. The mac address %(mac)s is in use."


class IpAddressGenerationFailure(_Templated, errors.Conflict):
    template = "No more IP addresses available for subnet %(subnet_id)s."


class IpAddressInUse(_Templated, errors.Conflict):
    template = "Unable to complete operation for network %(net_id)s. The IP address %(ip_address)s is in use."


class InvalidIpForSubnet(_Templated, errors.Invalid):
    template = "IP address %(ip_address)s is not a valid IP for the specified subnet."


class ExternalIpAddressExhausted(_Templated, errors.Invalid):
    template = "Unable to find any IP address on external network %(net_id)s."


class SubnetMismatchForPort(_Templated, errors.Invalid):
    template = "Subnet on port %(port_id)s does not match the requested subnet %(subnet_id)s."


# ---- routers and floating IPs (neutron_lib.exceptions.l3) ---------------------------------------


class RouterNotFound(_Templated, errors.NotFound):
    template = "Router %(router_id)s could not be found"


class RouterInUse(_Templated, errors.Conflict):
    template = "Router %(router_id)s %(reason)s"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reason", "still has ports")
        super().__init__(**kwargs)


class RouterInterfaceNotFound(_Templated, errors.NotFound):
    template = "Router %(router_id)s does not have an interface with id %(port_id)s"


class RouterInterfaceNotFoundForSubnet(_Templated, errors.NotFound):
    template = "Router %(router_id)s has no interface on subnet %(subnet_id)s"


class RouterInterfaceInUseByFloatingIP(_Templated, errors.Conflict):
    template = (
        "Router interface for subnet %(subnet_id)s on router %(router_id)s cannot be deleted, "
        "as it is required by one or more floating IPs."
    )


class RouterExternalGatewayInUseByFloatingIp(_Templated, errors.Conflict):
    template = (
        "Gateway cannot be updated for router %(router_id)s, since a gateway to external network "
        "%(net_id)s is required by one or more floating IPs."
    )


class FloatingIPNotFound(_Templated, errors.NotFound):
    template = "Floating IP %(floatingip_id)s could not be found"


class ExternalGatewayForFloatingIPNotFound(_Templated, errors.NotFound):
    template = (
        "External network %(external_network_id)s is not reachable from subnet %(subnet_id)s.  "
        "Therefore, cannot associate Port %(port_id)s with a Floating IP."
    )


class FloatingIPPortAlreadyAssociated(_Templated, errors.Conflict):
    template = (
        "Cannot associate floating IP %(floating_ip_address)s (%(fip_id)s) with port %(port_id)s "
        "using fixed IP %(fixed_ip)s, as that fixed IP already has a floating IP on external "
        "network %(net_id)s."
    )


# ---- security groups (neutron.extensions.securitygroup) -----------------------------------------


class SecurityGroupNotFound(_Templated, errors.NotFound):
    template = "Security group %(id)s does not exist"


class SecurityGroupRuleNotFound(_Templated, errors.NotFound):
    template = "Security group rule %(id)s does not exist"


class SecurityGroupInUse(_Templated, errors.Conflict):
    template = "Security Group %(id)s %(reason)s."

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reason", "in use")
        super().__init__(**kwargs)


class SecurityGroupCannotRemoveDefault(_Templated, errors.Conflict):
    template = "Insufficient rights for removing default security group."


class SecurityGroupCannotUpdateDefault(_Templated, errors.Conflict):
    template = "Updating default security group not allowed."


class SecurityGroupDefaultAlreadyExists(_Templated, errors.Conflict):
    template = "Default security group already exists."


class SecurityGroupRuleExists(_Templated, errors.Conflict):
    template = "Security group rule already exists. Rule id is %(rule_id)s."


class SecurityGroupInvalidPortRange(_Templated, errors.Invalid):
    template = "For TCP/UDP protocols, port_range_min must be <= port_range_max"


class SecurityGroupInvalidProtocolForPort(_Templated, errors.Invalid):
    template = "Ports cannot be specified for protocol %(protocol)s. Ports are only supported for %(valid_port_protocols)s."


class SecurityGroupInvalidPortValue(_Templated, errors.Invalid):
    template = "Invalid value for port %(port)s"


class SecurityGroupInvalidIcmpValue(_Templated, errors.Invalid):
    template = "Invalid value for ICMP %(field)s (%(attr)s) %(value)s. It must be 0 to 255."


class SecurityGroupEthertypeConflictWithProtocol(_Templated, errors.Invalid):
    template = "Invalid ethertype %(ethertype)s for protocol %(protocol)s."


class SecurityGroupMissingIcmpType(_Templated, errors.Invalid):
    template = "ICMP code (port-range-max) %(value)s is provided but ICMP type (port-range-min) is missing."


class SecurityGroupRuleInvalidProtocol(_Templated, errors.Invalid):
    template = (
        "Security group rule protocol %(protocol)s not supported. Only protocol values %(values)s "
        "and integer representations [0 to 255] are supported."
    )


class SecurityGroupMultipleRemoteEntites(_Templated, errors.Invalid):  # sic: Neutron's spelling
    template = "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided."


class SecurityGroupProtocolRequiredWithPorts(_Templated, errors.Invalid):
    template = "Must also specify protocol if port range is given."


class SecurityGroupRuleParameterConflict(_Templated, errors.Invalid):
    template = "Conflicting value ethertype %(ethertype)s for CIDR %(cidr)s"


class SecurityGroupRuleInvalidEtherType(_Templated, errors.Invalid):
    template = "Security group rule for ethertype '%(ethertype)s' not supported. Allowed values are %(values)s."
