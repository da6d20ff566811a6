"""Neutron's faults (network/faults.py): one class per Neutron exception, its name the fault's type,
its status from one cumulo.errors class, its message Neutron's wording filled from keywords."""

from __future__ import annotations

import inspect
import re

import pytest

from cumulo import errors
from cumulo.network import faults

STATUS_CLASSES = (errors.Invalid, errors.Forbidden, errors.NotFound, errors.Conflict)
FAULTS = [c for _, c in inspect.getmembers(faults, inspect.isclass)
          if issubclass(c, faults.NeutronFault) and c is not faults.NeutronFault]


@pytest.mark.parametrize("cls", FAULTS, ids=lambda c: c.__name__)
def test_each_fault_is_named_as_neutron_and_has_one_status(cls: type[faults.NeutronFault]) -> None:
    assert cls.neutron_type == cls.__name__
    assert [s for s in STATUS_CLASSES if issubclass(cls, s)] != [], cls
    assert not issubclass(cls, errors.OverQuota)  # Neutron's quota fault is a 409, not Nova's 403
    # Every keyword the template names fills it: nothing of the template's %(...)s is left over.
    names = re.findall(r"%\((\w+)\)s", cls.template)
    exc = cls(**{n: f"<{n}>" for n in names})
    assert "%(" not in exc.message and all(f"<{n}>" in exc.message for n in names if n != "reason"), exc.message
    assert faults.type_of(exc, exc.code) == cls.__name__


def test_a_message_is_neutrons_wording() -> None:
    assert faults.NetworkNotFound(net_id="n1").message == "Network n1 could not be found."
    assert faults.OverQuota(overs=["port"]).message == "Quota exceeded for resources: ['port']."
    assert (faults.InvalidInput(error_message="Cidr x does not match the IP version 6").message
            == "Invalid input for operation: Cidr x does not match the IP version 6.")
    assert faults.PolicyNotAuthorized(rule="rule:create_port:mac_address").message == (
        "(rule:create_port:mac_address) is disallowed by policy")
    # Neutron words an exhausted network (neutron_lib) and subnet (its IPAM) apart, under one type.
    assert faults.IpAddressGenerationFailure(net_id="n").message == "No more IP addresses available on network n."
    by_subnet = faults.IpAddressGenerationFailure(subnet_id="s")
    assert by_subnet.message == "No more IP addresses available for subnet s."
    assert by_subnet.neutron_type == "IpAddressGenerationFailure"
    assert faults.SubnetInUse(subnet_id="s").message == (
        "Unable to complete operation on subnet s: One or more ports have an IP allocation from this subnet.")
    # A message is data, never a format string of its own.
    assert faults.HTTPBadRequest(msg="100% %(x)s").message == "100% %(x)s"


def test_an_error_from_outside_the_network_service_gets_webobs_name() -> None:
    assert faults.type_of(errors.Invalid("bad body"), 400) == "HTTPBadRequest"
    assert faults.type_of(errors.Forbidden("no"), 403) == "HTTPForbidden"
    assert faults.type_of(errors.PayloadTooLarge("big"), 413) == "HTTPRequestEntityTooLarge"
    assert faults.type_of(None, 418) == "HTTPError"
