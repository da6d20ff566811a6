"""Neutron's faults: one class per Neutron exception, rendered as `{"NeutronError": {"type", ...}}`.

Each class is named exactly as Neutron's exception, which is the fault's `type` (`neutron_type`, also
read by Nova's side through the network service seam); it derives from the cumulo.errors class that
gives its HTTP status, and its message is Neutron's wording, filled from keyword arguments as
neutron_lib's exceptions are (`NetworkNotFound(net_id=...)`). The HTTP* classes are the WebOb
exceptions Neutron's API layer answers with when no Neutron exception applies (a body that fails
attribute validation, an unknown route); they take the whole message (`msg`).

`type_of` names the type for the renderer: a fault's own, or for any other cumulo error (a body the
web layer refused, ...) the WebOb name of its status.
"""

from __future__ import annotations

from typing import Any

from cumulo import errors

# The WebOb exception names Neutron's faults carry when no Neutron exception class applies.
HTTP_TYPES = {
    400: "HTTPBadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    406: "HTTPNotAcceptable",
    409: "HTTPConflict",
    413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
    500: "HTTPInternalServerError",
    501: "HTTPNotImplemented",
    503: "HTTPServiceUnavailable",
}


class NeutronFault(errors.CumuloError):
    """Base of the faults below: `neutron_type` is the class's own name."""

    template = "An unknown exception occurred."
    neutron_type = "NeutronException"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.neutron_type = cls.__name__

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.template % kwargs)


def type_of(exc: BaseException | None, status: int) -> str:
    """The `type` of the NeutronError body for `exc`, answered with `status`."""
    if isinstance(exc, NeutronFault):
        return exc.neutron_type
    return HTTP_TYPES.get(status, "HTTPError")


# ---- WebOb's, for what no Neutron exception names -------------------------------------------------


class HTTPBadRequest(NeutronFault, errors.Invalid):
    """What Neutron's API layer answers for a body or query that fails attribute validation."""

    template = "%(msg)s"


class HTTPNotFound(NeutronFault, errors.NotFound):
    """An unknown route, extension or paging marker."""

    template = "%(msg)s"


class HTTPConflict(NeutronFault, errors.Conflict):
    template = "%(msg)s"


class PolicyNotAuthorized(NeutronFault, errors.Forbidden):
    """oslo.policy's refusal; Neutron prints the failed check in parentheses."""

    template = "(%(rule)s) is disallowed by policy"


# ---- generic (neutron_lib.exceptions) -------------------------------------------------------------


class BadRequest(NeutronFault, errors.Invalid):
    template = "Bad %(resource)s request: %(msg)s."


class InvalidInput(NeutronFault, errors.Invalid):
    template = "Invalid input for operation: %(error_message)s."


class InvalidCIDR(NeutronFault, errors.Invalid):
    template = "Invalid CIDR %(input)s given as IP prefix."


class OverQuota(NeutronFault, errors.Conflict):
    """Neutron answers 409 (not 403) when a quota would be exceeded; `overs` is a list of resources."""

    template = "Quota exceeded for resources: %(overs)s."


class TagNotFound(NeutronFault, errors.NotFound):
    template = "Tag %(tag)s could not be found."


# ---- networks and subnets -------------------------------------------------------------------------


class NetworkNotFound(NeutronFault, errors.NotFound):
    template = "Network %(net_id)s could not be found."


class NetworkInUse(NeutronFault, errors.Conflict):
    template = (
        "Unable to complete operation on network %(net_id)s. "
        "There are one or more ports still in use on the network."
    )


class InvalidSharedSetting(NeutronFault, errors.Conflict):
    template = "Unable to reconfigure sharing settings for network %(network)s. Multiple tenants are using it."


class ExternalNetworkInUse(NeutronFault, errors.Conflict):
    template = (
        "External network %(net_id)s cannot be updated to be made non-external, since it has "
        "existing gateway ports."
    )


