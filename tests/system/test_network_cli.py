"""Neutron's networks, subnets and ports through the real `openstack network|subnet|port ...`
commands (python-openstackclient over openstacksdk, which finds /networking in the catalog and
discovers v2.0) against `cumulo up`. Nothing is plumbed on the host here: this is the API and IPAM.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the harness lives in tests/system/conftest.py
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

cumulo_options = {"fake_hosts": 0}
cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)

ADMIN, DEMO = "cumulo", "cumulo-demo"


def _fails(cumulo: CumuloCloud, *args: str, cloud: str = ADMIN) -> str:
    done = cumulo.osc_run(*args, cloud=cloud)
    assert done.returncode != 0, f"`openstack {' '.join(args)}` unexpectedly succeeded:\n{done.stdout}"
    return done.stderr


def _ips(port: dict[str, Any]) -> list[str]:
    """The addresses of a port as `port show -f json` prints its fixed_ips."""
    return [f["ip_address"] for f in port["fixed_ips"]]


def test_network_subnet_port_lifecycle(cumulo: CumuloCloud) -> None:
    tag = secrets.token_hex(3)
    net_name, sub_name, port_name = f"net-{tag}", f"sub-{tag}", f"port-{tag}"
    net = cumulo.osc("network", "create", "--description", "made by the CLI test", net_name, cloud=DEMO)
    made: list[tuple[str, ...]] = [("network", "delete", net["id"])]
    try:
        assert net["name"] == net_name and net["status"] == "ACTIVE"
        listed = cumulo.osc("network", "list", cloud=DEMO)
        assert net["id"] in {n["ID"] for n in listed}
        shown = cumulo.osc("network", "show", net_name, cloud=DEMO)
        assert shown["id"] == net["id"] and shown["description"] == "made by the CLI test"
        cumulo.osc("network", "set", "--tag", f"t-{tag}", "--name", f"{net_name}-x", net["id"], cloud=DEMO)
        assert [n["ID"] for n in cumulo.osc("network", "list", "--tags", f"t-{tag}", cloud=DEMO)] == [net["id"]]
        cumulo.osc("network", "set", "--name", net_name, net["id"], cloud=DEMO)

        sub = cumulo.osc("subnet", "create", "--network", net_name, "--subnet-range", "10.20.0.0/24",
                         "--allocation-pool", "start=10.20.0.10,end=10.20.0.20", "--gateway", "10.20.0.1",
                         sub_name, cloud=DEMO)
        made.insert(0, ("subnet", "delete", sub["id"]))
        assert sub["cidr"] == "10.20.0.0/24" and sub["gateway_ip"] == "10.20.0.1"
        assert "10.20.0.10" in json.dumps(sub["allocation_pools"]) and "10.20.0.20" in json.dumps(sub["allocation_pools"])
        # an overlapping subnet and a gateway outside the range are refused with Neutron's faults
        refused = _fails(cumulo, "subnet", "create", "--network", net_name, "--subnet-range", "10.20.0.128/25",
                         f"overlap-{tag}", cloud=DEMO)
        assert "overlaps" in refused, refused
        refused = _fails(cumulo, "subnet", "create", "--network", net_name, "--subnet-range", "10.21.0.0/24",
                         "--gateway", "10.99.0.1", f"badgw-{tag}", cloud=DEMO)
        assert "Gateway" in refused or "gateway" in refused, refused

        port = cumulo.osc("port", "create", "--network", net_name, "--fixed-ip",
                          f"subnet={sub_name},ip-address=10.20.0.15", port_name, cloud=DEMO)
        made.insert(0, ("port", "delete", port["id"]))
        assert _ips(port) == ["10.20.0.15"]
        assert port["mac_address"].startswith("fa:16:3e:")
        # the address is taken now
        refused = _fails(cumulo, "port", "create", "--network", net_name, "--fixed-ip", "ip-address=10.20.0.15",
                         f"dup-{tag}", cloud=DEMO)
        assert "already allocated" in refused, refused

        # port set / unset: a second address, a name, an allowed address pair, a DHCP option
        cumulo.osc("port", "set", "--fixed-ip", "ip-address=10.20.0.16", "--name", f"{port_name}-b",
                   "--allowed-address", "ip-address=10.20.0.100", "--extra-dhcp-option", "name=mtu,value=1400",
                   "--description", "set by the CLI", port_name, cloud=DEMO)
        port = cumulo.osc("port", "show", port["id"], cloud=DEMO)
        assert sorted(_ips(port)) == ["10.20.0.15", "10.20.0.16"]
        assert port["name"] == f"{port_name}-b" and port["description"] == "set by the CLI"
        assert "10.20.0.100" in json.dumps(port["allowed_address_pairs"])
        assert "1400" in json.dumps(port["extra_dhcp_opts"])
        # (the OSC removes entries that match exactly: the subnet with the address, the MAC with the pair)
        cumulo.osc("port", "unset", "--fixed-ip", f"subnet={sub_name},ip-address=10.20.0.15", "--allowed-address",
                   f"ip-address=10.20.0.100,mac-address={port['mac_address']}", port["id"], cloud=DEMO)
        port = cumulo.osc("port", "show", port["id"], cloud=DEMO)
        assert _ips(port) == ["10.20.0.16"]
        assert "10.20.0.100" not in json.dumps(port["allowed_address_pairs"])

        # the admin lists the demo project's networks; the demo project sees none of the admin's
        admin_net = cumulo.osc("network", "create", f"admin-{tag}")
        made.append(("network", "delete", admin_net["id"]))
        of_demo = {n["ID"] for n in cumulo.osc("network", "list", "--project", "demo")}
        assert net["id"] in of_demo and admin_net["id"] not in of_demo
        assert admin_net["id"] not in {n["ID"] for n in cumulo.osc("network", "list", cloud=DEMO)}
        refused = _fails(cumulo, "network", "show", admin_net["id"], cloud=DEMO)
        assert "No Network found" in refused or "could not be found" in refused, refused
        _fails(cumulo, "port", "create", "--network", admin_net["id"], f"intruder-{tag}", cloud=DEMO)
        # shared is for admins
        refused = _fails(cumulo, "network", "create", "--share", f"shared-{tag}", cloud=DEMO)
        assert "disallowed by policy" in refused or "403" in refused, refused

        # a network with a port is in use
        refused = _fails(cumulo, "network", "delete", net["id"], cloud=DEMO)
        assert "in use" in refused, refused
    finally:
        for args in made:
            cumulo.osc_run(*args, cloud=ADMIN)
    assert net["id"] not in {n["ID"] for n in cumulo.osc("network", "list")}
    assert _fails(cumulo, "port", "show", port_name, cloud=DEMO)
