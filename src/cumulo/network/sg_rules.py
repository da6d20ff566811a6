"""Security group rules: Neutron's conversion and validation of a rule, and its duplicate key.

Pure functions (no DB): `normalize_rule` turns a request's `security_group_rule` body into the
values stored, or raises the fault Neutron raises for it, in Neutron's order (attribute
conversion, then the IPv6 ICMP canonical name, port range, remote prefix against ethertype,
ethertype against protocol, one remote at most). `rule_key` is what two rules must share to be
duplicates (SecurityGroupRuleExists).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cumulo.network import faults

ETHERTYPES = ("IPv4", "IPv6")
DIRECTIONS = ("ingress", "egress")

# neutron_lib.constants.IP_PROTOCOL_MAP
PROTOCOLS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0,
    "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
    "udp": 17, "udplite": 136, "vrrp": 112,
}
# Number -> canonical name (the legacy alias "icmpv6" is never the canonical name of 58).
PROTOCOL_NAMES = {str(num): name for name, num in PROTOCOLS.items() if name != "icmpv6"}
SUPPORTED_PROTOCOLS: tuple[str | None, ...] = (None, "any", *PROTOCOLS)
# Protocols with ports (neutron.common._constants.SG_PORT_PROTO_*).
PORT_PROTOCOLS = {"dccp": 33, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136}
ICMP_NUMBERS = (1, 58)
_IPV6_ONLY = {"ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route",
              "41", "44", "58", "59", "60", "43"}

RULE_ATTRIBUTES = {
    "security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
    "remote_ip_prefix", "remote_group_id", "description", "tenant_id", "project_id",
}


def _bad(msg: str) -> faults.HTTPBadRequest:
    return faults.HTTPBadRequest(msg=msg)


def convert_protocol(value: Any) -> str | None:
    """None and "any" mean every protocol (stored as None); a number 0-255 is kept as its decimal
    string; a name is lowercased and must be one Neutron knows."""
    if value is None or value == "any":
        return None
    if isinstance(value, bool):
        raise faults.SecurityGroupRuleInvalidProtocol(protocol=value, values=SUPPORTED_PROTOCOLS)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if 0 <= number <= 255:
            return str(number)
        raise faults.SecurityGroupRuleInvalidProtocol(protocol=value, values=SUPPORTED_PROTOCOLS)
    if isinstance(value, str) and value.lower() in SUPPORTED_PROTOCOLS:
        return value.lower()
    raise faults.SecurityGroupRuleInvalidProtocol(protocol=value, values=SUPPORTED_PROTOCOLS)


def convert_ethertype(value: Any) -> str:
    if isinstance(value, str):
        for ethertype in ETHERTYPES:
            if ethertype.lower() == value.lower():
                return ethertype
    raise faults.SecurityGroupRuleInvalidEtherType(ethertype=value, values=list(ETHERTYPES))


def convert_port(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise faults.SecurityGroupInvalidPortValue(port=value)
    try:
        port = int(value)
    except ValueError:
        raise faults.SecurityGroupInvalidPortValue(port=value) from None
    if 0 <= port <= 65535:
        return port
    raise faults.SecurityGroupInvalidPortValue(port=value)


def convert_prefix(value: Any) -> str | None:
    """A CIDR, or an address (which gets its full-length mask); host bits are kept, as Neutron."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise faults.InvalidCIDR(input=value)
    try:
        return str(ipaddress.ip_interface(value.strip()))
    except ValueError:
        raise faults.InvalidCIDR(input=value) from None


def protocol_number(protocol: str | None) -> int | None:
    if protocol is None:
        return None
    return PROTOCOLS[protocol] if protocol in PROTOCOLS else int(protocol)


def _check_uuid(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"Invalid input for {field}. Reason: '{value}' is not a valid UUID.")
    return value