class SubnetNotFound(NeutronFault, errors.NotFound):
    template = "Subnet %(subnet_id)s could not be found."


class SubnetInUse(NeutronFault, errors.Conflict):
    template = "Unable to complete operation on subnet %(subnet_id)s: %(reason)s."

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reason", "One or more ports have an IP allocation from this subnet")
        super().__init__(**kwargs)


class InvalidAllocationPool(NeutronFault, errors.Invalid):
    template = "The allocation pool %(pool)s is not valid."


class OutOfBoundsAllocationPool(NeutronFault, errors.Invalid):
    template = "The allocation pool %(pool)s spans beyond the subnet cidr %(subnet_cidr)s."


class OverlappingAllocationPools(NeutronFault, errors.Invalid):
    """A 409 in Neutron; Cumulo has always answered 400 (the request names the overlap itself)."""

    template = "Found overlapping allocation pools: %(pool_1)s %(pool_2)s for subnet %(subnet_cidr)s."


class GatewayConflictWithAllocationPools(NeutronFault, errors.Conflict):
    template = "Gateway ip %(ip_address)s conflicts with allocation pool %(pool)s."


# ---- ports and their addresses --------------------------------------------------------------------


class PortNotFound(NeutronFault, errors.NotFound):
    template = "Port %(port_id)s could not be found."


class PortInUse(NeutronFault, errors.Conflict):
    template = (
        "Unable to complete operation on port %(port_id)s for network %(net_id)s. "
        "Port already has an attached device %(device_id)s."
    )


class PortBound(NeutronFault, errors.Conflict):
    template = "Unable to complete operation on port %(port_id)s, port is already bound."


class ServicePortInUse(NeutronFault, errors.Conflict):
    template = "Port %(port_id)s cannot be deleted directly via the port API: %(reason)s."


class MacAddressInUse(NeutronFault, errors.Conflict):
    template = "Unable to complete operation for network %(net_id)s. The mac address %(mac)s is in use."


class MacAddressGenerationFailure(NeutronFault, errors.Conflict):
    template = "Unable to generate unique mac on network %(net_id)s."


class IpAddressAlreadyAllocated(NeutronFault, errors.Conflict):
    template = "IP address %(ip)s already allocated in subnet %(subnet_id)s"


class IpAddressGenerationFailure(NeutronFault, errors.Conflict):
    """Worded per network (neutron_lib) or, given `subnet_id`, per subnet (Neutron's IPAM)."""

    template = "No more IP addresses available on network %(net_id)s."

    def __init__(self, **kwargs: Any) -> None:
        if "subnet_id" in kwargs:
            self.template = "No more IP addresses available for subnet %(subnet_id)s."
        super().__init__(**kwargs)


class IpAddressInUse(NeutronFault, errors.Conflict):
    template = "Unable to complete operation for network %(net_id)s. The IP address %(ip_address)s is in use."


class InvalidIpForNetwork(NeutronFault, errors.Invalid):
    template = "IP address %(ip_address)s is not a valid IP for any of the subnets on the specified network."


class InvalidIpForSubnet(NeutronFault, errors.Invalid):
    template = "IP address %(ip_address)s is not a valid IP for the specified subnet."


class ExternalIpAddressExhausted(NeutronFault, errors.Invalid):
    template = "Unable to find any IP address on external network %(net_id)s."


class SubnetMismatchForPort(NeutronFault, errors.Invalid):
    template = "Subnet on port %(port_id)s does not match the requested subnet %(subnet_id)s."


class PortSecurityPortHasSecurityGroup(NeutronFault, errors.Conflict):
    template = (
        "Port has security group associated. Cannot disable port security or IP address until "
        "security group is removed."
    )


class PortSecurityAndIPRequiredForSecurityGroups(NeutronFault, errors.Invalid):
    template = "Port security must be enabled and port must have an IP address in order to use security groups."


