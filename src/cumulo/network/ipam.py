"""IPAM: subnet CIDRs, gateways, allocation pools, fixed-IP requests and MAC addresses (pure functions).

Neutron's rules, kept small:

- a subnet's CIDR must be a network address of its IP version (host bits set is Invalid), and no
  subnet of one network may overlap another of the same network;
- the gateway defaults to the first host address, must lie inside the CIDR and be neither its
  network nor (IPv4) its broadcast address; `gateway_ip: null` means no gateway;
- allocation pools default to every host address but the gateway; given pools must lie inside the
  CIDR, not overlap each other, and not hold the gateway;
- a port's address comes from the pools (first free address), or is requested: it must lie inside
  its subnet (not the network or broadcast address); taken is 409 IpAddressAlreadyAllocated, an
  exhausted subnet 409 IpAddressGenerationFailure;
- IPv6 subnets in SLAAC or DHCPv6-stateless address mode give each port its EUI-64 address.

The database layer (`ports`) keeps the unique (network_id, ip_address) constraint as the final word.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any

from cumulo.network import faults

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# An IPv4Address or IPv6Address; Any because the two do not compare with each other (the callers
# check that a subnet's addresses are all of its version).
IPAddress = Any

MAC_PREFIX = "fa:16:3e"
IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")


def parse_cidr(cidr: Any, ip_version: int | None = None) -> IPNetwork:
    """The subnet's network; Invalid when it is not a CIDR, has host bits set, or is of another version."""
    if not isinstance(cidr, str) or "/" not in cidr:
        raise faults.HTTPBadRequest(msg=f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet.")
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        raise faults.HTTPBadRequest(msg=f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet.") from None
    if ip_version is not None and net.version != ip_version:
        raise faults.InvalidInput(error_message=f"Cidr {cidr} does not match the IP version {ip_version}")
    if (net.version == 4 and net.prefixlen > 30) or net.prefixlen > 126:
        raise faults.InvalidInput(error_message=f"Subnet {cidr} is too small: it must hold at least two host addresses")
    return net


def parse_cidr_loose(value: Any, field: str = "destination") -> IPNetwork:
    """A CIDR such as a route destination or a remote prefix (any prefix length, host bits not allowed)."""
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise faults.HTTPBadRequest(msg=f"Invalid input for {field}. Reason: '{value}' is not a valid IP subnet.") from None


def parse_ip(value: Any, field: str = "ip_address") -> IPAddress:
    if not isinstance(value, str):
        raise faults.HTTPBadRequest(msg=f"Invalid input for {field}. Reason: '{value}' is not a valid IP address.")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise faults.HTTPBadRequest(msg=f"Invalid input for {field}. Reason: '{value}' is not a valid IP address.") from None


def first_host(net: IPNetwork) -> IPAddress:
    return net.network_address + 1


def last_host(net: IPNetwork) -> IPAddress:
    # IPv4: the broadcast address is not a host; IPv6 has no broadcast (Neutron keeps the last one out too).
    return net.broadcast_address - 1 if net.version == 4 else net.broadcast_address


def is_host(net: IPNetwork, ip: IPAddress) -> bool:
    """Whether `ip` is an assignable address of `net` (inside it, not its network or broadcast address)."""
    if ip.version != net.version or ip not in net:
        return False
    if ip == net.network_address:
        return False
    return not (net.version == 4 and ip == net.broadcast_address)


def check_gateway(net: IPNetwork, gateway: Any) -> str | None:
    """The subnet's gateway as text (None: no gateway); Invalid when it is outside the subnet."""
    if gateway is None:
        return None
    ip = parse_ip(gateway, "gateway_ip")
    if not is_host(net, ip):
        raise faults.InvalidInput(error_message=f"Gateway IP {gateway} is not a valid host address of subnet {net}")
    return str(ip)


def default_gateway(net: IPNetwork) -> str:
    return str(first_host(net))


def default_pools(net: IPNetwork, gateway: str | None) -> list[dict[str, str]]:
    """Every host address but the gateway, as Neutron computes it."""
    start, end = first_host(net), last_host(net)
    pools: list[dict[str, str]] = []
    gw = ipaddress.ip_address(gateway) if gateway else None
    if gw is None or not (start <= gw <= end):
        return [{"start": str(start), "end": str(end)}]
    if gw > start:
        pools.append({"start": str(start), "end": str(gw - 1)})
    if gw < end:
        pools.append({"start": str(gw + 1), "end": str(end)})
    return pools


def check_pools(net: IPNetwork, pools: Any, gateway: str | None) -> list[dict[str, str]]:
    """Given allocation pools, checked: each inside the subnet, start <= end, no overlap, no gateway."""
    if not isinstance(pools, list):
        raise faults.HTTPBadRequest(msg="Invalid input for allocation_pools. Reason: it must be a list of start/end pairs.")
    ranges: list[tuple[IPAddress, IPAddress]] = []
    for pool in pools:
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise faults.HTTPBadRequest(
                msg="Invalid input for allocation_pools. Reason: each pool must be {\"start\": ip, \"end\": ip}."
            )
        start, end = parse_ip(pool["start"], "allocation_pools"), parse_ip(pool["end"], "allocation_pools")
        if not is_host(net, start) or not is_host(net, end):
            raise faults.OutOfBoundsAllocationPool(pool=f"{start}-{end}", subnet_cidr=net)
        if start > end:
            raise faults.InvalidAllocationPool(pool=f"{start}-{end}")
        ranges.append((start, end))
    ranges.sort()
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:], strict=False):
        if s2 <= e1:
            raise faults.OverlappingAllocationPools(pool_1=f"{s1}-{e1}", pool_2=f"{s2}-{e2}", subnet_cidr=net)
    if gateway:
        gw = ipaddress.ip_address(gateway)
        for start, end in ranges:
            if start <= gw <= end:
                raise faults.GatewayConflictWithAllocationPools(ip_address=gateway, pool=f"{start}-{end}")
    return [{"start": str(s), "end": str(e)} for s, e in ranges]


