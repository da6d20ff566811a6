"""IPAM's pure rules: CIDRs, gateways, pools, requested addresses, MACs and EUI-64."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cumulo import errors
from cumulo.network import ipam
from cumulo.network.faults import type_of


def kind(exc: pytest.ExceptionInfo[errors.CumuloError]) -> str:
    return type_of(exc.value, exc.value.code)


def test_default_gateway_and_pools_leave_out_network_gateway_and_broadcast() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    gw = ipam.default_gateway(net)
    assert gw == "10.0.0.1"
    assert ipam.default_pools(net, gw) == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    # a gateway in the middle splits the pool; no gateway leaves it whole
    assert ipam.default_pools(net, "10.0.0.100") == [
        {"start": "10.0.0.1", "end": "10.0.0.99"}, {"start": "10.0.0.101", "end": "10.0.0.254"}]
    assert ipam.default_pools(net, None) == [{"start": "10.0.0.1", "end": "10.0.0.254"}]


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "not-a-cidr", "10.0.0.0", "10.0.0.0/33", "", 42, None])
def test_bad_cidrs_are_400(cidr: Any) -> None:
    with pytest.raises(errors.Invalid):
        ipam.parse_cidr(cidr, 4)


def test_cidr_of_the_other_version_or_too_small_is_invalid() -> None:
    with pytest.raises(errors.Invalid) as exc:
        ipam.parse_cidr("fd00::/64", 4)
    assert kind(exc) == "InvalidInput"
    with pytest.raises(errors.Invalid):
        ipam.parse_cidr("10.0.0.0/31", 4)


@pytest.mark.parametrize("gateway", ["10.0.1.1", "10.0.0.0", "10.0.0.255", "fd00::1", "bogus"])
def test_gateway_outside_the_subnet_is_invalid(gateway: str) -> None:
    with pytest.raises(errors.Invalid):
        ipam.check_gateway(ipam.parse_cidr("10.0.0.0/24"), gateway)


def test_pools_are_checked() -> None:
    net = ipam.parse_cidr("10.0.0.0/24")
    ok = ipam.check_pools(net, [{"start": "10.0.0.50", "end": "10.0.0.60"}, {"start": "10.0.0.10", "end": "10.0.0.20"}],
                          "10.0.0.1")
    assert ok == [{"start": "10.0.0.10", "end": "10.0.0.20"}, {"start": "10.0.0.50", "end": "10.0.0.60"}]
    cases = [
        ([{"start": "10.0.0.10", "end": "10.0.1.20"}], "OutOfBoundsAllocationPool"),
        ([{"start": "10.0.0.30", "end": "10.0.0.20"}], "InvalidAllocationPool"),
        ([{"start": "10.0.0.10", "end": "10.0.0.30"}, {"start": "10.0.0.20", "end": "10.0.0.40"}],
         "OverlappingAllocationPools"),
        ([{"start": "10.0.0.10"}], "HTTPBadRequest"),
        ("10.0.0.10-10.0.0.20", "HTTPBadRequest"),
    ]
    for pools, expected in cases:
        with pytest.raises(errors.Invalid) as exc:
            ipam.check_pools(net, pools, "10.0.0.1")
        assert kind(exc) == expected, pools
    with pytest.raises(errors.Conflict) as conflict:
        ipam.check_pools(net, [{"start": "10.0.0.1", "end": "10.0.0.9"}], "10.0.0.1")
    assert kind(conflict) == "GatewayConflictWithAllocationPools"


def test_overlapping_subnets_of_one_network_are_invalid() -> None:
    ipam.check_no_overlap(ipam.parse_cidr("10.0.1.0/24"), "n", ["10.0.0.0/24", "fd00::/64"])
    with pytest.raises(errors.Invalid, match="overlaps with another subnet"):
        ipam.check_no_overlap(ipam.parse_cidr("10.0.0.128/25"), "n", ["10.0.0.0/24"])


def test_next_free_skips_taken_and_reports_exhaustion() -> None:
    pools = [{"start": "10.0.0.2", "end": "10.0.0.3"}, {"start": "10.0.0.9", "end": "10.0.0.9"}]
    assert ipam.next_free(pools, set()) == "10.0.0.2"
    assert ipam.next_free(pools, {"10.0.0.2", "10.0.0.3"}) == "10.0.0.9"
    assert ipam.next_free(pools, {"10.0.0.2", "10.0.0.3", "10.0.0.9"}) is None


def test_next_free_on_a_huge_ipv6_pool_is_lazy() -> None:
    net = ipam.parse_cidr("fd00::/64", 6)
    pools = ipam.default_pools(net, ipam.default_gateway(net))
    assert ipam.next_free(pools, {"fd00::2"}) == "fd00::3"


def test_requested_ip_must_be_a_host_of_the_subnet() -> None:
    net = ipam.parse_cidr("10.0.0.0/24")
    assert ipam.check_requested_ip(net, "10.0.0.7", "s") == "10.0.0.7"
    for bad in ("10.0.1.7", "10.0.0.0", "10.0.0.255", "fd00::7"):
        with pytest.raises(errors.Invalid) as exc:
            ipam.check_requested_ip(net, bad, "s")
        assert kind(exc) == "InvalidIpForSubnet"
    with pytest.raises(errors.Invalid) as exc:
        ipam.check_requested_ip(net, "x.y", "s")
    assert kind(exc) == "HTTPBadRequest"


def test_macs() -> None:
    macs = {ipam.random_mac() for _ in range(50)}
    assert all(m.startswith("fa:16:3e:") and len(m) == 17 for m in macs)
    assert len(macs) > 40
    assert ipam.check_mac("FA:16:3E:00:00:01") == "fa:16:3e:00:00:01"
    for bad in ("01:00:5e:00:00:01", "00:00:00:00:00:00", "fa:16:3e:00:00", "zz:16:3e:00:00:01", 5):
        with pytest.raises(errors.Invalid):
            ipam.check_mac(bad)


def test_eui64() -> None:
    net = ipaddress.ip_network("2001:db8::/64")
    assert ipam.eui64(net, "fa:16:3e:20:95:05") == "2001:db8::f816:3eff:fe20:9505"