class AddressPairAndPortSecurityRequired(NeutronFault, errors.Conflict):
    template = "Port Security must be enabled in order to have allowed address pairs on a port."


class AllowedAddressPairExhausted(NeutronFault, errors.Invalid):
    template = "The number of allowed address pair exceeds the maximum %(quota)s."


class DuplicateAddressPairInRequest(NeutronFault, errors.Invalid):
    template = "Request contains duplicate address pair: mac_address %(mac_address)s ip_address %(ip_address)s."


# ---- routers and floating IPs (neutron_lib.exceptions.l3) ---------------------------------------


class RouterNotFound(NeutronFault, errors.NotFound):
    template = "Router %(router_id)s could not be found"


class RouterInUse(NeutronFault, errors.Conflict):
    template = "Router %(router_id)s %(reason)s"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reason", "still has ports")
        super().__init__(**kwargs)


class RouterInterfaceNotFound(NeutronFault, errors.NotFound):
    template = "Router %(router_id)s does not have an interface with id %(port_id)s"


class RouterInterfaceNotFoundForSubnet(NeutronFault, errors.NotFound):
    template = "Router %(router_id)s has no interface on subnet %(subnet_id)s"


class RouterInterfaceInUseByFloatingIP(NeutronFault, errors.Conflict):
    template = (
        "Router interface for subnet %(subnet_id)s on router %(router_id)s cannot be deleted, "
        "as it is required by one or more floating IPs."
    )


class RouterExternalGatewayInUseByFloatingIp(NeutronFault, errors.Conflict):
    template = (
        "Gateway cannot be updated for router %(router_id)s, since a gateway to external network "
        "%(net_id)s is required by one or more floating IPs."
    )


class InvalidRoutes(NeutronFault, errors.Invalid):
    template = "Invalid format for routes: %(routes)s, %(reason)s"


class FloatingIPNotFound(NeutronFault, errors.NotFound):
    template = "Floating IP %(floatingip_id)s could not be found"


class ExternalGatewayForFloatingIPNotFound(NeutronFault, errors.NotFound):
    template = (
        "External network %(external_network_id)s is not reachable from subnet %(subnet_id)s.  "
        "Therefore, cannot associate Port %(port_id)s with a Floating IP."
    )


class FloatingIPPortAlreadyAssociated(NeutronFault, errors.Conflict):
    template = (
        "Cannot associate floating IP %(floating_ip_address)s (%(fip_id)s) with port %(port_id)s "
        "using fixed IP %(fixed_ip)s, as that fixed IP already has a floating IP on external "
        "network %(net_id)s."
    )


# ---- security groups (neutron.extensions.securitygroup) -----------------------------------------


class SecurityGroupNotFound(NeutronFault, errors.NotFound):
    template = "Security group %(id)s does not exist"


class SecurityGroupRuleNotFound(NeutronFault, errors.NotFound):
    template = "Security group rule %(id)s does not exist"


class SecurityGroupInUse(NeutronFault, errors.Conflict):
    template = "Security Group %(id)s %(reason)s."

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reason", "in use")
        super().__init__(**kwargs)


class SecurityGroupCannotRemoveDefault(NeutronFault, errors.Conflict):
    template = "Insufficient rights for removing default security group."


class SecurityGroupCannotUpdateDefault(NeutronFault, errors.Conflict):
    template = "Updating default security group not allowed."


class SecurityGroupDefaultAlreadyExists(NeutronFault, errors.Conflict):
    template = "Default security group already exists."


class SecurityGroupRuleExists(NeutronFault, errors.Conflict):
    template = "Security group rule already exists. Rule id is %(rule_id)s."


class SecurityGroupInvalidPortRange(NeutronFault, errors.Invalid):
    template = "For TCP/UDP protocols, port_range_min must be <= port_range_max"


class SecurityGroupInvalidProtocolForPort(NeutronFault, errors.Invalid):
    template = "Ports cannot be specified for protocol %(protocol)s. Ports are only supported for %(valid_port_protocols)s."