def normalize_rule(body: Any) -> dict[str, Any]:
    """The stored values of a new rule (without id and project), or the fault Neutron gives."""
    if not isinstance(body, dict):
        raise _bad("Invalid input for security_group_rule. Reason: the rule must be an object.")
    unknown = sorted(set(body) - RULE_ATTRIBUTES)
    if unknown:
        raise _bad(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    for required in ("security_group_id", "direction"):
        if required not in body:
            raise _bad(f"Failed to parse request. Required attribute '{required}' not specified")
    direction = body["direction"]
    if direction not in DIRECTIONS:
        raise _bad(f"Invalid input for direction. Reason: '{direction}' is not in {list(DIRECTIONS)}.")
    description = body.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > 255:
        raise _bad(f"Invalid input for description. Reason: '{description}' is not a valid string of at most 255 characters.")
    remote_group = body.get("remote_group_id")
    rule: dict[str, Any] = {
        "security_group_id": _check_uuid(body["security_group_id"], "security_group_id"),
        "direction": direction,
        "ethertype": convert_ethertype(body.get("ethertype", "IPv4")),
        "protocol": convert_protocol(body.get("protocol")),
        "port_range_min": convert_port(body.get("port_range_min")),
        "port_range_max": convert_port(body.get("port_range_max")),
        "remote_ip_prefix": convert_prefix(body.get("remote_ip_prefix")),
        "remote_group_id": None if remote_group is None else _check_uuid(remote_group, "remote_group_id"),
        "description": description,
    }
    _canonical_ipv6_icmp(rule)
    _check_port_range(rule)
    _check_prefix(rule)
    if rule["protocol"] in _IPV6_ONLY and rule["ethertype"] == "IPv4":
        raise faults.SecurityGroupEthertypeConflictWithProtocol(ethertype=rule["ethertype"], protocol=rule["protocol"])
    if rule["remote_ip_prefix"] and rule["remote_group_id"]:
        raise faults.SecurityGroupMultipleRemoteEntites()
    return rule


def _canonical_ipv6_icmp(rule: dict[str, Any]) -> None:
    """IPv6 rules name ICMP "ipv6-icmp" (58): "icmp", "icmpv6" and "1" are converted."""
    if rule["ethertype"] == "IPv6":
        if rule["protocol"] in ("icmp", "icmpv6"):
            rule["protocol"] = "ipv6-icmp"
        elif rule["protocol"] == "1":
            rule["protocol"] = "58"


def _check_port_range(rule: dict[str, Any]) -> None:
    low, high = rule["port_range_min"], rule["port_range_max"]
    if low is None and high is None:
        return
    if rule["protocol"] is None:
        raise faults.SecurityGroupProtocolRequiredWithPorts()
    number = protocol_number(rule["protocol"])
    if number in PORT_PROTOCOLS.values():
        if low == 0 or high == 0:
            raise faults.SecurityGroupInvalidPortValue(port=0)
        if low is None or high is None or low > high:
            raise faults.SecurityGroupInvalidPortRange()
    elif number in ICMP_NUMBERS:
        # port_range_min is the ICMP type, port_range_max the code.
        for attr, field in (("port_range_min", "type"), ("port_range_max", "code")):
            value = rule[attr]
            if value is not None and not 0 <= value <= 255:
                raise faults.SecurityGroupInvalidIcmpValue(field=field, attr=attr, value=value)
        if low is None and high is not None:
            raise faults.SecurityGroupMissingIcmpType(value=high)
    else:
        raise faults.SecurityGroupInvalidProtocolForPort(
            protocol=number, valid_port_protocols=", ".join(name.upper() for name in PORT_PROTOCOLS)
        )


def _check_prefix(rule: dict[str, Any]) -> None:
    prefix = rule["remote_ip_prefix"]
    if prefix and rule["ethertype"] != f"IPv{ipaddress.ip_interface(prefix).version}":
        raise faults.SecurityGroupRuleParameterConflict(ethertype=rule["ethertype"], cidr=prefix)


def normalized_cidr(prefix: str | None) -> str | None:
    return None if not prefix else str(ipaddress.ip_interface(prefix).network)


def _protocol_key(protocol: str | None, ethertype: str) -> str:
    if protocol is None:
        return "+"
    if ethertype == "IPv6":
        if protocol in ("icmp", "icmpv6"):
            protocol = "ipv6-icmp"
        elif protocol == "1":
            protocol = "58"
    if protocol in PROTOCOLS:
        return f"{protocol}/{PROTOCOLS[protocol]}"
    name = PROTOCOL_NAMES.get(protocol, protocol)
    return f"{name}/{protocol}"


def rule_key(rule: dict[str, Any]) -> tuple[str, ...]:
    """Two rules with one key are duplicates: a protocol by name equals it by number, and a
    remote prefix of every address (0.0.0.0/0, ::/0) equals none."""
    prefix = rule.get("remote_ip_prefix")
    return (
        str(rule["security_group_id"]),
        str(rule["direction"]),
        str(rule["ethertype"]),
        _protocol_key(rule.get("protocol"), str(rule["ethertype"])),
        "+" if rule.get("port_range_min") is None else str(rule["port_range_min"]),
        "+" if rule.get("port_range_max") is None else str(rule["port_range_max"]),
        "+" if rule.get("remote_group_id") is None else str(rule["remote_group_id"]),
        "+" if prefix in (None, "0.0.0.0/0", "::/0") else str(prefix),
    )