def check_no_overlap(net: IPNetwork, network_id: str, others: Iterable[str]) -> None:
    """No two subnets of one network overlap (Neutron's check with allow_overlapping_ips)."""
    for cidr in others:
        other = ipaddress.ip_network(cidr)
        if other.version == net.version and net.overlaps(other):
            raise faults.InvalidInput(
                error_message=f"Requested subnet with cidr: {net} for network: {network_id} overlaps with another subnet"
            )


def pool_addresses(pools: Sequence[dict[str, str]]) -> Iterator[IPAddress]:
    """Every address of the pools, in order (lazily: an IPv6 /64 is not listed)."""
    for pool in pools:
        ip: IPAddress = ipaddress.ip_address(pool["start"])
        end: IPAddress = ipaddress.ip_address(pool["end"])
        while ip <= end:
            yield ip
            ip += 1


def next_free(pools: Sequence[dict[str, str]], taken: Container[str], limit: int = 1 << 16) -> str | None:
    """The first pool address not in `taken` (None when exhausted). Looks at most `limit` addresses,
    so a huge, nearly full pool cannot stall the event loop."""
    for i, ip in enumerate(pool_addresses(pools)):
        if i >= limit:
            return None
        if str(ip) not in taken:
            return str(ip)
    return None


def check_requested_ip(net: IPNetwork, value: Any, subnet_id: str) -> str:
    """A requested fixed IP, normalised; Invalid when it does not belong to the subnet."""
    ip = parse_ip(value)
    if not is_host(net, ip):
        raise faults.InvalidIpForSubnet(ip_address=value)
    return str(ip)


def eui64(net: IPNetwork, mac: str) -> str:
    """The SLAAC address of `mac` in an IPv6 /64 (modified EUI-64)."""
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    iid = octets[:3] + [0xFF, 0xFE] + octets[3:]
    return str(net.network_address + int.from_bytes(bytes(iid), "big"))


def random_mac() -> str:
    """fa:16:3e:xx:xx:xx, Neutron's default base MAC."""
    tail = secrets.token_bytes(3)
    return MAC_PREFIX + "".join(f":{b:02x}" for b in tail)


def check_mac(value: Any) -> str:
    """A requested MAC address, lower-cased; Invalid unless it is a unicast MAC."""
    if not isinstance(value, str):
        raise faults.HTTPBadRequest(msg=f"Invalid input for mac_address. Reason: '{value}' is not a valid MAC address.")
    parts = value.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise faults.HTTPBadRequest(msg=f"Invalid input for mac_address. Reason: '{value}' is not a valid MAC address.")
    mac = ":".join(p.lower() for p in parts)
    if int(parts[0], 16) & 1 or mac == "00:00:00:00:00:00":
        raise faults.HTTPBadRequest(msg=f"Invalid input for mac_address. Reason: '{value}' is not a valid MAC address.")
    return mac