class SecurityGroupInvalidPortValue(NeutronFault, errors.Invalid):
    template = "Invalid value for port %(port)s"


class SecurityGroupInvalidIcmpValue(NeutronFault, errors.Invalid):
    template = "Invalid value for ICMP %(field)s (%(attr)s) %(value)s. It must be 0 to 255."


class SecurityGroupEthertypeConflictWithProtocol(NeutronFault, errors.Invalid):
    template = "Invalid ethertype %(ethertype)s for protocol %(protocol)s."


class SecurityGroupMissingIcmpType(NeutronFault, errors.Invalid):
    template = "ICMP code (port-range-max) %(value)s is provided but ICMP type (port-range-min) is missing."


class SecurityGroupRuleInvalidProtocol(NeutronFault, errors.Invalid):
    template = (
        "Security group rule protocol %(protocol)s not supported. Only protocol values %(values)s "
        "and integer representations [0 to 255] are supported."
    )


class SecurityGroupMultipleRemoteEntites(NeutronFault, errors.Invalid):  # sic: Neutron's spelling
    template = "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided."


class SecurityGroupProtocolRequiredWithPorts(NeutronFault, errors.Invalid):
    template = "Must also specify protocol if port range is given."


class SecurityGroupRuleParameterConflict(NeutronFault, errors.Invalid):
    template = "Conflicting value ethertype %(ethertype)s for CIDR %(cidr)s"


class SecurityGroupRuleInvalidEtherType(NeutronFault, errors.Invalid):
    template = "Security group rule for ethertype '%(ethertype)s' not supported. Allowed values are %(values)s."


# ---- subnet pools and auto-allocated topologies -------------------------------------------------------


class SubnetPoolNotFound(NeutronFault, errors.NotFound):
    template = "Subnet pool %(subnetpool_id)s could not be found."


class SubnetPoolInUse(NeutronFault, errors.Conflict):
    template = "Unable to complete operation on subnet pool %(subnet_pool_id)s. %(reason)s."

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reason", "Two or more concurrent subnets allocated")
        super().__init__(**kwargs)


class PrefixVersionMismatch(NeutronFault, errors.Invalid):
    template = "Cannot mix IPv4 and IPv6 prefixes in a subnet pool."


class IllegalSubnetPoolPrefixBounds(NeutronFault, errors.Invalid):
    template = "Illegal prefix bounds: %(prefix_type)s=%(prefixlen)s, %(base_prefix_type)s=%(base_prefixlen)s."


class IllegalSubnetPoolPrefixUpdate(NeutronFault, errors.Invalid):
    template = "Illegal update to prefixes: %(msg)s."


class IllegalSubnetPoolUpdate(NeutronFault, errors.Invalid):
    template = "Illegal subnetpool update : %(reason)s."


class MinPrefixSubnetAllocationError(NeutronFault, errors.Invalid):
    template = "Unable to allocate subnet with prefix length %(prefixlen)s, minimum allowed prefix is %(min_prefixlen)s."


class MaxPrefixSubnetAllocationError(NeutronFault, errors.Invalid):
    template = "Unable to allocate subnet with prefix length %(prefixlen)s, maximum allowed prefix is %(max_prefixlen)s."


class SubnetAllocationError(NeutronFault, errors.Conflict):
    """Neutron's is a bare NeutronException; Cumulo answers it 409 (the pool's space is used up)."""

    template = "Failed to allocate subnet: %(reason)s."


class SubnetPoolQuotaExceeded(NeutronFault, errors.Conflict):
    template = "Per-tenant subnet pool prefix quota exceeded."


class AutoAllocationFailure(NeutronFault, errors.Conflict):
    template = "Deployment error: %(reason)s."


class DefaultExternalNetworkExists(NeutronFault, errors.Conflict):
    template = "A default external network already exists: %(net_id)s."
